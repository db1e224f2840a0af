"""Array layer: pure functions on numpy arrays.

Statistics, binning (of whole images and block by block) and interpolation,
grids of bins with empty bins, polynomials, Chebyshev series, moments,
sub-pixel shifts and stacks of aligned planes. No I/O, no configuration
objects, no logging.
"""

from ._bin_grids import (
    chebyshev_fit_rms,
    constrained_chebyshev_order,
    fill_empty_bins_thin_plate,
    values_at_bin_centers,
)
from ._binning import BinnedImage, bin_image, fill_empty_bins
from ._block_bins import BinStatistics, BinSums, block_bin_statistics
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
from ._stack import (
    STACK_STATISTICS,
    ReferenceStack,
    StackMaskBits,
    StackResult,
    clipped_mean,
    reference_stack,
    sorting_network,
    stack_planes,
)
from ._stack_artifacts import ArtifactRule, transient_mask
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
    "STACK_STATISTICS",
    "ArtifactRule",
    "BinStatistics",
    "BinSums",
    "BinnedImage",
    "ClippedStats",
    "ReferenceStack",
    "StackMaskBits",
    "StackResult",
    "StampSet",
    "adaptive_moments",
    "adaptive_moments_batch",
    "bin_image",
    "bits_set",
    "block_bin_statistics",
    "box_dilate",
    "box_or",
    "chebyshev_coefficient_matrix",
    "chebyshev_design",
    "chebyshev_fit_rms",
    "clipped_mean",
    "clipped_stats",
    "constrained_chebyshev_order",
    "cut_stamps",
    "difference_noise",
    "evaluate_chebyshev_grid",
    "fill_empty_bins",
    "fill_empty_bins_thin_plate",
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
    "reference_stack",
    "robust_sigma",
    "sorting_network",
    "stack_planes",
    "transient_mask",
    "values_at_bin_centers",
    "windowed_centroids",
]
