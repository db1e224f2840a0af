"""Array layer: pure functions on numpy arrays.

Statistics, binning and interpolation, polynomials, Chebyshev series, moments
and sub-pixel shifts. No I/O, no configuration objects, no logging.
"""

from ._binning import BinnedImage, bin_image, fill_empty_bins
from ._chebyshev import (
    chebyshev_coefficient_matrix,
    chebyshev_design,
    evaluate_chebyshev_grid,
    fit_chebyshev,
)
from ._filters import (
    bits_set,
    box_dilate,
    box_or,
    find_peaks,
    gaussian_kernel_1d,
    gaussian_smooth,
    matched_filter_significance,
)
from ._interpolate import INTERPOLATIONS, interpolate_grid
from ._moments import (
    adaptive_moments,
    adaptive_moments_batch,
    half_max_fwhm,
    windowed_centroids,
)
from ._poly import n_polynomial_terms, normalized_coordinates, polynomial_terms
from ._shift import fourier_shift
from ._stamps import StampSet, cut_stamps
from ._stats import (
    IQR_TO_SIGMA,
    ClippedStats,
    clipped_stats,
    difference_noise,
    masked_median,
    robust_sigma,
)

__all__ = [
    "INTERPOLATIONS",
    "IQR_TO_SIGMA",
    "BinnedImage",
    "ClippedStats",
    "StampSet",
    "adaptive_moments",
    "adaptive_moments_batch",
    "bin_image",
    "bits_set",
    "box_dilate",
    "box_or",
    "chebyshev_coefficient_matrix",
    "chebyshev_design",
    "clipped_stats",
    "cut_stamps",
    "difference_noise",
    "evaluate_chebyshev_grid",
    "fill_empty_bins",
    "find_peaks",
    "fit_chebyshev",
    "fourier_shift",
    "gaussian_kernel_1d",
    "gaussian_smooth",
    "half_max_fwhm",
    "interpolate_grid",
    "masked_median",
    "matched_filter_significance",
    "n_polynomial_terms",
    "normalized_coordinates",
    "polynomial_terms",
    "robust_sigma",
    "windowed_centroids",
]
