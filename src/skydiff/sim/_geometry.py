"""Sky geometry of the simulated camera: tangent-plane maps and TAN-SIP detector WCSs."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS, Sip

from ._camera import Camera

__all__ = [
    "detector_wcs",
    "focal_plane_to_tangent",
    "sky_to_tangent",
    "tangent_to_focal_plane",
    "tangent_to_sky",
]

_SIP_ORDER = 3


def sky_to_tangent(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection about ``(ra0, dec0)``: standard coordinates ``(xi, eta)`` in degrees.

    ``xi`` grows to the east (with RA), ``eta`` to the north.
    """
    a, d = np.deg2rad(np.asarray(ra, float) - ra0), np.deg2rad(np.asarray(dec, float))
    d0 = np.deg2rad(dec0)
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a)
    xi = np.cos(d) * np.sin(a) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a)) / cos_c
    return np.rad2deg(xi), np.rad2deg(eta)


def tangent_to_sky(xi, eta, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`sky_to_tangent`: ``(ra, dec)`` in degrees, RA in [0, 360)."""
    x, y = np.deg2rad(np.asarray(xi, float)), np.deg2rad(np.asarray(eta, float))
    d0 = np.deg2rad(dec0)
    denominator = np.cos(d0) - y * np.sin(d0)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denominator))
    ra = ra0 + np.rad2deg(np.arctan2(x, denominator))
    return np.mod(ra, 360.0), np.rad2deg(dec)


def _rotation_matrix(rotation: float) -> np.ndarray:
    """Focal-plane pixels -> (xi, eta) directions: east left and north up at rotation 0.

    The matrix is a reflection (its own inverse), as the sky seen from inside
    has the opposite parity to the focal plane.
    """
    t = np.deg2rad(rotation)
    return np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])


def focal_plane_to_tangent(
    x, y, pixel_scale: float, rotation: float
) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted focal-plane pixels (relative to the boresight) -> ``(xi, eta)`` degrees."""
    matrix = _rotation_matrix(rotation) * (pixel_scale / 3600.0)
    x, y = np.asarray(x, float), np.asarray(y, float)
    return matrix[0, 0] * x + matrix[0, 1] * y, matrix[1, 0] * x + matrix[1, 1] * y


def tangent_to_focal_plane(
    xi, eta, pixel_scale: float, rotation: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`focal_plane_to_tangent`."""
    matrix = _rotation_matrix(rotation) * (3600.0 / pixel_scale)
    xi, eta = np.asarray(xi, float), np.asarray(eta, float)
    return matrix[0, 0] * xi + matrix[0, 1] * eta, matrix[1, 0] * xi + matrix[1, 1] * eta


def _radial_sip(k: float) -> tuple[np.ndarray, np.ndarray]:
    """SIP ``A, B`` of the cubic radial distortion ``d = k r^2 (u, v)``."""
    a = np.zeros((_SIP_ORDER + 1, _SIP_ORDER + 1))
    b = np.zeros_like(a)
    a[3, 0] = a[1, 2] = k
    b[2, 1] = b[0, 3] = k
    return a, b


def _inverse_sip(k: float, u_range, v_range) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``AP, BP`` inverting the radial distortion over a detector's area."""
    u, v = np.meshgrid(np.linspace(*u_range, 24), np.linspace(*v_range, 24))
    u, v = u.ravel(), v.ravel()
    r2 = u * u + v * v
    big_u, big_v = u * (1 + k * r2), v * (1 + k * r2)
    powers = [(p, q) for p in range(_SIP_ORDER + 1) for q in range(_SIP_ORDER + 1 - p)]
    scale = max(np.abs(big_u).max(), np.abs(big_v).max(), 1.0)
    design = np.stack([(big_u / scale) ** p * (big_v / scale) ** q for p, q in powers], axis=1)
    ap, bp = np.zeros((2, _SIP_ORDER + 1, _SIP_ORDER + 1))
    for target, out in ((u - big_u, ap), (v - big_v, bp)):
        coeffs = np.linalg.lstsq(design, target, rcond=None)[0]
        for (p, q), c in zip(powers, coeffs, strict=True):
            out[p, q] = c / scale ** (p + q)
    return ap, bp


def detector_wcs(
    camera: Camera,
    detector: int,
    boresight: tuple[float, float],
    rotation: float,
    sip_amplitude: float,
    origin: tuple[int, int] = (0, 0),
) -> WCS:
    """TAN-SIP WCS of one detector in its parent pixel frame (0-based, first pixel at ``origin``).

    The tangent point is the boresight, so the SIP polynomial (a cubic radial
    distortion reaching ``sip_amplitude`` pixels at the focal-plane corners)
    is centred on the optical axis, as for a real camera; ``AP, BP`` invert it
    to better than 1e-3 pixel over the detector.
    """
    fx0, fy0 = camera.focal_plane_position(detector, 0.0, 0.0, origin)
    crpix = np.array([-fx0, -fy0])  # 0-based parent pixel of the boresight
    wcs = WCS(naxis=2)
    wcs.wcs.crval = [boresight[0], boresight[1]]
    wcs.wcs.crpix = crpix + 1.0
    wcs.wcs.cd = _rotation_matrix(rotation) * (camera.pixel_scale / 3600.0)
    wcs.wcs.radesys = "ICRS"
    if sip_amplitude > 0:
        k = sip_amplitude / camera.focal_plane_radius**3
        a, b = _radial_sip(k)
        u_range = (fx0 - 2.0, fx0 + camera.width + 1.0)
        v_range = (fy0 - 2.0, fy0 + camera.height + 1.0)
        ap, bp = _inverse_sip(k, u_range, v_range)
        wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        wcs.sip = Sip(a, b, ap, bp, wcs.wcs.crpix)
    else:
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.set()
    return wcs
