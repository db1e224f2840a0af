import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from skydiff.errors import FitsFormatError
from skydiff.image import Box, Exposure, MaskedImage, PhotoCalib, VisitInfo
from skydiff.io import (
    DECAM_CP_MASK_VALUES,
    read_any,
    read_exposure,
    read_image,
    write_exposure,
)
from skydiff.psf import GaussianPsf, ImagePsf, MoffatPsf, PixelBasisPsf, VaryingAnalyticPsf

from .conftest import data_path


def sip_wcs(rng):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [rng.uniform(0, 360), rng.uniform(-60, 60)]
    wcs.wcs.crpix = [rng.uniform(-500, 500), rng.uniform(-500, 500)]
    wcs.wcs.cd = rng.normal(0, 5.5e-5, (2, 2))
    from astropy.wcs import Sip

    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 3] = rng.normal(0, 1e-6, 3)
    b[0, 2], b[1, 1], b[3, 0] = rng.normal(0, 1e-6, 3)
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def make_exposure(rng, psf):
    box = Box(-7, 1234, 40, 30)
    mi = MaskedImage(rng.normal(size=box.shape), None, rng.uniform(0.5, 2.0, box.shape), bbox=box)
    mi.mask.set("SAT", rng.uniform(size=box.shape) > 0.9)
    mi.mask.set("CUSTOM_PLANE", rng.uniform(size=box.shape) > 0.95)
    mi.set_no_data(rng.uniform(size=box.shape) > 0.97)
    return Exposure(
        mi,
        wcs=sip_wcs(rng),
        psf=psf,
        photo_calib=PhotoCalib(rng.uniform(0.1, 100), 0.0123),
        band="i",
        physical_filter="HSC-I2",
        visit_info=VisitInfo(
            visit=903334,
            detector=22,
            mjd=60000.123456789012,
            exposure_time=30.1,
            airmass=1.2345678901234567,
            boresight_ra=150.1,
            boresight_dec=2.2,
            boresight_rotation=90.0,
            instrument="HSC",
        ),
        metadata={"SEEING": 0.6789012345678901, "NOTE": "test", "COUNT": 3, "FLAG": True},
    )


PSFS = [
    None,
    GaussianPsf(3.3, axis_ratio=0.8, position_angle=12.3),
    MoffatPsf(4.1, beta=2.7),
    ImagePsf(GaussianPsf(3.0).kernel_image(0, 0)),
    PixelBasisPsf(
        np.ones((2, 5, 5)) + np.arange(25).reshape(5, 5), np.ones((2, 3)) / 7, (0, 0, 100, 1e3 / 3)
    ),
    VaryingAnalyticPsf(
        "moffat", (0, 0, 2000, 1000), [4.0, 0.4, -0.2], g1=[0.02, 0.1, 0], beta=3.1, size=27
    ),
]


@pytest.mark.parametrize("psf", PSFS, ids=lambda p: type(p).__name__)
def test_round_trip_is_exact(tmp_path, rng, psf):
    exposure = make_exposure(rng, psf)
    path = write_exposure(exposure, tmp_path / "exp.fits")
    back = read_exposure(path)
    assert back.masked_image == exposure.masked_image
    assert back.mask.planes == exposure.mask.planes
    assert back.visit_info == exposure.visit_info
    assert back.photo_calib == exposure.photo_calib
    assert (back.band, back.physical_filter, back.units) == ("i", "HSC-I2", "count")
    assert back.metadata == exposure.metadata
    assert back.psf == exposure.psf
    for attribute in ("crpix", "crval"):
        np.testing.assert_array_equal(
            getattr(back.wcs.wcs, attribute), getattr(exposure.wcs.wcs, attribute)
        )
    np.testing.assert_array_equal(back.wcs.pixel_scale_matrix, exposure.wcs.pixel_scale_matrix)
    np.testing.assert_array_equal(back.wcs.sip.a, exposure.wcs.sip.a)
    np.testing.assert_array_equal(back.wcs.sip.b, exposure.wcs.sip.b)
    x, y = np.meshgrid(np.arange(-7, 33, 3.0), np.arange(1234, 1264, 3.0))
    np.testing.assert_array_equal(back.pixel_to_sky(x, y), exposure.pixel_to_sky(x, y))


