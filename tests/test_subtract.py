import pickle

import numpy as np
import pytest
from astropy.table import Table
from scipy import signal

from skydiff.diffim import (
    AlardLuptonSubtractConfig,
    AlardLuptonSubtractTask,
    alard_lupton_basis,
    basis_sigmas,
    convolve_spatially,
    kernel_size_for,
    separable_basis,
    solve_spatial,
    stamp_equations,
)
from skydiff.diffim._kernel import SpatialKernel
from skydiff.errors import InsufficientSourcesError, InvalidExposureError, NoWorkFound
from skydiff.image import Box
from skydiff.io import read_exposure
from skydiff.testing import make_test_pair, tan_wcs

from .conftest import data_path

# -- the kernel basis and solver against the published HOTPANTS solution --------------------


@pytest.mark.parametrize(
    ("centers", "kernel_sum", "background"),
    [
        ([(160, 160)], 0.959086, 0.602642),
        ([(96, 95), (160, 96), (96, 160), (160, 160)], 0.969559, 0.452304),
    ],
)
def test_hotpants_reference_solution(centers, kernel_sum, background):
    """REFERENCE.md set-up: 19x19 kernel, one Gaussian sigma 3 of degree 3, 49x49 template
    stamps (the fit uses the 31x31 science pixels the 19x19 kernel reaches), constant
    weights, spatial orders 0."""
    directory = ("lsst_ipdiffim_hotpants",)
    template = read_exposure(data_path(*directory, "templateMI.fits"))
    science = read_exposure(data_path(*directory, "scienceMI.fits"))
    basis = alard_lupton_basis(19, (3.0,), (3,))
    bounds = (0.0, 0.0, 192.0, 192.0)
    equations = stamp_equations(
        template.image,
        science.image,
        np.ones(science.image.shape),
        separable_basis(19, (3.0,), (3,)),
        np.array(centers),
        half_size=15,
        origin=(0, 0),
        background_order=0,
        bounds=bounds,
    )
    solution = solve_spatial(equations, 0, bounds)
    assert solution.kernel_coefficients[0, 0] * basis[0].sum() == pytest.approx(
        kernel_sum, abs=1e-5
    )
    assert solution.background_solution[0] == pytest.approx(background, abs=1e-5)


