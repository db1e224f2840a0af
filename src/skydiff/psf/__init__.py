"""PSF models: one protocol, analytic, pixel and spatially varying implementations."""

from ._analytic import DoubleGaussianPsf, GaussianPsf, MoffatPsf
from ._base import PSF_REGISTRY, SIGMA_TO_FWHM, Psf, odd_size_for
from ._coadd import CoaddPsf, CoaddPsfInput, local_jacobian
from ._image import ImagePsf, PixelBasisPsf
from ._stamps import psf_stamps, resize_kernel, shift_stamps
from ._transform import transform_kernel
from ._varying import VaryingAnalyticPsf

__all__ = [
    "PSF_REGISTRY",
    "SIGMA_TO_FWHM",
    "CoaddPsf",
    "CoaddPsfInput",
    "DoubleGaussianPsf",
    "GaussianPsf",
    "ImagePsf",
    "MoffatPsf",
    "PixelBasisPsf",
    "Psf",
    "VaryingAnalyticPsf",
    "local_jacobian",
    "odd_size_for",
    "psf_stamps",
    "resize_kernel",
    "shift_stamps",
    "transform_kernel",
]
