"""Two-dimensional Chebyshev series over a box: least-squares fits and fast evaluation."""

from __future__ import annotations

import numpy as np
from numpy.polynomial import chebyshev

__all__ = [
    "chebyshev_coefficient_matrix",
    "chebyshev_design",
    "evaluate_chebyshev_grid",
    "fit_chebyshev",
]


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    half = 0.5 * (high - low)
    return (np.asarray(values, np.float64) - 0.5 * (high + low)) / (half if half > 0 else 1.0)


def _terms(order: int) -> list[tuple[int, int]]:
    """``(i, j)`` of ``T_i(x) T_j(y)`` with ``i + j <= order``, LSST's triangular set."""
    return [(i, total - i) for total in range(order + 1) for i in range(total, -1, -1)]


def chebyshev_design(
    x: np.ndarray, y: np.ndarray, order: int, bounds: tuple[float, float, float, float]
) -> np.ndarray:
    """Design matrix ``(n_points, n_terms)`` of the triangular Chebyshev basis.

    ``bounds = (x_min, y_min, x_max, y_max)`` maps onto ``[-1, 1]``.
    """
    u = _scaled(x, bounds[0], bounds[2])
    v = _scaled(y, bounds[1], bounds[3])
    tu = chebyshev.chebvander(u, order)
    tv = chebyshev.chebvander(v, order)
    return np.stack([tu[..., i] * tv[..., j] for i, j in _terms(order)], axis=-1)


def fit_chebyshev(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    order: int,
    bounds: tuple[float, float, float, float],
    *,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted least-squares coefficients of the triangular Chebyshev basis.

    Returns the ``(order + 1, order + 1)`` coefficient matrix ``C[j, i]`` of
    ``T_i(x) T_j(y)`` (zero where ``i + j > order``).
    """
    design = chebyshev_design(x, y, order, bounds)
    w = np.ones(len(values)) if weights is None else np.sqrt(np.asarray(weights, np.float64))
    solution, *_ = np.linalg.lstsq(design * w[:, None], np.asarray(values) * w, rcond=None)
    return chebyshev_coefficient_matrix(solution, order)


def chebyshev_coefficient_matrix(solution: np.ndarray, order: int) -> np.ndarray:
    """``C[j, i]`` of ``T_i(x) T_j(y)`` from coefficients in :func:`chebyshev_design` order."""
    coeffs = np.zeros((order + 1, order + 1))
    for (i, j), c in zip(_terms(order), solution, strict=True):
        coeffs[j, i] = c
    return coeffs


def evaluate_chebyshev_grid(
    coeffs: np.ndarray,
    bounds: tuple[float, float, float, float],
    x_out: np.ndarray,
    y_out: np.ndarray,
) -> np.ndarray:
    """``sum C[j, i] T_i(x) T_j(y)`` on the grid ``y_out x x_out`` (float32).

    Separable: ``T(y) @ C @ T(x)^T``, two small matrix products.
    """
    order = coeffs.shape[0] - 1
    tx = chebyshev.chebvander(_scaled(x_out, bounds[0], bounds[2]), order)
    ty = chebyshev.chebvander(_scaled(y_out, bounds[1], bounds[3]), order)
    return (ty.astype(np.float32) @ coeffs.astype(np.float32)) @ tx.T.astype(np.float32)
