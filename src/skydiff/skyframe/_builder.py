"""SkyFrameBuilderTask: the sky frame of one detector from many of its exposures.

After LSST cp_pipe's ``CpSkyImageTask`` / ``CpSkyScaleMeasureTask`` /
``CpSkyCombineTask``: objects are masked, each exposure is binned and divided
by its sky level, and the normalised bins are averaged with clipping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..background import BackgroundList, BackgroundModel
from ..errors import AlgorithmError, InvalidParameterError
from ..image import Exposure, MaskedImage, VisitInfo
from ..math import clipped_stats
from ..task import Config, Task, TaskMetadata, TaskResult, config_field
from ._mask_objects import MaskObjectsConfig, MaskObjectsTask
from ._measure import SkyMeasurementConfig, SkyMeasurementTask

__all__ = ["SkyFrameBuilderConfig", "SkyFrameBuilderResult", "SkyFrameBuilderTask", "sky_level"]


@dataclass(frozen=True)
class SkyFrameBuilderConfig(Config):
    """Configuration of :class:`SkyFrameBuilderTask`."""

    sky: SkyMeasurementConfig = config_field(
        doc="Binning and averaging of the sky frame.", factory=SkyMeasurementConfig
    )
    do_mask_objects: bool = config_field(
        True, doc="Detect objects before binning; else trust the inputs' DETECTED planes."
    )
    mask_objects: MaskObjectsConfig = config_field(
        doc="Object masking [maskObjects].", factory=MaskObjectsConfig
    )
    min_inputs: int = config_field(
        1, doc="Fewest exposures accepted (three or more let the average reject outliers)."
    )

    def validate(self) -> None:
        self.check(self.min_inputs >= 1, "min_inputs", "must be >= 1")


@dataclass(frozen=True)
class SkyFrameBuilderResult(TaskResult):
    """Result of :meth:`SkyFrameBuilderTask.run`.

    Attributes
    ----------
    sky_frame : BackgroundModel
        The normalised sky frame (mean bin value ~1).
    exposure : Exposure
        The same, in its persisted form (:meth:`SkyMeasurementTask.background_to_exposure`).
    levels : tuple of float
        Sky level each input was divided by, in its units.
    """

    sky_frame: BackgroundModel
    exposure: Exposure
    levels: tuple[float, ...]


def sky_level(model: BackgroundModel) -> float:
    """Clipped mean of the measured bins of ``model``: an exposure's sky level.

    Raises
    ------
    AlgorithmError
        If the model has no finite bin or a level that is not positive.
    """
    values = model.values[np.isfinite(model.values)]
    level = clipped_stats(values).mean if values.size else np.nan
    if not level > 0:
        raise AlgorithmError(
            f"the sky level of {model.bbox} is {level}: a sky frame needs exposures with sky"
        )
    return float(level)


def _check_exposures(exposures: Sequence[Exposure], backgrounds, levels, minimum: int) -> None:
    if len(exposures) < max(minimum, 1):
        raise InvalidParameterError(
            f"exposures has {len(exposures)} entries; a sky frame needs at least {max(minimum, 1)}"
        )
    for name, values in (("backgrounds", backgrounds), ("levels", levels)):
        if values is not None and len(values) != len(exposures):
            raise InvalidParameterError(
                f"{name} has {len(values)} entries for {len(exposures)} exposures"
            )
    first = exposures[0]
    for i, exposure in enumerate(exposures[1:], start=1):
        if exposure.bbox != first.bbox:
            raise InvalidParameterError(
                f"exposures[{i}] ({exposure.describe()}) has a different box than exposures[0] "
                f"({first.bbox}): a sky frame is built from exposures of one detector"
            )
        if exposure.visit_info.detector != first.visit_info.detector:
            raise InvalidParameterError(
                f"exposures[{i}] is of detector {exposure.visit_info.detector}, exposures[0] of "
                f"detector {first.visit_info.detector}: a sky frame is built per detector"
            )


class SkyFrameBuilderTask(Task):
    """Build one detector's sky frame from many of its exposures.

    Each exposure (its subtracted background added back when given) has its
    objects masked (:class:`MaskObjectsTask`), is binned with
    :meth:`SkyMeasurementTask.measure_background` and divided by its sky
    level (:func:`sky_level`, or the ``levels`` given, e.g. the focal-plane
    level of each visit, which keeps the detectors' relative response). The
    normalised models are averaged with :meth:`SkyMeasurementTask.average_backgrounds`.
    """

    ConfigClass = SkyFrameBuilderConfig
    _DefaultName = "sky_frame_builder"
    config: SkyFrameBuilderConfig

    def __init__(self, config: SkyFrameBuilderConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.make_subtask("sky", SkyMeasurementTask, self.config.sky)
        self.make_subtask("mask_objects", MaskObjectsTask, self.config.mask_objects)

    def run(
        self,
        exposures: Sequence[Exposure],
        *,
        backgrounds: Sequence[BackgroundList | None] | None = None,
        levels: Sequence[float] | None = None,
    ) -> SkyFrameBuilderResult:
        """The sky frame of the detector of ``exposures``.

        Parameters
        ----------
        exposures : sequence of Exposure
            Exposures of one detector (one box), taken in many pointings so
            that objects move between them.
        backgrounds : sequence of BackgroundList or None, optional
            Per exposure, the background subtracted from it, to be restored.
        levels : sequence of float, optional
            Per exposure, the sky level to divide by (default: measured).

        Raises
        ------
        InvalidParameterError
            If there are too few exposures, they differ in box or detector,
            or ``backgrounds``/``levels`` differ in length.
        """
        exposures = list(exposures)
        _check_exposures(exposures, backgrounds, levels, self.config.min_inputs)
        metadata = self.new_metadata()
        models, used_levels = [], []
        for i, exposure in enumerate(exposures):
            model = self._binned(exposure, backgrounds[i] if backgrounds else None, metadata)
            level = sky_level(model) if levels is None else float(levels[i])
            if not (np.isfinite(level) and level > 0):
                raise InvalidParameterError(f"levels[{i}] must be finite and > 0, got {level!r}")
            models.append(model.scaled(1.0 / level))
            used_levels.append(level)
        with self.timer("average", metadata):
            frame = self.sky.average_backgrounds(models)
        self._record(metadata, frame, used_levels)
        first = exposures[0]
        return SkyFrameBuilderResult(
            sky_frame=frame,
            exposure=self.sky.background_to_exposure(
                frame,
                visit_info=VisitInfo(
                    detector=first.visit_info.detector, instrument=first.visit_info.instrument
                ),
                band=first.band,
                physical_filter=first.physical_filter,
            ),
            levels=tuple(used_levels),
            metadata=metadata,
        )

    def _binned(
        self, exposure: Exposure, background: BackgroundList | None, metadata: TaskMetadata
    ) -> BackgroundModel:
        """Binned sky of one exposure, objects masked, background restored."""
        masked = exposure.masked_image
        image = masked.image
        if background is not None and len(background):
            image = image + background.evaluate(masked.bbox)
        mask = masked.mask
        if self.config.do_mask_objects:
            with self.timer("mask_objects", metadata):
                work = MaskedImage(image, mask, masked.variance, bbox=masked.bbox)
                mask = self.mask_objects.run(work).mask
        with self.timer("measure_background", metadata):
            work = MaskedImage(image, mask, masked.variance, bbox=masked.bbox)
            return self.sky.measure_background(work)

    def _record(self, metadata: TaskMetadata, frame: BackgroundModel, levels: list[float]) -> None:
        finite = frame.values[np.isfinite(frame.values)]
        metadata.add("n_inputs", len(levels))
        metadata.add("level_min", min(levels))
        metadata.add("level_max", max(levels))
        metadata.add("n_bins", int(frame.values.size))
        metadata.add("n_empty_bins", int(frame.values.size - finite.size))
        metadata.add("frame_mean", float(finite.mean()) if finite.size else float("nan"))
        metadata.add("frame_rms", float(finite.std()) if finite.size else float("nan"))
        self.log.info(
            "sky frame of %s from %d exposures: mean %.4f, rms %.4f",
            frame.bbox,
            len(levels),
            metadata["frame_mean"],
            metadata["frame_rms"],
        )
