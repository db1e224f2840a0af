"""Pixel-to-pixel transforms between two WCSs, exact and on an interpolated coarse grid.

Warping needs, for every destination pixel, the source pixel position that
sees the same point of the sky. Evaluating two WCSs (one with SIP or TPV
distortion, inverted iteratively) at every pixel is slow, so, as in LSST afw
``warpImage`` (``interpLength``), the exact transform is evaluated on a
coarse grid of nodes every ``interp_length`` destination pixels and
interpolated in between (linearly, or with Catmull-Rom cubics). The grid also
carries the Jacobian ``|det d(source) / d(destination)|`` (the destination
pixel's area in source pixels), from second-order differences of the nodes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numba
import numpy as np
from astropy.wcs import WCS

from ..errors import InvalidParameterError
from ..image import Box

__all__ = [
    "GRID_INTERPOLATIONS",
    "CoordinateGrid",
    "destination_to_source",
    "interpolation_error",
    "make_coordinate_grid",
]

log = logging.getLogger(__name__)

#: Interpolation of the coarse grid between nodes.
GRID_INTERPOLATIONS: tuple[str, ...] = ("linear", "cubic")

#: A round trip source pixel -> sky that misses by more than this many source
#: pixels marks a node as invalid (the iterative inversion diverged).
_ROUND_TRIP_TOLERANCE = 1e-3


def destination_to_source(
    src_wcs: WCS, dst_wcs: WCS, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact source parent-pixel position of destination parent pixels ``(x, y)``.

    Positions that have no valid source pixel (beyond the projection's
    hemisphere, or where the iterative inversion of a distortion diverges,
    caught by a round trip to the sky) are NaN.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ra, dec = dst_wcs.all_pix2world(x, y, 0)
    xs, ys = src_wcs.all_world2pix(ra, dec, 0, tolerance=1e-10, maxiter=50, quiet=True)
    ra2, dec2 = src_wcs.all_pix2world(xs, ys, 0)
    scale = np.sqrt(abs(np.linalg.det(src_wcs.celestial.pixel_scale_matrix)))
    dra = (ra2 - ra + 180.0) % 360.0 - 180.0
    miss = np.hypot(dra * np.cos(np.deg2rad(dec)), dec2 - dec) / scale
    with np.errstate(invalid="ignore"):
        bad = ~(miss <= _ROUND_TRIP_TOLERANCE)
    xs, ys = np.where(bad, np.nan, xs), np.where(bad, np.nan, ys)
    return xs, ys


@dataclass(frozen=True)
class CoordinateGrid:
    """Source positions and Jacobian at coarse nodes over a destination box.

    Nodes sit at the destination parent coordinates that are multiples of
    ``h = interp_length``, from at least one node before the box to two past
    it, so the positions of a pixel do not depend on the box it is warped
    in: warping a sub-box gives exactly the pixels of a larger warp.

    Attributes
    ----------
    bbox : Box
        Destination box the grid covers.
    interp_length : int
        Node spacing ``h`` in destination pixels.
    interpolation : str
        ``"linear"`` or ``"cubic"`` (Catmull-Rom) between nodes.
    src_x, src_y : numpy.ndarray
        ``(ny, nx)`` source parent-pixel coordinates at the nodes (NaN: none).
    jacobian : numpy.ndarray
        ``(ny, nx)`` destination pixel area in source pixels at the nodes.
    max_error : float
        Largest interpolation error (source pixels) found by
        :func:`interpolation_error` when the grid was made; NaN if unchecked.
    """

    bbox: Box
    interp_length: int
    interpolation: str
    src_x: np.ndarray
    src_y: np.ndarray
    jacobian: np.ndarray
    max_error: float = math.nan

    @property
    def x_origin(self) -> int:
        """Destination parent x of the first node column."""
        return _first_node(self.bbox.x0, self.interp_length)

    @property
    def y_origin(self) -> int:
        """Destination parent y of the first node row."""
        return _first_node(self.bbox.y0, self.interp_length)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Interpolated ``(src_x, src_y, jacobian)`` at destination parent ``(x, y)``.

        Uses the same compiled interpolation formulae as the warper (points
        beyond the box are extrapolated from the outer cells).
        """
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        inv_h = 1.0 / self.interp_length
        tx = ((x - self.x_origin) * inv_h).ravel()
        ty = ((y - self.y_origin) * inv_h).ravel()
        cubic = self.interpolation == "cubic"
        out = [
            _evaluate_points(np.ascontiguousarray(g), tx, ty, cubic).reshape(x.shape)
            for g in (self.src_x, self.src_y, self.jacobian)
        ]
        return out[0], out[1], out[2]


