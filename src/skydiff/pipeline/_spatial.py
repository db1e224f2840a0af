"""Sky footprints of exposures for the registry: polygons, RA/Dec boxes, patch overlaps.

The registry stores each exposure's sky polygon (its pixel box's outer edge
mapped through the WCS) and an RA/Dec bounding box. A spatial search selects
candidates by box in SQL, then keeps those whose polygon meets the patch's
outer box, tested exactly in the tract's pixel frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from ..image import Box, pixel_to_sky
from ..skymap import PatchInfo, TractInfo

__all__ = [
    "ExposureSummary",
    "SkyBox",
    "box_outline",
    "polygon_overlaps_box",
    "polygon_overlaps_patch",
    "sky_polygon",
]

#: Degrees added around every box, covering great-circle edges bulging past their vertices.
SKY_BOX_MARGIN = 1.0 / 60.0
#: Points along each side of a pixel box when it is mapped to the sky.
POINTS_PER_EDGE = 8


def box_outline(bbox: Box, points_per_edge: int = POINTS_PER_EDGE) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of points along the outer edge of ``bbox``, counter-clockwise."""
    corners = np.array(bbox.corners())
    t = np.linspace(0.0, 1.0, max(int(points_per_edge), 1), endpoint=False)[:, None]
    edges = [a + t * (b - a) for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True)]
    x, y = np.concatenate(edges).T
    return x, y


def sky_polygon(wcs: Any, bbox: Box) -> np.ndarray:
    """``(N, 2)`` array of ``(ra, dec)`` degrees along the outer edge of ``bbox``."""
    ra, dec = pixel_to_sky(wcs, *box_outline(bbox))
    polygon = np.column_stack([np.mod(ra, 360.0), dec])
    if not np.isfinite(polygon).all():
        raise InvalidParameterError(f"the WCS does not map the edge of {bbox} to the sky")
    return polygon


def _wrapped(delta: np.ndarray) -> np.ndarray:
    """Angle differences brought into ``[-180, 180)`` degrees."""
    return np.mod(delta + 180.0, 360.0) - 180.0


@dataclass(frozen=True)
class SkyBox:
    """An RA/Dec box in degrees; ``ra_min > ra_max`` means it wraps through RA 0.

    Attributes
    ----------
    ra_min, ra_max : float
        RA limits in ``[0, 360]``; the full circle is ``(0, 360)``.
    dec_min, dec_max : float
        Declination limits.
    """

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    @classmethod
    def around(cls, ra: np.ndarray, dec: np.ndarray, *, margin: float = SKY_BOX_MARGIN) -> SkyBox:
        """The box holding a closed polygon's vertices, grown by ``margin`` degrees.

        RA is unwrapped along the polygon, so a polygon across RA 0 gets a
        wrapping box; one around a pole gets every RA up to that pole.
        """
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        steps = _wrapped(np.diff(np.append(ra, ra[0])))
        dec_min = max(float(dec.min()) - margin, -90.0)
        dec_max = min(float(dec.max()) + margin, 90.0)
        winding = float(steps.sum())
        if abs(winding) > 180.0:  # the polygon goes round a pole
            north = float(np.mean(dec)) > 0
            return cls(0.0, 360.0, dec_min if north else -90.0, 90.0 if north else dec_max)
        path = ra[0] + np.concatenate([[0.0], np.cumsum(steps[:-1])])
        cos_dec = math.cos(math.radians(max(abs(dec_min), abs(dec_max))))
        ra_margin = margin / cos_dec if cos_dec > 1e-6 else 360.0
        low, high = float(path.min()) - ra_margin, float(path.max()) + ra_margin
        if high - low >= 360.0:
            return cls(0.0, 360.0, dec_min, dec_max)
        return cls(low % 360.0, high % 360.0, dec_min, dec_max)

    def ra_intervals(self) -> list[tuple[float, float]]:
        """The RA range as one or two intervals ``(low, high)`` with ``low <= high``."""
        if self.ra_min <= self.ra_max:
            return [(self.ra_min, self.ra_max)]
        return [(self.ra_min, 360.0), (0.0, self.ra_max)]


