"""Statistics of an image in rectangular bins (the first step of a background model)."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

__all__ = ["BinnedImage", "bin_image", "fill_empty_bins"]

_STATISTICS = {"meanclip": 0, "median": 1, "mean": 2}


@dataclass(frozen=True)
class BinnedImage:
    """Per-bin statistics of an image.

    Attributes
    ----------
    values : numpy.ndarray
        ``(n_bins_y, n_bins_x)`` statistic of each bin; NaN for bins with too
        few good pixels.
    counts : numpy.ndarray
        Number of pixels used in each bin.
    variances : numpy.ndarray
        Variance of the statistic of each bin (pixel scatter squared over count).
    x_centers, y_centers : numpy.ndarray
        Mean array coordinates of the good pixels of each bin column / row
        (the bin geometry's centre where a row or column has none).
    bin_size : tuple of int
        ``(bin_x, bin_y)`` in pixels.
    """

    values: np.ndarray
    counts: np.ndarray
    variances: np.ndarray
    x_centers: np.ndarray
    y_centers: np.ndarray
    bin_size: tuple[int, int]


@numba.njit(cache=True)
def _clipped_mean_var(values: np.ndarray, nsigma: float, max_iter: int) -> tuple:
    """Clipped mean (first pass about the median with the IQR sigma), variance, count."""
    n = values.size
    if n == 0:
        return np.nan, np.nan, 0
    # Median and IQR from at most ~2048 evenly spaced samples: only the first
    # clipping threshold depends on them.
    ordered = np.sort(values[:: max(1, n // 2048)])
    m = ordered.size
    center = ordered[m // 2] if m % 2 else 0.5 * (ordered[m // 2 - 1] + ordered[m // 2])
    sigma = 0.741301109252801 * (ordered[(3 * m) // 4] - ordered[m // 4])
    mean, var, count = center, 0.0, n
    for _ in range(max_iter):
        lo, hi = center - nsigma * sigma, center + nsigma * sigma
        total, total2, count = 0.0, 0.0, 0
        for v in values:
            if sigma == 0.0 or (v >= lo and v <= hi):
                total += v
                total2 += v * v
                count += 1
        if count == 0:
            return np.nan, np.nan, 0
        mean = total / count
        var = max(total2 / count - mean * mean, 0.0) * count / max(count - 1, 1)
        new_sigma = np.sqrt(var)
        if new_sigma == sigma and mean == center:
            break
        center, sigma = mean, new_sigma
    return mean, var, count


@numba.njit(parallel=True, cache=True)
def _bin_statistics(image, good, bin_x, bin_y, statistic, nsigma, max_iter):
    height, width = image.shape
    ny, nx = (height + bin_y - 1) // bin_y, (width + bin_x - 1) // bin_x
    values = np.full((ny, nx), np.nan)
    variances = np.full((ny, nx), np.nan)
    counts = np.zeros((ny, nx), np.int64)
    n_good = np.zeros((ny, nx), np.int64)
    sum_x = np.zeros((ny, nx))
    sum_y = np.zeros((ny, nx))
    for index in numba.prange(ny * nx):
        j, i = index // nx, index % nx
        y0, x0 = j * bin_y, i * bin_x
        y1, x1 = min(y0 + bin_y, height), min(x0 + bin_x, width)
        buffer = np.empty((y1 - y0) * (x1 - x0))
        n = 0
        sx, sy = 0.0, 0.0
        for y in range(y0, y1):
            for x in range(x0, x1):
                v = image[y, x]
                if good[y, x] and np.isfinite(v):
                    buffer[n] = v
                    n += 1
                    sx += x
                    sy += y
        data = buffer[:n]
        if n == 0:
            continue
        sum_x[j, i], sum_y[j, i], n_good[j, i] = sx, sy, n
        if statistic == 0:
            mean, var, count = _clipped_mean_var(data, nsigma, max_iter)
            values[j, i], variances[j, i], counts[j, i] = mean, var / max(count, 1), count
        else:
            mean = data.mean()
            var = ((data - mean) ** 2).sum() / max(n - 1, 1)
            counts[j, i] = n
            # the variance of a median is pi/2 times that of a mean
            scale = 1.5707963267948966 if statistic == 1 else 1.0
            values[j, i] = np.median(data) if statistic == 1 else mean
            variances[j, i] = scale * var / n
    return values, variances, counts, n_good, sum_x, sum_y


def bin_image(
    image: np.ndarray,
    *,
    bin_size: int | tuple[int, int],
    good: np.ndarray | None = None,
    statistic: str = "meanclip",
    nsigma: float = 3.0,
    max_iter: int = 3,
    min_fraction: float = 0.1,
) -> BinnedImage:
    """Statistics of ``image`` in bins of ``bin_size`` pixels (``(bin_x, bin_y)``).

    Bins are laid from the array origin; the last row and column of bins may
    be narrower. A bin whose good, finite pixels are fewer than
    ``min_fraction`` of its area gets a NaN value (see :func:`fill_empty_bins`).

    Parameters
    ----------
    image : numpy.ndarray
        2-d image.
    bin_size : int or (int, int)
        Bin width and height in pixels.
    good : numpy.ndarray of bool, optional
        False for pixels to ignore (masked).
    statistic : {"meanclip", "median", "mean"}
        Per-bin statistic; ``meanclip`` is LSST's default for backgrounds.
    nsigma, max_iter : float, int
        Clipping threshold and number of passes for ``meanclip``.
    min_fraction : float
        Minimum fraction of usable pixels in a bin.
    """
    bin_x, bin_y = (bin_size, bin_size) if np.isscalar(bin_size) else bin_size
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    good = np.ones(image.shape, bool) if good is None else np.ascontiguousarray(good, bool)
    values, variances, counts, n_good, sum_x, sum_y = _bin_statistics(
        image, good, int(bin_x), int(bin_y), _STATISTICS[statistic], float(nsigma), int(max_iter)
    )
    height, width = image.shape
    area = np.outer(
        np.diff(np.minimum(np.arange(values.shape[0] + 1) * bin_y, height)),
        np.diff(np.minimum(np.arange(values.shape[1] + 1) * bin_x, width)),
    )
    sparse = n_good < min_fraction * area
    values[sparse] = np.nan
    variances[sparse] = np.nan
    return BinnedImage(
        values=values,
        counts=counts,
        variances=variances,
        x_centers=_centers(sum_x.sum(axis=0), n_good.sum(axis=0), bin_x, width),
        y_centers=_centers(sum_y.sum(axis=1), n_good.sum(axis=1), bin_y, height),
        bin_size=(int(bin_x), int(bin_y)),
    )


def _centers(sums: np.ndarray, counts: np.ndarray, size: int, extent: int) -> np.ndarray:
    starts = np.arange(sums.size) * size
    geometric = 0.5 * (starts + np.minimum(starts + size, extent) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), geometric)


def fill_empty_bins(values: np.ndarray) -> np.ndarray:
    """Copy of ``values`` with NaN bins filled by harmonic (Laplace) interpolation.

    Each empty bin takes the mean of its neighbours, solved jointly, so a hole
    in a linear gradient is filled exactly and holes at the grid edge are
    continued flat. Nearest-neighbour filling would leave steps of the local
    gradient times the bin size.

    Raises
    ------
    ValueError
        If no bin is finite.
    """
    values = np.array(values, dtype=np.float64)
    empty = ~np.isfinite(values)
    if not empty.any():
        return values
    if empty.all():
        raise ValueError("every bin is empty: no good pixels to model the background")
    ny, nx = values.shape
    index = -np.ones(values.shape, np.int64)
    index[empty] = np.arange(empty.sum())
    rows, cols, data = [], [], []
    rhs = np.zeros(empty.sum())
    for (j, i), k in zip(np.argwhere(empty), index[empty], strict=True):
        neighbours = [
            (j + dj, i + di)
            for dj, di in ((-1, 0), (1, 0), (0, -1), (0, 1))
            if 0 <= j + dj < ny and 0 <= i + di < nx
        ]
        rows.append(k)
        cols.append(k)
        data.append(float(len(neighbours)))
        for jj, ii in neighbours:
            if empty[jj, ii]:
                rows.append(k)
                cols.append(index[jj, ii])
                data.append(-1.0)
            else:
                rhs[k] += values[jj, ii]
    n = empty.sum()
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=(n, n))
    values[empty] = sparse_linalg.spsolve(matrix, rhs)
    return values
