"""Stacking aligned image planes: the array layer of coadd assembly (LSST ``statisticsStack``).

Pure functions on numpy arrays: a stack is three ``(n_inputs, height, width)``
C-contiguous arrays (float32 images, float32 variances, int32 masks) and one
weight per input; ``rows=(start, stop)`` restricts the work to those rows, so
that a caller can reuse buffers taller than a block. No I/O, no configuration
objects, no mask-plane names: the caller resolves planes into bit values
(:class:`StackMaskBits`).

Semantics follow LSST afw ``statisticsStack`` with a weighted
``StatisticsControl`` and ``calcErrorFromInputVariance=True``:

- a value is left out where its mask has a bad bit, where its image or
  variance is not finite or the variance is negative (no data), or where the
  ``excluded`` plane says so (artifact rejection);
- ``MEAN`` is the weighted mean of the other values;
- ``MEANCLIP`` clips about the per-pixel median at ``nsigma`` times the
  IQR-estimated sigma (0.7413 IQR) of the values, then about the weighted
  clipped mean at ``nsigma`` times their weighted, debiased standard
  deviation, ``n_iter`` passes in all, each pass clipping the full set; a
  pixel stops iterating when fewer than two values are kept;
- ``MEDIAN`` is the unweighted median (quantiles interpolated at
  ``q (n - 1)`` as in afw);
- the variance is ``sum w^2 V / (sum w)^2`` over the values used; the
  median's is ``pi/2 sum V / n^2``, the asymptotic variance of the median
  of Gaussian values (afw's factor; it overestimates by ~10% for n ~ 10);
- the output mask is the OR of the masks of the values not left out
  (sigma-clipped ones included, as afw's ``getOrMask``), plus the flags of
  :class:`StackMaskBits`.

The kernels run in parallel over rows; within a row they work on chunks of
pixels with the pixel index innermost so that the compiler vectorises the
loops over inputs, and sort each pixel's values with a sorting network
applied across the chunk. The transient-artifact rule is described in
:func:`transient_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..math import IQR_TO_SIGMA

__all__ = [
    "STACK_STATISTICS",
    "ArtifactRule",
    "ReferenceStack",
    "StackMaskBits",
    "StackResult",
    "clipped_mean",
    "reference_stack",
    "sorting_network",
    "stack_planes",
    "transient_mask",
]

#: Statistic name -> kernel code.
STACK_STATISTICS = {"MEAN": 0, "MEDIAN": 1, "MEANCLIP": 2}

_HALF_PI = 1.5707963267948966
_CHUNK = 256
# flags gathered per output pixel
_F_REJECTED, _F_EDGE, _F_CLIPPED = 1, 2, 4


@dataclass(frozen=True)
class StackMaskBits:
    """Mask bit patterns steering :func:`stack_planes` (plain integers, any of 32 bits).

    Input bits, in the layout of the input masks:

    Attributes
    ----------
    bad : int
        A value whose mask has any of these bits is left out.
    rejected : int
        Left-out values with these bits set ``out_rejected`` (LSST: bad planes
        other than NO_DATA, EDGE and CLIPPED -> REJECTED).
    edge : int
        Left-out values with these bits set ``out_sensor_edge`` (EDGE -> SENSOR_EDGE).
    clipped : int
        Left-out values with these bits set ``out_clipped`` (CLIPPED -> CLIPPED).
    saturated : int
        ``out_saturated`` is set where the left-out values with these bits
        would have held more than ``sat_fraction`` of the weight.

    Output bits, in the layout of the output mask: ``out_rejected``,
    ``out_sensor_edge``, ``out_clipped`` (also where a value was sigma-clipped
    or excluded), ``out_saturated``, ``out_no_data`` (no value used: image
    NaN, variance +inf) and ``out_inexact_psf`` (with any of rejected,
    sensor edge or clipped).
    """

    bad: int = 0
    rejected: int = 0
    edge: int = 0
    clipped: int = 0
    saturated: int = 0
    out_rejected: int = 0
    out_sensor_edge: int = 0
    out_clipped: int = 0
    out_saturated: int = 0
    out_no_data: int = 0
    out_inexact_psf: int = 0

    def as_array(self) -> np.ndarray:
        """The eleven patterns as int32 (bit 31 as the sign bit), in field order."""
        values = [getattr(self, name) & 0xFFFFFFFF for name in self.__dataclass_fields__]
        return np.array(values, dtype=np.uint32).view(np.int32)


@dataclass(frozen=True)
class ReferenceStack:
    """Per-pixel robust reference of a stack (:func:`reference_stack`), on its rows.

    Attributes
    ----------
    median : numpy.ndarray
        ``(height, width)`` float64 median of the usable values (NaN where none).
    iqr : numpy.ndarray
        ``(height, width)`` float64 inter-quartile range of the usable values.
    n_good : numpy.ndarray
        ``(height, width)`` int32 number of usable values.
    outliers : numpy.ndarray
        ``(height, n_inputs, width)`` bool (row-major, so that row ranges are
        contiguous): the value deviates from the median by more than
        ``nsigma`` times its scale.
    outlier_rows : numpy.ndarray
        ``(height, n_inputs)`` bool: that row of that input holds an outlier.
    """

    median: np.ndarray
    iqr: np.ndarray
    n_good: np.ndarray
    outliers: np.ndarray
    outlier_rows: np.ndarray

    @classmethod
    def empty(cls, n_inputs: int, height: int, width: int) -> ReferenceStack:
        """Uninitialised arrays, to pass as ``out`` to :func:`reference_stack`."""
        return cls(
            np.empty((height, width)),
            np.empty((height, width)),
            np.empty((height, width), np.int32),
            np.empty((height, n_inputs, width), np.bool_),
            np.empty((height, n_inputs), np.bool_),
        )

    def rows(self, start: int, stop: int) -> ReferenceStack:
        """The reference restricted to rows ``start:stop`` (views)."""
        return ReferenceStack(
            self.median[start:stop],
            self.iqr[start:stop],
            self.n_good[start:stop],
            self.outliers[start:stop],
            self.outlier_rows[start:stop],
        )


@dataclass(frozen=True)
class StackResult:
    """Result of :func:`stack_planes`.

    Attributes
    ----------
    image, variance, mask : numpy.ndarray
        The stacked planes (float32, float32, int32).
    n_used : numpy.ndarray
        ``(n_inputs,)`` int64: output pixels to which each input contributed.
    n_clipped : int
        Values removed by sigma clipping.
    n_excluded : int
        Values removed as artifacts (the ``excluded`` plane).
    n_excluded_pixels : int
        Output pixels where at least one value was removed as an artifact.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    n_used: np.ndarray
    n_clipped: int
    n_excluded: int
    n_excluded_pixels: int = 0


