"""Decorrelation of Alard-Lupton difference images (LSST ``DecorrelateALKernelTask``).

Convolving one image with the PSF-matching kernel ``K`` correlates the noise
of the difference. This "afterburner" (Kaiser 2004; Reiss & Lupton 2016,
DMTN-021; DMTN-179 for score images) filters the difference with a kernel
``phi`` that undoes that correlation. LSST names: ``computeDiffimCorrection``
and ``computeScoreCorrection`` -> :func:`compute_decorrelation`,
``computeCorrectedImage`` -> :func:`decorrelate`, ``computeCorrectedDiffimPsf``
-> :func:`difference_psf`, ``DecorrelateALKernelSpatialTask`` ->
:func:`decorrelate_spatially`.

Model. Science ``S`` and template ``T`` have independent white noise of mean
per-pixel variance ``s2`` and ``t2``; ``~`` is the Fourier transform and
``kappa = K~(0)`` the kernel sum. The noise power spectrum ``A(k)`` of the
difference (whose mean over ``k`` is its per-pixel variance) is

- ``convolveTemplate``, ``D = S - K*T``: ``A = s2 + t2 |K~|^2``;
- ``convolveScience``, ``D = K*S - T``: ``A = s2 |K~|^2 + t2``;
- preconvolution, ``D' = Pr*S - K*T`` with ``Pr`` the reflected, unit-sum
  science PSF ``P`` and ``K`` matching the template to ``P*Pr``:
  ``A = s2 |P~|^2 + t2 |K~|^2``.

Difference images. ``phi~ = sqrt(A(0) / A(k))`` gives noise power
``|phi~|^2 A = A(0)``: white, of variance ``s2 + t2 kappa^2`` (resp.
``s2 kappa^2 + t2``). ``phi~(0) = 1``, so ``phi`` has unit sum and leaves
fluxes and the photometric level of ``D`` unchanged. LSST's
``sqrt((s2 + t2) / A)`` is the ``kappa = 1`` case; the ``kappa^2`` keeps the
filter flux-conserving for any kernel sum.

Score images. With ``K = K0*Pr`` the preconvolved difference is
``D' = Pr*D0`` for the plain difference ``D0 = S - K0*T``. The optimal
detection (likelihood) image is the decorrelated ``D0`` filtered with its own
reflected PSF ``P_D = P*phi0``: ``score~ = conj(P~) |phi0~|^2 D0~ =
|phi0~|^2 D'~``, and ``|phi0~|^2 = A(0) |P~|^2 / A``, so
``phi~ = A(0) |P~|^2 / A(k)`` -- no square root (DMTN-179). Its noise power
is ``A(0) |P_D~|^2``: white noise of variance ``A(0)`` seen through the
matched filter, which is what makes ``score / sqrt(V)`` a detection
significance. Making the score's *pixel* noise white would deconvolve the
preconvolution (gains ``~1 / |P~|``, 1e5-1e13 at high ``k`` for sampled
PSFs) and is not offered.

Variance plane. The input plane is the per-pixel variance of the
*correlated* difference (for example ``V_S + K^2*V_T`` from propagating the
variance through the convolution); for stationary noise its mean is
``<A>``. After filtering the per-pixel variance is ``<|phi~|^2 A>`` (with the
cropped kernel), so :func:`decorrelate` multiplies the plane by
``variance_ratio = <|phi~|^2 A> / <A>``: its mean then equals the expected
post-decorrelation variance and spatial structure (bright stars, masks) is
kept. It is exact for stationary noise; where the science/template variance
mix changes locally it is approximate, as LSST's own estimate is.

Missing data. Non-finite pixels are filled with 0 before the convolution and
are NaN again afterwards. The no-data region is not grown -- that would
discard valid pixels around every bad column -- but pixels whose kernel
footprint reaches missing data or the image border are returned in
``incomplete``: their noise is only partly whitened.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from ..errors import InvalidParameterError
from ..math import box_dilate
from ._convolve import BLOCK, convolve_image, wrapped_kernel

__all__ = [
    "CONVOLVE_SCIENCE",
    "CONVOLVE_TEMPLATE",
    "DecorrelatedImage",
    "Decorrelation",
    "SpatialDecorrelation",
    "compute_decorrelation",
    "decorrelate",
    "decorrelate_spatially",
    "decorrelation_kernel",
    "difference_psf",
]

#: ``D = S - K*T``: the template was convolved with the matching kernel.
CONVOLVE_TEMPLATE = "convolveTemplate"
#: ``D = K*S - T``: the science image was convolved with the matching kernel.
CONVOLVE_SCIENCE = "convolveScience"

_SUM_TOLERANCE = 1e-3
_ENERGY_TOLERANCE = 1e-6

VarianceMap = float | Callable[[float, float], float]


@dataclass(frozen=True)
class Decorrelation:
    """A decorrelation kernel and the noise it predicts.

    Attributes
    ----------
    kernel : numpy.ndarray
        Odd-sized, centred, unit-sum real-space kernel ``phi``.
    variance, input_variance : float
        Expected per-pixel noise variance after and before decorrelation for
        the ``s2, t2`` given, in units of ``S - K*T`` (or ``K*S - T``).
    lag1_correlation : float
        Predicted neighbour correlation of the output noise (larger of x, y):
        ~0 for difference images, large for score images.
    mode : str
        ``"convolveTemplate"`` or ``"convolveScience"``.
    preconvolved : bool
        True for the score-image correction of a preconvolved difference.
    """

    kernel: np.ndarray
    variance: float
    input_variance: float
    lag1_correlation: float
    mode: str
    preconvolved: bool

    @property
    def variance_ratio(self) -> float:
        """Factor that turns the input variance plane into the output one."""
        return self.variance / self.input_variance


@dataclass(frozen=True)
class DecorrelatedImage:
    """A decorrelated difference (or score) image.

    Attributes
    ----------
    image, variance : numpy.ndarray
        Float32 image (NaN where the input was not finite) and variance plane.
    margin : int
        Half-size of the decorrelation kernel.
    """

    image: np.ndarray
    variance: np.ndarray
    margin: int

    @property
    def incomplete(self) -> np.ndarray:
        """True where the kernel footprint reached missing pixels or the image
        border, so the noise there is only partly whitened."""
        return _incomplete(~np.isfinite(self.image), self.margin)


@dataclass(frozen=True)
class SpatialDecorrelation(DecorrelatedImage):
    """A spatially decorrelated image and the per-cell decorrelations.

    Attributes
    ----------
    x_centers, y_centers : numpy.ndarray
        Array positions of the cell centres.
    cells : tuple of tuple of Decorrelation
        ``cells[iy][ix]`` is the decorrelation at ``(x_centers[ix], y_centers[iy])``.
    """

    x_centers: np.ndarray
    y_centers: np.ndarray
    cells: tuple[tuple[Decorrelation, ...], ...]


def _check_kernel(kernel: np.ndarray, what: str) -> np.ndarray:
    array = np.array(kernel, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] % 2 == 0 or array.shape[1] % 2 == 0:
        raise InvalidParameterError(f"{what} must be a 2-d array of odd sizes, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidParameterError(f"{what} has non-finite pixels")
    return array


def _unit_sum(kernel: np.ndarray, what: str) -> np.ndarray:
    total = kernel.sum()
    if not total > 0:
        raise InvalidParameterError(f"{what} must have a positive sum, got {total}")
    return kernel / total


def _check_inputs(mode: str, s2: float, t2: float, preconvolved: bool) -> None:
    if mode not in (CONVOLVE_TEMPLATE, CONVOLVE_SCIENCE):
        raise InvalidParameterError(f"mode must be {CONVOLVE_TEMPLATE!r} or {CONVOLVE_SCIENCE!r}")
    if preconvolved and mode != CONVOLVE_TEMPLATE:
        raise InvalidParameterError("a preconvolution kernel requires mode='convolveTemplate'")
    if not (np.isfinite(s2) and np.isfinite(t2) and s2 >= 0 and t2 >= 0):
        raise InvalidParameterError(f"variances must be finite and >= 0, got {s2}, {t2}")
    # The unconvolved image's noise keeps A(k) > 0; without it phi deconvolves K.
    unconvolved = t2 if mode == CONVOLVE_SCIENCE else s2
    if not unconvolved > 0:
        raise InvalidParameterError(
            f"{mode} decorrelation needs a positive variance of the "
            f"unconvolved image, got science {s2}, template {t2}"
        )


def _grid_size(kernels: tuple[np.ndarray, ...], size: int | None) -> int:
    """Side of the frequency grid: wide enough that the periodic ``phi`` does not alias."""
    largest = max(max(k.shape) for k in kernels)
    return sfft.next_fast_len(max(256, 16 * largest, 4 * (size or 0)))


def _tolerated_half(phi: np.ndarray) -> int:
    """Smallest half-width of a crop of ``phi`` that keeps its sum and energy.

    The crop's sum is within ``_SUM_TOLERANCE`` of the total and it holds all but
    ``_ENERGY_TOLERANCE`` of the energy; capped at a quarter of the grid.
    """
    n = phi.shape[0]
    offset = np.abs(np.arange(n) - n // 2)
    ring = np.maximum(offset[:, None], offset[None, :]).ravel()
    centred = np.roll(phi, (n // 2, n // 2), axis=(0, 1)).ravel()
    sums = np.cumsum(np.bincount(ring, weights=centred))
    energy = np.cumsum(np.bincount(ring, weights=centred**2))
    good = np.abs(sums - sums[-1]) <= _SUM_TOLERANCE
    good &= energy >= energy[-1] * (1 - _ENERGY_TOLERANCE)
    return int(min(np.argmax(good), n // 4))


def _power(kernel: np.ndarray, n: int) -> np.ndarray:
    """``|kernel~|^2`` on an ``n x n`` frequency grid."""
    return np.abs(sfft.fft2(wrapped_kernel(kernel, (n, n)))) ** 2


def _noise_power(power_k, power_p, s2: float, t2: float, mode: str) -> np.ndarray:
    """Noise power spectrum ``A(k)`` of the (possibly preconvolved) difference."""
    if power_p is not None:
        return s2 * power_p + t2 * power_k
    if mode == CONVOLVE_SCIENCE:
        return s2 * power_k + t2
    return s2 + t2 * power_k


def _filter(noise: np.ndarray, power_p: np.ndarray | None) -> np.ndarray:
    """``phi~``: whitening for differences, matched-filter correction for scores."""
    if power_p is None:
        return np.sqrt(noise[0, 0] / noise)  # noise > 0: _check_inputs
    ratio = np.divide(power_p, noise, out=np.zeros_like(noise), where=noise > 0)
    return noise[0, 0] * ratio


def _centred_crop(wrapped: np.ndarray, size: int) -> np.ndarray:
    """The ``size x size`` centre of an origin-centred periodic array."""
    half = size // 2
    shifted = np.roll(wrapped, (half, half), axis=(0, 1))
    return shifted[:size, :size]


def _lag1(response: np.ndarray) -> float:
    acf = sfft.ifft2(response).real
    lags = (acf[0, 1] / acf[0, 0], acf[1, 0] / acf[0, 0])
    return float(max(lags, key=abs))


def compute_decorrelation(
    matching_kernel: np.ndarray,
    science_variance: float,
    template_variance: float,
    *,
    size: int | None = None,
    mode: str = CONVOLVE_TEMPLATE,
    preconvolution_kernel: np.ndarray | None = None,
) -> Decorrelation:
    """Decorrelation kernel of a difference image and the variances it implies.

    Parameters
    ----------
    matching_kernel : numpy.ndarray
        PSF-matching kernel ``K`` (odd sizes, centred; any sum).
    science_variance, template_variance : float
        Mean per-pixel variances ``s2, t2`` of the images before matching.
    size : int, optional
        Odd side of the returned kernel. By default the smallest that keeps
        the kernel sum within 1e-3 and its energy within 1e-6 of the
        untruncated kernel (a larger gain ``sqrt(t2 / s2)`` needs a larger kernel).
    mode : {"convolveTemplate", "convolveScience"}
        Which image ``K`` was applied to.
    preconvolution_kernel : numpy.ndarray, optional
        If given, the science image was convolved with the reflection of this
        kernel (normalised here to unit sum) and the result corrects the
        score image (module docstring).

    Returns
    -------
    Decorrelation
        ``kernel``, ``variance``, ``input_variance``, ``lag1_correlation``.
    """
    s2, t2 = float(science_variance), float(template_variance)
    kernel = _check_kernel(matching_kernel, "matching_kernel")
    pre = preconvolution_kernel
    if pre is not None:
        pre = _unit_sum(_check_kernel(pre, "preconvolution_kernel"), "preconvolution_kernel")
    _check_inputs(mode, s2, t2, pre is not None)
    size = None if size is None else _check_size(size)
    n = _grid_size((kernel,) if pre is None else (kernel, pre), size)
    power_p = None if pre is None else _power(pre, n)
    noise = _noise_power(_power(kernel, n), power_p, s2, t2, mode)
    raw = sfft.ifft2(_filter(noise, power_p)).real
    size = 2 * max(_tolerated_half(raw), 1) + 1 if size is None else size
    phi = _centred_crop(raw, size)
    phi /= phi.sum()
    response = _power(phi, n) * noise
    return Decorrelation(
        phi, float(response.mean()), float(noise.mean()), _lag1(response), mode, pre is not None
    )


def _check_size(size: int) -> int:
    if int(size) != size or size < 1 or size % 2 == 0:
        raise InvalidParameterError(f"size must be an odd positive integer, got {size!r}")
    return int(size)


def decorrelation_kernel(
    matching_kernel: np.ndarray,
    science_variance: float,
    template_variance: float,
    *,
    size: int | None = None,
    mode: str = CONVOLVE_TEMPLATE,
    preconvolution_kernel: np.ndarray | None = None,
) -> np.ndarray:
    """Real-space, odd-sized, centred, unit-sum decorrelation kernel ``phi``.

    Shorthand for ``compute_decorrelation(...).kernel``; see
    :func:`compute_decorrelation` for the parameters.
    """
    return compute_decorrelation(
        matching_kernel,
        science_variance,
        template_variance,
        size=size,
        mode=mode,
        preconvolution_kernel=preconvolution_kernel,
    ).kernel


def _check_planes(image: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, variance = np.asarray(image), np.asarray(variance)
    if image.ndim != 2 or image.shape != variance.shape:
        raise InvalidParameterError(
            f"image and variance must be 2-d of one shape, got {image.shape}, {variance.shape}"
        )
    return image, variance


def _incomplete(missing: np.ndarray, half: int) -> np.ndarray:
    """Pixels within ``half`` of a missing pixel or of the image border."""
    near = box_dilate(missing, half)
    if half == 0:
        return near
    near[:half], near[-half:], near[:, :half], near[:, -half:] = True, True, True, True
    return near


def decorrelate(
    image: np.ndarray,
    variance: np.ndarray,
    kernel: np.ndarray,
    *,
    variance_ratio: float,
    tile: int = BLOCK,
) -> DecorrelatedImage:
    """Convolve a difference image with a decorrelation kernel.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Difference image and its per-pixel variance (of the correlated
        noise). Non-finite image pixels are missing data.
    kernel : numpy.ndarray
        Decorrelation kernel (``Decorrelation.kernel``).
    variance_ratio : float
        ``Decorrelation.variance_ratio``: output variance per unit input variance.
    tile : int
        Output tile side of the overlap-save FFT convolution.

    Returns
    -------
    DecorrelatedImage
        ``image`` (float32, NaN where missing), ``variance`` (the input plane
        times ``variance_ratio``, float32) and ``incomplete``.
    """
    image, variance = _check_planes(image, variance)
    kernel = _check_kernel(kernel, "kernel")
    if not (np.isfinite(variance_ratio) and variance_ratio > 0):
        raise InvalidParameterError(f"variance_ratio must be finite and > 0, got {variance_ratio}")
    missing = ~np.isfinite(image)
    out = convolve_image(image, kernel, block=tile)
    out[missing] = np.nan
    scaled = np.multiply(variance, np.float32(variance_ratio), dtype=np.float32)
    return DecorrelatedImage(out, scaled, max(kernel.shape) // 2)


def _cell_centers(length: int, n: int) -> np.ndarray:
    if int(n) != n or not 1 <= n <= length:
        raise InvalidParameterError(f"n_cells entries must be integers in [1, {length}], got {n!r}")
    return (np.arange(n) + 0.5) * (length / n) - 0.5


def _tent_weights(length: int, centers: np.ndarray) -> np.ndarray:
    """``(n, length)`` linear-interpolation weights, constant beyond the end centres."""
    positions = np.arange(length, dtype=np.float64)
    return np.stack([np.interp(positions, centers, row) for row in np.eye(centers.size)])


def _support(weights: np.ndarray) -> slice:
    nonzero = np.flatnonzero(weights > 0)
    return slice(int(nonzero[0]), int(nonzero[-1]) + 1)


def _value(variance: VarianceMap, x: float, y: float) -> float:
    return float(variance(x, y)) if callable(variance) else float(variance)


def _convolve_region(image, kernel: np.ndarray, ys: slice, xs: slice, tile: int) -> np.ndarray:
    """``convolve_image(image, kernel)[ys, xs]``, computed from the region and its halo only."""
    hy, hx = kernel.shape[0] // 2, kernel.shape[1] // 2
    y0, x0 = max(ys.start - hy, 0), max(xs.start - hx, 0)
    source = image[y0 : ys.stop + hy, x0 : xs.stop + hx]
    result = convolve_image(source, kernel, block=tile)
    return result[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def decorrelate_spatially(
    image: np.ndarray,
    variance: np.ndarray,
    kernel_at: Callable[[float, float], np.ndarray],
    science_variance: VarianceMap,
    template_variance: VarianceMap,
    *,
    n_cells: tuple[int, int] = (4, 4),
    mode: str = CONVOLVE_TEMPLATE,
    preconvolution_kernel: np.ndarray | None = None,
    size: int | None = None,
    tile: int = BLOCK,
) -> SpatialDecorrelation:
    """Decorrelate with kernels that vary across the image.

    A decorrelation is computed at the centre of each of ``nx x ny`` cells;
    each cell's kernel is applied to the region where its bilinear
    (tent) weight is non-zero, and the results are summed with those weights.
    The weights sum to one everywhere, so a constant kernel gives exactly
    :func:`decorrelate`; the variance plane is scaled by the blended ratios.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Difference image and its per-pixel variance.
    kernel_at : callable
        ``kernel_at(x, y)`` returns the matching kernel at array position
        ``(x, y)`` (column, row; pixel centres at integers).
    science_variance, template_variance : float or callable
        Mean per-pixel variances, or ``f(x, y)`` giving them locally.
    n_cells : (int, int)
        Number of cells along x and y.
    mode, preconvolution_kernel, size
        As for :func:`compute_decorrelation`.
    tile : int
        Output tile side of the FFT convolution.

    Returns
    -------
    SpatialDecorrelation
        ``image``, ``variance``, ``incomplete`` as for :func:`decorrelate`,
        plus ``x_centers``, ``y_centers`` and the per-cell ``cells``.
    """
    image, variance = _check_planes(image, variance)
    x_centers = _cell_centers(image.shape[1], n_cells[0])
    y_centers = _cell_centers(image.shape[0], n_cells[1])
    options = {"size": size, "mode": mode, "preconvolution_kernel": preconvolution_kernel}
    cells = tuple(
        tuple(
            _cell(kernel_at, science_variance, template_variance, x, y, options) for x in x_centers
        )
        for y in y_centers
    )
    weights = (_tent_weights(image.shape[0], y_centers), _tent_weights(image.shape[1], x_centers))
    out, ratio = _blend_cells(image, cells, *weights, tile)
    missing = ~np.isfinite(image)
    out[missing] = np.nan
    ratio *= variance
    half = max(max(c.kernel.shape) for row in cells for c in row) // 2
    return SpatialDecorrelation(out, ratio, half, x_centers, y_centers, cells)


def _cell(kernel_at, science_variance, template_variance, x, y, options) -> Decorrelation:
    """The decorrelation at array position ``(x, y)``."""
    variances = (_value(science_variance, x, y), _value(template_variance, x, y))
    return compute_decorrelation(kernel_at(x, y), *variances, **options)


def _blend_cells(image, cells, y_weights, x_weights, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of each cell's convolution, and of its variance ratio (float32)."""
    out = np.zeros(image.shape, np.float32)
    ratio = np.zeros(image.shape, np.float32)
    for iy, ix in itertools.product(range(len(cells)), range(len(cells[0]))):
        cell = cells[iy][ix]
        ys, xs = _support(y_weights[iy]), _support(x_weights[ix])
        weight = np.outer(y_weights[iy, ys], x_weights[ix, xs]).astype(np.float32)
        out[ys, xs] += weight * _convolve_region(image, cell.kernel, ys, xs, tile)
        ratio[ys, xs] += weight * np.float32(cell.variance_ratio)
    return out, ratio


