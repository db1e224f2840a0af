"""AssembleCoaddTask: the warps of one patch and band stacked into a coadd (LSST name kept)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from ..errors import InvalidExposureError, InvalidParameterError, NoWorkFound
from ..image import Box, Exposure, Mask, MaskedImage, pixel_to_sky, sky_to_pixel
from ..io import InMemoryHandle
from ..math import ArtifactRule, ReferenceStack, StackMaskBits, bits_set, clipped_mean, stack_planes
from ..psf import CoaddPsf
from ..task import Config, Task, TaskMetadata, TaskResult, config_field

__all__ = ["AssembleCoaddConfig", "AssembleCoaddResult", "AssembleCoaddTask"]

#: Planes every coadd mask defines (LSST adds them in ``assembleSubregion``).
_COADD_PLANES = ("NO_DATA", "SAT", "EDGE", "CLIPPED", "REJECTED", "SENSOR_EDGE", "INEXACT_PSF")
#: Warps whose WCS moves a coadd pixel by more than this (pixels) are on another grid.
_GRID_TOLERANCE = 1e-3
#: Strips sampled per warp when measuring its weight on a tall patch.
_WEIGHT_STRIPS = 16


@dataclass(frozen=True)
class AssembleCoaddConfig(Config):
    """Configuration of :class:`AssembleCoaddTask` (LSST names in brackets)."""

    statistic: Literal["MEANCLIP", "MEAN", "MEDIAN"] = config_field(
        "MEANCLIP", doc="Per-pixel statistic over the warps [statistic]."
    )
    sigma_clip: float = config_field(
        3.0, doc="MEANCLIP threshold, and that of the weights' clipped mean [sigmaClip]."
    )
    clip_iter: int = config_field(2, doc="Clipping passes of MEANCLIP and the weights [clipIter].")
    bad_mask_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD", "SAT", "EDGE"),
        doc="Warp pixels with these planes are left out of the stack [badMaskPlanes].",
    )
    sat_fraction: float = config_field(
        0.1,
        doc="SAT on the coadd where saturated warp pixels hold more than this fraction of "
        "the weight [maskPropagationThresholds['SAT']].",
    )
    block_rows: int = config_field(
        256, doc="Rows stacked at a time: memory is one such block per warp [subregionSize]."
    )
    weight_sample_rows: int = config_field(
        256,
        doc="Rows of each warp whose variance sets its weight: all rows of a shorter patch, "
        "else this many in 16 evenly spaced strips (LSST uses every row).",
    )
    do_artifact_rejection: bool = config_field(
        True,
        doc="Exclude transient artifacts (outliers in few epochs) before the final statistic "
        "[CompareWarpAssembleCoaddTask].",
    )
    artifact_nsigma: float = config_field(
        5.0, doc="Outlier threshold against the per-pixel median [detect.thresholdValue]."
    )
    artifact_min_area: int = config_field(
        3,
        doc="Outliers (of one warp) in a 3x3 window needed to seed an artifact [detect.minPixels].",
    )
    artifact_grow: int = config_field(
        2, doc="Pixels by which artifact seeds are grown [detect.nSigmaToGrow]."
    )
    max_epochs_fraction: float = config_field(
        0.4,
        doc="Artifacts are excluded where at most this fraction of the warps deviate "
        "[maxFractionEpochsLow].",
    )
    read_threads: int = config_field(
        2, doc="Threads reading the warps' parts of a block at once (0: in the calling thread)."
    )

    def validate(self) -> None:
        self.check(self.sigma_clip > 0, "sigma_clip", "must be > 0")
        self.check(self.clip_iter >= 1, "clip_iter", "must be >= 1")
        self.check(0 <= self.sat_fraction <= 1, "sat_fraction", "must be in [0, 1]")
        self.check(self.block_rows >= 1, "block_rows", "must be >= 1")
        self.check(self.weight_sample_rows >= 1, "weight_sample_rows", "must be >= 1")
        self.check(self.artifact_nsigma > 0, "artifact_nsigma", "must be > 0")
        self.check(1 <= self.artifact_min_area <= 9, "artifact_min_area", "must be in 1..9")
        self.check(self.artifact_grow >= 0, "artifact_grow", "must be >= 0")
        self.check(0 <= self.max_epochs_fraction < 1, "max_epochs_fraction", "must be in [0, 1)")
        self.check(self.read_threads >= 0, "read_threads", "must be >= 0")
        self.check(
            all(isinstance(p, str) and p for p in self.bad_mask_planes),
            "bad_mask_planes",
            "must be plane names",
        )


@dataclass(frozen=True)
class AssembleCoaddResult(TaskResult):
    """Result of :meth:`AssembleCoaddTask.run`.

    Attributes
    ----------
    coadd : Exposure
        The coadd (nJy; a ``CoaddPsf`` of all inputs for direct warps, the
        common model PSF for PSF-matched warps) [coaddExposure].
    inputs : astropy.table.Table
        One row per input of each warp used (per detector of a direct warp's
        ``CoaddPsf``, else per warp): ``warp`` (index in the list given),
        ``visit``, ``detector``, ``weight`` (the warp's) and ``n_pixels``
        (coadd pixels the warp contributed to) [coaddInputs].
    """

    coadd: Exposure
    inputs: Table


class AssembleCoaddTask(Task):
    """Stack the warps of one patch and band into a coadd, block by block.

    Each warp gets one weight, the inverse of the clipped mean
    (:func:`~skydiff.coadd.clipped_mean`) of its variance over good pixels.
    The stack is LSST's ``statisticsStack`` (:func:`~skydiff.coadd.stack_planes`):
    per pixel, warp values masked with ``bad_mask_planes`` or without data are
    left out, the rest combined by ``statistic`` (weighted mean, weighted
    sigma-clipped mean, or median), the variance propagated as
    ``sum w^2 V / (sum w)^2``. Mask planes of the coadd:

    - the OR of the masks of the warp values used;
    - ``REJECTED`` where a bad plane other than NO_DATA and EDGE left a value out;
      ``SENSOR_EDGE`` where EDGE did;
    - ``CLIPPED`` where a value was sigma-clipped or rejected as an artifact;
    - ``SAT`` where saturated values hold more than ``sat_fraction`` of the weight;
    - ``INEXACT_PSF`` where any of REJECTED, SENSOR_EDGE or CLIPPED is set (the
      ``CoaddPsf`` assumes every input contributes);
    - ``NO_DATA`` (image NaN, variance +inf) where no value was used.

    With ``do_artifact_rejection`` (LSST ``CompareWarpAssembleCoaddTask`` in a
    local form) values deviating from the per-pixel median in contiguous
    regions of few epochs are left out first; see
    :func:`~skydiff.coadd.transient_mask` for the rule.

    Warps are read through handles (:class:`~skydiff.io.ExposureHandle` for
    files, :class:`~skydiff.io.InMemoryHandle` for exposures; exposures given
    directly are wrapped), ``block_rows`` rows at a time (plus a halo of
    ``artifact_grow + 1`` rows), so memory holds one block per warp and the
    result does not depend on the block size.
    """

    ConfigClass = AssembleCoaddConfig
    config: AssembleCoaddConfig
    _DefaultName = "assembleCoadd"

    def run(
        self,
        warps: Sequence[Any],
        *,
        bbox: Box | None = None,
        weights: Sequence[float] | None = None,
    ) -> AssembleCoaddResult:
        """Coadd ``warps``: exposures or handles of one patch and band, in nJy, on one grid.

        Parameters
        ----------
        warps : sequence of Exposure or handle
            The warps; a handle has ``bbox``, ``wcs``, ``psf``, ``band``,
            ``units``, ``visit_info`` and ``get(bbox)``.
        bbox : Box, optional
            The coadd's box; default the union of the warps' boxes.
        weights : sequence of float, optional
            One weight per warp, instead of the inverse mean variance.

        Returns
        -------
        AssembleCoaddResult
            ``coadd``, ``inputs`` and ``metadata`` (``n_inputs``, ``weights``,
            ``fraction_clipped``, ``n_artifact_values``, ``fraction_no_data``, timings).

        Raises
        ------
        InvalidExposureError
            If a warp is not in nJy, has another band, another pixel grid or
            an inconsistent PSF (the message names the warp).
        NoWorkFound
            If no warp has usable pixels in the coadd box.
        """
        handles = [_as_handle(w) for w in warps]
        if not handles:
            raise NoWorkFound("no warps to coadd")
        metadata = self.new_metadata()
        wcs, band = _check_warps(handles)
        _check_psfs(handles)
        bbox = _coadd_box(handles, bbox)
        planes = _coadd_planes(handles)
        with self.timer("weights", metadata):
            weight_array = self._weights(handles, bbox, weights)
        indices = np.flatnonzero(np.isfinite(weight_array))
        handles, weight_array = [handles[i] for i in indices], weight_array[indices]
        psf = _coadd_psf(handles, weight_array, wcs)
        masked = MaskedImage(
            np.empty(bbox.shape, np.float32),
            Mask(np.zeros(bbox.shape, np.int32), bbox=bbox, planes=planes),
            np.empty(bbox.shape, np.float32),
            bbox=bbox,
        )
        totals = self._stack_blocks(handles, weight_array, masked, metadata)
        filters = {getattr(h, "physical_filter", "") for h in handles}
        coadd = Exposure(
            masked,
            wcs=wcs,
            psf=psf,
            band=band,
            physical_filter=filters.pop() if len(filters) == 1 else "",
            units="nJy",
        )
        self._add_metadata(metadata, coadd, weight_array, totals, len(warps) - len(handles))
        self.log.info(
            "coadded %d warps on %s: %.2f%% of values clipped, %d artifact values",
            len(handles),
            bbox,
            100 * metadata["fraction_clipped"],
            totals["excluded"],
        )
        return AssembleCoaddResult(
            coadd=coadd,
            inputs=_inputs_table(handles, indices, weight_array, totals["n_used"]),
            metadata=metadata,
        )

    # -- weights ------------------------------------------------------------------------------

    def _weights(self, handles, bbox: Box, weights) -> np.ndarray:
        """One weight per warp, NaN for a warp without good pixels (left out, with a warning)."""
        if weights is not None:
            array = np.asarray(weights, dtype=np.float64)
            if array.shape != (len(handles),) or not np.all(np.isfinite(array) & (array > 0)):
                raise InvalidParameterError(
                    f"weights must be {len(handles)} positive finite numbers, got {weights!r}"
                )
            return array
        threads = self.config.read_threads
        if threads > 0 and len(handles) > 1:
            with ThreadPoolExecutor(threads) as pool:
                measured = np.array(list(pool.map(self.measure_weight, handles)))
        else:
            measured = np.array([self.measure_weight(h) for h in handles])
        for i, handle in enumerate(handles):
            if not handle.bbox.overlaps(bbox):
                measured[i] = np.nan
                self.log.warning("%s does not overlap %s: left out", _describe(handle), bbox)
            elif not np.isfinite(measured[i]):
                self.log.warning("%s has no good pixel: left out", _describe(handle))
        if not np.isfinite(measured).any():
            raise NoWorkFound(f"no warp has good pixels in {bbox}")
        return measured

    def measure_weight(self, warp: Any) -> float:
        """The warp's weight: 1 / clipped mean of its variance on good pixels (NaN if none).

        On a warp taller than ``weight_sample_rows`` the variance is sampled
        on that many rows (LSST ``AssembleCoaddTask.prepareInputs`` uses
        every pixel).
        """
        handle = _as_handle(warp)
        samples = []
        for box in _sample_boxes(handle.bbox, self.config.weight_sample_rows):
            part = handle.get(box)
            bad = part.mask.bitmask(self.config.bad_mask_planes, ignore_missing=True)
            with np.errstate(invalid="ignore"):
                good = (
                    ~bits_set(part.mask.array, bad)
                    & np.isfinite(part.image)
                    & np.isfinite(part.variance)
                    & (part.variance >= 0)
                )
            samples.append(part.variance[good])
        values = np.concatenate(samples) if samples else np.empty(0, np.float32)
        mean = clipped_mean(values, nsigma=self.config.sigma_clip, n_iter=self.config.clip_iter)
        return 1.0 / mean if np.isfinite(mean) and mean > 0 else float("nan")

    # -- stacking -----------------------------------------------------------------------------

    def _stack_blocks(self, handles, weights: np.ndarray, masked: MaskedImage, metadata):
        """Stack the coadd box in row blocks of ``block_rows`` rows plus the artifact halo."""
        c = self.config
        bbox = masked.bbox
        bits = _stack_bits(masked.mask, c.bad_mask_planes)
        halo = c.artifact_grow + 1 if c.do_artifact_rejection else 0
        rows = min(c.block_rows, bbox.height)
        height = min(rows + 2 * halo, bbox.height)
        readers = [_BlockReader(h, masked.mask.planes) for h in handles]
        blocks = [
            (
                y0,
                min(y0 + rows, bbox.y_end),
                max(y0 - halo, bbox.y0),
                min(y0 + rows + halo, bbox.y_end),
            )
            for y0 in range(bbox.y0, bbox.y_end, rows)
        ]
        rule = _artifact_rule(c)
        work = ReferenceStack.empty(len(handles), height, bbox.width) if rule else None
        totals = {"n_used": np.zeros(len(handles), np.int64), "clipped": 0, "excluded": 0}
        totals.update(stacked=0, artifact_pixels=0)
        with _BlockBuffers(readers, height, bbox, c.read_threads) as buffers:
            for y0, y1, lo, hi in blocks:
                with self.timer("read", metadata):
                    planes = buffers.read(lo, hi)
                with self.timer("stack", metadata):
                    out_rows = slice(y0 - bbox.y0, y1 - bbox.y0)
                    result = stack_planes(
                        *planes,
                        weights,
                        statistic=c.statistic,
                        nsigma=c.sigma_clip,
                        n_iter=c.clip_iter,
                        bits=bits,
                        sat_fraction=c.sat_fraction,
                        rows=(y0 - lo, y1 - lo),
                        artifacts=rule,
                        context=(0, hi - lo),
                        work=None if work is None else work.rows(0, hi - lo),
                        out=(
                            masked.image[out_rows],
                            masked.variance[out_rows],
                            masked.mask.array[out_rows],
                        ),
                    )
                totals["n_used"] += result.n_used
                totals["clipped"] += result.n_clipped
                totals["excluded"] += result.n_excluded
                totals["artifact_pixels"] += result.n_excluded_pixels
                totals["stacked"] += int(result.n_used.sum()) + result.n_clipped
        return totals

    def _add_metadata(self, metadata: TaskMetadata, coadd: Exposure, weights, totals, skipped):
        metadata.add("n_inputs", len(weights))
        metadata.add("n_skipped", skipped)
        metadata.add("weights", json.dumps([float(w) for w in weights]))
        metadata.add("fraction_clipped", totals["clipped"] / max(totals["stacked"], 1))
        metadata.add("n_artifact_values", totals["excluded"])
        metadata.add("n_artifact_pixels", totals["artifact_pixels"])
        metadata.add("fraction_no_data", float(coadd.mask.get("NO_DATA").mean()))
        metadata.add("fraction_clipped_pixels", float(coadd.mask.get("CLIPPED").mean()))


# -- block buffers and reading ---------------------------------------------------------------


class _BlockBuffers:
    """``(n_warps, rows, width)`` image, variance and mask buffers, filled block by block.

    The warps' parts of a block are read by ``threads`` threads at once (file
    reads and byte swaps release the GIL), between, not during, the numba
    kernels, whose threads would otherwise be preempted.
    """

    def __init__(self, readers: list, rows: int, bbox: Box, threads: int):
        n = len(readers)
        self.image = np.empty((n, rows, bbox.width), np.float32)
        self.variance = np.empty((n, rows, bbox.width), np.float32)
        self.mask = np.empty((n, rows, bbox.width), np.int32)
        self.readers, self.bbox = readers, bbox
        self.pool = ThreadPoolExecutor(threads) if threads > 0 and n > 1 else None

    def __enter__(self) -> _BlockBuffers:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def read(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read rows ``lo:hi`` of every warp into the first ``hi - lo`` rows of the buffers."""
        box = Box(self.bbox.x0, lo, self.bbox.width, hi - lo)
        planes = (self.image, self.variance, self.mask)

        def read_one(i: int) -> None:
            self.readers[i].read(box, *(p[i, : hi - lo] for p in planes))

        if self.pool is None:
            for i in range(len(self.readers)):
                read_one(i)
        else:
            list(self.pool.map(read_one, range(len(self.readers))))
        return planes


