"""PSF models made of pixels: a fixed image, and a pixel basis varying with position."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from ..math import fourier_shift, n_polynomial_terms, normalized_coordinates, polynomial_terms
from ._base import Psf, check_kernel_size

__all__ = ["ImagePsf", "PixelBasisPsf"]


def _normalized_kernel(image: np.ndarray, what: str) -> np.ndarray:
    image = np.array(image, dtype=np.float64)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise InvalidParameterError(f"{what} must be a square 2-d array, got shape {image.shape}")
    check_kernel_size(image.shape[0], f"{what} size")
    if not np.all(np.isfinite(image)):
        raise InvalidParameterError(f"{what} has non-finite pixels")
    total = image.sum()
    if not total > 0:
        raise InvalidParameterError(f"{what} must have a positive sum, got {total}")
    return image / total


class ImagePsf(Psf):
    """A PSF given as one image, the same everywhere (LSST ``KernelPsf``).

    Parameters
    ----------
    image : numpy.ndarray
        Square, odd-sized image centred on the central pixel; normalised to
        unit sum on construction.
    """

    psf_type = "image"

    def __init__(self, image: np.ndarray):
        self._image = _normalized_kernel(image, "ImagePsf image")
        self._image.flags.writeable = False

    @property
    def kernel_size(self) -> int:
        return self._image.shape[0]

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        return self._image.copy()

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        if dx == 0 and dy == 0:
            return self._image.copy()
        shifted = fourier_shift(self._image, dx, dy)
        return shifted / shifted.sum()

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"image": self._image}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> ImagePsf:
        psf = cls(arrays["image"])
        # Keep the stored, already normalised pixels bit for bit.
        psf._image = np.array(arrays["image"], dtype=np.float64)
        psf._image.flags.writeable = False
        return psf


class PixelBasisPsf(Psf):
    """A PSF that is a sum of basis images with weights polynomial in position.

    ``psf(x, y) = sum_k w_k(x, y) B_k`` with ``w_k`` a polynomial of the
    given order in coordinates normalised to ``[-1, 1]`` over ``bounds``,
    renormalised to unit sum. This is the form of a PCA PSF model (mean image
    plus principal components) fitted to stars.

    Parameters
    ----------
    basis : numpy.ndarray
        ``(n_basis, size, size)`` basis images, odd size.
    coefficients : numpy.ndarray
        ``(n_basis, n_terms)`` polynomial coefficients of each basis weight,
        terms ordered as :func:`skydiff.math.polynomial_terms`.
    bounds : tuple of float
        ``(x_min, y_min, x_max, y_max)`` of the region the model was fitted on.
    """

    psf_type = "pixel_basis"

    def __init__(
        self,
        basis: np.ndarray,
        coefficients: np.ndarray,
        bounds: tuple[float, float, float, float],
    ):
        basis = np.array(basis, dtype=np.float64)
        coefficients = np.array(coefficients, dtype=np.float64)
        if basis.ndim != 3 or basis.shape[1] != basis.shape[2]:
            raise InvalidParameterError(f"basis must be (n, size, size), got {basis.shape}")
        check_kernel_size(basis.shape[1], "PixelBasisPsf basis size")
        if coefficients.ndim != 2 or coefficients.shape[0] != basis.shape[0]:
            raise InvalidParameterError(
                f"coefficients must be (n_basis={basis.shape[0]}, n_terms), "
                f"got {coefficients.shape}"
            )
        order = _order_for_terms(coefficients.shape[1])
        if not (np.all(np.isfinite(basis)) and np.all(np.isfinite(coefficients))):
            raise InvalidParameterError("PixelBasisPsf basis and coefficients must be finite")
        self.basis, self.coefficients, self.order = basis, coefficients, order
        self.bounds = tuple(float(b) for b in bounds)
        self.basis.flags.writeable = False
        self.coefficients.flags.writeable = False

    @property
    def kernel_size(self) -> int:
        return self.basis.shape[1]

    def weights(self, x: float, y: float) -> np.ndarray:
        """Weight of each basis image at ``(x, y)``."""
        u, v = normalized_coordinates(x, y, self.bounds)
        return self.coefficients @ polynomial_terms(u, v, self.order)

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        image = np.tensordot(self.weights(x, y), self.basis, axes=1)
        return image / image.sum()

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        image = self.kernel_image(x, y)
        if dx == 0 and dy == 0:
            return image
        shifted = fourier_shift(image, dx, dy)
        return shifted / shifted.sum()

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        x0, y0, x1, y1 = self.bounds
        return (
            {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1},
            {"basis": self.basis, "coefficients": self.coefficients},
        )

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> PixelBasisPsf:
        bounds = (params["x_min"], params["y_min"], params["x_max"], params["y_max"])
        return cls(arrays["basis"], arrays["coefficients"], bounds)


def _order_for_terms(n_terms: int) -> int:
    for order in range(20):
        if n_polynomial_terms(order) == n_terms:
            return order
    raise InvalidParameterError(f"{n_terms} is not the number of terms of a 2-d polynomial")
