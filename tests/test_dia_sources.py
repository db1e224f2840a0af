"""DetectAndMeasureTask on synthetic difference images of known content."""

import math
import pickle

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from skydiff.diffim._dia_sources import (
    DetectAndMeasureConfig,
    DetectAndMeasureTask,
    associate_dipoles,
)
from skydiff.errors import InvalidExposureError, InvalidParameterError
from skydiff.image import Box, Exposure, MaskedImage, VisitInfo
from skydiff.psf import GaussianPsf, ImagePsf, MoffatPsf

FWHM = 3.5
NOISE = 2.0  # nJy per pixel
ORIGIN = (1000, 2000)
PSF = GaussianPsf(FWHM)


def beam(psf):
    """Effective number of pixels of PSF photometry: S/N = flux / (noise sqrt(beam))."""
    return 1.0 / np.sum(psf.kernel_image(0.0, 0.0) ** 2)


def render(shape, psf, x, y, flux):
    """Noiseless image of point sources at array positions (exact pixel integration)."""
    image = np.zeros(shape)
    half = psf.kernel_size // 2
    for xi, yi, fi in zip(x, y, flux, strict=True):
        cx, cy = round(xi), round(yi)
        stamp = psf.image_at(xi, yi, dx=xi - cx, dy=yi - cy)
        image[cy - half : cy + half + 1, cx - half : cx + half + 1] += fi * stamp
    return image


def exposure_of(image, variance, psf, *, wcs=None):
    bbox = Box.from_shape(image.shape, x0=ORIGIN[0], y0=ORIGIN[1])
    return Exposure(
        MaskedImage(image, None, variance, bbox=bbox),
        psf=psf,
        wcs=wcs,
        units="nJy",
        band="r",
        visit_info=VisitInfo(visit=42, detector=7),
    )


def noisy(rng, model, sigma=NOISE):
    return exposure_of(
        model + rng.normal(0, sigma, model.shape), np.full(model.shape, sigma**2), PSF
    )


def tan_wcs(shape):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [ORIGIN[0] + shape[1] / 2, ORIGIN[1] + shape[0] / 2]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return wcs


def grid_positions(rng, shape, spacing, jitter):
    """Array positions on a grid of cells, jittered, away from the borders."""
    ys, xs = np.mgrid[
        spacing : shape[0] - spacing // 2 : spacing, spacing : shape[1] - spacing // 2 : spacing
    ]
    x = xs.ravel() + rng.uniform(-jitter, jitter, xs.size)
    y = ys.ravel() + rng.uniform(-jitter, jitter, xs.size)
    return x, y


def match(table, x, y, radius=2.0):
    """Index into ``table`` of the source nearest each array position, and whether it is near."""
    tree = cKDTree(np.column_stack([table["x"] - ORIGIN[0], table["y"] - ORIGIN[1]]))
    distance, index = tree.query(np.column_stack([x, y]))
    return index, distance < radius


@pytest.fixture(scope="module")
def injected():
    """Point sources of both signs, S/N 5-100, on a 1024 x 1024 difference with a WCS."""
    rng = np.random.default_rng(1)
    shape = (1024, 1024)
    x, y = grid_positions(rng, shape, 32, 6.0)
    n = x.size
    snr = np.concatenate([rng.uniform(7, 10, 300), rng.uniform(5, 7, 100)])
    snr = np.concatenate([snr, np.exp(rng.uniform(np.log(10), np.log(100), n - snr.size))])
    flux = snr * NOISE * np.sqrt(beam(PSF)) * rng.choice([-1.0, 1.0], n)
    model = render(shape, PSF, x, y, flux)
    difference = noisy(rng, model).replace(wcs=tan_wcs(shape))
    result = DetectAndMeasureTask().run(difference)
    return x, y, flux, snr, result