class _BlockReader:
    """Reads one warp's part of a block into buffers in the coadd's mask layout."""

    def __init__(self, handle: Any, planes: dict[str, int]):
        self.handle = handle
        self.planes = planes
        self.no_data = Mask(np.zeros((1, 1), np.int32), planes=planes).bitmask("NO_DATA")
        self.accepts_out = "out" in inspect.signature(handle.get).parameters

    def read(self, box: Box, image: np.ndarray, variance: np.ndarray, mask: np.ndarray) -> None:
        overlap = box.intersection(self.handle.bbox)
        if overlap != box:
            image[...] = np.nan
            variance[...] = np.inf
            mask[...] = self.no_data
        if overlap.is_empty:
            return
        region = overlap.slices(box)
        target = MaskedImage(
            image[region],
            Mask(mask[region], bbox=overlap, planes=self.planes),
            variance[region],
            bbox=overlap,
        )
        if self.accepts_out:
            self.handle.get(overlap, out=target)
        else:
            target.assign(self.handle.get(overlap).masked_image)


def _sample_boxes(region: Box, n_rows: int) -> list[Box]:
    """The region, or ``_WEIGHT_STRIPS`` evenly spaced strips of ``n_rows`` rows in all."""
    if region.is_empty:
        return []
    if region.height <= n_rows:
        return [region]
    strips = min(_WEIGHT_STRIPS, n_rows)
    height = n_rows // strips
    step = (region.height - height) / (strips - 1) if strips > 1 else 0.0
    return [
        Box(region.x0, region.y0 + round(k * step), region.width, height) for k in range(strips)
    ]


