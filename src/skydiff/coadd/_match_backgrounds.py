"""MatchBackgroundsTask: the warps of many visits brought to one visit's background.

LSST ``lsst.pipe.tasks.matchBackgrounds.MatchBackgroundsTask`` with its
``TractBackground``: every visit's warps are binned over the whole tract,
each visit's binned image is differenced with the reference visit's, a smooth
model of the difference is fitted, and that model is added to the visit's
warps. The reference is chosen automatically unless given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy.table import Table

from ..background import BackgroundModel
from ..errors import InvalidExposureError, InvalidParameterError, NoWorkFound
from ..image import Box, Exposure
from ..math import (
    BinSums,
    block_bin_statistics,
    constrained_chebyshev_order,
    fill_empty_bins_thin_plate,
)
from ..task import Config, Task, TaskResult, config_field
from ._match_diagnostics import _add_metadata, _diagnose, _diagnostics_table
from ._matched_warp import MatchedWarpHandle, _as_handle
from ._tract_background import (
    _BlockBuffer,
    _finish_bins,
    _grid_model,
    _smooth_fit_rms,
    _TractGrid,
    _VisitBins,
)
from ._warp_checks import _check_warps, _group_by_visit

__all__ = [
    "MatchBackgroundsConfig",
    "MatchBackgroundsResult",
    "MatchBackgroundsTask",
    "MatchedWarpHandle",
]

log = logging.getLogger(__name__)


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
        128,
        doc="Rows of each warp (in 8 evenly spaced strips; all rows of a shorter warp) on "
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
        them. Bins the difference could not be measured in have ``counts``
        0 and NaN ``variances``; a spline model holds them already filled, a
        Chebyshev model NaN values. Zero for the reference visit
        [backgroundInfoList].
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
       (``interpolation``; empty bins first filled by a discrete thin plate,
       which continues gradients linearly) or, with ``use_approximate``, a
       Chebyshev series of order ``approx_order`` weighted by the inverse
       variance of the bins (lowered when too few bins constrain it, per
       ``undersample_style``).
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
                        _diagnose(
                            [handles[i] for i in idx],
                            [handles[i] for i in visits[reference]],
                            models[visit],
                            bad_mask_planes=c.bad_mask_planes,
                            diagnostic_rows=c.diagnostic_rows,
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
        sums = BinSums(grid.shape)
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
        """Add the bin statistics of one block of a warp to ``sums``."""
        c = self.config
        x_edges, y_edges = grid.local_edges(part.bbox)
        stats = block_bin_statistics(
            part.image,
            part.variance,
            part.mask.array,
            skip,
            bad_bits=part.mask.bitmask(c.bad_mask_planes, ignore_missing=True),
            x_edges=x_edges,
            y_edges=y_edges,
            statistic=c.grid_statistic,
            nsigma=c.nsigma,
            max_iter=c.max_iter,
        )
        sums.add(stats, grid.bin_slices(part.bbox), x0=part.bbox.x0, y0=part.bbox.y0)

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
        if not np.isfinite(ref.values).any():
            raise InvalidExposureError(
                f"reference visit {reference} has no bin with enough good pixels "
                f"(min_fraction {self.config.min_fraction}): choose another reference visit"
            )
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
            values if c.use_approximate else fill_empty_bins_thin_plate(values),
            ref.variances + bins.variances,
            np.minimum(ref.counts, bins.counts),
            interpolation=c.interpolation,
            approximation_order=order,
        )
        fitted = model.evaluate_at(x=grid.x_centers, y=grid.y_centers)
        residuals = (values - fitted)[np.isfinite(values)]
        figures = {
            "n_bins": n_bins,
            "approx_order": -1 if order is None else order,
            "fit_rms": float(np.sqrt(np.mean(residuals**2))),
        }
        return model, figures


# -- reference choice and fit order ----------------------------------------------------------


def _positive_max(values) -> float:
    finite = [v for v in values if np.isfinite(v) and v > 0]
    return max(finite) if finite else 1.0


def _cheapest(rows: dict) -> int:
    """The visit of least cost (the lowest id among equals)."""
    return min(rows, key=lambda visit: (rows[visit]["cost"], visit))


def _chebyshev_order(values: np.ndarray, order: int, style: str, what: str) -> int:
    """:func:`~skydiff.math.constrained_chebyshev_order`, warning when it is lower than
    ``order`` (or raising, with ``style`` ``THROW_EXCEPTION``)."""
    possible = constrained_chebyshev_order(values, order)
    if possible < order:
        if style == "THROW_EXCEPTION":
            raise InvalidParameterError(
                f"{what}: the usable bins cannot constrain a Chebyshev series of order {order} "
                f"(at most {possible}); lower approx_order or bin_size, or use "
                "undersample_style REDUCE_INTERP_ORDER"
            )
        log.warning("%s: Chebyshev order reduced from %d to %d", what, order, possible)
    return possible
