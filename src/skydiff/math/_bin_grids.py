"""Grids of bin values with empty (NaN) bins: filled, moved to the bin centres, fitted.

The array steps between binning an image and modelling it (LSST
``TractBackground``): a smooth fill of empty bins that continues gradients,
the move of each bin value from the centroid of its pixels to the bin centre,
and the RMS of the bins about a Chebyshev series that they constrain.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from ..errors import InvalidParameterError
from ._chebyshev import evaluate_chebyshev_grid, fit_chebyshev

__all__ = [
    "chebyshev_fit_rms",
    "constrained_chebyshev_order",
    "fill_empty_bins_thin_plate",
    "values_at_bin_centers",
]

#: Weight of first differences (relative to second) in the fill of empty bins: just
#: enough to make the fill unique where few bins are known.
_FILL_RIDGE = 1e-6
#: Least spread (bins squared) of bin centroids along an axis to estimate a gradient.
_MIN_SPREAD = 0.25


def fill_empty_bins_thin_plate(values: np.ndarray) -> np.ndarray:
    """Copy of ``values`` with NaN bins filled smoothly, planes reproduced exactly.

    The empty bins minimise the sum of squared second differences (x, y and
    cross) of the whole grid, known bins held fixed: a discrete thin plate,
    which continues gradients linearly into gaps and to the grid's edges.
    (:func:`skydiff.math.fill_empty_bins`, a harmonic fill with zero-gradient
    edges, bends a gradient across a gap that reaches the edge of the grid.)

    Parameters
    ----------
    values : numpy.ndarray
        ``(ny, nx)`` bin values, NaN (or infinite) for empty bins.

    Returns
    -------
    numpy.ndarray
        float64 copy with every bin finite.

    Raises
    ------
    InvalidParameterError
        If no bin is finite.
    """
    values = np.array(values, dtype=np.float64)
    empty = ~np.isfinite(values)
    if not empty.any():
        return values
    if empty.all():
        raise InvalidParameterError("every bin is empty: nothing to fill from")
    operator = _thin_plate_operator(np.arange(values.size).reshape(values.shape))
    unknown, known = operator[:, empty.ravel()], operator[:, ~empty.ravel()]
    rhs = -(known @ values[~empty])
    normal = (unknown.T @ unknown).tocsc()
    values[empty] = sparse_linalg.spsolve(normal, unknown.T @ rhs)
    return values


def _thin_plate_operator(index: np.ndarray) -> sparse.csc_matrix:
    """Second differences (x, y, cross) and a faint ridge of first differences of a grid."""
    root2, ridge = 2**0.5, _FILL_RIDGE**0.5
    return sparse.vstack(
        [
            _stencil(index, [(0, 0), (0, 1), (0, 2)], [1.0, -2.0, 1.0]),
            _stencil(index, [(0, 0), (1, 0), (2, 0)], [1.0, -2.0, 1.0]),
            _stencil(index, [(0, 0), (0, 1), (1, 0), (1, 1)], [root2, -root2, -root2, root2]),
            _stencil(index, [(0, 0), (0, 1)], [ridge, -ridge]),
            _stencil(index, [(0, 0), (1, 0)], [ridge, -ridge]),
        ]
    ).tocsc()


def _stencil(index: np.ndarray, offsets: list[tuple[int, int]], weights: list[float]):
    """Sparse rows ``sum_k w_k v[j + dy_k, i + dx_k]`` for every ``(j, i)`` where all fit."""
    height = index.shape[0] - max(dy for dy, _ in offsets)
    width = index.shape[1] - max(dx for _, dx in offsets)
    if height <= 0 or width <= 0:
        return sparse.csr_matrix((0, index.size))
    columns = [index[dy : dy + height, dx : dx + width].ravel() for dy, dx in offsets]
    n_rows = height * width
    rows = np.tile(np.arange(n_rows), len(offsets))
    data = np.repeat(np.asarray(weights, np.float64), n_rows)
    return sparse.csr_matrix((data, (rows, np.concatenate(columns))), shape=(n_rows, index.size))


def _neighbourhood_sum(array: np.ndarray) -> np.ndarray:
    """Sum over each element's 3x3 neighbourhood (zero outside the array)."""
    padded = np.pad(array, 1)
    ny, nx = array.shape
    return sum(padded[dy : dy + ny, dx : dx + nx] for dy in range(3) for dx in range(3))


