"""Opening FITS files with clear errors for missing, non-FITS and truncated files."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import FitsFormatError

__all__ = ["IMAGE_HDU_TYPES", "image_hdus", "open_fits", "read_hdu_data"]

IMAGE_HDU_TYPES = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


@contextlib.contextmanager
def open_fits(path: str | os.PathLike) -> Iterator[fits.HDUList]:
    """Open a FITS file for reading; every failure becomes a :class:`FitsFormatError`.

    The file's structure is verified on opening (all headers are read), so a
    truncated file or one that is not FITS is reported here, with its path.
    """
    path = Path(path)
    if not path.exists():
        raise FitsFormatError(path, "file does not exist")
    if path.is_dir():
        raise FitsFormatError(path, "is a directory, not a FITS file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
        except (OSError, ValueError, IndexError, TypeError) as error:
            raise FitsFormatError(path, f"not a readable FITS file ({error})") from error
    problems = [
        str(w.message).splitlines()[0]
        for w in caught
        if any(word in str(w.message).lower() for word in ("truncat", "corrupt"))
    ]
    if problems:
        hdul.close()
        raise FitsFormatError(path, f"file is truncated ({problems[0]})")
    try:
        yield hdul
    finally:
        hdul.close()


def read_hdu_data(
    hdu: fits.hdu.base.ExtensionHDU,
    path: Path,
    what: str,
    slices: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """The data of an HDU (optionally a section), as a native-endian array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            data = hdu.section[slices] if slices is not None else hdu.data
    except Exception as error:
        raise FitsFormatError(path, f"cannot read the {what} pixels ({error})") from error
    if data is None:
        raise FitsFormatError(path, f"the {what} HDU has no data")
    data = np.asarray(data)
    if data.ndim != 2:
        raise FitsFormatError(path, f"the {what} HDU is {data.ndim}-d, expected a 2-d image")
    if data.dtype.byteorder not in ("=", "|") and data.flags.writeable:
        # FITS is big-endian: swap in place rather than copy (files are opened without
        # memmap, so the buffer is private to this read)
        return data.byteswap(inplace=True).view(data.dtype.newbyteorder("="))
    return data.astype(data.dtype.newbyteorder("="), copy=False)


def image_hdus(hdul: fits.HDUList) -> list[int]:
    """Indices of the HDUs holding 2-d image data."""
    return [
        index
        for index, hdu in enumerate(hdul)
        if (isinstance(hdu, IMAGE_HDU_TYPES) and hdu.header.get("NAXIS", 0) == 2)
        or isinstance(hdu, fits.CompImageHDU)
    ]
