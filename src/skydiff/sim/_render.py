"""Noiseless rendering of point sources and galaxies into an image.

Point sources are kernels of a :class:`PsfGrid` (interpolated between
accurate PSF integrals at the nodes of a coarse grid) shifted to their
sub-pixel positions in Fourier space, in batches; the brightest stars are
integrated exactly on stamps wide enough for their wings. Galaxies are
Sersic profiles integrated over pixels and convolved with the local kernel
by FFT.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal, special

from ..image import Box
from ._moffat import moffat_stamp
from ._psfgrid import PsfGrid

__all__ = ["add_stamp", "render_galaxies", "render_point_sources"]

#: Sources per batched inverse FFT (bounds memory).
_BATCH = 256
_GALAXY_SUBSAMPLE = 3
#: Largest half-width (pixels) of a galaxy stamp before PSF convolution.
GALAXY_MAX_HALF = 64


def add_stamp(image: np.ndarray, bbox: Box, stamp: np.ndarray, cx: int, cy: int) -> None:
    """Add an odd-sized ``stamp`` centred on parent pixel ``(cx, cy)``, clipped to the image."""
    half_y, half_x = stamp.shape[0] // 2, stamp.shape[1] // 2
    x0, y0 = cx - half_x - bbox.x0, cy - half_y - bbox.y0
    xa, ya = max(x0, 0), max(y0, 0)
    xb = min(x0 + stamp.shape[1], bbox.width)
    yb = min(y0 + stamp.shape[0], bbox.height)
    if xa >= xb or ya >= yb:
        return
    image[ya:yb, xa:xb] += stamp[ya - y0 : yb - y0, xa - x0 : xb - x0]


def _needed_half_size(
    alpha: np.ndarray, beta: float, flux: np.ndarray, threshold: float
) -> np.ndarray:
    """Half-widths beyond which Moffat stars of ``flux`` stay below ``threshold`` per pixel."""
    peak = flux * (beta - 1.0) / (np.pi * alpha * alpha)
    ratio = np.maximum(peak / threshold, 1.0)
    return np.ceil(alpha * np.sqrt(ratio ** (1.0 / beta) - 1.0)).astype(int)


def _render_bright(image: np.ndarray, bbox: Box, grid: PsfGrid, x, y, flux, half) -> None:
    """Exact Moffat stamps of the local PSF, ``2 half + 1`` pixels wide."""
    for k in range(len(x)):
        ix, iy = round(x[k]), round(y[k])
        size = 2 * min(int(half[k]), max(bbox.width, bbox.height)) + 1
        stamp = moffat_stamp(grid.local_psf(x[k], y[k]), size, dx=x[k] - ix, dy=y[k] - iy)
        add_stamp(image, bbox, flux[k] * stamp, ix, iy)


def render_point_sources(
    image: np.ndarray, bbox: Box, grid: PsfGrid, x, y, flux, *, wing_threshold: float
) -> None:
    """Add point sources of ``flux`` (counts) at parent positions ``(x, y)`` to ``image``.

    Sources whose PSF wings would exceed ``wing_threshold`` counts per pixel at
    the kernel's edge (bright, saturated stars) are integrated exactly on a
    wider stamp; all others are drawn in batches of Fourier-shifted kernels.
    """
    x, y, flux = (np.asarray(a, float) for a in (x, y, flux))
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    group, nodes, weights = grid.locate(x, y)
    unique, inverse = np.unique(group, return_inverse=True)
    alpha = np.array([grid.local_psf(*grid.node_position(g)).alpha for g in unique])[inverse]
    half = _needed_half_size(alpha, grid.psf.beta, flux, wing_threshold)
    big = half > grid.size // 2
    _render_bright(image, bbox, grid, x[big], y[big], flux[big], half[big])
    small = ~big & (flux != 0)
    for g in np.unique(group[small]):
        members = np.flatnonzero(small & (group == g))
        for start in range(0, len(members), _BATCH):
            batch = members[start : start + _BATCH]
            stamps = grid.shifted(
                nodes[batch[0]], weights[batch], x[batch] - ix[batch], y[batch] - iy[batch]
            )
            stamps *= flux[batch, None, None]
            for k, stamp in zip(batch, stamps, strict=True):
                add_stamp(image, bbox, stamp, ix[k], iy[k])


def _sersic_b(n: np.ndarray | float) -> np.ndarray | float:
    """``b_n`` such that the Sersic radius ``r_e`` encloses half the light."""
    return special.gammaincinv(2.0 * np.asarray(n), 0.5)


def galaxy_pixel_shape(
    wcs_jacobian: np.ndarray, radius: float, axis_ratio: float, position_angle: float
) -> np.ndarray:
    """Quadratic form ``Q`` in pixels with ``d^T Q d = 1`` on the half-light ellipse.

    ``wcs_jacobian`` maps pixel offsets to ``(xi, eta)`` arcsec; ``radius`` is
    the circularised half-light radius in arcsec; ``position_angle`` is the
    major axis east of north, degrees.
    """
    theta = math.radians(position_angle)
    major = np.array([math.sin(theta), math.cos(theta)])
    minor = np.array([math.cos(theta), -math.sin(theta)])
    a, b = radius / math.sqrt(axis_ratio), radius * math.sqrt(axis_ratio)
    sky_form = np.outer(major, major) / a**2 + np.outer(minor, minor) / b**2
    return wcs_jacobian.T @ sky_form @ wcs_jacobian


def galaxy_stamp(form: np.ndarray, sersic_n: float, dx: float, dy: float) -> np.ndarray:
    """Unit-sum, pixel-integrated Sersic image with shape ``form`` at sub-pixel ``(dx, dy)``.

    The profile is truncated where the elliptical radius reaches
    ``min(2 + 2 n, 8)`` half-light radii (at most ``GALAXY_MAX_HALF`` pixels).
    """
    rho_max = min(2.0 + 2.0 * sersic_n, 8.0)
    inverse = np.linalg.inv(form)
    half = math.ceil(rho_max * math.sqrt(max(inverse[0, 0], inverse[1, 1])) + 1)
    half = min(half, GALAXY_MAX_HALF)
    sub = (np.arange(_GALAXY_SUBSAMPLE) + 0.5) / _GALAXY_SUBSAMPLE - 0.5
    grid = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    u, v = grid[None, :] - dx, grid[:, None] - dy
    rho2 = form[0, 0] * u * u + 2.0 * form[0, 1] * u * v + form[1, 1] * v * v
    profile = np.exp(-_sersic_b(sersic_n) * (rho2 ** (0.5 / sersic_n) - 1.0))
    profile[rho2 > rho_max**2] = 0.0
    size = 2 * half + 1
    image = profile.reshape(size, _GALAXY_SUBSAMPLE, size, _GALAXY_SUBSAMPLE).sum(axis=(1, 3))
    return image / image.sum()


def render_galaxies(
    image: np.ndarray,
    bbox: Box,
    grid: PsfGrid,
    galaxies: dict[str, np.ndarray],
    wcs_jacobian: np.ndarray,
) -> None:
    """Add PSF-convolved Sersic galaxies to ``image``.

    ``galaxies`` holds arrays ``x, y, flux`` (counts), ``half_light_radius``
    (arcsec), ``sersic_n``, ``axis_ratio`` and ``position_angle`` (degrees
    east of north).
    """
    x, y = np.asarray(galaxies["x"], float), np.asarray(galaxies["y"], float)
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    for k in range(len(x)):
        form = galaxy_pixel_shape(
            wcs_jacobian,
            galaxies["half_light_radius"][k],
            galaxies["axis_ratio"][k],
            galaxies["position_angle"][k],
        )
        stamp = galaxy_stamp(form, galaxies["sersic_n"][k], x[k] - ix[k], y[k] - iy[k])
        convolved = signal.fftconvolve(stamp, grid.kernel_at(x[k], y[k]), mode="full")
        add_stamp(image, bbox, galaxies["flux"][k] * convolved, ix[k], iy[k])
