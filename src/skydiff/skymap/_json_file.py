"""Atomic JSON files: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["read_json", "write_json_atomically"]


def write_json_atomically(data: Any, path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Write ``data`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON content of ``path``.

    Raises
    ------
    InvalidParameterError
        Naming the path and ``what`` was expected, if the file is missing or not JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidParameterError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidParameterError(f"{path}: not a readable {what} JSON file: {error}") from None
