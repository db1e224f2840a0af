"""Scaling a sky frame to an image: matched samples and a robust one-parameter fit.

Array layer: pure functions on numpy arrays, used by
:meth:`SkyMeasurementTask.measure_scale` and :meth:`SkyMeasurementTask.solve_scales`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import AlgorithmError, InvalidParameterError
from ..math import IQR_TO_SIGMA, bin_image

__all__ = ["ScaleFit", "ScaleSamples", "sample_grid", "solve_scale"]


@dataclass(frozen=True)
class ScaleSamples:
    """Matched samples of one detector's image and its sky frame (LSST ``measureScale``).

    Attributes
    ----------
    image_samples, sky_samples : numpy.ndarray
        1-d float64 arrays of equal length: the statistic of the image and of
        the sky frame in each cell of a grid over the detector; NaN for cells
        with too few good pixels.
    """

    image_samples: np.ndarray
    sky_samples: np.ndarray

    def __post_init__(self) -> None:
        image = np.asarray(self.image_samples, np.float64).ravel()
        sky = np.asarray(self.sky_samples, np.float64).ravel()
        if image.shape != sky.shape:
            raise InvalidParameterError(
                f"image_samples ({image.size}) and sky_samples ({sky.size}) differ in length"
            )
        object.__setattr__(self, "image_samples", image)
        object.__setattr__(self, "sky_samples", sky)

    @property
    def scale(self) -> float:
        """Least-squares scale of this detector alone, without rejection."""
        return solve_scale(self.image_samples, self.sky_samples, n_iter=0).scale


@dataclass(frozen=True)
class ScaleFit:
    """Result of :func:`solve_scale`.

    Attributes
    ----------
    scale : float
        Factor by which the sky frame best matches the image samples.
    n_samples : int
        Finite sample pairs offered.
    n_used : int
        Pairs kept after the rejection.
    residual_sigma : float
        IQR-based scatter of the kept residuals ``image - scale * sky``.
    """

    scale: float
    n_samples: int
    n_used: int
    residual_sigma: float


def sample_grid(
    image: np.ndarray,
    sky: np.ndarray,
    *,
    good: np.ndarray,
    n_x: int,
    n_y: int,
    statistic: str = "meanclip",
    nsigma: float = 3.0,
    max_iter: int = 3,
    min_fraction: float = 0.1,
) -> ScaleSamples:
    """Statistics of ``image`` and ``sky`` in an ``n_x`` by ``n_y`` grid of cells.

    Both use the same good pixels. The image takes ``statistic`` (clipped
    against sources); the noiseless sky frame takes a plain mean, which
    clipping would only bias.

    Parameters
    ----------
    image, sky : numpy.ndarray
        2-d arrays of one shape: the science image and the evaluated sky frame.
    good : numpy.ndarray of bool
        False for masked pixels.
    n_x, n_y : int
        Cells per axis (reduced to the image size if larger).
    statistic, nsigma, max_iter : str, float, int
        Statistic of the image cells (see :func:`skydiff.math.bin_image`).
    min_fraction : float
        Minimum fraction of good pixels for a cell to give a sample.
    """
    height, width = image.shape
    bin_x = -(-width // max(1, min(n_x, width)))
    bin_y = -(-height // max(1, min(n_y, height)))
    options = {"bin_size": (bin_x, bin_y), "good": good, "min_fraction": min_fraction}
    clipping = {"statistic": statistic, "nsigma": nsigma, "max_iter": max_iter}
    image_binned = bin_image(image, **clipping, **options)
    sky_binned = bin_image(sky, statistic="mean", **options)
    sky_values = np.where(np.isfinite(image_binned.values), sky_binned.values, np.nan)
    return ScaleSamples(image_binned.values.ravel(), sky_values.ravel())


def _least_squares(image: np.ndarray, sky: np.ndarray) -> float:
    """Scale ``s`` minimising ``sum (image - s sky)^2``."""
    norm = float(np.dot(sky, sky))
    if not norm > 0:
        raise AlgorithmError("the sky frame samples are all zero: no scale can be fitted")
    return float(np.dot(sky, image)) / norm


def _iqr_sigma(values: np.ndarray) -> float:
    q25, q75 = np.percentile(values, [25.0, 75.0])
    return float(IQR_TO_SIGMA * (q75 - q25))


def solve_scale(
    image_samples: np.ndarray | Sequence[float],
    sky_samples: np.ndarray | Sequence[float],
    *,
    n_iter: int = 3,
    rejection: float = 3.0,
) -> ScaleFit:
    """One factor ``s`` with ``image ~ s * sky``, by least squares with rejection.

    Each of ``n_iter`` passes fits the kept pairs, estimates the scatter of
    their residuals from the inter-quartile range and rejects pairs whose
    residual lies more than ``rejection`` times it from the median residual
    (LSST ``solveScales`` measures from zero instead, which rejects every
    pair when outliers bias the first fit by more than the scatter); a
    final fit uses what is left. Non-finite pairs are ignored.

    Raises
    ------
    AlgorithmError
        If no finite pair exists, or the kept sky samples are all zero.
    """
    image = np.asarray(image_samples, np.float64).ravel()
    sky = np.asarray(sky_samples, np.float64).ravel()
    keep = np.isfinite(image) & np.isfinite(sky)
    n_samples = int(keep.sum())
    if n_samples == 0:
        raise AlgorithmError("no finite sample pairs to fit the sky frame scale to")
    scale = _least_squares(image[keep], sky[keep])
    for _ in range(n_iter):
        residuals = image - scale * sky
        sigma = _iqr_sigma(residuals[keep])
        if not sigma > 0:
            break
        center = np.median(residuals[keep])
        new_keep = keep & (np.abs(residuals - center) <= rejection * sigma)
        if new_keep.sum() in (0, keep.sum()):
            break
        keep = new_keep
        scale = _least_squares(image[keep], sky[keep])
    sigma = _iqr_sigma(image[keep] - scale * sky[keep])
    return ScaleFit(scale, n_samples, int(keep.sum()), sigma)
