"""Image data model: boxes, masks, masked images and exposures."""

from ._box import Box
from ._exposure import Exposure
from ._mask import MAX_MASK_PLANES, STANDARD_MASK_PLANES, Mask
from ._masked_image import MaskedImage
from ._photo_calib import AB_ZERO_POINT_NJY, PhotoCalib
from ._statistics import Statistics, statistics
from ._visit_info import VisitInfo
from ._wcs import (
    grid_offset,
    pixel_scale,
    pixel_to_sky,
    shifted_wcs,
    sky_to_pixel,
    validate_celestial_wcs,
)

__all__ = [
    "AB_ZERO_POINT_NJY",
    "MAX_MASK_PLANES",
    "STANDARD_MASK_PLANES",
    "Box",
    "Exposure",
    "Mask",
    "MaskedImage",
    "PhotoCalib",
    "Statistics",
    "VisitInfo",
    "grid_offset",
    "pixel_scale",
    "pixel_to_sky",
    "shifted_wcs",
    "sky_to_pixel",
    "statistics",
    "validate_celestial_wcs",
]
