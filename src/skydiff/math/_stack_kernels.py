"""Numba kernels of :func:`~skydiff.math.stack_planes` and :func:`~skydiff.math.reference_stack`.

They run in parallel over rows; within a row they work on chunks of
``_CHUNK`` pixels with the pixel index innermost so that the compiler
vectorises the loops over inputs, and sort each pixel's values with a
sorting network applied across the chunk. The statistics, variance and mask
rules are described in :mod:`skydiff.math._stack`.
"""

from __future__ import annotations

import numba
import numpy as np

from ._stats import IQR_TO_SIGMA

_HALF_PI = 1.5707963267948966
_CHUNK = 256
# flags gathered per output pixel
_F_REJECTED, _F_EDGE, _F_CLIPPED = 1, 2, 4


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