def sorting_network(n: int) -> np.ndarray:
    """Comparator pairs ``(a, b)``, ``a < b``, of Batcher's odd-even merge sort of ``n`` values."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


# -- chunk helpers ----------------------------------------------------------------------------


@numba.njit(cache=True)
def _load(planes, y, x0, m, bad, val, var, msk, good):
    """Copy ``m`` pixels of row ``y`` of every input into the chunk buffers; flag usable ones."""
    images, variances, masks = planes
    for i in range(images.shape[0]):
        row_i, row_v, row_m = images[i, y], variances[i, y], masks[i, y]
        for c in range(m):
            v, vv, mm = row_i[x0 + c], row_v[x0 + c], row_m[x0 + c]
            val[i, c], var[i, c], msk[i, c] = v, vv, mm
            good[i, c] = ((mm & bad) == 0) & np.isfinite(v) & np.isfinite(vv) & (vv >= 0)


@numba.njit(cache=True)
def _median_iqr(val, good, m, network, ordered, count, median, iqr):
    """Median and IQR of the good values of each pixel of a chunk, and their number."""
    count[:m] = 0
    for i in range(val.shape[0]):
        for c in range(m):
            ordered[i, c] = val[i, c] if good[i, c] else np.inf
            count[c] += good[i, c]
    for p in range(network.shape[0]):
        a, b = ordered[network[p, 0]], ordered[network[p, 1]]
        for c in range(m):
            lo, hi = min(a[c], b[c]), max(a[c], b[c])
            a[c], b[c] = lo, hi
    for c in range(m):
        n = count[c]
        if n == 0:
            median[c], iqr[c] = np.nan, np.nan
        else:
            median[c] = _quantile(ordered, c, n, 0.5)
            iqr[c] = _quantile(ordered, c, n, 0.75) - _quantile(ordered, c, n, 0.25)


@numba.njit(cache=True)
def _quantile(ordered, c, n, q):
    index = q * (n - 1)
    lo = int(index)
    hi = min(lo + 1, n - 1)
    frac = index - lo
    return (1.0 - frac) * np.float64(ordered[lo, c]) + frac * np.float64(ordered[hi, c])


@numba.njit(cache=True)
def _usable(m, bad, v, var):
    return (m & bad) == 0 and np.isfinite(v) and np.isfinite(var) and var >= 0.0


# -- the reference: median, IQR and outliers ----------------------------------------------


@numba.njit(cache=True)
def _reference_chunk(j, x0, m, val, var, good, med, spread, count, nsigma, work, ref_out):
    """Write row ``j`` of the reference for a chunk: median, IQR, count and outliers."""
    median, iqr, n_good, outliers, rows = ref_out
    limit, scatter = work[0], work[1]
    limit[:m] = 0.0
    for i in range(val.shape[0]):
        for c in range(m):
            limit[c] += var[i, c] if good[i, c] else 0.0
    for c in range(m):
        # s_i^2 = max(V_i + V_m, (0.7413 IQR)^2) with V_m = pi/2 sum V / n^2
        n = max(count[c], 1)
        limit[c] = _HALF_PI * limit[c] / (n * n)
        scatter[c] = (IQR_TO_SIGMA * spread[c]) ** 2 if count[c] > 1 else np.inf
        median[j, x0 + c], iqr[j, x0 + c], n_good[j, x0 + c] = med[c], spread[c], count[c]
    for i in range(val.shape[0]):
        flags = outliers[j, i]
        n_flagged = 0
        for c in range(m):
            d = np.float64(val[i, c]) - med[c]
            scale2 = max(np.float64(var[i, c]) + limit[c], scatter[c])
            flag = good[i, c] & (d * d > nsigma * nsigma * scale2)
            flags[x0 + c] = flag
            n_flagged += flag
        if n_flagged:
            rows[j, i] = True


def reference_stack(
    images: np.ndarray,
    variances: np.ndarray,
    masks: np.ndarray,
    *,
    bad_bits: int,
    nsigma: float,
    rows: tuple[int, int] | None = None,
    out: ReferenceStack | None = None,
) -> ReferenceStack:
    """Per-pixel median, IQR and outliers of a stack (the first step of artifact rejection).

    A usable value ``x_i`` is an outlier where ``|x_i - m| > nsigma * s_i``,
    ``m`` the median of the usable values and ``s_i^2 = max(V_i + V_m,
    (0.7413 IQR)^2)``: ``V_i`` is the value's variance, ``V_m = pi/2 sum V /
    n^2`` the median's, and the IQR term, the scatter of the values
    themselves, keeps sources whose brightness differs between epochs for
    ordinary reasons (PSF differences between direct warps) from being
    flagged. A pixel with one usable value has no outlier.

    Parameters
    ----------
    images, variances, masks : numpy.ndarray
        ``(n_inputs, height, width)`` float32, float32, int32, C-contiguous.
    bad_bits : int
        Mask bits that make a value unusable.
    nsigma : float
        Outlier threshold.
    rows : (int, int), optional
        Rows of the planes to process (default all); the result covers them.
    out : ReferenceStack, optional
        Arrays to fill, as tall as ``rows`` (see :meth:`ReferenceStack.empty`).
    """
    planes = _planes(images, variances, masks)
    start, stop = (0, images.shape[1]) if rows is None else rows
    n_in = images.shape[0]
    out = ReferenceStack.empty(n_in, stop - start, images.shape[2]) if out is None else out
    jobs = _jobs(np.arange(start, stop), reference=np.arange(stop - start))
    options = (2, 3.0, 1, 0.1, float(nsigma))
    bits = StackMaskBits(bad=bad_bits).as_array()
    arrays = _reference_arrays(out)
    network = sorting_network(n_in)
    _kernel(
        planes,
        jobs,
        np.ones(n_in),
        _NO_EXCLUSIONS,
        arrays,
        network,
        options,
        bits,
        _no_output(n_in),
    )
    return out


# -- artifact rule ----------------------------------------------------------------------------


@numba.njit(parallel=True, cache=True)
def _seeds(outliers, rows, min_area, seeds, extent):
    """Outliers with at least ``min_area`` outliers (itself included) in their 3x3 window.

    ``extent[y, i]`` receives the first and last column of the seeds of row ``y``, input ``i``.
    """
    height, n_in, width = outliers.shape
    for job in numba.prange(n_in * height):
        y, i = job // n_in, job % n_in
        extent[y, i, 0], extent[y, i, 1] = width, -1
        if not (rows[y, i] or (y > 0 and rows[y - 1, i]) or (y + 1 < height and rows[y + 1, i])):
            continue
        for x in range(width):
            if not outliers[y, i, x]:
                continue
            count = 0
            for yy in range(max(y - 1, 0), min(y + 2, height)):
                for xx in range(max(x - 1, 0), min(x + 2, width)):
                    count += outliers[yy, i, xx]
            if count >= min_area:
                seeds[y, i, x] = True
                extent[y, i, 0], extent[y, i, 1] = min(extent[y, i, 0], x), x


@numba.njit(parallel=True, cache=True)
def _grow(seeds, seed_extent, grow, grown, extent):
    """``seeds`` dilated by a ``(2 grow + 1)``-pixel square, visiting only near the seeds."""
    height, n_in, width = seeds.shape
    for job in numba.prange(n_in * height):
        y, i = job // n_in, job % n_in
        extent[y, i, 0], extent[y, i, 1] = width, -1
        for yy in range(max(y - grow, 0), min(y + grow + 1, height)):
            lo, hi = (
                max(seed_extent[yy, i, 0] - grow, 0),
                min(seed_extent[yy, i, 1] + grow, width - 1),
            )
            for x in range(lo, hi + 1):
                for xx in range(max(x - grow, 0), min(x + grow + 1, width)):
                    if seeds[yy, i, xx]:
                        grown[y, i, x] = True
                        break
            if hi >= lo:
                extent[y, i, 0], extent[y, i, 1] = (
                    min(extent[y, i, 0], lo),
                    max(extent[y, i, 1], hi),
                )


@numba.njit(parallel=True, cache=True)
def _epoch_rule(grown, grown_extent, planes, row0, bad, n_good, max_fraction, out, extent):
    images, variances, masks = planes
    height, n_in, width = grown.shape
    for j in numba.prange(height):
        lo, hi = width, -1
        for i in range(n_in):
            lo, hi = min(lo, grown_extent[j, i, 0]), max(hi, grown_extent[j, i, 1])
        extent[j, 0], extent[j, 1] = width, -1
        y = row0 + j
        for x in range(lo, hi + 1):
            count = 0
            for i in range(n_in):
                if grown[j, i, x]:
                    count += _usable(masks[i, y, x], bad, images[i, y, x], variances[i, y, x])
            if count == 0 or count > int(np.floor(max_fraction * n_good[j, x] + 1e-9)):
                continue
            for i in range(n_in):
                if grown[j, i, x] and _usable(
                    masks[i, y, x], bad, images[i, y, x], variances[i, y, x]
                ):
                    out[j, i, x] = True
            extent[j, 0], extent[j, 1] = min(extent[j, 0], x), x


def transient_mask(
    reference: ReferenceStack,
    images: np.ndarray,
    variances: np.ndarray,
    masks: np.ndarray,
    *,
    bad_bits: int,
    min_area: int = 3,
    grow: int = 2,
    max_epochs_fraction: float = 0.4,
    rows: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Values to exclude as transient artifacts (a local form of LSST ``CompareWarp``).

    The rule, for each input and pixel:

    1. *outlier*: ``reference.outliers`` (see :func:`reference_stack`);
    2. *seed*: an outlier with at least ``min_area`` outliers of the same
       input (itself included) in its 3x3 neighbourhood, so that isolated
       noise peaks never seed (LSST keeps footprints of >= 4 pixels);
    3. *region*: the seeds grown by ``grow`` pixels (a square), to cover the
       faint wings of the artifact;
    4. *temporal test*: where the regions of ``c`` inputs with usable data
       cover a pixel and ``1 <= c <= floor(max_epochs_fraction * n)``, ``n``
       the usable inputs there, those ``c`` values are excluded; where more
       inputs deviate the feature is persistent (a variable or a source
       that differs between epochs) and kept, as LSST's ``maxFractionEpochsLow``.
       (A deviation shared by more than about a quarter of the inputs widens
       their IQR, so that it is no outlier in step 1 already.)

    LSST decides per footprint (``spatialThreshold``); this rule is per pixel
    and depends only on inputs at most ``grow + 1`` rows away, so stacking in
    row blocks with that halo reproduces the one-block result exactly.

    Parameters
    ----------
    reference : ReferenceStack
        From :func:`reference_stack` on the same ``rows``.
    images, variances, masks : numpy.ndarray
        The planes, as for :func:`reference_stack`.
    bad_bits : int
        Mask bits that make a value unusable.
    min_area, grow, max_epochs_fraction : int, int, float
        Steps 2, 3 and 4.
    rows : (int, int), optional
        Rows of the planes covered by ``reference`` (default all).

    Returns
    -------
    excluded : numpy.ndarray
        ``(n_rows, n_inputs, width)`` bool (row-major).
    excluded_rows : numpy.ndarray
        ``(n_rows,)`` bool: rows with any excluded value.
    """
    excluded, extent = _transient_mask(
        reference,
        _planes(images, variances, masks),
        bad_bits=bad_bits,
        min_area=min_area,
        grow=grow,
        max_epochs_fraction=max_epochs_fraction,
        rows=rows,
    )
    return excluded, extent[:, 1] >= 0


