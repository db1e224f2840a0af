"""The data repository: files laid out by dataset type and data ID, and their registry.

A repository is a directory holding ``registry.sqlite3`` (see
:mod:`skydiff.pipeline._registry`) and one file per dataset at
``<type>/<dim>=<value>/.../<type>_<values>.<ext>``. Workers write files
(:meth:`Repository.write`, never registering), the driver registers them
(:meth:`Repository.register`); a file is always complete before its registry
row exists.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import InvalidParameterError
from ..image import Box, Exposure
from ..io import ExposureHandle
from ..skymap import SkyMap, load_skymap
from ._dataset_types import (
    DIMENSIONS,
    DataId,
    DatasetRef,
    DatasetType,
    coerce_dimension,
    get_dataset_type,
)
from ._registry import (
    QUERY_KEYS,
    DatasetExistsError,
    DatasetNotFoundError,
    DatasetRecord,
    Registry,
)
from ._spatial import ExposureSummary, patch_sky_box, polygon_overlaps_patch
from ._storage import read_dataset, transfer_file, write_dataset

__all__ = ["REGISTRY_NAME", "Repository"]

#: File name of the registry database in a repository's root.
REGISTRY_NAME = "registry.sqlite3"
#: Query keys recorded for exposures although not dimensions of their type.
_EXPOSURE_KEYS = ("band", "physical_filter")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _config_json(config: Any) -> str | None:
    if config is None:
        return None
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise InvalidParameterError(f"config must be a dict or a Config, got {type(config)}")
    try:
        return json.dumps(dict(config), sort_keys=True)
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(f"config is not JSON-serialisable: {error}") from error


def _input_ids(inputs: Iterable[DatasetRef | str]) -> tuple[str, ...]:
    ids = []
    for item in inputs:
        if isinstance(item, DatasetRef):
            ids.append(item.id)
        elif isinstance(item, str) and item:
            ids.append(item)
        else:
            raise InvalidParameterError(f"inputs must be DatasetRefs or dataset ids, got {item!r}")
    return tuple(ids)


def _values(value: Any) -> list[Any]:
    """A query value as a list: scalars become one-element lists."""
    if isinstance(value, list | tuple | set | frozenset | range | np.ndarray):
        return list(value)
    return [value]


def _check_calexp_ids(exposure: Any, data_id: DataId) -> None:
    """Refuse a calexp whose visit information contradicts its data ID."""
    if not isinstance(exposure, Exposure):
        return
    info = exposure.visit_info
    for name in ("instrument", "visit", "detector"):
        value = getattr(info, name)
        if value not in (None, "") and value != data_id[name]:
            raise InvalidParameterError(
                f"calexp {dict(data_id)}: the exposure's visit information has "
                f"{name}={value!r}; set it to {data_id[name]!r} or fix the data ID"
            )


class Repository:
    """A data repository: a directory of dataset files with an SQLite registry.

    ``Repository(root)`` opens an existing repository (use :meth:`create` for a
    new one). Opening only checks that the registry file exists; the database
    is opened on first use, once per process, so a repository pickles (as its
    root) and works in worker processes.

    Parameters
    ----------
    root : path-like
        The repository directory.

    Raises
    ------
    InvalidParameterError
        If ``root`` is not a repository.
    """

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        if not (root / REGISTRY_NAME).is_file():
            what = "no such directory" if not root.is_dir() else f"no {REGISTRY_NAME} in it"
            raise InvalidParameterError(
                f"{root}: not a skydiff repository ({what}); create one with "
                "Repository.create(root) or `skydiff repo create ROOT`"
            )
        self.root = root.resolve()
        self.registry = Registry(self.root / REGISTRY_NAME)
        self._skymap: SkyMap | None = None

    @classmethod
    def create(cls, root: str | os.PathLike, *, skymap: SkyMap | str | None = None) -> Repository:
        """Create a repository in a new or empty directory.

        Parameters
        ----------
        root : path-like
            Directory to create (or an existing empty one).
        skymap : SkyMap or str, optional
            The repository's sky map: an instance, a built-in name
            (``"rings_120"``) or a JSON file written by :meth:`SkyMap.write`.

        Raises
        ------
        InvalidParameterError
            If ``root`` is a repository already, a non-empty directory or a file,
            or ``skymap`` is not a sky map.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise InvalidParameterError(f"{root}: exists and is not a directory")
        if (root / REGISTRY_NAME).exists():
            raise InvalidParameterError(f"{root}: is a skydiff repository already")
        if root.exists() and any(root.iterdir()):
            raise InvalidParameterError(
                f"{root}: directory is not empty; create a repository in a new or empty directory"
            )
        sky = None if skymap is None else load_skymap(skymap)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{REGISTRY_NAME}.tmp"
        tmp.unlink(missing_ok=True)
        Registry.create(tmp, {"created": _now(), "software_version": __version__})
        os.replace(tmp, root / REGISTRY_NAME)
        repo = cls(root)
        if sky is not None:
            repo.put("skymap", {}, sky, run="create")
        return repo

    # -- paths and references -------------------------------------------------------------

    def path_for(self, dataset_type: str | DatasetType, data_id: Mapping[str, Any]) -> Path:
        """Absolute path of a dataset's file (whether it exists or not).

        Raises
        ------
        InvalidParameterError
            If the type is unknown or the data ID does not fit it.
        """
        return self.root / get_dataset_type(dataset_type).relative_path(data_id)

    def find(self, dataset_type: str, data_id: Mapping[str, Any] | None = None) -> DatasetRef:
        """The registered dataset of this type and data ID.

        A data ID may leave out dimensions that the registered datasets make
        unambiguous (a calexp's ``instrument`` when there is one), and may use
        recorded keys such as a calexp's ``band``.

        Raises
        ------
        DatasetNotFoundError
            If it is not registered.
        InvalidParameterError
            If the data ID is invalid, or incomplete and matches several datasets.
        """
        kind = get_dataset_type(dataset_type)
        given = dict(data_id or {})
        if all(d in given for d in kind.dimensions):
            ref = self.registry.find(kind.name, kind.data_id(given))
            refs = [] if ref is None else [ref]
        else:
            refs = self.query(kind.name, **given)
        if len(refs) == 1:
            return refs[0]
        if not refs:
            raise DatasetNotFoundError(
                f"no {kind.name} with data ID {given} is registered in {self.root}"
            )
        missing = [d for d in kind.dimensions if d not in given]
        raise InvalidParameterError(
            f"{len(refs)} {kind.name} datasets match the data ID {given}; give {missing} too"
        )

    def ref_by_id(self, dataset_id: str) -> DatasetRef:
        """The registered dataset with this id.

        Raises
        ------
        DatasetNotFoundError
            If no dataset has this id.
        """
        ref = self.registry.find_id(dataset_id)
        if ref is None:
            raise DatasetNotFoundError(f"no dataset with id {dataset_id!r} in {self.root}")
        return ref

    def _resolve(self, dataset_type: str | DatasetRef, data_id: Mapping | None) -> DatasetRef:
        if isinstance(dataset_type, DatasetRef):
            if data_id is not None:
                raise InvalidParameterError("give a DatasetRef or a type and data ID, not both")
            return dataset_type
        return self.find(dataset_type, data_id)

    # -- writing and registering ----------------------------------------------------------

    def write(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | None,
        obj: Any,
        *,
        overwrite: bool = False,
    ) -> DatasetRef:
        """Write a dataset's file, atomically, without registering it (worker side).

        Parameters
        ----------
        dataset_type : str or DatasetType
            Type name.
        data_id : mapping
            Data ID of the type's dimensions (``{}`` or None for ``skymap``).
        obj : object
            Exposure, BackgroundList, Table, SkyMap or dict (or an object with
            ``to_dict()``, such as a Config), as the type's storage requires.
        overwrite : bool
            Replace an existing file (one left by an interrupted run, or one to be
            re-registered with ``overwrite=True``).

        Returns
        -------
        DatasetRef
            With a new id and, for exposures, the summary the registry records.

        Raises
        ------
        DatasetExistsError
            If the file exists and ``overwrite`` is false.
        InvalidParameterError
            If the type, data ID or object is wrong for the type.
        """
        kind = get_dataset_type(dataset_type)
        data_id = kind.data_id(data_id)
        relative = kind.relative_path(data_id)
        path = self.root / relative
        if path.exists() and not overwrite:
            raise DatasetExistsError(
                f"{path}: exists (a registered dataset, or a file left by an interrupted run); "
                "pass overwrite=True to replace it"
            )
        if kind.name == "calexp":
            _check_calexp_ids(obj, data_id)
        summary = None
        if kind.storage == "exposure" and isinstance(obj, Exposure):
            summary = ExposureSummary.from_exposure(obj)
        write_dataset(kind.storage, obj, path, what=f"{kind.name} {dict(data_id)}")
        if kind.name == "skymap":
            self._skymap = None
        return DatasetRef(kind.name, data_id, relative.as_posix(), uuid.uuid4().hex, summary)

    def write_file(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | None,
        source: str | os.PathLike,
        *,
        transfer: str = "copy",
        overwrite: bool = False,
    ) -> DatasetRef:
        """Put an existing file in place as a dataset, unchanged and unregistered.

        The file must already be in the type's format (a skydiff exposure for
        exposure types...); :meth:`write` converts objects instead.

        Parameters
        ----------
        transfer : {"copy", "move", "symlink", "hardlink"}
            How the file gets there (atomically, but for a move across file systems,
            which copies atomically and then removes the source).

        Raises
        ------
        DatasetExistsError
            If the destination exists and ``overwrite`` is false.
        """
        kind = get_dataset_type(dataset_type)
        data_id = kind.data_id(data_id)
        relative = kind.relative_path(data_id)
        path = self.root / relative
        if path.exists() and not overwrite:
            raise DatasetExistsError(f"{path}: exists; pass overwrite=True to replace it")
        summary = None
        if kind.storage == "exposure":
            summary = ExposureSummary.from_exposure(ExposureHandle(source))
        transfer_file(Path(source), path, transfer)
        return DatasetRef(kind.name, data_id, relative.as_posix(), uuid.uuid4().hex, summary)

    def _record(
        self, ref: DatasetRef, provenance: Mapping[str, Any], sky_polygon: Any
    ) -> DatasetRecord:
        """The registry record of a written dataset, after checking its path and file."""
        kind = get_dataset_type(ref.dataset_type)
        expected = kind.relative_path(ref.data_id).as_posix()
        if ref.path != expected:
            raise InvalidParameterError(
                f"{ref}: path {ref.path!r} is not the expected {expected!r}"
            )
        path = self.root / ref.path
        if not path.is_file():
            raise InvalidParameterError(f"{ref}: no file at {path}; write it before registering")
        summary = ref.summary
        if summary is None and kind.name == "calexp":
            summary = ExposureSummary.from_exposure(ExposureHandle(path))
        if sky_polygon is not None:
            if summary is None:
                raise InvalidParameterError(f"{ref}: sky_polygon applies to exposures only")
            summary = summary.with_polygon(sky_polygon)
        return DatasetRecord(ref=ref, summary=summary, created=_now(), **provenance)

    @staticmethod
    def _provenance(inputs, config, software_version, run) -> dict[str, Any]:
        if run is not None and not isinstance(run, str):
            raise InvalidParameterError(f"run must be a string, got {run!r}")
        return {
            "inputs": _input_ids(inputs),
            "config": _config_json(config),
            "software_version": str(software_version),
            "run": run,
        }

    def register(
        self,
        ref: DatasetRef | Sequence[DatasetRef],
        *,
        inputs: Iterable[DatasetRef | str] = (),
        config: Any = None,
        software_version: str = __version__,
        run: str | None = None,
        sky_polygon: Any = None,
        overwrite: bool = False,
    ) -> DatasetRef | list[DatasetRef]:
        """Record written datasets in the registry with their provenance (driver side).

        Parameters
        ----------
        ref : DatasetRef or sequence of DatasetRef
            What :meth:`write` returned; several are registered in one
            transaction (all or none), sharing the provenance.
        inputs : iterable of DatasetRef or str
            The datasets (or their ids) these were made from.
        config : dict or Config, optional
            Configuration of the task that made them (stored as JSON).
        software_version : str
            skydiff version that made them.
        run : str, optional
            Name of the run (a label for queries).
        sky_polygon : array_like, optional
            ``(N, 2)`` ``(ra, dec)`` vertices replacing the exposure's footprint
            (one exposure only).
        overwrite : bool
            Replace a registered dataset of the same type and data ID.

        Returns
        -------
        DatasetRef or list of DatasetRef
            ``ref``, as given.

        Raises
        ------
        DatasetExistsError
            If a dataset is registered already and ``overwrite`` is false.
        InvalidParameterError
            If a file is missing or a path does not match its data ID.
        """
        refs = [ref] if isinstance(ref, DatasetRef) else list(ref)
        if sky_polygon is not None and len(refs) != 1:
            raise InvalidParameterError("sky_polygon= needs exactly one DatasetRef")
        provenance = self._provenance(inputs, config, software_version, run)
        records = [self._record(r, provenance, sky_polygon) for r in refs]
        self.registry.insert(records, overwrite=overwrite)
        return ref if isinstance(ref, DatasetRef) else refs

    def put(
        self,
        dataset_type: str | DatasetType,
        data_id: Mapping[str, Any] | None,
        obj: Any,
        *,
        inputs: Iterable[DatasetRef | str] = (),
        config: Any = None,
        software_version: str = __version__,
        run: str | None = None,
        sky_polygon: Any = None,
        overwrite: bool = False,
    ) -> DatasetRef:
        """Write a dataset and register it (:meth:`write`, then :meth:`register`).

        A file left by an interrupted run (written, never registered) is
        replaced. If registering fails, a file that was not registered before
        is removed again.

        Raises
        ------
        DatasetExistsError
            If the dataset is registered and ``overwrite`` is false.
        """
        kind = get_dataset_type(dataset_type)
        data_id = kind.data_id(data_id)
        registered = self.registry.find(kind.name, data_id)
        if registered is not None and not overwrite:
            raise DatasetExistsError(
                f"{registered} is already registered in {self.root}; "
                "pass overwrite=True to replace it"
            )
        provenance = self._provenance(inputs, config, software_version, run)
        ref = self.write(kind, data_id, obj, overwrite=True)
        try:
            self.registry.insert([self._record(ref, provenance, sky_polygon)], overwrite=overwrite)
        except BaseException:
            if registered is None:
                (self.root / ref.path).unlink(missing_ok=True)
            raise
        return ref

    # -- reading --------------------------------------------------------------------------

    def get(
        self,
        dataset_type: str | DatasetRef,
        data_id: Mapping[str, Any] | None = None,
        *,
        bbox: Box | None = None,
    ) -> Any:
        """Read a registered dataset.

        Parameters
        ----------
        dataset_type : str or DatasetRef
            Type name, or a reference (then its file is read without consulting
            the registry: what a worker on another machine should do).
        data_id : mapping, optional
            Data ID (with a type name).
        bbox : Box, optional
            For exposures: read only this part of the image.

        Returns
        -------
        Exposure, BackgroundList, astropy.table.Table, SkyMap or dict
            As the type's storage.

        Raises
        ------
        DatasetNotFoundError
            If no such dataset is registered.
        """
        ref = self._resolve(dataset_type, data_id)
        storage = get_dataset_type(ref.dataset_type).storage
        return read_dataset(storage, self.root / ref.path, bbox=bbox)

    def handle(
        self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None
    ) -> ExposureHandle:
        """A lazy :class:`~skydiff.io.ExposureHandle` on a registered exposure.

        Raises
        ------
        InvalidParameterError
            If the dataset is not an exposure.
        DatasetNotFoundError
            If it is not registered.
        """
        ref = self._resolve(dataset_type, data_id)
        if get_dataset_type(ref.dataset_type).storage != "exposure":
            raise InvalidParameterError(f"{ref} is not an exposure; read it with get()")
        return ExposureHandle(self.root / ref.path)

    def exists(self, dataset_type: str, data_id: Mapping[str, Any] | None = None) -> bool:
        """Whether the dataset is registered and its file present (data ID as :meth:`find`)."""
        try:
            ref = self.find(dataset_type, data_id)
        except DatasetNotFoundError:
            return False
        return (self.root / ref.path).is_file()

    def _where(self, kind: DatasetType | None, where: Mapping[str, Any]) -> dict[str, list]:
        """Validated query constraints: known keys, applicable to the type, coerced values."""
        result = {}
        for key, value in where.items():
            if key not in QUERY_KEYS:
                raise InvalidParameterError(
                    f"cannot query on {key!r}; query keys: {', '.join(QUERY_KEYS)}"
                )
            if kind is not None and not self._applies(kind, key):
                raise InvalidParameterError(
                    f"{kind.name} has no {key!r} (dimensions: {', '.join(kind.dimensions)}); "
                    "for calexps on a patch use calexps_overlapping()"
                )
            values = _values(value)
            if key in DIMENSIONS:
                values = [coerce_dimension(key, v, f"query on {key}") for v in values]
            result[key] = values
        return result

    @staticmethod
    def _applies(kind: DatasetType, key: str) -> bool:
        if key == "run" or key in kind.dimensions or kind.open_dimensions:
            return True
        return kind.storage == "exposure" and key in _EXPOSURE_KEYS

    def query(self, dataset_type: str | None = None, **where: Any) -> list[DatasetRef]:
        """Registered datasets, of one type or all, matching every constraint.

        Parameters
        ----------
        dataset_type : str, optional
            Type name; all types if omitted.
        **where
            Dimension (``visit=12``), ``band``, ``physical_filter`` or ``run`` ->
            a value or a list/set of accepted values. ``band`` and
            ``physical_filter`` also match the recorded filters of exposures
            (a calexp's band).

        Returns
        -------
        list of DatasetRef
            Sorted by type and data ID.
        """
        kind = None if dataset_type is None else get_dataset_type(dataset_type)
        constraints = self._where(kind, where)
        return self.registry.query(None if kind is None else kind.name, constraints)

    def data_ids(self, dataset_type: str, **where: Any) -> list[DataId]:
        """Data IDs (frozen dicts) of the registered datasets of a type matching ``where``."""
        return [ref.data_id for ref in self.query(dataset_type, **where)]

    def exposure_records(self, dataset_type: str = "calexp", **where: Any) -> list[dict[str, Any]]:
        """Registered exposures with what the registry recorded of them, without reading files.

        Parameters
        ----------
        dataset_type : str
            An exposure dataset type (default ``calexp``).
        **where
            Constraints as in :meth:`query`.

        Returns
        -------
        list of dict
            Per dataset: its data ID items, ``band``, ``physical_filter``, ``mjd``
            and ``exposure_time`` (None when unknown), ``id`` and ``path``.
        """
        kind = get_dataset_type(dataset_type)
        if kind.storage != "exposure":
            raise InvalidParameterError(f"{kind.name} is not an exposure dataset type")
        return self.registry.exposure_records(kind.name, self._where(kind, where))

    def calexp_records(self, **where: Any) -> list[dict[str, Any]]:
        """:meth:`exposure_records` of the calexps."""
        return self.exposure_records("calexp", **where)

    def provenance(self, ref: DatasetRef | str) -> dict[str, Any]:
        """How a dataset was made.

        Returns
        -------
        dict
            ``id``, ``dataset_type``, ``data_id``, ``path``, ``run``,
            ``software_version``, ``created`` (UTC, ISO 8601), ``config`` (dict
            or None), ``inputs`` (ids) and, for exposures, ``exposure`` (band,
            physical_filter, mjd, exposure_time, polygon).

        Raises
        ------
        DatasetNotFoundError
            If the dataset is not registered.
        """
        found = self.ref_by_id(ref.id if isinstance(ref, DatasetRef) else ref)
        details = self.registry.provenance(found.id) or {}
        return {
            "id": found.id,
            "dataset_type": found.dataset_type,
            "data_id": dict(found.data_id),
            "path": found.path,
            **details,
        }

    # -- sky map and spatial queries ------------------------------------------------------

    @property
    def skymap(self) -> SkyMap:
        """The repository's sky map (the ``skymap`` dataset).

        Raises
        ------
        InvalidParameterError
            If the repository has none.
        """
        if self._skymap is None:
            path = self.path_for("skymap", {})
            if not path.is_file():
                raise InvalidParameterError(
                    f"{self.root}: the repository has no sky map; create it with --skymap "
                    "or add one with repo.put('skymap', {}, skymap)"
                )
            self._skymap = SkyMap.read(path)
        return self._skymap

    def calexps_overlapping(
        self,
        tract_id: int,
        patch_id: int | tuple[int, int],
        *,
        band: str | Iterable[str] | None = None,
        visits: int | Iterable[int] | None = None,
        instrument: str | None = None,
    ) -> list[DatasetRef]:
        """Registered calexps whose sky footprint meets a patch's outer box.

        Answered from the registry without reading images: RA/Dec boxes select
        candidates in SQL, then each footprint polygon is tested exactly
        against the patch in the tract's pixel frame.

        Parameters
        ----------
        tract_id : int
            Tract of the repository's sky map.
        patch_id : int or (int, int)
            Sequential patch index or ``(x, y)``.
        band, visits, instrument : optional
            Restrict to these bands, visits or instrument.

        Returns
        -------
        list of DatasetRef
            Sorted by instrument, visit and detector.
        """
        tract = self.skymap[tract_id]
        patch = tract.patch(patch_id)
        constraints = {"band": band, "visit": visits, "instrument": instrument}
        where = self._where(
            get_dataset_type("calexp"), {k: v for k, v in constraints.items() if v is not None}
        )
        candidates = self.registry.spatial_candidates("calexp", patch_sky_box(tract, patch), where)
        return [ref for ref, polygon in candidates if polygon_overlaps_patch(polygon, tract, patch)]

    def patches_for(
        self, visit: int, detector: int, *, instrument: str | None = None
    ) -> list[tuple[int, int]]:
        """``(tract_id, patch_id)`` of every patch a registered calexp's footprint meets.

        The exact counterpart of :meth:`calexps_overlapping`: a patch is listed
        here exactly when the calexp is listed there.

        Raises
        ------
        DatasetNotFoundError
            If no such calexp is registered.
        InvalidParameterError
            If several instruments have this visit and detector (pass
            ``instrument``), or the calexp has no recorded footprint.
        """
        where = {"visit": visit, "detector": detector}
        if instrument is not None:
            where["instrument"] = instrument
        refs = self.query("calexp", **where)
        if not refs:
            raise DatasetNotFoundError(f"no calexp with {where} is registered in {self.root}")
        if len(refs) > 1:
            names = sorted({r.data_id["instrument"] for r in refs})
            raise InvalidParameterError(f"calexps of {where} exist for {names}; pass instrument=")
        polygon = self.registry.polygon(refs[0].id)
        if polygon is None:
            raise InvalidParameterError(f"{refs[0]} has no recorded sky footprint (no WCS)")
        ra, dec = np.array(polygon).T
        return [
            (tract.tract_id, patch.sequential_index)
            for tract, patches in self.skymap.find_tract_patch_list(ra, dec)
            for patch in patches
            if polygon_overlaps_patch(polygon, tract, patch)
        ]

    # -- ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        instrument: str | None = None,
        band: str | None = None,
        mapping: Mapping[str, Mapping[str, Any]] | str | os.PathLike | None = None,
        characterize: bool = True,
        transfer: str = "copy",
        **options: Any,
    ) -> list[DatasetRef]:
        """Add exposure files as calexps; see :func:`skydiff.pipeline.ingest`."""
        from ._ingest import ingest

        return ingest(
            self,
            paths,
            instrument=instrument,
            band=band,
            mapping=mapping,
            characterize=characterize,
            transfer=transfer,
            **options,
        )

    # -- housekeeping ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Number of registered datasets per type."""
        return self.registry.counts()

    def close(self) -> None:
        """Close this thread's registry connection (reopened on next use)."""
        self.registry.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"root": str(self.root)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Repository) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r})"
