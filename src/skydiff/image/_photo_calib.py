"""Photometric calibration: instrumental counts to nanojansky."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidParameterError

__all__ = ["AB_ZERO_POINT_NJY", "PhotoCalib"]

#: AB magnitude of a 1 nJy source: -2.5 log10(1e-9 / 3631).
AB_ZERO_POINT_NJY = 2.5 * math.log10(3631.0e9)


@dataclass(frozen=True, slots=True)
class PhotoCalib:
    """A spatially constant photometric calibration (LSST ``PhotoCalib``).

    Parameters
    ----------
    calibration_mean : float
        Flux in nJy of one instrumental count, ``> 0``.
    calibration_err : float
        1-sigma uncertainty of ``calibration_mean``, ``>= 0``.
    """

    calibration_mean: float
    calibration_err: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.calibration_mean) and self.calibration_mean > 0):
            raise InvalidParameterError(
                f"PhotoCalib.calibration_mean must be finite and > 0, got {self.calibration_mean}"
            )
        if not (math.isfinite(self.calibration_err) and self.calibration_err >= 0):
            raise InvalidParameterError(
                f"PhotoCalib.calibration_err must be finite and >= 0, got {self.calibration_err}"
            )

    @classmethod
    def from_zero_point(cls, zero_point: float, zero_point_err: float = 0.0) -> PhotoCalib:
        """From an AB zero point: ``mag = zero_point - 2.5 log10(counts)``."""
        mean = 10.0 ** (-0.4 * (zero_point - AB_ZERO_POINT_NJY))
        return cls(mean, mean * zero_point_err * 0.4 * math.log(10.0))

    @property
    def zero_point(self) -> float:
        """AB magnitude of a source of one count."""
        return AB_ZERO_POINT_NJY - 2.5 * math.log10(self.calibration_mean)

    def instflux_to_nanojansky(self, instflux: float | np.ndarray) -> float | np.ndarray:
        """Convert counts to nJy."""
        return instflux * self.calibration_mean

    def nanojansky_to_instflux(self, flux: float | np.ndarray) -> float | np.ndarray:
        """Convert nJy to counts."""
        return flux / self.calibration_mean

    def instflux_to_magnitude(self, instflux: float | np.ndarray) -> float | np.ndarray:
        """AB magnitude of a flux in counts."""
        return self.zero_point - 2.5 * np.log10(instflux)
