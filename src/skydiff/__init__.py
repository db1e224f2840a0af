"""skydiff: survey difference imaging after the LSST Science Pipelines, without the stack."""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BadSubtractionError,
    InsufficientSourcesError,
    InvalidExposureError,
    InvalidParameterError,
    NoWorkFound,
    SkydiffError,
)
from .image import Box, Exposure, Mask, MaskedImage, PhotoCalib, VisitInfo  # noqa: E402
from .io import read_any, read_exposure, read_image, write_exposure  # noqa: E402

__all__ = [
    "BadSubtractionError",
    "Box",
    "Exposure",
    "InsufficientSourcesError",
    "InvalidExposureError",
    "InvalidParameterError",
    "Mask",
    "MaskedImage",
    "NoWorkFound",
    "PhotoCalib",
    "SkydiffError",
    "VisitInfo",
    "__version__",
    "read_any",
    "read_exposure",
    "read_image",
    "write_exposure",
]
