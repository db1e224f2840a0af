"""Least-squares PSF-matching kernel: per-stamp normal equations and the spatial solve.

For stamp ``s`` the science pixels ``S`` are modelled as ``sum_k a_k C_k + b``
where ``C_k`` is the template stamp convolved with basis kernel ``B_k`` and
``b`` a Chebyshev background evaluated at each pixel. Each stamp contributes
normal equations ``M_s = A^T W A``, ``v_s = A^T W S`` (``W`` the pixel
weights); the spatial solve expands ``a_k = sum_m c_km P_m(x_s, y_s)`` and
adds the stamps' equations, so the convolved stamps are computed once. A
stamp's chi^2 under any solution follows from ``M_s``, ``v_s`` and
``S^T W S`` alone, which makes iterative stamp rejection cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..math import chebyshev_design, normalized_coordinates, polynomial_terms
from ._basis import SeparableBasis

__all__ = ["KernelSolution", "StampEquations", "solve_spatial", "stamp_equations"]


@dataclass(frozen=True)
class StampEquations:
    """Normal equations of every stamp.

    Attributes
    ----------
    matrices : numpy.ndarray
        ``(n_stamps, n_cols, n_cols)``; columns are the basis kernels then the
        background terms.
    vectors : numpy.ndarray
        ``(n_stamps, n_cols)``.
    data_norms : numpy.ndarray
        ``S^T W S`` per stamp.
    n_pixels : numpy.ndarray
        Pixels with non-zero weight per stamp.
    x, y : numpy.ndarray
        Stamp centres, parent pixels.
    n_basis : int
        Number of basis kernels (the remaining columns are background terms).
    """

    matrices: np.ndarray
    vectors: np.ndarray
    data_norms: np.ndarray
    n_pixels: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n_basis: int

    def subset(self, keep: np.ndarray) -> StampEquations:
        """The equations of the stamps where ``keep`` is True."""
        return StampEquations(
            self.matrices[keep],
            self.vectors[keep],
            self.data_norms[keep],
            self.n_pixels[keep],
            self.x[keep],
            self.y[keep],
            self.n_basis,
        )

    def chi2(self, coefficients: np.ndarray) -> np.ndarray:
        """Weighted residual sum of squares of each stamp for per-stamp coefficient vectors."""
        quadratic = np.einsum("si,sij,sj->s", coefficients, self.matrices, coefficients)
        linear = np.einsum("si,si->s", coefficients, self.vectors)
        return self.data_norms - 2.0 * linear + quadratic


def _toeplitz(filters: np.ndarray, n_in: int) -> np.ndarray:
    """``(n_filters, n_in, n_out)`` matrices: ``row @ M`` is the valid 1-d convolution."""
    size = filters.shape[1]
    n_out = n_in - size + 1
    matrices = np.zeros((len(filters), n_in, n_out))
    for j in range(n_out):
        # out[j] = sum_u f[u] in[j + size - 1 - u]
        matrices[:, j : j + size, j] = filters[:, ::-1]
    return matrices


def _convolved_stamps(regions: np.ndarray, basis: SeparableBasis) -> np.ndarray:
    """``(n_stamps, n_basis, n_out, n_out)``: each region convolved with each basis kernel."""
    n_in = regions.shape[1]
    mx = _toeplitz(basis.x_filters, n_in)
    my = _toeplitz(basis.y_filters, n_in)
    rows = {int(i): regions @ mx[i] for i in np.unique(basis.x_index)}  # (n_s, n_in, n_out)
    raw = np.stack(
        [
            np.swapaxes(my[j], 0, 1) @ rows[int(i)]
            for i, j in zip(basis.x_index, basis.y_index, strict=True)
        ],
        axis=1,
    )
    n_s, n_raw, n_out = raw.shape[0], raw.shape[1], raw.shape[2]
    mixed = basis.transform @ raw.reshape(n_s, n_raw, n_out * n_out)  # BLAS, per stamp
    return mixed.reshape(n_s, -1, n_out, n_out)


def stamp_equations(
    template: np.ndarray,
    science: np.ndarray,
    weights: np.ndarray,
    basis: SeparableBasis,
    centers: np.ndarray,
    *,
    half_size: int,
    origin: tuple[int, int],
    background_order: int,
    bounds: tuple[float, float, float, float],
) -> StampEquations:
    """Normal equations of square stamps of ``2 half_size + 1`` pixels at array ``centers``.

    ``template`` and ``science`` are aligned arrays whose first pixel is
    parent ``origin``; every stamp, grown by the kernel's half-width in the
    template, must lie inside them. ``weights`` is zero for pixels to ignore.
    All stamps are convolved at once through the basis's separable form.
    """
    centers = np.asarray(centers, np.int64)
    radius = basis.x_filters.shape[1] // 2
    outer, side = half_size + radius, 2 * half_size + 1
    offsets_out = np.arange(-outer, outer + 1)
    offsets_in = np.arange(-half_size, half_size + 1)
    cx, cy = centers[:, 0], centers[:, 1]
    regions = np.nan_to_num(
        template[
            (cy[:, None, None] + offsets_out[None, :, None]),
            (cx[:, None, None] + offsets_out[None, None, :]),
        ].astype(np.float64)
    )
    rows = cy[:, None, None] + offsets_in[None, :, None]
    cols = cx[:, None, None] + offsets_in[None, None, :]
    data = np.nan_to_num(science[rows, cols].astype(np.float64)).reshape(len(centers), -1)
    w = weights[rows, cols].astype(np.float64).reshape(len(centers), -1)
    convolved = _convolved_stamps(regions, basis).reshape(len(centers), -1, side * side)
    full = (len(centers), side, side)
    xs = np.broadcast_to(cols + origin[0], full).reshape(-1).astype(float)
    ys = np.broadcast_to(rows + origin[1], full).reshape(-1).astype(float)
    background = chebyshev_design(xs, ys, background_order, bounds).reshape(
        len(centers), side * side, -1
    )
    design = np.concatenate([np.swapaxes(convolved, 1, 2), background], axis=2)
    weighted = design * w[:, :, None]
    matrices = np.swapaxes(weighted, 1, 2) @ design
    vectors = (np.swapaxes(weighted, 1, 2) @ data[:, :, None])[:, :, 0]
    norms = np.einsum("sp,sp->s", w, data * data)
    counts = np.count_nonzero(w, axis=1)
    return StampEquations(
        matrices,
        vectors,
        norms,
        counts,
        (cx + origin[0]).astype(float),
        (cy + origin[1]).astype(float),
        basis.transform.shape[0],
    )


@dataclass(frozen=True)
class KernelSolution:
    """Solution of the spatial fit.

    Attributes
    ----------
    kernel_coefficients : numpy.ndarray
        ``(n_basis, n_spatial_terms)``.
    background_solution : numpy.ndarray
        Chebyshev coefficients of the differential background.
    condition_number : float
        Of the (scaled) global normal matrix.
    """

    kernel_coefficients: np.ndarray
    background_solution: np.ndarray
    condition_number: float

    def stamp_coefficients(
        self,
        equations: StampEquations,
        spatial_order: int,
        bounds: tuple[float, float, float, float],
    ) -> np.ndarray:
        """Per-stamp coefficient vectors (kernel weights at the stamp, background terms)."""
        terms = _terms(equations, spatial_order, bounds)
        kernel = terms @ self.kernel_coefficients.T
        background = np.broadcast_to(
            self.background_solution, (len(equations.x), self.background_solution.size)
        )
        return np.concatenate([kernel, background], axis=1)


def _terms(equations: StampEquations, spatial_order: int, bounds) -> np.ndarray:
    u, v = normalized_coordinates(equations.x, equations.y, bounds)
    return polynomial_terms(u, v, spatial_order)


def solve_spatial(
    equations: StampEquations, spatial_order: int, bounds: tuple[float, float, float, float]
) -> KernelSolution:
    """Solve for polynomial kernel weights and the background from all stamps at once.

    The global normal matrix has blocks ``sum_s (P_s P_s^T) (x) M_s[kernel]``,
    ``sum_s P_s (x) M_s[kernel, background]`` and ``sum_s M_s[background]``.
    It is solved after scaling to unit diagonal; its condition number is
    returned for the caller to judge.
    """
    nb = equations.n_basis
    terms = _terms(equations, spatial_order, bounds)  # (n_s, n_t)
    n_t = terms.shape[1]
    m, v = equations.matrices, equations.vectors
    kk = np.einsum("sp,sq,sij->ipjq", terms, terms, m[:, :nb, :nb]).reshape(nb * n_t, nb * n_t)
    kb = np.einsum("sp,sij->ipj", terms, m[:, :nb, nb:]).reshape(nb * n_t, -1)
    bb = m[:, nb:, nb:].sum(axis=0)
    matrix = np.block([[kk, kb], [kb.T, bb]])
    rhs = np.concatenate([np.einsum("sp,si->ip", terms, v[:, :nb]).ravel(), v[:, nb:].sum(axis=0)])
    scale = 1.0 / np.sqrt(np.where(np.diag(matrix) > 0, np.diag(matrix), 1.0))
    scaled = matrix * scale[:, None] * scale[None, :]
    condition = float(np.linalg.cond(scaled))
    solution = scale * np.linalg.lstsq(scaled, rhs * scale, rcond=None)[0]
    return KernelSolution(solution[: nb * n_t].reshape(nb, n_t), solution[nb * n_t :], condition)


def solve_stamps_individually(equations: StampEquations) -> np.ndarray:
    """Each stamp's own fit (constant kernel, constant background); rows of coefficient vectors.

    Only the first background term (the constant) is fitted; higher terms
    are set to zero, being nearly degenerate with it inside one stamp.
    """
    nb = equations.n_basis
    cols = np.r_[np.arange(nb), nb]
    sub = equations.matrices[:, cols[:, None], cols[None, :]]
    rhs = equations.vectors[:, cols]
    solutions = np.zeros(equations.vectors.shape)
    solved = np.array([np.linalg.lstsq(a, b, rcond=None)[0] for a, b in zip(sub, rhs, strict=True)])
    solutions[:, cols] = solved
    return solutions
