"""Dataset types, data IDs and dataset references of a data repository (LSST ``daf_butler``).

A *dataset type* names a kind of product (``calexp``, ``coadd``...), the
*dimensions* that identify one instance of it (``visit``, ``detector``...) and
how it is stored (an exposure FITS file, an astropy table, JSON...). A *data
ID* gives a value to every dimension; a :class:`DatasetRef` points at one
stored dataset.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from ..errors import InvalidParameterError

__all__ = [
    "DATASET_TYPES",
    "DIMENSIONS",
    "STORAGE_KINDS",
    "DataId",
    "DatasetRef",
    "DatasetType",
    "coerce_dimension",
    "get_dataset_type",
    "register_dataset_type",
]

#: Dimension name -> Python type of its values, in canonical order.
DIMENSIONS: dict[str, type] = {
    "instrument": str,
    "visit": int,
    "detector": int,
    "tract": int,
    "patch": int,
    "band": str,
    "task": str,
}

#: Prefix of each dimension's value in file names (``calexp_HSC_v12_d3.fits``).
_FILE_PREFIXES = {"visit": "v", "detector": "d", "tract": "t", "patch": "p"}

#: How datasets are stored: kind -> file suffix.
STORAGE_KINDS: dict[str, str] = {
    "exposure": ".fits",
    "background": ".fits",
    "table": ".ecsv",
    "skymap": ".json",
    "json": ".json",
}

#: Text values of dimensions become directory and file names, so they are kept simple.
_SAFE_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class DataId(dict):
    """A data ID: dimension name -> value, immutable and hashable.

    A ``dict`` (JSON-serialisable, equal to a plain dict with the same items)
    that refuses changes; build a modified copy with ``{**data_id, "visit": 3}``.
    """

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self.key)

    @property
    def key(self) -> tuple[tuple[str, Any], ...]:
        """The items as sorted ``(name, value)`` pairs."""
        return tuple(sorted(self.items()))

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a DataId cannot change; build a new one with {**data_id, key: value}")

    __setitem__ = __delitem__ = __ior__ = _refuse  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (DataId, (dict(self),))

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in self.items()) + "}"


def coerce_dimension(name: str, value: Any, where: str) -> int | str:
    """``value`` as the type of dimension ``name``; numeric strings become integers.

    Raises
    ------
    InvalidParameterError
        Naming ``where`` the value came from, if it does not fit the dimension.
    """
    if DIMENSIONS[name] is int:
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return int(value)  # FITS cards such as EXPNUM = 123456.
        if not isinstance(value, bool | np.bool_):
            try:
                return operator.index(value)
            except TypeError:
                pass
        raise InvalidParameterError(f"{where}: {name} must be an integer, got {value!r}")
    if isinstance(value, str) and _SAFE_TEXT.fullmatch(value):
        return value
    raise InvalidParameterError(
        f"{where}: {name} must be a non-empty string of letters, digits and _.+- "
        f"(starting with a letter or digit), got {value!r}"
    )


@dataclass(frozen=True)
class DatasetType:
    """A kind of dataset: its name, dimensions and storage.

    Parameters
    ----------
    name : str
        Name, e.g. ``"calexp"``.
    dimensions : tuple of str
        Dimensions every data ID must give, in the order used for paths.
    storage : str
        One of :data:`STORAGE_KINDS`.
    doc : str
        One-line description.
    open_dimensions : bool
        Data IDs may also give any other dimension (``task_config`` and
        ``task_metadata``: the task plus the data ID of the quantum).
    """

    name: str
    dimensions: tuple[str, ...]
    storage: str
    doc: str = ""
    open_dimensions: bool = False

    def __post_init__(self) -> None:
        if not _SAFE_TEXT.fullmatch(self.name):
            raise InvalidParameterError(f"invalid dataset type name {self.name!r}")
        unknown = [d for d in self.dimensions if d not in DIMENSIONS]
        if unknown:
            raise InvalidParameterError(
                f"dataset type {self.name!r}: unknown dimensions {unknown}; "
                f"known: {list(DIMENSIONS)}"
            )
        if self.storage not in STORAGE_KINDS:
            raise InvalidParameterError(
                f"dataset type {self.name!r}: unknown storage {self.storage!r}; "
                f"known: {list(STORAGE_KINDS)}"
            )

    @property
    def suffix(self) -> str:
        """File suffix of the storage kind."""
        return STORAGE_KINDS[self.storage]

    def data_id(self, data_id: Mapping[str, Any] | None = None, **values: Any) -> DataId:
        """Validate a data ID of this type: the values coerced, in dimension order.

        Raises
        ------
        InvalidParameterError
            Naming the missing, extra or invalid dimensions.
        """
        given = {**(data_id or {}), **values}
        missing = [d for d in self.dimensions if d not in given]
        allowed = DIMENSIONS if self.open_dimensions else self.dimensions
        extra = sorted(k for k in given if k not in allowed)
        if missing or extra:
            problems = [f"missing {missing}" if missing else "", f"extra {extra}" if extra else ""]
            raise InvalidParameterError(
                f"data ID {given} of {self.name!r}: {'; '.join(p for p in problems if p)} "
                f"(dimensions: {', '.join(self.dimensions) or 'none'}"
                f"{', plus any of ' + ', '.join(DIMENSIONS) if self.open_dimensions else ''})"
            )
        order = [*self.dimensions, *(d for d in DIMENSIONS if d not in self.dimensions)]
        where = f"data ID of {self.name!r}"
        return DataId((d, coerce_dimension(d, given[d], where)) for d in order if d in given)

    def relative_path(self, data_id: Mapping[str, Any]) -> PurePosixPath:
        """Path of a dataset below the repository root.

        ``<type>/<dim>=<value>/.../<type>_<values><suffix>``: one directory per
        dimension but the last, every value in the file name, e.g.
        ``calexp/instrument=HSC/visit=12/calexp_HSC_v12_d3.fits``.
        """
        data_id = self.data_id(data_id)
        items = list(data_id.items())
        directories = [f"{k}={v}" for k, v in items[:-1]]
        parts = [self.name, *(f"{_FILE_PREFIXES.get(k, '')}{v}" for k, v in items)]
        return PurePosixPath(self.name, *directories, "_".join(parts) + self.suffix)


def _types(*types: DatasetType) -> dict[str, DatasetType]:
    return {t.name: t for t in types}


_VISIT = ("instrument", "visit", "detector")

#: The dataset types known to every repository.
DATASET_TYPES: dict[str, DatasetType] = _types(
    DatasetType("calexp", _VISIT, "exposure", "calibrated exposure"),
    DatasetType(
        "calexp_background", _VISIT, "background", "background subtracted from a calexp at ingest"
    ),
    DatasetType("calexp_sources", _VISIT, "table", "sources measured on a calexp at ingest"),
    DatasetType("sky_frame", ("instrument", "detector"), "exposure", "sky frame of a detector"),
    DatasetType("sky_correction", ("visit", "detector"), "background", "scaled sky frame"),
    DatasetType("direct_warp", ("visit", "tract", "patch"), "exposure", "calexp warped on a patch"),
    DatasetType("psf_matched_warp", ("visit", "tract", "patch"), "exposure", "PSF-matched warp"),
    DatasetType("matched_warp", ("visit", "tract", "patch"), "exposure", "background-matched warp"),
    DatasetType("coadd", ("tract", "patch", "band"), "exposure", "coadd of warps"),
    DatasetType("template", ("visit", "detector"), "exposure", "template on a science grid"),
    DatasetType("difference", ("visit", "detector"), "exposure", "difference image"),
    DatasetType("matched_template", ("visit", "detector"), "exposure", "PSF-matched template"),
    DatasetType("dia_sources", ("visit", "detector"), "table", "sources on a difference image"),
    DatasetType("skymap", (), "skymap", "the repository's sky map"),
    DatasetType("task_config", ("task",), "json", "configuration of a task run", True),
    DatasetType("task_metadata", ("task",), "json", "metadata of a task run", True),
)


def get_dataset_type(name: str | DatasetType) -> DatasetType:
    """The dataset type called ``name`` (a :class:`DatasetType` is returned as is).

    Raises
    ------
    InvalidParameterError
        If no such type is known; the message lists the known types.
    """
    if isinstance(name, DatasetType):
        return name
    found = DATASET_TYPES.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidParameterError(
            f"unknown dataset type {name!r}; known types: {', '.join(sorted(DATASET_TYPES))}"
        )
    return found


def register_dataset_type(dataset_type: DatasetType) -> DatasetType:
    """Add a dataset type to :data:`DATASET_TYPES` (for pipeline modules, at import).

    Registering an identical definition again is allowed.

    Raises
    ------
    InvalidParameterError
        If a different type of the same name exists.
    """
    existing = DATASET_TYPES.get(dataset_type.name)
    if existing is not None and existing != dataset_type:
        raise InvalidParameterError(
            f"dataset type {dataset_type.name!r} is already defined as {existing}"
        )
    DATASET_TYPES[dataset_type.name] = dataset_type
    return dataset_type


@dataclass(frozen=True)
class DatasetRef:
    """A reference to one dataset of a repository.

    Attributes
    ----------
    dataset_type : str
        Name of the dataset type.
    data_id : DataId
        The data ID (a frozen ``dict``).
    path : str
        POSIX path of the file relative to the repository root.
    id : str
        Unique identifier (UUID hex), assigned when the file is written.
    summary : ExposureSummary or None
        For exposures: band, time and sky polygon, carried from the worker that
        wrote the file to the registry (not part of equality).
    """

    dataset_type: str
    data_id: DataId
    path: str
    id: str
    summary: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.data_id, DataId):
            object.__setattr__(self, "data_id", DataId(self.data_id))
        object.__setattr__(self, "path", PurePosixPath(self.path).as_posix())

    def __str__(self) -> str:
        values = ", ".join(f"{k}={v}" for k, v in self.data_id.items())
        return f"{self.dataset_type}({values})"
