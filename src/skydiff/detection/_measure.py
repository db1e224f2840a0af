"""Measurements of sources on stamps: centroids, moments, PSF and aperture fluxes."""

from __future__ import annotations

import numpy as np
import sep

from ..math import StampSet, adaptive_moments_batch, windowed_centroids
from ..psf import Psf, psf_stamps

__all__ = [
    "aperture_fluxes",
    "peak_centroids",
    "psf_fluxes",
    "stamp_moments",
]


def peak_centroids(
    smoothed: np.ndarray, peak_x: np.ndarray, peak_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak positions from a parabola through the 3x3 smoothed values.

    For a PSF-smoothed image this is close to optimal (LSST's ``SdssCentroid``
    works the same way); offsets are clipped to half a pixel.
    """
    height, width = smoothed.shape
    x = np.clip(peak_x, 1, width - 2)
    y = np.clip(peak_y, 1, height - 2)
    centre = smoothed[y, x].astype(np.float64)
    offsets = []
    for left, right in (
        (smoothed[y, x - 1], smoothed[y, x + 1]),
        (smoothed[y - 1, x], smoothed[y + 1, x]),
    ):
        curvature = left - 2.0 * centre + right
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
        offsets.append(np.clip(np.nan_to_num(delta), -0.5, 0.5))
    return peak_x + offsets[0], peak_y + offsets[1]


def psf_fluxes(
    stamps: StampSet, psf: Psf, x: np.ndarray, y: np.ndarray, bad_bits: int
) -> dict[str, np.ndarray]:
    """Linear PSF-fit fluxes with errors and the fit's reduced chi^2.

    Pixels are weighted equally (weighting by a variance that includes the
    source's own Poisson noise would bias bright sources low); the error
    propagates the variance plane. ``x, y`` are parent coordinates.
    """
    model = psf_stamps(psf, x, y, size=stamps.image.shape[1])
    good = stamps.inside & ((stamps.mask & bad_bits) == 0) & np.isfinite(stamps.image)
    good &= np.isfinite(stamps.variance)
    w = good.astype(np.float64)
    data = np.where(good, stamps.image, 0.0)
    norm = (w * model * model).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        flux = (w * model * data).sum(axis=(1, 2)) / norm
        error = (
            np.sqrt((w * model * model * np.where(good, stamps.variance, 0.0)).sum(axis=(1, 2)))
            / norm
        )
        resid = np.where(good, data - flux[:, None, None] * model, 0.0)
        chi2 = (resid**2 / np.where(good, stamps.variance, np.inf)).sum(axis=(1, 2))
        chi2 /= np.maximum(good.sum(axis=(1, 2)) - 1, 1)
    return {
        "psf_flux": flux,
        "psf_flux_err": error,
        "psf_chi2": chi2,
        "psf_fraction_good": (w * model).sum(axis=(1, 2)),
    }


def aperture_fluxes(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circular-aperture sums with exact pixel overlap (sep), their errors and a truncation flag.

    ``x, y`` are array coordinates; ``bad`` pixels (NO_DATA among them, whose
    NaN values sep then skips) are excluded, not corrected for.
    """
    data = np.ascontiguousarray(image, dtype=np.float32)
    var = np.ascontiguousarray(variance, dtype=np.float32)
    flux, error, flags = sep.sum_circle(
        data, x, y, radius, var=var, mask=np.ascontiguousarray(bad), subpix=0
    )
    return flux, error, (flags & sep.APER_TRUNC) != 0


def stamp_moments(stamps: StampSet, sigma0: float, bad_bits: int, size: int) -> tuple:
    """Windowed centroid and adaptive moments on the central ``size`` pixels of the stamps.

    Returns ``(xc, yc, ixx, iyy, ixy)``, the centroid relative to each stamp's
    centre pixel.
    """
    full = stamps.image.shape[1]
    cut = slice((full - size) // 2, (full + size) // 2)
    good = (stamps.inside & ((stamps.mask & bad_bits) == 0))[:, cut, cut]
    image = stamps.image[:, cut, cut]
    xc, yc = windowed_centroids(image, sigma=sigma0, good=good)
    _, _, ixx, iyy, ixy = adaptive_moments_batch(image, good=good, sigma0=sigma0, tolerance=1e-3)
    return xc, yc, ixx, iyy, ixy
