"""Lazy handles on exposures: metadata at once, pixels of any sub-box on demand.

A handle is what a task that works block by block needs of an exposure
(LSST's ``DeferredDatasetHandle`` with a ``bbox`` parameter): ``bbox``,
``wcs``, ``psf``, ``band``, ``units``, ``visit_info`` and ``mask_planes``
without reading pixels, and ``get(bbox)`` returning an :class:`Exposure` of
just that box. :class:`ExposureHandle` reads a FITS file,
:class:`InMemoryHandle` wraps an exposure already in memory; both accept an
``out=`` masked image to read into, so a caller can reuse its buffers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import FitsFormatError, InvalidParameterError
from ..image import Box, Exposure, Mask, MaskedImage, VisitInfo
from ._exposure_io import (
    _PIXEL_EXTENSIONS,
    SKYDIFF_FORMAT,
    _is_lsst,
    _origin,
    flag_non_finite,
    read_exposure,
)
from ._open import open_fits

__all__ = ["ExposureHandle", "InMemoryHandle", "read_exposure_header"]

_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclass(frozen=True)
class _PlainArray:
    """Where an uncompressed, unscaled image HDU keeps its pixels in the file."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, int]


def _pixel_indices(hdul: fits.HDUList, path: Path) -> tuple[int, int, int]:
    """HDU indices of image, mask and variance, as :func:`read_exposure` finds them."""
    if hdul[0].header.get("SDFORMAT") == SKYDIFF_FORMAT:
        names = [hdu.header.get("EXTNAME", f"#{i}") for i, hdu in enumerate(hdul)][1:]
        missing = [n for n in _PIXEL_EXTENSIONS if n not in names]
        if missing:
            raise FitsFormatError(path, f"missing extension(s) {missing}; found {names}")
        return tuple(names.index(n) + 1 for n in _PIXEL_EXTENSIONS)  # type: ignore[return-value]
    if _is_lsst(hdul):
        return (1, 2, 3)
    raise FitsFormatError(path, "not a skydiff or LSST exposure (no SDFORMAT card)")


def _plain_array(hdul: fits.HDUList, index: int) -> _PlainArray | None:
    """The byte layout of HDU ``index``, or None when it must be read through astropy."""
    hdu = hdul[index]
    header = hdu.header
    dtype = _BITPIX_DTYPES.get(header.get("BITPIX"))
    plain = (
        type(hdu) is fits.ImageHDU
        and dtype is not None
        and header.get("NAXIS") == 2
        and header.get("BSCALE", 1) == 1
        and header.get("BZERO", 0) == 0
        and "BLANK" not in header
    )
    if not plain:
        return None
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    return _PlainArray(int(hdul.fileinfo(index)["datLoc"]), np.dtype(dtype), shape)


@dataclass(frozen=True)
class ExposureHeader:
    """What :func:`read_exposure_header` learns about an exposure file.

    Attributes
    ----------
    bbox : Box
        The full image box in its parent frame.
    template : Exposure
        A one-pixel exposure carrying all metadata (WCS, PSF, calibration,
        band, visit information, units, mask planes).
    arrays : tuple or None
        Byte layouts of the image, mask and variance HDUs when all three are
        stored plainly (uncompressed, unscaled); None otherwise.
    """

    bbox: Box
    template: Exposure
    arrays: tuple[_PlainArray, _PlainArray, _PlainArray] | None


