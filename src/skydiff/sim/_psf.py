"""The true PSF of a simulated exposure: a Moffat varying smoothly over the focal plane."""

from __future__ import annotations

import numpy as np

from ..math import normalized_coordinates, polynomial_terms
from ..psf import VaryingAnalyticPsf, odd_size_for
from ._camera import Camera
from ._config import SurveyConfig
from ._visits import VisitConditions

__all__ = ["detector_psf", "focal_plane_psf_parameters"]

_ORDER = 2
#: Kernel half-width in units of the largest FWHM on the detector (as MoffatPsf's default).
_KERNEL_RADIUS_FWHM = 4.0


def focal_plane_psf_parameters(
    config: SurveyConfig, camera: Camera, conditions: VisitConditions, fx, fy
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fwhm, g1, g2)`` at focal-plane positions ``(fx, fy)`` relative to the boresight.

    The FWHM (pixels) grows quadratically with the distance from the
    boresight by ``psf_fwhm_variation`` at the corners, plus the visit's
    tilt; the shear is the visit's constant plus an astigmatism pattern
    ``psf_ellipticity * (u^2 - v^2, 2 u v)``. Both are quadratic in position,
    so a second-order :class:`VaryingAnalyticPsf` represents them exactly.
    """
    radius = camera.focal_plane_radius
    u, v = np.asarray(fx, float) / radius, np.asarray(fy, float) / radius
    fwhm0 = conditions.seeing / camera.pixel_scale
    growth = (
        config.psf_fwhm_variation * (u * u + v * v)
        + conditions.psf_tilt_x * u
        + conditions.psf_tilt_y * v
    )
    g1 = conditions.psf_g1 + config.psf_ellipticity * (u * u - v * v)
    g2 = conditions.psf_g2 + config.psf_ellipticity * 2.0 * u * v
    return fwhm0 * (1.0 + growth), g1, g2


def detector_psf(
    config: SurveyConfig,
    camera: Camera,
    conditions: VisitConditions,
    detector: int,
    origin: tuple[int, int] = (0, 0),
) -> VaryingAnalyticPsf:
    """The true PSF of one detector in one visit, in the detector's parent pixel frame."""
    bounds = (origin[0], origin[1], origin[0] + camera.width - 1, origin[1] + camera.height - 1)
    x, y = np.meshgrid(np.linspace(bounds[0], bounds[2], 5), np.linspace(bounds[1], bounds[3], 5))
    fx, fy = camera.focal_plane_position(detector, x.ravel(), y.ravel(), origin)
    values = focal_plane_psf_parameters(config, camera, conditions, fx, fy)
    u, v = normalized_coordinates(x.ravel(), y.ravel(), bounds)
    design = polynomial_terms(u, v, _ORDER)
    fwhm, g1, g2 = (np.linalg.lstsq(design, value, rcond=None)[0] for value in values)
    size = odd_size_for(_KERNEL_RADIUS_FWHM * float(values[0].max()))
    return VaryingAnalyticPsf("moffat", bounds, fwhm, g1=g1, g2=g2, beta=config.psf_beta, size=size)
