"""Tests of the survey simulator skydiff.sim."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
from astropy.table import Table

from skydiff.errors import InvalidParameterError
from skydiff.image import Box
from skydiff.io import read_exposure
from skydiff.math import adaptive_moments, half_max_fwhm
from skydiff.psf import MoffatPsf, VaryingAnalyticPsf
from skydiff.sim import (
    Camera,
    SkyModel,
    SurveyConfig,
    magnitude_to_njy,
    simulate_exposure,
    simulate_survey,
    write_survey,
)
from skydiff.sim._moffat import moffat_stamp
from skydiff.sim._render import galaxy_stamp

#: Nothing on the sky: for noise tests.
EMPTY_SKY = SkyModel(
    star_density=0, bright_star_density=0, galaxy_density=0, n_transients=0, n_variables=0
)
#: Bright, unsaturated stars and nothing else: for PSF, centroid and flux tests.
STAR_FIELD = SkyModel(
    star_density=25,
    star_mag_range=(16.0, 18.5),
    bright_star_density=0,
    galaxy_density=0,
    n_transients=0,
    n_variables=0,
)


@pytest.fixture(scope="module")
def survey():
    return simulate_survey(SurveyConfig(n_visits=2, seed=11), Camera.small())


@pytest.fixture(scope="module")
def star_exposure():
    config = SurveyConfig(seed=5, seeing_range=(0.8, 1.0), sky=STAR_FIELD)
    return simulate_exposure(config, Camera.single(512, bad_columns=1), keep_model=True)


def sky_model(exposure) -> np.ndarray:
    """The sky plane of an exposure from its metadata (level at the centre plus slopes)."""
    meta, bbox = exposure.metadata, exposure.bbox
    cx, cy = bbox.center
    y, x = np.mgrid[bbox.y0 : bbox.y_end, bbox.x0 : bbox.x_end]
    return meta["SKYLEVEL"] + meta["SKYSLPX"] * (x - cx) + meta["SKYSLPY"] * (y - cy)


def isolated_stars(sim, *, min_counts: float, radius: int) -> Table:
    """Stars with no SAT or BAD pixel, nor source above 0.1% of their flux, within ``radius``."""
    truth, bbox = sim.truth, sim.exposure.bbox
    x, y, flux = (np.asarray(truth[c]) for c in ("x", "y", "flux_counts"))
    flagged = sim.exposure.mask.get(["SAT", "BAD"])
    keep = []
    for k in np.flatnonzero((truth["kind"] == "star") & truth["inside"] & (flux > min_counts)):
        near = np.hypot(x - x[k], y - y[k]) < radius
        near[k] = False
        if not bbox.grown(-radius - 1).contains((x[k], y[k])):
            continue
        clean = not stamp_of(flagged, bbox, x[k], y[k], radius).any()
        if clean and not np.any(flux[near] > 1e-3 * flux[k]):
            keep.append(k)
    return truth[keep]


def stamp_of(image: np.ndarray, bbox: Box, x: float, y: float, half: int) -> np.ndarray:
    ix, iy = round(x), round(y)
    return image[
        iy - half - bbox.y0 : iy + half + 1 - bbox.y0, ix - half - bbox.x0 : ix + half + 1 - bbox.x0
    ]


# -- configuration -------------------------------------------------------------------------


def test_camera_geometry():
    camera = Camera.small()
    assert camera.detector_ids() == (0, 1, 2, 3)
    assert camera.detector_origin(0) == (0, 0)
    assert camera.detector_origin(3) == (276, 276)
    assert camera.focal_plane_center == (265.5, 265.5)
    assert camera.detector_bbox((5, 7)) == Box(5, 7, 256, 256)
    assert Camera.single(4096).n_detectors == 1


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: Camera(width=0), "Camera.width"),
        (lambda: Camera(gain=-1.0), "Camera.gain"),
        (lambda: Camera(bad_columns=100), "Camera.bad_columns"),
        (lambda: SurveyConfig(n_visits=0), "SurveyConfig.n_visits"),
        (lambda: SurveyConfig(seeing_range=(1.0, 0.5)), "SurveyConfig.seeing_range"),
        (lambda: SurveyConfig(psf_beta=1.0), "SurveyConfig.psf_beta"),
        (lambda: SurveyConfig(dec=95.0), "SurveyConfig.dec"),
        (lambda: SurveyConfig(sky_gradient=1e4), "SurveyConfig.sky_gradient"),
        (lambda: SurveyConfig(seed=1.5), "SurveyConfig.seed"),
        (lambda: SkyModel(star_density=-1.0), "SkyModel.star_density"),
        (lambda: SkyModel(galaxy_sersic_range=(0.5, 9.0)), "SkyModel.galaxy_sersic_range"),
        (
            lambda: SkyModel(variable_amplitude_range=(0.1, 1.5)),
            "SkyModel.variable_amplitude_range",
        ),
    ],
)
def test_invalid_parameters_name_the_field(factory, field):
    with pytest.raises(InvalidParameterError, match=field):
        factory()


def test_config_camera_and_survey_pickle(survey):
    for obj in (survey.config, survey.camera, SurveyConfig().with_sky(n_transients=3)):
        assert pickle.loads(pickle.dumps(obj)) == obj
    restored = pickle.loads(pickle.dumps(survey))
    assert restored.config == survey.config
    assert np.array_equal(restored.truth.sources["ra"], survey.truth.sources["ra"])


def test_unknown_visit_or_detector_is_rejected(survey):
    with pytest.raises(InvalidParameterError, match="visit 99"):
        survey[99, 0]
    with pytest.raises(InvalidParameterError, match="detector 4"):
        survey[1, 4]


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_same_pixels_different_seed_different(survey):
    again = simulate_exposure(survey.config, survey.camera, 2, 1)
    first = survey[2, 1]
    assert again.exposure.masked_image == first.exposure.masked_image
    assert np.array_equal(again.truth["x"], first.truth["x"])
    other = simulate_exposure(replace(survey.config, seed=12), survey.camera, 2, 1)
    assert not np.array_equal(other.exposure.image, first.exposure.image)


def test_rendering_order_does_not_matter():
    config, camera = SurveyConfig(n_visits=2, seed=3), Camera.small(n_x=2, n_y=1)
    late_first = simulate_survey(config, camera, cache=False)
    b = late_first[2, 1].exposure.image
    a = late_first[1, 0].exposure.image
    in_order = [sim.exposure.image for sim in simulate_survey(config, camera, cache=False)]
    assert np.array_equal(in_order[0], a)
    assert np.array_equal(in_order[-1], b)


def test_non_zero_origin_moves_everything(survey):
    moved = simulate_exposure(survey.config, survey.camera, 1, 2, origin=(100, -50))
    base = survey[1, 2]
    assert moved.exposure.bbox == Box(100, -50, 256, 256)
    np.testing.assert_allclose(moved.truth["x"], base.truth["x"] + 100, atol=1e-6)
    np.testing.assert_allclose(moved.truth["y"], base.truth["y"] - 50, atol=1e-6)
    np.testing.assert_allclose(moved.exposure.image, base.exposure.image, rtol=1e-5, atol=1e-2)
    ra, dec = base.exposure.pixel_to_sky(10.0, 20.0)
    np.testing.assert_allclose(moved.exposure.pixel_to_sky(110.0, -30.0), (ra, dec), atol=1e-10)


# -- the exposure ----------------------------------------------------------------------------


def test_exposure_carries_calibration_visit_info_and_psf(survey):
    sim = survey[2, 1]
    exposure, conditions = sim.exposure, survey.truth.conditions[1]
    assert exposure.units == "count"
    assert exposure.band == "r" and exposure.physical_filter == "sim-r"
    assert exposure.photo_calib.zero_point == pytest.approx(conditions.zero_point)
    info = exposure.visit_info
    assert (info.visit, info.detector, info.instrument) == (2, 1, "SkydiffSim")
    assert info.mjd == conditions.mjd and info.exposure_time == 30.0
    assert info.boresight_rotation == conditions.rotation
    assert isinstance(exposure.psf, VaryingAnalyticPsf)
    fwhm = conditions.seeing / survey.camera.pixel_scale
    assert exposure.psf.fwhm(128, 128) == pytest.approx(fwhm, rel=0.05)
    assert exposure.image.dtype == np.float32 and exposure.variance.dtype == np.float32
    metadata = json.loads(json.dumps(exposure.metadata))
    assert metadata["GAIN"] == 1.5 and metadata["SEEING"] == conditions.seeing


def test_psf_varies_across_focal_plane_and_between_visits(survey):
    corner = survey[1, 0].exposure.psf.fwhm(0, 0)
    inner = survey[1, 0].exposure.psf.fwhm(255, 255)
    assert corner != pytest.approx(inner, rel=1e-3)
    assert corner == pytest.approx(inner, rel=0.1)
    seeing = [c.seeing for c in survey.truth.conditions]
    assert seeing[0] != seeing[1]


def test_wcs_is_tan_sip_with_realistic_distortion(survey):
    sim = survey[1, 3]
    wcs = sim.exposure.wcs
    assert list(wcs.wcs.ctype) == ["RA---TAN-SIP", "DEC--TAN-SIP"] and wcs.sip is not None
    x = np.array([0.0, 255.0, 0.0, 255.0])
    y = np.array([0.0, 0.0, 255.0, 255.0])
    distorted = np.column_stack(wcs.all_pix2world(x, y, 0))
    linear = np.column_stack(wcs.wcs_pix2world(x, y, 0))
    shift = (
        np.hypot(
            (distorted[:, 0] - linear[:, 0]) * np.cos(np.deg2rad(distorted[:, 1])),
            distorted[:, 1] - linear[:, 1],
        )
        * 3600
        / survey.camera.pixel_scale
    )
    assert 0.05 < shift.max() < 1.5
    truth = sim.truth
    xx, yy = sim.exposure.sky_to_pixel(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
    np.testing.assert_allclose(xx, truth["x"], atol=1e-6)
    np.testing.assert_allclose(yy, truth["y"], atol=1e-6)


def test_visits_have_different_pointings(survey):
    first, second = survey.truth.conditions
    assert (first.boresight_ra, first.boresight_dec) != (second.boresight_ra, second.boresight_dec)
    assert first.rotation != second.rotation
    ra1, _ = survey[1, 0].exposure.pixel_to_sky(100.0, 100.0)
    ra2, _ = survey[2, 0].exposure.pixel_to_sky(100.0, 100.0)
    assert abs(ra1 - ra2) * 3600 > 0.1


# -- noise -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sky_level", [800.0, 60.0])  # normal-approximation and exact Poisson
def test_noise_matches_variance_plane(sky_level):
    config = SurveyConfig(seed=2, sky=EMPTY_SKY, sky_level=sky_level, sky_gradient=0.0)
    camera = Camera.single(512, bad_columns=0)
    sim = simulate_exposure(config, camera, keep_model=True)
    image, variance = sim.exposure.image.astype(float), sim.exposure.variance.astype(float)
    expected = sim.model / camera.gain + (camera.read_noise / camera.gain) ** 2
    np.testing.assert_allclose(variance, expected, rtol=1e-6)
    residual = (image - sim.model) / np.sqrt(variance)
    assert abs(residual.mean()) < 0.01
    assert residual.std() == pytest.approx(1.0, abs=0.02)
    assert image.std() == pytest.approx(np.sqrt(variance.mean()), rel=0.02)


def test_noise_with_sources_and_gradient(star_exposure):
    sim = star_exposure
    good = ~sim.exposure.mask.get(["SAT", "BAD"])
    residual = (sim.exposure.image - sim.model) / np.sqrt(sim.exposure.variance)
    assert residual[good].std() == pytest.approx(1.0, abs=0.02)
    assert np.all(sim.model >= sky_model(sim.exposure) - 0.5)  # sources only add light


def test_sky_level_and_gradient_are_in_the_metadata():
    config = SurveyConfig(seed=2, sky=EMPTY_SKY, sky_gradient=100.0)
    sim = simulate_exposure(config, Camera.small(), detector=3, keep_model=True)
    meta = sim.exposure.metadata
    assert np.hypot(meta["SKYSLPX"], meta["SKYSLPY"]) * Camera.small().focal_plane_radius == (
        pytest.approx(100.0)
    )
    np.testing.assert_allclose(sim.model, sky_model(sim.exposure), rtol=1e-6)


def test_noiseless_option_gives_the_expected_image():
    config = SurveyConfig(seed=2, add_noise=False)
    sim = simulate_exposure(config, Camera.small(bad_columns=0), keep_model=True)
    unsaturated = ~sim.exposure.mask.get("SAT")
    assert np.array_equal(sim.exposure.image[unsaturated], sim.model[unsaturated])


# -- stars: PSF, position, flux ----------------------------------------------------------------


def true_psf_stamp(psf, x: float, y: float) -> np.ndarray:
    """The true PSF at a star's position and sub-pixel phase (measured like the star)."""
    return psf.image_at(x, y, dx=x - round(x), dy=y - round(y))