def test_basis_normalisation_and_sizes():
    basis = alard_lupton_basis(21, (1.0, 2.0, 4.0), (4, 2, 2))
    assert basis.shape == (15 + 6 + 6, 21, 21)
    assert basis[0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(basis[1:].sum(axis=(1, 2)), 0.0, atol=1e-12)
    assert kernel_size_for(2.0) == 21 and kernel_size_for(5.0) == 31 and kernel_size_for(9.0) == 35
    assert basis_sigmas(3.0, 1.0) == pytest.approx((np.sqrt(8) / 2, np.sqrt(8), 2 * np.sqrt(8)))
    assert basis_sigmas(2.0, 2.0)[0] == 0.7  # equal PSFs: the floor


def test_spatial_convolution_by_linearity_is_exact(rng):
    """Convolving with sum_m P_m K_m equals convolving each pixel with its own kernel."""
    basis = alard_lupton_basis(11, (1.0, 2.0), (2, 1))
    coefficients = rng.normal(size=(basis.shape[0], 3))
    kernel = SpatialKernel(basis, coefficients, (0.0, 0.0, 99.0, 79.0), 1)
    image = rng.normal(size=(80, 100)).astype(np.float32)
    from skydiff.diffim._convolve_exposure import separable_terms

    result = convolve_spatially(
        image, kernel.spatial_kernels(), *separable_terms(kernel, Box(0, 0, 100, 80))
    )
    for x, y in [(30, 40), (70, 20), (50, 60)]:
        local = signal.convolve2d(image, kernel.kernel_image(x, y), mode="same")
        assert result[y, x] == pytest.approx(local[y, x], abs=1e-4)


# -- the task on synthetic pairs -------------------------------------------------------------


def normalized_residuals(result):
    difference = result.difference
    good = difference.mask.array == 0
    return difference.image[good] / np.sqrt(difference.variance[good])


def test_equal_psfs_give_zero_mean_and_summed_noise():
    pair = make_test_pair(
        science_fwhm=3.5, template_fwhm=3.5, science_noise=4.0, template_noise=3.0, seed=1
    )
    result = AlardLuptonSubtractTask().run(pair.template, pair.science)
    difference = result.difference
    good = difference.mask.array == 0
    expected = np.hypot(4.0, 3.0)
    assert np.std(difference.image[good]) == pytest.approx(expected, rel=0.10)
    n = good.sum()
    assert abs(np.mean(difference.image[good])) < 5 * expected / np.sqrt(n)  # 5 sigma of the mean
    assert result.metadata["kernel_sum"] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(("science_noise", "template_noise"), [(1.0, 1.0), (1.0, 0.1), (0.1, 0.1)])
@pytest.mark.parametrize("science_better", [True, False])
def test_decorrelated_noise_is_white_and_matches_variance(
    science_noise, template_noise, science_better
):
    fwhm = (3.0, 4.5) if science_better else (4.5, 3.0)
    pair = make_test_pair(
        science_fwhm=fwhm[0],
        template_fwhm=fwhm[1],
        n_stars=120,
        science_noise=science_noise,
        template_noise=template_noise,
        flux_range=(200 * science_noise, 2e4 * science_noise),
        seed=2,
    )
    config = AlardLuptonSubtractConfig(mode="auto")
    result = AlardLuptonSubtractTask(config).run(pair.template, pair.science)
    difference = result.difference
    # away from the stars: pure noise
    model = pair.science_model + pair.template_model
    quiet = (difference.mask.array == 0) & (model < 0.05 * science_noise)
    image, variance = difference.image, difference.variance
    assert np.std(image[quiet]) == pytest.approx(np.sqrt(np.mean(variance[quiet])), rel=0.05)
    normalized = np.where(quiet, image / np.sqrt(variance), np.nan)
    lag1 = np.nanmean(normalized[:, 1:] * normalized[:, :-1]) / np.nanmean(normalized**2)
    assert abs(lag1) < 0.05


def test_convolve_template_and_convolve_science_agree():
    pair = make_test_pair(
        science_fwhm=3.8, template_fwhm=3.8, science_noise=2.0, template_noise=2.0, seed=3
    )
    config = AlardLuptonSubtractConfig(do_decorrelation=False)
    template_mode = AlardLuptonSubtractTask(config).run(pair.template, pair.science)
    science_mode = AlardLuptonSubtractTask(config.replace(mode="convolveScience")).run(
        pair.template, pair.science
    )
    good = (template_mode.difference.mask.array == 0) & (science_mode.difference.mask.array == 0)
    delta = template_mode.difference.image - science_mode.difference.image
    sigma = np.sqrt(template_mode.difference.variance + science_mode.difference.variance)
    pulls = np.abs(delta / sigma)
    # Equal PSFs: the matching kernel is nearly a delta function, which the Gaussian basis
    # approximates to ~0.5% of a star's peak; away from the cores of stars brighter than
    # 100 sigma at their peak the two modes agree within 5 sigma everywhere.
    bright_core = pair.science_model > 100 * 2.0
    from skydiff.math import box_dilate

    away = good & ~box_dilate(bright_core, 4)
    assert np.max(pulls[away]) < 5
    assert np.mean(pulls[good] > 5) < 2e-4
    assert science_mode.mode == "convolveScience"


def test_differential_background_recovered():
    shape = (512, 512)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]] / 511.0 * 2 - 1
    background = 20.0 + 8.0 * x - 5.0 * y + 6.0 * x * y + 4.0 * (2 * x**2 - 1)
    pair = make_test_pair(
        science_fwhm=4.0,
        template_fwhm=3.0,
        science_background=background,
        science_noise=2.0,
        template_noise=1.0,
        seed=4,
    )
    result = AlardLuptonSubtractTask().run(pair.template, pair.science)
    fitted = result.background_model.evaluate(pair.science.bbox)
    variation = background - background.mean()
    # the Chebyshev order-2 background is recovered within 30% of its variation
    assert np.sqrt(np.mean((fitted - background) ** 2)) < 0.3 * np.std(variation)


