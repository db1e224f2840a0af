"""Atomic FITS writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from astropy.io import fits

__all__ = ["write_hdus_atomically"]


def write_hdus_atomically(
    hdus: Sequence[fits.hdu.base._BaseHDU], path: str | os.PathLike, *, overwrite: bool
) -> Path:
    """Write ``hdus`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fits.HDUList(list(hdus)).writeto(tmp_name, overwrite=True, checksum=True)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
