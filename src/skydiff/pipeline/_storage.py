"""Reading and writing datasets by storage kind; every write is atomic.

A file is written under a temporary name beside its destination and renamed
into place, so an interrupted write never leaves a partial file under the
final name (and never a file the registry could point at).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from astropy.table import Table

from ..background import BackgroundList, BackgroundModel
from ..errors import InvalidParameterError
from ..image import Box, Exposure
from ..io import read_background, read_exposure, write_background, write_exposure
from ..skymap import SkyMap, load_skymap

__all__ = ["TRANSFER_MODES", "read_dataset", "transfer_file", "write_atomically", "write_dataset"]

#: How ingest puts an existing file into the repository.
TRANSFER_MODES = ("copy", "move", "symlink", "hardlink")


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    On any failure (or interruption) the temporary file is removed and
    ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _as_json(obj: Any, what: str) -> str:
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if not isinstance(obj, dict):
        raise InvalidParameterError(f"{what} must be a dict (or have to_dict()), got {type(obj)}")
    try:
        return json.dumps(obj, indent=2, allow_nan=True) + "\n"
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(f"{what} is not JSON-serialisable: {error}") from error


def _require(obj: Any, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(obj, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidParameterError(f"{what} must be a {names}, got {type(obj).__name__}")


def _write_exposure(obj: Any, path: Path, what: str) -> None:
    _require(obj, Exposure, what)
    write_exposure(obj, path, overwrite=True)


def _write_background(obj: Any, path: Path, what: str) -> None:
    if isinstance(obj, BackgroundModel):
        obj = BackgroundList((obj,))
    _require(obj, BackgroundList, what)
    write_background(obj, path, overwrite=True)


def _write_table(obj: Any, path: Path, what: str) -> None:
    _require(obj, Table, what)
    write_atomically(path, lambda tmp: obj.write(tmp, format="ascii.ecsv", overwrite=True))


def _write_skymap(obj: Any, path: Path, what: str) -> None:
    _require(obj, (SkyMap, str), what)
    load_skymap(obj).write(path, overwrite=True)


def _write_json(obj: Any, path: Path, what: str) -> None:
    text = _as_json(obj, what)
    write_atomically(path, lambda tmp: tmp.write_text(text))


_WRITERS: dict[str, Callable[[Any, Path, str], None]] = {
    "exposure": _write_exposure,
    "background": _write_background,
    "table": _write_table,
    "skymap": _write_skymap,
    "json": _write_json,
}


def write_dataset(storage: str, obj: Any, path: Path, *, what: str) -> None:
    """Write ``obj`` to ``path`` (replacing it) atomically in the format of ``storage``.

    Raises
    ------
    InvalidParameterError
        If ``obj`` is not of the storage kind's type; ``what`` names the dataset.
    """
    _WRITERS[storage](obj, path, what)


def read_dataset(storage: str, path: Path, *, bbox: Box | None = None) -> Any:
    """Read a dataset file: an Exposure (optionally of ``bbox`` only), BackgroundList,
    Table, SkyMap or dict."""
    if bbox is not None and storage != "exposure":
        raise InvalidParameterError(f"bbox= applies to exposures only, not to {storage} datasets")
    if storage == "exposure":
        return read_exposure(path, bbox=bbox)
    if storage == "background":
        return read_background(path)
    if storage == "table":
        return Table.read(path, format="ascii.ecsv")
    if storage == "skymap":
        return SkyMap.read(path)
    return json.loads(path.read_text())


def transfer_file(source: Path, path: Path, mode: str) -> None:
    """Put an existing file at ``path`` by ``mode`` (one of :data:`TRANSFER_MODES`), atomically."""
    if mode not in TRANSFER_MODES:
        raise InvalidParameterError(
            f"transfer must be one of {', '.join(TRANSFER_MODES)}, got {mode!r}"
        )
    if mode == "move":
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, path)  # atomic on one file system
            return
        except OSError:
            pass  # another file system: copy atomically, then remove the source

    def link_or_copy(tmp: Path) -> None:
        tmp.unlink()
        if mode in ("copy", "move"):
            shutil.copyfile(source, tmp)
        elif mode == "symlink":
            tmp.symlink_to(source.resolve())
        else:
            os.link(source, tmp)

    write_atomically(path, link_or_copy)
    if mode == "move":
        source.unlink()
