"""A spatially varying PSF-matching kernel and the differential background fitted with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..image import Box
from ..math import (
    chebyshev_coefficient_matrix,
    chebyshev_design,
    evaluate_chebyshev_grid,
    normalized_coordinates,
    polynomial_terms,
)

__all__ = ["DifferentialBackground", "SpatialKernel"]


@dataclass(frozen=True, eq=False)
class SpatialKernel:
    """``K(x, y) = sum_k a_k(x, y) B_k``, weights polynomial in position.

    The LSST ``LinearCombinationKernel`` with a polynomial spatial function.

    Parameters
    ----------
    basis : numpy.ndarray
        ``(n_basis, size, size)`` basis kernels; only the first has a non-zero sum.
    coefficients : numpy.ndarray
        ``(n_basis, n_terms)`` polynomial coefficients of each weight, terms as
        :func:`skydiff.math.polynomial_terms` in coordinates normalised over ``bounds``.
    bounds : tuple of float
        ``(x_min, y_min, x_max, y_max)`` in parent pixels.
    spatial_order : int
        Order of the polynomials.
    """

    basis: np.ndarray
    coefficients: np.ndarray
    bounds: tuple[float, float, float, float]
    spatial_order: int

    @property
    def size(self) -> int:
        """Kernel width (odd)."""
        return self.basis.shape[1]

    def weights(self, x: float, y: float) -> np.ndarray:
        """Basis weights at parent position ``(x, y)``."""
        u, v = normalized_coordinates(x, y, self.bounds)
        return self.coefficients @ polynomial_terms(u, v, self.spatial_order)

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        """The kernel at ``(x, y)`` (not renormalised: its sum is the photometric scale)."""
        return np.tensordot(self.weights(x, y), self.basis, axes=1)

    def kernel_sum(self, x: float, y: float) -> float:
        """Sum of the kernel at ``(x, y)``: the flux ratio of the two images."""
        return float(self.kernel_image(x, y).sum())

    def spatial_kernels(self) -> np.ndarray:
        """``(n_terms, size, size)``: one combined kernel per spatial polynomial term.

        ``K(x, y) = sum_m P_m(x, y) K_m``, so an image convolved with ``K`` is
        ``sum_m P_m * (image convolved with K_m)``: a few FFT convolutions
        instead of a kernel per pixel.
        """
        return np.tensordot(self.coefficients.T, self.basis, axes=1)


@dataclass(frozen=True, eq=False)
class DifferentialBackground:
    """A Chebyshev series over ``bounds``: the background difference of the two images."""

    solution: np.ndarray
    order: int
    bounds: tuple[float, float, float, float]

    def evaluate(self, bbox: Box) -> np.ndarray:
        """The background over ``bbox`` (float32)."""
        x = np.arange(bbox.x0, bbox.x_end, dtype=np.float64)
        y = np.arange(bbox.y0, bbox.y_end, dtype=np.float64)
        matrix = chebyshev_coefficient_matrix(self.solution, self.order)
        return evaluate_chebyshev_grid(matrix, self.bounds, x, y)

    def value(self, x: float, y: float) -> float:
        """The background at one position."""
        design = chebyshev_design(np.array([x]), np.array([y]), self.order, self.bounds)
        return float(design[0] @ self.solution)