def test_psf_fwhm_of_isolated_stars_matches_truth(star_exposure):
    sim = star_exposure
    exposure, psf = sim.exposure, sim.exposure.psf
    stars = isolated_stars(sim, min_counts=1e5, radius=25)
    assert len(stars) >= 5
    residual = exposure.image - sky_model(exposure)
    ratios, analytic = [], []
    for star in stars:
        x, y = star["x"], star["y"]
        measured = half_max_fwhm(stamp_of(residual, exposure.bbox, x, y, psf.kernel_size // 2))
        ratios.append(measured / half_max_fwhm(true_psf_stamp(psf, x, y)))
        analytic.append(measured / psf.fwhm(x, y))
        assert ratios[-1] == pytest.approx(1.0, abs=0.03)
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    assert np.median(analytic) == pytest.approx(1.0, abs=0.03)  # pixels broaden it a little


def test_star_moments_match_psf_moments(star_exposure):
    sim = star_exposure
    exposure, psf = sim.exposure, sim.exposure.psf
    residual = exposure.image - sky_model(exposure)
    stars = isolated_stars(sim, min_counts=1e5, radius=25)
    sizes = []
    for star in stars:
        x, y = star["x"], star["y"]
        stamp = stamp_of(residual, exposure.bbox, x, y, psf.kernel_size // 2)
        _, _, ixx, iyy, ixy = adaptive_moments(stamp)
        _, _, pxx, pyy, pxy = adaptive_moments(true_psf_stamp(psf, x, y))
        assert ixx == pytest.approx(pxx, rel=0.04)
        assert iyy == pytest.approx(pyy, rel=0.04)
        assert ixy == pytest.approx(pxy, abs=0.04 * pxx)
        sizes.append((ixx + iyy) / (pxx + pyy))
    assert np.median(sizes) == pytest.approx(1.0, abs=0.015)


def test_star_centroids_match_truth_positions(star_exposure):
    sim = star_exposure
    exposure = sim.exposure
    residual = exposure.image - sky_model(exposure)
    stars = isolated_stars(sim, min_counts=1e5, radius=25)
    assert len(stars) >= 5
    for star in stars:
        half = 12
        stamp = stamp_of(residual, exposure.bbox, star["x"], star["y"], half)
        xc, yc, *_ = adaptive_moments(stamp)
        assert xc + round(star["x"]) - half == pytest.approx(star["x"], abs=0.05)
        assert yc + round(star["y"]) - half == pytest.approx(star["y"], abs=0.05)


def test_aperture_flux_of_isolated_stars_matches_truth(star_exposure):
    sim = star_exposure
    exposure, psf = sim.exposure, sim.exposure.psf
    residual = exposure.image - sky_model(exposure)
    half = psf.kernel_size // 2
    offsets = np.arange(-half, half + 1)
    stars = isolated_stars(sim, min_counts=1e5, radius=25)
    assert len(stars) >= 5
    for star in stars:
        x, y = star["x"], star["y"]
        dx, dy = x - round(x), y - round(y)
        radius = 2.5 * psf.fwhm(x, y)
        aperture = np.hypot(offsets[None, :] - dx, offsets[:, None] - dy) < radius
        enclosed = psf.image_at(x, y, dx=dx, dy=dy)[aperture].sum()  # aperture correction
        total = stamp_of(residual, exposure.bbox, x, y, half)[aperture].sum() / enclosed
        assert total == pytest.approx(star["flux_counts"], rel=0.02)


def test_truth_fluxes_follow_the_zero_point(star_exposure):
    truth, calib = star_exposure.truth, star_exposure.exposure.photo_calib
    np.testing.assert_allclose(truth["flux_counts"] * calib.calibration_mean, truth["flux_njy"])
    assert magnitude_to_njy(31.4) == pytest.approx(3631e9 * 10 ** (-0.4 * 31.4))


def test_rendered_star_matches_exact_pixel_integral():
    config = SurveyConfig(seed=4, add_noise=False, sky=replace(STAR_FIELD, star_density=10))
    sim = simulate_exposure(config, Camera.single(512, bad_columns=0), keep_model=True)
    psf, bbox = sim.exposure.psf, sim.exposure.bbox
    star = isolated_stars(sim, min_counts=1e4, radius=30)[0]
    x, y = star["x"], star["y"]
    ix, iy = round(x), round(y)
    exact = star["flux_counts"] * moffat_stamp(
        psf.local_psf(x, y), psf.kernel_size, dx=x - ix, dy=y - iy
    )
    rendered = stamp_of(sim.model - sky_model(sim.exposure), bbox, x, y, psf.kernel_size // 2)
    assert np.abs(rendered - exact).max() < 2e-3 * exact.max()


def test_moffat_stamp_is_an_accurate_pixel_integral():
    psf = MoffatPsf(3.0, beta=3.5, axis_ratio=0.8, position_angle=30.0)
    fine = MoffatPsf(21.0, beta=3.5, axis_ratio=0.8, position_angle=30.0, size=25 * 7)
    reference = fine.image_at(0, 0).reshape(25, 7, 25, 7).sum(axis=(1, 3))
    stamp = moffat_stamp(psf, 25)
    assert np.abs(stamp - reference).max() < 2e-4 * reference.max()
    assert stamp.sum() == pytest.approx(1.0)


# -- galaxies, transients, variables -------------------------------------------------------------


def test_galaxy_stamp_has_the_requested_size():
    radius = 3.0  # pixels; n = 0.5 is a Gaussian with sigma = r_e / sqrt(2 ln 2)
    form = np.eye(2) / radius**2
    stamp = galaxy_stamp(form, 0.5, 0.2, -0.3)
    _, _, ixx, iyy, _ = adaptive_moments(stamp)
    sigma2 = radius**2 / (2 * np.log(2)) + 1 / 12
    assert ixx == pytest.approx(sigma2, rel=0.02) and iyy == pytest.approx(sigma2, rel=0.02)
    assert stamp.sum() == pytest.approx(1.0)


def test_galaxies_are_extended_and_conserve_flux():
    sky = SkyModel(
        star_density=0,
        bright_star_density=0,
        galaxy_density=2,
        n_transients=0,
        n_variables=0,
        galaxy_radius_range=(0.5, 0.8),
        galaxy_sersic_range=(0.5, 1.5),
    )
    config = SurveyConfig(seed=8, add_noise=False, sky=sky)
    sim = simulate_exposure(config, Camera.single(1024, bad_columns=0), keep_model=True)
    exposure = sim.exposure
    light = sim.model - sky_model(exposure)
    galaxies = sim.truth[(sim.truth["kind"] == "galaxy") & sim.truth["inside"]]
    checked = 0
    for galaxy in galaxies:
        others = np.hypot(galaxies["x"] - galaxy["x"], galaxies["y"] - galaxy["y"])
        if np.sum(others < 105) > 1 or not exposure.bbox.grown(-60).contains(
            (galaxy["x"], galaxy["y"])
        ):
            continue
        stamp = stamp_of(light, exposure.bbox, galaxy["x"], galaxy["y"], 55)
        assert stamp.sum() == pytest.approx(galaxy["flux_counts"], rel=1e-3)
        _, _, ixx, iyy, _ = adaptive_moments(stamp)
        pxx, pyy, _ = exposure.psf.second_moments(galaxy["x"], galaxy["y"])
        assert ixx + iyy > 1.3 * (pxx + pyy)
        checked += 1
    assert checked >= 3


def test_transients_and_variables_have_per_visit_fluxes(survey):
    truth = survey.truth
    assert truth.transient_flux.shape == (len(truth.transients), 2)
    assert truth.variable_flux.shape == (len(truth.variables), 2)
    mjd = np.array([c.mjd for c in truth.conditions])
    before = mjd[None, :] <= np.asarray(truth.transients["mjd_start"])[:, None]
    assert np.all(truth.transient_flux[before] == 0)
    assert np.all(truth.transient_flux <= np.asarray(truth.transients["peak_flux_njy"])[:, None])
    assert np.all(truth.variable_flux > 0)
    for visit in survey.visits:
        index = truth.visit_index(visit)
        rows = [sim.truth for sim in survey.exposures(visit)]
        table = Table(np.concatenate([np.asarray(t[["id", "kind", "flux_njy"]]) for t in rows]))
        for kind, flux, ids in (
            ("transient", truth.transient_flux, truth.transients["id"]),
            ("variable", truth.variable_flux, truth.variables["id"]),
        ):
            seen = table[table["kind"] == kind]
            expected = dict(zip(ids, flux[:, index], strict=True))
            assert all(row["flux_njy"] == expected[row["id"]] for row in seen)
    assert np.unique(
        np.concatenate([truth.sources["id"], truth.transients["id"], truth.variables["id"]])
    ).size == (len(truth.sources) + len(truth.transients) + len(truth.variables))


def test_star_luminosity_function_is_a_power_law():
    config = SurveyConfig(seed=1).with_sky(star_density=200.0, star_mag_range=(18.0, 24.0))
    survey = simulate_survey(config, Camera.small())
    stars = survey.truth.sources[survey.truth.sources["kind"] == "star"]
    mags = np.asarray(stars["mag"])[np.asarray(stars["mag"]) >= 18.0]
    faint, bright = np.sum(mags > 23.0), np.sum(mags < 19.0)
    assert faint / bright == pytest.approx(10 ** (0.3 * 5), rel=0.25)


# -- detector defects ------------------------------------------------------------------------


def test_saturated_stars_are_flagged_and_bleed():
    config = SurveyConfig(seed=6, add_noise=False).with_sky(
        bright_star_density=3.0, bright_mag_range=(11.0, 13.0)
    )
    camera = Camera.single(512, bad_columns=0)
    sim = simulate_exposure(config, camera, keep_model=True)
    exposure, truth = sim.exposure, sim.truth
    sat = exposure.mask.get("SAT")
    assert truth["is_saturated"].sum() >= 2
    assert np.all(exposure.image[sat] == np.float32(camera.saturation))
    saturated = truth[truth["is_saturated"] & (truth["kind"] == "star")]
    star = saturated[np.argmax(saturated["flux_counts"])]
    ix, iy = round(star["x"]) - exposure.bbox.x0, round(star["y"]) - exposure.bbox.y0
    column_run = np.sum(sat[:, ix])
    row_run = np.sum(sat[iy, :])
    assert column_run > row_run  # the bleed trail runs along the column
    assert np.sum(sim.model > camera.saturation) < sat.sum()
    trail_ends_inside = not (sat[0].any() or sat[-1].any())
    if trail_ends_inside:  # bleeding moves charge, it does not destroy it
        assert exposure.image.sum(dtype=float) == pytest.approx(
            sim.model.sum(dtype=float), rel=1e-6
        )


def test_bad_columns_are_flagged_and_fixed_for_the_camera(survey):
    masks = [survey[visit, 0].exposure.mask.get("BAD") for visit in survey.visits]
    assert np.array_equal(masks[0], masks[1])
    columns = np.flatnonzero(masks[0].any(axis=0))
    assert len(columns) == survey.camera.bad_columns
    for column in columns:
        rows = np.flatnonzero(masks[0][:, column])
        assert rows[-1] == 255 and np.all(np.diff(rows) == 1)
    assert np.all(survey[1, 0].exposure.image[masks[0]] == 0)


# -- survey and files --------------------------------------------------------------------------


def test_survey_is_lazy_and_iterable(survey):
    assert len(survey) == 8
    assert survey.data_ids[0] == (1, 0) and survey.data_ids[-1] == (2, 3)
    seen = [(sim.visit, sim.detector) for sim in survey]
    assert seen == survey.data_ids
    assert survey.cache and survey[1, 0] is survey[1, 0]
    uncached = simulate_survey(survey.config, survey.camera, cache=False)
    first, second = uncached[1, 0], uncached[1, 0]
    assert first is not second
    assert first.exposure.masked_image == second.exposure.masked_image


def test_write_survey_round_trips(tmp_path):
    survey = simulate_survey(SurveyConfig(n_visits=1, seed=9), Camera.small(n_x=2, n_y=1))
    paths = write_survey(survey, tmp_path)
    names = {p.name for p in paths}
    assert {
        "calexp_v1_d0.fits",
        "calexp_v1_d1.fits",
        "truth_v1_d1.ecsv",
        "truth_sources.ecsv",
        "survey_config.json",
    } <= names
    for detector in (0, 1):
        original = survey[1, detector]
        read = read_exposure(tmp_path / f"calexp_v1_d{detector}.fits")
        assert read.masked_image == original.exposure.masked_image
        assert read.psf == original.exposure.psf
        assert read.visit_info == original.exposure.visit_info
        assert read.photo_calib == original.exposure.photo_calib
        assert read.metadata == original.exposure.metadata
        np.testing.assert_allclose(
            read.pixel_to_sky(30.0, 200.0), original.exposure.pixel_to_sky(30.0, 200.0), atol=1e-12
        )
        truth = Table.read(tmp_path / f"truth_v1_d{detector}.ecsv")
        assert np.array_equal(truth["id"], original.truth["id"])
        np.testing.assert_allclose(truth["x"], original.truth["x"])
    document = json.loads((tmp_path / "survey_config.json").read_text())
    assert document["config"]["seed"] == 9 and document["camera"]["n_x"] == 2
    with pytest.raises(FileExistsError):
        write_survey(survey, tmp_path)
