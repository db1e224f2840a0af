"""Inner sky regions of tracts: an RA/Dec box (rings) or a circle (discrete tracts)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._sphere import angular_separation, unproject

__all__ = ["RaDecBox", "SkyCircle"]


@dataclass(frozen=True)
class RaDecBox:
    """The sky between two declinations and within ``half_width`` degrees of RA of a centre.

    The region of a rings tract (LSST's ``getInnerSkyRegion``). The intervals
    are half-open, ``[dec_min, dec_max)`` and ``[ra_center - half_width,
    ra_center + half_width)``, so that the boxes of a rings sky map tile the
    sky; a box reaching a pole (``dec_max == 90``) includes it. A half-width of
    180 degrees covers every RA (the polar caps).
    """

    ra_center: float
    half_width: float
    dec_min: float
    dec_max: float

    def contains(self, ra, dec) -> np.ndarray:
        """Whether each point ``(ra, dec)`` (degrees) lies in the box."""
        ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
        in_dec = (dec >= self.dec_min) & ((dec < self.dec_max) | (self.dec_max >= 90.0))
        if self.half_width >= 180.0:
            return in_dec
        dra = np.mod(ra - self.ra_center + 180.0, 360.0) - 180.0
        return in_dec & (dra >= -self.half_width) & (dra < self.half_width)

    def grown(self, distance: float) -> RaDecBox:
        """A box holding every point within ``distance`` degrees of this one."""
        dec_min = max(self.dec_min - distance, -90.0)
        dec_max = min(self.dec_max + distance, 90.0)
        cos_edge = np.cos(np.deg2rad(max(abs(dec_min), abs(dec_max))))
        sin_d = np.sin(np.deg2rad(distance))
        if self.half_width >= 180.0 or sin_d >= cos_edge:
            return RaDecBox(self.ra_center, 180.0, dec_min, dec_max)
        dra = float(np.rad2deg(np.arcsin(sin_d / cos_edge)))
        return RaDecBox(self.ra_center, min(self.half_width + dra, 180.0), dec_min, dec_max)

    def boundary(self, points_per_edge: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of points along the four edges, corners included."""
        t = np.linspace(-1.0, 1.0, points_per_edge)
        ra_edge = self.ra_center + self.half_width * t
        dec_edge = self.dec_min + (self.dec_max - self.dec_min) * 0.5 * (t + 1.0)
        ra = np.concatenate(
            [ra_edge, ra_edge, np.full_like(t, ra_edge[0]), np.full_like(t, ra_edge[-1])]
        )
        dec = np.concatenate(
            [np.full_like(t, self.dec_min), np.full_like(t, self.dec_max), dec_edge, dec_edge]
        )
        return np.mod(ra, 360.0), dec


@dataclass(frozen=True)
class SkyCircle:
    """The sky within ``radius`` degrees of ``(ra, dec)`` (a discrete tract's region)."""

    ra: float
    dec: float
    radius: float

    def contains(self, ra, dec) -> np.ndarray:
        """Whether each point ``(ra, dec)`` (degrees) lies in the circle."""
        return angular_separation(self.ra, self.dec, ra, dec) <= self.radius

    def grown(self, distance: float) -> SkyCircle:
        """The circle with its radius increased by ``distance`` degrees."""
        return SkyCircle(self.ra, self.dec, self.radius + distance)

    def boundary(self, points_per_edge: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of ``4 * points_per_edge`` points on the circle."""
        angle = np.linspace(0.0, 2.0 * np.pi, 4 * points_per_edge, endpoint=False)
        # a circle about the centre stays a circle in any zenithal projection about it
        r = float(np.rad2deg(2.0 * np.tan(0.5 * np.deg2rad(self.radius))))
        return unproject(r * np.cos(angle), r * np.sin(angle), self.ra, self.dec, "STG")
