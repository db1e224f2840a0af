"""Small helpers around :class:`astropy.wcs.WCS` in skydiff's pixel convention.

A skydiff WCS maps *parent-frame* pixel coordinates (0-based, pixel centres at
integers, the frame an image's :class:`Box` lives in) to the sky, so a
sub-image keeps its parent's WCS unchanged.
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from ..errors import InvalidExposureError

__all__ = [
    "grid_offset",
    "pixel_scale",
    "pixel_to_sky",
    "shifted_wcs",
    "sky_to_pixel",
    "validate_celestial_wcs",
]


def pixel_to_sky(wcs: WCS, x: np.ndarray | float, y: np.ndarray | float) -> tuple:
    """``(ra, dec)`` in degrees of parent pixel coordinates ``(x, y)``."""
    return wcs.all_pix2world(x, y, 0)


def sky_to_pixel(wcs: WCS, ra: np.ndarray | float, dec: np.ndarray | float) -> tuple:
    """Parent pixel coordinates ``(x, y)`` of sky positions in degrees."""
    return wcs.all_world2pix(ra, dec, 0, tolerance=1e-10, maxiter=50, quiet=True)


def pixel_scale(wcs: WCS, x: float, y: float) -> float:
    """Local pixel scale in arcsec (square root of the pixel's solid angle)."""
    ra, dec = pixel_to_sky(wcs, np.array([x - 0.5, x + 0.5, x]), np.array([y, y, y - 0.5]))
    ra2, dec2 = pixel_to_sky(wcs, np.array([x]), np.array([y + 0.5]))
    ra, dec = np.append(ra, ra2), np.append(dec, dec2)
    cosd = np.cos(np.deg2rad(dec[2]))
    dx = np.array([_wrapped_degrees(ra[1] - ra[0]) * cosd, dec[1] - dec[0]])
    dy = np.array([_wrapped_degrees(ra[3] - ra[2]) * cosd, dec[3] - dec[2]])
    return float(np.sqrt(abs(dx[0] * dy[1] - dx[1] * dy[0])) * 3600.0)


def grid_offset(wcs: WCS, other: WCS, bbox) -> float:
    """Largest pixel offset between two WCSs at the corners of ``bbox``.

    Zero (to ~1e-6 px) when ``other`` puts the sky on the same pixel grid as
    ``wcs`` over the box.
    """
    x, y = np.array(bbox.corners()).T
    ox, oy = sky_to_pixel(other, *pixel_to_sky(wcs, x, y))
    return float(np.max(np.hypot(ox - x, oy - y)))


def _wrapped_degrees(delta: float) -> float:
    """An RA difference in (-180, 180]: the short way round across RA 0/360."""
    return (delta + 180.0) % 360.0 - 180.0


def shifted_wcs(wcs: WCS, dx: float, dy: float) -> WCS:
    """A copy of ``wcs`` for pixel coordinates shifted by ``(dx, dy)``.

    ``shifted(x + dx, y + dy) == wcs(x, y)``. SIP and TPV terms are relative to
    the reference pixel and move with it.
    """
    out = wcs.deepcopy()
    out.wcs.crpix = out.wcs.crpix + np.array([dx, dy])
    if out.sip is not None:
        from astropy.wcs import Sip

        out.sip = Sip(out.sip.a, out.sip.b, out.sip.ap, out.sip.bp, out.wcs.crpix)
    return out


def validate_celestial_wcs(wcs: object, what: str) -> WCS:
    """Check that ``wcs`` is a finite, celestial, invertible 2-d WCS.

    Raises
    ------
    InvalidExposureError
        Naming ``what`` and the problem.
    """
    if not isinstance(wcs, WCS):
        raise InvalidExposureError(f"{what}: WCS must be an astropy.wcs.WCS, got {type(wcs)}")
    if wcs.naxis != 2 or not wcs.has_celestial or wcs.celestial.naxis != 2:
        raise InvalidExposureError(
            f"{what}: WCS is not a 2-d celestial WCS (CTYPE {list(wcs.wcs.ctype)})"
        )
    matrix = wcs.pixel_scale_matrix
    values = np.concatenate([wcs.wcs.crpix, wcs.wcs.crval, matrix.ravel()])
    if not np.all(np.isfinite(values)):
        raise InvalidExposureError(f"{what}: WCS has non-finite CRPIX, CRVAL or CD/PC values")
    if abs(np.linalg.det(matrix)) <= 1e-10 * np.sum(matrix**2):
        raise InvalidExposureError(f"{what}: WCS CD matrix is singular")
    return wcs
