"""MatchBackgroundsTask: the warps of many visits brought to one visit's background.

LSST ``lsst.pipe.tasks.matchBackgrounds.MatchBackgroundsTask`` with its
``TractBackground``: every visit's warps are binned over the whole tract,
each visit's binned image is differenced with the reference visit's, a smooth
model of the difference is fitted, and that model is added to the visit's
warps. The reference is chosen automatically unless given.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
from astropy.table import Table

from ..background import BackgroundModel
from ..errors import InvalidExposureError, InvalidParameterError, NoWorkFound
from ..image import Box, Exposure, Mask, MaskedImage, grid_offset, pixel_to_sky
from ..io._handle import InMemoryHandle
from ..math import evaluate_chebyshev_grid, fill_empty_bins, fit_chebyshev, interpolate_grid
from ..task import Config, Task, TaskMetadata, TaskResult, config_field

__all__ = [
    "MatchBackgroundsConfig",
    "MatchBackgroundsResult",
    "MatchBackgroundsTask",
    "MatchedWarpHandle",
]

log = logging.getLogger(__name__)

#: Warps whose WCS moves a tract pixel by more than this (pixels) are on another grid.
_GRID_TOLERANCE = 1e-3
#: Statistic codes of the binning kernel.
_STATISTICS = {"meanclip": 0, "median": 1, "mean": 2}
#: Variance of a median over that of a mean (Gaussian data).
_MEDIAN_VARIANCE_FACTOR = math.pi / 2
#: Strips in which the diagnostic rows of a warp are sampled.
_DIAGNOSTIC_STRIPS = 16
#: Least spread (bins squared) of bin centroids along an axis to estimate a gradient.
_MIN_SPREAD = 0.25


@dataclass(frozen=True)
class MatchBackgroundsConfig(Config):
    """Configuration of :class:`MatchBackgroundsTask` (LSST names in brackets)."""

    bin_size: int = config_field(
        128,
        doc="Superpixel size in tract pixels; bins are aligned to the tract grid "
        "[binSize, TractBackgroundConfig.xBin/yBin].",
    )
    grid_statistic: Literal["meanclip", "mean", "median"] = config_field(
        "meanclip", doc="Statistic of the good pixels of a bin [gridStatistic]."
    )
    nsigma: float = config_field(3.0, doc="Clipping threshold of meanclip [numSigmaClip].")
    max_iter: int = config_field(2, doc="Clipping passes of meanclip [numIter].")
    bad_mask_planes: tuple[str, ...] = config_field(
        ("BAD", "SAT", "EDGE", "NO_DATA", "DETECTED"),
        doc="Pixels with any of these planes (those a warp defines) are left out of the "
        "bins [badMaskPlanes].",
    )
    min_fraction: float = config_field(
        0.1,
        doc="A bin is used when at least this fraction of its pixels is good; others are "
        "filled from their neighbours [TractBackgroundConfig.minFrac].",
    )
    correct_bin_centroids: bool = config_field(
        True,
        doc="Move each bin value from the centroid of its good pixels to the bin centre "
        "along the local gradient of the binned image (partly covered bins of a sloped "
        "background are otherwise biased).",
    )
    use_approximate: bool = config_field(
        False,
        doc="Fit the binned difference with a Chebyshev series instead of interpolating it "
        "with a spline [usePolynomial].",
    )
    approx_order: int = config_field(
        8, doc="Order of the Chebyshev series (triangular terms) [order]."
    )
    interpolation: Literal["akima", "natural", "linear", "constant"] = config_field(
        "akima", doc="Spline between bins when use_approximate is False [interpStyle]."
    )
    undersample_style: Literal["REDUCE_INTERP_ORDER", "THROW_EXCEPTION"] = config_field(
        "REDUCE_INTERP_ORDER",
        doc="When too few bins constrain the Chebyshev order: lower the order, or raise "
        "[undersampleStyle].",
    )
    best_ref_weight_fit_rms: float = config_field(
        0.2,
        doc="Weight of the normalised RMS of a smooth fit to a visit's own binned image in "
        "the reference cost (prefers smooth backgrounds) [bestRefWeightLevel].",
    )
    best_ref_weight_variance: float = config_field(
        0.4,
        doc="Weight of the normalised mean variance in the reference cost [bestRefWeightVariance].",
    )
    best_ref_weight_coverage: float = config_field(
        0.4,
        doc="Weight of (1 - coverage of the tract region) in the reference cost "
        "[bestRefWeightCoverage].",
    )
    block_rows: int = config_field(
        512, doc="Rows of a warp read at a time while binning (rounded to whole bin rows)."
    )
    diagnostic_rows: int = config_field(
        256,
        doc="Rows of each warp (in 16 evenly spaced strips; all rows of a shorter warp) on "
        "which the matched mean-square difference with the reference is measured.",
    )
    build_matched_warps: bool = config_field(
        True,
        doc="Return the matched warps as in-memory Exposures (built one warp at a time); "
        "when False only the lazy matched_handles are returned.",
    )

    def validate(self) -> None:
        self.check(self.bin_size >= 1, "bin_size", "must be >= 1")
        self.check(self.nsigma > 0, "nsigma", "must be > 0")
        self.check(self.max_iter >= 1, "max_iter", "must be >= 1")
        self.check(0 <= self.min_fraction <= 1, "min_fraction", "must be in [0, 1]")
        self.check(0 <= self.approx_order <= 10, "approx_order", "must be in 0..10")
        weights = (
            self.best_ref_weight_fit_rms,
            self.best_ref_weight_variance,
            self.best_ref_weight_coverage,
        )
        self.check(
            min(weights) >= 0 and sum(weights) > 0,
            "best_ref_weight_coverage",
            "and the other best_ref_weight_* must be >= 0 with a positive sum",
        )
        self.check(self.block_rows >= 1, "block_rows", "must be >= 1")
        self.check(self.diagnostic_rows >= 1, "diagnostic_rows", "must be >= 1")
        self.check(
            all(isinstance(p, str) and p for p in self.bad_mask_planes),
            "bad_mask_planes",
            "must be plane names",
        )


# -- the tract grid of bins ------------------------------------------------------------------


@dataclass(frozen=True)
class _TractGrid:
    """Bins of ``bin_size`` tract pixels aligned to pixel 0 of the tract, clipped to a region."""

    region: Box
    bin_size: int
    x_edges: np.ndarray
    y_edges: np.ndarray

    @classmethod
    def covering(cls, region: Box, bin_size: int) -> _TractGrid:
        def edges(start: int, end: int) -> np.ndarray:
            first = (start // bin_size + 1) * bin_size
            return np.concatenate([[start], np.arange(first, end, bin_size), [end]])

        return cls(region, bin_size, edges(region.x0, region.x_end), edges(region.y0, region.y_end))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y_edges.size - 1, self.x_edges.size - 1)

    @property
    def x_centers(self) -> np.ndarray:
        return 0.5 * (self.x_edges[:-1] + self.x_edges[1:] - 1)

    @property
    def y_centers(self) -> np.ndarray:
        return 0.5 * (self.y_edges[:-1] + self.y_edges[1:] - 1)

    @property
    def areas(self) -> np.ndarray:
        return np.outer(np.diff(self.y_edges), np.diff(self.x_edges))

    def bin_slices(self, box: Box) -> tuple[slice, slice]:
        """``(rows, columns)`` of the bins that ``box`` (inside the region) touches."""
        rows = _index_range(self.y_edges, box.y0, box.y_end)
        columns = _index_range(self.x_edges, box.x0, box.x_end)
        return rows, columns

    def local_edges(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges clipped to ``box``, as array offsets from its first pixel."""
        rows, columns = self.bin_slices(box)
        x = np.clip(self.x_edges[columns.start : columns.stop + 1], box.x0, box.x_end) - box.x0
        y = np.clip(self.y_edges[rows.start : rows.stop + 1], box.y0, box.y_end) - box.y0
        return x.astype(np.int64), y.astype(np.int64)

    def row_blocks(self, box: Box, block_rows: int) -> list[Box]:
        """``box`` cut into strips of whole bin rows, about ``block_rows`` rows each."""
        rows, _ = self.bin_slices(box)
        step = max(1, block_rows // self.bin_size)
        blocks = []
        for j in range(rows.start, rows.stop, step):
            y0 = max(int(self.y_edges[j]), box.y0)
            y1 = min(int(self.y_edges[min(j + step, rows.stop)]), box.y_end)
            blocks.append(Box(box.x0, y0, box.width, y1 - y0))
        return blocks


def _index_range(edges: np.ndarray, start: int, end: int) -> slice:
    first = int(np.searchsorted(edges, start, side="right")) - 1
    last = int(np.searchsorted(edges, end - 1, side="right")) - 1
    return slice(first, last + 1)


# -- binning kernel --------------------------------------------------------------------------

#: Rows of the kernel's output: good pixels, pixels kept by the statistic, statistic,
#: pixel variance of the kept pixels, sums of x, y and of the variance plane, and the
#: number of finite variance values.
_N_GOOD, _N_USED, _MEAN, _SCATTER, _SUM_X, _SUM_Y, _SUM_VAR, _N_VAR = range(8)


#: Floating-point licence of the pixel sums: reassociation (vectorised sums) but no
#: assumption that values are finite, so the NaN tests stay.
_FAST = {"reassoc", "contract", "nsz", "arcp"}
#: Pixels sampled for the median and IQR that set the first clipping threshold.
_CLIP_SAMPLE = 512
#: Standard deviation of a Gaussian over its inter-quartile range.
_IQR_TO_SIGMA = 0.741301109252801
#: Clipping bounds that keep every finite value.
_HUGE = 1e300


@numba.njit(cache=True, fastmath=_FAST)
def _good_sums(image, variance, mask, skip, bad_bits, y0, y1, x0, x1):
    """Count, coordinate sums, value sums and variance sums of a bin's good pixels.

    Good: none of ``bad_bits``, not ``skip``, finite. Branch-free so it vectorises.
    """
    n, sx, sy, nv = 0, 0, 0, 0
    total, total2, sv = 0.0, 0.0, 0.0
    for y in range(y0, y1):
        row_n, row_sx = 0, 0
        for x in range(x0, x1):
            v, w = np.float64(image[y, x]), np.float64(variance[y, x])
            ok = ((mask[y, x] & bad_bits) == 0) & (skip[y, x] == 0) & np.isfinite(v)
            row_n += 1 if ok else 0
            row_sx += x if ok else 0
            total += v if ok else 0.0
            total2 += v * v if ok else 0.0
            ok_w = ok & np.isfinite(w)
            sv += w if ok_w else 0.0
            nv += 1 if ok_w else 0
        n += row_n
        sx += row_sx
        sy += y * row_n
    return n, sx, sy, total, total2, sv, nv


@numba.njit(cache=True, fastmath=_FAST)
def _clip_sums(image, mask, skip, bad_bits, y0, y1, x0, x1, low, high):
    """Count, sum and sum of squares of a bin's good pixels within ``[low, high]``."""
    n, total, total2 = 0, 0.0, 0.0
    for y in range(y0, y1):
        for x in range(x0, x1):
            v = np.float64(image[y, x])
            ok = ((mask[y, x] & bad_bits) == 0) & (skip[y, x] == 0) & (v >= low) & (v <= high)
            n += 1 if ok else 0
            total += v if ok else 0.0
            total2 += v * v if ok else 0.0
    return n, total, total2


@numba.njit(cache=True)
def _good_values(image, mask, skip, bad_bits, y0, y1, x0, x1, step, buffer):
    """Every ``step``-th pixel of the bin (row-major) that is good, sorted."""
    width = x1 - x0
    m = 0
    for k in range(0, (y1 - y0) * width, step):
        y, x = y0 + k // width, x0 + k % width
        v = image[y, x]
        if (mask[y, x] & bad_bits) == 0 and skip[y, x] == 0 and np.isfinite(v):
            buffer[m] = v
            m += 1
    return np.sort(buffer[:m])


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
    step = max(1, (y1 - y0) * (x1 - x0) // _CLIP_SAMPLE) | 1  # odd: not always the same columns
    sample = _good_values(image, mask, skip, bad_bits, y0, y1, x0, x1, step, buf)
    m = sample.size
    center, sigma = mean, np.sqrt(var)
    if m >= 8:
        center = 0.5 * (np.float64(sample[(m - 1) // 2]) + np.float64(sample[m // 2]))
        sigma = _IQR_TO_SIGMA * (np.float64(sample[(3 * m) // 4]) - np.float64(sample[m // 4]))
    for _ in range(max_iter):
        half = nsigma * sigma if sigma > 0 else _HUGE
        count, total, total2 = _clip_sums(
            image, mask, skip, bad_bits, y0, y1, x0, x1, center - half, center + half
        )
        if count == 0:
            return np.nan, np.nan, 0
        mean, var = _mean_var(count, total, total2)
        center, sigma, n = mean, np.sqrt(var), count
    return mean, var, n


@numba.njit(parallel=True, cache=True)
def _block_statistics(
    image, variance, mask, skip, bad_bits, x_edges, y_edges, statistic, nsigma, max_iter
):
    """Per-bin statistics of one block (rows ``_N_GOOD`` ...) on bins given by array edges.

    Pixels with any of ``bad_bits``, with ``skip`` set (counted from another
    warp already) or not finite are left out.
    """
    ny, nx = y_edges.size - 1, x_edges.size - 1
    out = np.zeros((8, ny, nx))
    largest = np.diff(y_edges).max() * np.diff(x_edges).max()
    for index in numba.prange(ny * nx):
        j, i = index // nx, index % nx
        bounds = (y_edges[j], y_edges[j + 1], x_edges[i], x_edges[i + 1])
        n, sx, sy, total, total2, sv, nv = _good_sums(
            image, variance, mask, skip, bad_bits, *bounds
        )
        out[_N_GOOD, j, i], out[_SUM_X, j, i], out[_SUM_Y, j, i] = n, sx, sy
        out[_SUM_VAR, j, i], out[_N_VAR, j, i] = sv, nv
        if n == 0:
            continue
        buf = np.empty(largest if statistic == 1 else _CLIP_SAMPLE + 1, np.float32)
        mean, var, count = _bin_statistic(
            image,
            mask,
            skip,
            bad_bits,
            bounds,
            (n, total, total2),
            statistic,
            nsigma,
            max_iter,
            buf,
        )
        if count > 0:
            out[_N_USED, j, i], out[_MEAN, j, i], out[_SCATTER, j, i] = count, mean, var
    return out


class _BlockBuffer:
    """Pixel buffers reused for every block a handle reads into (no new pages per block).

    In-memory exposures are not copied: their blocks are views.
    """

    def __init__(self, capacity: int):
        self.image = np.empty(capacity, np.float32)
        self.mask = np.empty(capacity, np.int32)
        self.variance = np.empty(capacity, np.float32)
        self.skip = np.empty(capacity, np.uint8)

    def skipped(self, box: Box, counted: list[Box]) -> np.ndarray:
        """Flags over ``box``: 1 on pixels inside one of the ``counted`` boxes."""
        skip = self.skip[: box.area].reshape(box.shape)
        skip[...] = 0
        for other in counted:
            overlap = other.intersection(box)
            if not overlap.is_empty:
                skip[overlap.slices(box)] = 1
        return skip

    def read(self, handle: Any, box: Box) -> Exposure:
        if isinstance(handle, InMemoryHandle) or not _accepts_out(handle):
            return handle.get(box)
        n, shape = box.area, box.shape
        out = MaskedImage(
            self.image[:n].reshape(shape),
            Mask(
                self.mask[:n].reshape(shape),
                bbox=box,
                planes=getattr(handle, "mask_planes", None),
            ),
            self.variance[:n].reshape(shape),
            bbox=box,
        )
        return handle.get(box, out=out)


def _accepts_out(handle: Any) -> bool:
    return "out" in inspect.signature(handle.get).parameters


class _BinSums:
    """Additive bin statistics of one visit, accumulated block by block over its warps."""

    def __init__(self, shape: tuple[int, int]):
        self.n_good, self.n_var, self.sum_var = (np.zeros(shape) for _ in range(3))
        self.sum_x, self.sum_y = np.zeros(shape), np.zeros(shape)
        self.s0, self.s1, self.s2 = (np.zeros(shape) for _ in range(3))

    def add(self, stats: np.ndarray, where: tuple[slice, slice], x0: int, y0: int) -> None:
        n, mean, scatter = stats[_N_USED], stats[_MEAN], stats[_SCATTER]
        self.n_good[where] += stats[_N_GOOD]
        self.n_var[where] += stats[_N_VAR]
        self.sum_var[where] += stats[_SUM_VAR]
        self.sum_x[where] += stats[_SUM_X] + x0 * stats[_N_GOOD]
        self.sum_y[where] += stats[_SUM_Y] + y0 * stats[_N_GOOD]
        self.s0[where] += n
        self.s1[where] += n * mean
        # sum of squares of the kept values: n (var_ddof0 + mean^2) = (n - 1) var + n mean^2
        self.s2[where] += np.maximum(n - 1, 0) * scatter + n * mean * mean


@dataclass(frozen=True)
class _VisitBins:
    """One visit binned over the tract grid."""

    visit: int
    values: np.ndarray
    variances: np.ndarray
    counts: np.ndarray
    coverage: float
    mean_variance: float


def _finish_bins(
    sums: _BinSums, grid: _TractGrid, visit: int, config: MatchBackgroundsConfig
) -> _VisitBins:
    """Bin values (at the bin centres), their variances and the visit's summary figures."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums.s1 / sums.s0
        pooled = (sums.s2 - sums.s1 * mean) / np.maximum(sums.s0 - 1, 1)
        variances = np.maximum(pooled, 0.0) / sums.s0
        cx, cy = sums.sum_x / sums.n_good, sums.sum_y / sums.n_good
    if config.grid_statistic == "median":
        variances = variances * _MEDIAN_VARIANCE_FACTOR
    usable = (sums.s0 > 0) & (sums.n_good >= config.min_fraction * grid.areas)
    values = np.where(usable, mean, np.nan)
    if config.correct_bin_centroids:
        values = _values_at_centers(values, cx, cy, grid)
    n_var = sums.n_var.sum()
    return _VisitBins(
        visit=visit,
        values=values,
        variances=np.where(usable, variances, np.nan),
        counts=np.where(usable, sums.s0, 0).astype(np.int64),
        coverage=float(sums.n_good.sum() / grid.region.area),
        mean_variance=float(sums.sum_var.sum() / n_var) if n_var > 0 else math.nan,
    )


def _neighbourhood_sum(array: np.ndarray) -> np.ndarray:
    """Sum over each element's 3x3 neighbourhood (zero outside the array)."""
    padded = np.pad(array, 1)
    ny, nx = array.shape
    return sum(padded[dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3))


def _values_at_centers(values: np.ndarray, cx: np.ndarray, cy: np.ndarray, grid: _TractGrid):
    """Bin values moved from their pixel centroids to the bin centres.

    A bin's statistic samples the background at the centroid of its good
    pixels. The local gradient, from a plane fitted to the valid bins of the
    3x3 neighbourhood at their centroids, carries it to the bin centre, so a
    partly covered bin of a sloped background agrees with a fully covered one.
    Exact for linear backgrounds; bins whose neighbourhood does not constrain
    a direction are not moved along it.
    """
    valid = np.isfinite(values)
    gx, gy = np.meshgrid(grid.x_centers, grid.y_centers)
    scale = float(grid.bin_size)
    x = np.where(valid, (cx - grid.region.x0) / scale, 0.0)
    y = np.where(valid, (cy - grid.region.y0) / scale, 0.0)
    v = np.where(valid, values, 0.0)
    w = valid.astype(np.float64)
    s, sx, sy, sv = (_neighbourhood_sum(a) for a in (w, w * x, w * y, w * v))
    sxx, sxy, syy = (_neighbourhood_sum(a) for a in (w * x * x, w * x * y, w * y * y))
    sxv, syv = _neighbourhood_sum(w * x * v), _neighbourhood_sum(w * y * v)
    with np.errstate(invalid="ignore", divide="ignore"):
        cxx, cxy, cyy = sxx - sx * sx / s, sxy - sx * sy / s, syy - sy * sy / s
        dx, dy = sxv - sx * sv / s, syv - sy * sv / s
        det = cxx * cyy - cxy * cxy
        full = (cxx > _MIN_SPREAD) & (cyy > _MIN_SPREAD) & (det > 0.1 * cxx * cyy)
        grad_x = np.where(
            full, (cyy * dx - cxy * dy) / det, np.where(cxx > _MIN_SPREAD, dx / cxx, 0)
        )
        grad_y = np.where(
            full, (cxx * dy - cxy * dx) / det, np.where(cyy > _MIN_SPREAD, dy / cyy, 0)
        )
    shift_x = (gx - grid.region.x0) / scale - x
    shift_y = (gy - grid.region.y0) / scale - y
    moved = values + np.nan_to_num(grad_x) * shift_x + np.nan_to_num(grad_y) * shift_y
    return np.where(valid, moved, np.nan)


# -- smooth fits of binned images -------------------------------------------------------------


def _bounds(region: Box) -> tuple[float, float, float, float]:
    """Outer pixel edges of ``region`` (the domain of the Chebyshev series, as BackgroundModel)."""
    return (region.x0 - 0.5, region.y0 - 0.5, region.x_end - 0.5, region.y_end - 0.5)


def _constrained_order(values: np.ndarray, order: int) -> int:
    """The highest Chebyshev order up to ``order`` that the valid bins of ``values`` constrain."""
    valid = np.isfinite(values)
    n_columns, n_rows = int(valid.any(axis=0).sum()), int(valid.any(axis=1).sum())
    possible = min(order, n_columns - 1, n_rows - 1)
    while possible > 0 and valid.sum() < (possible + 1) * (possible + 2) // 2:
        possible -= 1
    return max(possible, 0)


def _chebyshev_order(values: np.ndarray, order: int, style: str, what: str) -> int:
    """:func:`_constrained_order`, warning when it is lower than ``order`` (or raising)."""
    possible = _constrained_order(values, order)
    if possible < order:
        if style == "THROW_EXCEPTION":
            raise InvalidParameterError(
                f"{what}: the usable bins cannot constrain a Chebyshev series of order {order} "
                f"(at most {possible}); lower approx_order or bin_size, or use "
                "undersample_style REDUCE_INTERP_ORDER"
            )
        log.warning("%s: Chebyshev order reduced from %d to %d", what, order, possible)
    return possible


def _inverse_variance(variances: np.ndarray) -> np.ndarray | None:
    """Fit weights ``1 / variance``, or None (uniform) when some variance is not positive."""
    if not np.all(np.isfinite(variances) & (variances > 0)):
        return None
    return 1.0 / variances


def _smooth_fit_rms(bins: _VisitBins, grid: _TractGrid, order: int) -> float:
    """RMS of a visit's bins about a Chebyshev fit of up to ``order`` (its smoothness)."""
    valid = np.isfinite(bins.values)
    if not valid.any():
        return math.nan
    order = _constrained_order(bins.values, order)
    xx, yy = np.meshgrid(grid.x_centers, grid.y_centers)
    bounds = _bounds(grid.region)
    coeffs = fit_chebyshev(
        xx[valid],
        yy[valid],
        bins.values[valid],
        order,
        bounds,
        weights=_inverse_variance(bins.variances[valid]),
    )
    model = evaluate_chebyshev_grid(coeffs, bounds, grid.x_centers, grid.y_centers)
    return float(np.sqrt(np.mean((bins.values - model)[valid] ** 2)))


def _evaluate_on(model: BackgroundModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``model`` on the grid ``y x x`` of tract coordinates (any, not only a box's pixels)."""
    if model.approximation_order is not None:
        # the series BackgroundModel fitted; it has no public evaluation at given points
        bounds = _bounds(model.bbox)
        return evaluate_chebyshev_grid(model._chebyshev, bounds, x, y)
    values = model.values
    if not np.isfinite(values).all():
        values = fill_empty_bins(values)
    return interpolate_grid(
        values, model.x_centers, model.y_centers, x, y, kind=model.interpolation
    )


def _grid_model(grid: _TractGrid, values, variances, counts, **options) -> BackgroundModel:
    return BackgroundModel(
        bbox=grid.region,
        bin_size=(grid.bin_size, grid.bin_size),
        values=values,
        variances=variances,
        counts=counts,
        x_centers=grid.x_centers,
        y_centers=grid.y_centers,
        **options,
    )


# -- results and matched warps ---------------------------------------------------------------


class MatchedWarpHandle:
    """A warp with its difference background added, computed on each :meth:`get`.

    Has the handle interface of :class:`~skydiff.io.ExposureHandle` (``bbox``,
    ``wcs``, ``psf``, ``band``, ``units``, ``visit_info``, ``mask_planes``,
    ``get(bbox, out=)``), so matched warps can be coadded or written one at a
    time without holding them all in memory. The input is never modified:
    :meth:`get` reads a private copy of the pixels (or into ``out``).

    Parameters
    ----------
    handle : handle
        The input warp.
    background : BackgroundModel
        Its visit's difference background (nJy), evaluated on the box read.
    reference_visit : int
        The visit matched to; recorded in the metadata of what :meth:`get` returns.
    """

    def __init__(self, handle: Any, background: BackgroundModel, *, reference_visit: int):
        self.handle = handle
        self.background = background
        self.reference_visit = int(reference_visit)

    @property
    def is_reference(self) -> bool:
        """Whether this warp belongs to the reference visit (its background is zero)."""
        return self.handle.visit_info.visit == self.reference_visit

    bbox = property(lambda self: self.handle.bbox, doc="The warp's box.")
    wcs = property(lambda self: self.handle.wcs, doc="The tract WCS.")
    psf = property(lambda self: self.handle.psf, doc="The warp's PSF.")
    band = property(lambda self: self.handle.band, doc="The band.")
    units = property(lambda self: self.handle.units, doc="Pixel units (nJy).")
    visit_info = property(lambda self: self.handle.visit_info, doc="The visit.")
    physical_filter = property(lambda self: getattr(self.handle, "physical_filter", ""))
    mask_planes = property(lambda self: getattr(self.handle, "mask_planes", None))

    def describe(self) -> str:
        return f"background-matched {_describe(self.handle)}"

    def get(self, bbox: Box | None = None, *, out: MaskedImage | None = None) -> Exposure:
        """The matched warp on ``bbox`` (default: all of it), optionally read into ``out``."""
        bbox = self.bbox if bbox is None else bbox
        exposure = _private_copy(self.handle, bbox, out)
        if not self.is_reference:
            image = exposure.image
            image += self.background.evaluate(bbox)
        metadata = {**exposure.metadata, "bg_match_reference_visit": self.reference_visit}
        return exposure.replace(metadata=metadata)

    def __repr__(self) -> str:
        return f"MatchedWarpHandle({self.handle!r}, reference_visit={self.reference_visit})"


def _private_copy(handle: Any, bbox: Box, out: MaskedImage | None) -> Exposure:
    """``handle.get(bbox)`` in pixels of our own (or ``out``), never a view of the input."""
    accepts_out = _accepts_out(handle)
    if out is None:
        if not accepts_out:
            return handle.get(bbox).copy()
        planes = getattr(handle, "mask_planes", None)
        out = MaskedImage(
            np.empty(bbox.shape, np.float32),
            Mask(np.zeros(bbox.shape, np.int32), bbox=bbox, planes=planes),
            np.empty(bbox.shape, np.float32),
            bbox=bbox,
        )
    if accepts_out:
        return handle.get(bbox, out=out)
    exposure = handle.get(bbox)
    out.assign(exposure.masked_image)
    return exposure.replace(masked_image=out)


@dataclass(frozen=True)
class MatchBackgroundsResult(TaskResult):
    """Result of :meth:`MatchBackgroundsTask.run`.

    Attributes
    ----------
    matched_warps : tuple of Exposure
        The background-matched warps, in the order given (nJy; empty when
        ``build_matched_warps`` is False) [matchedImageList].
    matched_handles : tuple of MatchedWarpHandle
        The same warps as lazy handles, in the order given.
    backgrounds : tuple of BackgroundModel
        One per warp, in the order given: its visit's difference background
        (reference minus visit, nJy) over the tract region of the binned grid.
        The matched warp is ``warp.image + backgrounds[i].evaluate(warp.bbox)``;
        the patches of a visit share one model, so it is continuous across
        them. Zero for the reference visit [backgroundInfoList].
    reference_visit : int
        The visit all others were matched to.
    diagnostics : astropy.table.Table
        One row per visit (sorted): ``visit``, ``is_reference``, ``n_warps``,
        ``coverage`` (fraction of the region with good pixels),
        ``mean_variance`` (nJy^2), ``own_fit_rms`` (RMS of the visit's bins
        about a smooth fit, nJy), ``cost`` (reference choice), ``n_bins``
        (bins used in the fit), ``approx_order`` (-1 for a spline),
        ``fit_rms`` (bins about the difference model, nJy), ``matched_mse``
        (mean of (reference - matched)^2 over common good pixels),
        ``diff_image_var`` (mean variance of that difference) and
        ``mean_difference``; NaN for the reference.
    """

    matched_warps: tuple[Exposure, ...]
    matched_handles: tuple[MatchedWarpHandle, ...]
    backgrounds: tuple[BackgroundModel, ...]
    reference_visit: int
    diagnostics: Table


# -- the task --------------------------------------------------------------------------------


class MatchBackgroundsTask(Task):
    """Match the backgrounds of the warps of many visits to a reference visit's.

    Algorithm (LSST ``MatchBackgroundsTask`` with ``TractBackground``):

    1. **Bin.** Each visit's warps are binned over the tract region they
       cover, on superpixels of ``bin_size`` tract pixels aligned to the tract
       grid, so the patches of a visit share bins. A warp is read
       ``block_rows`` rows at a time; the good pixels of each bin (no
       ``bad_mask_planes``, finite) give its ``grid_statistic``, pixel count
       and centroid. Pixels already counted from an earlier warp of the same
       visit (patch overlaps) are skipped, and bins split between patches
       combine their parts weighted by pixel count. Bins with fewer than
       ``min_fraction`` good pixels are empty. With ``correct_bin_centroids``
       each value is moved from its pixels' centroid to the bin centre along
       the local gradient of the binned image.
    2. **Choose the reference** (unless given): the visit minimising the cost

       ``w_rms * rms / max(rms) + w_var * var / max(var) + w_cov * (1 - coverage)``

       where ``rms`` is the RMS of the visit's bins about a Chebyshev fit of
       order ``approx_order`` (a smooth, well-fitted background is preferred),
       ``var`` its mean variance over good pixels, ``coverage`` the fraction
       of the region's pixels it covers, and the maxima are over the visits;
       weights ``best_ref_weight_fit_rms``, ``_variance`` and ``_coverage``.
    3. **Fit.** For every other visit the binned difference, reference minus
       visit, is modelled over the bins both cover: a spline through the bins
       (``interpolation``; empty bins filled from their neighbours) or, with
       ``use_approximate``, a Chebyshev series of order ``approx_order``
       weighted by the inverse variance of the bins.
    4. **Apply.** The model, evaluated on each warp's box, is added to the
       warp's image (the reference is unchanged; masks and variances are
       kept). The matched mean-square difference with the reference is
       measured on ``diagnostic_rows`` rows of each warp.

    Warps are read through handles (:class:`~skydiff.io.ExposureHandle` for
    files; Exposures are wrapped in :class:`~skydiff.io.InMemoryHandle`), so
    memory holds one block at a time plus one matched warp when they are
    built. Best used on PSF-matched warps or warps whose sources are masked
    ``DETECTED``: sources missing from part of a bin in one visit (a chip
    gap) bias that bin.
    """

    ConfigClass = MatchBackgroundsConfig
    config: MatchBackgroundsConfig
    _DefaultName = "matchBackgrounds"

    def run(
        self, warps: Sequence[Any], skymap: Any = None, *, ref_visit_id: int | None = None
    ) -> MatchBackgroundsResult:
        """Match ``warps`` to a reference visit chosen automatically (or ``ref_visit_id``).

        See :meth:`match_backgrounds` for parameters, results and errors.
        """
        return self.match_backgrounds(warps, skymap, ref_visit_id=ref_visit_id)

    def match_backgrounds(
        self, warps: Sequence[Any], skymap: Any = None, ref_visit_id: int | None = None
    ) -> MatchBackgroundsResult:
        """Match the backgrounds of ``warps`` to those of the reference visit.

        Parameters
        ----------
        warps : sequence of Exposure or handle
            Warps (nJy) of several visits over patches of one tract and band;
            a handle has ``bbox``, ``wcs``, ``band``, ``units``, ``visit_info``
            and ``get(bbox)``.
        skymap : SkyMap, optional
            When given, the warps must lie on one of its tracts (checked, and
            the tract id recorded); otherwise their common pixel frame is taken
            as the tract's.
        ref_visit_id : int, optional
            The reference visit; chosen by the cost of the class notes if omitted.

        Returns
        -------
        MatchBackgroundsResult
            ``matched_warps``, ``matched_handles``, ``backgrounds``,
            ``reference_visit``, ``diagnostics`` and ``metadata``
            (``reference_visit``, ``tract``, ``n_visits``, ``n_warps``,
            ``n_bins_x``, ``n_bins_y``, per visit ``visit_<id>_cost`` and,
            for matched visits, ``visit_<id>_fit_rms``,
            ``visit_<id>_matched_mse``, ``visit_<id>_diff_image_var``,
            ``visit_<id>_n_bins``; timings).

        Raises
        ------
        NoWorkFound
            If ``warps`` is empty.
        InvalidExposureError
            If a warp is not in nJy, has no visit id or WCS, has another band,
            is on another pixel grid (tract), or its visit shares no usable
            bin with the reference (the message names the warp or visit).
        InvalidParameterError
            If ``bin_size`` exceeds the region the warps cover, ``ref_visit_id``
            is not among the visits, or (``THROW_EXCEPTION``) too few bins
            constrain the Chebyshev order.
        """
        handles = [_as_handle(w) for w in warps]
        if not handles:
            raise NoWorkFound("no warps to match")
        c = self.config
        metadata = self.new_metadata()
        region, tract_id = _check_warps(handles, skymap)
        if c.bin_size > min(region.width, region.height):
            raise InvalidParameterError(
                f"MatchBackgroundsConfig.bin_size = {c.bin_size} is larger than the region the "
                f"warps cover, {region} ({region.width} x {region.height} pixels)"
            )
        visits = _group_by_visit(handles)
        if ref_visit_id is not None and ref_visit_id not in visits:
            raise InvalidParameterError(
                f"reference visit {ref_visit_id} is not among the warps' visits {sorted(visits)}"
            )
        grid = _TractGrid.covering(region, c.bin_size)
        with self.timer("bin", metadata):
            binned = {
                v: self._bin_visit([handles[i] for i in idx], grid, v) for v, idx in visits.items()
            }
        with self.timer("select", metadata):
            rows = self._reference_costs(binned, grid)
        reference = ref_visit_id if ref_visit_id is not None else _cheapest(rows)
        self.log.info("reference visit %d of %d visits", reference, len(visits))
        with self.timer("fit", metadata):
            models = self._fit_visits(binned, reference, grid, rows)
        with self.timer("diagnostics", metadata):
            for visit, idx in visits.items():
                if visit != reference:
                    rows[visit].update(
                        self._diagnose(
                            [handles[i] for i in idx],
                            [handles[i] for i in visits[reference]],
                            models[visit],
                        )
                    )
        backgrounds = tuple(models[h.visit_info.visit] for h in handles)
        matched = tuple(
            MatchedWarpHandle(h, bg, reference_visit=reference)
            for h, bg in zip(handles, backgrounds, strict=True)
        )
        with self.timer("apply", metadata):
            exposures = tuple(m.get() for m in matched) if c.build_matched_warps else ()
        table = _diagnostics_table(rows, reference, visits)
        _add_metadata(metadata, table, reference, tract_id, grid, len(handles))
        return MatchBackgroundsResult(
            matched_warps=exposures,
            matched_handles=matched,
            backgrounds=backgrounds,
            reference_visit=int(reference),
            diagnostics=table,
            metadata=metadata,
        )

    # -- binning ------------------------------------------------------------------------------

    def _bin_visit(self, handles: list, grid: _TractGrid, visit: int) -> _VisitBins:
        """Bin one visit's warps over the tract grid, block by block."""
        sums = _BinSums(grid.shape)
        counted: list[Box] = []
        width = max(h.bbox.width for h in handles)
        buffer = _BlockBuffer(width * (self.config.block_rows + grid.bin_size))
        for handle in sorted(handles, key=lambda h: (h.bbox.y0, h.bbox.x0)):
            for block in grid.row_blocks(handle.bbox, self.config.block_rows):
                part = buffer.read(handle, block)
                self._bin_block(part, buffer.skipped(block, counted), grid, sums)
            counted.append(handle.bbox)
        return _finish_bins(sums, grid, visit, self.config)

    def _bin_block(self, part: Exposure, skip: np.ndarray, grid: _TractGrid, sums) -> None:
        c = self.config
        x_edges, y_edges = grid.local_edges(part.bbox)
        stats = _block_statistics(
            part.image,
            part.variance,
            part.mask.array,
            skip,
            part.mask.bitmask(c.bad_mask_planes, ignore_missing=True),
            x_edges,
            y_edges,
            _STATISTICS[c.grid_statistic],
            float(c.nsigma),
            int(c.max_iter),
        )
        sums.add(stats, grid.bin_slices(part.bbox), part.bbox.x0, part.bbox.y0)

    # -- reference and fits -------------------------------------------------------------------

    def _reference_costs(self, binned: dict[int, _VisitBins], grid: _TractGrid) -> dict:
        """Per visit: coverage, mean variance, own fit RMS and the reference cost."""
        c = self.config
        rms = {v: _smooth_fit_rms(b, grid, c.approx_order) for v, b in binned.items()}
        rms_scale = _positive_max(rms.values())
        var_scale = _positive_max(b.mean_variance for b in binned.values())
        rows = {}
        for visit, bins in binned.items():
            cost = (
                c.best_ref_weight_fit_rms * rms[visit] / rms_scale
                + c.best_ref_weight_variance * bins.mean_variance / var_scale
                + c.best_ref_weight_coverage * (1.0 - bins.coverage)
            )
            rows[visit] = {
                "coverage": bins.coverage,
                "mean_variance": bins.mean_variance,
                "own_fit_rms": rms[visit],
                "cost": cost if np.isfinite(cost) else math.inf,
            }
        return rows

    def _fit_visits(self, binned, reference: int, grid: _TractGrid, rows: dict) -> dict:
        """Difference background model of every visit (zero for the reference)."""
        ref = binned[reference]
        models = {}
        for visit, bins in binned.items():
            if visit == reference:
                zeros = np.zeros(grid.shape)
                models[visit] = _grid_model(
                    grid, zeros, zeros, ref.counts, interpolation="constant"
                )
                rows[visit].update(n_bins=int(np.isfinite(ref.values).sum()), fit_rms=0.0)
                continue
            models[visit], figures = self._fit_difference(ref, bins, grid)
            rows[visit].update(figures)
            self.log.info(
                "visit %d: %d bins, fit RMS %.4g nJy", visit, figures["n_bins"], figures["fit_rms"]
            )
        return models

    def _fit_difference(self, ref: _VisitBins, bins: _VisitBins, grid: _TractGrid):
        """Model of the binned ``ref - bins``; the model and its fit figures."""
        c = self.config
        values = ref.values - bins.values
        n_bins = int(np.isfinite(values).sum())
        if n_bins == 0:
            problem = (
                "has no bin with enough good pixels"
                if not np.isfinite(bins.values).any()
                else f"shares no bin with the reference visit {ref.visit}"
            )
            raise InvalidExposureError(
                f"visit {bins.visit} {problem}: its background cannot be matched (choose another "
                "reference visit or leave this visit out)"
            )
        order = None
        if c.use_approximate:
            order = _chebyshev_order(
                values, c.approx_order, c.undersample_style, f"visit {bins.visit}"
            )
        model = _grid_model(
            grid,
            values if c.use_approximate else fill_empty_bins(values),
            ref.variances + bins.variances,
            np.minimum(ref.counts, bins.counts),
            interpolation=c.interpolation,
            approximation_order=order,
        )
        residuals = (values - _evaluate_on(model, grid.x_centers, grid.y_centers))[
            np.isfinite(values)
        ]
        figures = {
            "n_bins": n_bins,
            "approx_order": -1 if order is None else order,
            "fit_rms": float(np.sqrt(np.mean(residuals**2))),
        }
        return model, figures

    # -- diagnostics --------------------------------------------------------------------------

    def _diagnose(self, warps: list, references: list, model: BackgroundModel) -> dict:
        """Matched mean-square difference with the reference on sampled rows of each warp."""
        totals = np.zeros(4)
        for warp in warps:
            partners = [r for r in references if r.bbox == warp.bbox] or [
                r for r in references if r.bbox.overlaps(warp.bbox)
            ]
            for reference in partners:
                overlap = warp.bbox.intersection(reference.bbox)
                boxes = _sample_boxes(overlap, self.config.diagnostic_rows)
                rows = np.concatenate([np.arange(b.y0, b.y_end) for b in boxes])
                columns = np.arange(overlap.x0, overlap.x_end)
                background = _evaluate_on(model, columns.astype(float), rows.astype(float))
                start = 0
                for box in boxes:
                    block = background[start : start + box.height]
                    totals += self._compare(warp, reference, box, block)
                    start += box.height
        n = totals[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "mean_difference": totals[1] / n,
                "matched_mse": totals[2] / n,
                "diff_image_var": totals[3] / n,
            }

    def _compare(self, warp, reference, box: Box, background: np.ndarray) -> np.ndarray:
        """``[n, sum d, sum d^2, sum var]`` of ``d = reference - matched warp`` on ``box``."""
        planes = self.config.bad_mask_planes
        science, ref = warp.get(box), reference.get(box)
        difference = ref.image - (science.image + background)
        variance = ref.variance.astype(np.float64) + science.variance
        good = (
            ~science.mask.get(planes, ignore_missing=True)
            & ~ref.mask.get(planes, ignore_missing=True)
            & np.isfinite(difference)
            & np.isfinite(variance)
        )
        d = difference[good].astype(np.float64)
        return np.array([d.size, d.sum(), np.dot(d, d), variance[good].sum()])


# -- checks, grouping and products -----------------------------------------------------------


def _as_handle(warp: Any) -> Any:
    if isinstance(warp, Exposure):
        return InMemoryHandle(warp)
    missing = [
        n for n in ("bbox", "wcs", "band", "units", "visit_info", "get") if not hasattr(warp, n)
    ]
    if missing:
        raise InvalidParameterError(
            f"a warp must be an Exposure or a handle; {type(warp).__name__} lacks {missing}"
        )
    return warp


def _describe(handle: Any) -> str:
    describe = getattr(handle, "describe", None)
    return describe() if callable(describe) else repr(handle)


def _check_warps(handles: list, skymap: Any) -> tuple[Box, int | None]:
    """The region the warps cover and the tract id; raise naming the first bad warp."""
    first = handles[0]
    for handle in handles:
        name = _describe(handle)
        if handle.units != "nJy":
            raise InvalidExposureError(
                f"warp {name} is in {handle.units!r}, not nJy: match calibrated warps"
            )
        if handle.wcs is None:
            raise InvalidExposureError(f"warp {name} has no WCS")
        if handle.visit_info is None or handle.visit_info.visit is None:
            raise InvalidExposureError(f"warp {name} has no visit id (visit_info.visit)")
        if handle.band != first.band:
            raise InvalidExposureError(
                f"warp {name} has band {handle.band!r} but warp {_describe(first)} has "
                f"{first.band!r}: backgrounds are matched within one band"
            )
    region = _union(h.bbox for h in handles)
    for handle in handles[1:]:
        offset = grid_offset(first.wcs, handle.wcs, region)
        if not offset <= _GRID_TOLERANCE:
            raise InvalidExposureError(
                f"warp {_describe(handle)} is not on the pixel grid of warp {_describe(first)} "
                f"(its WCS moves tract pixels by up to {offset:.3g} pixels): backgrounds are "
                "matched between warps of one tract"
            )
    if skymap is None:
        return region, None
    tract = _find_tract(skymap, first, region)
    for handle in handles:
        if not tract.bbox.contains(handle.bbox):
            raise InvalidExposureError(
                f"warp {_describe(handle)} ({handle.bbox}) extends beyond the box {tract.bbox} "
                f"of tract {tract.tract_id}"
            )
    return region, tract.tract_id


def _find_tract(skymap: Any, handle: Any, region: Box) -> Any:
    """The tract of ``skymap`` whose pixel grid is the warps'."""
    ra, dec = (float(v) for v in pixel_to_sky(handle.wcs, *region.center))
    for entry in skymap.find_tract_patch_list(ra, dec):
        if grid_offset(entry.tract.wcs, handle.wcs, region) <= _GRID_TOLERANCE:
            return entry.tract
    raise InvalidExposureError(
        f"warp {_describe(handle)} is not on the pixel grid of any tract of the sky map "
        f"holding (ra, dec) = ({ra:.6f}, {dec:.6f})"
    )


def _union(boxes) -> Box:
    result = Box(0, 0, 0, 0)
    for box in boxes:
        result = result.union(box)
    return result


def _group_by_visit(handles: list) -> dict[int, list[int]]:
    """Visit id -> indices of its warps, visits in increasing order."""
    groups: dict[int, list[int]] = {}
    for index, handle in enumerate(handles):
        groups.setdefault(int(handle.visit_info.visit), []).append(index)
    return dict(sorted(groups.items()))


def _positive_max(values) -> float:
    finite = [v for v in values if np.isfinite(v) and v > 0]
    return max(finite) if finite else 1.0


def _cheapest(rows: dict) -> int:
    """The visit of least cost (the lowest id among equals)."""
    return min(rows, key=lambda visit: (rows[visit]["cost"], visit))


def _sample_boxes(region: Box, n_rows: int) -> list[Box]:
    """The region, or evenly spaced strips of ``n_rows`` rows in all."""
    if region.is_empty:
        return []
    if region.height <= n_rows:
        return [region]
    strips = min(_DIAGNOSTIC_STRIPS, n_rows)
    height = n_rows // strips
    step = (region.height - height) / (strips - 1) if strips > 1 else 0.0
    return [
        Box(region.x0, region.y0 + round(k * step), region.width, height) for k in range(strips)
    ]


_COLUMNS = {
    "visit": np.int64,
    "is_reference": bool,
    "n_warps": np.int64,
    "coverage": np.float64,
    "mean_variance": np.float64,
    "own_fit_rms": np.float64,
    "cost": np.float64,
    "n_bins": np.int64,
    "approx_order": np.int64,
    "fit_rms": np.float64,
    "matched_mse": np.float64,
    "diff_image_var": np.float64,
    "mean_difference": np.float64,
}


def _diagnostics_table(rows: dict, reference: int, visits: dict) -> Table:
    defaults = {"approx_order": -1, "matched_mse": math.nan}
    defaults.update(diff_image_var=math.nan, mean_difference=math.nan)
    records = []
    for visit, row in rows.items():
        record = {**defaults, **row, "visit": visit, "is_reference": visit == reference}
        record["n_warps"] = len(visits[visit])
        records.append([record[name] for name in _COLUMNS])
    return Table(rows=records, names=list(_COLUMNS), dtype=list(_COLUMNS.values()))


def _add_metadata(metadata: TaskMetadata, table: Table, reference, tract_id, grid, n_warps):
    metadata.add("reference_visit", int(reference))
    metadata.add("tract", tract_id)
    metadata.add("n_visits", len(table))
    metadata.add("n_warps", n_warps)
    metadata.add("n_bins_y", grid.shape[0])
    metadata.add("n_bins_x", grid.shape[1])
    for row in table:
        visit = int(row["visit"])
        metadata.add(f"visit_{visit}_cost", float(row["cost"]))
        if row["is_reference"]:
            continue
        for key in ("fit_rms", "matched_mse", "diff_image_var", "n_bins"):
            metadata.add(f"visit_{visit}_{key}", row[key])
    metadata.add("diagnostics", json.dumps(_json_rows(table)))


def _json_rows(table: Table) -> list[dict]:
    """The diagnostics as JSON-ready dictionaries (NaN as null)."""
    rows = []
    for row in table:
        item = {}
        for name in table.colnames:
            value = row[name].item()
            item[name] = None if isinstance(value, float) and not math.isfinite(value) else value
        rows.append(item)
    return rows
