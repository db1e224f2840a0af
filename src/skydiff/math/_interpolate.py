"""Smooth interpolation of a coarse grid of values back to full resolution."""

from __future__ import annotations

import numba
import numpy as np
from scipy.interpolate import Akima1DInterpolator, CubicSpline, PPoly

__all__ = ["INTERPOLATIONS", "interpolate_grid"]

#: Interpolation styles (LSST ``interpStyle`` names in brackets).
INTERPOLATIONS = ("akima", "natural", "linear", "constant")


def _ppoly(x: np.ndarray, values: np.ndarray, kind: str) -> PPoly:
    """Piecewise polynomial through ``values`` at ``x`` along the first axis."""
    if x.size == 2 and kind in ("akima", "natural"):
        kind = "linear"
    if kind == "akima":
        return Akima1DInterpolator(x, values, axis=0, extrapolate=True)
    if kind == "natural":
        return CubicSpline(x, values, axis=0, bc_type="natural", extrapolate=True)
    slopes = np.diff(values, axis=0) / np.diff(x).reshape(-1, *([1] * (values.ndim - 1)))
    return PPoly(np.stack([slopes, values[:-1]]), x, extrapolate=True)


@numba.njit(parallel=True, cache=True)
def _evaluate_rows(coeffs: np.ndarray, breaks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Evaluate a PPoly whose trailing axis is the image columns, at rows ``y``."""
    order, n_segments, width = coeffs.shape
    out = np.empty((y.size, width), np.float32)
    for row in numba.prange(y.size):
        segment = np.searchsorted(breaks, y[row], side="right") - 1
        segment = min(max(segment, 0), n_segments - 1)
        t = y[row] - breaks[segment]
        # Horner's rule a row at a time: contiguous coefficient rows, vectorisable
        value = np.zeros(width)
        for k in range(order):
            c = coeffs[k, segment]
            for col in range(width):
                value[col] = value[col] * t + c[col]
        for col in range(width):
            out[row, col] = value[col]
    return out


def interpolate_grid(
    values: np.ndarray,
    x_centers: np.ndarray,
    y_centers: np.ndarray,
    x_out: np.ndarray,
    y_out: np.ndarray,
    *,
    kind: str = "akima",
) -> np.ndarray:
    """Interpolate ``values[j, i]`` known at ``(x_centers[i], y_centers[j])`` onto a grid.

    Separable: first along x for every row of the grid, then along y for
    every output column, as LSST's ``BackgroundMI`` does. Beyond the outer
    centres the end polynomials are extrapolated. With one centre along an
    axis the result is constant along it; with two, linear.

    Parameters
    ----------
    values : numpy.ndarray
        ``(ny, nx)`` finite grid values.
    x_centers, y_centers : numpy.ndarray
        Increasing coordinates of the grid columns and rows.
    x_out, y_out : numpy.ndarray
        Output column and row coordinates.
    kind : {"akima", "natural", "linear", "constant"}
        Interpolation style (``constant``: nearest grid value).

    Returns
    -------
    numpy.ndarray
        ``(len(y_out), len(x_out))`` float32 image.
    """
    if kind not in INTERPOLATIONS:
        raise ValueError(f"kind must be one of {INTERPOLATIONS}, got {kind!r}")
    values = np.asarray(values, np.float64)
    x_out = np.asarray(x_out, np.float64)
    y_out = np.asarray(y_out, np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("grid values must be finite (fill empty bins first)")
    if kind == "constant":
        ix = np.abs(x_out[:, None] - x_centers[None, :]).argmin(axis=1)
        iy = np.abs(y_out[:, None] - y_centers[None, :]).argmin(axis=1)
        return values[np.ix_(iy, ix)].astype(np.float32)
    if x_centers.size == 1:
        rows = np.repeat(values, x_out.size, axis=1)
    else:
        rows = _ppoly(np.asarray(x_centers, np.float64), values.T, kind)(x_out).T
    if y_centers.size == 1:
        return np.repeat(rows, y_out.size, axis=0).astype(np.float32)
    spline = _ppoly(np.asarray(y_centers, np.float64), np.ascontiguousarray(rows), kind)
    return _evaluate_rows(np.ascontiguousarray(spline.c), spline.x, y_out)
