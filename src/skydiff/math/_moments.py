"""Shape measurements of small, background-free stamps."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["adaptive_moments", "half_max_fwhm"]


def adaptive_moments(
    stamp: np.ndarray, *, max_iter: int = 50, tolerance: float = 1e-6
) -> tuple[float, float, float, float, float]:
    """Gaussian-weighted (adaptive) second moments of a stamp.

    Iterates a elliptical Gaussian weight matched to the object's own moments
    (Bernstein & Jarvis 2002); for a Gaussian profile the result equals its
    covariance. Robust to wings that unweighted moments would be dominated by.

    Returns
    -------
    tuple
        ``(xc, yc, ixx, iyy, ixy)``: centroid in stamp pixel coordinates and
        second moments in pixels squared.
    """
    stamp = np.asarray(stamp, dtype=np.float64)
    ny, nx = stamp.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    total = stamp.sum()
    xc, yc = (stamp * x).sum() / total, (stamp * y).sum() / total
    ixx = iyy = max(((nx + ny) / 8.0) ** 2, 1.0)
    ixy = 0.0
    for _ in range(max_iter):
        det = ixx * iyy - ixy * ixy
        dx, dy = x - xc, y - yc
        weight = np.exp(-0.5 * (iyy * dx * dx - 2 * ixy * dx * dy + ixx * dy * dy) / det)
        wi = weight * stamp
        norm = wi.sum()
        new_xc, new_yc = (wi * x).sum() / norm, (wi * y).sum() / norm
        mxx = (wi * dx * dx).sum() / norm
        myy = (wi * dy * dy).sum() / norm
        mxy = (wi * dx * dy).sum() / norm
        # The weighted moments are those of the product of object and weight;
        # undo the weight: C_obj^-1 = C_meas^-1 - C_weight^-1, and the
        # fixed point of C_weight = C_obj gives C_weight = 2 C_meas.
        new = (2 * mxx, 2 * myy, 2 * mxy)
        change = max(abs(new[0] - ixx), abs(new[1] - iyy), abs(new[2] - ixy))
        ixx, iyy, ixy = new
        xc, yc = new_xc, new_yc
        if change < tolerance * (ixx + iyy):
            break
    return float(xc), float(yc), float(ixx), float(iyy), float(ixy)


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
