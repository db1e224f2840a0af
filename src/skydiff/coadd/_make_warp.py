"""MakeWarpTask: one visit's calexps resampled onto a sky-map patch (LSST ``MakeWarpTask``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from ..background import BackgroundList
from ..diffim import ModelPsfConfig, ModelPsfMatchConfig, ModelPsfMatchTask
from ..errors import AlgorithmError, InvalidExposureError, InvalidParameterError
from ..image import Box, Exposure, MaskedImage, VisitInfo
from ..psf import CoaddPsf, CoaddPsfInput
from ..task import Config, Task, TaskMetadata, TaskResult, config_field
from ..warp import overlap_box, warp_exposure

__all__ = ["MakeWarpConfig", "MakeWarpResult", "MakeWarpTask", "WarperConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarperConfig(Config):
    """Resampling options (LSST ``WarperConfig``)."""

    kernel: str = config_field(
        "lanczos3",
        doc="Resampling kernel: bilinear, lanczos3, lanczos4 or lanczos5 [warpingKernelName].",
    )
    interp_length: int = config_field(
        10, doc="Exact pixel transform every this many pixels, interpolated between [interpLength]."
    )
    grow_mask_planes: tuple[str, ...] = config_field(
        ("EDGE", "BAD", "SAT", "CR"),
        doc="Mask planes grown over the whole kernel footprint [growFullMask]. LSST grows "
        "only NO_DATA because its calexps are interpolated under defects; here BAD, SAT and "
        "CR pixels may hold raw values, and growing them masks every pixel their value "
        "reaches through the kernel's side lobes, so no ringing enters a coadd unmasked.",
    )

    def validate(self) -> None:
        self.check(
            self.kernel in ("bilinear", "lanczos3", "lanczos4", "lanczos5"),
            "kernel",
            "must be bilinear, lanczos3, lanczos4 or lanczos5",
        )
        self.check(self.interp_length >= 1, "interp_length", "must be >= 1")
        self.check(
            all(isinstance(p, str) and p for p in self.grow_mask_planes),
            "grow_mask_planes",
            "must be mask plane names",
        )


@dataclass(frozen=True)
class MakeWarpConfig(Config):
    """Configuration of :class:`MakeWarpTask` (LSST names in brackets)."""

    warper: WarperConfig = config_field(doc="Resampling.", factory=WarperConfig)
    make_direct: bool = config_field(True, doc="Make the direct warp [makeDirect].")
    make_psf_matched: bool = config_field(
        False, doc="Also make a warp PSF-matched to the model PSF [makePsfMatched]."
    )
    model_psf: ModelPsfConfig = config_field(
        doc="Model PSF of the PSF-matched warp, in patch pixels [modelPsf].",
        factory=ModelPsfConfig,
    )
    psf_match: ModelPsfMatchConfig = config_field(
        doc="Matching each calexp to the model [psfMatch].", factory=ModelPsfMatchConfig
    )
    border: int = config_field(
        0, doc="Pixels added around the target box (a patch's outer box) on every side."
    )
    apply_sky_corr: bool = config_field(
        False, doc="Subtract each calexp's sky correction before warping [doApplySkyCorr]."
    )
    add_back_background: bool = config_field(
        False,
        doc="Add each calexp's subtracted background back before warping (warps that keep "
        "the sky, for background matching) [bgSubtracted=False].",
    )

    def validate(self) -> None:
        self.check(self.make_direct or self.make_psf_matched, "make_direct", "or make_psf_matched")
        self.check(self.border >= 0, "border", "must be >= 0")


@dataclass(frozen=True)
class MakeWarpResult(TaskResult):
    """Result of :meth:`MakeWarpTask.run`.

    Attributes
    ----------
    direct : Exposure or None
        The direct warp (nJy, ``CoaddPsf``), or None when not made or without
        any good pixel [direct].
    psf_matched : Exposure or None
        The PSF-matched warp (nJy, the model PSF), or None [psfMatched].
    inputs : astropy.table.Table
        One row per calexp: ``visit``, ``detector``, ``n_pixels`` (good
        pixels it gave the direct warp), ``psf_matched`` (whether it is in
        the PSF-matched warp) and ``reason`` (why not, if not).
    """

    direct: Exposure | None
    psf_matched: Exposure | None
    inputs: Table


class MakeWarpTask(Task):
    """Warp the calexps of one visit onto a patch and merge the detectors.

    Each calexp overlapping the target box is calibrated to nJy (after the
    optional sky correction or background add-back), resampled onto the
    overlap with the Lanczos warper, and merged: later detectors fill only
    pixels that are still NO_DATA. With ``make_psf_matched`` each calexp is
    first convolved to the model PSF (carried to its own grid) by
    :class:`~skydiff.diffim.ModelPsfMatchTask`; a calexp whose PSF is wider
    than the model is left out of that warp, with the reason recorded.
    """

    ConfigClass = MakeWarpConfig
    config: MakeWarpConfig

    def __init__(self, config: MakeWarpConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.make_subtask("psf_match", ModelPsfMatchTask, self.config.psf_match)

    def run(
        self,
        calexps: Sequence[Exposure],
        wcs: WCS,
        bbox: Box,
        *,
        backgrounds: Sequence[BackgroundList | None] | None = None,
        sky_corrections: Sequence[BackgroundList | None] | None = None,
    ) -> MakeWarpResult:
        """Warp ``calexps`` (one visit) onto ``bbox`` (grown by ``border``) of ``wcs``.

        Parameters
        ----------
        calexps : sequence of Exposure
            Calibrated exposures of one visit, with WCS, PSF and PhotoCalib
            (or already in nJy).
        wcs : astropy.wcs.WCS
            The tract's WCS.
        bbox : Box
            Target box in tract pixels, usually a patch's outer box.
        backgrounds, sky_corrections : sequence, optional
            Per calexp, the subtracted background (added back when
            ``add_back_background``) and the sky correction (subtracted when
            ``apply_sky_corr``); None entries are skipped.
        """
        calexps = list(calexps)
        visit_info = _check_inputs(calexps, backgrounds, sky_corrections, self.config)
        bbox = bbox.grown(self.config.border)
        metadata = self.new_metadata()
        c = self.config
        model = c.model_psf.make()
        direct = MaskedImage.no_data(bbox) if c.make_direct else None
        matched = MaskedImage.no_data(bbox) if c.make_psf_matched else None
        rows, psf_inputs = [], []
        for i, calexp in enumerate(calexps):
            overlap = overlap_box(calexp.bbox, calexp.wcs, wcs, bbox)
            if overlap.is_empty:
                continue
            with self.timer("prepare", metadata):
                calibrated = self._prepared(calexp, i, backgrounds, sky_corrections)
            row = {"visit": _visit(calexp), "detector": _detector(calexp), "n_pixels": 0}
            if direct is not None:
                with self.timer("warp", metadata):
                    warped = self._warp(calibrated, wcs, overlap)
                row["n_pixels"] = direct.fill_no_data(warped.masked_image)
                psf_inputs.append(_psf_input(calexp))
            row["psf_matched"], row["reason"] = False, ""
            if matched is not None:
                row["psf_matched"], row["reason"] = self._add_matched(
                    matched, calibrated, model, wcs, overlap, metadata
                )
            rows.append(row)
        inputs = _inputs_table(rows)
        metadata.add("n_inputs", len(rows))
        common = {"band": calexps[0].band, "physical_filter": calexps[0].physical_filter}
        common["visit_info"] = visit_info
        return MakeWarpResult(
            direct=_finished(
                direct, wcs, CoaddPsf(psf_inputs, wcs) if psf_inputs else None, common
            ),
            psf_matched=_finished(matched, wcs, model, common),
            inputs=inputs,
            metadata=metadata,
        )

    def run_on_patch(self, calexps: Sequence[Exposure], tract, patch, **kwargs) -> MakeWarpResult:
        """:meth:`run` onto a sky-map patch's outer box (``tract.wcs``, ``patch.outer_bbox``)."""
        return self.run(calexps, tract.wcs, patch.outer_bbox, **kwargs)

    def _prepared(self, calexp: Exposure, i: int, backgrounds, sky_corrections) -> Exposure:
        """The calexp in nJy with its background added back / sky correction applied."""
        exposure = calexp
        c = self.config
        extra = np.zeros(calexp.bbox.shape, np.float32)
        if c.add_back_background and backgrounds is not None and backgrounds[i] is not None:
            extra += backgrounds[i].evaluate(calexp.bbox)
        if c.apply_sky_corr and sky_corrections is not None and sky_corrections[i] is not None:
            extra -= sky_corrections[i].evaluate(calexp.bbox)
        if extra.any():
            masked = calexp.masked_image.copy()
            masked.image += extra
            exposure = calexp.replace(masked_image=masked)
        return exposure.calibrated() if exposure.units != "nJy" else exposure

    def _warp(self, exposure: Exposure, wcs: WCS, bbox: Box) -> Exposure:
        w = self.config.warper
        return warp_exposure(
            exposure,
            wcs,
            bbox,
            kernel=w.kernel,
            interp_length=w.interp_length,
            grow_planes=w.grow_mask_planes,
        )

    def _add_matched(self, target, calibrated, model, wcs, overlap, metadata: TaskMetadata):
        """PSF-match, warp and merge one calexp; (included, reason)."""
        try:
            with self.timer("psf_match", metadata):
                result = self.psf_match.run(calibrated, model, model_wcs=wcs)
        except AlgorithmError as error:
            log.warning("%s left out of the PSF-matched warp: %s", calibrated.describe(), error)
            return False, str(error)
        with self.timer("warp", metadata):
            warped = self._warp(result.psf_matched_exposure, wcs, overlap)
        target.fill_no_data(warped.masked_image)
        return True, ""


