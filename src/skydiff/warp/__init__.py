"""Warping images onto another WCS: Lanczos and bilinear kernels, transform grids.

``warp_exposure`` is LSST afw's ``warpExposure``; ``kernel`` is its
``warpingKernelName``, ``interp_length`` its ``interpLength`` and
``grow_planes`` its ``growFullMask``.
"""

from ._core import footprint_flags, warp_arrays
from ._exposure import overlap_box, warp_exposure, warp_masked_image
from ._lanczos import (
    KERNELS,
    TABLE_RESOLUTION,
    kernel_half_width,
    kernel_taps,
    kernel_weight_table,
)
from ._transform import (
    GRID_INTERPOLATIONS,
    CoordinateGrid,
    destination_to_source,
    interpolation_error,
    make_coordinate_grid,
)

__all__ = [
    "GRID_INTERPOLATIONS",
    "KERNELS",
    "TABLE_RESOLUTION",
    "CoordinateGrid",
    "destination_to_source",
    "footprint_flags",
    "interpolation_error",
    "kernel_half_width",
    "kernel_taps",
    "kernel_weight_table",
    "make_coordinate_grid",
    "overlap_box",
    "warp_arrays",
    "warp_exposure",
    "warp_masked_image",
]
