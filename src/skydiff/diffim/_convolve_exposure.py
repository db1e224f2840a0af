"""An exposure convolved with a spatially varying kernel: image, variance and mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..image import Box, Exposure, Mask, MaskedImage
from ..math import box_or, gaussian_smooth, normalized_coordinates
from ._convolve import convolve_image, convolve_spatially
from ._kernel import SpatialKernel

__all__ = ["convolve_exposure", "convolved_variance", "grown_mask", "separable_terms"]


def convolve_exposure(
    exposure: Exposure,
    kernel: SpatialKernel,
    *,
    grown_planes: Sequence[str],
    exact_variance: bool = False,
) -> Exposure:
    """``exposure`` convolved with ``kernel``; its PSF is dropped (the caller knows the new one).

    The image is convolved exactly (:func:`convolve_spatially`); the
    variance with the squared kernel at the centre (:func:`convolved_variance`);
    the bits of ``grown_planes`` are ORed over the kernel footprint, since
    every pixel they touch is affected. Pixels within the kernel's half-width
    of the border saw zeros beyond it and become NO_DATA, as in LSST.
    """
    image = convolve_spatially(
        exposure.image, kernel.spatial_kernels(), *separable_terms(kernel, exposure.bbox)
    )
    variance = convolved_variance(
        exposure.variance, kernel.kernel_image(*exposure.bbox.center), exact=exact_variance
    )
    radius = kernel.size // 2
    mask = grown_mask(exposure.mask, grown_planes, radius)
    result = MaskedImage(image, mask, variance, bbox=exposure.bbox)
    missing = result.mask.get("NO_DATA", ignore_missing=True)
    missing[:radius], missing[-radius:], missing[:, :radius], missing[:, -radius:] = (True,) * 4
    result.set_no_data(missing)
    return exposure.replace(masked_image=result, psf=None)


def convolved_variance(variance: np.ndarray, kernel: np.ndarray, *, exact: bool) -> np.ndarray:
    """The variance convolved with the squared kernel.

    Exactly (one more FFT convolution) when ``exact``; otherwise with a
    Gaussian of the squared kernel's sum and second moments, which is exact
    wherever the variance is smooth on the kernel's scale and four times
    cheaper.
    """
    squared = kernel**2
    if exact:
        return convolve_image(variance, squared)
    total = float(squared.sum())
    half = squared.shape[0] // 2
    offsets = np.arange(-half, half + 1)
    sigma2 = float((squared * (offsets[None, :] ** 2 + offsets[:, None] ** 2)).sum()) / total
    smoothed = gaussian_smooth(variance, max(np.sqrt(sigma2 / 2.0), 0.3))
    smoothed *= np.float32(total)
    return smoothed


def grown_mask(mask: Mask, planes: Sequence[str], radius: int) -> Mask:
    """A copy of ``mask`` with the bits of ``planes`` ORed over ``(2 radius + 1)``-squares."""
    bits = mask.bitmask(tuple(planes), ignore_missing=True)
    grown = box_or(mask.array & bits, radius)
    return Mask((mask.array & ~bits) | grown, bbox=mask.bbox, planes=mask.planes)


def separable_terms(kernel: SpatialKernel, bbox: Box) -> tuple[list, list]:
    """Per spatial term ``u^a v^b`` of ``kernel``: its x and y factors over ``bbox``."""
    x = np.arange(bbox.x0, bbox.x_end, dtype=np.float64)
    y = np.arange(bbox.y0, bbox.y_end, dtype=np.float64)
    u, _ = normalized_coordinates(x, np.zeros_like(x), kernel.bounds)
    _, v = normalized_coordinates(np.zeros_like(y), y, kernel.bounds)
    xs, ys = [], []
    for total in range(kernel.spatial_order + 1):
        for j in range(total + 1):
            xs.append(u ** (total - j) if total - j else np.ones(1))
            ys.append(v**j if j else np.ones(1))
    return xs, ys