def _transient_mask(reference, planes, *, bad_bits, min_area, grow, max_epochs_fraction, rows):
    """:func:`transient_mask`, with the first and last excluded column of each row."""
    start, stop = (0, planes[0].shape[1]) if rows is None else rows
    shape = (stop - start, planes[0].shape[0], planes[0].shape[2])
    # zero-filled arrays written only near outliers: their untouched pages are never mapped
    seeds, seed_extent = np.zeros(shape, np.bool_), np.empty((*shape[:2], 2), np.int64)
    _seeds(reference.outliers, reference.outlier_rows, int(min_area), seeds, seed_extent)
    grown, grown_extent = np.zeros(shape, np.bool_), np.empty((*shape[:2], 2), np.int64)
    _grow(seeds, seed_extent, int(grow), grown, grown_extent)
    excluded, extent = np.zeros(shape, np.bool_), np.empty((shape[0], 2), np.int64)
    _epoch_rule(
        grown,
        grown_extent,
        planes,
        start,
        _int32(bad_bits),
        reference.n_good,
        float(max_epochs_fraction),
        excluded,
        extent,
    )
    return excluded, extent


# -- pass 2: the stack ------------------------------------------------------------------------


@numba.njit(cache=True)
def _meanclip(val, var, good, weights, m, nsigma, n_iter, center, hw, result, sums):
    """afw MEANCLIP of each pixel of a chunk, ``center``/``hw`` holding median and IQR.

    ``result`` receives the mean, the variance from the inputs, and the centre
    and half-width of the pass that gave them (a value is used where it lies
    within that half-width of that centre).
    """
    n_in = val.shape[0]
    mean_out, var_out, c_out, hw_out = result[0], result[1], result[2], result[3]
    sw, sw2, swd, swd2, svw2, kept = sums[0], sums[1], sums[2], sums[3], sums[4], sums[5]
    active = np.empty(m, np.bool_)
    for c in range(m):
        hw[c] = nsigma * IQR_TO_SIGMA * hw[c]
        mean_out[c], var_out[c], c_out[c], hw_out[c] = np.nan, np.nan, center[c], np.inf
        active[c] = True
    for _ in range(n_iter):
        sums[:, :m] = 0.0
        for i in range(n_in):
            w = weights[i]
            for c in range(m):
                d = np.float64(val[i, c]) - center[c]
                keep = good[i, c] & (abs(d) <= hw[c])
                sw[c] += w if keep else 0.0
                sw2[c] += w * w if keep else 0.0
                swd[c] += w * d if keep else 0.0
                swd2[c] += w * d * d if keep else 0.0
                svw2[c] += w * w * np.float64(var[i, c]) if keep else 0.0
                kept[c] += 1.0 if keep else 0.0
        for c in range(m):  # branch-free, so that it vectorises
            ok = active[c] & (kept[c] > 0)
            total = sw[c] if ok else 1.0
            mean_d = swd[c] / total
            mean_out[c] = center[c] + mean_d if ok else mean_out[c]
            var_out[c] = svw2[c] / (total * total) if ok else var_out[c]
            c_out[c] = center[c] if ok else c_out[c]
            hw_out[c] = hw[c] if ok else hw_out[c]
            go_on = ok & (kept[c] >= 2)
            denominator = total * total - sw2[c] if go_on else 1.0
            spread2 = (swd2[c] / total - mean_d * mean_d) * total * total / denominator
            hw[c] = nsigma * np.sqrt(max(spread2, 0.0)) if go_on else hw[c]
            center[c] = center[c] + mean_d if go_on else center[c]
            active[c] = go_on


