"""Selection of isolated, unsaturated point sources for PSF and kernel fitting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from ..errors import InsufficientSourcesError
from ..image import Box
from ..task import Config, Task, TaskResult, config_field

__all__ = ["StarSelectorConfig", "StarSelectorResult", "StarSelectorTask", "stellar_locus"]

_REJECT_FLAGS = (
    "flag_edge",
    "flag_no_data",
    "flag_saturated",
    "flag_interpolated",
    "flag_cr",
    "flag_bad",
    "flag_suspect",
)


@dataclass(frozen=True)
class StarSelectorConfig(Config):
    """Configuration of :class:`StarSelectorTask` (LSST ``objectSize`` selector ideas)."""

    snr_min: float = config_field(20.0, doc="Minimum PSF-flux S/N.")
    snr_max: float | None = config_field(None, doc="Maximum PSF-flux S/N (None: no limit).")
    isolation_radius: float = config_field(3.0, doc="No other source within this many PSF FWHM.")
    size_tolerance: float = config_field(
        0.15,
        doc="Largest fractional difference of the trace of the second moments "
        "from the stellar locus.",
    )
    max_stars: int = config_field(1000, doc="Keep at most this many stars (brightest per cell).")
    grid_cells: int = config_field(4, doc="Spread the stars over a grid of n x n cells.")
    min_stars: int = config_field(5, doc="Fewer stars raise InsufficientSourcesError.")

    def validate(self) -> None:
        self.check(self.snr_min > 0, "snr_min", "must be > 0")
        self.check(
            self.snr_max is None or self.snr_max > self.snr_min,
            "snr_max",
            "must be None or > snr_min",
        )
        self.check(self.isolation_radius >= 0, "isolation_radius", "must be >= 0")
        self.check(0 < self.size_tolerance < 1, "size_tolerance", "must be in (0, 1)")
        self.check(self.max_stars >= 1, "max_stars", "must be >= 1")
        self.check(self.grid_cells >= 1, "grid_cells", "must be >= 1")
        self.check(self.min_stars >= 1, "min_stars", "must be >= 1")


@dataclass(frozen=True)
class StarSelectorResult(TaskResult):
    """Result of :meth:`StarSelectorTask.run`.

    Attributes
    ----------
    selected : numpy.ndarray
        Boolean, True for the catalogue rows selected as stars.
    stellar_trace : float
        ``ixx + iyy`` of the stellar locus, pixels squared.
    """

    selected: np.ndarray
    stellar_trace: float


def stellar_locus(trace: np.ndarray, *, width: float = 0.1) -> float:
    """The most populated value of ``ixx + iyy`` among compact sources.

    Stars pile up at the PSF's size; galaxies spread to larger sizes. The
    locus is the centre of the densest window of relative width ``width``
    (in log space) among the smaller half plus the window itself.
    """
    values = np.sort(np.log(trace[np.isfinite(trace) & (trace > 0)]))
    if values.size == 0:
        return float("nan")
    ends = np.searchsorted(values, values + 2 * width, side="right")
    counts = ends - np.arange(values.size)
    best = int(np.argmax(counts))
    return float(np.exp(np.median(values[best : ends[best]])))


class StarSelectorTask(Task):
    """Pick PSF stars from a source catalogue (LSST ``ObjectSizeStarSelector``, simplified).

    Sources must be unflagged, within the S/N range, isolated from every
    other detection, and as small as the stellar locus (or the given PSF).
    The brightest are kept in each cell of a grid so that the stars cover
    the image.
    """

    ConfigClass = StarSelectorConfig
    _DefaultName = "star_selector"

    def run(
        self, catalog: Table, bbox: Box, *, fwhm: float, psf_trace: float | None = None
    ) -> StarSelectorResult:
        """Select stars from ``catalog`` measured on an image of ``bbox`` with PSF ``fwhm``.

        Raises
        ------
        InsufficientSourcesError
            If fewer than ``min_stars`` pass.
        """
        c = self.config
        metadata = self.new_metadata()
        snr = np.asarray(catalog["snr"], float)
        ok = ~np.asarray(catalog["is_negative"], bool) & (snr >= c.snr_min)
        if c.snr_max is not None:
            ok &= snr <= c.snr_max
        for flag in _REJECT_FLAGS:
            ok &= ~np.asarray(catalog[flag], bool)
        ok &= _isolated(catalog, c.isolation_radius * fwhm)
        trace = np.asarray(catalog["ixx"], float) + np.asarray(catalog["iyy"], float)
        locus = psf_trace if psf_trace is not None else stellar_locus(trace[ok])
        ok &= np.abs(trace / locus - 1.0) < c.size_tolerance
        selected = self._spread(catalog, ok, snr, bbox)
        metadata.add("n_candidates", int(ok.sum()))
        metadata.add("n_selected", int(selected.sum()))
        metadata.add("stellar_trace", locus)
        if selected.sum() < c.min_stars:
            raise InsufficientSourcesError(
                f"only {int(selected.sum())} stars pass the selection (S/N >= {c.snr_min}, "
                f"isolated, unflagged, on the stellar locus) out of {len(catalog)} sources; "
                f"{c.min_stars} needed",
                metadata.values,
            )
        self.log.info("selected %d stars of %d sources", int(selected.sum()), len(catalog))
        return StarSelectorResult(selected=selected, stellar_trace=locus, metadata=metadata)

    def _spread(self, catalog: Table, ok: np.ndarray, snr: np.ndarray, bbox: Box) -> np.ndarray:
        n = self.config.grid_cells
        per_cell = max(1, self.config.max_stars // (n * n))
        x, y = np.asarray(catalog["x"], float), np.asarray(catalog["y"], float)
        ix = np.clip(((x - bbox.x0) * n / bbox.width).astype(int), 0, n - 1)
        iy = np.clip(((y - bbox.y0) * n / bbox.height).astype(int), 0, n - 1)
        cell = np.where(ok, iy * n + ix, -1)
        order = np.lexsort((-snr, cell))
        rank = np.empty(len(order), int)
        sorted_cells = cell[order]
        starts = np.searchsorted(sorted_cells, sorted_cells, side="left")
        rank[order] = np.arange(len(order)) - starts
        return ok & (rank < per_cell)


def _isolated(catalog: Table, radius: float) -> np.ndarray:
    if radius <= 0 or len(catalog) < 2:
        return np.ones(len(catalog), bool)
    points = np.column_stack([np.asarray(catalog["x"], float), np.asarray(catalog["y"], float)])
    neighbours = cKDTree(points).query(points, k=2)[0][:, 1]
    return neighbours > radius
