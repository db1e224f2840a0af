"""Fast image filters for detection: Gaussian smoothing, peaks, footprint growth.

Compiled with numba and parallel over rows; float32 in and out. scipy.ndimage
equivalents are 3-10x slower on a 4096x4096 image on two cores.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "bits_set",
    "box_dilate",
    "box_or",
    "find_peaks",
    "gaussian_kernel_1d",
    "gaussian_smooth",
    "matched_filter_significance",
]


def gaussian_kernel_1d(sigma: float, *, truncate: float = 4.0) -> np.ndarray:
    """Unit-sum Gaussian taps out to ``truncate`` sigma."""
    radius = max(1, math.ceil(truncate * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


@numba.njit(parallel=True, cache=True)
def _convolve_rows(image: np.ndarray, taps: np.ndarray, good: np.ndarray) -> np.ndarray:
    height, width = image.shape
    radius = taps.size // 2
    out = np.zeros((height, width), np.float32)
    for y in numba.prange(height):
        padded = np.zeros(width + 2 * radius, np.float32)
        for x in range(width):
            v = image[y, x]
            if good[y, x] and np.isfinite(v):
                padded[x + radius] = v
        for k in range(taps.size):
            t = taps[k]
            for x in range(width):
                out[y, x] += t * padded[x + k]
    return out


@numba.njit(parallel=True, cache=True)
def _convolve_columns(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    height, width = image.shape
    radius = taps.size // 2
    out = np.zeros((height, width), np.float32)
    for y in numba.prange(height):
        for k in range(taps.size):
            yy = y + k - radius
            if 0 <= yy < height:
                t = taps[k]
                for x in range(width):
                    out[y, x] += t * image[yy, x]
    return out


def gaussian_smooth(
    image: np.ndarray, sigma: float, *, good: np.ndarray | None = None
) -> np.ndarray:
    """Image convolved with a unit-sum Gaussian of ``sigma`` pixels (float32).

    Non-finite pixels, pixels where ``good`` is False and pixels beyond the
    edge count as zero, so the smoothed value is not renormalised near them
    (as a matched filter should).
    """
    taps = gaussian_kernel_1d(sigma)
    good = np.ones(image.shape, np.bool_) if good is None else np.ascontiguousarray(good, bool)
    rows = _convolve_rows(np.ascontiguousarray(image, dtype=np.float32), taps, good)
    return _convolve_columns(rows, taps)


@numba.njit(parallel=True, cache=True)
def _ratio_sqrt(numerator: np.ndarray, denominator: np.ndarray, scale: float) -> np.ndarray:
    height, width = numerator.shape
    out = np.zeros((height, width), np.float32)
    for y in numba.prange(height):
        for x in range(width):
            d = denominator[y, x] * scale
            if d > 0:
                out[y, x] = numerator[y, x] / np.sqrt(d)
    return out


def matched_filter_significance(
    image: np.ndarray, variance: np.ndarray, sigma: float, *, good: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(I * G) / sqrt(V * G^2)`` for a unit-sum Gaussian ``G``, and ``I * G``.

    ``G^2`` is a Gaussian of ``sigma / sqrt(2)`` with sum ``1 / (4 pi sigma^2)``.
    Pixels that are not ``good`` count as zero signal and zero variance.
    """
    smoothed = gaussian_smooth(image, sigma, good=good)
    smoothed_variance = gaussian_smooth(variance, sigma / math.sqrt(2.0), good=good)
    scale = 1.0 / (4.0 * math.pi * sigma * sigma)
    return _ratio_sqrt(smoothed, smoothed_variance, scale), smoothed


