"""PSF modelling: pixel-basis PSF fitted to stars, against the simulator's true PSF."""

import pickle

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from skydiff.background import SubtractBackgroundTask
from skydiff.characterize import PsfDeterminerConfig, PsfDeterminerResult, PsfDeterminerTask
from skydiff.errors import InsufficientSourcesError, InvalidParameterError
from skydiff.image import Box
from skydiff.math import adaptive_moments, windowed_centroids
from skydiff.psf import GaussianPsf, ImagePsf, PixelBasisPsf, shift_stamps
from skydiff.psf._fit import fit_psf_model
from skydiff.psf._star_stamps import centre_stamps, cut_stamps
from skydiff.sim import Camera, SurveyConfig, simulate_exposure

ORIGIN = (1000, 3000)


@pytest.fixture(scope="module")
def field():
    """A 2048^2 calexp of bright stars, background-subtracted, and its truth table.

    Stars of 14-16 mag on a deep-well camera (nothing saturates): each gives a
    peak S/N of several hundred, so that ~250 of them pin the model down to
    ~0.1-0.2% of the peak at the corners, where the quadratic extrapolates
    the most; the photon noise of fainter stars would dominate a 1% test.
    Galaxies are bright enough (16-19 mag) to be told from stars.
    """
    config = SurveyConfig(seed=1).with_sky(
        star_density=10.0,
        star_mag_range=(14.0, 16.0),
        star_lf_slope=0.0,
        galaxy_density=2.0,
        galaxy_mag_range=(16.0, 19.0),
    )
    sim = simulate_exposure(config, Camera.single(2048, saturation=1e7), origin=ORIGIN)
    exposure = SubtractBackgroundTask().run(sim.exposure).exposure
    return exposure, sim.truth


def isolated_stars(truth: Table, *, radius: float = 20.0, min_snr: float = 100.0) -> Table:
    """Unsaturated stars on the image with no other source within ``radius`` pixels."""
    xy = np.column_stack([truth["x"], truth["y"]])
    distance = cKDTree(xy).query(xy, k=2)[0][:, 1]
    flux = np.asarray(truth["flux_counts"])
    snr = flux / np.sqrt(flux / 1.5 + 150.0 * 650.0)  # Poisson + sky in ~150 pixels
    keep = (truth["kind"] == "star") & ~truth["is_saturated"] & truth["inside"]
    return truth[keep & (distance > radius) & (snr > min_snr)]


@pytest.fixture(scope="module")
def fitted(field):
    exposure, truth = field
    return PsfDeterminerTask().run(exposure, isolated_stars(truth))


def comparable(fitted_kernel, true_kernel):
    """Both kernels cropped to their common size and normalised to unit sum there."""
    size = min(fitted_kernel.shape[0], true_kernel.shape[0])
    crops = []
    for kernel in (fitted_kernel, true_kernel):
        start = (kernel.shape[0] - size) // 2
        crop = kernel[start : start + size, start : start + size]
        crops.append(crop / crop.sum())
    return crops


def test_fitted_psf_matches_truth_at_centre_and_corners(field, fitted):
    exposure, _ = field
    box, half = exposure.bbox, fitted.psf.kernel_size // 2
    x_lo, x_hi, y_lo, y_hi = (
        box.x0 + half,
        box.x_end - 1 - half,
        box.y0 + half,
        box.y_end - 1 - half,
    )
    for x, y in [box.center, (x_lo, y_lo), (x_hi, y_lo), (x_lo, y_hi), (x_hi, y_hi)]:
        model = fitted.psf.kernel_image(x, y)
        assert model.shape == (41, 41) and model.sum() == pytest.approx(1.0, abs=1e-12)
        xc, yc, *_ = adaptive_moments(model)
        assert abs(xc - half) < 0.01 and abs(yc - half) < 0.01
        model, truth = comparable(model, exposure.psf.kernel_image(x, y))
        # Measured: <= 0.34% of the peak (seeds 1-8 of this field: <= 0.52%).
        assert np.abs(model - truth).max() < 0.01 * truth.max(), (x, y)
        # Measured: <= 0.75% (seeds 1-8: <= 0.81%); the half-maximum area moves in ~0.1% steps.
        assert ImagePsf(model).fwhm(0, 0) == pytest.approx(ImagePsf(truth).fwhm(0, 0), rel=0.02)


