"""Image differencing: Alard-Lupton PSF matching, subtraction and decorrelation."""

from ._basis import (
    SeparableBasis,
    alard_lupton_basis,
    basis_sigmas,
    kernel_size_for,
    separable_basis,
)
from ._config import AlardLuptonSubtractConfig, KernelConfig
from ._convolve import convolve_image, convolve_spatially
from ._convolve_exposure import convolve_exposure
from ._decorrelate import (
    DecorrelatedImage,
    Decorrelation,
    SpatialDecorrelation,
    compute_decorrelation,
    decorrelate,
    decorrelate_spatially,
    difference_psf,
)
from ._dia_sources import (
    DetectAndMeasureConfig,
    DetectAndMeasureResult,
    DetectAndMeasureTask,
    DipoleFit,
    DipoleStamp,
    associate_dipoles,
    fit_dipole,
)
from ._kernel import DifferentialBackground, SpatialKernel
from ._model_psf_match import (
    ModelPsfConfig,
    ModelPsfMatchConfig,
    ModelPsfMatchResult,
    ModelPsfMatchTask,
    WarpedModelPsf,
)
from ._preconvolve import AlardLuptonPreconvolveSubtractResult, AlardLuptonPreconvolveSubtractTask
from ._solve import StampEquations, solve_spatial, stamp_equations
from ._subtract import AlardLuptonSubtractResult, AlardLuptonSubtractTask

__all__ = [
    "AlardLuptonPreconvolveSubtractResult",
    "AlardLuptonPreconvolveSubtractTask",
    "AlardLuptonSubtractConfig",
    "AlardLuptonSubtractResult",
    "AlardLuptonSubtractTask",
    "DecorrelatedImage",
    "Decorrelation",
    "DetectAndMeasureConfig",
    "DetectAndMeasureResult",
    "DetectAndMeasureTask",
    "DifferentialBackground",
    "DipoleFit",
    "DipoleStamp",
    "KernelConfig",
    "ModelPsfConfig",
    "ModelPsfMatchConfig",
    "ModelPsfMatchResult",
    "ModelPsfMatchTask",
    "SeparableBasis",
    "SpatialDecorrelation",
    "SpatialKernel",
    "StampEquations",
    "WarpedModelPsf",
    "alard_lupton_basis",
    "associate_dipoles",
    "basis_sigmas",
    "compute_decorrelation",
    "convolve_exposure",
    "convolve_image",
    "convolve_spatially",
    "decorrelate",
    "decorrelate_spatially",
    "difference_psf",
    "fit_dipole",
    "kernel_size_for",
    "separable_basis",
    "solve_spatial",
    "stamp_equations",
]
