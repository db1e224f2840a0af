"""Bin statistics accumulated block by block over images that share one grid of bins.

The pieces of a large binned image (LSST ``TractBackground``): each block of
rows of each image is binned by :func:`block_bin_statistics` on the bins it
touches, and :class:`BinSums` adds the blocks up, so bins split between
blocks or images combine their parts weighted by pixel count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["BinStatistics", "BinSums", "block_bin_statistics"]

#: Statistic codes of the binning kernel.
_STATISTICS = {"meanclip": 0, "median": 1, "mean": 2}
#: Variance of a median over that of a mean (Gaussian data).
_MEDIAN_VARIANCE_FACTOR = math.pi / 2

#: Rows of the kernel's output: good pixels, pixels kept by the statistic, statistic,
#: pixel variance of the kept pixels, sums of the good pixels' x and y, and the sum and
#: number of variance-plane values of a sample of them.
_N_GOOD, _N_USED, _MEAN, _SCATTER, _SUM_X, _SUM_Y, _SUM_VAR, _N_VAR = range(8)
_N_OUTPUTS = 8
#: Floating-point licence of the pixel sums: reassociation (vectorised sums) but no
#: assumption that values are finite, so the NaN tests stay.
_FAST = {"reassoc", "contract", "nsz", "arcp"}
#: Pixels sampled for the median and IQR that set the first clipping threshold.
_CLIP_SAMPLE = 512
#: Standard deviation of a Gaussian over its inter-quartile range.
_IQR_TO_SIGMA = 0.741301109252801
#: Clipping bounds that keep every finite value.
_HUGE = 1e300
#: Blocks of fewer pixels are binned on one thread: a parallel launch costs more.
_PARALLEL_PIXELS = 1 << 20

# The pixel loops run over row slices from index 0 with few reductions each and
# select rather than branch: that is what lets LLVM vectorise them (~0.5 ns/pixel).


@numba.njit(cache=True, fastmath=_FAST)
def _good_sums(image, mask, skip, bad_bits, y0, y1, x0, x1, low, high):
    """Count, sum and sum of squares of the good pixels of a bin within ``[low, high]``,
    and the sum of their rows.

    Good: none of ``bad_bits``, not ``skip``; NaN fails the bounds.
    """
    n, sy, total, total2 = 0, 0, 0.0, 0.0
    for y in range(y0, y1):
        image_row, mask_row, skip_row = image[y, x0:x1], mask[y, x0:x1], skip[y, x0:x1]
        row_n = 0
        for k in range(image_row.size):
            v = np.float64(image_row[k])
            ok = ((mask_row[k] & bad_bits) == 0) & (skip_row[k] == 0) & (v >= low) & (v <= high)
            row_n += np.int64(ok)
            u = v if ok else 0.0
            total += u
            total2 += u * u
        n += row_n
        sy += y * row_n
    return n, sy, total, total2


@numba.njit(cache=True)
def _x_sum(image, mask, skip, bad_bits, y0, y1, x0, x1):
    """Sum of the columns of a bin's good, finite pixels."""
    sx = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = image[y, x]
            if (mask[y, x] & bad_bits) == 0 and skip[y, x] == 0 and np.isfinite(v):
                sx += x
    return sx


@numba.njit(cache=True)
def _good_values(image, mask, skip, bad_bits, y0, y1, x0, x1, step, buffer):
    """Every ``step``-th pixel of the bin (row-major) that is good and finite, sorted."""
    width = x1 - x0
    m = 0
    for k in range(0, (y1 - y0) * width, step):
        y, x = y0 + k // width, x0 + k % width
        v = image[y, x]
        good = (mask[y, x] & bad_bits) == 0 and skip[y, x] == 0 and np.isfinite(v)
        if good and m < buffer.size:
            buffer[m] = v
            m += 1
    return np.sort(buffer[:m])


@numba.njit(cache=True)
def _sampled_variance(variance, mask, skip, bad_bits, y0, y1, x0, x1):
    """Sum and number of the finite variances of ~512 evenly spaced good pixels of a bin."""
    width = x1 - x0
    total, n = 0.0, 0
    for k in range(0, (y1 - y0) * width, _sample_step(y1 - y0, width)):
        y, x = y0 + k // width, x0 + k % width
        w = variance[y, x]
        if (mask[y, x] & bad_bits) == 0 and skip[y, x] == 0 and np.isfinite(w):
            total += w
            n += 1
    return total, n


