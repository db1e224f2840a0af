"""Polynomials in position over a box, the spatial model of PSFs and kernels."""

from __future__ import annotations

import numpy as np

__all__ = ["n_polynomial_terms", "normalized_coordinates", "polynomial_terms"]


def n_polynomial_terms(order: int) -> int:
    """Number of monomials ``x^i y^j`` with ``i + j <= order``."""
    return (order + 1) * (order + 2) // 2


def normalized_coordinates(
    x: np.ndarray | float, y: np.ndarray | float, bounds: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``(x, y)`` from ``bounds = (x_min, y_min, x_max, y_max)`` onto ``[-1, 1]``."""
    x_min, y_min, x_max, y_max = bounds
    sx = 2.0 / (x_max - x_min) if x_max > x_min else 0.0
    sy = 2.0 / (y_max - y_min) if y_max > y_min else 0.0
    u = (np.asarray(x, dtype=np.float64) - x_min) * sx - (1.0 if sx else 0.0)
    v = (np.asarray(y, dtype=np.float64) - y_min) * sy - (1.0 if sy else 0.0)
    return u, v


def polynomial_terms(u: np.ndarray | float, v: np.ndarray | float, order: int) -> np.ndarray:
    """Monomials ``u^i v^j`` with ``i + j <= order``, in the order 1, u, v, u^2, uv, v^2, ...

    Returns an array of shape ``u.shape + (n_terms,)``.
    """
    u, v = np.broadcast_arrays(np.asarray(u, np.float64), np.asarray(v, np.float64))
    terms = [u ** (total - j) * v**j for total in range(order + 1) for j in range(total + 1)]
    return np.stack(terms, axis=-1)
