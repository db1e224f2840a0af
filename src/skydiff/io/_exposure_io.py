"""Exposures in FITS: skydiff's own layout (read and write) and LSST afw files (read)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from .. import __version__
from ..errors import FitsFormatError
from ..image import Box, Exposure, Mask, MaskedImage, PhotoCalib, VisitInfo
from ._atomic import write_hdus_atomically
from ._header import exact_card, read_float, wcs_from_header, wcs_to_header
from ._open import IMAGE_HDU_TYPES, image_hdus, open_fits, read_hdu_data
from ._psf_io import psf_from_hdu, psf_to_hdu

__all__ = [
    "SKYDIFF_FORMAT",
    "flag_non_finite",
    "mask_planes_from_header",
    "read_exposure",
    "write_exposure",
]

log = logging.getLogger(__name__)

#: Value of the ``SDFORMAT`` card in the primary HDU of skydiff exposure files.
SKYDIFF_FORMAT = "skydiff-exposure"
_PIXEL_EXTENSIONS = ("IMAGE", "MASK", "VARIANCE")
_OPTIONAL_EXTENSIONS = ("PSF",)

#: VisitInfo field -> (FITS keyword, comment).
_VISIT_CARDS = {
    "visit": ("VISIT", "visit identifier"),
    "detector": ("DETECTOR", "detector identifier"),
    "instrument": ("INSTRUME", "instrument"),
    "mjd": ("MJD-AVG", "[d] MJD (TAI) at mid-exposure"),
    "exposure_time": ("EXPTIME", "[s] exposure time"),
    "airmass": ("AIRMASS", "airmass at mid-exposure"),
    "boresight_ra": ("BORE-RA", "[deg] boresight right ascension"),
    "boresight_dec": ("BORE-DEC", "[deg] boresight declination"),
    "boresight_rotation": ("BORE-ROT", "[deg] boresight rotation angle"),
}


# -- writing ---------------------------------------------------------------------------------


def _primary_header(exposure: Exposure) -> fits.Header:
    header = fits.Header()
    header["SDFORMAT"] = (SKYDIFF_FORMAT, "file layout")
    header["SDVERS"] = (__version__, "skydiff version that wrote this file")
    header["BUNIT"] = (exposure.units, "pixel units")
    header["BAND"] = (exposure.band, "abstract band")
    header["FILTER"] = (exposure.physical_filter, "physical filter")
    for field, (key, comment) in _VISIT_CARDS.items():
        value = getattr(exposure.visit_info, field)
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            continue
        header.append(exact_card(key, value, comment))
    if exposure.photo_calib is not None:
        header.append(
            exact_card("PHOTCAL", exposure.photo_calib.calibration_mean, "[nJy/count] calibration")
        )
        header.append(
            exact_card(
                "PHOTCERR", exposure.photo_calib.calibration_err, "[nJy/count] calibration error"
            )
        )
    if exposure.metadata:
        try:
            header["SDMETA"] = (json.dumps(exposure.metadata), "free metadata (JSON)")
        except TypeError as error:
            raise TypeError(f"exposure metadata must be JSON-serialisable: {error}") from error
    return header


def _pixel_hdu(data: np.ndarray, name: str, exposure: Exposure) -> fits.ImageHDU:
    bbox = exposure.bbox
    if exposure.wcs is not None:
        header = wcs_to_header(exposure.wcs, bbox.x0, bbox.y0)
    else:
        header = fits.Header()
        header["LTV1"], header["LTV2"] = -bbox.x0, -bbox.y0
    header["EXTNAME"] = name
    header["INHERIT"] = True
    if name == "MASK":
        for plane, bit in sorted(exposure.mask.planes.items(), key=lambda item: item[1]):
            header[f"HIERARCH MP_{plane}"] = bit
    elif name == "IMAGE":
        header["BUNIT"] = exposure.units
    return fits.ImageHDU(data, header=header)


def write_exposure(
    exposure: Exposure,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    extra_hdus: tuple[fits.BinTableHDU, ...] = (),
) -> Path:
    """Write an exposure in skydiff's FITS layout, atomically.

    Primary HDU with the calibration and observation cards, then ``IMAGE``
    (float32), ``MASK`` (int32, ``MP_<NAME>`` cards), ``VARIANCE`` (float32),
    each with the WCS (for the array's own pixel 1) and ``LTV1/2 = -x0,-y0``,
    and a ``PSF`` table when the exposure has a PSF. The file is written under
    a temporary name and renamed, so a crash never leaves a half-written file.

    Parameters
    ----------
    exposure : Exposure
        What to write.
    path : path-like
        Destination.
    overwrite : bool
        Replace an existing file.
    extra_hdus : tuple of BinTableHDU
        Further named tables (e.g. coadd inputs), listed in the ``SDEXTRA``
        card so that readers accept them.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    primary = _primary_header(exposure)
    extra_names = [hdu.header.get("EXTNAME", "") for hdu in extra_hdus]
    if not all(extra_names):
        raise ValueError("every extra HDU needs an EXTNAME")
    if extra_names:
        primary["SDEXTRA"] = (",".join(extra_names), "further extensions")
    hdus: list[fits.hdu.base._BaseHDU] = [fits.PrimaryHDU(header=primary)]
    hdus.append(_pixel_hdu(exposure.image, "IMAGE", exposure))
    hdus.append(_pixel_hdu(exposure.mask.array, "MASK", exposure))
    hdus.append(_pixel_hdu(exposure.variance, "VARIANCE", exposure))
    if exposure.psf is not None:
        hdus.append(psf_to_hdu(exposure.psf))
    hdus.extend(extra_hdus)
    return write_hdus_atomically(hdus, path, overwrite=overwrite)


# -- reading ---------------------------------------------------------------------------------


def mask_planes_from_header(header: fits.Header) -> dict[str, int]:
    """Plane name -> bit from ``MP_<NAME>`` cards."""
    return {key[3:]: int(value) for key, value in header.items() if key.upper().startswith("MP_")}


def flag_non_finite(masked_image: MaskedImage, path: Any) -> int:
    """Turn non-finite image/variance pixels and negative variances into NO_DATA.

    Returns the number of pixels newly flagged (logged when non-zero).
    """
    if _all_valid(masked_image.image, masked_image.variance):
        return 0
    no_data_bit = (
        masked_image.mask.bitmask("NO_DATA") if "NO_DATA" in masked_image.mask.planes else 0
    )
    with np.errstate(invalid="ignore"):
        bad = (
            ~np.isfinite(masked_image.image)
            | ~(masked_image.variance >= 0)
            | np.isnan(masked_image.variance)
        )
    already = (masked_image.mask.array & no_data_bit) != 0 if no_data_bit else False
    new = bad & ~already
    count = int(np.count_nonzero(new))
    if count:
        log.warning(
            "%s: %d pixels with non-finite image or invalid variance set to NO_DATA", path, count
        )
    if np.any(bad):
        masked_image.set_no_data(bad)
    return count


def _all_valid(image: np.ndarray, variance: np.ndarray) -> bool:
    """True when every image pixel is finite and every variance >= 0 (two fast reductions).

    A float64 sum of float32 values cannot overflow, so it is finite exactly
    when every value is; NaN propagates through ``min``.
    """
    with np.errstate(all="ignore"):
        return bool(
            np.isfinite(np.sum(image, dtype=np.float64)) and np.min(variance, initial=0.0) >= 0
        )


def _origin(header: fits.Header) -> tuple[int, int]:
    ltv1, ltv2 = header.get("LTV1", 0), header.get("LTV2", 0)
    if int(ltv1) != ltv1 or int(ltv2) != ltv2:
        raise ValueError(f"non-integer LTV1/LTV2 ({ltv1}, {ltv2})")
    return -int(ltv1), -int(ltv2)


def _read_pixels(
    hdul: fits.HDUList, indices: tuple[int, int, int], path: Path, bbox: Box | None
) -> tuple[MaskedImage, fits.Header]:
    headers = [hdul[i].header for i in indices]
    shapes = [
        (h.get("ZNAXIS2", h.get("NAXIS2")), h.get("ZNAXIS1", h.get("NAXIS1"))) for h in headers
    ]
    if len(set(shapes)) != 1:
        raise FitsFormatError(path, f"image, mask and variance shapes differ: {shapes}")
    try:
        x0, y0 = _origin(headers[0])
    except ValueError as error:
        raise FitsFormatError(path, str(error)) from error
    full = Box(x0, y0, shapes[0][1], shapes[0][0])
    if bbox is not None and not full.contains(bbox):
        raise FitsFormatError(path, f"requested {bbox} is not inside the image's {full}")
    box = full if bbox is None else bbox
    slices = None if bbox is None else bbox.slices(full)
    image, mask, variance = (
        read_hdu_data(hdul[i], path, what, slices)
        for i, what in zip(indices, ("image", "mask", "variance"), strict=True)
    )
    if not np.issubdtype(mask.dtype, np.integer):
        raise FitsFormatError(path, f"mask HDU holds {mask.dtype}, expected integers")
    planes = mask_planes_from_header(headers[1])
    try:
        mask_obj = Mask(np.asarray(mask, dtype=np.int32), bbox=box, planes=planes or None)
    except Exception as error:
        raise FitsFormatError(path, f"invalid mask planes: {error}") from error
    for plane in ("NO_DATA",):
        mask_obj.add_plane(plane)
    masked_image = MaskedImage(image, mask_obj, variance, bbox=box)
    flag_non_finite(masked_image, path)
    return masked_image, headers[0]


def _visit_info(header: fits.Header) -> VisitInfo:
    values: dict[str, Any] = {}
    for field, (key, _) in _VISIT_CARDS.items():
        if key not in header:
            continue
        if field in ("visit", "detector"):
            values[field] = int(header[key])
        elif field == "instrument":
            values[field] = str(header[key])
        else:
            values[field] = read_float(header, key)
    return VisitInfo(**values)


def _read_skydiff(hdul: fits.HDUList, path: Path, bbox: Box | None) -> Exposure:
    primary = hdul[0].header
    names = [hdu.header.get("EXTNAME", f"#{i}") for i, hdu in enumerate(hdul)][1:]
    missing = [n for n in _PIXEL_EXTENSIONS if n not in names]
    if missing:
        raise FitsFormatError(path, f"missing extension(s) {missing}; found {names}")
    extra = [n for n in names if n not in _PIXEL_EXTENSIONS + _OPTIONAL_EXTENSIONS]
    known_extra = primary.get("SDEXTRA", "")
    extra = [n for n in extra if n not in known_extra.split(",")]
    if extra:
        raise FitsFormatError(path, f"unexpected extension(s) {extra}")
    if len(set(names)) != len(names):
        raise FitsFormatError(path, f"duplicated extensions: {names}")
    indices = tuple(names.index(n) + 1 for n in _PIXEL_EXTENSIONS)
    masked_image, header = _read_pixels(hdul, indices, path, bbox)
    wcs = wcs_from_header(header, *_origin(header), path)
    psf = psf_from_hdu(hdul["PSF"], path) if "PSF" in names else None
    photo_calib = None
    if "PHOTCAL" in primary:
        try:
            photo_calib = PhotoCalib(
                read_float(primary, "PHOTCAL"), read_float(primary, "PHOTCERR", 0.0)
            )
        except ValueError as error:
            raise FitsFormatError(path, f"invalid photometric calibration: {error}") from error
    units = primary.get("BUNIT", "count")
    if units not in ("count", "nJy"):
        raise FitsFormatError(path, f"unknown BUNIT {units!r} (expected 'count' or 'nJy')")
    return Exposure(
        masked_image,
        wcs=wcs,
        psf=psf,
        photo_calib=photo_calib,
        band=primary.get("BAND", ""),
        physical_filter=primary.get("FILTER", ""),
        visit_info=_visit_info(primary),
        metadata=json.loads(primary.get("SDMETA", "{}")),
        units=units,
    )


def _is_lsst(hdul: fits.HDUList) -> bool:
    if len(hdul) < 4 or not all(isinstance(h, IMAGE_HDU_TYPES) for h in hdul[1:4]):
        return False
    return "AR_HDU" in hdul[0].header or hdul[1].header.get("EXTTYPE") == "IMAGE"


def _read_lsst(hdul: fits.HDUList, path: Path, bbox: Box | None) -> Exposure:
    masked_image, header = _read_pixels(hdul, (1, 2, 3), path, bbox)
    wcs = wcs_from_header(header, *_origin(header), path)
    primary = hdul[0].header
    fluxmag0 = read_float(primary, "FLUXMAG0", 0.0)
    photo_calib = PhotoCalib(3631.0e9 / fluxmag0) if fluxmag0 > 0 else None
    exptime = read_float(primary, "EXPTIME")
    physical_filter = str(primary.get("FILTER", "")).strip()
    if physical_filter == "_unknown_":
        physical_filter = ""
    units = (
        "nJy" if str(primary.get("BUNIT", header.get("BUNIT", ""))).strip() == "nJy" else "count"
    )
    visit_info = VisitInfo(
        visit=primary.get("VISIT"),
        detector=primary.get("DETECTOR", primary.get("CCDNUM")),
        exposure_time=exptime if exptime > 0 else math.nan,
        instrument=str(primary.get("INSTRUME", "")),
    )
    return Exposure(
        masked_image,
        wcs=wcs,
        photo_calib=photo_calib,
        physical_filter=physical_filter,
        band=physical_filter[:1].lower(),
        visit_info=visit_info,
        units=units,
    )


def read_exposure(path: str | os.PathLike, *, bbox: Box | None = None) -> Exposure:
    """Read an exposure written by skydiff or by LSST afw.

    Non-finite pixels become NO_DATA. LSST PSF models (stored in afw archive
    tables) are not read; characterize the exposure to get one.

    Parameters
    ----------
    path : path-like
        FITS file.
    bbox : Box, optional
        Read only this part of the image (parent-frame box).

    Raises
    ------
    FitsFormatError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    with open_fits(path) as hdul:
        if hdul[0].header.get("SDFORMAT") == SKYDIFF_FORMAT:
            return _read_skydiff(hdul, path, bbox)
        if _is_lsst(hdul):
            return _read_lsst(hdul, path, bbox)
        n_images = len(image_hdus(hdul))
        raise FitsFormatError(
            path,
            f"not a skydiff or LSST exposure (no SDFORMAT card, {n_images} image HDU(s)); "
            "read plain images with skydiff.io.read_image",
        )
