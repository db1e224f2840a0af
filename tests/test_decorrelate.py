"""Decorrelation of difference images: white noise, honest variance, conserved flux."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
from scipy.signal import fftconvolve

from skydiff.diffim._decorrelate import (
    CONVOLVE_SCIENCE,
    CONVOLVE_TEMPLATE,
    DecorrelatedImage,
    compute_decorrelation,
    decorrelate,
    decorrelate_spatially,
    decorrelation_kernel,
    difference_psf,
)
from skydiff.errors import InvalidParameterError

SIZE = 512
MARGIN = 40  # border excluded from noise statistics (> any kernel half-width used here)


def gaussian(sigma: float, size: int | None = None, total: float = 1.0) -> np.ndarray:
    size = size or 2 * int(np.ceil(4 * sigma)) + 1
    r = np.arange(size) - size // 2
    g = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma**2)
    return total * g / g.sum()


def convolve_same(image: np.ndarray, kernel: np.ndarray, pad: int) -> np.ndarray:
    """Convolution of an image padded by ``pad`` on each side, cropped to the unpadded area."""
    full = fftconvolve(image, kernel, mode="same")
    return full[pad:-pad, pad:-pad]


def make_difference(rng, sigma_s, sigma_t, kernel, mode, *, source=None):
    """``S - K*T`` or ``K*S - T`` of white noise, and its exact (constant) variance plane."""
    shape = (SIZE + 2 * MARGIN,) * 2
    science = rng.normal(0.0, sigma_s, shape)
    template = rng.normal(0.0, sigma_t, shape)
    if source is not None:
        science += source
    k2 = (kernel**2).sum()
    if mode == CONVOLVE_TEMPLATE:
        diff = science[MARGIN:-MARGIN, MARGIN:-MARGIN] - convolve_same(template, kernel, MARGIN)
        var = sigma_s**2 + sigma_t**2 * k2
    else:
        diff = convolve_same(science, kernel, MARGIN) - template[MARGIN:-MARGIN, MARGIN:-MARGIN]
        var = sigma_s**2 * k2 + sigma_t**2
    return diff.astype(np.float32), np.full(diff.shape, var, np.float32)


def interior(array: np.ndarray, margin: int = MARGIN) -> np.ndarray:
    return array[margin:-margin, margin:-margin]


def lag1(x: np.ndarray) -> tuple[float, float]:
    """Neighbour correlation along x and y."""
    x = x - x.mean()
    var = (x * x).mean()
    return float((x[:, 1:] * x[:, :-1]).mean() / var), float((x[1:] * x[:-1]).mean() / var)


def power_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed periodogram (per-pixel-variance units) and |k| in units of Nyquist."""
    window = np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1]))
    power = np.abs(np.fft.fft2((x - x.mean()) * window)) ** 2 / (window**2).sum()
    ky, kx = np.meshgrid(*(2 * np.fft.fftfreq(n) for n in x.shape), indexing="ij")
    return power, np.hypot(kx, ky)


def annulus_ratio(x: np.ndarray) -> float:
    """Mean power at |k| in (0.05, 0.3) over mean power at |k| in (0.7, 1.0)."""
    power, k = power_spectrum(x)
    inner = power[(k > 0.05) & (k < 0.3)].mean()
    return float(inner / power[(k > 0.7) & (k < 1.0)].mean())


def psf_flux(image: np.ndarray, psf: np.ndarray, y: int, x: int) -> float:
    """PSF-weighted flux of a source centred on pixel ``(y, x)``."""
    h = psf.shape[0] // 2
    stamp = image[y - h : y + h + 1, x - h : x + h + 1]
    return float((stamp * psf).sum() / (psf * psf).sum())


NOISE_PAIRS = [(1.0, 1.0), (1.0, 0.1), (0.1, 0.1), (0.1, 1.0)]