def test_sub_box_read_and_other_readers_see_the_wcs(tmp_path, rng):
    exposure = make_exposure(rng, None)
    path = write_exposure(exposure, tmp_path / "exp.fits")
    part = Box(0, 1240, 10, 12)
    assert read_exposure(path, bbox=part).masked_image == exposure.masked_image[part]
    # a plain FITS reader, knowing nothing of LTV, gets sky coordinates right for array pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        plain = WCS(fits.getheader(path, "IMAGE"))
    ra, dec = plain.all_pix2world([0, 5], [0, 3], 0)
    np.testing.assert_allclose(
        (ra, dec), exposure.pixel_to_sky([-7, -2], [1234, 1237]), rtol=0, atol=1e-10
    )
    with pytest.raises(FitsFormatError, match="not inside"):
        read_exposure(path, bbox=Box(-100, 0, 5, 5))


def test_write_is_atomic_and_refuses_overwrite(tmp_path, rng):
    exposure = make_exposure(rng, None)
    path = write_exposure(exposure, tmp_path / "exp.fits")
    with pytest.raises(FileExistsError, match=r"exp\.fits"):
        write_exposure(exposure, path)
    original = exposure.masked_image.copy()
    exposure.masked_image.image[...] = 0.0
    exposure.metadata["BAD"] = object()
    with pytest.raises(TypeError, match="JSON"):
        write_exposure(exposure, path, overwrite=True)
    # the failed write left the earlier file untouched and no temporary behind
    assert read_exposure(path).masked_image == original
    assert [p.name for p in tmp_path.iterdir()] == ["exp.fits"]


# -- LSST afw files --------------------------------------------------------------------------


def test_read_lsst_afw_exposure():
    path = data_path("lsst_afw_hsc", "HSC-0908120-056-small.fits")
    exposure = read_exposure(path)
    assert exposure.bbox == Box(100, 100, 200, 200)
    planes = exposure.mask.planes
    assert {"BAD", "SAT", "INTRP", "CR", "EDGE", "DETECTED", "NO_DATA", "CROSSTALK"} <= set(planes)
    assert planes["DETECTED"] == 5 and planes["CROSSTALK"] == 8
    raw_mask = fits.getdata(path, 2).astype(np.int64)
    assert np.array_equal(exposure.mask.array, raw_mask)
    np.testing.assert_array_equal(exposure.variance, fits.getdata(path, 3))
    assert np.all(np.isfinite(exposure.image)) and np.all(exposure.variance > 0)
    # pixel -> sky agrees with astropy on the original header to 1e-6 arcsec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        original = WCS(fits.getheader(path, 1))
    assert original.sip is not None and exposure.wcs.sip is not None
    cols, rows = np.meshgrid(np.arange(0, 200, 7.0), np.arange(0, 200, 7.0))
    expected = np.array(original.all_pix2world(cols, rows, 0))
    got = np.array(exposure.pixel_to_sky(cols + 100, rows + 100))
    separation = (
        np.hypot((got[0] - expected[0]) * np.cos(np.deg2rad(expected[1])), got[1] - expected[1])
        * 3600
    )
    assert separation.max() < 1e-6


def test_lsst_exposure_round_trips_through_skydiff_layout(tmp_path):
    exposure = read_exposure(data_path("lsst_afw_hsc", "HSC-0908120-056-small.fits"))
    back = read_exposure(write_exposure(exposure, tmp_path / "hsc.fits"))
    assert back.masked_image == exposure.masked_image
    np.testing.assert_array_equal(
        back.pixel_to_sky(150.0, 160.0), exposure.pixel_to_sky(150.0, 160.0)
    )


# -- plain images ----------------------------------------------------------------------------

DECAM = ("legacypipe_decam", "testcase6", "images", "decam", "CP", "V4.8.2a", "CP20171112")
STEM = "c4d_171113_061941_{}_r_ls9.S4.fits"


def decam(kind):
    return data_path(*DECAM, STEM.format(kind))