def difference_psf(
    psf_image: np.ndarray,
    decorrelation_kernel: np.ndarray,
    *,
    preconvolution_kernel: np.ndarray | None = None,
) -> np.ndarray:
    """PSF of a decorrelated difference or score image (unit sum, odd, centred).

    Parameters
    ----------
    psf_image : numpy.ndarray
        PSF of the difference before decorrelation: the science PSF for
        ``convolveTemplate`` and preconvolution, the template PSF for
        ``convolveScience``.
    decorrelation_kernel : numpy.ndarray
        The kernel ``phi`` applied.
    preconvolution_kernel : numpy.ndarray, optional
        The kernel whose reflection preconvolved the science image; the
        result is then the score image's PSF ``psf * reflected * phi``.

    Returns
    -------
    numpy.ndarray
        The full convolution (side = sum of the sides minus the overlaps),
        normalised to unit sum.
    """
    psf = _full_convolution(
        _check_kernel(psf_image, "psf_image"),
        _check_kernel(decorrelation_kernel, "decorrelation_kernel"),
    )
    if preconvolution_kernel is not None:
        pre = _check_kernel(preconvolution_kernel, "preconvolution_kernel")
        psf = _full_convolution(psf, pre[::-1, ::-1])
    return _unit_sum(psf, "difference PSF")


def _full_convolution(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The full 2-d convolution of two small arrays (scipy.signal's ``fftconvolve`` "full")."""
    shape = (a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1)
    return sfft.irfft2(sfft.rfft2(a, s=shape) * sfft.rfft2(b, s=shape), s=shape)