@numba.njit(cache=True)
def _median_result(var, good, m, median, result):
    """MEDIAN: the median, variance pi/2 sum V / n^2; every good value used."""
    count = np.zeros(m)
    result[1, :m], result[2, :m], result[3, :m] = 0.0, 0.0, np.inf
    for i in range(var.shape[0]):
        for c in range(m):
            result[1, c] += np.float64(var[i, c]) if good[i, c] else 0.0
            count[c] += 1.0 if good[i, c] else 0.0
    for c in range(m):
        result[0, c] = median[c]
        result[1, c] = _HALF_PI * result[1, c] / max(count[c] * count[c], 1.0)


@numba.njit(cache=True)
def _gather_flags(msk, good, weights, m, bits, flags, sat_w):
    """Flags of the values left out by their masks, and their saturated weight."""
    bad, rejected, edge, clipped_in, saturated = bits[0], bits[1], bits[2], bits[3], bits[4]
    flags[:m], sat_w[:m] = 0, 0.0
    for i in range(msk.shape[0]):
        w = weights[i]
        for c in range(m):
            mm = msk[i, c]
            masked = (mm & bad) != 0
            flags[c] |= (
                (masked & ((mm & rejected) != 0)) * _F_REJECTED
                | (masked & ((mm & edge) != 0)) * _F_EDGE
                | (masked & ((mm & clipped_in) != 0)) * _F_CLIPPED
            )
            sat_w[c] += w * ((good[i, c] < ((mm & saturated) != 0)) * 1.0)


