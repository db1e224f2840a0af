"""Pixel layout of tracts: bounding box, patch counts and reference pixel (vectorised).

A tract's pixel box is the LSST one (``ExplicitTractInfo`` with the legacy tract
builder): the box holding the square of half-size ``radius + tract_overlap``
about the centre, grown to a whole number of patches while keeping the centre
in place, then shifted so that its first pixel is ``(0, 0)``. Where that box
does not hold the tract's inner region grown by half the overlap (a region
that is not a square, such as the RA/Dec box of a rings tract, can reach past
the square's corners), the box is built around the union of the square and
the grown region instead. For LSST's production configurations every box is
the LSST one, so tract pixel grids agree with LSST's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import InvalidParameterError
from ._config import SkyMapConfig
from ._region import RaDecBox, SkyCircle
from ._sphere import native_radius, plane_radius, project
from ._tract import TractInfo

__all__ = ["TractLayouts", "grown_boundaries", "layout_tracts", "make_tract"]

_POINTS_PER_EDGE = 16


class TractLayouts(NamedTuple):
    """Pixel layouts of ``T`` tracts, one entry per tract."""

    crpix: np.ndarray
    """``(T, 2)`` 0-based pixel ``(x, y)`` of the tract centre."""
    num_patches: np.ndarray
    """``(T, 2)`` number of patches in x and y."""
    circumradius: np.ndarray
    """``(T,)`` largest distance (degrees) from the centre to a corner of the tract box."""


def layout_tracts(
    center_ra: np.ndarray,
    center_dec: np.ndarray,
    boundary_ra: np.ndarray,
    boundary_dec: np.ndarray,
    radius: np.ndarray,
    config: SkyMapConfig,
) -> TractLayouts:
    """Lay out ``T`` tracts from their centres, inner-region boundaries and radii.

    Parameters
    ----------
    center_ra, center_dec : array of shape (T,)
        Tract centres (the WCS reference points), degrees.
    boundary_ra, boundary_dec : array of shape (T, M)
        Points on the boundary of each tract's inner region grown by half the
        tract overlap, degrees.
    radius : array of shape (T,)
        Half-size of each tract's square before the overlap, degrees.
    config : SkyMapConfig
        Pixel scale, projection, patch size and tract overlap.

    Returns
    -------
    TractLayouts
        ``crpix``, ``num_patches`` and ``circumradius`` of every tract.
    """
    scale = config.pixel_scale / 3600.0
    half = plane_radius(np.asarray(radius) + config.tract_overlap, config.projection) / scale
    xi, eta = project(
        boundary_ra, boundary_dec, center_ra[:, None], center_dec[:, None], config.projection
    )
    if not (np.all(np.isfinite(xi)) and np.all(np.isfinite(half))):
        raise InvalidParameterError(
            f"a tract is too large for the {config.projection} projection; reduce its radius"
        )
    # pixel x runs opposite to RA (CD1_1 < 0), as in LSST's tract WCS
    px, py = -xi / scale, eta / scale
    square = np.stack([-half, -half], 1), np.stack([half, half], 1)
    first, num = _whole_patches(*square, config)
    region_low = np.stack([px.min(axis=1), py.min(axis=1)], 1)
    region_high = np.stack([px.max(axis=1), py.max(axis=1)], 1)
    size = num * np.asarray(config.patch_inner_dimensions)
    covered = np.all((region_low + 0.5 >= first) & (region_high + 0.5 <= first + size), axis=1)
    if not covered.all():
        union = np.minimum(square[0], region_low), np.maximum(square[1], region_high)
        first_union, num_union = _whole_patches(*union, config)
        first = np.where(covered[:, None], first, first_union)
        num = np.where(covered[:, None], num, num_union)
    crpix = -first.astype(float)
    size = num * np.asarray(config.patch_inner_dimensions)
    return TractLayouts(crpix, num, _circumradius(crpix, size, config))


def _whole_patches(
    low: np.ndarray, high: np.ndarray, config: SkyMapConfig
) -> tuple[np.ndarray, np.ndarray]:
    """First pixel and patch counts ``(T, 2)`` of boxes holding ``[low, high]``, centred.

    The pixels touched by the float box (LSST ``Box2I(Box2D)``, EXPAND), then
    grown on both sides (the extra odd pixel at the high end) to whole patches.
    """
    first = np.floor(low + 0.5).astype(np.int64)
    dims = np.ceil(high - 0.5).astype(np.int64) - first + 1
    inner = np.asarray(config.patch_inner_dimensions, dtype=np.int64)
    num = -(-dims // inner)
    return first - (num * inner - dims) // 2, num


def grown_boundaries(
    regions: list[RaDecBox] | list[SkyCircle], distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(ra, dec)`` arrays of shape ``(T, M)``: boundaries of the regions grown by ``distance``."""
    points = [region.grown(distance).boundary(_POINTS_PER_EDGE) for region in regions]
    if not points:
        return np.zeros((0, 4 * _POINTS_PER_EDGE)), np.zeros((0, 4 * _POINTS_PER_EDGE))
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def _circumradius(crpix: np.ndarray, size: np.ndarray, config: SkyMapConfig) -> np.ndarray:
    """Angle (degrees) from each centre to the farthest outer corner of its box."""
    far = np.maximum(np.abs(-0.5 - crpix), np.abs(size - 0.5 - crpix))
    r_plane = np.hypot(far[:, 0], far[:, 1]) * config.pixel_scale / 3600.0
    return native_radius(r_plane, config.projection)


def make_tract(
    tract_id: int,
    center: tuple[float, float],
    inner_region: RaDecBox | SkyCircle,
    layouts: TractLayouts,
    row: int,
    config: SkyMapConfig,
) -> TractInfo:
    """The :class:`TractInfo` of row ``row`` of ``layouts``."""
    return TractInfo(
        tract_id=int(tract_id),
        center=(float(center[0]), float(center[1])),
        inner_region=inner_region,
        crpix=(float(layouts.crpix[row, 0]), float(layouts.crpix[row, 1])),
        num_patches=(int(layouts.num_patches[row, 0]), int(layouts.num_patches[row, 1])),
        patch_inner_dimensions=(
            int(config.patch_inner_dimensions[0]),
            int(config.patch_inner_dimensions[1]),
        ),
        patch_border=int(config.patch_border),
        pixel_scale=float(config.pixel_scale),
        projection=config.projection,
        circumradius=float(layouts.circumradius[row]),
    )
