"""The transient-artifact rule of coadd stacking (a local form of LSST ``CompareWarp``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np

from ._stack_kernels import _planes

if TYPE_CHECKING:
    from ._stack import ReferenceStack

__all__ = ["ArtifactRule", "transient_mask"]


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


@numba.njit(cache=True)
def _usable(m, bad, v, var):
    return (m & bad) == 0 and np.isfinite(v) and np.isfinite(var) and var >= 0.0


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


def _int32(bits: int) -> np.int32:
    return np.array(bits & 0xFFFFFFFF, dtype=np.uint32).view(np.int32)[()]