def _first_node(start: int, h: int) -> int:
    """The multiple of ``h`` below ``start`` by at least ``h``."""
    return (start // h - 1) * h


def _node_coordinates(start: int, size: int, h: int) -> np.ndarray:
    """Multiples of ``h`` from :func:`_first_node` to at least ``start + size - 1 + 2 h``."""
    first = _first_node(start, h)
    n_nodes = (start + size - 1 - first) // h + 3
    return first + h * np.arange(n_nodes, dtype=np.float64)


def make_coordinate_grid(
    src_wcs: WCS,
    dst_wcs: WCS,
    bbox: Box,
    *,
    interp_length: int = 10,
    interpolation: str = "linear",
    max_error: float | None = None,
) -> CoordinateGrid:
    """Evaluate the exact destination -> source transform on a coarse grid over ``bbox``.

    Parameters
    ----------
    src_wcs, dst_wcs : astropy.wcs.WCS
        Source and destination WCS (parent pixel frames).
    bbox : Box
        Destination box; must not be empty.
    interp_length : int
        Node spacing in destination pixels (LSST ``interpLength``); 1 makes
        the interpolation exact at every pixel.
    interpolation : {"linear", "cubic"}
        Interpolation between nodes.
    max_error : float, optional
        If given, check the grid with :func:`interpolation_error` and halve
        the node spacing until the error is at most ``max_error`` source
        pixels (or the spacing is 1). Each halving quadruples the nodes; a
        smooth WCS (TAN, SIP, TPV of a CCD) meets 1e-3 px at spacing 10.

    Returns
    -------
    CoordinateGrid
        Nodes, source positions and Jacobian; ``interp_length`` is the spacing
        used and ``max_error`` the error found (NaN when not checked).
    """
    check_grid_options(interp_length, interpolation)
    if bbox.is_empty:
        raise InvalidParameterError(f"bbox must not be empty, got {bbox}")
    if max_error is not None and not max_error > 0:
        raise InvalidParameterError(f"max_error must be positive, got {max_error!r}")
    h = int(interp_length)
    while True:
        grid = _grid(src_wcs, dst_wcs, bbox, h, interpolation)
        if max_error is None:
            return grid
        error = interpolation_error(grid, src_wcs, dst_wcs)
        if error <= max_error or h == 1:
            return replace(grid, max_error=error)
        log.info(
            "transform grid with spacing %d errs by %.2g px (> %.2g): halving it",
            h,
            error,
            max_error,
        )
        h = max(1, h // 2)


def _grid(src_wcs: WCS, dst_wcs: WCS, bbox: Box, h: int, interpolation: str) -> CoordinateGrid:
    xn = _node_coordinates(bbox.x0, bbox.width, h)
    yn = _node_coordinates(bbox.y0, bbox.height, h)
    gx, gy = np.meshgrid(xn, yn)
    src_x, src_y = destination_to_source(src_wcs, dst_wcs, gx, gy)
    dxdy, dxdx = np.gradient(src_x, float(h), edge_order=2)
    dydy, dydx = np.gradient(src_y, float(h), edge_order=2)
    jacobian = np.abs(dxdx * dydy - dxdy * dydx)
    return CoordinateGrid(
        bbox=bbox,
        interp_length=h,
        interpolation=interpolation,
        src_x=np.ascontiguousarray(src_x),
        src_y=np.ascontiguousarray(src_y),
        jacobian=np.ascontiguousarray(jacobian),
    )


#: Where in a cell (fraction of the node spacing, on both axes) the error is
#: checked: the centre, where linear interpolation errs most, and near
#: ``0.5 -+ 0.29``, where a Catmull-Rom cubic does (its error vanishes at the centre).
_CHECK_FRACTIONS = (0.5, 0.21, 0.79)


def interpolation_error(
    grid: CoordinateGrid, src_wcs: WCS, dst_wcs: WCS, *, max_cells: int = 64
) -> float:
    """Largest distance (source pixels) between interpolated and exact source positions.

    Checked at three points on the diagonal of each cell (its centre and at
    0.21 and 0.79 of the spacing, where linear and cubic interpolation err
    most):
    of every cell when there are at most ``max_cells`` per axis, else of a
    regular subset of about ``max_cells`` per axis including both ends
    (distortions are smooth polynomials, so a subset finds the maximum).
    Points without a valid transform are ignored; 0 when none is left.
    """
    box, h = grid.bbox, grid.interp_length
    cells = []
    for size in (box.width, box.height):
        n_cells = max(1, math.ceil((size - 1) / h))
        cells.append(np.unique(np.linspace(0, n_cells - 1, min(n_cells, max_cells)).round()))
    cx, cy = np.meshgrid(*cells)
    points = [
        (
            np.minimum(box.x0 + h * (cx + f), box.x_end - 1.0),
            np.minimum(box.y0 + h * (cy + f), box.y_end - 1.0),
        )
        for f in _CHECK_FRACTIONS
    ]
    x = np.concatenate([p[0].ravel() for p in points])
    y = np.concatenate([p[1].ravel() for p in points])
    exact_x, exact_y = destination_to_source(src_wcs, dst_wcs, x, y)
    approx_x, approx_y, _ = grid.evaluate(x, y)
    error = np.hypot(approx_x - exact_x, approx_y - exact_y)
    error = error[np.isfinite(error)]
    return float(error.max()) if error.size else 0.0


def check_grid_options(interp_length: int, interpolation: str) -> None:
    """Raise :class:`InvalidParameterError` for a bad node spacing or interpolation name."""
    if (
        isinstance(interp_length, bool)
        or not isinstance(interp_length, int | np.integer)
        or interp_length < 1
    ):
        raise InvalidParameterError(
            f"interp_length must be a positive integer, got {interp_length!r}"
        )
    if interpolation not in GRID_INTERPOLATIONS:
        raise InvalidParameterError(
            f"grid interpolation must be one of {GRID_INTERPOLATIONS}, got {interpolation!r}"
        )


# -- compiled interpolation, shared with the warping kernel --------------------------------
#
# Along each axis a value at node coordinate ``m + f`` (``0 <= f < 1``) combines
# the nodes ``m - 1 .. m + 2`` with weights from :func:`node_weights`: linear
# ``(0, 1 - f, f, 0)`` or Catmull-Rom. Zero weights are skipped, so nodes past
# the ends are never read and a NaN node does not spoil values it has no
# weight in (the nodes exactly at a grid line).


@numba.njit(cache=True, inline="always")
def locate(t: float, n_nodes: int, cubic: bool) -> tuple[int, float]:
    """Interval ``m`` and fraction ``f`` of node coordinate ``t``, clamped to the grid."""
    m = math.floor(t)
    if cubic:
        m = min(max(m, 1), n_nodes - 3)
    else:
        m = min(max(m, 0), n_nodes - 2)
    return m, t - m


@numba.njit(cache=True, inline="always")
def node_weights(f: float, cubic: bool, w: np.ndarray) -> None:
    """Weights of nodes ``m - 1, m, m + 1, m + 2`` at fraction ``f`` past node ``m``."""
    if cubic:
        f2 = f * f
        f3 = f2 * f
        w[0] = 0.5 * (-f3 + 2.0 * f2 - f)
        w[1] = 0.5 * (3.0 * f3 - 5.0 * f2 + 2.0)
        w[2] = 0.5 * (-3.0 * f3 + 4.0 * f2 + f)
        w[3] = 0.5 * (f3 - f2)
    else:
        w[0] = 0.0
        w[1] = 1.0 - f
        w[2] = f
        w[3] = 0.0


@numba.njit(cache=True, inline="always")
def combine(values: np.ndarray, m: int, w: np.ndarray) -> float:
    """``sum(w[q] values[m - 1 + q])`` over the non-zero weights."""
    value = 0.0
    for q in range(4):
        if w[q] != 0.0:
            value += w[q] * values[m - 1 + q]
    return value


@numba.njit(cache=True)
def grid_row(
    grid: np.ndarray,
    m: int,
    f: float,
    cubic: bool,
    out: np.ndarray,
    k0: int,
    k1: int,
    w: np.ndarray,
) -> None:
    """Interpolate node columns ``k0 .. k1 - 1`` of ``grid`` at node row ``m + f`` into ``out``.

    ``out`` has one slot per node column; ``w`` is scratch of length 4.
    """
    node_weights(f, cubic, w)
    for k in range(max(k0, 0), min(k1, grid.shape[1])):
        value = 0.0
        for q in range(4):
            if w[q] != 0.0:
                value += w[q] * grid[m - 1 + q, k]
        out[k] = value


@numba.njit(cache=True)
def interpolate_columns(
    nodes: np.ndarray,
    h: int,
    offset: int,
    c0: int,
    c1: int,
    cubic: bool,
    w: np.ndarray,
    out: np.ndarray,
) -> None:
    """Values at box columns ``c0 .. c1 - 1`` into ``out[0 .. c1 - c0 - 1]``.

    Column ``c`` of the box sits ``offset + c`` pixels past node 0, at node
    coordinate ``(offset + c) / h``, computed in integers so that columns on
    grid lines take the node value exactly.
    """
    inv_h = 1.0 / h
    for c in range(c0, c1):
        u = offset + c
        m = u // h
        node_weights((u - m * h) * inv_h, cubic, w)
        out[c - c0] = combine(nodes, m, w)


@numba.njit(parallel=True, cache=True)
def _evaluate_points(grid: np.ndarray, tx: np.ndarray, ty: np.ndarray, cubic: bool) -> np.ndarray:
    ny, nx = grid.shape
    out = np.empty(tx.size)
    for i in numba.prange(tx.size):
        row = np.empty(nx)
        w = np.empty(4)
        my, fy = locate(ty[i], ny, cubic)
        mx, fx = locate(tx[i], nx, cubic)
        grid_row(grid, my, fy, cubic, row, mx - 1, mx + 3, w)
        node_weights(fx, cubic, w)
        out[i] = combine(row, mx, w)
    return out
