"""The tract grid of bins of MatchBackgroundsTask (LSST ``TractBackground``).

Bins aligned to the tract's pixel grid, so the patch warps of a visit share
them; the buffers its warps are read into block by block; a visit's binned
image; and the background models and smooth fits made on the grid. The array
maths is in :mod:`skydiff.math` (:func:`~skydiff.math.block_bin_statistics`,
:class:`~skydiff.math.BinSums`, :func:`~skydiff.math.values_at_bin_centers`,
:func:`~skydiff.math.chebyshev_fit_rms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..background import BackgroundModel
from ..image import Box, Exposure, Mask, MaskedImage
from ..io import InMemoryHandle
from ..math import BinSums, chebyshev_fit_rms, values_at_bin_centers
from ._matched_warp import _accepts_out

if TYPE_CHECKING:
    from ._match_backgrounds import MatchBackgroundsConfig


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
    sums: BinSums, grid: _TractGrid, visit: int, config: MatchBackgroundsConfig
) -> _VisitBins:
    """Bin values (at the bin centres), their variances and the visit's summary figures.

    The visit's mean variance is that of the variance plane over a sample of
    ~512 good pixels per bin.
    """
    stats = sums.finish(
        areas=grid.areas, min_fraction=config.min_fraction, statistic=config.grid_statistic
    )
    values = stats.values
    if config.correct_bin_centroids:
        values = values_at_bin_centers(
            values,
            x_centroids=stats.x_centroids,
            y_centroids=stats.y_centroids,
            x_centers=grid.x_centers,
            y_centers=grid.y_centers,
            bin_size=grid.bin_size,
            origin=(grid.region.x0, grid.region.y0),
        )
    return _VisitBins(
        visit=visit,
        values=values,
        variances=stats.variances,
        counts=stats.counts,
        coverage=float(stats.n_good.sum() / grid.region.area),
        mean_variance=stats.mean_variance,
    )


def _grid_model(grid: _TractGrid, values, variances, counts, **options) -> BackgroundModel:
    """A background model on the bins of ``grid``."""
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


# -- smooth fits of binned images -------------------------------------------------------------


def _bounds(region: Box) -> tuple[float, float, float, float]:
    """Outer pixel edges of ``region`` (the domain of the Chebyshev series, as BackgroundModel)."""
    return (region.x0 - 0.5, region.y0 - 0.5, region.x_end - 0.5, region.y_end - 0.5)


def _smooth_fit_rms(bins: _VisitBins, grid: _TractGrid, order: int) -> float:
    """RMS of a visit's bins about a Chebyshev fit of up to ``order`` (its smoothness)."""
    return chebyshev_fit_rms(
        bins.values,
        bins.variances,
        x_centers=grid.x_centers,
        y_centers=grid.y_centers,
        bounds=_bounds(grid.region),
        order=order,
    )
