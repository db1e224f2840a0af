"""FITS header helpers: exact float cards and WCS <-> header in skydiff's pixel frame."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..errors import FitsFormatError
from ..image import shifted_wcs, validate_celestial_wcs

__all__ = ["exact_card", "set_exact", "wcs_from_header", "wcs_to_header"]


def exact_card(key: str, value: Any, comment: str = "") -> fits.Card:
    """A card whose float value reads back bit-for-bit.

    astropy formats floats in at most 20 characters, which can lose the 17th
    significant digit; a free-format card with Python's shortest round-trip
    representation keeps it.
    """
    if isinstance(value, (float, np.floating)) and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value):
            return fits.Card(key, str(value), comment)  # NaN/inf as strings, parsed on read
        text = repr(value).upper()
        if "." not in text and "E" not in text:
            text += ".0"
        prefix = f"HIERARCH {key} = " if len(key) > 8 or " " in key else f"{key:<8}= "
        image = f"{prefix}{text:>20}"
        if comment and len(image) + 3 + len(comment) <= 80:
            image += f" / {comment}"
        return fits.Card.fromstring(image[:80].ljust(80))
    if isinstance(value, np.integer):
        value = int(value)
    return fits.Card(key, value, comment)


def set_exact(header: fits.Header, key: str, value: Any, comment: str = "") -> None:
    """Set ``header[key]`` to ``value`` with :func:`exact_card` precision."""
    card = exact_card(key, value, comment)
    if key in header:
        index = header.index(key)
        del header[index]
        header.insert(index, card)
    else:
        header.append(card)


def read_float(header: fits.Header, key: str, default: float = math.nan) -> float:
    """A float card (NaN/inf written as strings included), or ``default``."""
    value = header.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _exact_wcs_values(wcs: WCS) -> dict[str, float]:
    values: dict[str, float] = {}
    w = wcs.wcs
    for i in range(2):
        values[f"CRPIX{i + 1}"] = float(w.crpix[i])
        values[f"CRVAL{i + 1}"] = float(w.crval[i])
        values[f"CDELT{i + 1}"] = float(w.get_cdelt()[i])
        for j in range(2):
            values[f"PC{i + 1}_{j + 1}"] = float(w.get_pc()[i, j])
    if wcs.sip is not None:
        for name in ("a", "b", "ap", "bp"):
            coeffs = getattr(wcs.sip, name)
            if coeffs is None:
                continue
            for p, q in np.ndindex(coeffs.shape):
                values[f"{name.upper()}_{p}_{q}"] = float(coeffs[p, q])
    return values


def wcs_to_header(wcs: WCS, x0: int, y0: int) -> fits.Header:
    """FITS WCS cards for an array whose first pixel is parent pixel ``(x0, y0)``.

    The header is correct for any FITS reader (array pixel 1 = parent ``x0``)
    and carries ``LTV1/LTV2 = -x0, -y0`` (IRAF/LSST) to recover the origin.
    Reference values, matrix and SIP terms are written exactly.
    """
    local = shifted_wcs(wcs, -x0, -y0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        header = local.to_header(relax=True)
    for key, value in _exact_wcs_values(local).items():
        if key in header:
            set_exact(header, key, value)
    header["LTV1"] = -int(x0)
    header["LTV2"] = -int(y0)
    return header


def has_wcs(header: fits.Header) -> bool:
    """Whether the header defines a primary WCS."""
    return "CTYPE1" in header or "CTYPE2" in header


def wcs_from_header(header: fits.Header, x0: int, y0: int, path: Any) -> WCS | None:
    """The parent-frame WCS of an HDU whose first pixel is parent ``(x0, y0)``.

    Returns None when the header has no WCS.

    Raises
    ------
    FitsFormatError
        If the WCS cannot be parsed, is not celestial, or is not finite.
    """
    if not has_wcs(header):
        return None
    clean = header.copy()
    for key in ("NAXIS", "NAXIS1", "NAXIS2", "NAXIS3"):
        clean.remove(key, ignore_missing=True)
    clean["NAXIS"] = 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(clean, relax=True, fix=True)
    except Exception as error:
        raise FitsFormatError(path, f"cannot parse the WCS: {error}") from error
    try:
        validate_celestial_wcs(wcs, str(path))
    except Exception as error:
        raise FitsFormatError(path, str(error).removeprefix(f"{path}: ")) from error
    return shifted_wcs(wcs, x0, y0)
