"""Convolution of whole images with a spatially varying kernel, by linearity (array layer)."""

from __future__ import annotations

import numpy as np
from scipy import fft

__all__ = ["convolve_image", "convolve_spatially", "fast_length"]


def fast_length(n: int) -> int:
    """Smallest length >= ``n`` whose only prime factors are 2, 3 and 5 (fast FFTs)."""
    best = 1 << (n - 1).bit_length()
    five = 1
    while five < best:
        three = five
        while three < best:
            two = three
            while two < n:
                two *= 2
            best = min(best, two)
            three *= 3
        five *= 5
    return best


def _spectra_size(shape: tuple[int, int], size: int) -> tuple[int, int]:
    return fast_length(shape[0] + size - 1), fast_length(shape[1] + size - 1)


def convolve_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``image`` convolved with one odd kernel, same shape, zero beyond the edges (float32)."""
    return convolve_spatially(
        image, kernel[None], [np.ones(1, np.float32)], [np.ones(1, np.float32)]
    )


def convolve_spatially(
    image: np.ndarray,
    kernels: np.ndarray,
    x_terms: list[np.ndarray],
    y_terms: list[np.ndarray],
) -> np.ndarray:
    """``sum_m x_terms[m] y_terms[m] (image * kernels[m])``: a spatially varying convolution.

    A kernel that varies as ``sum_m P_m(x, y) K_m`` with separable terms
    ``P_m = X_m(x) Y_m(y)`` is applied exactly by linearity: one forward FFT
    of the image, one product and inverse FFT per term, each weighted by its
    polynomial. Non-finite pixels count as zero. float32 throughout.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)``.
    kernels : numpy.ndarray
        ``(n_terms, size, size)``, odd size, in convolution orientation.
    x_terms, y_terms : list of numpy.ndarray
        Per term, the factors along x (``width`` values, or one value for a
        constant) and along y (``height`` values, or one).
    """
    height, width = image.shape
    size = kernels.shape[1]
    radius = size // 2
    shape = _spectra_size(image.shape, size)
    data = np.array(image, dtype=np.float32)  # a float32 copy, zeroed where not finite
    data[~np.isfinite(data)] = 0.0
    image_ft = fft.rfft2(data, s=shape, workers=-1)
    del data
    result = np.zeros(image.shape, np.float32)
    for kernel, xt, yt in zip(kernels, x_terms, y_terms, strict=True):
        kernel_ft = fft.rfft2(kernel.astype(np.float32), s=shape, workers=-1)
        kernel_ft *= image_ft
        term = fft.irfft2(kernel_ft, s=shape, workers=-1)[
            radius : radius + height, radius : radius + width
        ]
        del kernel_ft
        xt = np.asarray(xt, np.float32).reshape(1, -1)
        yt = np.asarray(yt, np.float32).reshape(-1, 1)
        if xt.size > 1:
            term *= xt
        if yt.size > 1:
            term *= yt
        if xt.size == 1 and yt.size == 1:
            term *= xt.item() * yt.item()
        result += term
    return result