@pytest.mark.parametrize("mode", [CONVOLVE_TEMPLATE, CONVOLVE_SCIENCE])
@pytest.mark.parametrize(("sigma_s", "sigma_t"), NOISE_PAIRS)
@pytest.mark.parametrize("kernel_sum", [1.0, 1.3])
def test_decorrelated_noise_is_white_with_matching_variance(
    rng, mode, sigma_s, sigma_t, kernel_sum
):
    kernel = gaussian(2.0, total=kernel_sum)
    diff, var = make_difference(rng, sigma_s, sigma_t, kernel, mode)
    dec = compute_decorrelation(kernel, sigma_s**2, sigma_t**2, mode=mode)
    out = decorrelate(diff, var, dec.kernel, variance_ratio=dec.variance_ratio)
    x = interior(out.image / np.sqrt(out.variance))
    assert out.image.dtype == np.float32 and out.variance.dtype == np.float32
    assert x.std() == pytest.approx(1.0, abs=0.05)
    assert max(map(abs, lag1(x))) < 0.05
    assert annulus_ratio(x) == pytest.approx(1.0, abs=0.1)
    # white noise of variance s2 + t2 kappa^2 (convolveTemplate) or s2 kappa^2 + t2
    s2, t2 = sigma_s**2, sigma_t**2
    white = s2 + t2 * kernel_sum**2 if mode == CONVOLVE_TEMPLATE else s2 * kernel_sum**2 + t2
    assert dec.variance == pytest.approx(white, rel=0.005)
    assert interior(out.image).var() == pytest.approx(white, rel=0.05)


@pytest.mark.parametrize(
    ("mode", "sigma_s", "sigma_t"), [(CONVOLVE_TEMPLATE, 0.1, 1.0), (CONVOLVE_SCIENCE, 1.0, 0.1)]
)
def test_noisy_convolved_image_correlates_the_difference(rng, mode, sigma_s, sigma_t):
    kernel = gaussian(2.0)
    diff, var = make_difference(rng, sigma_s, sigma_t, kernel, mode)
    x = interior(diff / np.sqrt(var))
    assert x.std() == pytest.approx(1.0, abs=0.05)  # the input variance plane is right...
    assert min(lag1(x)) > 0.2  # ...but the noise is correlated
    assert annulus_ratio(x) > 3.0
    dec = compute_decorrelation(kernel, sigma_s**2, sigma_t**2, mode=mode)
    assert dec.input_variance == pytest.approx(var[0, 0], rel=1e-4)
    assert abs(dec.lag1_correlation) < 1e-3


