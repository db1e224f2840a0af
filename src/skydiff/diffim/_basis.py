"""The Alard-Lupton kernel basis: Gaussians times polynomials (array layer)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SeparableBasis",
    "alard_lupton_basis",
    "basis_sigmas",
    "kernel_size_for",
    "separable_basis",
]


def basis_sigmas(
    science_sigma: float,
    template_sigma: float,
    *,
    beta: float = 2.0,
    floor: float = 0.7,
    n_gaussians: int = 3,
) -> tuple[float, ...]:
    """Widths of the basis Gaussians around the matching kernel's width.

    The matching kernel that turns a Gaussian of ``template_sigma`` into one
    of ``science_sigma`` has width ``sqrt(science^2 - template^2)``; the basis
    uses it divided and multiplied by ``beta`` (LSST ``alardGaussBeta``). When
    the PSFs are nearly equal the narrowest width is held at ``floor`` (LSST
    ``alardMinSig``) and the others follow by factors of ``beta``.
    """
    match = math.sqrt(max(science_sigma**2 - template_sigma**2, 0.0))
    first = max(match / beta ** ((n_gaussians - 1) / 2), floor)
    return tuple(first * beta**i for i in range(n_gaussians))


def kernel_size_for(
    fwhm: float, *, scaling: float = 6.0, minimum: int = 21, maximum: int = 35
) -> int:
    """Odd kernel size ``scaling * fwhm`` clipped to ``[minimum, maximum]`` (LSST defaults)."""
    size = int(np.clip(math.ceil(scaling * fwhm), minimum, maximum))
    return size if size % 2 else size + 1


def alard_lupton_basis(
    size: int, sigmas: tuple[float, ...], degrees: tuple[int, ...]
) -> np.ndarray:
    """Basis kernels ``exp(-r^2 / 2 sigma^2) x^i y^j`` with ``i + j <= degree`` per Gaussian.

    Sampled at pixel centres of a ``size x size`` kernel (odd), in the order
    of ``sigmas``, and within a Gaussian by total degree then ``j``. The first
    kernel is normalised to unit sum and carries the flux; every other kernel
    has the first one (times its own sum) subtracted, so that it has zero sum
    and only reshapes, and is scaled to unit root-sum-square. The span is
    that of the raw functions.

    Returns
    -------
    numpy.ndarray
        ``(n_basis, size, size)``.
    """
    if len(sigmas) != len(degrees):
        raise ValueError(f"{len(sigmas)} sigmas but {len(degrees)} degrees")
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    raw = []
    for sigma, degree in zip(sigmas, degrees, strict=True):
        gaussian = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
        for total in range(degree + 1):
            for j in range(total + 1):
                raw.append(gaussian * x ** (total - j) * y**j)
    basis = np.array(raw)
    basis[0] /= basis[0].sum()
    for k in range(1, len(basis)):
        basis[k] -= basis[k].sum() * basis[0]
        basis[k] /= np.sqrt((basis[k] ** 2).sum())
    return basis


@dataclass(frozen=True)
class SeparableBasis:
    """The Alard-Lupton basis as sums of separable functions.

    Raw function ``r`` is ``x_filters[x_index[r]](x) * y_filters[y_index[r]](y)``;
    the normalised basis of :func:`alard_lupton_basis` is ``transform @ raw``.
    Convolving with separable functions costs two 1-d passes instead of a 2-d
    one, which makes the kernel fit's stamp convolutions cheap.
    """

    x_filters: np.ndarray
    y_filters: np.ndarray
    x_index: np.ndarray
    y_index: np.ndarray
    transform: np.ndarray


def separable_basis(
    size: int, sigmas: tuple[float, ...], degrees: tuple[int, ...]
) -> SeparableBasis:
    """The separable form of ``alard_lupton_basis(size, sigmas, degrees)``."""
    half = size // 2
    grid = np.arange(-half, half + 1, dtype=np.float64)
    filters, x_index, y_index = [], [], []
    for sigma, degree in zip(sigmas, degrees, strict=True):
        first = len(filters)
        gaussian = np.exp(-(grid * grid) / (2.0 * sigma * sigma))
        filters.extend(gaussian * grid**p for p in range(degree + 1))
        for total in range(degree + 1):
            for j in range(total + 1):
                x_index.append(first + total - j)
                y_index.append(first + j)
    filters = np.array(filters)
    raw = np.einsum("ry,rx->ryx", filters[y_index], filters[x_index]).reshape(len(x_index), -1)
    basis = alard_lupton_basis(size, sigmas, degrees).reshape(len(x_index), -1)
    transform = basis @ np.linalg.pinv(raw)
    return SeparableBasis(filters, filters, np.array(x_index), np.array(y_index), transform)