# -- checks and products ---------------------------------------------------------------------


def _as_handle(warp: Any) -> Any:
    if isinstance(warp, Exposure):
        return InMemoryHandle(warp)
    missing = [n for n in ("bbox", "wcs", "psf", "band", "units", "get") if not hasattr(warp, n)]
    if missing:
        raise InvalidParameterError(
            f"a warp must be an Exposure or a handle; {type(warp).__name__} lacks {missing}"
        )
    return warp


def _describe(handle: Any) -> str:
    describe = getattr(handle, "describe", None)
    return describe() if callable(describe) else repr(handle)


def _check_warps(handles: list) -> tuple[WCS, str]:
    """The common WCS and band; raise naming the first warp that differs."""
    first = handles[0]
    for handle in handles:
        if handle.units != "nJy":
            raise InvalidExposureError(
                f"warp {_describe(handle)} is in {handle.units!r}, not nJy: coadd calibrated "
                "warps (Exposure.calibrated())"
            )
        if handle.wcs is None:
            raise InvalidExposureError(f"warp {_describe(handle)} has no WCS")
        if handle.band != first.band:
            raise InvalidExposureError(
                f"warp {_describe(handle)} has band {handle.band!r} but warp {_describe(first)} "
                f"has {first.band!r}: a coadd is of one band"
            )
    union = _union(h.bbox for h in handles)
    x, y = (np.array(v, dtype=float) for v in zip(*union.corners(), union.center, strict=True))
    for handle in handles[1:]:
        tx, ty = sky_to_pixel(first.wcs, *pixel_to_sky(handle.wcs, x, y))
        offset = float(np.max(np.hypot(tx - x, ty - y)))
        if not offset <= _GRID_TOLERANCE:
            raise InvalidExposureError(
                f"warp {_describe(handle)} is not on the pixel grid of warp {_describe(first)}: "
                f"its WCS moves coadd pixels by up to {offset:.3g} pixels"
            )
    return first.wcs, first.band


