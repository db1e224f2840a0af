"""SkyCorrectionTask: sky frame and focal-plane background of a visit (LSST SkyCorrectionTask)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..background import BackgroundList, BackgroundModel
from ..errors import InvalidParameterError
from ..image import Exposure, MaskedImage
from ..task import Config, Task, TaskMetadata, TaskResult, config_field
from ._focal_plane import (
    FocalPlaneBackground,
    FocalPlaneBackgroundConfig,
    Origins,
    detector_offsets,
)
from ._mask_objects import MaskObjectsConfig, MaskObjectsTask
from ._measure import SkyMeasurementConfig, SkyMeasurementTask
from ._persist import exposure_to_background

__all__ = ["SkyCorrectionConfig", "SkyCorrectionResult", "SkyCorrectionTask"]

SkyFrames = Sequence[BackgroundModel | Exposure] | Mapping[int, BackgroundModel | Exposure]


@dataclass(frozen=True)
class SkyCorrectionConfig(Config):
    """Configuration of :class:`SkyCorrectionTask` (LSST names in brackets)."""

    sky: SkyMeasurementConfig = config_field(
        doc="Sky frame scaling [sky].", factory=SkyMeasurementConfig
    )
    do_sky: bool = config_field(True, doc="Subtract the scaled sky frame, if given [doSky].")
    bg_model: FocalPlaneBackgroundConfig = config_field(
        doc="Focal-plane background fitted after the sky frame [bgModel2].",
        factory=FocalPlaneBackgroundConfig,
    )
    do_bg_model: bool = config_field(
        True, doc="Fit and subtract the focal-plane background [doBgModel2]."
    )
    do_mask_objects: bool = config_field(
        True, doc="Detect objects before measuring; else trust the DETECTED planes [doMaskObjects]."
    )
    mask_objects: MaskObjectsConfig = config_field(
        doc="Object masking [maskObjects].", factory=MaskObjectsConfig
    )


@dataclass(frozen=True)
class SkyCorrectionResult(TaskResult):
    """Result of :meth:`SkyCorrectionTask.run`.

    Attributes
    ----------
    sky_corrections : tuple of BackgroundList
        Per calexp, in input order [skyCorr]: the inverted input background
        (when given), the scaled sky frame and the focal-plane background.
        ``calexp - sky_correction`` is the sky-corrected calexp, which is
        what :class:`~skydiff.coadd.MakeWarpTask` computes with ``apply_sky_corr``.
    calexps : tuple of Exposure
        The sky-corrected calexps (copies; mask and variance as the inputs').
    scale : float
        Factor applied to the sky frames [skyFrameScale]; NaN when no sky
        frame was subtracted.
    focal_plane_background : FocalPlaneBackground or None
        The focal-plane model, or None when ``do_bg_model`` is False.
    """

    sky_corrections: tuple[BackgroundList, ...]
    calexps: tuple[Exposure, ...]
    scale: float
    focal_plane_background: FocalPlaneBackground | None


def _check_lengths(calexps: list[Exposure], sky_frames, backgrounds) -> None:
    if not calexps:
        raise InvalidParameterError("calexps is empty: a sky correction needs at least one calexp")
    for name, values in (("sky_frames", sky_frames), ("backgrounds", backgrounds)):
        if values is not None and not isinstance(values, Mapping) and len(values) != len(calexps):
            raise InvalidParameterError(
                f"{name} has {len(values)} entries for {len(calexps)} calexps"
            )


def _frame_for(sky_frames: SkyFrames, index: int, calexp: Exposure) -> BackgroundModel:
    """The sky frame of ``calexps[index]`` (by position, or by detector for a mapping)."""
    if isinstance(sky_frames, Mapping):
        detector = calexp.visit_info.detector
        if detector not in sky_frames:
            raise InvalidParameterError(
                f"sky_frames has no frame for detector {detector} ({calexp.describe()})"
            )
        frame = sky_frames[detector]
    else:
        frame = sky_frames[index]
    return exposure_to_background(frame) if isinstance(frame, Exposure) else frame


class SkyCorrectionTask(Task):
    """Correct the sky of a whole visit (LSST ``SkyCorrectionTask``).

    For each calexp the subtracted background is restored and objects are
    masked. A sky frame per detector is then scaled to the visit with one
    factor fitted over all detectors (:meth:`SkyMeasurementTask.solve_scales`)
    and subtracted; the remaining smooth sky is fitted by a
    :class:`FocalPlaneBackground` binned across all detectors, so that
    large structures (moonlight, scattered light) are continuous across
    the chip gaps, and subtracted. The sky frame comes first because its
    scale is only measurable while the sky level is still in the image.

    Nothing is modified in place: results are new lists and copies.
    """

    ConfigClass = SkyCorrectionConfig
    _DefaultName = "sky_correction"
    config: SkyCorrectionConfig

    def __init__(self, config: SkyCorrectionConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.make_subtask("sky", SkyMeasurementTask, self.config.sky)
        self.make_subtask("mask_objects", MaskObjectsTask, self.config.mask_objects)

    def run(
        self,
        calexps: Sequence[Exposure],
        origins: Origins | None,
        *,
        sky_frames: SkyFrames | None = None,
        backgrounds: Sequence[BackgroundList | None] | None = None,
    ) -> SkyCorrectionResult:
        """Sky corrections and sky-corrected copies of the calexps of one visit.

        Parameters
        ----------
        calexps : sequence of Exposure
            The visit's calexps, each with ``visit_info.detector`` set.
        origins : mapping or DetectorLayout or None
            Focal-plane pixel position of each detector's parent pixel
            ``(0, 0)``: a mapping ``detector -> (x0, y0)`` or an object with
            a ``detector_origin(detector)`` method such as
            :class:`skydiff.sim.Camera`. None only for a single calexp.
        sky_frames : sequence or mapping, optional
            Sky frame (BackgroundModel, or its Exposure form) per calexp, by
            position or by detector. Without it no sky frame is subtracted.
        backgrounds : sequence of BackgroundList or None, optional
            Background subtracted from each calexp, restored before measuring.

        Returns
        -------
        SkyCorrectionResult
            ``sky_corrections``, ``calexps`` (corrected), ``scale``,
            ``focal_plane_background`` and ``metadata``.
        """
        calexps = list(calexps)
        _check_lengths(calexps, sky_frames, backgrounds)
        offsets = detector_offsets(calexps, origins)
        metadata = self.new_metadata()
        metadata.add("n_detectors", len(calexps))
        works, corrections = [], []
        for i, calexp in enumerate(calexps):
            work, correction = self._restored(calexp, backgrounds[i] if backgrounds else None)
            if self.config.do_mask_objects:
                with self.timer("mask_objects", metadata):
                    work.mask = self.mask_objects.run(work).mask
            works.append(work)
            corrections.append(correction)
        scale = float("nan")
        if sky_frames is None or not self.config.do_sky:
            self.log.info("no sky frame subtracted (sky_frames given: %s)", sky_frames is not None)
        else:
            frames = [_frame_for(sky_frames, i, c) for i, c in enumerate(calexps)]
            with self.timer("sky_frame", metadata):
                scale, corrections = self._subtract_sky_frames(works, frames, corrections, metadata)
        focal_plane = None
        if self.config.do_bg_model:
            with self.timer("bg_model", metadata):
                focal_plane, corrections = self._subtract_focal_plane(
                    works, offsets, corrections, metadata
                )
        corrected = tuple(_corrected(c, w) for c, w in zip(calexps, works, strict=True))
        return SkyCorrectionResult(
            sky_corrections=tuple(corrections),
            calexps=corrected,
            scale=scale,
            focal_plane_background=focal_plane,
            metadata=metadata,
        )

    @staticmethod
    def _restored(
        calexp: Exposure, background: BackgroundList | None
    ) -> tuple[MaskedImage, BackgroundList]:
        """A working copy with the background restored, and the inverted background list."""
        masked = calexp.masked_image
        image = masked.image.copy()
        correction = BackgroundList()
        if background is not None and len(background):
            image += background.evaluate(masked.bbox)
            correction = BackgroundList(tuple(model.scaled(-1.0) for model in background))
        return MaskedImage(image, masked.mask, masked.variance, bbox=masked.bbox), correction

    def _subtract_sky_frames(
        self,
        works: list[MaskedImage],
        frames: list[BackgroundModel],
        corrections: list[BackgroundList],
        metadata: TaskMetadata,
    ) -> tuple[float, list[BackgroundList]]:
        samples = [self.sky.measure_scale(w, f) for w, f in zip(works, frames, strict=True)]
        fit = self.sky.fit_scales(samples)
        metadata.add("sky_frame_scale", fit.scale)
        metadata.add("n_scale_samples", fit.n_samples)
        metadata.add("n_scale_samples_used", fit.n_used)
        metadata.add("scale_residual_sigma", fit.residual_sigma)
        self.log.info("sky frame scale %.5g from %d samples", fit.scale, fit.n_used)
        updated = [
            self.sky.subtract_sky_frame_in_place(w, f, fit.scale, c)
            for w, f, c in zip(works, frames, corrections, strict=True)
        ]
        return fit.scale, updated

    def _subtract_focal_plane(
        self,
        works: list[MaskedImage],
        offsets: list[tuple[int, int]],
        corrections: list[BackgroundList],
        metadata: TaskMetadata,
    ) -> tuple[FocalPlaneBackground, list[BackgroundList]]:
        focal_plane = FocalPlaneBackground.measure(works, offsets, config=self.config.bg_model)
        updated = []
        for work, offset, correction in zip(works, offsets, corrections, strict=True):
            model = focal_plane.to_detector(work.bbox, offset)
            work.image -= model.evaluate(work.bbox)
            updated.append(correction.appended(model))
        values = focal_plane.model.values
        metadata.add("bg_model_n_bins", int(values.size))
        metadata.add("bg_model_n_empty_bins", focal_plane.n_empty_bins)
        metadata.add("bg_model_mean", float(np.nanmean(values)))
        metadata.add("bg_model_range", float(np.nanmax(values) - np.nanmin(values)))
        return focal_plane, updated


def _corrected(calexp: Exposure, work: MaskedImage) -> Exposure:
    """``calexp`` with the corrected pixels, its own mask and variance (copied)."""
    masked = MaskedImage(work.image, calexp.mask.copy(), calexp.variance.copy(), bbox=calexp.bbox)
    return calexp.replace(masked_image=masked)
