"""Tracts and patches (LSST ``TractInfo`` and ``PatchInfo``)."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from astropy.wcs import WCS

from ..errors import InvalidParameterError
from ..image import Box
from ._region import RaDecBox, SkyCircle
from ._sphere import as_sky_points, densify_polygon, project, unproject

__all__ = ["PatchIndex", "PatchInfo", "TractInfo"]


class PatchIndex(NamedTuple):
    """``(x, y)`` index of a patch in its tract (LSST ``Index2D``)."""

    x: int
    y: int


@dataclass(frozen=True)
class PatchInfo:
    """A patch: a box of a tract's pixel grid (LSST ``PatchInfo``).

    Both boxes are in the tract's pixel frame, so the patch shares the tract's
    WCS. The inner boxes of a tract's patches tile it without gaps or overlaps;
    the outer box is the inner box grown by the patch border, clipped to the
    tract box.

    Parameters
    ----------
    index : PatchIndex
        ``(x, y)`` position in the tract's grid of patches.
    sequential_index : int
        ``y * nx + x``, the LSST patch number.
    inner_bbox, outer_bbox : Box
        Inner and outer boxes in tract pixels.
    tract : TractInfo
        The tract holding the patch.
    """

    index: PatchIndex
    sequential_index: int
    inner_bbox: Box
    outer_bbox: Box
    tract: TractInfo = field(repr=False)

    @property
    def tract_id(self) -> int:
        """Identifier of the tract holding the patch."""
        return self.tract.tract_id

    @property
    def wcs(self) -> WCS:
        """The tract's WCS (the boxes are in the tract frame)."""
        return self.tract.wcs