def _union(boxes) -> Box:
    result = Box(0, 0, 0, 0)
    for box in boxes:
        result = result.union(box)
    return result


def _coadd_box(handles: list, bbox: Box | None) -> Box:
    union = _union(h.bbox for h in handles)
    if bbox is None:
        return union
    if not bbox.overlaps(union):
        raise NoWorkFound(f"no warp overlaps the coadd box {bbox}")
    return bbox


def _coadd_planes(handles: list) -> dict[str, int]:
    """The first warp's mask planes, then those of the others, then the coadd planes."""
    layouts = [_planes_of(h) for h in handles]
    mask = Mask(np.zeros((1, 1), np.int32), planes=layouts[0])
    for name in [n for layout in layouts[1:] for n in layout] + list(_COADD_PLANES):
        mask.add_plane(name)
    return mask.planes


def _planes_of(handle: Any) -> dict[str, int]:
    planes = getattr(handle, "mask_planes", None)
    if planes is not None:
        return dict(planes)
    box = handle.bbox
    return handle.get(Box(box.x0, box.y0, 1, 1)).mask.planes


def _artifact_rule(config: AssembleCoaddConfig) -> ArtifactRule | None:
    if not config.do_artifact_rejection:
        return None
    return ArtifactRule(
        nsigma=config.artifact_nsigma,
        min_area=config.artifact_min_area,
        grow=config.artifact_grow,
        max_epochs_fraction=config.max_epochs_fraction,
    )