def read_exposure_header(path: str | os.PathLike) -> ExposureHeader:
    """Metadata of a skydiff or LSST exposure file, reading its headers and one pixel.

    The metadata come from :func:`read_exposure` on the first pixel of the
    image, so they are exactly what a full read gives.

    Raises
    ------
    FitsFormatError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        indices = _pixel_indices(hdul, path)
        header = hdul[indices[0]].header
        shape = (
            header.get("ZNAXIS2", header.get("NAXIS2")),
            header.get("ZNAXIS1", header.get("NAXIS1")),
        )
        if header.get("NAXIS", header.get("ZNAXIS")) != 2 or None in shape:
            raise FitsFormatError(path, "the image HDU is not a 2-d image")
        try:
            x0, y0 = _origin(header)
        except ValueError as error:
            raise FitsFormatError(path, str(error)) from error
        arrays = tuple(_plain_array(hdul, i) for i in indices)
    bbox = Box(x0, y0, int(shape[1]), int(shape[0]))
    if bbox.is_empty:
        raise FitsFormatError(path, "the image is empty")
    template = read_exposure(path, bbox=Box(x0, y0, 1, 1))
    plain = all(a is not None and a.shape == bbox.shape for a in arrays)
    return ExposureHeader(bbox, template, arrays if plain else None)  # type: ignore[arg-type]


class ExposureHandle:
    """A skydiff or LSST exposure file, read lazily (LSST ``DeferredDatasetHandle``).

    The metadata are read once, on construction, from the headers (and one
    pixel, see :func:`read_exposure_header`); :meth:`get` reads only the
    pixels of the box asked for. Uncompressed, unscaled pixel HDUs (what
    :func:`write_exposure` writes) are read with one positioned read per
    box (per row for a box narrower than the image); others go through
    :func:`read_exposure`. Either way the result equals
    ``read_exposure(path, bbox=bbox)``.

    Parameters
    ----------
    path : path-like
        The exposure file.

    Raises
    ------
    FitsFormatError
        If the file is missing or not a skydiff or LSST exposure.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        header = read_exposure_header(self.path)
        self._bbox = header.bbox
        self._template = header.template
        self._arrays = header.arrays

    @property
    def bbox(self) -> Box:
        """The full image box."""
        return self._bbox

    @property
    def wcs(self) -> WCS | None:
        return self._template.wcs

    @property
    def psf(self) -> Any:
        return self._template.psf

    @property
    def band(self) -> str:
        return self._template.band

    @property
    def physical_filter(self) -> str:
        return self._template.physical_filter

    @property
    def units(self) -> str:
        return self._template.units

    @property
    def visit_info(self) -> VisitInfo:
        return self._template.visit_info

    @property
    def mask_planes(self) -> dict[str, int]:
        """Plane name -> bit of the file's mask (NO_DATA included)."""
        return self._template.mask.planes

    def describe(self) -> str:
        """The file name, visit, detector and band."""
        info = self.visit_info
        parts = [
            f"visit={info.visit}" if info.visit is not None else "",
            f"detector={info.detector}" if info.detector is not None else "",
            f"band={self.band}" if self.band else "",
        ]
        details = " ".join(p for p in parts if p)
        return f"{self.path} ({details})" if details else str(self.path)

    def get(self, bbox: Box | None = None, *, out: MaskedImage | None = None) -> Exposure:
        """The exposure restricted to ``bbox`` (default: all of it).

        Parameters
        ----------
        bbox : Box, optional
            Parent-frame box inside :attr:`bbox`.
        out : MaskedImage, optional
            Read into this masked image (on ``bbox``), e.g. a reused buffer; its
            mask keeps its own plane layout, the file's planes being translated
            (and added) by name. Pixels are copied as stored: non-finite ones
            are not flagged NO_DATA, which a stacking caller does itself.

        Raises
        ------
        FitsFormatError
            If ``bbox`` is not inside the image or the pixels cannot be read.
        """
        bbox = self._bbox if bbox is None else bbox
        if not self._bbox.contains(bbox):
            raise FitsFormatError(
                self.path, f"requested {bbox} is not inside the image's {self._bbox}"
            )
        if out is not None and out.bbox != bbox:
            raise InvalidParameterError(f"out covers {out.bbox}, not the requested {bbox}")
        if self._arrays is None:
            exposure = read_exposure(self.path, bbox=bbox)
            if out is None:
                return exposure
            _copy_into(exposure.masked_image, out)
            return exposure.replace(masked_image=out)
        planes = self._template.mask.planes
        if out is not None:
            self._read_plain(bbox, out, planes)
            return self._template.replace(masked_image=out)
        masked = MaskedImage(
            np.empty(bbox.shape, np.float32),
            Mask(np.empty(bbox.shape, np.int32), bbox=bbox, planes=planes),
            np.empty(bbox.shape, np.float32),
            bbox=bbox,
        )
        self._read_plain(bbox, masked, planes)
        flag_non_finite(masked, self.path)
        return self._template.replace(masked_image=masked)

    def _read_plain(self, bbox: Box, out: MaskedImage, planes: dict[str, int]) -> None:
        same_planes = out.mask.planes == planes
        targets = (out.image, out.mask.array if same_planes else None, out.variance)
        rows, cols = bbox.slices(self._bbox)
        try:
            with open(self.path, "rb", buffering=0) as stream:
                for layout, target in zip(self._arrays, targets, strict=True):
                    data = _read_box(stream, layout, rows, cols, target)
                    if target is None:
                        source = Mask(data.astype(np.int32, copy=False), bbox=bbox, planes=planes)
                        for name in planes:
                            out.mask.add_plane(name)
                        out.mask.array[...] = source.translated(out.mask.planes)
        except OSError as error:
            raise FitsFormatError(self.path, f"cannot read pixels of {bbox} ({error})") from error

    def __repr__(self) -> str:
        return f"ExposureHandle({str(self.path)!r}, {self._bbox})"


