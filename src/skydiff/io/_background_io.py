"""Background models to and from FITS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..background import BackgroundList, BackgroundModel
from ..errors import FitsFormatError
from ..image import Box
from ._atomic import write_hdus_atomically
from ._open import open_fits

__all__ = ["background_from_hdu", "background_to_hdu", "read_background", "write_background"]

_COLUMNS = ("values", "variances", "counts", "x_centers", "y_centers")


def background_to_hdu(model: BackgroundModel, *, name: str = "BACKGROUND") -> fits.BinTableHDU:
    """One-row table of the bin arrays; geometry and options as JSON in ``BGPARAM``."""
    columns = []
    for key in _COLUMNS:
        array = np.asarray(getattr(model, key), np.float64)
        columns.append(
            fits.Column(
                name=key,
                format=f"{max(array.size, 1)}D",
                dim=str(tuple(reversed(array.shape))) if array.ndim > 1 else None,
                array=array.reshape(1, *array.shape),
            )
        )
    hdu = fits.BinTableHDU.from_columns(columns)
    b = model.bbox
    hdu.header["EXTNAME"] = name
    hdu.header["BGPARAM"] = json.dumps(
        {
            "bbox": [b.x0, b.y0, b.width, b.height],
            "bin_size": list(model.bin_size),
            "interpolation": model.interpolation,
            "approximation_order": model.approximation_order,
            "shape": list(model.values.shape),
        }
    )
    return hdu


def background_from_hdu(hdu: fits.BinTableHDU, path: object) -> BackgroundModel:
    """Inverse of :func:`background_to_hdu`."""
    try:
        params = json.loads(hdu.header["BGPARAM"])
        shape = tuple(params["shape"])
        arrays = {key: np.asarray(hdu.data[key][0], np.float64) for key in _COLUMNS}
        return BackgroundModel(
            bbox=Box(*params["bbox"]),
            bin_size=tuple(params["bin_size"]),
            values=arrays["values"].reshape(shape),
            variances=arrays["variances"].reshape(shape),
            counts=arrays["counts"].reshape(shape).astype(np.int64),
            x_centers=arrays["x_centers"].reshape(shape[1]),
            y_centers=arrays["y_centers"].reshape(shape[0]),
            interpolation=params["interpolation"],
            approximation_order=params["approximation_order"],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise FitsFormatError(path, f"background extension is malformed: {error}") from error


def write_background(
    background: BackgroundList, path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write a :class:`BackgroundList`, one table per model, atomically."""
    primary = fits.PrimaryHDU()
    primary.header["SDFORMAT"] = "skydiff-background"
    primary.header["NMODELS"] = len(background)
    tables = [background_to_hdu(m, name=f"BACKGROUND{i}") for i, m in enumerate(background)]
    return write_hdus_atomically([primary, *tables], path, overwrite=overwrite)


def read_background(path: str | os.PathLike) -> BackgroundList:
    """Read a file written by :func:`write_background`."""
    path = Path(path)
    with open_fits(path) as hdul:
        if hdul[0].header.get("SDFORMAT") != "skydiff-background":
            raise FitsFormatError(path, "not a skydiff background file (SDFORMAT)")
        count = hdul[0].header.get("NMODELS", 0)
        if len(hdul) != count + 1:
            raise FitsFormatError(
                path, f"expected {count} background tables, found {len(hdul) - 1}"
            )
        return BackgroundList(tuple(background_from_hdu(hdul[i + 1], path) for i in range(count)))