def test_point_sources_are_found_with_the_right_sign(injected):
    x, y, flux, snr, result = injected
    table = result.dia_sources
    index, found = match(table, x, y)
    assert found[snr >= 10].all(), f"missed {np.sum(~found[snr >= 10])} sources of S/N >= 10"
    assert len(table) - found.sum() <= 3  # false detections: 0.5 expected on pure noise
    rows = table[index[found]]
    assert np.array_equal(rows["is_negative"], flux[found] < 0)
    assert not np.any(rows["is_dipole"]) and np.all(rows["is_good"])
    completeness = found[(snr >= 7) & (snr < 10)].mean()
    assert completeness >= 0.9, completeness  # 0.98 expected at a 5 sigma threshold
    meta = result.metadata
    assert meta["n_positive"] + meta["n_negative"] + meta["n_dipoles"] == len(table)
    assert meta["n_dipoles"] == 0 and abs(meta["n_positive"] - meta["n_negative"]) < 80


def test_psf_fluxes_are_unbiased_with_honest_errors(injected):
    x, y, flux, snr, result = injected
    index, found = match(result.dia_sources, x, y)
    rows = result.dia_sources[index[found]]
    measured, error = np.asarray(rows["psf_flux"]), np.asarray(rows["psf_flux_err"])
    true, true_snr = flux[found], snr[found]
    bright = true_snr >= 10
    ratio = measured[bright] / true[bright]
    assert np.average(ratio, weights=true_snr[bright] ** 2) == pytest.approx(1.0, abs=0.015)
    pulls = ((measured - true) / error)[true_snr > 20]
    assert pulls.size > 300
    assert np.std(pulls) == pytest.approx(1.0, abs=0.15)
    assert abs(np.mean(pulls)) < 0.15
    assert np.allclose(np.asarray(rows["snr"]), np.abs(measured) / error)


def test_units_sky_coordinates_and_table_metadata(injected):
    *_, result = injected
    table = result.dia_sources
    units = {"x": "pix", "ra": "deg", "psf_flux": "nJy", "ap_flux_err": "nJy"}
    units |= {"dipole_separation": "pix", "dipole_angle": "deg", "template_psf_flux": "nJy"}
    for name, unit in units.items():
        assert str(table[name].unit) == unit, name
    assert table.colnames[0] == "id" and np.array_equal(table["id"], np.arange(1, len(table) + 1))
    assert table.meta["visit"] == 42 and table.meta["detector"] == 7
    assert table.meta["units"] == "nJy"
    assert np.all(np.abs(np.asarray(table["dec"]) - 2.0) < 0.05)
    assert np.all(np.isnan(np.asarray(table["science_psf_flux"])))


def test_pure_noise_gives_the_expected_few_false_detections():
    rng = np.random.default_rng(2)
    shape = (1024, 1024)
    result = DetectAndMeasureTask().run(noisy(rng, np.zeros(shape)))
    # Peaks above u of a smoothed Gaussian field (Euler characteristic density,
    # correlation sigma sqrt(2) sigma_psf), both signs: about 0.56 here.
    sigma = FWHM / (2 * math.sqrt(2 * math.log(2)))
    u = 5.0
    expected = (
        2 * shape[0] * shape[1] / (2 * sigma**2) * (2 * np.pi) ** -1.5 * u * np.exp(-(u**2) / 2)
    )
    assert 0.3 < expected < 1.0
    assert len(result.dia_sources) <= 3
    assert result.metadata["n_sources"] == len(result.dia_sources)


def dipole_scene(rng, shape, snr, n_dipoles, *, spacing=64):
    """Sources moved by 0.5-1 px between template and science, in grid cells."""
    x, y = grid_positions(rng, shape, spacing, 3.0)
    x, y = x[:n_dipoles], y[:n_dipoles]
    shift = rng.uniform(0.5, 1.0, n_dipoles)
    angle = rng.uniform(-np.pi, np.pi, n_dipoles)
    dx, dy = 0.5 * shift * np.cos(angle), 0.5 * shift * np.sin(angle)
    flux = snr * NOISE * np.sqrt(beam(PSF)) * np.ones(n_dipoles)
    science = render(shape, PSF, x + dx, y + dy, flux)
    template = render(shape, PSF, x - dx, y - dy, flux)
    return x, y, shift, angle, flux, science, template