def test_template_coverage_limits():
    pair = make_test_pair(seed=5, n_stars=200)
    template = pair.template.copy()
    rows = np.arange(template.bbox.height)[:, None] < 0.91 * template.bbox.height
    template.masked_image.set_no_data(np.broadcast_to(rows, template.image.shape))
    with pytest.raises(NoWorkFound, match="covers 9"):
        AlardLuptonSubtractTask().run(template, pair.science)
    partial = pair.template.copy()
    rows = np.arange(partial.bbox.height)[:, None] < 0.3 * partial.bbox.height
    partial.masked_image.set_no_data(np.broadcast_to(rows, partial.image.shape))
    result = AlardLuptonSubtractTask().run(partial, pair.science)
    assert result.metadata["template_coverage"] == pytest.approx(0.7, abs=0.01)


def test_one_source_is_not_enough():
    pair = make_test_pair(seed=6)
    one = Table({"x": [pair.sources["x"][0]], "y": [pair.sources["y"][0]], "snr": [100.0]})
    with pytest.raises(InsufficientSourcesError, match="usable kernel stamps"):
        AlardLuptonSubtractTask().run(pair.template, pair.science, one)


def test_template_on_another_grid_is_refused():
    pair = make_test_pair(seed=7, n_stars=50)
    shifted = pair.template.replace(wcs=tan_wcs(crpix=(360.3, 456.0)))
    with pytest.raises(InvalidExposureError, match="warp"):
        AlardLuptonSubtractTask().run(shifted, pair.science)


def test_transients_are_recovered_with_unbiased_flux():
    from skydiff.diffim import DetectAndMeasureTask

    rng = np.random.default_rng(8)
    n = 40
    transients = Table(
        {
            "x": rng.uniform(130, 580, n),
            "y": rng.uniform(230, 680, n),
            "flux": rng.uniform(3000, 8000, n),
        }
    )
    pair = make_test_pair(
        science_fwhm=4.0,
        template_fwhm=3.0,
        science_noise=5.0,
        template_noise=2.0,
        transients=transients,
        seed=8,
        n_stars=150,
    )
    result = AlardLuptonSubtractTask().run(pair.template, pair.science)
    sources = DetectAndMeasureTask().run(result.difference).dia_sources
    positive = sources[~np.asarray(sources["is_negative"])]
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([positive["x"], positive["y"]]))
    distance, index = tree.query(np.column_stack([transients["x"], transients["y"]]))
    found = distance < 2.0
    assert found.mean() >= 0.9
    rows = positive[index[found]]
    ratio = np.asarray(rows["psf_flux"]) / np.asarray(transients["flux"])[found]
    weights = (np.asarray(transients["flux"])[found] / np.asarray(rows["psf_flux_err"])) ** 2
    assert np.average(ratio, weights=weights) == pytest.approx(1.0, abs=0.015)


def test_result_metadata_and_pickling():
    pair = make_test_pair(seed=9)
    result = AlardLuptonSubtractTask().run(pair.template, pair.science)
    for key in (
        "kernel_sum",
        "condition_number",
        "n_stamps_used",
        "template_coverage",
        "residual_mean",
        "residual_std",
        "footprint_ratio_mean",
    ):
        assert key in result.metadata.values
    assert result.metadata["footprint_ratio_mean"] < 0.02
    assert result.difference.psf is not None and result.difference.units == "count"
    clone = pickle.loads(pickle.dumps(result))
    assert clone.difference.masked_image == result.difference.masked_image


def test_cli_subtract(tmp_path, capsys):
    from skydiff.cli import main
    from skydiff.io import write_exposure

    rng = np.random.default_rng(10)
    transients = Table(
        {"x": rng.uniform(150, 550, 5), "y": rng.uniform(250, 650, 5), "flux": np.full(5, 20000.0)}
    )
    pair = make_test_pair(seed=10, transients=transients)
    science = write_exposure(pair.science, tmp_path / "science.fits")
    template = write_exposure(pair.template, tmp_path / "template.fits")
    out = tmp_path / "diff.fits"
    argv = [
        "subtract",
        str(science),
        str(template),
        "-o",
        str(out),
        "--dia-sources",
        str(tmp_path / "dia.ecsv"),
        "--metrics",
        str(tmp_path / "m.json"),
        "-c",
        "kernel.spatial_order=0",
    ]
    assert main(argv) == 0
    assert "convolveTemplate" in capsys.readouterr().out
    difference = read_exposure(out)
    assert difference.psf is not None
    dia = Table.read(tmp_path / "dia.ecsv")
    assert np.sum(~np.asarray(dia["is_negative"])) >= 5
    assert main(argv) == 1  # refuses to overwrite
    capsys.readouterr()
    # a template on another grid is resampled; one that misses the science box is refused
    other = pair.template.replace(wcs=tan_wcs(crpix=(10.0, 10.0)))
    shifted = write_exposure(other, tmp_path / "shifted.fits")
    assert main(["subtract", str(science), str(shifted), "-o", str(tmp_path / "d2.fits")]) == 1
    assert "required_template_fraction" in capsys.readouterr().err