@numba.njit(parallel=True, cache=True)
def _peak_flags(image: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    height, width = image.shape
    flags = np.zeros((height, width), np.bool_)
    for y in numba.prange(1, height - 1):
        for x in range(1, width - 1):
            if not allowed[y, x]:
                continue
            v = image[y, x]
            is_peak = True
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    n = image[y + dy, x + dx]
                    # of equal neighbours only the first in raster order is a peak
                    if n > v or (n == v and (dy < 0 or (dy == 0 and dx < 0))):
                        is_peak = False
            flags[y, x] = is_peak
    return flags


def find_peaks(image: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, x)`` of strict local maxima (8 neighbours) where ``allowed`` is True.

    The outermost rows and columns are never peaks.
    """
    flags = _peak_flags(
        np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(allowed, dtype=np.bool_)
    )
    return np.nonzero(flags)


@numba.njit(parallel=True, cache=True)
def _dilate_rows(mask: np.ndarray, radius: int) -> np.ndarray:
    height, width = mask.shape
    out = np.zeros((height, width), np.bool_)
    for y in numba.prange(height):
        last = -2 * radius - 2
        for x in range(width):
            if mask[y, x]:
                last = x
            if x - last <= radius:
                out[y, x] = True
        last = width + 2 * radius + 2
        for x in range(width - 1, -1, -1):
            if mask[y, x]:
                last = x
            if last - x <= radius:
                out[y, x] = True
    return out


@numba.njit(parallel=True, cache=True)
def _dilate_columns(mask: np.ndarray, radius: int, n_chunks: int) -> np.ndarray:
    height, width = mask.shape
    out = np.zeros((height, width), np.bool_)
    chunk = (width + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        x0, x1 = c * chunk, min((c + 1) * chunk, width)
        last = np.full(x1 - x0, -2 * radius - 2)
        for y in range(height):
            for x in range(x0, x1):
                if mask[y, x]:
                    last[x - x0] = y
                if y - last[x - x0] <= radius:
                    out[y, x] = True
        last[:] = height + 2 * radius + 2
        for y in range(height - 1, -1, -1):
            for x in range(x0, x1):
                if mask[y, x]:
                    last[x - x0] = y
                if last[x - x0] - y <= radius:
                    out[y, x] = True
    return out


def box_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels along x and y (a square structuring element)."""
    if radius <= 0:
        return np.array(mask, dtype=bool)
    rows = _dilate_rows(np.ascontiguousarray(mask, dtype=np.bool_), int(radius))
    return _dilate_columns(rows, int(radius), 2 * numba.get_num_threads())


@numba.njit(cache=True)
def _window_or(values: np.ndarray, radius: int, out: np.ndarray) -> None:
    """OR over ``[i - radius, i + radius]`` for a 1-d array (van Herk / Gil-Werman)."""
    n = values.size
    width = 2 * radius + 1
    prefix = np.empty(n, values.dtype)
    suffix = np.empty(n, values.dtype)
    for start in range(0, n, width):
        stop = min(start + width, n)
        acc = values.dtype.type(0)
        for i in range(start, stop):
            acc |= values[i]
            prefix[i] = acc
        acc = values.dtype.type(0)
        for i in range(stop - 1, start - 1, -1):
            acc |= values[i]
            suffix[i] = acc
    for i in range(n):
        lo, hi = max(i - radius, 0), min(i + radius, n - 1)
        # [lo, hi] spans at most two blocks: suffix of the first, prefix of the second
        if lo // width != hi // width:
            out[i] = suffix[lo] | prefix[hi]
        else:
            out[i] = _or_range(values, lo, hi)


@numba.njit(cache=True)
def _or_range(values: np.ndarray, lo: int, hi: int):
    acc = values.dtype.type(0)
    for i in range(lo, hi + 1):
        acc |= values[i]
    return acc


@numba.njit(parallel=True, cache=True)
def _or_filter_rows(mask: np.ndarray, radius: int) -> np.ndarray:
    out = np.empty_like(mask)
    for y in numba.prange(mask.shape[0]):
        _window_or(mask[y], radius, out[y])
    return out


@numba.njit(parallel=True, cache=True)
def _or_filter_columns(mask: np.ndarray, radius: int, n_chunks: int) -> np.ndarray:
    """The running OR of :func:`_window_or` along y, rows traversed in memory order."""
    height, width = mask.shape
    out = np.empty_like(mask)
    size = 2 * radius + 1
    chunk = (width + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        x0, x1 = c * chunk, min((c + 1) * chunk, width)
        prefix = np.empty((height, x1 - x0), mask.dtype)
        suffix = np.empty((height, x1 - x0), mask.dtype)
        for start in range(0, height, size):
            stop = min(start + size, height)
            for y in range(start, stop):
                for x in range(x0, x1):
                    above = prefix[y - 1, x - x0] if y > start else 0
                    prefix[y, x - x0] = above | mask[y, x]
            for y in range(stop - 1, start - 1, -1):
                for x in range(x0, x1):
                    below = suffix[y + 1, x - x0] if y < stop - 1 else 0
                    suffix[y, x - x0] = below | mask[y, x]
        for y in range(height):
            lo, hi = max(y - radius, 0), min(y + radius, height - 1)
            if lo // size != hi // size:
                for x in range(x0, x1):
                    out[y, x] = suffix[lo, x - x0] | prefix[hi, x - x0]
            else:
                for x in range(x0, x1):
                    acc = mask.dtype.type(0)
                    for yy in range(lo, hi + 1):
                        acc |= mask[yy, x]
                    out[y, x] = acc
    return out


def box_or(mask: np.ndarray, radius: int) -> np.ndarray:
    """Each pixel's bits ORed over a ``(2 radius + 1)``-square window (all planes at once).

    The mask of an image convolved with a kernel of that size: a pixel is
    affected by every flagged pixel under the kernel. Separable, and O(1) per
    pixel whatever the radius (van Herk / Gil-Werman running OR).
    """
    mask = np.ascontiguousarray(mask, dtype=np.int32)
    if radius <= 0:
        return mask.copy()
    rows = _or_filter_rows(mask, int(radius))
    return _or_filter_columns(rows, int(radius), 2 * numba.get_num_threads())


@numba.njit(parallel=True, cache=True)
def _bits_set(array: np.ndarray, bits: np.int32) -> np.ndarray:
    out = np.empty(array.shape, np.bool_)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i in numba.prange(flat_in.size):
        flat_out[i] = (flat_in[i] & bits) != 0
    return out


def bits_set(array: np.ndarray, bits: int) -> np.ndarray:
    """Boolean array, True where ``array & bits`` is non-zero (one pass, no temporaries)."""
    array = np.asarray(array)
    if array.dtype != np.int32 or not array.flags.c_contiguous or array.size < 65536:
        return (array & bits) != 0
    return _bits_set(array, np.int32(bits))
