"""skydiff: survey difference imaging after the LSST Science Pipelines, without the stack."""

__version__ = "0.1.0"

from .errors import (
    BadSubtractionError,
    InsufficientSourcesError,
    InvalidExposureError,
    InvalidParameterError,
    NoWorkFound,
    SkydiffError,
)
from .image import Box, Exposure, Mask, MaskedImage, PhotoCalib, VisitInfo
from .io import read_any, read_exposure, read_image, write_exposure

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