def _stack_bits(mask: Mask, bad_planes: tuple[str, ...]) -> StackMaskBits:
    bad = mask.bitmask(bad_planes, ignore_missing=True)
    plane = mask.bitmask
    return StackMaskBits(
        bad=int(bad),
        rejected=int(bad) & ~int(plane(["NO_DATA", "EDGE", "CLIPPED"])),
        edge=int(plane("EDGE")),
        clipped=int(plane("CLIPPED")),
        saturated=int(plane("SAT")),
        out_rejected=int(plane("REJECTED")),
        out_sensor_edge=int(plane("SENSOR_EDGE")),
        out_clipped=int(plane("CLIPPED")),
        out_saturated=int(plane("SAT")),
        out_no_data=int(plane("NO_DATA")),
        out_inexact_psf=int(plane("INEXACT_PSF")),
    )


def _check_psfs(handles: list) -> None:
    """All CoaddPsf (direct warps), all one model (PSF-matched), or all None; else raise."""
    psfs = [h.psf for h in handles]
    if all(isinstance(p, CoaddPsf) for p in psfs) or all(p is None for p in psfs):
        return
    first = psfs[0]
    for handle, psf in zip(handles, psfs, strict=True):
        if psf is None or isinstance(psf, CoaddPsf) or not psf == first:
            raise InvalidExposureError(
                f"warp {_describe(handle)} has PSF {psf!r} but warp {_describe(handles[0])} has "
                f"{first!r}: direct warps must all carry a CoaddPsf, PSF-matched warps one "
                "common model PSF"
            )