def test_read_plain_decam_with_weight_and_dq():
    exposure = read_image(
        decam("ooi"), weight=decam("oow"), mask=decam("ood"), mask_values=DECAM_CP_MASK_VALUES
    )
    raw = fits.getdata(decam("ooi"), 1)
    weight = fits.getdata(decam("oow"), 1)
    dq = fits.getdata(decam("ood"), 1)
    assert exposure.image.shape == raw.shape == (100, 101)
    good = weight > 0
    np.testing.assert_allclose(exposure.variance[good], 1.0 / weight[good], rtol=1e-6)
    assert np.array_equal(exposure.mask.get("NO_DATA"), ~good)
    assert np.array_equal(exposure.mask.get("SAT"), np.isin(dq, [3, 4]))
    assert exposure.band == "r" and exposure.visit_info.visit == 695773
    assert exposure.visit_info.detector == 28
    assert exposure.visit_info.exposure_time == 88.0
    assert exposure.visit_info.mjd == pytest.approx(58070.26367856 + 44 / 86400)
    # TPV distortion: our parent-frame WCS agrees with astropy on the original header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = WCS(fits.getheader(decam("ooi"), 1))
    x0, y0 = exposure.bbox.x0, exposure.bbox.y0
    np.testing.assert_allclose(
        exposure.pixel_to_sky(x0 + 10.0, y0 + 20.0),
        original.all_pix2world(10.0, 20.0, 0),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    "stem", ["c4d_140818_232043_{}_z_ls9.N12.fits", "c4d_150329_083505_{}_g_ls9.N11.fits"]
)
def test_variance_estimated_from_image_noise(stem):
    folder = {"N12": "CP20140818", "N11": "CP20150328"}[stem.split(".")[1]]
    base = data_path("legacypipe_decam", "testcase3", "images", "decam", "CP", "V4.8.2a", folder)
    image_path = base / stem.format("ooi")
    estimated = read_image(image_path)
    weight = fits.getdata(base / stem.format("oow"), 1)
    shipped_sigma = np.sqrt(np.median(1.0 / weight))
    estimated_sigma = np.sqrt(np.median(estimated.variance))
    # tiny (51x41), crowded cut-outs: the noise estimate agrees with the CP weight map to 10%
    assert estimated_sigma == pytest.approx(shipped_sigma, rel=0.10)
    with_gain = read_image(image_path, gain=4.0)
    assert np.all(with_gain.variance >= estimated.variance)
    assert with_gain.variance.max() > 1.5 * estimated.variance.max()


def test_read_any_dispatches(tmp_path, rng):
    assert read_any(decam("ooi")).visit_info.visit == 695773
    exposure = make_exposure(rng, None)
    path = write_exposure(exposure, tmp_path / "e.fits")
    assert read_any(path).masked_image == exposure.masked_image


# -- bad input -------------------------------------------------------------------------------


def write_plain(path, data, header=None, extra=()):
    hdus = [fits.PrimaryHDU(data, header=header), *extra]
    fits.HDUList(hdus).writeto(path)
    return path


def celestial_header():
    header = fits.Header()
    header.update(
        CTYPE1="RA---TAN",
        CTYPE2="DEC--TAN",
        CRVAL1=10.0,
        CRVAL2=20.0,
        CRPIX1=5.0,
        CRPIX2=5.0,
        CD1_1=-5e-5,
        CD1_2=0.0,
        CD2_1=0.0,
        CD2_2=5e-5,
    )
    return header


def test_missing_and_non_fits_files(tmp_path):
    with pytest.raises(FitsFormatError, match="does not exist"):
        read_exposure(tmp_path / "nope.fits")
    (tmp_path / "text.fits").write_text("this is not FITS at all\n" * 200)
    with pytest.raises(FitsFormatError, match=r"text\.fits.*not a readable FITS"):
        read_image(tmp_path / "text.fits")
    with pytest.raises(FitsFormatError, match="directory"):
        read_image(tmp_path)


def test_truncated_file(tmp_path, rng):
    path = write_exposure(make_exposure(rng, None), tmp_path / "e.fits")
    data = path.read_bytes()
    for cut in (len(data) - 3000, 4000):
        truncated = tmp_path / f"cut{cut}.fits"
        truncated.write_bytes(data[:cut])
        with pytest.raises(FitsFormatError, match=f"cut{cut}.fits.*(truncated|missing)"):
            read_exposure(truncated)