def test_kernel_shape_sum_and_symmetry():
    kernel = gaussian(2.5, total=0.8)
    phi = decorrelation_kernel(kernel, 1.0, 1.0)
    assert phi.shape[0] == phi.shape[1] and phi.shape[0] % 2 == 1
    assert phi.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(phi, phi[::-1, ::-1], atol=1e-12)
    assert np.unravel_index(np.argmax(phi), phi.shape) == (phi.shape[0] // 2,) * 2
    # a larger whitening gain sqrt(t2 / s2) needs a wider kernel
    assert decorrelation_kernel(kernel, 0.01, 1.0).shape[0] > phi.shape[0]
    assert decorrelation_kernel(kernel, 1.0, 1.0, size=9).shape == (9, 9)
    # a noiseless template needs no decorrelation
    identity = decorrelation_kernel(kernel, 1.0, 0.0)
    assert identity[identity.shape[0] // 2, identity.shape[1] // 2] == pytest.approx(1.0)
    assert np.abs(identity).sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("mode", "kernel_sum"),
    [(CONVOLVE_TEMPLATE, 1.0), (CONVOLVE_TEMPLATE, 1.3), (CONVOLVE_SCIENCE, 1.0)],
)
def test_psf_flux_is_preserved(rng, mode, kernel_sum):
    flux, sigma_s, sigma_t = 2.0e4, 1.0, 1.0
    science_psf, template_psf = gaussian(2.2, 25), gaussian(1.5, 25)
    kernel = gaussian(np.sqrt(2.2**2 - 1.5**2), total=kernel_sum)
    y = x = SIZE // 2 + MARGIN
    source = np.zeros((SIZE + 2 * MARGIN,) * 2)
    h = science_psf.shape[0] // 2
    source[y - h : y + h + 1, x - h : x + h + 1] = flux * science_psf
    if mode == CONVOLVE_SCIENCE:  # a source in the template, seen with the template PSF
        source = -source
        source[y - h : y + h + 1, x - h : x + h + 1] = -flux * template_psf
        diff, var = make_difference(rng, sigma_s, sigma_t, kernel, mode)
        diff += source[MARGIN:-MARGIN, MARGIN:-MARGIN].astype(np.float32)
        psf, expected = template_psf, -flux
    else:
        diff, var = make_difference(rng, sigma_s, sigma_t, kernel, mode, source=source)
        psf, expected = science_psf, flux
    dec = compute_decorrelation(kernel, sigma_s**2, sigma_t**2, mode=mode)
    out = decorrelate(diff, var, dec.kernel, variance_ratio=dec.variance_ratio)
    before = psf_flux(diff, psf, SIZE // 2, SIZE // 2)
    after = psf_flux(out.image, difference_psf(psf, dec.kernel), SIZE // 2, SIZE // 2)
    assert before == pytest.approx(expected, rel=0.01)
    assert after == pytest.approx(expected, rel=0.01)
    assert after == pytest.approx(before, rel=0.01)


def test_tiled_convolution_matches_scipy(rng):
    image = rng.normal(size=(300, 257))
    kernel = rng.normal(size=(7, 11))  # asymmetric, not square: checks orientation
    out = decorrelate(image, np.ones_like(image), kernel, variance_ratio=1.0, tile=64)
    expected = fftconvolve(image, kernel, mode="same")
    np.testing.assert_allclose(out.image, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_missing_pixels_stay_missing_and_are_not_spread(rng):
    kernel = gaussian(2.0)
    diff, var = make_difference(rng, 0.3, 1.0, kernel, CONVOLVE_TEMPLATE)
    diff[100:140, 200:260] = np.nan
    var[100:140, 200:260] = np.inf
    diff[300, :] = np.inf
    before = diff.copy()
    dec = compute_decorrelation(kernel, 0.09, 1.0)
    out = decorrelate(diff, var, dec.kernel, variance_ratio=dec.variance_ratio)
    np.testing.assert_array_equal(diff, before)  # input untouched
    missing = ~np.isfinite(diff)
    assert np.all(np.isnan(out.image[missing]))
    assert np.all(np.isfinite(out.image[~missing]))
    assert np.all(np.isinf(out.variance[100:140, 200:260]))
    half = dec.kernel.shape[0] // 2
    assert out.incomplete[100 - half, 230] and not out.incomplete[100 - half - 1, 230]
    assert out.incomplete[0, 50] and not out.incomplete[half, 50 + half]
    assert not out.incomplete[200, 100]
    # away from the holes the result equals that of the intact image
    intact = decorrelate(np.nan_to_num(diff, posinf=0.0), var, dec.kernel, variance_ratio=1.0)
    clean = ~out.incomplete
    np.testing.assert_allclose(out.image[clean], intact.image[clean], rtol=0, atol=1e-5)


def test_spatial_with_constant_kernel_equals_decorrelate(rng):
    kernel = gaussian(2.0)
    diff, var = make_difference(rng, 0.2, 1.0, kernel, CONVOLVE_TEMPLATE)
    diff[50:60, 70:90] = np.nan
    dec = compute_decorrelation(kernel, 0.04, 1.0)
    single = decorrelate(diff, var, dec.kernel, variance_ratio=dec.variance_ratio)
    spatial = decorrelate_spatially(
        diff, var, lambda x, y: kernel, 0.04, lambda x, y: 1.0, n_cells=(3, 4), tile=200
    )
    assert len(spatial.cells) == 4 and len(spatial.cells[0]) == 3
    np.testing.assert_array_equal(np.isnan(spatial.image), np.isnan(single.image))
    good = np.isfinite(single.image)
    scale = single.image[good].std()
    np.testing.assert_allclose(spatial.image[good], single.image[good], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(spatial.variance, single.variance, rtol=1e-6)
    np.testing.assert_array_equal(spatial.incomplete, single.incomplete)


def varying_width(x, y):
    """Matching-kernel width growing from 1.5 px (corner 0, 0) to 3 px (opposite corner)."""
    return 1.5 + 1.5 * (x + y) / (2 * (SIZE - 1))


def make_varying_difference(rng, sigma_s, sigma_t):
    """``S - K(x, y)*T`` with the kernel blended linearly between 8 widths, and its variance."""
    pad = SIZE + 2 * MARGIN
    science = rng.normal(0.0, sigma_s, (SIZE, SIZE))
    template = rng.normal(0.0, sigma_t, (pad, pad))
    nodes = np.linspace(0.0, 1.0, 8)
    kernels = [gaussian(1.5 + 1.5 * s, 31) for s in nodes]
    yy, xx = np.mgrid[:SIZE, :SIZE]
    s = (xx + yy) / (2 * (SIZE - 1))
    weights = np.stack([np.interp(s, nodes, row) for row in np.eye(nodes.size)], axis=-1)
    diff = science.copy()
    for j, k in enumerate(kernels):
        diff -= weights[..., j] * convolve_same(template, k, MARGIN)
    gram = np.array([[(a * b).sum() for b in kernels] for a in kernels])
    var = sigma_s**2 + sigma_t**2 * np.einsum("yxi,ij,yxj->yx", weights, gram, weights)
    return diff.astype(np.float32), var.astype(np.float32)


def quadrants(x: np.ndarray):
    h = x.shape[0] // 2
    return [x[:h, :h], x[:h, h:], x[h:, :h], x[h:, h:]]


def test_spatial_varying_kernel_whitens_every_quadrant(rng):
    sigma_s, sigma_t = 0.1, 1.0
    diff, var = make_varying_difference(rng, sigma_s, sigma_t)

    def kernel_at(x, y):
        return gaussian(varying_width(x, y), 31)

    out = decorrelate_spatially(diff, var, kernel_at, sigma_s**2, sigma_t**2, n_cells=(4, 4))
    for quadrant in quadrants(interior(out.image / np.sqrt(out.variance))):
        assert quadrant.std() == pytest.approx(1.0, abs=0.05)
        assert max(map(abs, lag1(quadrant))) < 0.05
    assert min(lag1(interior(diff / np.sqrt(var)))) > 0.2
    # one kernel for the whole image leaves the corners correlated
    dec = compute_decorrelation(kernel_at(SIZE / 2, SIZE / 2), sigma_s**2, sigma_t**2)
    single = decorrelate(diff, var, dec.kernel, variance_ratio=dec.variance_ratio)
    corner = quadrants(interior(single.image / np.sqrt(single.variance)))[0]
    assert max(map(abs, lag1(corner))) > 0.05


@pytest.mark.parametrize(("sigma_s", "sigma_t"), [(1.0, 1.0), (0.1, 1.0), (1.0, 0.1)])
def test_preconvolution_gives_matched_filter_of_white_difference(rng, sigma_s, sigma_t):
    s2, t2 = sigma_s**2, sigma_t**2
    psf = gaussian(1.6, 21)  # science PSF, also the preconvolution kernel
    kernel0 = gaussian(np.sqrt(1.6**2 - 1.0**2), 21)  # template PSF 1.0 px -> science PSF
    kernel = fftconvolve(kernel0, psf[::-1, ::-1])  # template PSF -> science PSF * reflected
    shape = (SIZE + 2 * MARGIN,) * 2
    science, template = rng.normal(0.0, sigma_s, shape), rng.normal(0.0, sigma_t, shape)
    plain = science[MARGIN:-MARGIN, MARGIN:-MARGIN] - convolve_same(template, kernel0, MARGIN)
    preconvolved = convolve_same(science, psf[::-1, ::-1], MARGIN) - convolve_same(
        template, kernel, MARGIN
    )
    var_in = s2 * (psf**2).sum() + t2 * (kernel**2).sum()
    dec = compute_decorrelation(kernel, s2, t2, preconvolution_kernel=psf)
    score = decorrelate(
        preconvolved.astype(np.float32),
        np.full(plain.shape, var_in, np.float32),
        dec.kernel,
        variance_ratio=dec.variance_ratio,
    )
    # the score is the decorrelated plain difference filtered with its own reflected PSF
    dec0 = compute_decorrelation(kernel0, s2, t2)
    white = decorrelate(
        plain.astype(np.float32), np.ones(plain.shape), dec0.kernel, variance_ratio=1
    )
    diff_psf = difference_psf(psf, dec0.kernel)
    reference = fftconvolve(white.image, diff_psf[::-1, ::-1], mode="same")
    residual = interior(score.image - reference)
    assert np.abs(residual).max() < 0.01 * interior(score.image).std()
    # unit significance per pixel, and neighbour correlation as predicted
    x = interior(score.image / np.sqrt(score.variance))
    assert x.std() == pytest.approx(1.0, abs=0.05)
    assert lag1(x)[0] == pytest.approx(dec.lag1_correlation, abs=0.01)
    # noise power = white variance s2 + t2 times |P_D~|^2: whitened by the expected
    # amplitude the score noise is flat wherever that amplitude is not negligible
    power, _ = power_spectrum(interior(score.image))
    n = power.shape[0]
    padded = np.zeros((n, n))
    padded[: diff_psf.shape[0], : diff_psf.shape[1]] = diff_psf
    padded = np.roll(padded, (-(diff_psf.shape[0] // 2),) * 2, axis=(0, 1))
    expected = dec0.variance * np.abs(np.fft.fft2(padded)) ** 2
    for lo, hi in [(0.1, 2.0), (0.01, 0.1), (0.001, 0.01)]:
        band = (expected >= lo * expected.max()) & (expected < hi * expected.max())
        assert (power[band] / expected[band]).mean() == pytest.approx(1.0, abs=0.1)


def test_preconvolution_score_psf_preserves_flux():
    psf = gaussian(1.6, 21)
    kernel = fftconvolve(gaussian(np.sqrt(1.6**2 - 1.0), 21), psf[::-1, ::-1])
    source = np.zeros((201, 201))
    source[100 - 10 : 100 + 11, 100 - 10 : 100 + 11] = 5000.0 * psf
    preconvolved = fftconvolve(source, psf[::-1, ::-1], mode="same")
    dec = compute_decorrelation(kernel, 1.0, 1.0, preconvolution_kernel=psf)
    score = decorrelate(preconvolved, np.ones_like(source), dec.kernel, variance_ratio=1.0)
    score_psf = difference_psf(psf, dec.kernel, preconvolution_kernel=psf)
    assert score_psf.sum() == pytest.approx(1.0)
    assert psf_flux(score.image, score_psf, 100, 100) == pytest.approx(5000.0, rel=0.01)


def test_invalid_inputs_are_rejected():
    kernel = gaussian(2.0)
    with pytest.raises(InvalidParameterError, match="odd"):
        compute_decorrelation(np.ones((4, 4)), 1.0, 1.0)
    with pytest.raises(InvalidParameterError, match="mode"):
        compute_decorrelation(kernel, 1.0, 1.0, mode="auto")
    with pytest.raises(InvalidParameterError, match="preconvolution"):
        compute_decorrelation(kernel, 1.0, 1.0, mode=CONVOLVE_SCIENCE, preconvolution_kernel=kernel)
    with pytest.raises(InvalidParameterError, match="unconvolved"):
        compute_decorrelation(kernel, 0.0, 1.0)
    with pytest.raises(InvalidParameterError, match="unconvolved"):
        compute_decorrelation(kernel, 1.0, 0.0, mode=CONVOLVE_SCIENCE)
    with pytest.raises(InvalidParameterError, match="size"):
        compute_decorrelation(kernel, 1.0, 1.0, size=8)
    with pytest.raises(InvalidParameterError, match="shape"):
        decorrelate(np.zeros((10, 10)), np.zeros((10, 11)), kernel, variance_ratio=1.0)
    with pytest.raises(InvalidParameterError, match="variance_ratio"):
        decorrelate(np.zeros((10, 10)), np.zeros((10, 10)), kernel, variance_ratio=np.nan)
    with pytest.raises(InvalidParameterError, match="n_cells"):
        decorrelate_spatially(
            np.zeros((10, 10)), np.ones((10, 10)), lambda x, y: kernel, 1, 1, n_cells=(0, 2)
        )


def test_results_pickle(rng):
    dec = compute_decorrelation(gaussian(2.0), 1.0, 0.5)
    out = decorrelate(rng.normal(size=(64, 64)), np.ones((64, 64)), dec.kernel, variance_ratio=2.0)
    for value in (dec, out):
        copy = pickle.loads(pickle.dumps(value))
        assert type(copy) is type(value)
    assert isinstance(out, DecorrelatedImage)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(out)).image, out.image)
    assert pickle.loads(pickle.dumps(dec)).variance_ratio == dec.variance_ratio


@pytest.mark.slow
def test_full_detector_speed(rng):
    image = rng.normal(size=(4096, 4096)).astype(np.float32)
    variance = np.ones_like(image)
    dec = compute_decorrelation(gaussian(2.5), 1.0, 1.0)
    decorrelate(image[:512, :512], variance[:512, :512], dec.kernel, variance_ratio=1.0)
    start = time.perf_counter()
    out = decorrelate(image, variance, dec.kernel, variance_ratio=dec.variance_ratio)
    elapsed = time.perf_counter() - start
    assert out.image.dtype == np.float32
    assert elapsed < 3.0  # ~0.3 s measured on two cores


def test_defect_values_are_not_spread_by_the_task_decorrelation():
    """A raw BAD column in the science (-5000 counts, noise 5) enters the decorrelation as
    zeros: the unmasked columns beside it keep a mean consistent with zero. Spreading
    it instead (nothing excluded) leaves a ridge of several sigma."""
    from skydiff.diffim import AlardLuptonSubtractConfig, AlardLuptonSubtractTask
    from skydiff.testing import make_test_pair

    pair = make_test_pair(science_fwhm=4.5, template_fwhm=3.0, n_stars=80, seed=8)
    masked = pair.science.masked_image.copy()
    column = 256
    masked.image[:, column] = -5000.0
    masked.mask.array[:, column] |= masked.mask.bitmask(("BAD",))
    science = pair.science.replace(masked_image=masked)

    def neighbour_means(config: AlardLuptonSubtractConfig) -> np.ndarray:
        difference = AlardLuptonSubtractTask(config).run(pair.template, science).difference
        rows = slice(MARGIN, SIZE - MARGIN)
        sides = [column + d for d in (-6, -4, -3, -2, -1, 1, 2, 3, 4, 6)]
        near = difference.image[rows][:, sides]
        assert (difference.mask.array[rows][:, sides] & masked.mask.bitmask(("BAD",))).sum() == 0
        noise = np.sqrt(np.median(difference.variance[rows][:, sides]))
        return np.mean(near, axis=0) / (noise / np.sqrt(near.shape[0]))

    assert np.all(np.abs(neighbour_means(AlardLuptonSubtractConfig())) < 5.0)
    spread = AlardLuptonSubtractConfig(decorrelation_excluded_planes=())
    assert np.abs(neighbour_means(spread)).max() > 10.0
