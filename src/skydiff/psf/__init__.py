"""PSF models: one protocol, analytic, pixel and spatially varying implementations."""

from ._analytic import GaussianPsf, MoffatPsf
from ._base import PSF_REGISTRY, SIGMA_TO_FWHM, Psf, odd_size_for
from ._image import ImagePsf, PixelBasisPsf
from ._stamps import psf_stamps, shift_stamps
from ._varying import VaryingAnalyticPsf

__all__ = [
    "PSF_REGISTRY",
    "SIGMA_TO_FWHM",
    "GaussianPsf",
    "ImagePsf",
    "MoffatPsf",
    "PixelBasisPsf",
    "Psf",
    "VaryingAnalyticPsf",
    "odd_size_for",
    "psf_stamps",
    "shift_stamps",
]