def test_holdout_chi2_and_counts(fitted):
    meta = fitted.metadata
    assert fitted.n_stars_used > 200
    assert fitted.n_reserved == pytest.approx(0.2 * meta["n_candidates"], abs=1)
    assert fitted.n_rejected < 0.15 * meta["n_candidates"]
    # Pure noise gives 1 (fitted stars a little less); the ~2% excess measured here is
    # light of neighbours below the masking threshold and the model's own error.
    assert 0.9 < fitted.chi2_dof_fit < 1.15
    assert 0.9 < fitted.chi2_dof_holdout < 1.25
    stars = fitted.stars
    assert not np.any(stars["calib_psf_used"] & stars["calib_psf_reserved"])
    assert np.array_equal(fitted.used, stars["calib_psf_used"])
    assert fitted.used.sum() == fitted.n_stars_used == meta["n_used"]
    assert meta["n_input"] == len(stars) and "fit" in meta.timings


def add_companions(exposure, stars, fraction=0.5, offset=(2.5, 1.5)):
    """Blend a fainter point source into each star (a copy of the exposure is changed)."""
    blended = exposure.copy()
    for row in stars:
        x, y = row["x"] + offset[0], row["y"] + offset[1]
        ix, iy = round(x), round(y)
        stamp = exposure.psf.image_at(x, y, dx=x - ix, dy=y - iy) * fraction * row["flux_counts"]
        half = stamp.shape[0] // 2
        box = Box(ix - half, iy - half, stamp.shape[1], stamp.shape[0])
        blended.masked_image[box].image[...] += stamp.astype(np.float32)
    return blended


def test_galaxies_and_blends_are_rejected(field, fitted):
    exposure, truth = field
    stars = isolated_stars(truth)
    galaxies = truth[(truth["kind"] == "galaxy") & truth["inside"]]
    galaxies = galaxies[np.argsort(galaxies["flux_counts"])[-8:]]  # S/N > 200
    blends = stars[np.flatnonzero(fitted.used)[:6]]
    candidates = Table(
        {
            "x": np.concatenate([stars["x"], galaxies["x"]]),
            "y": np.concatenate([stars["y"], galaxies["y"]]),
        }
    )
    candidates["injected"] = np.arange(len(candidates)) >= len(stars)
    candidates["injected"][np.flatnonzero(fitted.used)[:6]] = True
    result = PsfDeterminerTask().run(add_companions(exposure, blends), candidates)
    injected = result.stars[result.stars["injected"] & result.stars["calib_psf_candidate"]]
    assert len(injected) >= 10
    assert injected["calib_psf_rejected"].all() and not injected["calib_psf_used"].any()
    assert result.n_stars_used > 0.9 * fitted.n_stars_used


def test_too_few_stars(field):
    exposure, truth = field
    stars = isolated_stars(truth)[:15]
    with pytest.raises(InsufficientSourcesError, match=r"only 1\d stars left.*need 20") as info:
        PsfDeterminerTask().run(exposure, stars)
    assert "n_input=15" in str(info.value) and info.value.metadata["n_input"] == 15
    with pytest.raises(InsufficientSourcesError, match="only 0 stars"):
        PsfDeterminerTask().run(exposure, Table({"x": [], "y": []}))
    with pytest.raises(InvalidParameterError, match="columns 'x' and 'y'"):
        PsfDeterminerTask().run(exposure, Table({"ra": [1.0]}))


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"stamp_size": 40}, "stamp_size"),
        ({"spatial_order": 5}, "spatial_order"),
        ({"holdout_fraction": 0.8}, "holdout_fraction"),
        ({"min_stars": 6}, "min_stars"),
        ({"n_components": 0}, "n_components"),
        ({"pixel_nsigma": -1.0}, "pixel_nsigma"),
    ],
)
def test_config_validation_names_the_field(changes, field_name):
    with pytest.raises(InvalidParameterError, match=f"PsfDeterminerConfig.{field_name}"):
        PsfDeterminerConfig(**changes)


def test_result_and_psf_pickle(fitted):
    copy = pickle.loads(pickle.dumps(fitted))
    assert isinstance(copy, PsfDeterminerResult) and copy.psf == fitted.psf
    assert np.array_equal(copy.used, fitted.used) and copy.metadata == fitted.metadata
    task = pickle.loads(pickle.dumps(PsfDeterminerTask(PsfDeterminerConfig(spatial_order=1))))
    assert task.config.spatial_order == 1