@numba.njit(cache=True)
def _finish_chunk(j, x0, m, val, msk, good, flags, sat_w, weights, sat_fraction, bits, result, out):
    """Count used and clipped values; write the chunk's image, variance and mask."""
    out_image, out_variance, out_mask, used, counts = out
    n_in = val.shape[0]
    total_w, n_good, n_used = np.zeros(m), np.zeros(m, np.int64), np.zeros(m, np.int64)
    or_mask = np.zeros(m, np.int32)
    center, hw = result[2], result[3]
    for i in range(n_in):
        w, n_i = weights[i], 0
        for c in range(m):
            keep = good[i, c] & (abs(np.float64(val[i, c]) - center[c]) <= hw[c])
            n_i += keep
            n_used[c] += keep
            n_good[c] += good[i, c]
            total_w[c] += w * good[i, c]
            flags[c] |= (good[i, c] > keep) * _F_CLIPPED
            or_mask[c] |= msk[i, c] if good[i, c] else 0
        used[j, x0 // _CHUNK, i] = n_i
    image, variance, mask = out_image[j], out_variance[j], out_mask[j]
    n_clipped, chunk = 0, x0 // _CHUNK
    for c in range(m):
        empty = n_good[c] == 0
        n_clipped += n_good[c] - n_used[c]
        image[x0 + c] = np.nan if empty else result[0, c]
        variance[x0 + c] = np.inf if empty else result[1, c]
        saturated = sat_w[c] > sat_fraction * (total_w[c] + sat_w[c])
        f = flags[c]
        mask[x0 + c] = (
            or_mask[c]
            | (bits[9] if empty else 0)
            | (bits[8] if saturated else 0)
            | (bits[5] if f & _F_REJECTED else 0)
            | (bits[6] if f & _F_EDGE else 0)
            | (bits[7] if f & _F_CLIPPED else 0)
            | (bits[10] if f != 0 else 0)
        )
    counts[j, chunk, 0] = n_clipped


@numba.njit(parallel=True, cache=True)
def _kernel(planes, jobs, weights, excluded, ref_out, network, options, bits, out):
    """Reference and/or stack of the rows listed in ``jobs``.

    ``jobs[k]`` = (plane row, reference row or -1, output row or -1, excluded row
    or -1, first column, last column): chunks outside the columns are skipped.
    The median found for the reference is reused by the stack where nothing is
    excluded. Counts go to ``out[3]``/``out[4]`` by output row and chunk.
    """
    n_in, _, width = planes[0].shape
    statistic, nsigma, n_iter, sat_fraction, outlier_nsigma = options
    for k in numba.prange(jobs.shape[0]):
        y, ref_j, out_j, ex_j, col_lo, col_hi = jobs[k]
        val, var = np.empty((n_in, _CHUNK), np.float32), np.empty((n_in, _CHUNK), np.float32)
        msk, good = np.empty((n_in, _CHUNK), np.int32), np.empty((n_in, _CHUNK), np.bool_)
        ordered, count = np.empty((n_in, _CHUNK), np.float32), np.empty(_CHUNK, np.int64)
        sums, result, work = np.empty((6, _CHUNK)), np.empty((4, _CHUNK)), np.empty((2, _CHUNK))
        med, spread, center, hw = (
            np.empty(_CHUNK),
            np.empty(_CHUNK),
            np.empty(_CHUNK),
            np.empty(_CHUNK),
        )
        sat_w, flags = np.empty(_CHUNK), np.empty(_CHUNK, np.int32)
        if ref_j >= 0:
            ref_out[4][ref_j, :] = False
        for x0 in range(0, width, _CHUNK):
            m = min(_CHUNK, width - x0)
            if x0 + m <= col_lo or x0 > col_hi:
                continue
            _load(planes, y, x0, m, bits[0], val, var, msk, good)
            have_median = ref_j >= 0
            if have_median:
                _median_iqr(val, good, m, network, ordered, count, med, spread)
                _reference_chunk(
                    ref_j, x0, m, val, var, good, med, spread, count, outlier_nsigma, work, ref_out
                )
            if out_j < 0:
                continue
            _gather_flags(msk, good, weights, m, bits, flags, sat_w)
            n_excluded = 0
            if ex_j >= 0:
                for i in range(n_in):
                    for c in range(m):
                        hit = good[i, c] & excluded[ex_j, i, x0 + c]
                        good[i, c] &= not hit
                        flags[c] |= _F_CLIPPED if hit else 0
                        n_excluded += hit
                out[4][out_j, x0 // _CHUNK, 1] = n_excluded
            if statistic == 0:
                center[:m], hw[:m] = 0.0, np.inf
                _meanclip(val, var, good, weights, m, 1.0, 1, center, hw, result, sums)
            else:
                if have_median and n_excluded == 0:
                    center[:m], hw[:m] = med[:m], spread[:m]
                else:
                    _median_iqr(val, good, m, network, ordered, count, center, hw)
                if statistic == 1:
                    _median_result(var, good, m, center, result)
                else:
                    _meanclip(val, var, good, weights, m, nsigma, n_iter, center, hw, result, sums)
            _finish_chunk(
                out_j, x0, m, val, msk, good, flags, sat_w, weights, sat_fraction, bits, result, out
            )


@dataclass(frozen=True)
class ArtifactRule:
    """Parameters of the transient-artifact rule (:func:`transient_mask`).

    Attributes
    ----------
    nsigma : float
        Outlier threshold against the per-pixel median (:func:`reference_stack`).
    min_area : int
        Outliers of one input in a 3x3 window needed to seed an artifact.
    grow : int
        Pixels by which seeds are grown.
    max_epochs_fraction : float
        Largest fraction of the usable inputs that may deviate at a pixel for
        their values to be excluded.
    """

    nsigma: float = 5.0
    min_area: int = 3
    grow: int = 2
    max_epochs_fraction: float = 0.4

    @property
    def halo(self) -> int:
        """Rows of context needed on each side of stacked rows: ``grow + 1``."""
        return self.grow + 1


def stack_planes(
    images: np.ndarray,
    variances: np.ndarray,
    masks: np.ndarray,
    weights: np.ndarray,
    *,
    statistic: str = "MEANCLIP",
    nsigma: float = 3.0,
    n_iter: int = 2,
    bits: StackMaskBits | None = None,
    sat_fraction: float = 0.1,
    rows: tuple[int, int] | None = None,
    artifacts: ArtifactRule | None = None,
    context: tuple[int, int] | None = None,
    work: ReferenceStack | None = None,
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> StackResult:
    """Stack ``n_inputs`` aligned planes pixel by pixel (LSST ``statisticsStack``).

    See the module notes for the statistics, variance and mask rules. Values
    to leave out for other reasons are flagged with a bad mask bit.

    Parameters
    ----------
    images, variances, masks : numpy.ndarray
        ``(n_inputs, height, width)`` float32, float32 and int32 planes, C-contiguous.
    weights : numpy.ndarray
        ``(n_inputs,)`` positive weight of each input.
    statistic : {"MEANCLIP", "MEAN", "MEDIAN"}
        The per-pixel statistic.
    nsigma, n_iter : float, int
        ``MEANCLIP`` threshold and number of passes (afw ``numSigmaClip``, ``numIter``).
    bits : StackMaskBits, optional
        Input and output mask bits; default nothing masked, no output flags.
    sat_fraction : float
        Weight fraction of left-out ``bits.saturated`` values above which the
        output gets ``bits.out_saturated``.
    rows : (int, int), optional
        Rows of the planes to stack (default all); the outputs cover them.
    artifacts : ArtifactRule, optional
        First exclude transient artifacts (:func:`transient_mask`, flagged
        ``out_clipped``), judged on the ``context`` rows: those outside
        ``rows`` serve as context only, and ``artifacts.halo`` of them on each
        side make the result independent of the blocking. The per-pixel median
        is computed once for the rule and the statistic.
    context : (int, int), optional
        Rows of the planes holding data for ``artifacts`` (default all).
    work : ReferenceStack, optional
        Buffers as tall as ``context`` for the reference of ``artifacts``
        (:meth:`ReferenceStack.empty`), to reuse between calls.
    out : (image, variance, mask), optional
        ``(n_rows, width)`` arrays to write the result into.

    Returns
    -------
    StackResult
        ``image``, ``variance``, ``mask``, ``n_used`` per input, ``n_clipped``,
        ``n_excluded`` values and ``n_excluded_pixels``.
    """
    if statistic not in STACK_STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(STACK_STATISTICS)}, got {statistic!r}")
    planes = _planes(images, variances, masks)
    n_in, height, width = images.shape
    start, stop = (0, height) if rows is None else rows
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (n_in,) or not np.all(np.isfinite(weights) & (weights > 0)):
        raise ValueError(f"weights must be {n_in} positive finite numbers, got {weights}")
    if out is None:
        shape = (stop - start, width)
        out = (np.empty(shape, np.float32), np.empty(shape, np.float32), np.empty(shape, np.int32))
    n_chunks = -(-width // _CHUNK)
    counts = (
        np.zeros((stop - start, n_chunks, n_in), np.int64),
        np.zeros((stop - start, n_chunks, 2), np.int64),
    )
    outputs = (*out, *counts)
    bit_array = (bits or StackMaskBits()).as_array()
    options = (STACK_STATISTICS[statistic], float(nsigma), int(n_iter), float(sat_fraction), 0.0)
    network = sorting_network(n_in)
    stacked = np.arange(start, stop)
    if artifacts is None:
        jobs = _jobs(stacked, output=stacked - start)
        _kernel(
            planes,
            jobs,
            weights,
            _NO_EXCLUSIONS,
            _NO_REFERENCE,
            network,
            options,
            bit_array,
            outputs,
        )
        return _result(outputs, 0)
    # one pass for the reference of every row and the stack of the rows asked for...
    first, last = (0, height) if context is None else context
    if not first <= start <= stop <= last:
        raise ValueError(f"rows {rows} are not inside the context rows {context}")
    reference = ReferenceStack.empty(n_in, last - first, width) if work is None else work
    every = np.arange(first, last)
    inside = (every >= start) & (every < stop)
    jobs = _jobs(every, reference=every - first, output=np.where(inside, every - start, -1))
    options = (*options[:4], float(artifacts.nsigma))
    arrays = _reference_arrays(reference)
    _kernel(planes, jobs, weights, _NO_EXCLUSIONS, arrays, network, options, bit_array, outputs)
    excluded, extent = _transient_mask(
        reference,
        planes,
        bad_bits=int(bit_array[0]),
        min_area=artifacts.min_area,
        grow=artifacts.grow,
        max_epochs_fraction=artifacts.max_epochs_fraction,
        rows=(first, last),
    )
    # ...then again where artifacts were found
    redo = stacked[extent[start - first : stop - first, 1] >= 0]
    jobs = _jobs(redo, output=redo - start, excluded=redo - first, columns=extent[redo - first])
    _kernel(planes, jobs, weights, excluded, _NO_REFERENCE, network, options, bit_array, outputs)
    return _result(outputs, int(np.count_nonzero(excluded[redo - first].any(axis=1))))


def _result(outputs: tuple, n_excluded_pixels: int) -> StackResult:
    clipped, n_excluded = outputs[4].sum(axis=(0, 1))
    used = outputs[3].sum(axis=(0, 1))
    return StackResult(*outputs[:3], used, int(clipped), int(n_excluded), n_excluded_pixels)


def _jobs(rows, *, reference=None, output=None, excluded=None, columns=None) -> np.ndarray:
    """The ``(n, 6)`` job table of :func:`_kernel` (-1 where not given, all columns)."""
    jobs = np.full((len(rows), 6), -1, np.int64)
    jobs[:, 4], jobs[:, 5] = 0, np.iinfo(np.int64).max
    for column, values in enumerate((rows, reference, output, excluded)):
        if values is not None:
            jobs[:, column] = values
    if columns is not None:
        jobs[:, 4:] = columns
    return jobs


def _reference_arrays(reference: ReferenceStack) -> tuple:
    return (
        reference.median,
        reference.iqr,
        reference.n_good,
        reference.outliers,
        reference.outlier_rows,
    )


def _no_output(n_in: int) -> tuple:
    return (
        np.zeros((1, 1), np.float32),
        np.zeros((1, 1), np.float32),
        np.zeros((1, 1), np.int32),
        np.zeros((1, 1, n_in), np.int64),
        np.zeros((1, 1, 2), np.int64),
    )


_NO_EXCLUSIONS = np.zeros((1, 1, 1), np.bool_)
_NO_REFERENCE = _reference_arrays(ReferenceStack.empty(1, 1, 1))


# -- weights and helpers ----------------------------------------------------------------------


def clipped_mean(values: np.ndarray, *, nsigma: float = 3.0, n_iter: int = 2) -> float:
    """afw ``MEANCLIP`` of a 1-d sample (unweighted): the clipped mean used for coadd weights.

    The first pass keeps values within ``nsigma`` IQR-sigmas (0.7413 IQR) of
    the median, later passes within ``nsigma`` standard deviations (ddof=1) of
    the previous pass's mean; every pass clips the full sample. NaN for an
    empty sample.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        return float("nan")
    positions = sorted({int(q * (n - 1)) + d for q in (0.25, 0.5, 0.75) for d in (0, 1)} - {n})
    part = np.partition(values, positions)

    def quantile(q: float) -> float:
        index = q * (n - 1)
        lo = int(index)
        hi = min(lo + 1, n - 1)
        return float((1.0 - (index - lo)) * part[lo] + (index - lo) * part[hi])

    center = quantile(0.5)
    half_width = nsigma * IQR_TO_SIGMA * (quantile(0.75) - quantile(0.25))
    mean = center
    for _ in range(max(int(n_iter), 1)):
        kept = values[np.abs(values - center) <= half_width]
        if kept.size == 0:
            break
        mean = float(kept.mean())
        if kept.size < 2:
            break
        center, half_width = mean, nsigma * float(kept.std(ddof=1))
    return mean


def _planes(images: np.ndarray, variances: np.ndarray, masks: np.ndarray) -> tuple:
    """The three planes checked for shape, dtype and C order (converted only if needed)."""
    if variances.shape != images.shape or masks.shape != images.shape or images.ndim != 3:
        raise ValueError(
            f"planes must share an (n_inputs, height, width) shape, got {images.shape}, "
            f"{variances.shape}, {masks.shape}"
        )
    return (
        np.ascontiguousarray(images, dtype=np.float32),
        np.ascontiguousarray(variances, dtype=np.float32),
        np.ascontiguousarray(masks, dtype=np.int32),
    )


def _int32(bits: int) -> np.int32:
    return np.array(bits & 0xFFFFFFFF, dtype=np.uint32).view(np.int32)[()]