def check_dipoles(table, x, y, shift, angle, flux):
    index, found = match(table, x, y, radius=1.0)
    assert found.all()
    rows = table[index]
    assert np.all(rows["is_dipole"]) and not np.any(rows["flag_dipole_fit_failed"])
    separation = np.asarray(rows["dipole_separation"])
    assert np.max(np.abs(separation - shift)) < 0.3, separation - shift
    pulls = (separation - shift) / np.asarray(rows["dipole_separation_err"])
    assert np.all(np.abs(pulls) < 4), pulls
    turn = np.angle(np.exp(1j * (np.radians(np.asarray(rows["dipole_angle"])) - angle)))
    assert np.all(np.abs(np.degrees(turn)) < 20)
    pos_flux, neg_flux = np.asarray(rows["dipole_pos_flux"]), -np.asarray(rows["dipole_neg_flux"])
    error = np.hypot(rows["dipole_pos_flux_err"] / pos_flux, rows["dipole_neg_flux_err"] / neg_flux)
    assert np.all(np.abs(np.asarray(rows["dipole_flux_ratio"]) - 1) < 0.02 + 4 * error)
    # flux times separation is what even an unresolved dipole measures well
    moment = pos_flux * separation / (flux * shift)
    assert np.all(np.abs(moment - 1) < 0.02 + 4 * error)
    return rows


def test_bright_dipoles_are_merged_fitted_and_kept_apart_from_distant_pairs():
    rng = np.random.default_rng(3)
    shape = (512, 512)
    x, y, shift, angle, flux, science, template = dipole_scene(rng, shape, 3000.0, 20)
    # pairs of a positive and a negative source 4 FWHM apart are not dipoles
    px, py = grid_positions(rng, shape, 64, 3.0)
    px, py = px[20:], py[20:]
    single = 40.0 * NOISE * np.sqrt(beam(PSF))
    pairs = render(
        shape, PSF, np.r_[px, px + 4 * FWHM], np.r_[py, py], np.r_[1, -1].repeat(px.size) * single
    )
    difference = noisy(rng, science - template + pairs)
    result = DetectAndMeasureTask().run(difference)
    table = result.dia_sources
    check_dipoles(table, x, y, shift, angle, flux)
    assert result.metadata["n_dipoles"] == 20
    for sign, offset in ((1, 0.0), (-1, 4 * FWHM)):
        index, found = match(table, px + offset, py)
        assert found.all()
        assert not np.any(table["is_dipole"][index])
        assert np.all(np.sign(table["psf_flux"][index]) == sign)
    assert len(table) == 20 + 2 * px.size
    # unfitted, the lobes are the smoothed-image peaks, ~1.2 FWHM apart for unresolved dipoles
    config = DetectAndMeasureConfig(fit_dipoles=False)
    unfitted = DetectAndMeasureTask(config).run(difference).dia_sources
    rows = unfitted[match(unfitted, x, y, radius=1.0)[0]]
    assert np.all(rows["is_dipole"]) and np.all(rows["flag_dipole_fit_failed"])
    assert np.allclose(rows["dipole_separation"], 1.2 * FWHM, rtol=0.15)


