"""Statistics of masked images with an and-mask of plane names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..math import clipped_stats, masked_median, robust_sigma
from ._masked_image import MaskedImage

__all__ = ["DEFAULT_BAD_PLANES", "Statistics", "statistics"]

#: Planes excluded from statistics unless told otherwise.
DEFAULT_BAD_PLANES: tuple[str, ...] = ("BAD", "SAT", "NO_DATA", "EDGE", "CR", "SUSPECT")


@dataclass(frozen=True, slots=True)
class Statistics:
    """Robust summary of the good pixels of a masked image.

    Attributes
    ----------
    n_good : int
        Finite pixels with none of the excluded planes set.
    median, iqr_sigma : float
        Median and 0.7413 x inter-quartile range of the image.
    clipped_mean, clipped_stddev : float
        Sigma-clipped mean and standard deviation of the image.
    n_clipped_kept : int
        Pixels kept by the clipping.
    median_variance : float
        Median of the variance plane over the good pixels.
    """

    n_good: int
    median: float
    iqr_sigma: float
    clipped_mean: float
    clipped_stddev: float
    n_clipped_kept: int
    median_variance: float


def statistics(
    masked_image: MaskedImage,
    *,
    bad_planes: Iterable[str] = DEFAULT_BAD_PLANES,
    nsigma: float = 3.0,
    max_iter: int = 3,
) -> Statistics:
    """Clipped and robust statistics of the pixels with none of ``bad_planes`` set.

    Planes the mask does not define are ignored.
    """
    good = ~masked_image.mask.get(tuple(bad_planes), ignore_missing=True)
    good &= np.isfinite(masked_image.image) & np.isfinite(masked_image.variance)
    clipped = clipped_stats(masked_image.image, good=good, nsigma=nsigma, max_iter=max_iter)
    return Statistics(
        n_good=int(good.sum()),
        median=float(masked_median(masked_image.image, good=good)),
        iqr_sigma=float(robust_sigma(masked_image.image, good=good)),
        clipped_mean=clipped.mean,
        clipped_stddev=clipped.stddev,
        n_clipped_kept=clipped.n,
        median_variance=float(masked_median(masked_image.variance, good=good)),
    )
