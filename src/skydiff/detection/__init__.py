"""Source detection and measurement."""

from ._footprints import Footprints, detect_footprints
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
    "detect_footprints",
]
