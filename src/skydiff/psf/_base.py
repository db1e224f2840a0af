"""The PSF protocol shared by every model."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameterError
from ..math import adaptive_moments, half_max_fwhm

__all__ = ["PSF_REGISTRY", "SIGMA_TO_FWHM", "Psf", "odd_size_for"]

#: FWHM / sigma of a Gaussian.
SIGMA_TO_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: PSF classes by name, for reading them back from FITS.
PSF_REGISTRY: dict[str, type[Psf]] = {}


def odd_size_for(radius: float, *, minimum: int = 7) -> int:
    """Smallest odd kernel size holding ``radius`` pixels on each side of the centre."""
    half = max(math.ceil(radius), (minimum - 1) // 2)
    return 2 * half + 1


class Psf(ABC):
    """A point-spread function model in parent-frame pixel coordinates.

    Every model gives an odd-sized, centred, unit-sum kernel image at any
    position (:meth:`kernel_image`), a rendering of a point source at a
    sub-pixel position (:meth:`image_at`), its FWHM and second moments.
    Models are immutable and round-trip through FITS via :meth:`to_state`
    and :meth:`from_state`.
    """

    #: Name stored in FITS; subclasses register themselves under it.
    psf_type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.psf_type:
            PSF_REGISTRY[cls.psf_type] = cls

    @property
    @abstractmethod
    def kernel_size(self) -> int:
        """Width (= height, odd) of the kernel images."""

    @abstractmethod
    def image_at(self, x: float, y: float, *, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        """Unit-sum image of a point source at ``(x + dx, y + dy)``.

        The stamp has :attr:`kernel_size` pixels a side and its centre pixel
        is the pixel nearest ``(x, y)`` rounded; ``dx, dy`` in ``[-0.5, 0.5]``
        offset the source from that pixel's centre. Used to render stars.
        """

    def kernel_image(self, x: float, y: float) -> np.ndarray:
        """Centred, unit-sum, odd-sized kernel image of the PSF at ``(x, y)``."""
        return self.image_at(x, y)

    def fwhm(self, x: float, y: float) -> float:
        """Full width at half maximum in pixels at ``(x, y)``."""
        return half_max_fwhm(self.kernel_image(x, y))

    def second_moments(self, x: float, y: float) -> tuple[float, float, float]:
        """Adaptive second moments ``(ixx, iyy, ixy)`` in pixels squared."""
        return adaptive_moments(self.kernel_image(x, y))[2:]

    def sigma(self, x: float, y: float) -> float:
        """Gaussian-equivalent width: the determinant radius of the second moments."""
        ixx, iyy, ixy = self.second_moments(x, y)
        return float((ixx * iyy - ixy * ixy) ** 0.25)

    @abstractmethod
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Scalars and arrays that define the model (for persistence)."""

    @classmethod
    @abstractmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Psf:
        """Inverse of :meth:`to_state`."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        p1, a1 = self.to_state()
        p2, a2 = other.to_state()  # type: ignore[union-attr]
        return p1 == p2 and a1.keys() == a2.keys() and all(np.array_equal(a1[k], a2[k]) for k in a1)

    __hash__ = None  # type: ignore[assignment]


def check_kernel_size(size: int, what: str) -> int:
    """Validate an odd, positive kernel size."""
    if int(size) != size or size < 1 or size % 2 == 0:
        raise InvalidParameterError(f"{what} must be an odd positive integer, got {size!r}")
    return int(size)
