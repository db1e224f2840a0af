"""Binned background models (LSST ``BackgroundMI``) and lists of them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InvalidParameterError
from ..image import Box, MaskedImage
from ..math import (
    INTERPOLATIONS,
    bin_image,
    evaluate_chebyshev_grid,
    fill_empty_bins,
    fit_chebyshev,
    interpolate_grid,
)

__all__ = ["DEFAULT_BACKGROUND_BAD_PLANES", "BackgroundList", "BackgroundModel"]

#: Planes whose pixels do not enter background statistics by default.
DEFAULT_BACKGROUND_BAD_PLANES: tuple[str, ...] = (
    "BAD",
    "SAT",
    "NO_DATA",
    "EDGE",
    "SUSPECT",
    "DETECTED",
    "DETECTED_NEGATIVE",
    "CR",
)


@dataclass(frozen=True, eq=False)
class BackgroundModel:
    """A background measured in bins and turned back into an image on demand.

    Parameters
    ----------
    bbox : Box
        Box of the image the bins were measured on (parent frame).
    bin_size : tuple of int
        ``(bin_x, bin_y)`` in pixels.
    values, variances : numpy.ndarray
        ``(ny, nx)`` bin statistics and their variances; NaN for empty bins.
    counts : numpy.ndarray
        Pixels used per bin.
    x_centers, y_centers : numpy.ndarray
        Parent-frame coordinates of the bin columns and rows.
    interpolation : str
        ``akima`` (LSST ``AKIMA_SPLINE``), ``natural``, ``linear`` or ``constant``.
    approximation_order : int or None
        When set, a Chebyshev series of this order (triangular terms) is
        fitted to the bins, weighted by their inverse variances, and
        evaluated instead of interpolating (LSST ``useApprox``).
    """

    bbox: Box
    bin_size: tuple[int, int]
    values: np.ndarray
    variances: np.ndarray
    counts: np.ndarray
    x_centers: np.ndarray
    y_centers: np.ndarray
    interpolation: str = "akima"
    approximation_order: int | None = None
    _chebyshev: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidParameterError(
                f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}"
            )
        if self.values.shape != (self.y_centers.size, self.x_centers.size):
            raise InvalidParameterError(
                f"background values {self.values.shape} do not match the bin centres "
                f"({self.y_centers.size}, {self.x_centers.size})"
            )
        if self.approximation_order is not None and self._chebyshev is None:
            object.__setattr__(self, "_chebyshev", self._fit_chebyshev())

    @classmethod
    def measure(
        cls,
        masked_image: MaskedImage,
        *,
        bin_size: int | tuple[int, int] = 128,
        statistic: str = "meanclip",
        bad_planes: Iterable[str] = DEFAULT_BACKGROUND_BAD_PLANES,
        nsigma: float = 3.0,
        max_iter: int = 3,
        min_fraction: float = 0.1,
        interpolation: str = "akima",
        approximation_order: int | None = None,
    ) -> BackgroundModel:
        """Bin the good pixels of ``masked_image`` (LSST ``makeBackground``).

        Raises
        ------
        InvalidParameterError
            If a bin is larger than the image, or no bin has enough good pixels.
        """
        bin_x, bin_y = (bin_size, bin_size) if np.isscalar(bin_size) else bin_size
        bbox = masked_image.bbox
        if not (0 < bin_x <= bbox.width and 0 < bin_y <= bbox.height):
            raise InvalidParameterError(
                f"background bin size ({bin_x}, {bin_y}) must be positive and fit in the image "
                f"({bbox.width} x {bbox.height})"
            )
        good = ~masked_image.mask.get(tuple(bad_planes), ignore_missing=True)
        binned = bin_image(
            masked_image.image,
            bin_size=(bin_x, bin_y),
            good=good,
            statistic=statistic,
            nsigma=nsigma,
            max_iter=max_iter,
            min_fraction=min_fraction,
        )
        if not np.isfinite(binned.values).any():
            raise InvalidParameterError(
                f"no background bin of {bbox} has {min_fraction:.0%} good pixels"
            )
        return cls(
            bbox=bbox,
            bin_size=binned.bin_size,
            values=binned.values,
            variances=binned.variances,
            counts=binned.counts,
            x_centers=binned.x_centers + bbox.x0,
            y_centers=binned.y_centers + bbox.y0,
            interpolation=interpolation,
            approximation_order=approximation_order,
        )

    def _fit_chebyshev(self) -> np.ndarray:
        finite = np.isfinite(self.values)
        yy, xx = np.meshgrid(self.y_centers, self.x_centers, indexing="ij")
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.where(self.variances > 0, 1.0 / self.variances, 0.0)
        if not np.any(weights[finite] > 0):
            weights = finite.astype(np.float64)
        order = self.approximation_order
        if finite.sum() < (order + 1) * (order + 2) // 2:
            raise InvalidParameterError(
                f"{finite.sum()} background bins cannot constrain a Chebyshev order {order}"
            )
        return fit_chebyshev(
            xx[finite],
            yy[finite],
            self.values[finite],
            order,
            self._bounds(),
            weights=weights[finite],
        )

    def _bounds(self) -> tuple[float, float, float, float]:
        b = self.bbox
        return (b.x0 - 0.5, b.y0 - 0.5, b.x_end - 0.5, b.y_end - 0.5)

    def filled_values(self) -> np.ndarray:
        """Bin values with empty bins taken from their nearest neighbour."""
        return fill_empty_bins(self.values)

    def evaluate(self, bbox: Box | None = None) -> np.ndarray:
        """The background as a float32 image over ``bbox`` (default: the measured box)."""
        bbox = self.bbox if bbox is None else bbox
        return self.evaluate_at(
            x=np.arange(bbox.x0, bbox.x_end, dtype=np.float64),
            y=np.arange(bbox.y0, bbox.y_end, dtype=np.float64),
        )

    def evaluate_at(self, *, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The background on the grid of columns ``x`` and rows ``y`` (any coordinates).

        Unlike :meth:`evaluate`, the coordinates need not be the pixels of a
        box: they may be sub-pixel, unevenly spaced or outside :attr:`bbox`
        (the interpolant or Chebyshev series is extrapolated there).

        Parameters
        ----------
        x, y : numpy.ndarray
            Parent-frame column and row coordinates (1-d).

        Returns
        -------
        numpy.ndarray
            ``(len(y), len(x))`` float32 array: element ``[j, i]`` is the
            background at ``(x[i], y[j])``.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self._chebyshev is not None:
            return evaluate_chebyshev_grid(self._chebyshev, self._bounds(), x, y)
        return interpolate_grid(
            self.filled_values(), self.x_centers, self.y_centers, x, y, kind=self.interpolation
        )

    def scaled(self, factor: float) -> BackgroundModel:
        """The same model multiplied by ``factor`` (values by it, variances by its square)."""
        return replace(
            self, values=self.values * factor, variances=self.variances * factor**2, _chebyshev=None
        )

    def subtracted_from(self, masked_image: MaskedImage) -> MaskedImage:
        """A copy of ``masked_image`` with this background subtracted."""
        result = masked_image.copy()
        result.image -= self.evaluate(masked_image.bbox)
        return result


@dataclass(frozen=True)
class BackgroundList:
    """Backgrounds applied one after another (LSST ``BackgroundList``); they add up."""

    models: tuple[BackgroundModel, ...] = ()

    def __iter__(self) -> Iterator[BackgroundModel]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, index: int) -> BackgroundModel:
        return self.models[index]

    def appended(self, model: BackgroundModel) -> BackgroundList:
        """A new list with ``model`` added at the end."""
        return BackgroundList((*self.models, model))

    def evaluate(self, bbox: Box) -> np.ndarray:
        """Sum of all models over ``bbox`` (zeros for an empty list)."""
        total = np.zeros(bbox.shape, np.float32)
        for model in self.models:
            total += model.evaluate(bbox)
        return total