@numba.njit(cache=True)
def _sample_step(height, width):
    """Step giving at most ``_CLIP_SAMPLE + 1`` samples; odd, so not always the same columns."""
    return -(-height * width // _CLIP_SAMPLE) | 1


@numba.njit(cache=True)
def _mean_var(count, total, total2):
    mean = total / count
    return mean, max(total2 / count - mean * mean, 0.0) * count / max(count - 1, 1)


@numba.njit(cache=True)
def _bin_statistic(image, mask, skip, bad_bits, bounds, sums, statistic, nsigma, max_iter, buf):
    """``(value, pixel variance, pixels used)`` of one bin (LSST MEANCLIP, MEAN or MEDIAN).

    MEANCLIP clips first about the median at ``nsigma`` times the IQR sigma,
    both from ~512 evenly spaced good pixels, then ``max_iter - 1`` times about
    the mean with the standard deviation of the pixels kept (the rule of
    :func:`skydiff.math.bin_image`).
    """
    y0, y1, x0, x1 = bounds
    n, total, total2 = sums
    mean, var = _mean_var(n, total, total2)
    if statistic == 2:
        return mean, var, n
    if statistic == 1:
        values = _good_values(image, mask, skip, bad_bits, y0, y1, x0, x1, 1, buf)
        return np.median(values), var, n
    step = _sample_step(y1 - y0, x1 - x0)
    sample = _good_values(image, mask, skip, bad_bits, y0, y1, x0, x1, step, buf)
    m = sample.size
    center, sigma = mean, np.sqrt(var)
    if m >= 8:
        center = 0.5 * (np.float64(sample[(m - 1) // 2]) + np.float64(sample[m // 2]))
        sigma = _IQR_TO_SIGMA * (np.float64(sample[(3 * m) // 4]) - np.float64(sample[m // 4]))
    for _ in range(max_iter):
        half = nsigma * sigma if sigma > 0 else _HUGE
        count, _, total, total2 = _good_sums(
            image, mask, skip, bad_bits, y0, y1, x0, x1, center - half, center + half
        )
        if count == 0:
            return np.nan, np.nan, 0
        mean, var = _mean_var(count, total, total2)
        center, sigma, n = mean, np.sqrt(var), count
    return mean, var, n


def _block_statistics(
    image, variance, mask, skip, bad_bits, x_edges, y_edges, statistic, nsigma, max_iter
):
    """Per-bin statistics of one block (rows ``_N_GOOD`` ...) on bins given by array edges.

    Pixels with any of ``bad_bits``, with ``skip`` set (counted from another
    warp already) or not finite are left out.
    """
    ny, nx = y_edges.size - 1, x_edges.size - 1
    out = np.zeros((_N_OUTPUTS, ny, nx))
    largest = np.diff(y_edges).max() * np.diff(x_edges).max()
    for index in numba.prange(ny * nx):
        j, i = index // nx, index % nx
        y0, y1, x0, x1 = y_edges[j], y_edges[j + 1], x_edges[i], x_edges[i + 1]
        n, sy, total, total2 = _good_sums(
            image, mask, skip, bad_bits, y0, y1, x0, x1, -_HUGE, _HUGE
        )
        if n == 0:
            continue
        if n == (y1 - y0) * (x1 - x0):
            sx = (y1 - y0) * (x0 + x1 - 1) * (x1 - x0) // 2
        else:
            sx = _x_sum(image, mask, skip, bad_bits, y0, y1, x0, x1)
        out[_N_GOOD, j, i], out[_SUM_X, j, i], out[_SUM_Y, j, i] = n, sx, sy
        out[_SUM_VAR, j, i], out[_N_VAR, j, i] = _sampled_variance(
            variance, mask, skip, bad_bits, y0, y1, x0, x1
        )
        buf = np.empty(largest if statistic == 1 else _CLIP_SAMPLE + 1, np.float32)
        mean, var, count = _bin_statistic(
            image,
            mask,
            skip,
            bad_bits,
            (y0, y1, x0, x1),
            (n, total, total2),
            statistic,
            nsigma,
            max_iter,
            buf,
        )
        if count > 0:
            out[_N_USED, j, i], out[_MEAN, j, i], out[_SCATTER, j, i] = count, mean, var
    return out


_block_statistics_parallel = numba.njit(parallel=True, cache=True)(_block_statistics)
_block_statistics_serial = numba.njit(cache=True)(_block_statistics)


def block_bin_statistics(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    skip: np.ndarray,
    *,
    bad_bits: int,
    x_edges: np.ndarray,
    y_edges: np.ndarray,
    statistic: str = "meanclip",
    nsigma: float = 3.0,
    max_iter: int = 2,
) -> np.ndarray:
    """Statistics of the good pixels of one block in the bins given by array edges.

    MEANCLIP clips first about the median at ``nsigma`` times the IQR sigma,
    both from ~512 evenly spaced good pixels, then ``max_iter - 1`` times about
    the mean with the standard deviation of the pixels kept (the rule of
    :func:`skydiff.math.bin_image`). Blocks of a million pixels or more are
    binned in parallel.

    Parameters
    ----------
    image, variance : numpy.ndarray
        ``(height, width)`` float32 pixels and their variances.
    mask : numpy.ndarray
        ``(height, width)`` int32 mask bits.
    skip : numpy.ndarray
        ``(height, width)`` uint8 flags: 1 on pixels to leave out (counted
        from another image already).
    bad_bits : int
        Pixels with any of these mask bits are left out, as are non-finite ones.
    x_edges, y_edges : numpy.ndarray
        int64 column and row edges of the bins, as array offsets (``0`` to
        ``width`` and ``height``).
    statistic : {"meanclip", "median", "mean"}
        Statistic of a bin's good pixels (LSST MEANCLIP, MEDIAN, MEAN).
    nsigma, max_iter : float, int
        Clipping threshold and passes of ``meanclip``.

    Returns
    -------
    numpy.ndarray
        ``(8, n_bins_y, n_bins_x)`` additive statistics, to pass to
        :meth:`BinSums.add`.
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    kernel = (
        _block_statistics_parallel if image.size >= _PARALLEL_PIXELS else _block_statistics_serial
    )
    return kernel(
        image,
        variance,
        mask,
        skip,
        bad_bits,
        x_edges,
        y_edges,
        _STATISTICS[statistic],
        float(nsigma),
        int(max_iter),
    )


@dataclass(frozen=True)
class BinStatistics:
    """Bin statistics of the blocks added to a :class:`BinSums`.

    Attributes
    ----------
    values : numpy.ndarray
        ``(n_bins_y, n_bins_x)`` statistic of each bin; NaN for bins with too
        few good pixels.
    variances : numpy.ndarray
        Variance of each value (pixel scatter squared over count, times pi/2
        for a median); NaN where the value is.
    counts : numpy.ndarray
        int64 pixels used by the statistic of each bin (0 for empty bins).
    x_centroids, y_centroids : numpy.ndarray
        Mean coordinates of each bin's good pixels (NaN for bins without any).
    n_good : numpy.ndarray
        Good pixels of each bin.
    mean_variance : float
        Mean of the variance plane over a sample of ~512 good pixels per bin
        (NaN without any).
    """

    values: np.ndarray
    variances: np.ndarray
    counts: np.ndarray
    x_centroids: np.ndarray
    y_centroids: np.ndarray
    n_good: np.ndarray
    mean_variance: float


class BinSums:
    """Additive bin statistics of a grid of bins, accumulated block by block.

    Parameters
    ----------
    shape : tuple of int
        ``(n_bins_y, n_bins_x)`` of the whole grid.
    """

    def __init__(self, shape: tuple[int, int]):
        self.n_good, self.sum_x, self.sum_y = (np.zeros(shape) for _ in range(3))
        self.s0, self.s1, self.s2 = (np.zeros(shape) for _ in range(3))
        self.sum_var, self.n_var = np.zeros(shape), np.zeros(shape)

    def add(self, stats: np.ndarray, where: tuple[slice, slice], *, x0: int, y0: int) -> None:
        """Add the :func:`block_bin_statistics` of a block in place.

        ``where`` are the ``(rows, columns)`` of the grid's bins that the block
        touches; ``x0, y0`` the grid coordinates of the block's first pixel.
        """
        n, mean, scatter = stats[_N_USED], stats[_MEAN], stats[_SCATTER]
        self.n_good[where] += stats[_N_GOOD]
        self.sum_var[where] += stats[_SUM_VAR]
        self.n_var[where] += stats[_N_VAR]
        self.sum_x[where] += stats[_SUM_X] + x0 * stats[_N_GOOD]
        self.sum_y[where] += stats[_SUM_Y] + y0 * stats[_N_GOOD]
        self.s0[where] += n
        self.s1[where] += n * mean
        # sum of squares of the kept values: n (var_ddof0 + mean^2) = (n - 1) var + n mean^2
        self.s2[where] += np.maximum(n - 1, 0) * scatter + n * mean * mean

    def finish(
        self, *, areas: np.ndarray, min_fraction: float, statistic: str = "meanclip"
    ) -> BinStatistics:
        """The bin statistics; bins with fewer than ``min_fraction * areas`` good pixels empty.

        ``statistic`` is the one the blocks were binned with (a median's
        variance is pi/2 times a mean's).
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.s1 / self.s0
            scatter = np.maximum(self.s2 - self.s1 * mean, 0.0)
            variances = scatter / np.maximum(self.s0 - 1, 1) / self.s0
            cx, cy = self.sum_x / self.n_good, self.sum_y / self.n_good
        if statistic == "median":
            variances = variances * _MEDIAN_VARIANCE_FACTOR
        usable = (self.s0 > 0) & (self.n_good >= min_fraction * areas)
        n_var = self.n_var.sum()
        return BinStatistics(
            values=np.where(usable, mean, np.nan),
            variances=np.where(usable, variances, np.nan),
            counts=np.where(usable, self.s0, 0).astype(np.int64),
            x_centroids=cx,
            y_centroids=cy,
            n_good=self.n_good.copy(),
            mean_variance=float(self.sum_var.sum() / n_var) if n_var > 0 else math.nan,
        )
