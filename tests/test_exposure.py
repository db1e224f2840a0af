import pickle

import numpy as np
import pytest
from astropy.wcs import WCS

from skydiff.errors import InvalidExposureError, InvalidParameterError
from skydiff.image import Box, Exposure, MaskedImage, PhotoCalib, VisitInfo, pixel_scale
from skydiff.psf import VaryingAnalyticPsf


def tan_wcs(crpix=(50.0, 40.0), scale_arcsec=0.2, rotation_deg=30.0):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [crpix[0] + 1, crpix[1] + 1]
    theta = np.deg2rad(rotation_deg)
    s = scale_arcsec / 3600.0
    wcs.wcs.cd = s * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return wcs


def make_exposure(rng):
    box = Box(100, 200, 64, 48)
    mi = MaskedImage(rng.normal(size=box.shape), None, np.ones(box.shape), bbox=box)
    psf = VaryingAnalyticPsf("gaussian", (100, 200, 163, 247), [3.0, 0.3, 0.0], size=15)
    return Exposure(
        mi,
        wcs=tan_wcs((130, 220)),
        psf=psf,
        photo_calib=PhotoCalib(57.5),
        band="r",
        physical_filter="HSC-R2",
        visit_info=VisitInfo(visit=12, detector=3, mjd=60000.5, exposure_time=30.0),
        metadata={"SEEING": 0.7},
    )


def test_cutout_keeps_wcs_and_psf(rng):
    exposure = make_exposure(rng)
    cut = exposure[Box(120, 210, 20, 20)]
    assert np.shares_memory(cut.image, exposure.image)
    x, y = 131.0, 222.0
    np.testing.assert_allclose(cut.pixel_to_sky(x, y), exposure.pixel_to_sky(x, y), rtol=0)
    np.testing.assert_array_equal(cut.psf.kernel_image(x, y), exposure.psf.kernel_image(x, y))
    assert cut.image[222 - 210, 131 - 120] == exposure.image[222 - 200, 131 - 100]


def test_sky_round_trip_and_scale(rng):
    exposure = make_exposure(rng)
    ra, dec = exposure.pixel_to_sky(np.array([100.0, 163.0]), np.array([200.0, 247.0]))
    x, y = exposure.sky_to_pixel(ra, dec)
    np.testing.assert_allclose([x, y], [[100, 163], [200, 247]], atol=1e-8)
    assert pixel_scale(exposure.wcs, 130, 220) == pytest.approx(0.2, rel=1e-6)
    assert exposure.sky_polygon().shape == (4, 2)


def test_calibration_to_nanojansky(rng):
    exposure = make_exposure(rng)
    calibrated = exposure.calibrated()
    assert calibrated.units == "nJy" and calibrated.photo_calib is None
    np.testing.assert_allclose(calibrated.image, exposure.image * 57.5, rtol=1e-6)
    np.testing.assert_allclose(calibrated.variance, exposure.variance * 57.5**2, rtol=1e-6)
    with pytest.raises(InvalidExposureError, match="no PhotoCalib"):
        exposure.replace(photo_calib=None).calibrated()


def test_photo_calib_zero_point():
    calib = PhotoCalib.from_zero_point(27.0)
    assert calib.zero_point == pytest.approx(27.0, abs=1e-12)
    # a 27th-magnitude source gives one count
    assert calib.instflux_to_magnitude(1.0) == pytest.approx(27.0)
    assert calib.instflux_to_nanojansky(1.0) == pytest.approx(3631e9 * 10 ** (-0.4 * 27))
    with pytest.raises(InvalidParameterError, match="calibration_mean"):
        PhotoCalib(-1.0)


def test_validation_and_pickle(rng):
    exposure = make_exposure(rng)
    with pytest.raises(InvalidParameterError, match="units"):
        exposure.replace(units="ADU")
    with pytest.raises(InvalidParameterError, match="exposure_time"):
        VisitInfo(exposure_time=-1)
    clone = pickle.loads(pickle.dumps(exposure))
    assert clone.masked_image == exposure.masked_image
    assert clone.visit_info == exposure.visit_info and clone.psf == exposure.psf
