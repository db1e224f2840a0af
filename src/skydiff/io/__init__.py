"""FITS input and output of exposures: skydiff and LSST layouts, and plain images."""

from ._background_io import (
    background_from_hdu,
    background_to_hdu,
    read_background,
    write_background,
)
from ._exposure_io import SKYDIFF_FORMAT, read_exposure, write_exposure
from ._handle import ExposureHandle, InMemoryHandle
from ._header import wcs_from_header, wcs_to_header
from ._open import open_fits
from ._plain import DECAM_CP_MASK_VALUES, estimate_variance, read_image
from ._psf_io import psf_from_hdu, psf_to_hdu

__all__ = [
    "DECAM_CP_MASK_VALUES",
    "SKYDIFF_FORMAT",
    "ExposureHandle",
    "InMemoryHandle",
    "background_from_hdu",
    "background_to_hdu",
    "estimate_variance",
    "open_fits",
    "psf_from_hdu",
    "psf_to_hdu",
    "read_any",
    "read_background",
    "read_exposure",
    "read_image",
    "wcs_from_header",
    "wcs_to_header",
    "write_background",
    "write_exposure",
]


def read_any(path, **plain_options):
    """Read a skydiff or LSST exposure, or else a plain image (with ``plain_options``)."""
    from ..errors import FitsFormatError

    try:
        return read_exposure(path)
    except FitsFormatError as error:
        if "not a skydiff or LSST exposure" not in str(error):
            raise
    return read_image(path, **plain_options)