@dataclass(frozen=True)
class TractInfo:
    """A tract: one TAN (or STG) pixel grid about a sky position, cut into patches.

    The tract box starts at pixel ``(0, 0)`` and holds a whole number of
    patches. Build tracts through a :class:`~skydiff.skymap.SkyMap`.

    Parameters
    ----------
    tract_id : int
        Identifier in the sky map.
    center : (float, float)
        ``(ra, dec)`` of the tract centre and WCS reference point, degrees.
    inner_region : RaDecBox or SkyCircle
        The sky the tract is responsible for; the tract box also covers the
        overlap with its neighbours.
    crpix : (float, float)
        0-based pixel ``(x, y)`` of the centre.
    num_patches : (int, int)
        Number of patches in x and y.
    patch_inner_dimensions : (int, int)
        ``(width, height)`` of a patch's inner box, pixels.
    patch_border : int
        Pixels by which a patch's outer box extends its inner box.
    pixel_scale : float
        Arcsec per pixel at the centre.
    projection : str
        ``"TAN"`` or ``"STG"``.
    circumradius : float
        Degrees from the centre to the farthest corner of the tract box.
    """

    tract_id: int
    center: tuple[float, float]
    inner_region: RaDecBox | SkyCircle
    crpix: tuple[float, float]
    num_patches: tuple[int, int]
    patch_inner_dimensions: tuple[int, int]
    patch_border: int
    pixel_scale: float
    projection: str
    circumradius: float = field(repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "wcs"}  # WCS rebuilt on use

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def bbox(self) -> Box:
        """The tract's pixel box, starting at ``(0, 0)``."""
        (nx, ny), (w, h) = self.num_patches, self.patch_inner_dimensions
        return Box(0, 0, nx * w, ny * h)

    @cached_property
    def wcs(self) -> WCS:
        """Celestial :class:`astropy.wcs.WCS` of the tract (0-based pixels as skydiff uses)."""
        scale = self.pixel_scale / 3600.0
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = [f"RA---{self.projection}", f"DEC--{self.projection}"]
        wcs.wcs.cunit = ["deg", "deg"]
        wcs.wcs.crval = list(self.center)
        wcs.wcs.crpix = [self.crpix[0] + 1.0, self.crpix[1] + 1.0]
        wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
        wcs.wcs.radesys = "ICRS"
        wcs.pixel_shape = (self.bbox.width, self.bbox.height)
        wcs.wcs.set()
        return wcs

    @property
    def vertices(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of the outer corners of the tract box, counter-clockwise in pixels."""
        x, y = np.array(self.bbox.corners()).T
        return self.pixel_to_sky(x, y)

    @property
    def patch_count(self) -> int:
        """Number of patches, ``nx * ny``."""
        return self.num_patches[0] * self.num_patches[1]

    # -- coordinates ----------------------------------------------------------------------

    def sky_to_pixel(self, ra, dec) -> tuple[np.ndarray, np.ndarray]:
        """Tract pixel ``(x, y)`` of sky points (degrees); NaN where the projection fails.

        Agrees with :attr:`wcs` (astropy) to numerical precision.
        """
        xi, eta = project(ra, dec, *self.center, self.projection)
        scale = self.pixel_scale / 3600.0
        return self.crpix[0] - xi / scale, self.crpix[1] + eta / scale

    def pixel_to_sky(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` in degrees of tract pixel coordinates."""
        scale = self.pixel_scale / 3600.0
        xi = (self.crpix[0] - np.asarray(x, dtype=float)) * scale
        eta = (np.asarray(y, dtype=float) - self.crpix[1]) * scale
        return unproject(xi, eta, *self.center, self.projection)

    def contains(self, ra, dec) -> bool | np.ndarray:
        """Whether sky points fall on the tract's pixel box (LSST ``TractInfo.contains``).

        A bool for scalar ``ra`` and ``dec``, else a boolean array of their shape.
        """
        ra, dec = as_sky_points(ra, dec)
        x, y = self.sky_to_pixel(ra, dec)
        box = self.bbox
        inside = (x >= -0.5) & (x < box.width - 0.5) & (y >= -0.5) & (y < box.height - 0.5)
        return bool(inside) if inside.ndim == 0 else inside

    # -- patches --------------------------------------------------------------------------

    def patch(self, index: int | tuple[int, int]) -> PatchInfo:
        """The patch at ``(x, y)`` or at sequential index ``y * nx + x``.

        Raises
        ------
        InvalidParameterError
            If the index is not a valid patch of this tract.
        """
        x, y = self._patch_xy(index)
        (w, h), nx = self.patch_inner_dimensions, self.num_patches[0]
        inner = Box(x * w, y * h, w, h)
        outer = inner.grown(self.patch_border).intersection(self.bbox)
        return PatchInfo(PatchIndex(x, y), y * nx + x, inner, outer, self)

    def patches(self) -> Iterator[PatchInfo]:
        """All patches in sequential order (x fastest)."""
        return (self.patch(i) for i in range(self.patch_count))

    def find_patch(self, ra: float, dec: float) -> PatchInfo:
        """The patch whose inner box holds the sky point ``(ra, dec)`` (LSST ``findPatch``).

        Raises
        ------
        InvalidParameterError
            If the point is not on this tract.
        """
        ra, dec = as_sky_points(ra, dec)
        if ra.ndim != 0:
            raise InvalidParameterError(f"find_patch takes one point, got ra of shape {ra.shape}")
        if not self.contains(ra, dec):
            raise InvalidParameterError(
                f"(ra, dec) = ({float(ra)}, {float(dec)}) is not on tract {self.tract_id}"
            )
        x, y = self.sky_to_pixel(ra, dec)
        (w, h) = self.patch_inner_dimensions
        return self.patch((int(np.floor(x + 0.5)) // w, int(np.floor(y + 0.5)) // h))

    def find_patches(self, ra, dec, *, points_per_edge: int = 8) -> list[PatchInfo]:
        """Patches whose outer box overlaps a sky polygon (LSST ``findPatchList``).

        As in LSST, the polygon is bounded by its box in tract pixels, so a
        polygon not aligned with the pixel grid may also select patches near
        its corners that it misses.

        Parameters
        ----------
        ra, dec : array_like
            Vertices of a polygon with great-circle edges, or a single point, degrees.
        points_per_edge : int
            Points per edge used to bound curved edges in the projection plane.

        Returns
        -------
        list of PatchInfo
            In sequential order; empty when the polygon misses the tract.
        """
        ra, dec = as_sky_points(np.atleast_1d(ra), np.atleast_1d(dec))
        ra, dec = densify_polygon(ra, dec, points_per_edge=points_per_edge)
        x, y = self.sky_to_pixel(ra, dec)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return []
        x, y = x[ok], y[ok]
        query = Box.from_corners(
            *(int(np.floor(v + 0.5)) for v in (x.min(), y.min())),
            *(int(np.floor(v + 0.5)) for v in (x.max(), y.max())),
        )
        return self._patches_overlapping(query)

    def _patches_overlapping(self, query: Box) -> list[PatchInfo]:
        """Patches whose outer box shares a pixel with ``query`` (a box in tract pixels)."""
        clipped = query.intersection(self.bbox)
        if clipped.is_empty:
            return []
        reach = clipped.grown(self.patch_border).intersection(self.bbox)
        w, h = self.patch_inner_dimensions
        xs = range(reach.x0 // w, (reach.x_end - 1) // w + 1)
        ys = range(reach.y0 // h, (reach.y_end - 1) // h + 1)
        return [self.patch((x, y)) for y in ys for x in xs]

    def _patch_xy(self, index: int | tuple[int, int]) -> tuple[int, int]:
        nx, ny = self.num_patches
        x = y = -1
        try:
            if isinstance(index, tuple | list | np.ndarray):
                x, y = (operator.index(v) for v in index)
            elif not isinstance(index, bool) and 0 <= operator.index(index) < nx * ny:
                x, y = operator.index(index) % nx, operator.index(index) // nx
        except (TypeError, ValueError):
            pass
        if not (0 <= x < nx and 0 <= y < ny):
            raise InvalidParameterError(
                f"patch index must be (x, y) with 0 <= x < {nx}, 0 <= y < {ny} or a sequential "
                f"index in [0, {nx * ny}) of tract {self.tract_id}, got {index!r}"
            )
        return x, y

    def __str__(self) -> str:
        return f"TractInfo(id={self.tract_id}, center={self.center})"
