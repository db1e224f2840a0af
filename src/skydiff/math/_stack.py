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

import numpy as np

from ._stack_artifacts import ArtifactRule, _transient_mask
from ._stack_kernels import _CHUNK, _kernel, _planes
from ._stats import IQR_TO_SIGMA

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
]

#: Statistic name -> kernel code.
STACK_STATISTICS = {"MEAN": 0, "MEDIAN": 1, "MEANCLIP": 2}


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