def test_science_and_template_fix_faint_dipoles_and_classify_sources():
    rng = np.random.default_rng(4)
    shape = (384, 384)
    x, y, shift, angle, flux, science, template = dipole_scene(rng, shape, 200.0, 12)
    # a new source (absent from the template) and a variable that brightened
    extra_x, extra_y = np.array([300.3, 340.6]), np.array([330.2, 200.7])
    f_new, f_old = 30.0 * NOISE * np.sqrt(beam(PSF)), 50.0 * NOISE * np.sqrt(beam(PSF))
    science += render(shape, PSF, extra_x, extra_y, [f_new, 2 * f_old])
    template += render(shape, PSF, extra_x[1:], extra_y[1:], [f_old])
    sci, tmpl = noisy(rng, science), noisy(rng, template)
    difference = exposure_of(sci.image - tmpl.image, sci.variance + tmpl.variance, PSF)
    task = DetectAndMeasureTask()
    table = task.run(difference, science=sci, matched_template=tmpl).dia_sources
    rows = check_dipoles(table, x, y, shift, angle, flux)
    index, found = match(table, extra_x, extra_y)
    assert found.all() and not np.any(table["is_dipole"][index])
    new, variable = table[index]
    assert abs(new["template_psf_flux"]) < 4 * new["template_psf_flux_err"]
    assert new["science_psf_flux"] == pytest.approx(f_new, abs=4 * new["science_psf_flux_err"])
    assert variable["template_psf_flux"] == pytest.approx(f_old, rel=0.1)
    assert variable["psf_flux"] == pytest.approx(f_old, rel=0.1)
    # from the difference alone the separations of these dipoles are far less certain
    alone = DetectAndMeasureTask(DetectAndMeasureConfig(dipole_fit_pre_subtraction=False))
    loose = alone.run(difference, science=sci, matched_template=tmpl).dia_sources
    loose = loose[match(loose, x, y, radius=1.0)[0]]
    ratio = np.nanmedian(loose["dipole_separation_err"] / rows["dipole_separation_err"])
    assert ratio > 3


def test_mask_planes_flag_and_exclude_sources():
    rng = np.random.default_rng(15)
    shape = (256, 256)
    x = np.array([60.2, 120.4, 180.7, 60.5, 120.1, 200.3, 46.0])
    y = np.array([60.3, 60.8, 60.1, 140.6, 180.2, 100.4, 210.5])
    flux = 50 * NOISE * np.sqrt(beam(PSF)) * np.array([1, 1, -1, 1, -1, 1, 1])
    difference = noisy(rng, render(shape, PSF, x, y, flux))
    planes = {1: "SAT", 2: "SAT_TEMPLATE", 3: "STREAK", 4: "HIGH_VARIANCE", 5: "INTRP"}
    for k, plane in planes.items():
        cx, cy = round(x[k]), round(y[k])
        difference.mask.set(plane, _box(shape, cx - 1, cy - 1, cx + 2, cy + 2))
    difference.mask.set("STREAK", _box(shape, 0, round(y[3]), shape[1], round(y[3]) + 1))
    difference.masked_image.set_no_data(_box(shape, 0, 190, 42, shape[0]))  # near source 6
    table = DetectAndMeasureTask().run(difference).dia_sources
    assert len(table) == x.size
    rows = table[match(table, x, y)[0]]
    expected = {
        1: "flag_saturated", 2: "flag_sat_template", 3: "flag_streak",
        4: "flag_high_variance", 5: "flag_interpolated", 6: "flag_no_data",
    }  # fmt: skip
    for k, column in expected.items():
        assert rows[column][k] and not rows[column][0], column
    assert list(rows["is_good"]) == [True, False, False, False, True, True, False]
    config = DetectAndMeasureConfig(exclude_planes=("STREAK", "SAT"))
    result = DetectAndMeasureTask(config).run(difference)
    assert len(result.dia_sources) == x.size - 2
    assert result.metadata["n_excluded"] == 2
    assert result.metadata["n_flagged"] == 2


def _box(shape, x0, y0, x1, y1):
    where = np.zeros(shape, bool)
    where[y0:y1, x0:x1] = True
    return where


