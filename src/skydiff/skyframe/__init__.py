"""Sky frames and focal-plane sky correction (LSST ``SkyMeasurementTask``, ``SkyCorrectionTask``).

A *sky frame* is a detector's binned response to the night sky, averaged
over many exposures with objects masked and each exposure normalised by its
sky level (:class:`SkyFrameBuilderTask`). For a visit,
:class:`SkyCorrectionTask` scales the sky frames of all its detectors with
one factor, subtracts them, and fits what is left with a background binned
on the focal plane across the chip gaps (:class:`FocalPlaneBackground`).
Its ``sky_corrections`` are what :class:`skydiff.coadd.MakeWarpTask`
subtracts with ``apply_sky_corr``.

Examples
--------
>>> from skydiff.skyframe import SkyCorrectionTask, SkyFrameBuilderTask
>>> frame = SkyFrameBuilderTask().run(exposures_of_detector_0).sky_frame  # doctest: +SKIP
>>> result = SkyCorrectionTask().run(calexps, camera, sky_frames=frames)  # doctest: +SKIP
>>> result.scale, result.sky_corrections[0]  # doctest: +SKIP
"""

from ._builder import SkyFrameBuilderConfig, SkyFrameBuilderResult, SkyFrameBuilderTask, sky_level
from ._correction import SkyCorrectionConfig, SkyCorrectionResult, SkyCorrectionTask
from ._focal_plane import (
    DetectorLayout,
    FocalPlaneBackground,
    FocalPlaneBackgroundConfig,
    detector_offsets,
)
from ._mask_objects import MaskObjectsConfig, MaskObjectsResult, MaskObjectsTask
from ._measure import (
    SkyBackgroundConfig,
    SkyMeasurementConfig,
    SkyMeasurementTask,
    SkyStatsConfig,
)
from ._persist import background_to_exposure, exposure_to_background
from ._scale import ScaleFit, ScaleSamples, sample_grid, solve_scale

__all__ = [
    "DetectorLayout",
    "FocalPlaneBackground",
    "FocalPlaneBackgroundConfig",
    "MaskObjectsConfig",
    "MaskObjectsResult",
    "MaskObjectsTask",
    "ScaleFit",
    "ScaleSamples",
    "SkyBackgroundConfig",
    "SkyCorrectionConfig",
    "SkyCorrectionResult",
    "SkyCorrectionTask",
    "SkyFrameBuilderConfig",
    "SkyFrameBuilderResult",
    "SkyFrameBuilderTask",
    "SkyMeasurementConfig",
    "SkyMeasurementTask",
    "SkyStatsConfig",
    "background_to_exposure",
    "detector_offsets",
    "exposure_to_background",
    "sample_grid",
    "sky_level",
    "solve_scale",
]
