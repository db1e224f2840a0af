"""Background models: binned statistics, interpolation or Chebyshev approximation."""

from ._model import DEFAULT_BACKGROUND_BAD_PLANES, BackgroundList, BackgroundModel
from ._task import SubtractBackgroundConfig, SubtractBackgroundResult, SubtractBackgroundTask

__all__ = [
    "DEFAULT_BACKGROUND_BAD_PLANES",
    "BackgroundList",
    "BackgroundModel",
    "SubtractBackgroundConfig",
    "SubtractBackgroundResult",
    "SubtractBackgroundTask",
]
