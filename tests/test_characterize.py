import numpy as np
import pytest
from astropy.io import fits

from skydiff.characterize import CharacterizeConfig, CharacterizeTask, StarSelectorTask
from skydiff.cli import main
from skydiff.detection import SourceDetectionTask, SourceMeasurementTask
from skydiff.errors import InsufficientSourcesError
from skydiff.io import DECAM_CP_MASK_VALUES, read_exposure, read_image
from skydiff.psf import GaussianPsf, ImagePsf
from skydiff.sim import Camera, SurveyConfig, simulate_exposure, sky_image

from .conftest import data_path


@pytest.fixture(scope="module")
def bright_field():
    """Many bright, unsaturated stars and few faint sources: a field where the PSF is knowable."""
    config = SurveyConfig(seed=5, sky_gradient=60.0).with_sky(
        star_density=30.0,
        star_mag_range=(14.0, 19.0),
        galaxy_density=1.0,
        galaxy_mag_range=(19.0, 22.0),
        bright_star_density=0.0,
        n_transients=0,
        n_variables=0,
    )
    camera = Camera.single(2048, saturation=1e7)
    simulated = simulate_exposure(config, camera, visit=1, detector=0, origin=(500, 1200))
    exposure = simulated.exposure
    true_psf = exposure.psf
    truth = simulated.truth
    exposure = exposure.replace(psf=None)
    exposure.variance[...] /= 1.345  # a variance plane that underestimates the noise
    return exposure, true_psf, truth, CharacterizeTask().run(exposure)


def test_psf_fitted_from_scratch_matches_the_truth(bright_field):
    exposure, true_psf, _, result = bright_field
    psf = result.exposure.psf
    b = exposure.bbox
    inset = 25
    points = [
        b.center,
        (b.x0 + inset, b.y0 + inset),
        (b.x_end - inset, b.y0 + inset),
        (b.x0 + inset, b.y_end - inset),
        (b.x_end - inset, b.y_end - inset),
    ]
    for x, y in points:
        fitted, truth = psf.kernel_image(x, y), true_psf.kernel_image(x, y)
        n = min(len(fitted), len(truth))
        a, c = (len(fitted) - n) // 2, (len(truth) - n) // 2
        difference = fitted[a : a + n, a : a + n] - truth[c : c + n, c : c + n]
        assert np.abs(difference).max() < 0.01 * truth.max(), (x, y)
        assert ImagePsf(fitted).fwhm(0, 0) == pytest.approx(ImagePsf(truth).fwhm(0, 0), rel=0.02)
    assert result.sources["psf_used"].sum() >= 50


def test_background_and_variance_recovered(bright_field):
    exposure, _, _, result = bright_field
    sky = sky_image(exposure)
    residual = result.background.evaluate(exposure.bbox) - sky
    noise = np.sqrt(np.median(exposure.variance) * 1.345)
    # away from the stars' footprints and the image edge (one bin)
    away = ~result.exposure.mask.get("DETECTED")
    away[:128], away[-128:], away[:, :128], away[:, -128:] = False, False, False, False
    assert abs(np.mean(residual[away])) < 0.01 * noise
    assert np.sqrt(np.mean(residual[away] ** 2)) < 0.01 * noise
    assert result.variance_factor == pytest.approx(1.345, abs=0.05)
    assert result.metadata["variance_factor"] == result.variance_factor


def test_result_is_a_new_exposure_with_detections(bright_field):
    exposure, _, _, result = bright_field
    assert exposure.psf is None and not exposure.mask.get("DETECTED").any()
    assert result.exposure.mask.get("DETECTED").any()
    assert {"psf_candidate", "psf_used", "psf_flux", "snr"} <= set(result.sources.colnames)


def test_star_selector_spreads_and_fails_clearly(bright_field):
    _, _, _, result = bright_field
    sources = result.sources
    selection = StarSelectorTask().run(sources, result.exposure.bbox, fwhm=4.0)
    x = np.asarray(sources["x"])[selection.selected]
    assert np.ptp(x) > 0.7 * result.exposure.bbox.width  # spread over the image
    with pytest.raises(InsufficientSourcesError, match="stars pass the selection"):
        StarSelectorTask().run(sources[:3], result.exposure.bbox, fwhm=4.0)


@pytest.mark.parametrize("frame", ["a", "b", "c", "d", "e"])
def test_real_decam_psf_fwhm_agrees_with_the_pipeline_header(frame):
    """Real DECam i-band frames with a handful of stars: a constant PSF is fitted."""
    path = data_path("sfft_decam_decorr", "input_data", f"DEC-OBS18{frame}.mini.fits")
    header = fits.getheader(path)
    exposure = read_image(path, gain=header["GAIN"])
    config = CharacterizeConfig().with_overrides(
        [
            "background.bin_size=64",
            "psf_determiner.spatial_order=0",
            "psf_determiner.min_stars=3",
            "psf_determiner.holdout_fraction=0",
            "psf_determiner.stamp_size=31",
            "star_selector.min_stars=3",
            "star_selector.snr_min=10",
            "star_selector.isolation_radius=2",
        ]
    )
    result = CharacterizeTask(config).run(exposure)
    assert len(result.sources) >= 15
    fwhm = result.exposure.psf.fwhm(*result.exposure.bbox.center)
    # the DECam pipeline's FWHM card measures the same seeing on the original frame
    assert fwhm == pytest.approx(header["FWHM"], rel=0.10)


def test_real_decam_sources_found():
    base = data_path(
        "legacypipe_decam", "testcase6", "images", "decam", "CP", "V4.8.2a", "CP20171112"
    )
    image = base / "c4d_171113_061941_ooi_r_ls9.S4.fits"
    exposure = read_image(
        image,
        weight=str(image).replace("ooi", "oow"),
        mask=str(image).replace("ooi", "ood"),
        mask_values=DECAM_CP_MASK_VALUES,
    )
    exposure = exposure.replace(psf=GaussianPsf(exposure.metadata["FWHM"]))
    exposure.image[...] -= exposure.metadata["AVSKY"]
    detections = SourceDetectionTask().run(exposure)
    catalog = SourceMeasurementTask().run(exposure, detections).catalog
    # the saturated star at the centre is one source (not split along its masked bleed
    # trail), flagged saturated; its centroid is uncertain by the trail's width
    saturated = catalog[np.asarray(catalog["flag_saturated"])]
    assert len(saturated) == 1
    assert abs(saturated["x"][0] - 51) < 8 and abs(saturated["y"][0] - 58) < 8
    assert saturated["n_peaks"][0] == 1


def test_cli_characterize(tmp_path, bright_field, capsys):
    exposure, _, _, _ = bright_field
    from skydiff.io import write_exposure

    small = exposure[exposure.bbox.grown(-512)].copy()
    path = write_exposure(small, tmp_path / "in.fits")
    out, catalog = tmp_path / "out.fits", tmp_path / "sources.ecsv"
    argv = [
        "characterize",
        str(path),
        "-o",
        str(out),
        "--catalog",
        str(catalog),
        "--metrics",
        str(tmp_path / "m.json"),
        "-c",
        "psf_determiner.spatial_order=1",
    ]
    assert main(argv) == 0
    assert "PSF FWHM" in capsys.readouterr().out
    result = read_exposure(out)
    assert result.psf is not None and result.mask.get("DETECTED").any()
    from astropy.table import Table

    assert len(Table.read(catalog)) > 20
    assert main(argv) == 1  # refuses to overwrite
