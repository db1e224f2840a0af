"""Spherical geometry and zenithal projections on numpy arrays (degrees throughout).

The projections follow the FITS WCS conventions (Calabretta & Greisen 2002)
with the default ``LONPOLE`` (180 degrees, or 0 for a reference point at the
north pole), so they agree with :class:`astropy.wcs.WCS` built from the same
keywords; having them in numpy lets a sky map lay out many tracts at once and
return NaN, rather than raise, for points a projection cannot reach.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError

__all__ = [
    "angular_separation",
    "as_sky_points",
    "bounding_cap",
    "densify_polygon",
    "native_radius",
    "plane_radius",
    "project",
    "unproject",
]


def as_sky_points(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """``ra`` and ``dec`` (degrees) as float arrays of one shape, checked.

    Raises
    ------
    InvalidParameterError
        If the shapes differ, a value is not finite or a declination is outside [-90, 90].
    """
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    if ra.shape != dec.shape:
        raise InvalidParameterError(
            f"ra and dec must have one shape, got {ra.shape} and {dec.shape}"
        )
    if not np.all(np.isfinite(ra)):
        raise InvalidParameterError(f"ra must be finite degrees, got {ra[~np.isfinite(ra)][:3]}")
    if not np.all(np.abs(dec) <= 90.0):
        bad = dec[~(np.abs(dec) <= 90.0)][:3]
        raise InvalidParameterError(f"dec must be finite degrees in [-90, 90], got {bad}")
    return ra, dec


def _native_pole_longitude(dec0: np.ndarray | float) -> np.ndarray:
    """FITS default ``LONPOLE`` of a zenithal projection, radians."""
    return np.where(np.asarray(dec0) >= 90.0, 0.0, np.pi)


def plane_radius(theta: np.ndarray | float, projection: str) -> np.ndarray:
    """Distance in the projection plane (degrees) of a point ``theta`` degrees from the centre.

    NaN where the projection cannot reach (TAN at or beyond 90 degrees).
    """
    t = np.deg2rad(np.asarray(theta, dtype=float))
    if projection == "TAN":
        r = np.where(t < 0.5 * np.pi, np.tan(np.minimum(t, 0.5 * np.pi - 1e-12)), np.nan)
    else:
        r = 2.0 * np.tan(0.5 * t)
    return np.rad2deg(r)


def native_radius(r: np.ndarray | float, projection: str) -> np.ndarray:
    """Angle from the centre (degrees) of a point ``r`` degrees from it in the plane."""
    r = np.deg2rad(np.asarray(r, dtype=float))
    theta = np.arctan(r) if projection == "TAN" else 2.0 * np.arctan(0.5 * r)
    return np.rad2deg(theta)


def project(ra, dec, ra0, dec0, projection: str) -> tuple[np.ndarray, np.ndarray]:
    """Intermediate world coordinates ``(x, y)`` in degrees of sky points.

    ``x`` grows to the east and ``y`` to the north at the centre ``(ra0, dec0)``;
    all arguments broadcast. NaN where the projection cannot reach.
    """
    a, d = np.deg2rad(ra) - np.deg2rad(ra0), np.deg2rad(dec)
    d0 = np.deg2rad(dec0)
    cos_c = np.sin(d) * np.sin(d0) + np.cos(d) * np.cos(d0) * np.cos(a)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))
    phi = _native_pole_longitude(dec0) + np.arctan2(
        -np.cos(d) * np.sin(a), np.sin(d) * np.cos(d0) - np.cos(d) * np.sin(d0) * np.cos(a)
    )
    r = plane_radius(np.rad2deg(c), projection)
    return r * np.sin(phi), -r * np.cos(phi)


def unproject(x, y, ra0, dec0, projection: str) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions ``(ra, dec)`` in degrees of intermediate world coordinates (inverse of
    :func:`project`); RA in ``[0, 360)``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    theta = 0.5 * np.pi - np.deg2rad(native_radius(np.hypot(x, y), projection))
    dphi = np.arctan2(x, -y) - _native_pole_longitude(dec0)
    d0 = np.deg2rad(dec0)
    sin_d = np.sin(theta) * np.sin(d0) + np.cos(theta) * np.cos(d0) * np.cos(dphi)
    dec = np.arcsin(np.clip(sin_d, -1.0, 1.0))
    a = np.arctan2(
        -np.cos(theta) * np.sin(dphi),
        np.sin(theta) * np.cos(d0) - np.cos(theta) * np.sin(d0) * np.cos(dphi),
    )
    return np.mod(np.asarray(ra0) + np.rad2deg(a), 360.0), np.rad2deg(dec)


def _unit_vectors(ra, dec) -> np.ndarray:
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def _to_sky(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = np.moveaxis(vectors, -1, 0)
    ra = np.mod(np.rad2deg(np.arctan2(y, x)), 360.0)
    return ra, np.rad2deg(np.arctan2(z, np.hypot(x, y)))


def angular_separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in degrees (Vincenty's formula, exact at all angles)."""
    a = np.deg2rad(np.asarray(ra2) - np.asarray(ra1))
    d1, d2 = np.deg2rad(dec1), np.deg2rad(dec2)
    num = np.hypot(
        np.cos(d2) * np.sin(a), np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(a)
    )
    den = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(a)
    return np.rad2deg(np.arctan2(num, den))


def bounding_cap(ra, dec) -> tuple[float, float, float]:
    """``(ra, dec, radius)`` in degrees of a small circle holding all the points.

    Raises
    ------
    InvalidParameterError
        If the points are spread over the sphere so that they have no mean direction.
    """
    total = _unit_vectors(ra, dec).sum(axis=0)
    norm = np.linalg.norm(total)
    if norm < 1e-9 * len(np.atleast_1d(ra)):
        raise InvalidParameterError("sky polygon has no mean direction (spans the whole sky)")
    ra_c, dec_c = _to_sky(total / norm)
    radius = float(np.max(angular_separation(ra_c, dec_c, ra, dec)))
    return float(ra_c), float(dec_c), radius


def densify_polygon(ra, dec, *, points_per_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices plus points along each great-circle edge of a closed polygon."""
    vec = _unit_vectors(ra, dec)
    if len(vec) < 2 or points_per_edge <= 1:
        return np.atleast_1d(ra).astype(float), np.atleast_1d(dec).astype(float)
    start, end = vec, np.roll(vec, -1, axis=0)
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)[None, :, None]
    points = start[:, None, :] * (1 - t) + end[:, None, :] * t
    points = points / np.linalg.norm(points, axis=-1, keepdims=True)
    return _to_sky(points.reshape(-1, 3))
