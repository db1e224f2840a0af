"""Analytic PSFs whose width and ellipticity vary as polynomials in position."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from ..math import normalized_coordinates, polynomial_terms
from ._analytic import GaussianPsf, MoffatPsf
from ._base import Psf, check_kernel_size
from ._image import _order_for_terms

__all__ = ["VaryingAnalyticPsf"]


class VaryingAnalyticPsf(Psf):
    """A Gaussian or Moffat PSF whose FWHM and shear vary across the image.

    Each parameter is a polynomial in coordinates normalised to ``[-1, 1]``
    over ``bounds`` (terms ordered as :func:`skydiff.math.polynomial_terms`).
    The shear ``(g1, g2)`` sets the axis ratio ``(1 - |g|) / (1 + |g|)`` and
    the position angle ``atan2(g2, g1) / 2``.

    Parameters
    ----------
    profile : {"gaussian", "moffat"}
        Radial profile.
    bounds : tuple of float
        ``(x_min, y_min, x_max, y_max)`` in parent pixels.
    fwhm, g1, g2 : array_like
        Polynomial coefficients of the FWHM (pixels) and shear components;
        ``g1``/``g2`` default to zero (round).
    beta : float
        Moffat index (ignored for Gaussians).
    size : int
        Kernel size (odd), the same everywhere.
    """

    psf_type = "varying_analytic"

    def __init__(
        self,
        profile: str,
        bounds: tuple[float, float, float, float],
        fwhm: np.ndarray,
        *,
        g1: np.ndarray | None = None,
        g2: np.ndarray | None = None,
        beta: float = 3.5,
        size: int,
    ):
        if profile not in ("gaussian", "moffat"):
            raise InvalidParameterError(
                f"VaryingAnalyticPsf.profile must be 'gaussian' or 'moffat', got {profile!r}"
            )
        self.profile = profile
        self.bounds = tuple(float(b) for b in bounds)
        coeffs = {"fwhm": np.atleast_1d(np.asarray(fwhm, np.float64))}
        n = coeffs["fwhm"].size
        for name, value in (("g1", g1), ("g2", g2)):
            coeffs[name] = (
                np.zeros(n) if value is None else np.atleast_1d(np.asarray(value, np.float64))
            )
            if coeffs[name].size != n:
                raise InvalidParameterError(
                    f"VaryingAnalyticPsf.{name} needs {n} coefficients like fwhm, "
                    f"got {coeffs[name].size}"
                )
        self.order = _order_for_terms(n)
        self._coeffs = coeffs
        self.beta = float(beta)
        self._size = check_kernel_size(size, "VaryingAnalyticPsf.size")

    @property
    def kernel_size(self) -> int:
        return self._size

    def parameters(self, x: float, y: float) -> tuple[float, float, float]:
        """``(fwhm, g1, g2)`` at ``(x, y)``."""
        u, v = normalized_coordinates(x, y, self.bounds)
        terms = polynomial_terms(u, v, self.order)
        return tuple(float(self._coeffs[k] @ terms) for k in ("fwhm", "g1", "g2"))

    def local_psf(self, x: float, y: float) -> GaussianPsf | MoffatPsf:
        """The constant analytic PSF equal to this one at ``(x, y)``."""
        fwhm, g1, g2 = self.parameters(x, y)
        if not fwhm > 0:
            raise InvalidParameterError(
                f"VaryingAnalyticPsf has FWHM {fwhm:.3g} <= 0 at ({x}, {y}); "
                f"outside its valid bounds {self.bounds}?"
            )
        g = min(math.hypot(g1, g2), 0.95)
        q = (1.0 - g) / (1.0 + g)
        angle = 0.5 * math.degrees(math.atan2(g2, g1))
        if self.profile == "gaussian":
            return GaussianPsf(fwhm, axis_ratio=q, position_angle=angle, size=self._size)
        return MoffatPsf(fwhm, beta=self.beta, axis_ratio=q, position_angle=angle, size=self._size)

    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        return self.local_psf(x, y).image_at(x, y, dx=dx, dy=dy)

    def fwhm(self, x: float, y: float) -> float:
        return self.parameters(x, y)[0]

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        x0, y0, x1, y1 = self.bounds
        params = {
            "profile": self.profile,
            "beta": self.beta,
            "size": self._size,
            "x_min": x0,
            "y_min": y0,
            "x_max": x1,
            "y_max": y1,
        }
        return params, dict(self._coeffs)

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> VaryingAnalyticPsf:
        bounds = (params["x_min"], params["y_min"], params["x_max"], params["y_max"])
        return cls(
            params["profile"],
            bounds,
            arrays["fwhm"],
            g1=arrays["g1"],
            g2=arrays["g2"],
            beta=params["beta"],
            size=params["size"],
        )

    def __repr__(self) -> str:
        return f"VaryingAnalyticPsf({self.profile}, order={self.order})"