def values_at_bin_centers(
    values: np.ndarray,
    *,
    x_centroids: np.ndarray,
    y_centroids: np.ndarray,
    x_centers: np.ndarray,
    y_centers: np.ndarray,
    bin_size: float,
    origin: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Bin values moved from their pixel centroids to the bin centres.

    A bin's statistic samples the background at the centroid of its good
    pixels. The local gradient, from a plane fitted to the valid bins of the
    3x3 neighbourhood at their centroids, carries it to the bin centre, so a
    partly covered bin of a sloped background agrees with a fully covered one.
    Exact for linear backgrounds; bins whose neighbourhood does not constrain
    a direction are not moved along it.

    Parameters
    ----------
    values : numpy.ndarray
        ``(ny, nx)`` bin values, NaN for empty bins.
    x_centroids, y_centroids : numpy.ndarray
        ``(ny, nx)`` centroids of each bin's good pixels.
    x_centers, y_centers : numpy.ndarray
        ``nx`` column and ``ny`` row centres of the bins.
    bin_size : float
        The unit of the plane fit (bins, so that the spread thresholds are in bins).
    origin : tuple of float
        ``(x, y)`` subtracted from all coordinates before the fit.

    Returns
    -------
    numpy.ndarray
        The moved values; NaN where ``values`` is.
    """
    valid = np.isfinite(values)
    scale = float(bin_size)
    x = np.where(valid, (x_centroids - origin[0]) / scale, 0.0)
    y = np.where(valid, (y_centroids - origin[1]) / scale, 0.0)
    grad_x, grad_y = _local_gradients(valid, x, y, np.where(valid, values, 0.0))
    gx, gy = np.meshgrid(x_centers, y_centers)
    shift_x = (gx - origin[0]) / scale - x
    shift_y = (gy - origin[1]) / scale - y
    moved = values + np.nan_to_num(grad_x) * shift_x + np.nan_to_num(grad_y) * shift_y
    return np.where(valid, moved, np.nan)


def _local_gradients(valid: np.ndarray, x: np.ndarray, y: np.ndarray, v: np.ndarray) -> tuple:
    """Gradients of planes fitted to ``v`` at ``(x, y)`` over each 3x3 neighbourhood.

    A direction its valid bins do not spread along gets a zero gradient (NaN
    where no bin is valid).
    """
    w = valid.astype(np.float64)
    s, sx, sy, sv = (_neighbourhood_sum(a) for a in (w, w * x, w * y, w * v))
    sxx, sxy, syy = (_neighbourhood_sum(a) for a in (w * x * x, w * x * y, w * y * y))
    sxv, syv = _neighbourhood_sum(w * x * v), _neighbourhood_sum(w * y * v)
    with np.errstate(invalid="ignore", divide="ignore"):
        cxx, cxy, cyy = sxx - sx * sx / s, sxy - sx * sy / s, syy - sy * sy / s
        dx, dy = sxv - sx * sv / s, syv - sy * sv / s
        det = cxx * cyy - cxy * cxy
        full = (cxx > _MIN_SPREAD) & (cyy > _MIN_SPREAD) & (det > 0.1 * cxx * cyy)
        grad_x = np.where(
            full, (cyy * dx - cxy * dy) / det, np.where(cxx > _MIN_SPREAD, dx / cxx, 0)
        )
        grad_y = np.where(
            full, (cxx * dy - cxy * dx) / det, np.where(cyy > _MIN_SPREAD, dy / cyy, 0)
        )
    return grad_x, grad_y


def constrained_chebyshev_order(values: np.ndarray, order: int) -> int:
    """The highest Chebyshev order up to ``order`` that the finite bins of ``values`` constrain.

    An order needs as many columns and rows with a finite bin plus one, and
    as many finite bins as it has triangular terms.
    """
    valid = np.isfinite(values)
    n_columns, n_rows = int(valid.any(axis=0).sum()), int(valid.any(axis=1).sum())
    possible = min(order, n_columns - 1, n_rows - 1)
    while possible > 0 and valid.sum() < (possible + 1) * (possible + 2) // 2:
        possible -= 1
    return max(possible, 0)


def _inverse_variance(variances: np.ndarray) -> np.ndarray | None:
    """Fit weights ``1 / variance``, or None (uniform) when some variance is not positive."""
    if not np.all(np.isfinite(variances) & (variances > 0)):
        return None
    return 1.0 / variances


def chebyshev_fit_rms(
    values: np.ndarray,
    variances: np.ndarray,
    *,
    x_centers: np.ndarray,
    y_centers: np.ndarray,
    bounds: tuple[float, float, float, float],
    order: int,
) -> float:
    """RMS of bins about a Chebyshev fit of up to ``order`` (their smoothness).

    The order is lowered to what the finite bins constrain
    (:func:`constrained_chebyshev_order`); the fit is weighted by the inverse
    variances when all are positive.

    Parameters
    ----------
    values, variances : numpy.ndarray
        ``(ny, nx)`` bin values (NaN for empty bins) and their variances.
    x_centers, y_centers : numpy.ndarray
        ``nx`` column and ``ny`` row centres of the bins.
    bounds : tuple of float
        ``(x_min, y_min, x_max, y_max)``, the domain of the series.
    order : int
        Highest order (triangular terms).

    Returns
    -------
    float
        The RMS residual of the finite bins; NaN when there is none.
    """
    valid = np.isfinite(values)
    if not valid.any():
        return math.nan
    order = constrained_chebyshev_order(values, order)
    xx, yy = np.meshgrid(x_centers, y_centers)
    coeffs = fit_chebyshev(
        xx[valid],
        yy[valid],
        values[valid],
        order,
        bounds,
        weights=_inverse_variance(variances[valid]),
    )
    model = evaluate_chebyshev_grid(coeffs, bounds, x_centers, y_centers)
    return float(np.sqrt(np.mean((values - model)[valid] ** 2)))
