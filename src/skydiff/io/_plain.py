"""Plain FITS images: one image HDU with a WCS, plus optional variance, weight and mask files."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time

from ..errors import FitsFormatError, InvalidParameterError
from ..image import Box, Exposure, Mask, MaskedImage, PhotoCalib, VisitInfo
from ..math import clipped_stats, difference_noise
from ._exposure_io import flag_non_finite
from ._header import read_float, wcs_from_header
from ._open import image_hdus, open_fits, read_hdu_data

__all__ = ["DECAM_CP_MASK_VALUES", "estimate_variance", "read_image"]

log = logging.getLogger(__name__)

#: DECam Community Pipeline data-quality codes (values, not bits) -> mask planes.
DECAM_CP_MASK_VALUES: dict[int, str] = {
    1: "BAD",  # bad pixel
    2: "NO_DATA",  # no value
    3: "SAT",  # saturated
    4: "SAT",  # bleed trail
    5: "CR",  # cosmic ray
    6: "BAD",  # low weight
    7: "SUSPECT",  # difference detection
    8: "STREAK",  # long streak
}


def _select_hdu(hdul: fits.HDUList, hdu: int | str | None, path: Path) -> int:
    candidates = image_hdus(hdul)
    if hdu is None:
        if not candidates:
            raise FitsFormatError(path, "no 2-d image HDU")
        if len(candidates) > 1:
            names = [hdul[i].name or f"#{i}" for i in candidates]
            raise FitsFormatError(
                path, f"{len(candidates)} image HDUs ({names}); choose one with hdu="
            )
        return candidates[0]
    try:
        index = hdul.index_of(hdu)
    except (KeyError, IndexError) as error:
        raise FitsFormatError(path, f"has no HDU {hdu!r}") from error
    if index not in candidates:
        raise FitsFormatError(path, f"HDU {hdu!r} is not a 2-d image")
    return index


def _read_single(path: Path, hdu: int | str | None, what: str, shape: tuple[int, ...] | None):
    with open_fits(path) as hdul:
        index = _select_hdu(hdul, hdu, path)
        data = read_hdu_data(hdul[index], path, what)
        header = hdul[index].header.copy()
        primary = hdul[0].header.copy() if index != 0 else fits.Header()
    if shape is not None and data.shape != shape:
        raise FitsFormatError(
            path, f"{what} shape {data.shape} does not match the image shape {shape}"
        )
    return data, header, primary


def estimate_variance(
    image: np.ndarray, good: np.ndarray, *, gain: float | None = None
) -> np.ndarray:
    """Per-pixel variance from the image itself.

    The sky variance is the square of the neighbour-difference noise of the
    good pixels (:func:`skydiff.math.difference_noise`); with a gain
    (electrons per image unit) the Poisson variance of the counts above the
    clipped-mean sky, ``(image - sky) / gain``, is added.
    """
    sky = float(clipped_stats(image, good=good, max_iter=10).mean)
    sigma = float(difference_noise(image, good=good))
    if not (math.isfinite(sigma) and sigma > 0):
        raise InvalidParameterError("cannot estimate the noise: no good pixels with spread")
    variance = np.full(image.shape, sigma**2, dtype=np.float32)
    if gain is not None:
        with np.errstate(invalid="ignore"):
            variance += (np.clip(image - sky, 0.0, None) / gain).astype(np.float32)
    return variance


def _mask_from_dq(
    dq: np.ndarray, mask: Mask, bits: Mapping[int, str] | None, values: Mapping[int, str] | None
) -> None:
    if bits is None and values is None:
        mask.set("BAD", dq != 0)
        return
    for code, plane in (values or {}).items():
        mask.set(plane, dq == code)
    for bit, plane in (bits or {}).items():
        mask.set(plane, (dq & bit) != 0)


def _header_visit_info(primary: fits.Header, header: fits.Header) -> VisitInfo:
    merged = primary.copy()
    merged.update(header)
    exptime = read_float(merged, "EXPTIME")
    mjd = read_float(merged, "MJD-AVG")
    if math.isnan(mjd):
        start = read_float(merged, "MJD-OBS")
        if math.isnan(start) and "DATE-OBS" in merged:
            try:
                start = Time(merged["DATE-OBS"], scale="utc").mjd
            except ValueError:
                start = math.nan
        mjd = start + (exptime / 86400.0 / 2.0 if math.isfinite(exptime) else 0.0)
    return VisitInfo(
        visit=_first_int(merged, ("VISIT", "EXPNUM", "EXPID")),
        detector=_first_int(merged, ("DETECTOR", "CCDNUM", "CCD_ID")),
        mjd=mjd,
        exposure_time=exptime,
        airmass=read_float(merged, "AIRMASS"),
        instrument=str(merged.get("INSTRUME", "")).strip(),
    )


def read_image(
    path: str | os.PathLike,
    *,
    hdu: int | str | None = None,
    variance: str | os.PathLike | None = None,
    weight: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    mask_bits: Mapping[int, str] | None = None,
    mask_values: Mapping[int, str] | None = None,
    gain: float | None = None,
    photo_calib: PhotoCalib | None = None,
    band: str | None = None,
    units: str = "count",
) -> Exposure:
    """Read a plain FITS image and its companions into an :class:`Exposure`.

    Parameters
    ----------
    path : path-like
        Image file; the image is its only 2-d image HDU, or ``hdu``.
    hdu : int or str, optional
        Which HDU of each file to read (index or EXTNAME).
    variance, weight : path-like, optional
        Variance, or inverse-variance weight, file (at most one). Weights
        ``<= 0`` become NO_DATA. Without either, the variance is estimated
        from the image (:func:`estimate_variance`) using ``gain``.
    mask : path-like, optional
        Data-quality file. Without a mapping every non-zero pixel is BAD.
    mask_bits : mapping of int to str, optional
        DQ bit value (1, 2, 4, ...) -> mask plane: for DQ files of bit flags.
    mask_values : mapping of int to str, optional
        DQ code -> mask plane, for DQ files of codes such as DECam's
        (:data:`DECAM_CP_MASK_VALUES`).
    gain : float, optional
        Electrons per image unit, for the Poisson term of an estimated variance.
    photo_calib : PhotoCalib, optional
        Calibration; default from a ``MAGZERO``/``MAGZPT`` header card if any.
    band : str, optional
        Band; default the first word of the ``FILTER`` card, or ``BAND``.
    units : {"count", "nJy"}
        Pixel units of the image.

    Raises
    ------
    FitsFormatError
        Naming the file and the problem (missing HDU, shape mismatch, bad WCS...).
    """
    path = Path(path)
    if variance is not None and weight is not None:
        raise InvalidParameterError("give at most one of variance= and weight=")
    image, header, primary = _read_single(path, hdu, "image", None)
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise FitsFormatError(path, f"image pixels have type {image.dtype}")
    x0 = -int(header.get("LTV1", 0)) if float(header.get("LTV1", 0)).is_integer() else 0
    y0 = -int(header.get("LTV2", 0)) if float(header.get("LTV2", 0)).is_integer() else 0
    bbox = Box.from_shape(image.shape, x0=x0, y0=y0)
    wcs = wcs_from_header(header, x0, y0, path)
    if wcs is None:
        raise FitsFormatError(path, "image HDU has no WCS (CTYPE1/CTYPE2 missing)")
    masked_image = MaskedImage(image.astype(np.float32), bbox=bbox)
    if mask is not None:
        dq, _, _ = _read_single(Path(mask), hdu, "mask", image.shape)
        if not np.issubdtype(dq.dtype, np.integer):
            raise FitsFormatError(Path(mask), f"data-quality pixels are {dq.dtype}, not integers")
        _mask_from_dq(dq.astype(np.int64), masked_image.mask, mask_bits, mask_values)
    finite = np.isfinite(masked_image.image)
    if weight is not None:
        w, _, _ = _read_single(Path(weight), hdu, "weight", image.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            masked_image.variance[...] = np.where(w > 0, 1.0 / w, np.inf)
        masked_image.set_no_data(~(w > 0) | ~np.isfinite(w))
    elif variance is not None:
        v, _, _ = _read_single(Path(variance), hdu, "variance", image.shape)
        masked_image.variance[...] = v
    else:
        good = finite & (masked_image.mask.array == 0)
        try:
            masked_image.variance[...] = estimate_variance(masked_image.image, good, gain=gain)
        except InvalidParameterError as error:
            raise FitsFormatError(path, f"no variance given and {error}") from error
    flag_non_finite(masked_image, path)
    merged = primary.copy()
    merged.update(header)
    if photo_calib is None:
        for key in ("MAGZERO", "MAGZPT", "ZPT"):
            if key in merged and math.isfinite(read_float(merged, key)):
                photo_calib = PhotoCalib.from_zero_point(read_float(merged, key))
                break
    physical_filter = str(merged.get("FILTER", "")).strip()
    if band is None:
        band = str(merged.get("BAND", physical_filter.split(" ")[0] if physical_filter else ""))
    return Exposure(
        masked_image,
        wcs=wcs,
        photo_calib=photo_calib,
        band=band,
        physical_filter=physical_filter,
        visit_info=_header_visit_info(primary, header),
        metadata=_scalar_cards(merged, ("GAIN", "SATURATE", "FWHM", "AVSKY", "AVSIG")),
        units=units,
    )


def _scalar_cards(header: fits.Header, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: header[key] for key in keys if isinstance(header.get(key), (int, float, str))}


def _first_int(header: fits.Header, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