def _check_inputs(calexps, backgrounds, sky_corrections, config: MakeWarpConfig) -> VisitInfo:
    if not calexps:
        raise InvalidParameterError("calexps is empty: a warp needs at least one calexp")
    for name, values in (("backgrounds", backgrounds), ("sky_corrections", sky_corrections)):
        if values is not None and len(values) != len(calexps):
            raise InvalidParameterError(
                f"{name} has {len(values)} entries for {len(calexps)} calexps"
            )
    visits = {_visit(e) for e in calexps}
    if len(visits) > 1:
        raise InvalidParameterError(f"calexps of one warp must share a visit, got {sorted(visits)}")
    for exposure in calexps:
        if exposure.wcs is None:
            raise InvalidExposureError(f"calexp {exposure.describe()} has no WCS")
        if exposure.psf is None and config.make_direct:
            raise InvalidExposureError(f"calexp {exposure.describe()} has no PSF")
        if exposure.units != "nJy" and exposure.photo_calib is None:
            raise InvalidExposureError(
                f"calexp {exposure.describe()} is in counts and has no PhotoCalib"
            )
    info = calexps[0].visit_info
    return dataclasses.replace(info, detector=None) if info is not None else None


def _visit(exposure: Exposure) -> int:
    info = exposure.visit_info
    return -1 if info is None or info.visit is None else int(info.visit)


def _detector(exposure: Exposure) -> int:
    info = exposure.visit_info
    return -1 if info is None or info.detector is None else int(info.detector)


def _psf_input(calexp: Exposure) -> CoaddPsfInput:
    return CoaddPsfInput(
        calexp.psf, calexp.wcs, calexp.bbox, 1.0, _visit(calexp), _detector(calexp)
    )


def _finished(masked: MaskedImage | None, wcs: WCS, psf, common: dict) -> Exposure | None:
    """The merged warp as an Exposure, or None when it has no good pixel."""
    if masked is None or masked.mask.get("NO_DATA").all():
        return None
    return Exposure(masked, wcs=wcs, psf=psf, units="nJy", **common)


def _inputs_table(rows: list[dict]) -> Table:
    names = ("visit", "detector", "n_pixels", "psf_matched", "reason")
    dtypes = (np.int64, np.int64, np.int64, bool, str)
    if not rows:
        return Table(names=names, dtype=dtypes)
    return Table(rows=[[r[n] for n in names] for r in rows], names=names, dtype=dtypes)
