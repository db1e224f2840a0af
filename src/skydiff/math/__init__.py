"""Array layer: pure functions on numpy arrays (statistics, polynomials, moments...)."""

from ._moments import adaptive_moments, half_max_fwhm
from ._poly import n_polynomial_terms, normalized_coordinates, polynomial_terms
from ._shift import fourier_shift
from ._stats import (
    IQR_TO_SIGMA,
    ClippedStats,
    clipped_stats,
    difference_noise,
    masked_median,
    robust_sigma,
)

__all__ = [
    "IQR_TO_SIGMA",
    "ClippedStats",
    "adaptive_moments",
    "clipped_stats",
    "difference_noise",
    "fourier_shift",
    "half_max_fwhm",
    "masked_median",
    "n_polynomial_terms",
    "normalized_coordinates",
    "polynomial_terms",
    "robust_sigma",
]