# -- array layer ---------------------------------------------------------------------------


def test_shift_and_windowed_centroid_are_exact_for_a_well_sampled_star():
    psf = GaussianPsf(3.5, size=31)
    offsets = np.array([[0.3, -0.2], [-0.45, 0.5], [0.0, 0.1]])
    stamps = np.stack([psf.image_at(0, 0, dx=dx, dy=dy) for dx, dy in offsets])
    dx, dy = windowed_centroids(stamps, sigma=1.5)
    np.testing.assert_allclose(np.column_stack([dx, dy]), offsets, atol=1e-4)
    centred = shift_stamps(stamps, -offsets[:, 0], -offsets[:, 1])
    assert np.abs(centred - psf.kernel_image(0, 0)).max() < 1e-4 * psf.kernel_image(0, 0).max()


def test_cut_stamps_rejects_edges_masked_and_non_finite_pixels():
    image = np.arange(100.0 * 80.0).reshape(80, 100)
    variance = np.ones_like(image)
    mask = np.zeros(image.shape, np.int32)
    mask[40, 60] = 4
    image[10, 80] = np.nan
    x, y = np.array([20.0, 2.0, 61.4, 79.6, 30.0]) + 5, np.array([30.0, 30.0, 41.0, 12.0, 76.0]) - 7
    data, _, ok = cut_stamps(image, variance, x, y, size=9, mask=mask, bad_bits=4 | 8, x0=5, y0=-7)
    assert ok.tolist() == [True, False, False, False, False]
    assert data[0, 4, 4] == image[30, 20] and data[0, 0, 0] == image[26, 16]


@pytest.mark.parametrize(("n_components", "holdout"), [(None, 0.2), (2, 0.0)])
def test_fit_recovers_a_pixel_basis_model(rng, n_components, holdout):
    """Noiseless stars of a PSF whose pixels are linear in position: recovered to 1e-3.

    The kernels span two images, so two principal components represent them exactly.
    """
    basis = np.stack([GaussianPsf(fwhm, size=25).kernel_image(0, 0) for fwhm in (3.2, 4.4)])
    coefficients = np.array([[0.6, 0.25, -0.1], [0.4, -0.25, 0.1]])  # weights sum to 1
    bounds = (-50.0, 20.0, 749.0, 619.0)
    truth = PixelBasisPsf(basis, coefficients, bounds)
    box = Box(-50, 20, 800, 600)
    gx, gy = np.meshgrid(np.arange(-20, 740, 40.0), np.arange(50, 610, 40.0))
    x = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    image = np.zeros(box.shape)
    for xs, ys in zip(x, y, strict=True):
        ix, iy = round(xs), round(ys)
        stamp = 1e4 * truth.image_at(xs, ys, dx=xs - ix, dy=ys - iy)
        image[iy - box.y0 - 12 : iy - box.y0 + 13, ix - box.x0 - 12 : ix - box.x0 + 13] += stamp
    stamps = centre_stamps(image, np.ones(box.shape), x, y, size=25, x0=box.x0, y0=box.y0)
    assert len(stamps.data) == len(x) - stamps.n_off_image
    fit = fit_psf_model(
        stamps.data,
        stamps.variance,
        stamps.x,
        stamps.y,
        bounds,
        order=1,
        n_components=n_components,
        holdout_fraction=holdout,
    )
    assert fit.basis.shape == (n_components or 3, 25, 25)
    assert fit.reserved.sum() == round(holdout * len(x)) and fit.used.sum() > 0.9 * len(x) * (
        1 - holdout
    )
    assert np.isnan(fit.chi2_dof_holdout) == (holdout == 0)
    model = PixelBasisPsf(fit.basis, fit.coefficients, bounds)
    for xs, ys in [(-30.0, 30.0), (350.0, 320.0), (730.0, 600.0)]:
        expected = truth.kernel_image(xs, ys)
        assert np.abs(model.kernel_image(xs, ys) - expected).max() < 1e-3 * expected.max()
    np.testing.assert_allclose(stamps.x, x[stamps.index], atol=2e-3)
