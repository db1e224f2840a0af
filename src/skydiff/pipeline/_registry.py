"""The registry of a data repository: an SQLite database of datasets and their provenance.

Safe for concurrent processes: the database runs in WAL mode (readers never
block), every connection waits up to :data:`BUSY_TIMEOUT` seconds for a lock,
and every change is one ``BEGIN IMMEDIATE`` transaction. Each process (and
thread) opens its own connection on first use; a :class:`Registry` pickles as
its path.

Schema
------
``repository(key, value)``
    Format, schema version, creation time and software version.
``dataset(id, dataset_type, data_id, path, instrument, visit, detector, tract,
patch, band, task, run, software_version, config, created)``
    One row per registered dataset; ``data_id`` is canonical JSON, unique per
    type; the dimension columns repeat it for queries (``band`` also holds an
    exposure's recorded band); ``config`` is JSON.
``dataset_input(dataset_id, input_id, position)``
    Provenance: the datasets each dataset was made from.
``exposure(dataset_id, band, physical_filter, mjd, exposure_time, ra_min, ra_max,
dec_min, dec_max, polygon)``
    Exposures' filters, times and sky footprints (``polygon`` JSON
    ``[[ra, dec], ...]``; ``ra_min > ra_max`` when the box wraps through RA 0).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError, SkydiffError
from ._dataset_types import DATASET_TYPES, DIMENSIONS, DataId, DatasetRef
from ._spatial import ExposureSummary, SkyBox

__all__ = [
    "BUSY_TIMEOUT",
    "QUERY_KEYS",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "DatasetRecord",
    "Registry",
]

FORMAT = "skydiff-repository"
SCHEMA_VERSION = 1
#: Seconds a connection waits for another process's write to finish.
BUSY_TIMEOUT = 120.0

#: Keys a query may filter on -> SQL column.
QUERY_KEYS: dict[str, str] = {
    **{name: f"d.{name}" for name in DIMENSIONS},
    "physical_filter": "e.physical_filter",
    "run": "d.run",
}

_SCHEMA = """
CREATE TABLE repository (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE dataset (
    id TEXT PRIMARY KEY,
    dataset_type TEXT NOT NULL,
    data_id TEXT NOT NULL,
    path TEXT NOT NULL,
    instrument TEXT, visit INTEGER, detector INTEGER, tract INTEGER, patch INTEGER,
    band TEXT, task TEXT,
    run TEXT,
    software_version TEXT NOT NULL,
    config TEXT,
    created TEXT NOT NULL,
    UNIQUE (dataset_type, data_id)
);
CREATE INDEX dataset_visit ON dataset (dataset_type, visit, detector);
CREATE INDEX dataset_patch ON dataset (dataset_type, tract, patch);
CREATE TABLE dataset_input (
    dataset_id TEXT NOT NULL REFERENCES dataset (id) ON DELETE CASCADE,
    input_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, input_id)
);
CREATE TABLE exposure (
    dataset_id TEXT PRIMARY KEY REFERENCES dataset (id) ON DELETE CASCADE,
    band TEXT, physical_filter TEXT, mjd REAL, exposure_time REAL,
    ra_min REAL, ra_max REAL, dec_min REAL, dec_max REAL,
    polygon TEXT
);
CREATE INDEX exposure_dec ON exposure (dec_min, dec_max);
"""

_SELECT = "SELECT d.id, d.dataset_type, d.data_id, d.path FROM dataset d"
_ORDER = (
    " ORDER BY d.dataset_type, d.instrument, d.visit, d.detector, d.tract, d.patch, "
    "d.band, d.task, d.data_id"
)


class DatasetExistsError(SkydiffError, FileExistsError):
    """A dataset is already registered (or its file written) and overwriting was not asked."""


class DatasetNotFoundError(SkydiffError, LookupError):
    """No dataset of this type and data ID is registered."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset to register: its reference, provenance and exposure summary."""

    ref: DatasetRef
    inputs: tuple[str, ...] = ()
    config: str | None = None
    software_version: str = ""
    run: str | None = None
    created: str = ""
    summary: ExposureSummary | None = None


def canonical_data_id(data_id: Mapping[str, Any]) -> str:
    """The data ID as JSON with sorted keys (the registry's identity of a dataset)."""
    return json.dumps(dict(sorted(data_id.items())), separators=(",", ":"))


