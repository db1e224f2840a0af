"""PSF models to and from a FITS binary-table HDU."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from astropy.io import fits

from ..errors import FitsFormatError
from ..psf import PSF_REGISTRY, Psf

__all__ = ["psf_from_hdu", "psf_to_hdu"]


def psf_to_hdu(psf: Psf, *, name: str = "PSF") -> fits.BinTableHDU:
    """One-row table: each array of the model a column; scalars as JSON in ``PSFPARAM``."""
    params, arrays = psf.to_state()
    columns = [
        fits.Column(
            name=key,
            format=f"{max(array.size, 1)}D",
            dim=str(tuple(reversed(array.shape))) if array.ndim > 1 else None,
            array=np.asarray(array, np.float64).reshape(1, *array.shape),
        )
        for key, array in arrays.items()
    ]
    hdu = fits.BinTableHDU.from_columns(columns) if columns else fits.BinTableHDU()
    hdu.header["EXTNAME"] = name
    hdu.header["PSFTYPE"] = psf.psf_type
    hdu.header["PSFPARAM"] = json.dumps(params)
    hdu.header["PSFARRS"] = json.dumps({k: list(a.shape) for k, a in arrays.items()})
    return hdu


def psf_from_hdu(hdu: fits.BinTableHDU, path: Any) -> Psf:
    """Inverse of :func:`psf_to_hdu`; raises :class:`FitsFormatError` naming ``path``."""
    header = hdu.header
    psf_type = header.get("PSFTYPE")
    cls = PSF_REGISTRY.get(psf_type)
    if cls is None:
        raise FitsFormatError(
            path, f"PSF extension has unknown PSFTYPE {psf_type!r}; known: {sorted(PSF_REGISTRY)}"
        )
    try:
        params: dict[str, Any] = json.loads(header["PSFPARAM"])
        shapes: dict[str, list[int]] = json.loads(header["PSFARRS"])
        arrays = {
            key: np.asarray(hdu.data[key][0], np.float64).reshape(shape)
            for key, shape in shapes.items()
        }
        return cls.from_state(params, arrays)
    except (KeyError, TypeError, ValueError) as error:
        raise FitsFormatError(path, f"PSF extension is malformed: {error}") from error