def test_missing_and_extra_hdus(tmp_path, rng):
    path = write_exposure(make_exposure(rng, None), tmp_path / "e.fits")
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
    fits.HDUList([hdus[0], hdus[1], hdus[3]]).writeto(tmp_path / "missing.fits")
    with pytest.raises(FitsFormatError, match=r"missing\.fits: missing extension.*MASK"):
        read_exposure(tmp_path / "missing.fits")
    extra = fits.ImageHDU(np.zeros((2, 2)), name="JUNK")
    fits.HDUList([*hdus, extra]).writeto(tmp_path / "extra.fits")
    with pytest.raises(FitsFormatError, match=r"extra\.fits: unexpected extension.*JUNK"):
        read_exposure(tmp_path / "extra.fits")
    two = write_plain(
        tmp_path / "two.fits",
        np.zeros((4, 4)),
        celestial_header(),
        [fits.ImageHDU(np.zeros((4, 4)))],
    )
    with pytest.raises(FitsFormatError, match=r"two\.fits: 2 image HDUs"):
        read_image(two)
    with pytest.raises(FitsFormatError, match="no 2-d image"):
        read_image(write_plain(tmp_path / "empty.fits", None))


def test_shape_mismatch(tmp_path, rng):
    path = write_exposure(make_exposure(rng, None), tmp_path / "e.fits")
    with fits.open(path) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[3] = fits.ImageHDU(np.zeros((5, 5), np.float32), header=hdus[3].header)
    fits.HDUList(hdus).writeto(tmp_path / "bad.fits")
    with pytest.raises(FitsFormatError, match=r"bad\.fits: image, mask and variance shapes"):
        read_exposure(tmp_path / "bad.fits")
    image = write_plain(tmp_path / "img.fits", np.ones((8, 8)), celestial_header())
    weight = write_plain(tmp_path / "w.fits", np.ones((8, 9)))
    with pytest.raises(FitsFormatError, match=r"w\.fits: weight shape \(8, 9\)"):
        read_image(image, weight=weight)


def test_bad_wcs(tmp_path):
    linear = fits.Header({"CTYPE1": "X", "CTYPE2": "Y", "CRPIX1": 1.0, "CRPIX2": 1.0})
    with pytest.raises(FitsFormatError, match=r"lin\.fits.*not a 2-d celestial"):
        read_image(write_plain(tmp_path / "lin.fits", np.ones((5, 5)), linear))
    path = write_plain(tmp_path / "inf.fits", np.ones((5, 5)), celestial_header())
    raw = path.read_bytes()
    card = fits.Card("CRVAL1", 10.0).image.encode()
    assert card in raw
    path.write_bytes(raw.replace(card, b"CRVAL1  =              1.0E999".ljust(80)))
    with pytest.raises(FitsFormatError, match=r"inf\.fits.*non-finite"):
        read_image(path)
    header = celestial_header()
    header.update(CD1_1=1e-5, CD1_2=2e-5, CD2_1=1e-5, CD2_2=2e-5)  # rank 1
    with pytest.raises(FitsFormatError, match=r"singular\.fits.*(singular|WCS)"):
        read_image(write_plain(tmp_path / "singular.fits", np.ones((5, 5)), header))
    with pytest.raises(FitsFormatError, match="no WCS"):
        read_image(write_plain(tmp_path / "nowcs.fits", np.ones((5, 5))))


def test_non_finite_pixels_become_no_data(tmp_path):
    data = np.ones((10, 10), np.float32)
    data[2, 3], data[5, 5] = np.nan, np.inf
    exposure = read_image(
        write_plain(tmp_path / "nan.fits", data, celestial_header()),
        variance=write_plain(tmp_path / "var.fits", np.ones((10, 10))),
    )
    no_data = exposure.mask.get("NO_DATA")
    assert no_data.sum() == 2 and no_data[2, 3] and no_data[5, 5]
    assert np.isnan(exposure.image[5, 5]) and np.isinf(exposure.variance[5, 5])
    assert np.all(exposure.image[~no_data] == 1.0)