def _coadd_psf(handles: list, weights: np.ndarray, wcs: WCS):
    """CoaddPsf of all inputs re-weighted by their warp's weight, or the common model PSF."""
    psfs = [h.psf for h in handles]
    if not all(isinstance(p, CoaddPsf) for p in psfs):
        return psfs[0]
    inputs = [
        dataclasses.replace(item, weight=item.weight * float(w))
        for psf, w in zip(psfs, weights, strict=True)
        for item in psf.inputs
    ]
    return CoaddPsf(inputs, wcs)


def _inputs_table(handles: list, indices, weights: np.ndarray, n_used: np.ndarray) -> Table:
    rows = []
    for index, handle, weight, used in zip(indices, handles, weights, n_used, strict=True):
        psf = handle.psf
        if isinstance(psf, CoaddPsf):
            pairs = [(item.visit, item.detector) for item in psf.inputs]
        else:
            info = getattr(handle, "visit_info", None)
            visit = info.visit if info is not None and info.visit is not None else -1
            pairs = [(visit, -1)]
        rows.extend(
            (int(index), visit, detector, float(weight), int(used)) for visit, detector in pairs
        )
    names = ("warp", "visit", "detector", "weight", "n_pixels")
    dtypes = (np.int64, np.int64, np.int64, np.float64, np.int64)
    if not rows:
        return Table(names=names, dtype=dtypes)
    return Table(rows=rows, names=names, dtype=dtypes)
