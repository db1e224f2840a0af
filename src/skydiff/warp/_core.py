"""Compiled warping of image, variance and mask arrays (array layer).

For each destination pixel the source position ``(xs, ys)`` (source array
coordinates) comes from a :class:`CoordinateGrid`, interpolated row by row
inside the kernel, so no full-size coordinate array is ever allocated. With
``ix = floor(xs)``, ``iy = floor(ys)`` and a kernel of half-width ``n``
(:func:`kernel_half_width`) the *kernel footprint* is the ``2n x 2n`` source
pixels ``ix - n + 1 .. ix + n`` by ``iy - n + 1 .. iy + n``; the *bilinear
footprint* is the 2 x 2 pixels ``ix .. ix + 1`` by ``iy .. iy + 1`` that have
a non-zero bilinear weight. Then:

- **image** ``sum(w I) / sum(w)`` and **variance** ``sum(w^2 V) / sum(w)^2``
  over the kernel footprint, with separable taps ``w = wx * wy``; both times
  the Jacobian ``J`` (destination pixel area in source pixels) and ``J^2``
  when conserving flux;
- **NO_DATA** (image NaN, variance +inf) when the kernel footprint is not
  wholly inside the source array, or holds a pixel with the NO_DATA bit or a
  non-finite image or variance (found as a non-finite sum, whatever its
  weight), or the position is undefined (NaN);
- **mask**: the OR of the source mask over the bilinear footprint, plus the
  ``grow_bits`` (EDGE by default, LSST ``growFullMask``) ORed over the whole
  kernel footprint. A destination pixel whose kernel footprint leaves the
  source carries NO_DATA only.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import InvalidParameterError
from ..image import Box
from ._lanczos import kernel_half_width, kernel_weight_table, table_taps
from ._transform import CoordinateGrid, grid_row, interpolate_columns

__all__ = ["MAX_FOOTPRINT_BITS", "as_int32", "footprint_flags", "warp_arrays"]


def as_int32(bits: int) -> np.int32:
    """A bit pattern as an int32 scalar (bit 31 becomes the sign bit)."""
    return np.array(int(bits) & 0xFFFFFFFF, dtype=np.uint32).view(np.int32)[()]


#: At most this many distinct mask bits (NO_DATA and the grown planes) are
#: tracked over the kernel footprint; they are packed into one byte per pixel.
MAX_FOOTPRINT_BITS = 8


@numba.njit(parallel=True, cache=True)
def _encode_bits(mask: np.ndarray, bits: np.ndarray, union: np.int32) -> tuple[np.ndarray, bool]:
    """Per pixel, a byte whose bit ``j`` says whether mask bit ``bits[j]`` is set."""
    height, width = mask.shape
    codes = np.zeros((height, width), np.uint8)
    found = np.zeros(height, np.bool_)
    for y in numba.prange(height):
        for x in range(width):
            v = mask[y, x] & union
            if v != 0:
                code = 0
                for j in range(bits.size):
                    if v & bits[j]:
                        code |= 1 << j
                codes[y, x] = code
                found[y] = True
    return codes, found.any()


@numba.njit(parallel=True, cache=True)
def _or_rows(flags: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """OR of ``flags`` over ``[i - n + 1, i + n]`` along each row, and which rows have any.

    The windows holding pixel ``x`` are those of ``i = x - n .. x + n - 1``,
    so each set pixel is scattered to them (flags are sparse).
    """
    height, width = flags.shape
    rows = np.zeros_like(flags)
    row_set = np.zeros(height, np.bool_)
    for y in numba.prange(height):
        for x in range(width):
            f = flags[y, x]
            if f != 0:
                row_set[y] = True
                for i in range(max(x - n, 0), min(x + n - 1, width - 1) + 1):
                    rows[y, i] |= f
    return rows, row_set


@numba.njit(parallel=True, cache=True)
def _or_columns(rows: np.ndarray, row_set: np.ndarray, n: int, out: np.ndarray) -> None:
    """``out`` = OR of ``rows`` over ``[j - n + 1, j + n]`` along each column."""
    height, width = rows.shape
    for y in numba.prange(height):
        for x in range(width):
            out[y, x] = 0
        for yy in range(max(y - n + 1, 0), min(y + n, height - 1) + 1):
            if row_set[yy]:
                for x in range(width):
                    out[y, x] |= rows[yy, x]


def footprint_flags(
    mask: np.ndarray, *, bits: int, half_width: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Which of the mask ``bits`` are set anywhere in the kernel footprint anchored at each pixel.

    The footprint of a destination pixel with ``floor(xs), floor(ys) = (i, j)``
    is columns ``i - n + 1 .. i + n`` and rows ``j - n + 1 .. j + n`` of the
    source, ``n = half_width``.

    Returns
    -------
    tuple of numpy.ndarray, or None
        ``(codes, table)``: a uint8 array of the mask's shape and a 256-entry
        int32 table with ``table[codes[j, i]]`` the OR of ``mask & bits`` over
        the footprint anchored at ``(i, j)``. None when no pixel has any of
        the bits (nothing to grow).

    Raises
    ------
    InvalidParameterError
        If ``bits`` has more than :data:`MAX_FOOTPRINT_BITS` bits set.
    """
    single = [1 << b for b in range(32) if (int(bits) >> b) & 1]
    if len(single) > MAX_FOOTPRINT_BITS:
        raise InvalidParameterError(
            f"at most {MAX_FOOTPRINT_BITS} mask planes can be grown over the kernel footprint, "
            f"got {len(single)}"
        )
    codes, found = _encode_bits(
        np.ascontiguousarray(mask, np.int32),
        np.array([as_int32(b) for b in single], np.int32),
        as_int32(bits),
    )
    if not found:
        return None
    rows, row_set = _or_rows(codes, half_width)  # two calls: the passes must not fuse
    _or_columns(rows, row_set, half_width, codes)
    table = np.zeros(256, np.int64)
    for j, bit in enumerate(single):
        table[(np.arange(256) >> j) & 1 == 1] |= bit
    return codes, (table & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


#: Destination pixels are processed in tiles of this many rows and columns, so
#: that the source pixels a tile reads stay in the CPU cache whatever the rotation.
TILE_SHAPE = (64, 64)


#: Fast-math flags of the warping loops: reassociation lets the tap sums
#: vectorise (2-3x faster); NaN and infinity semantics are kept (no ``nnan``/``ninf``).
_FASTMATH = {"reassoc", "nsz", "contract"}


@numba.njit(cache=True, inline="always")
def _warp_pixel(
    image: np.ndarray,
    variance: np.ndarray,
    table: np.ndarray,
    n: int,
    xs: float,
    ys: float,
    wx: np.ndarray,
    wy: np.ndarray,
    wx2: np.ndarray,
) -> tuple[float, float]:
    """Normalised ``sum(w I)`` and ``sum(w^2 V)`` at an interior position.

    Taps and each row's sum over x are float32 (2 to 10 terms; 1.5x faster
    than float64), the sum over rows float64.
    """
    taps = 2 * n
    ix = int(xs)
    iy = int(ys)
    table_taps(table, xs - ix, wx, taps)
    table_taps(table, ys - iy, wy, taps)
    for k in range(taps):
        wx2[k] = wx[k] * wx[k]
    x_first = ix - n + 1
    acc_i = 0.0
    acc_v = 0.0
    for q in range(taps):
        yy = iy - n + 1 + q
        s_i = np.float32(0.0)
        s_v = np.float32(0.0)
        for k in range(taps):
            s_i += wx[k] * image[yy, x_first + k]
            s_v += wx2[k] * variance[yy, x_first + k]
        acc_i += wy[q] * s_i
        acc_v += wy[q] * wy[q] * s_v
    return acc_i, acc_v


# Specialisations with a literal half-width: the tap loops get constant trip
# counts and compile to vector code. Compiled apart from the parallel loop,
# which keeps its compile time down; LLVM inlines them there.


@numba.njit(cache=True, fastmath=_FASTMATH)
def _warp_pixel_lanczos3(image, variance, table, xs, ys, wx, wy, wx2):
    return _warp_pixel(image, variance, table, 3, xs, ys, wx, wy, wx2)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _warp_pixel_bilinear(image, variance, table, xs, ys, wx, wy, wx2):
    return _warp_pixel(image, variance, table, 1, xs, ys, wx, wy, wx2)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _warp_pixel_generic(image, variance, table, n, xs, ys, wx, wy, wx2):
    return _warp_pixel(image, variance, table, n, xs, ys, wx, wy, wx2)


@numba.njit(cache=True, inline="always")
def _warp_pixel_n(
    image: np.ndarray,
    variance: np.ndarray,
    table: np.ndarray,
    n: int,
    xs: float,
    ys: float,
    wx: np.ndarray,
    wy: np.ndarray,
    wx2: np.ndarray,
) -> tuple[float, float]:
    """:func:`_warp_pixel` through its specialisation for half-width ``n``."""
    if n == 3:
        return _warp_pixel_lanczos3(image, variance, table, xs, ys, wx, wy, wx2)
    if n == 1:
        return _warp_pixel_bilinear(image, variance, table, xs, ys, wx, wy, wx2)
    return _warp_pixel_generic(image, variance, table, n, xs, ys, wx, wy, wx2)


@numba.njit(cache=True, inline="always")
def _bilinear_or(mask: np.ndarray, xs: float, ys: float) -> np.int32:
    """OR of the mask over the pixels with a non-zero bilinear weight at ``(xs, ys)``."""
    ix = int(xs)
    iy = int(ys)
    bits = mask[iy, ix]
    if xs > ix:
        bits |= mask[iy, ix + 1]
    if ys > iy:
        bits |= mask[iy + 1, ix]
        if xs > ix:
            bits |= mask[iy + 1, ix + 1]
    return bits


@numba.njit(cache=True, inline="always")
def _grown_bits(
    codes: np.ndarray, code_x0: int, code_y0: int, code_bits: np.ndarray, xs: float, ys: float
) -> np.int32:
    """Mask bits set anywhere in the kernel footprint at ``(xs, ys)`` (:func:`footprint_flags`)."""
    cy = int(ys) - code_y0
    cx = int(xs) - code_x0
    if 0 <= cy < codes.shape[0] and 0 <= cx < codes.shape[1]:
        return code_bits[codes[cy, cx]]
    return code_bits[0]


@numba.njit(cache=True, inline="always")
def _grid_at_row(
    grid: np.ndarray, r: int, c0: int, c1: int, spacing: tuple, scratch: tuple, out: np.ndarray
) -> None:
    """Interpolate ``grid`` at box row ``r``, columns ``c0 .. c1 - 1``, into ``out``.

    ``spacing`` is ``(h, x_offset, y_offset, cubic)``: box column ``c`` and
    row ``r`` lie ``x_offset + c`` and ``y_offset + r`` pixels past node 0,
    at least ``h``; positions are computed in integers.
    """
    h, x_offset, y_offset, cubic = spacing
    nodes, w = scratch
    u = y_offset + r
    m = u // h
    k0 = (x_offset + c0) // h - 1  # node columns serving columns c0 .. c1 - 1
    k1 = (x_offset + c1 - 1) // h + 3
    grid_row(grid, m, (u - m * h) / h, cubic, nodes, k0, k1, w)
    interpolate_columns(nodes, h, x_offset, c0, c1, cubic, w, out)


@numba.njit(cache=True, inline="always")
def _store(out: tuple, row: int, col: int, value: float, var: float, bits: np.int32) -> None:
    out[0][row, col] = value
    out[1][row, col] = var
    out[2][row, col] = bits


@numba.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _warp_tiles(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    grown: tuple,
    table: np.ndarray,
    n: int,
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    grid_j: np.ndarray,
    spacing: tuple,
    conserve_flux: bool,
    no_data: np.int32,
    out: tuple,
    box: tuple,
    tile_shape: tuple,
) -> None:
    """Fill the box ``out[:][row0:row0 + n_rows, col0:col0 + n_cols]`` (the module docstring).

    ``grown`` is ``(codes, code_x0, code_y0, code_bits, has_codes)`` from
    :func:`footprint_flags`; ``grid_x``, ``grid_y`` hold source array
    coordinates and ``grid_j`` the Jacobian at the nodes, placed by
    ``spacing`` (:func:`_grid_at_row`); ``box`` is ``(row0, col0, n_rows,
    n_cols)``. Parallel over tiles.
    """
    codes, code_x0, code_y0, code_bits, has_codes = grown
    row0, col0, n_rows, n_cols = box
    tile_rows, tile_cols = tile_shape
    taps = 2 * n
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    x_lo, x_hi = n - 1.0, image.shape[1] - n  # footprint inside iff x_lo <= xs < x_hi
    y_lo, y_hi = n - 1.0, image.shape[0] - n
    n_tile_cols = (n_cols + tile_cols - 1) // tile_cols
    for tile in numba.prange(n_tile_cols * ((n_rows + tile_rows - 1) // tile_rows)):
        r0, c0 = (tile // n_tile_cols) * tile_rows, (tile % n_tile_cols) * tile_cols
        r1, c1 = min(r0 + tile_rows, n_rows), min(c0 + tile_cols, n_cols)
        scratch = (np.empty(grid_x.shape[1]), np.empty(4))
        xs_row, ys_row, jac_row = np.empty(c1 - c0), np.empty(c1 - c0), np.ones(c1 - c0)
        wx = np.empty(taps, np.float32)
        wy = np.empty(taps, np.float32)
        wx2 = np.empty(taps, np.float32)
        for r in range(r0, r1):
            _grid_at_row(grid_x, r, c0, c1, spacing, scratch, xs_row)
            _grid_at_row(grid_y, r, c0, c1, spacing, scratch, ys_row)
            if conserve_flux:
                _grid_at_row(grid_j, r, c0, c1, spacing, scratch, jac_row)
            for c in range(c0, c1):
                xs, ys = xs_row[c - c0], ys_row[c - c0]
                if not (x_lo <= xs < x_hi and y_lo <= ys < y_hi):
                    _store(out, row0 + r, col0 + c, nan, inf, no_data)
                    continue
                bits = _bilinear_or(mask, xs, ys)
                if has_codes:
                    bits |= _grown_bits(codes, code_x0, code_y0, code_bits, xs, ys)
                if bits & no_data:
                    _store(out, row0 + r, col0 + c, nan, inf, bits)
                    continue
                value, var = _warp_pixel_n(image, variance, table, n, xs, ys, wx, wy, wx2)
                jac = jac_row[c - c0]
                value *= jac
                var *= jac * jac
                # a non-finite source pixel in the footprint (or a Jacobian next
                # to a node without a transform) makes the sums non-finite
                if np.isfinite(value) and np.isfinite(var):
                    _store(out, row0 + r, col0 + c, value, var, bits)
                else:
                    _store(out, row0 + r, col0 + c, nan, inf, bits | no_data)


def _check_out(out: tuple, out_origin: tuple[int, int] | None, box: Box) -> None:
    if out_origin is None:
        raise InvalidParameterError("out_origin is required with out")
    dtypes = (np.float32, np.float32, np.int32)
    shape = out[0].shape
    for array, dtype in zip(out, dtypes, strict=True):
        if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
            raise InvalidParameterError(
                "out must be C-contiguous (float32, float32, int32) arrays of one shape"
            )
    if not Box.from_shape(shape, x0=out_origin[0], y0=out_origin[1]).contains(box):
        raise InvalidParameterError(f"out at {out_origin} of shape {shape} does not hold {box}")


def _source_region(
    grid: CoordinateGrid, x0: int, y0: int, shape: tuple[int, int], n: int
) -> tuple[int, int, int, int]:
    """Source array rectangle ``(x_start, y_start, x_end, y_end)`` the warp can read.

    The nodes' bounding box (interpolated positions stay inside it, up to a
    cubic's tiny overshoot) grown by the kernel half-width and a margin,
    clipped to the array; empty when no node has a position.
    """
    finite = np.isfinite(grid.src_x) & np.isfinite(grid.src_y)
    if not finite.any():
        return (0, 0, 0, 0)
    margin = n + 2
    xs, ys = grid.src_x[finite] - x0, grid.src_y[finite] - y0
    x_start = max(int(np.floor(xs.min())) - margin, 0)
    y_start = max(int(np.floor(ys.min())) - margin, 0)
    x_end = min(int(np.ceil(xs.max())) + margin + 1, shape[1])
    y_end = min(int(np.ceil(ys.max())) + margin + 1, shape[0])
    return (x_start, y_start, x_end, y_end)


def warp_arrays(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    grid: CoordinateGrid,
    *,
    src_origin: tuple[int, int] = (0, 0),
    kernel: str = "lanczos3",
    conserve_flux: bool = True,
    no_data_bit: int,
    grow_bits: int = 0,
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    out_origin: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp source arrays onto the destination box of ``grid``.

    Parameters
    ----------
    image, variance : numpy.ndarray
        Source arrays (float32; converted if needed).
    mask : numpy.ndarray
        Source int32 mask bits.
    grid : CoordinateGrid
        Destination -> source transform over the destination box.
    src_origin : tuple of int
        Parent ``(x0, y0)`` of the source arrays (the grid gives parent coordinates).
    kernel : str
        Warping kernel name (:data:`KERNELS`).
    conserve_flux : bool
        Multiply the image by the Jacobian and the variance by its square.
    no_data_bit : int
        Value of the NO_DATA bit (``1 << plane``), read in the source and set in the output.
    grow_bits : int
        Bits ORed over the full kernel footprint (EDGE in LSST's default); with
        ``no_data_bit`` at most :data:`MAX_FOOTPRINT_BITS` bits.
    out : tuple of numpy.ndarray, optional
        Destination ``(image, variance, mask)`` arrays (C-contiguous float32,
        float32, int32) to fill in place; default new arrays of the grid box's shape.
    out_origin : tuple of int, optional
        Parent ``(x0, y0)`` of the ``out`` arrays; required with ``out``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(image, variance, mask)`` of the destination; pixels of ``out``
        outside the grid box are left untouched.
    """
    n = kernel_half_width(kernel)
    image = np.ascontiguousarray(image, np.float32)
    variance = np.ascontiguousarray(variance, np.float32)
    mask = np.ascontiguousarray(mask, np.int32)
    if image.ndim != 2 or variance.shape != image.shape or mask.shape != image.shape:
        raise InvalidParameterError(
            f"image, variance and mask must be 2-d of one shape, got {image.shape}, "
            f"{variance.shape} and {mask.shape}"
        )
    box = grid.bbox
    if out is None:
        out = (
            np.empty(box.shape, np.float32),
            np.empty(box.shape, np.float32),
            np.empty(box.shape, np.int32),
        )
        out_origin = (box.x0, box.y0)
    else:
        _check_out(out, out_origin, box)
    x0, y0 = src_origin
    rx0, ry0, rx1, ry1 = _source_region(grid, x0, y0, image.shape, n)
    grown = None
    if rx1 > rx0 and ry1 > ry0:
        region_mask = mask[ry0:ry1, rx0:rx1]
        grown = footprint_flags(region_mask, bits=grow_bits | no_data_bit, half_width=n)
    codes, code_bits = grown if grown is not None else (np.zeros((1, 1), np.uint8), None)
    _warp_tiles(
        image,
        variance,
        mask,
        (
            codes,
            rx0,
            ry0,
            np.zeros(256, np.int32) if code_bits is None else code_bits,
            grown is not None,
        ),
        kernel_weight_table(kernel).astype(np.float32),
        n,
        grid.src_x - x0,
        grid.src_y - y0,
        grid.jacobian,
        (
            grid.interp_length,
            box.x0 - grid.x_origin,
            box.y0 - grid.y_origin,
            grid.interpolation == "cubic",
        ),
        bool(conserve_flux),
        as_int32(no_data_bit),
        out,
        (box.y0 - out_origin[1], box.x0 - out_origin[0], box.height, box.width),
        TILE_SHAPE,
    )
    return out
