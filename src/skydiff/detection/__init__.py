"""Source detection and measurement."""

from ._footprints import Footprints, detect_footprints
from ._measure import aperture_fluxes, peak_centroids, psf_fluxes, stamp_moments
from ._task import (
    DetectionResult,
    MeasurementResult,
    SourceDetectionConfig,
    SourceDetectionTask,
    SourceMeasurementConfig,
    SourceMeasurementTask,
)

__all__ = [
    "DetectionResult",
    "Footprints",
    "MeasurementResult",
    "SourceDetectionConfig",
    "SourceDetectionTask",
    "SourceMeasurementConfig",
    "SourceMeasurementTask",
    "aperture_fluxes",
    "detect_footprints",
    "peak_centroids",
    "psf_fluxes",
    "stamp_moments",
]