def _ref_from_row(row: Sequence[Any]) -> DatasetRef:
    dataset_id, name, data_id, path = row[:4]
    values = json.loads(data_id)
    dataset_type = DATASET_TYPES.get(name)
    data_id = dataset_type.data_id(values) if dataset_type is not None else DataId(values)
    return DatasetRef(name, data_id, path, dataset_id)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Registry:
    """The SQLite registry file of a repository.

    Parameters
    ----------
    path : path-like
        The database file (``<root>/registry.sqlite3``); it is opened on first use.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._generation = 0
        self._checked = False

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = NORMAL")
            if not self._checked:
                self._check_format(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise InvalidParameterError(
                f"{self.path}: not a skydiff registry database ({error})"
            ) from None
        except BaseException:
            connection.close()
            raise
        return connection

    @property
    def connection(self) -> sqlite3.Connection:
        """This process's and thread's connection (opened on first use)."""
        local, key = self._local, (os.getpid(), self._generation)
        if getattr(local, "key", None) != key:
            # a connection inherited through fork is neither used nor closed here
            local.connection, local.key = self._connect(), key
            with self._lock:
                self._opened.append((key[0], local.connection))
        return local.connection

    def _check_format(self, connection: sqlite3.Connection) -> None:
        try:
            info = dict(connection.execute("SELECT key, value FROM repository").fetchall())
        except sqlite3.DatabaseError as error:
            raise InvalidParameterError(
                f"{self.path}: not a skydiff registry database ({error})"
            ) from None
        if info.get("format") != FORMAT or int(info.get("schema_version", -1)) > SCHEMA_VERSION:
            raise InvalidParameterError(
                f"{self.path}: registry format {info.get('format')!r} version "
                f"{info.get('schema_version')} is not one this skydiff reads "
                f"({FORMAT} version <= {SCHEMA_VERSION})"
            )
        self._checked = True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed or rolled back as a whole."""
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this process opened (new ones open on next use)."""
        with self._lock:
            mine = [c for pid, c in self._opened if pid == os.getpid()]
            self._opened = [(pid, c) for pid, c in self._opened if pid != os.getpid()]
            self._generation += 1
        for connection in mine:
            connection.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    # -- creation -------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, info: Mapping[str, str]) -> Registry:
        """Create the database file with the schema and ``info`` in ``repository``."""
        registry = cls(path)
        connection = sqlite3.connect(registry.path, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            rows = {"format": FORMAT, "schema_version": str(SCHEMA_VERSION), **info}
            connection.executemany("INSERT INTO repository VALUES (?, ?)", rows.items())
            connection.execute("COMMIT")
        finally:
            connection.close()
        return registry

    def info(self) -> dict[str, str]:
        """The ``repository`` table: format, schema version, creation time and version."""
        return dict(self.connection.execute("SELECT key, value FROM repository").fetchall())

    # -- registration ---------------------------------------------------------------------

    def insert(self, records: Sequence[DatasetRecord], *, overwrite: bool = False) -> None:
        """Register datasets in one transaction: all or none.

        Raises
        ------
        DatasetExistsError
            If one is registered already and ``overwrite`` is false.
        """
        with self.transaction() as connection:
            for record in records:
                self._insert_one(connection, record, overwrite)

    def _insert_one(
        self, connection: sqlite3.Connection, record: DatasetRecord, overwrite: bool
    ) -> None:
        ref = record.ref
        data_id = canonical_data_id(ref.data_id)
        existing = connection.execute(
            "SELECT id FROM dataset WHERE dataset_type = ? AND data_id = ?",
            (ref.dataset_type, data_id),
        ).fetchone()
        if existing is not None and not overwrite:
            raise DatasetExistsError(
                f"{ref} is already registered (id {existing[0]}); pass overwrite=True to replace it"
            )
        if existing is not None:
            connection.execute("DELETE FROM dataset WHERE id = ?", (existing[0],))
        columns = {name: ref.data_id.get(name) for name in DIMENSIONS}
        if columns["band"] is None and record.summary is not None and record.summary.band:
            columns["band"] = record.summary.band
        connection.execute(
            "INSERT INTO dataset VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ref.id, ref.dataset_type, data_id, ref.path, *columns.values(),
                record.run, record.software_version, record.config, record.created,
            ),
        )  # fmt: skip
        connection.executemany(
            "INSERT OR IGNORE INTO dataset_input VALUES (?, ?, ?)",
            [(ref.id, input_id, i) for i, input_id in enumerate(record.inputs)],
        )
        if record.summary is not None:
            self._insert_summary(connection, ref.id, record.summary)

    @staticmethod
    def _insert_summary(connection: sqlite3.Connection, dataset_id: str, s: ExposureSummary):
        box = s.sky_box
        limits = (None,) * 4 if box is None else (box.ra_min, box.ra_max, box.dec_min, box.dec_max)
        polygon = None if s.polygon is None else json.dumps([list(v) for v in s.polygon])
        connection.execute(
            "INSERT INTO exposure VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                dataset_id, s.band, s.physical_filter, _finite_or_none(s.mjd),
                _finite_or_none(s.exposure_time), *limits, polygon,
            ),
        )  # fmt: skip

    # -- look-ups -------------------------------------------------------------------------

    def find(self, dataset_type: str, data_id: Mapping[str, Any]) -> DatasetRef | None:
        """The registered dataset of this type and data ID, or None."""
        row = self.connection.execute(
            f"{_SELECT} WHERE d.dataset_type = ? AND d.data_id = ?",
            (dataset_type, canonical_data_id(data_id)),
        ).fetchone()
        return None if row is None else _ref_from_row(row)

    def find_id(self, dataset_id: str) -> DatasetRef | None:
        """The registered dataset with this id, or None."""
        row = self.connection.execute(f"{_SELECT} WHERE d.id = ?", (dataset_id,)).fetchone()
        return None if row is None else _ref_from_row(row)

    def query(
        self, dataset_type: str | None, where: Mapping[str, Sequence[Any]]
    ) -> list[DatasetRef]:
        """Registered datasets of a type (or all) whose columns take one of the given values.

        Parameters
        ----------
        dataset_type : str or None
            Type name, or None for every type.
        where : mapping of str to sequence
            :data:`QUERY_KEYS` key -> accepted values.
        """
        clauses, params = _where_clauses(dataset_type, where)
        sql = f"{_SELECT} LEFT JOIN exposure e ON e.dataset_id = d.id"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        return [_ref_from_row(row) for row in self.connection.execute(sql + _ORDER, params)]

    def exposure_records(
        self, dataset_type: str, where: Mapping[str, Sequence[Any]]
    ) -> list[dict[str, Any]]:
        """Data ID, id, path and recorded band, filter, MJD and exposure time of exposures."""
        clauses, params = _where_clauses(dataset_type, where)
        sql = (
            "SELECT d.id, d.dataset_type, d.data_id, d.path, e.band, e.physical_filter, e.mjd, "
            "e.exposure_time FROM dataset d LEFT JOIN exposure e ON e.dataset_id = d.id "
            f"WHERE {' AND '.join(clauses)}{_ORDER}"
        )
        keys = ("band", "physical_filter", "mjd", "exposure_time")
        records = []
        for row in self.connection.execute(sql, params):
            ref = _ref_from_row(row)
            recorded = dict(zip(keys, row[4:], strict=True))
            records.append({**ref.data_id, **recorded, "id": ref.id, "path": ref.path})
        return records

    def spatial_candidates(
        self, dataset_type: str, box: SkyBox, where: Mapping[str, Sequence[Any]]
    ) -> list[tuple[DatasetRef, list[list[float]]]]:
        """Datasets whose recorded sky box overlaps ``box``, with their polygons."""
        clauses, params = _where_clauses(dataset_type, where)
        clauses.append("e.polygon IS NOT NULL AND e.dec_min <= ? AND e.dec_max >= ?")
        params += [box.dec_max, box.dec_min]
        ra_terms = []
        for low, high in box.ra_intervals():
            ra_terms.append(
                "((e.ra_min <= e.ra_max AND e.ra_min <= ? AND e.ra_max >= ?) OR "
                "(e.ra_min > e.ra_max AND (e.ra_min <= ? OR e.ra_max >= ?)))"
            )
            params += [high, low, high, low]
        clauses.append("(" + " OR ".join(ra_terms) + ")")
        sql = (
            f"SELECT d.id, d.dataset_type, d.data_id, d.path, e.polygon FROM dataset d "
            f"JOIN exposure e ON e.dataset_id = d.id WHERE {' AND '.join(clauses)}{_ORDER}"
        )
        return [
            (_ref_from_row(row), json.loads(row[4])) for row in self.connection.execute(sql, params)
        ]

    def polygon(self, dataset_id: str) -> list[list[float]] | None:
        """The recorded sky polygon of a dataset, or None."""
        row = self.connection.execute(
            "SELECT polygon FROM exposure WHERE dataset_id = ?", (dataset_id,)
        ).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def provenance(self, dataset_id: str) -> dict[str, Any] | None:
        """Provenance and exposure record of a dataset (None if not registered)."""
        connection = self.connection
        row = connection.execute(
            "SELECT run, software_version, config, created FROM dataset WHERE id = ?",
            (dataset_id,),
        ).fetchone()
        if row is None:
            return None
        inputs = connection.execute(
            "SELECT input_id FROM dataset_input WHERE dataset_id = ? ORDER BY position",
            (dataset_id,),
        ).fetchall()
        exposure = connection.execute(
            "SELECT band, physical_filter, mjd, exposure_time, polygon FROM exposure "
            "WHERE dataset_id = ?",
            (dataset_id,),
        ).fetchone()
        run, version, config, created = row
        result = {
            "run": run,
            "software_version": version,
            "created": created,
            "config": None if config is None else json.loads(config),
            "inputs": [i for (i,) in inputs],
        }
        if exposure is not None:
            keys = ("band", "physical_filter", "mjd", "exposure_time")
            result["exposure"] = dict(zip(keys, exposure[:4], strict=True))
            result["exposure"]["polygon"] = None if exposure[4] is None else json.loads(exposure[4])
        return result

    def counts(self) -> dict[str, int]:
        """Number of registered datasets per type."""
        rows = self.connection.execute(
            "SELECT dataset_type, COUNT(*) FROM dataset GROUP BY dataset_type ORDER BY 1"
        )
        return dict(rows.fetchall())


def _where_clauses(
    dataset_type: str | None, where: Mapping[str, Sequence[Any]]
) -> tuple[list[str], list[Any]]:
    clauses, params = [], []
    if dataset_type is not None:
        clauses.append("d.dataset_type = ?")
        params.append(dataset_type)
    for key, values in where.items():
        column = QUERY_KEYS[key]
        values = list(values)
        if not values:
            clauses.append("0")
            continue
        clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    return clauses, params