def test_as_good_as_subtraction_with_the_true_kernel():
    """The oracle subtracts with the true matching kernel (a Gaussian of width
    sqrt(s_sci^2 - s_tmpl^2)) and the same decorrelation; skydiff must come within 1.5x
    of its false detections at 5 sigma and within 0.05 of its rms of D/sqrt(V) on stars."""
    from skydiff.diffim import (
        DetectAndMeasureTask,
        compute_decorrelation,
        convolve_image,
        decorrelate,
        difference_psf,
    )
    from skydiff.image import MaskedImage
    from skydiff.psf import SIGMA_TO_FWHM, ImagePsf

    pair = make_test_pair(
        science_fwhm=4.5,
        template_fwhm=3.0,
        science_noise=5.0,
        template_noise=2.0,
        n_stars=250,
        flux_range=(1e3, 2e6),
        seed=21,
    )
    result = AlardLuptonSubtractTask().run(pair.template, pair.science)
    sigma = np.sqrt((4.5 / SIGMA_TO_FWHM) ** 2 - (3.0 / SIGMA_TO_FWHM) ** 2)
    size = result.psf_matching_kernel.size
    y, x = np.mgrid[-(size // 2) : size // 2 + 1, -(size // 2) : size // 2 + 1]
    kernel = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    difference = pair.science.image - convolve_image(pair.template.image, kernel)
    variance = pair.science.variance + convolve_image(pair.template.variance, kernel**2)
    decorrelation = compute_decorrelation(kernel, 25.0, 4.0)
    whitened = decorrelate(
        difference, variance, decorrelation.kernel, variance_ratio=decorrelation.variance_ratio
    )
    psf = ImagePsf(difference_psf(pair.science.psf.kernel_image(0, 0), decorrelation.kernel))
    oracle = pair.science.replace(
        masked_image=MaskedImage(whitened.image, None, whitened.variance, bbox=pair.science.bbox),
        psf=psf,
    )
    stars = np.zeros(pair.science_model.shape, bool)
    stars[20:-20, 20:-20] = pair.science_model[20:-20, 20:-20] > 500.0  # 100 sigma
    figures = {}
    for name, exposure in (("skydiff", result.difference), ("oracle", oracle)):
        false = len(DetectAndMeasureTask().run(exposure).dia_sources)
        normalized = exposure.image / np.sqrt(exposure.variance)
        figures[name] = (false, np.sqrt(np.mean(normalized[stars] ** 2)))
    assert figures["skydiff"][0] <= 1.5 * figures["oracle"][0]
    assert abs(figures["skydiff"][1] - figures["oracle"][1]) < 0.05


def test_preconvolution_score_image():
    from skydiff.diffim import AlardLuptonPreconvolveSubtractTask

    rng = np.random.default_rng(3)
    transients = Table(
        {
            "x": rng.uniform(150, 550, 30),
            "y": rng.uniform(250, 650, 30),
            "flux": rng.uniform(500, 3000, 30),
        }
    )
    pair = make_test_pair(
        science_fwhm=3.5,
        template_fwhm=3.5,
        science_noise=5.0,
        template_noise=2.0,
        transients=transients,
        seed=5,
    )
    result = AlardLuptonPreconvolveSubtractTask().run(pair.template, pair.science)
    score = result.score
    significance = score.image / np.sqrt(score.variance)
    quiet = (score.mask.array == 0) & (pair.science_model < 0.5)
    # the score's value over its standard deviation is a significance: unit spread on noise
    assert np.nanstd(significance[quiet]) == pytest.approx(1.0, abs=0.05)
    ix = np.rint(np.asarray(transients["x"]) - score.bbox.x0).astype(int)
    iy = np.rint(np.asarray(transients["y"]) - score.bbox.y0).astype(int)
    sigma = 3.5 / 2.3548
    expected = np.asarray(transients["flux"]) / np.sqrt(4 * np.pi * sigma**2 * (25.0 + 4.0))
    # the optimal S/N of each transient, up to pixel phase (peaks sit within half a pixel)
    assert np.median(significance[iy, ix] / expected) == pytest.approx(1.0, abs=0.08)


def test_real_decam_stacks_subtract_to_unit_normalized_noise():
    """SFFT's DECam science and reference stacks: characterize both (Gaussian PSF from the
    stellar locus), subtract, and the normalized residuals have unit spread within 10%."""
    from skydiff.characterize import CharacterizeConfig, CharacterizeTask
    from skydiff.io import read_image

    characterize = CharacterizeTask(
        CharacterizeConfig().with_overrides(["background.bin_size=64", "fit_psf=never"])
    )
    science = characterize.run(
        read_image(data_path("sfft_decam_decorr", "4check", "Stack-DEC-OBS04.fits"))
    )
    reference = characterize.run(
        read_image(data_path("sfft_decam_decorr", "4check", "Stack-DEC-OBS18.fits"))
    )
    # a 256x256 field holds a dozen usable stars: constant kernel and background, and the
    # footprint check (two stars above S/N 50) is too noisy here to be a criterion
    config = AlardLuptonSubtractConfig(
        mode="auto", min_stamps=3, max_footprint_ratio_mean=1.0
    ).with_overrides(["kernel.spatial_order=0", "kernel.background_order=0"])
    result = AlardLuptonSubtractTask(config).run(
        reference.exposure, science.exposure, science.sources
    )
    difference = result.difference
    good = difference.mask.array == 0
    normalized = difference.image[good] / np.sqrt(difference.variance[good])
    assert np.std(normalized) == pytest.approx(1.0, abs=0.10)
    assert result.metadata["residual_std"] == pytest.approx(1.0, abs=0.10)


def test_completeness_of_faint_transients():
    """Transients at S/N 7-10 in the difference: at least 90% found at 5 sigma."""
    from scipy.spatial import cKDTree

    from skydiff.diffim import DetectAndMeasureTask

    rng = np.random.default_rng(12)
    n = 80
    sigma = 4.0 / 2.3548
    snr = rng.uniform(7.0, 10.0, n)
    flux = snr * np.sqrt(4 * np.pi * sigma**2 * (25.0 + 1.0))
    transients = Table({"x": rng.uniform(130, 580, n), "y": rng.uniform(230, 680, n), "flux": flux})
    pair = make_test_pair(
        science_fwhm=4.0,
        template_fwhm=3.0,
        science_noise=5.0,
        template_noise=1.0,
        transients=transients,
        n_stars=100,
        flux_range=(2e3, 5e4),
        seed=12,
    )
    result = AlardLuptonSubtractTask().run(pair.template, pair.science)
    sources = DetectAndMeasureTask().run(result.difference).dia_sources
    positive = sources[~np.asarray(sources["is_negative"])]
    tree = cKDTree(np.column_stack([positive["x"], positive["y"]]))
    distance, _ = tree.query(np.column_stack([transients["x"], transients["y"]]))
    assert np.mean(distance < 2.0) >= 0.9


def test_swapping_the_images_negates_the_difference():
    """LSST's symmetry test: swapping science and template (auto mode convolves the other
    image) gives the opposite difference; the sum of the two has mean 0 and, the two noise
    realisations entering with opposite signs, std 2 sqrt(2) sigma."""
    pair = make_test_pair(
        science_fwhm=3.0,
        template_fwhm=4.5,
        science_noise=1.0,
        template_noise=1.0,
        flux_range=(100.0, 5000.0),
        seed=13,
    )
    task = AlardLuptonSubtractTask(AlardLuptonSubtractConfig(mode="auto"))
    science_better = task.run(pair.template, pair.science)
    template_better = task.run(pair.science, pair.template)
    assert {science_better.mode, template_better.mode} == {"convolveScience", "convolveTemplate"}
    good = (science_better.difference.mask.array == 0) & (
        template_better.difference.mask.array == 0
    )
    delta = (template_better.difference.image - science_better.difference.image)[good]
    assert abs(np.mean(delta)) < 5 * 2.0 / np.sqrt(good.sum())
    assert np.std(delta) == pytest.approx(2 * np.sqrt(2), rel=0.10)
