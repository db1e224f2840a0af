"""PSF kernel images carried through a local linear change of pixel grid."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import InvalidParameterError
from ._base import check_kernel_size

__all__ = ["transform_kernel"]


def transform_kernel(
    kernel: np.ndarray, jacobian: np.ndarray, *, size: int | None = None
) -> np.ndarray:
    """A centred kernel image re-expressed on another pixel grid.

    ``jacobian`` is ``d(old pixel) / d(new pixel)`` (a 2x2 matrix acting on
    ``(x, y)`` column vectors), the local linear part of the new -> old pixel
    transform. The new kernel is ``K_new(u) = K_old(J u) |det J|`` sampled
    with cubic splines and renormalised to unit sum: the PSF of an image
    warped with that transform.

    Parameters
    ----------
    kernel : numpy.ndarray
        Odd, square, centred kernel on the old grid.
    jacobian : numpy.ndarray
        ``(2, 2)`` matrix ``[[dx_old/dx_new, dx_old/dy_new], [dy_old/dx_new, dy_old/dy_new]]``.
    size : int, optional
        Odd side of the result; default holds the old kernel's extent.
    """
    kernel = np.asarray(kernel, np.float64)
    jacobian = np.asarray(jacobian, np.float64)
    if jacobian.shape != (2, 2) or not np.all(np.isfinite(jacobian)):
        raise InvalidParameterError(f"jacobian must be a finite 2x2 matrix, got {jacobian!r}")
    det = float(np.linalg.det(jacobian))
    if not abs(det) > 1e-12:
        raise InvalidParameterError(f"jacobian is singular: {jacobian.tolist()}")
    half_old = kernel.shape[0] // 2
    if size is None:
        stretch = float(np.linalg.norm(np.linalg.inv(jacobian), 2))
        size = 2 * max(1, math.ceil(half_old * stretch)) + 1
    half = check_kernel_size(size, "size") // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    ux, uy = np.meshgrid(offsets, offsets)
    x_old = jacobian[0, 0] * ux + jacobian[0, 1] * uy + half_old
    y_old = jacobian[1, 0] * ux + jacobian[1, 1] * uy + half_old
    values = ndimage.map_coordinates(kernel, [y_old, x_old], order=3, mode="constant")
    total = values.sum()
    if not total > 0:
        raise InvalidParameterError("the transformed kernel has no positive flux")
    return values / total
