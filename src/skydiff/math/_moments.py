"""Shape measurements of small, background-free stamps."""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

__all__ = ["adaptive_moments", "adaptive_moments_batch", "half_max_fwhm", "windowed_centroids"]


def adaptive_moments(
    stamp: np.ndarray, *, max_iter: int = 50, tolerance: float = 1e-6
) -> tuple[float, float, float, float, float]:
    """Gaussian-weighted (adaptive) second moments of a stamp.

    Iterates an elliptical Gaussian weight matched to the object's own
    moments (Bernstein & Jarvis 2002); for a Gaussian profile the result
    equals its covariance. Robust to wings that unweighted moments would be
    dominated by. NaN when the iteration fails (no positive flux).

    Returns
    -------
    tuple
        ``(xc, yc, ixx, iyy, ixy)``: centroid in stamp pixel coordinates and
        second moments in pixels squared.
    """
    stamp = np.ascontiguousarray(stamp, dtype=np.float64)
    ny, nx = stamp.shape
    good = np.ones(stamp.shape, np.bool_)
    sigma0 = max((nx + ny) / 8.0, 1.0)
    xc, yc, ixx, iyy, ixy = _adaptive_one(stamp, good, sigma0, max_iter, tolerance, float(nx + ny))
    return float(xc + nx // 2), float(yc + ny // 2), float(ixx), float(iyy), float(ixy)


def half_max_fwhm(stamp: np.ndarray, *, oversample: int = 8) -> float:
    """Full width at half maximum from the area above half the peak.

    The stamp is upsampled by cubic-spline interpolation; the FWHM is the
    diameter of the circle of the same area as the region above half maximum,
    so it is the geometric mean of major and minor FWHM for an ellipse.
    """
    fine = ndimage.zoom(
        np.asarray(stamp, np.float64), oversample, order=3, mode="grid-constant", grid_mode=True
    )
    peak = fine.max()
    labels, _ = ndimage.label(fine >= 0.5 * peak)
    core = labels == labels.flat[np.argmax(fine)]
    area = core.sum() / oversample**2
    return float(2.0 * np.sqrt(area / np.pi))


@numba.njit(cache=True)
def _adaptive_one(stamp, good, sigma0, max_iter, tolerance, max_shift):
    ny, nx = stamp.shape
    cy, cx = ny // 2, nx // 2
    xc, yc = 0.0, 0.0
    ixx, iyy, ixy = sigma0 * sigma0, sigma0 * sigma0, 0.0
    for _ in range(max_iter):
        det = ixx * iyy - ixy * ixy
        a, b, c = iyy / det, -ixy / det, ixx / det
        s0 = sx = sy = sxx = syy = sxy = 0.0
        for j in range(ny):
            ry = j - cy - yc
            for i in range(nx):
                if not good[j, i]:
                    continue
                rx = i - cx - xc
                q = a * rx * rx + 2.0 * b * rx * ry + c * ry * ry
                if q > 30.0:  # weight below 3e-7 of its peak
                    continue
                w = np.exp(-0.5 * q) * stamp[j, i]
                s0 += w
                sx += w * rx
                sy += w * ry
                sxx += w * rx * rx
                syy += w * ry * ry
                sxy += w * rx * ry
        if s0 <= 0:
            return np.nan, np.nan, np.nan, np.nan, np.nan
        mx, my = sx / s0, sy / s0
        nxx = 2.0 * (sxx / s0 - mx * mx)
        nyy = 2.0 * (syy / s0 - my * my)
        nxy = 2.0 * (sxy / s0 - mx * my)
        if nxx <= 0 or nyy <= 0 or nxx * nyy <= nxy * nxy:
            return np.nan, np.nan, np.nan, np.nan, np.nan
        # keep the weight from running off the stamp
        xc = min(max(xc + mx, -max_shift), max_shift)
        yc = min(max(yc + my, -max_shift), max_shift)
        change = abs(nxx - ixx) + abs(nyy - iyy) + abs(nxy - ixy)
        ixx, iyy, ixy = min(nxx, ny * nx), min(nyy, ny * nx), nxy
        if change < tolerance * (ixx + iyy) and abs(mx) + abs(my) < 1e-4:
            break
    return xc, yc, ixx, iyy, ixy


@numba.njit(parallel=True, cache=True)
def _adaptive_batch(stamps, good, sigma0, max_iter, tolerance):
    n = stamps.shape[0]
    out = np.empty((5, n))
    for k in numba.prange(n):
        r = _adaptive_one(stamps[k], good[k], sigma0, max_iter, tolerance, 2.0)
        for m in range(5):
            out[m, k] = r[m]
    return out


def adaptive_moments_batch(
    stamps: np.ndarray,
    *,
    good: np.ndarray | None = None,
    sigma0: float = 2.0,
    max_iter: int = 50,
    tolerance: float = 1e-5,
) -> tuple[np.ndarray, ...]:
    """Adaptive second moments of a stack of ``(n, s, s)`` stamps (compiled, parallel).

    The same fixed point as :func:`adaptive_moments`, for stamps roughly
    centred on their sources: the weight starts at the stamp centre with
    width ``sigma0`` and follows the centroid (by at most 2 px). Pixels with
    ``good`` False are ignored. Failed iterations (no positive flux,
    non-positive moments) give NaN.

    Returns
    -------
    tuple of numpy.ndarray
        ``(xc, yc, ixx, iyy, ixy)``: centroid relative to the stamp centre and
        second moments in pixels squared.
    """
    stamps = np.ascontiguousarray(stamps, np.float64)
    good = np.ones(stamps.shape, np.bool_) if good is None else np.ascontiguousarray(good, bool)
    out = _adaptive_batch(stamps, good, float(sigma0), int(max_iter), float(tolerance))
    return tuple(out)


@numba.njit(parallel=True, cache=True)
def _windowed_batch(stamps, good, sigma, max_iter, tolerance):
    n, ny, nx = stamps.shape
    out = np.full((2, n), np.nan)
    inv = 0.5 / (sigma * sigma)
    for k in numba.prange(n):
        xc, yc = 0.0, 0.0
        for _ in range(max_iter):
            s0 = sx = sy = 0.0
            for j in range(ny):
                ry = j - ny // 2 - yc
                for i in range(nx):
                    if good[k, j, i]:
                        rx = i - nx // 2 - xc
                        w = np.exp(-(rx * rx + ry * ry) * inv) * stamps[k, j, i]
                        s0 += w
                        sx += w * rx
                        sy += w * ry
            if s0 <= 0:
                xc, yc = np.nan, np.nan
                break
            # the factor 2 is the fixed point of a Gaussian window on a Gaussian source
            dx, dy = 2.0 * sx / s0, 2.0 * sy / s0
            xc = min(max(xc + dx, -2.0), 2.0)
            yc = min(max(yc + dy, -2.0), 2.0)
            if abs(dx) + abs(dy) < tolerance:
                break
        out[0, k], out[1, k] = xc, yc
    return out


def windowed_centroids(
    stamps: np.ndarray,
    *,
    sigma: float,
    good: np.ndarray | None = None,
    max_iter: int = 20,
    tolerance: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids with a fixed circular Gaussian window of ``sigma`` (SExtractor ``XWIN``).

    Unbiased for symmetric sources and, unlike adaptive moments, stable at
    low S/N because the window does not change size. Offsets are relative to
    each stamp's centre pixel and limited to 2 px; NaN where the windowed
    flux is not positive.
    """
    stamps = np.ascontiguousarray(stamps, np.float64)
    good = np.ones(stamps.shape, np.bool_) if good is None else np.ascontiguousarray(good, bool)
    out = _windowed_batch(stamps, good, float(sigma), int(max_iter), float(tolerance))
    return out[0], out[1]
