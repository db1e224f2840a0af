"""Configuration of AlardLuptonSubtractTask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..characterize import StarSelectorConfig
from ..detection import SourceDetectionConfig
from ..task import Config, config_field

__all__ = ["AlardLuptonSubtractConfig", "KernelConfig"]


def _kernel_star_selector() -> StarSelectorConfig:
    return StarSelectorConfig(
        snr_min=10.0, isolation_radius=2.0, size_tolerance=0.3, max_stars=400, min_stars=1
    )


@dataclass(frozen=True)
class KernelConfig(Config):
    """PSF-matching kernel: basis, stamps, spatial model, rejection (LSST ``PsfMatchConfigAL``)."""

    size: int | None = config_field(
        None, doc="Kernel width (odd); None scales it with the PSF [kernelSize]."
    )
    size_fwhm_scaling: float = config_field(
        6.0, doc="Kernel width in units of the larger PSF FWHM [kernelSizeFwhmScaling]."
    )
    size_min: int = config_field(21, doc="Smallest kernel width [kernelSizeMin].")
    size_max: int = config_field(35, doc="Largest kernel width [kernelSizeMax].")
    degrees: tuple[int, ...] = config_field(
        (4, 2, 2), doc="Polynomial degree of each basis Gaussian, narrowest first [alardDegGauss]."
    )
    sigmas: tuple[float, ...] | None = config_field(
        None,
        doc="Basis Gaussian widths in pixels; None derives them from the PSFs [alardSigGauss].",
    )
    beta: float = config_field(2.0, doc="Ratio of successive basis widths [alardGaussBeta].")
    min_sigma: float = config_field(0.7, doc="Smallest basis width, pixels [alardMinSig].")
    spatial_order: int = config_field(
        1, doc="Polynomial order of the kernel's spatial variation [spatialKernelOrder]."
    )
    background_order: int = config_field(
        2, doc="Chebyshev order of the differential background [spatialBgOrder]."
    )
    constant_weighting: bool = config_field(
        False,
        doc="Weight stamp pixels equally rather than by inverse variance "
        "[constantVarianceWeighting].",
    )
    stamp_radius: float = config_field(
        2.5, doc="Half-width of the fitted science stamps in units of the PSF FWHM."
    )
    bad_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD", "SAT", "EDGE", "HIGH_VARIANCE"),
        doc="Stamps touching these planes (in either image) are not used [badMaskPlanes].",
    )
    nsigma_reject: float = config_field(
        3.0, doc="Stamps beyond this many sigma in kernel sum or residual are rejected."
    )
    max_reject_iterations: int = config_field(3, doc="Rejection passes of the spatial fit.")
    max_condition_number: float = config_field(
        1e10,
        doc="Larger condition numbers of the scaled normal matrix are an error "
        "[maxConditionNumber].",
    )

    def validate(self) -> None:
        self.check(
            self.size is None or (self.size >= 5 and self.size % 2),
            "size",
            "must be None or an odd integer >= 5",
        )
        self.check(5 <= self.size_min <= self.size_max, "size_min", "must be in 5..size_max")
        self.check(
            len(self.degrees) >= 1 and min(self.degrees) >= 0,
            "degrees",
            "must be one or more degrees >= 0",
        )
        self.check(
            self.sigmas is None or len(self.sigmas) == len(self.degrees),
            "sigmas",
            "must be None or one width per degree",
        )
        self.check(self.beta > 1, "beta", "must be > 1")
        self.check(self.min_sigma > 0, "min_sigma", "must be > 0")
        self.check(0 <= self.spatial_order <= 4, "spatial_order", "must be in 0..4")
        self.check(0 <= self.background_order <= 6, "background_order", "must be in 0..6")
        self.check(self.stamp_radius > 0, "stamp_radius", "must be > 0")
        self.check(self.nsigma_reject > 0, "nsigma_reject", "must be > 0")
        self.check(self.max_condition_number > 1, "max_condition_number", "must be > 1")


@dataclass(frozen=True)
class AlardLuptonSubtractConfig(Config):
    """Configuration of :class:`AlardLuptonSubtractTask` (LSST names in brackets)."""

    mode: Literal["convolveTemplate", "convolveScience", "auto"] = config_field(
        "convolveTemplate",
        doc="Which image to convolve; auto convolves the one with the narrower PSF [mode].",
    )
    kernel: KernelConfig = config_field(doc="PSF-matching kernel.", factory=KernelConfig)
    star_selector: StarSelectorConfig = config_field(
        doc="Kernel sources chosen from the science catalogue.", factory=_kernel_star_selector
    )
    detection: SourceDetectionConfig = config_field(
        doc="Detection on the science image when no sources are given.",
        factory=lambda: SourceDetectionConfig(threshold=10.0),
    )
    min_stamps: int = config_field(
        5, doc="Fewer usable kernel stamps raise InsufficientSourcesError [minKernelCandidates]."
    )
    max_stamps: int = config_field(400, doc="Use at most this many kernel stamps.")
    required_template_fraction: float = config_field(
        0.1,
        doc="Below this fraction of science pixels covered by the template, raise "
        "NoWorkFound [requiredTemplateFraction].",
    )
    exact_convolved_variance: bool = config_field(
        False,
        doc="Convolve the variance with the squared kernel exactly rather than with a "
        "Gaussian of its sum and second moments (exact where the variance is smooth).",
    )
    do_decorrelation: bool = config_field(
        True, doc="Whiten the difference-image noise [doDecorrelation]."
    )
    spatially_varying_decorrelation: bool = config_field(
        False,
        doc="Evaluate the decorrelation kernel on a grid of cells "
        "[useSpatiallyVaryingDecorrelation].",
    )
    decorrelation_cells: int = config_field(
        4, doc="Cells per axis of the spatially varying decorrelation."
    )
    decorrelation_excluded_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD", "SAT", "SAT_TEMPLATE", "CR"),
        doc="Difference pixels with these planes enter the decorrelation as zeros, so that "
        "the raw values of defects and saturated cores are not spread into good pixels "
        "(their own output is the filtered neighbourhood; their mask is kept).",
    )
    max_footprint_ratio_mean: float = config_field(
        0.1,
        doc="Mean |difference| / science flux on kernel stars above which the subtraction is bad.",
    )
    max_footprint_ratio_std: float = config_field(
        0.2, doc="Spread of that ratio above which the subtraction is bad."
    )
    template_preserve_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD"),
        doc="Template mask planes copied into the difference [preserveTemplateMask].",
    )
    template_rename_planes: tuple[str, ...] = config_field(
        ("SAT",), doc="Template mask planes copied with a _TEMPLATE suffix [renameTemplateMask]."
    )
    convolved_bad_planes: tuple[str, ...] = config_field(
        ("NO_DATA", "BAD", "SAT", "EDGE", "CR", "INTRP", "SUSPECT"),
        doc="Planes of the convolved image grown by the kernel's half-width.",
    )

    def validate(self) -> None:
        self.check(self.min_stamps >= 1, "min_stamps", "must be >= 1")
        self.check(self.max_stamps >= self.min_stamps, "max_stamps", "must be >= min_stamps")
        self.check(
            0 <= self.required_template_fraction <= 1,
            "required_template_fraction",
            "must be in [0, 1]",
        )
        self.check(self.decorrelation_cells >= 1, "decorrelation_cells", "must be >= 1")
