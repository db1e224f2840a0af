"""Analytic PSF profiles: elliptical Gaussian and Moffat."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import erf

from ..errors import InvalidParameterError
from ._base import SIGMA_TO_FWHM, Psf, check_kernel_size, odd_size_for

__all__ = ["DoubleGaussianPsf", "GaussianPsf", "MoffatPsf", "render_profile"]

_SUBSAMPLE = 5


def _check_shape(fwhm: float, axis_ratio: float, what: str) -> None:
    if not (math.isfinite(fwhm) and fwhm > 0):
        raise InvalidParameterError(f"{what}.fwhm must be finite and > 0, got {fwhm}")
    if not (0 < axis_ratio <= 1):
        raise InvalidParameterError(f"{what}.axis_ratio must be in (0, 1], got {axis_ratio}")


def _elliptical_radius2(dx, dy, axis_ratio: float, position_angle: float):
    """Squared radius in a frame where the ellipse is a circle of the mean radius."""
    theta = math.radians(position_angle)
    c, s = math.cos(theta), math.sin(theta)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return u * u * axis_ratio + v * v / axis_ratio


def render_profile(profile, size: int, dx: float, dy: float) -> np.ndarray:
    """Pixel-integrated, unit-sum image of a radial ``profile(u, v)`` offset by ``(dx, dy)``.

    Each pixel is integrated with 5 x 5 Gauss-Legendre nodes, exact to ~1e-5
    of the peak for profiles of FWHM >= 2 px.
    """
    half = size // 2
    nodes, weights = np.polynomial.legendre.leggauss(_SUBSAMPLE)
    nodes, weights = 0.5 * nodes, 0.5 * weights
    grid = np.arange(-half, half + 1, dtype=np.float64)
    fine = (grid[:, None] + nodes[None, :]).ravel()
    values = profile(fine[None, :] - dx, fine[:, None] - dy)
    values = values.reshape(size, _SUBSAMPLE, size, _SUBSAMPLE)
    image = np.einsum("iajb,a,b->ij", values, weights, weights)
    return image / image.sum()


class GaussianPsf(Psf):
    """An elliptical Gaussian PSF, the same everywhere.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels (geometric mean of major and minor axes).
    axis_ratio : float
        Minor / major axis, in (0, 1].
    position_angle : float
        Angle of the major axis from +x towards +y, degrees.
    size : int, optional
        Kernel size (odd); default covers 3 FWHM on each side.
    """

    psf_type = "gaussian"

    def __init__(
        self,
        fwhm: float,
        *,
        axis_ratio: float = 1.0,
        position_angle: float = 0.0,
        size: int | None = None,
    ):
        _check_shape(fwhm, axis_ratio, "GaussianPsf")
        self._fwhm = float(fwhm)
        self.axis_ratio = float(axis_ratio)
        self.position_angle = float(position_angle)
        self._size = check_kernel_size(
            size if size is not None else odd_size_for(2.5 * fwhm), "GaussianPsf.size"
        )

    @property
    def kernel_size(self) -> int:
        return self._size

    @property
    def sigma_pixels(self) -> float:
        """Gaussian sigma of the profile (geometric mean of the axes)."""
        return self._fwhm / SIGMA_TO_FWHM

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        sigma = self.sigma_pixels
        half = self._size // 2
        if self.axis_ratio == 1.0:
            # Exact pixel integration of a round Gaussian is separable.
            edges = np.arange(-half - 0.5, half + 1.0)
            scale = 1.0 / (math.sqrt(2.0) * sigma)
            px = np.diff(erf((edges - dx) * scale))
            py = np.diff(erf((edges - dy) * scale))
            image = np.outer(py, px)
            return image / image.sum()
        q, pa = self.axis_ratio, self.position_angle
        return render_profile(
            lambda u, v: np.exp(-0.5 * _elliptical_radius2(u, v, q, pa) / sigma**2),
            self._size,
            dx,
            dy,
        )

    def fwhm(self, x: float, y: float) -> float:
        return self._fwhm

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return (
            {
                "fwhm": self._fwhm,
                "axis_ratio": self.axis_ratio,
                "position_angle": self.position_angle,
                "size": self._size,
            },
            {},
        )

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> GaussianPsf:
        return cls(
            params["fwhm"],
            axis_ratio=params["axis_ratio"],
            position_angle=params["position_angle"],
            size=params["size"],
        )

    def __repr__(self) -> str:
        return f"GaussianPsf(fwhm={self._fwhm:.4g}, axis_ratio={self.axis_ratio:.3g})"


def _round_gaussian_image(sigma: float, half: int, dx: float, dy: float) -> np.ndarray:
    """Exactly pixel-integrated, unit-sum round Gaussian (separable)."""
    edges = np.arange(-half - 0.5, half + 1.0)
    scale = 1.0 / (math.sqrt(2.0) * sigma)
    image = np.outer(np.diff(erf((edges - dy) * scale)), np.diff(erf((edges - dx) * scale)))
    return image / image.sum()


class DoubleGaussianPsf(Psf):
    """A round core Gaussian plus a wider wing (the model PSF of LSST PSF-matched warps).

    Parameters
    ----------
    fwhm : float
        FWHM of the core Gaussian, pixels.
    wing_fwhm_factor : float
        Wing FWHM / core FWHM (LSST ``GaussianPsfFactory.wingFwhmFactor``, 2.5).
    wing_amplitude : float
        Peak of the wing relative to the core's (LSST ``wingAmplitude``, 0.1);
        0 gives a single Gaussian.
    size : int, optional
        Kernel size (odd); default covers 3 core FWHM on each side.
    """

    psf_type = "double_gaussian"

    def __init__(
        self,
        fwhm: float,
        *,
        wing_fwhm_factor: float = 2.5,
        wing_amplitude: float = 0.1,
        size: int | None = None,
    ):
        _check_shape(fwhm, 1.0, "DoubleGaussianPsf")
        if not (wing_fwhm_factor >= 1 and wing_amplitude >= 0):
            raise InvalidParameterError(
                "DoubleGaussianPsf needs wing_fwhm_factor >= 1 and wing_amplitude >= 0, got "
                f"{wing_fwhm_factor} and {wing_amplitude}"
            )
        self.core_fwhm = float(fwhm)
        self.wing_fwhm_factor = float(wing_fwhm_factor)
        self.wing_amplitude = float(wing_amplitude)
        self._size = check_kernel_size(
            size if size is not None else odd_size_for(3.0 * fwhm), "DoubleGaussianPsf.size"
        )

    @property
    def kernel_size(self) -> int:
        return self._size

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        sigma = self.core_fwhm / SIGMA_TO_FWHM
        half = self._size // 2
        image = _round_gaussian_image(sigma, half, dx, dy)
        if self.wing_amplitude > 0:
            # peak ratio b means a flux ratio b (sigma_wing / sigma_core)^2
            flux = self.wing_amplitude * self.wing_fwhm_factor**2
            wing = _round_gaussian_image(sigma * self.wing_fwhm_factor, half, dx, dy)
            image = (image + flux * wing) / (1.0 + flux)
        return image

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return (
            {
                "fwhm": self.core_fwhm,
                "wing_fwhm_factor": self.wing_fwhm_factor,
                "wing_amplitude": self.wing_amplitude,
                "size": self._size,
            },
            {},
        )

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> DoubleGaussianPsf:
        return cls(
            params["fwhm"],
            wing_fwhm_factor=params["wing_fwhm_factor"],
            wing_amplitude=params["wing_amplitude"],
            size=params["size"],
        )

    def __repr__(self) -> str:
        return (
            f"DoubleGaussianPsf(fwhm={self.core_fwhm:.4g}, wing x{self.wing_fwhm_factor:.3g} "
            f"at {self.wing_amplitude:.3g})"
        )


class MoffatPsf(Psf):
    """An elliptical Moffat PSF, ``(1 + r^2 / alpha^2)^-beta``, the same everywhere.

    Parameters
    ----------
    fwhm : float
        FWHM in pixels (geometric mean of the axes).
    beta : float
        Power-law index (> 1); atmospheric seeing is near 2.5-4.5.
    axis_ratio, position_angle : float
        As for :class:`GaussianPsf`.
    size : int, optional
        Kernel size (odd); default covers 4 FWHM on each side.
    """

    psf_type = "moffat"

    def __init__(
        self,
        fwhm: float,
        *,
        beta: float = 3.5,
        axis_ratio: float = 1.0,
        position_angle: float = 0.0,
        size: int | None = None,
    ):
        _check_shape(fwhm, axis_ratio, "MoffatPsf")
        if not beta > 1:
            raise InvalidParameterError(f"MoffatPsf.beta must be > 1, got {beta}")
        self._fwhm = float(fwhm)
        self.beta = float(beta)
        self.axis_ratio = float(axis_ratio)
        self.position_angle = float(position_angle)
        self._size = check_kernel_size(
            size if size is not None else odd_size_for(4.0 * fwhm), "MoffatPsf.size"
        )

    @property
    def kernel_size(self) -> int:
        return self._size

    @property
    def alpha(self) -> float:
        """Core width: FWHM / (2 sqrt(2^(1/beta) - 1))."""
        return self._fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        a2, beta, q, pa = self.alpha**2, self.beta, self.axis_ratio, self.position_angle
        return render_profile(
            lambda u, v: (1.0 + _elliptical_radius2(u, v, q, pa) / a2) ** (-beta),
            self._size,
            dx,
            dy,
        )

    def fwhm(self, x: float, y: float) -> float:
        return self._fwhm

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return (
            {
                "fwhm": self._fwhm,
                "beta": self.beta,
                "axis_ratio": self.axis_ratio,
                "position_angle": self.position_angle,
                "size": self._size,
            },
            {},
        )

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> MoffatPsf:
        return cls(
            params["fwhm"],
            beta=params["beta"],
            axis_ratio=params["axis_ratio"],
            position_angle=params["position_angle"],
            size=params["size"],
        )

    def __repr__(self) -> str:
        return f"MoffatPsf(fwhm={self._fwhm:.4g}, beta={self.beta:.3g})"