def test_inputs_are_not_modified_and_results_pickle():
    rng = np.random.default_rng(6)
    shape = (128, 128)
    *_, science, template = dipole_scene(rng, shape, 300.0, 2, spacing=40)
    science += render(shape, PSF, [100.3], [100.6], [100.0])
    sci, tmpl = noisy(rng, science), noisy(rng, template)
    difference = exposure_of(sci.image - tmpl.image, sci.variance + tmpl.variance, PSF)
    difference.mask.set("SAT", _box(shape, 5, 5, 8, 8))
    before = [e.masked_image.copy() for e in (difference, sci, tmpl)]
    task = DetectAndMeasureTask()
    result = task.run(difference, science=sci, matched_template=tmpl)
    for image, copy in zip((difference, sci, tmpl), before, strict=True):
        assert image.masked_image == copy
    assert not difference.mask.get(["DETECTED", "DETECTED_NEGATIVE"]).any()
    mask = result.difference.mask
    assert mask.get("DETECTED").any() and mask.get("DETECTED_NEGATIVE").any()
    assert result.metadata["n_dipoles"] == 2 and result.metadata["n_positive"] == 1
    restored = pickle.loads(pickle.dumps(result))
    table, copy = result.dia_sources, restored.dia_sources
    assert table.colnames == copy.colnames and table.meta == copy.meta
    for name in table.colnames:
        assert np.array_equal(table[name], copy[name], equal_nan=True), name
        assert table[name].unit == copy[name].unit
    assert restored.metadata.to_dict() == result.metadata.to_dict()
    assert pickle.loads(pickle.dumps(task)).config == task.config


def test_image_psf_and_an_empty_difference():
    rng = np.random.default_rng(7)
    psf = ImagePsf(MoffatPsf(FWHM, beta=3.0).kernel_image(0, 0))
    shape = (384, 384)
    x, y = grid_positions(rng, shape, 24, 4.0)
    flux = 30 * NOISE * np.sqrt(beam(psf)) * rng.choice([-1.0, 1.0], x.size)
    model = render(shape, psf, x, y, flux)
    difference = exposure_of(model + rng.normal(0, NOISE, shape), np.full(shape, NOISE**2), psf)
    table = DetectAndMeasureTask().run(difference).dia_sources
    index, found = match(table, x, y)
    assert found.all() and not np.any(table["is_dipole"][index])
    ratio = np.asarray(table["psf_flux"][index]) / flux
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.015)
    empty = DetectAndMeasureTask().run(exposure_of(np.zeros(shape), np.ones(shape), psf))
    assert len(empty.dia_sources) == 0
    assert set(table.colnames) == set(empty.dia_sources.colnames)
    assert empty.metadata["n_dipoles"] == 0


def test_association_is_one_to_one_and_closest_first():
    positive = np.array([[0.0, 0.0], [10.0, 0.0], [50.0, 50.0]])
    negative = np.array([[1.0, 0.0], [0.5, 0.0], [10.0, 3.0], [80.0, 0.0]])
    i, j = associate_dipoles(positive, negative, 4.0)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (1, 2)]
    i, j = associate_dipoles(positive, negative[:0], 4.0)
    assert i.size == j.size == 0


def test_configuration_and_input_errors():
    with pytest.raises(InvalidParameterError, match="bad_flags"):
        DetectAndMeasureConfig(bad_flags=("flag_nonsense",))
    with pytest.raises(InvalidParameterError, match="dipole_radius"):
        DetectAndMeasureConfig(dipole_radius=0.0)
    config = DetectAndMeasureConfig().with_overrides(["detection.threshold=6", "dipole_radius=2"])
    assert config.detection.threshold == 6.0 and config.detection.polarity == "both"
    assert DetectAndMeasureConfig(flag_planes=("FOO",), bad_flags=("flag_foo",))
    image = exposure_of(np.zeros((64, 64)), np.ones((64, 64)), None)
    with pytest.raises(InvalidExposureError, match="no PSF"):
        DetectAndMeasureTask().run(image)
    image = image.replace(psf=PSF)
    other = exposure_of(np.zeros((64, 60)), np.ones((64, 60)), PSF)
    with pytest.raises(InvalidExposureError, match="box"):
        DetectAndMeasureTask().run(image, science=other)
