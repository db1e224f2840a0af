"""Robust statistics on arrays, vectorised over an axis.

Pure functions: no I/O, no masks by name (see :func:`skydiff.image.statistics`
for that). Pixels to ignore are given as a boolean ``good`` array or as NaN.
All sums are accumulated in float64.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "IQR_TO_SIGMA",
    "ClippedStats",
    "clipped_stats",
    "difference_noise",
    "masked_median",
    "robust_sigma",
]

#: Ratio of a Gaussian's standard deviation to its inter-quartile range.
IQR_TO_SIGMA = 0.741301109252801


def _with_nan(data: np.ndarray, good: np.ndarray | None) -> np.ndarray:
    data = np.asarray(data, dtype=np.float64)
    bad = ~np.isfinite(data)
    if good is not None:
        bad |= ~np.asarray(good, dtype=bool)
    return np.where(bad, np.nan, data) if bad.any() else data


def _good_values(data: np.ndarray, good: np.ndarray | None) -> np.ndarray:
    """The finite, good values of ``data`` as a flat array (no float64 copy of the rest)."""
    data = np.asarray(data)
    keep = np.isfinite(data)
    if good is not None:
        keep &= np.asarray(good, dtype=bool)
    return data[keep]


def masked_median(
    data: np.ndarray, *, good: np.ndarray | None = None, axis: int | None = None
) -> np.ndarray | float:
    """Median of the finite, good values (NaN where there are none)."""
    if axis is None:
        values = _good_values(data, good)
        return float(np.median(values)) if values.size else np.nan
    values = _with_nan(data, good)
    with np.errstate(all="ignore"):
        if np.isnan(values).all():
            return np.full(np.delete(values.shape, axis), np.nan)
        return _quiet_nan(np.nanmedian, values, axis)


def robust_sigma(
    data: np.ndarray, *, good: np.ndarray | None = None, axis: int | None = None
) -> np.ndarray | float:
    """Standard deviation estimated from the inter-quartile range (0.7413 IQR)."""
    if axis is None:
        values = _good_values(data, good)
        if values.size == 0:
            return np.nan
        q25, q75 = np.percentile(values, [25.0, 75.0])
        return float(IQR_TO_SIGMA * (q75 - q25))
    values = _with_nan(data, good)
    q25, q75 = _quiet_nan(
        lambda v, axis: np.nanpercentile(v, [25.0, 75.0], axis=axis), values, axis
    )
    return IQR_TO_SIGMA * (q75 - q25)


def _quiet_nan(function, values, axis):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return function(values, axis=axis)


class ClippedStats:
    """Result of :func:`clipped_stats`: ``mean``, ``stddev``, ``n`` (arrays or scalars)."""

    __slots__ = ("mean", "n", "stddev")

    def __init__(self, mean, stddev, n):
        self.mean, self.stddev, self.n = mean, stddev, n

    def __iter__(self):
        return iter((self.mean, self.stddev, self.n))

    def __repr__(self) -> str:
        return f"ClippedStats(mean={self.mean}, stddev={self.stddev}, n={self.n})"


def clipped_stats(
    data: np.ndarray,
    *,
    good: np.ndarray | None = None,
    nsigma: float = 3.0,
    max_iter: int = 3,
    axis: int | None = None,
) -> ClippedStats:
    """Sigma-clipped mean and standard deviation (LSST ``MEANCLIP``/``STDEVCLIP``).

    The first pass clips about the median at ``nsigma`` times the IQR-based
    sigma, so a few outliers cannot inflate the first threshold; later passes
    clip about the mean of the kept values with their standard deviation,
    until nothing changes or ``max_iter`` passes are done.

    Parameters
    ----------
    data : numpy.ndarray
        Values; non-finite ones are ignored.
    good : numpy.ndarray of bool, optional
        False for values to ignore.
    nsigma : float
        Clipping threshold in standard deviations.
    max_iter : int
        Maximum number of clipping passes (``>= 1``).
    axis : int, optional
        Reduce along this axis only (e.g. across a stack of images).

    Returns
    -------
    ClippedStats
        ``mean``, ``stddev`` (ddof=1) and ``n`` of the kept values; NaN mean
        where nothing is kept.
    """
    values = _with_nan(data, good)
    keep = np.isfinite(values)
    center = masked_median(values, axis=axis)
    sigma = robust_sigma(values, axis=axis)
    for _ in range(max(int(max_iter), 1)):
        limit = nsigma * np.asarray(sigma)
        center_b = np.expand_dims(center, axis) if axis is not None else center
        limit_b = np.expand_dims(limit, axis) if axis is not None else limit
        with np.errstate(invalid="ignore"):
            new_keep = np.isfinite(values) & ~(np.abs(values - center_b) > limit_b)
        mean, std, n = _mean_std(values, new_keep, axis)
        converged = np.array_equal(new_keep, keep)
        keep, center, sigma = new_keep, mean, std
        if converged:
            break
    return ClippedStats(mean, std, n)


def _mean_std(values: np.ndarray, keep: np.ndarray, axis: int | None):
    n = keep.sum(axis=axis)
    filled = np.where(keep, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=axis) / n
        mean_b = np.expand_dims(mean, axis) if axis is not None else mean
        resid = np.where(keep, values - mean_b, 0.0)
        std = np.sqrt((resid**2).sum(axis=axis) / (n - 1))
    if axis is None:
        return float(mean), float(std), int(n)
    return mean, std, n


def difference_noise(image: np.ndarray, *, good: np.ndarray | None = None) -> float:
    """Pixel noise sigma from differences of horizontal and vertical neighbours.

    The sigma-clipped standard deviation of neighbour differences over
    sqrt(2): insensitive to smooth backgrounds and, through the clipping, to
    sources, so it works on crowded images where the IQR of the pixel values
    does not. Assumes uncorrelated noise (it underestimates the noise of
    resampled images).
    """
    values = _with_nan(image, good)
    diffs = np.concatenate(
        [
            (values[:, 1:] - values[:, :-1]).ravel(),
            (values[1:, :] - values[:-1, :]).ravel(),
        ]
    )
    return clipped_stats(diffs, nsigma=3.0, max_iter=20).stddev / np.sqrt(2.0)