@dataclass(frozen=True)
class ExposureSummary:
    """What the registry records of an exposure: band, time and sky footprint.

    Attributes
    ----------
    band, physical_filter : str
        Filter names.
    mjd : float
        Mid-exposure MJD (TAI); NaN if unknown.
    exposure_time : float
        Seconds; NaN if unknown.
    polygon : tuple or None
        ``((ra, dec), ...)`` vertices of the sky footprint, degrees; None
        without a WCS.
    """

    band: str
    physical_filter: str
    mjd: float
    exposure_time: float
    polygon: tuple[tuple[float, float], ...] | None

    @classmethod
    def from_exposure(cls, exposure: Any) -> ExposureSummary:
        """Summary of an :class:`~skydiff.image.Exposure` or an exposure handle."""
        info = exposure.visit_info
        polygon = None
        if exposure.wcs is not None:
            polygon = cls._as_vertices(sky_polygon(exposure.wcs, exposure.bbox))
        return cls(
            band=exposure.band or "",
            physical_filter=exposure.physical_filter or "",
            mjd=float(info.mjd),
            exposure_time=float(info.exposure_time),
            polygon=polygon,
        )

    @staticmethod
    def _as_vertices(polygon: Any) -> tuple[tuple[float, float], ...]:
        array = np.asarray(polygon, dtype=float)
        if array.ndim != 2 or array.shape[1] != 2 or len(array) < 3:
            raise InvalidParameterError(
                f"sky_polygon must be an (N, 2) array of (ra, dec) with N >= 3, "
                f"got shape {array.shape}"
            )
        if not np.isfinite(array).all() or np.abs(array[:, 1]).max() > 90.0:
            raise InvalidParameterError("sky_polygon has non-finite or |dec| > 90 vertices")
        return tuple((float(r) % 360.0, float(d)) for r, d in array)

    def with_polygon(self, polygon: Any) -> ExposureSummary:
        """A copy with the sky footprint replaced by ``polygon`` (``(N, 2)`` ra, dec)."""
        return dataclasses.replace(self, polygon=self._as_vertices(polygon))

    @property
    def sky_box(self) -> SkyBox | None:
        """The RA/Dec box of the polygon (None without one)."""
        if self.polygon is None:
            return None
        ra, dec = np.array(self.polygon).T
        return SkyBox.around(ra, dec)


def _point_in_polygon(px: float, py: float, x: np.ndarray, y: np.ndarray) -> bool:
    """Even-odd rule: whether ``(px, py)`` lies inside the polygon ``(x, y)``."""
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    crosses = (y > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x + (py - y) * (x1 - x) / (y1 - y)
    return bool(np.count_nonzero(crosses & (px < x_cross)) % 2)


def polygon_overlaps_box(
    x: np.ndarray, y: np.ndarray, x_min: float, x_max: float, y_min: float, y_max: float
) -> bool:
    """Whether a closed polygon with vertices ``(x, y)`` shares area with a rectangle.

    True if an edge of the polygon meets the rectangle (Liang-Barsky clipping
    of every edge at once) or the rectangle lies inside the polygon.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = np.roll(x, -1) - x, np.roll(y, -1) - y
    t_in, t_out = np.zeros_like(x), np.ones_like(x)
    outside = np.zeros(x.shape, bool)
    for p, q in ((-dx, x - x_min), (dx, x_max - x), (-dy, y - y_min), (dy, y_max - y)):
        outside |= (p == 0) & (q < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = q / p
        t_in = np.where(p < 0, np.maximum(t_in, ratio), t_in)
        t_out = np.where(p > 0, np.minimum(t_out, ratio), t_out)
    if np.any(~outside & (t_in <= t_out)):
        return True
    return _point_in_polygon(x_min, y_min, x, y)


def polygon_overlaps_patch(polygon: Any, tract: TractInfo, patch: PatchInfo) -> bool:
    """Whether a sky polygon meets a patch's outer box.

    The vertices are projected into the tract's pixel frame, where the edges of
    a TAN tract (great circles) are straight; the test there is exact.
    """
    ra, dec = np.asarray(polygon, float).T
    x, y = tract.sky_to_pixel(ra, dec)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return False  # part of the polygon is beyond the tract's projection horizon
    (x_min, y_min), _, (x_max, y_max), _ = patch.outer_bbox.corners()
    return polygon_overlaps_box(x, y, x_min, x_max, y_min, y_max)


def patch_sky_box(tract: TractInfo, patch: PatchInfo) -> SkyBox:
    """RA/Dec box of a patch's outer box."""
    ra, dec = tract.pixel_to_sky(*box_outline(patch.outer_bbox, 4))
    return SkyBox.around(ra, dec)