def _read_box(stream, layout: _PlainArray, rows: slice, cols: slice, target):
    """Read rows/cols of one HDU into ``target`` (native order), or a new array if None."""
    width = layout.shape[1]
    itemsize = layout.dtype.itemsize
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    direct = (
        target is not None
        and target.dtype.kind == layout.dtype.kind
        and target.dtype.itemsize == itemsize
        and target.flags.c_contiguous
    )
    buffer = target if direct else np.empty(shape, layout.dtype.newbyteorder("="))
    raw = buffer.view(layout.dtype.newbyteorder("="))
    if shape[1] == width:
        stream.seek(layout.offset + rows.start * width * itemsize)
        _read_exactly(stream, raw)
    else:
        for j in range(shape[0]):
            stream.seek(layout.offset + ((rows.start + j) * width + cols.start) * itemsize)
            _read_exactly(stream, raw[j])
    if layout.dtype.byteorder == ">" and np.little_endian:
        raw.byteswap(inplace=True)
    if target is not None and not direct:
        target[...] = buffer
    return buffer


def _read_exactly(stream, array: np.ndarray) -> None:
    view = memoryview(array).cast("B")
    count = stream.readinto(view)
    if count != view.nbytes:
        raise OSError(f"file is truncated ({count} of {view.nbytes} bytes read)")


def _copy_into(source: MaskedImage, target: MaskedImage) -> None:
    """Copy pixels into ``target`` keeping its mask layout (planes translated by name)."""
    target.image[...] = source.image
    target.variance[...] = source.variance
    if source.mask.planes == target.mask.planes:
        target.mask.array[...] = source.mask.array
        return
    for name in source.mask.planes:
        target.mask.add_plane(name)
    target.mask.array[...] = source.mask.translated(target.mask.planes)


class InMemoryHandle:
    """The handle interface of :class:`ExposureHandle` over an exposure in memory.

    :meth:`get` returns a view (``exposure[bbox]``) or copies into ``out``.
    """

    def __init__(self, exposure: Exposure):
        if not isinstance(exposure, Exposure):
            raise InvalidParameterError(f"InMemoryHandle needs an Exposure, got {type(exposure)}")
        self.exposure = exposure

    @property
    def bbox(self) -> Box:
        return self.exposure.bbox

    @property
    def wcs(self) -> WCS | None:
        return self.exposure.wcs

    @property
    def psf(self) -> Any:
        return self.exposure.psf

    @property
    def band(self) -> str:
        return self.exposure.band

    @property
    def physical_filter(self) -> str:
        return self.exposure.physical_filter

    @property
    def units(self) -> str:
        return self.exposure.units

    @property
    def visit_info(self) -> VisitInfo:
        return self.exposure.visit_info

    @property
    def mask_planes(self) -> dict[str, int]:
        return self.exposure.mask.planes

    def describe(self) -> str:
        return self.exposure.describe()

    def get(self, bbox: Box | None = None, *, out: MaskedImage | None = None) -> Exposure:
        """``exposure[bbox]`` (a view), or a copy into ``out``."""
        bbox = self.bbox if bbox is None else bbox
        if not self.bbox.contains(bbox):
            raise InvalidParameterError(
                f"requested {bbox} is not inside the exposure's {self.bbox}"
            )
        view = self.exposure[bbox]
        if out is None:
            return view
        if out.bbox != bbox:
            raise InvalidParameterError(f"out covers {out.bbox}, not the requested {bbox}")
        _copy_into(view.masked_image, out)
        return view.replace(masked_image=out)

    def __repr__(self) -> str:
        return f"InMemoryHandle({self.exposure!r})"
