"""Ingest: exposure files (skydiff, LSST afw, plain FITS) into a repository as calexps.

Each file is identified (instrument, visit, detector, band) from a mapping
entry, the caller's arguments or its header, in that order of precedence;
exposures without a PSF are characterized (background, variance, sources,
PSF) and written as skydiff exposures; skydiff files that need no change are
transferred as they are.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AlgorithmError, InvalidParameterError
from ..image import Exposure
from ..io import SKYDIFF_FORMAT, open_fits, read_any
from ._dataset_types import DataId, DatasetRef, coerce_dimension, get_dataset_type
from ._registry import DatasetExistsError
from ._storage import TRANSFER_MODES

__all__ = ["MAPPING_FIELDS", "companion_path", "ingest", "load_mapping"]

log = logging.getLogger(__name__)

#: Fields a mapping entry may give for a file.
MAPPING_FIELDS = ("visit", "detector", "band", "instrument", "physical_filter")
_COMPANIONS = ("weight", "variance", "mask")
_FITS_SUFFIXES = (".fits.fz", ".fits.gz", ".fits", ".fit", ".fts")


# -- mapping files and companions ------------------------------------------------------------


def _mapping_entries(path: Path) -> list[dict[str, Any]]:
    """Records of a CSV (header row with ``file``) or JSON (object or list) mapping file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise InvalidParameterError(f"{path}: cannot read the mapping file ({error})") from None
    if path.suffix.lower() == ".csv":
        return [dict(row) for row in csv.DictReader(text.splitlines(), skipinitialspace=True)]
    if path.suffix.lower() != ".json":
        raise InvalidParameterError(f"{path}: a mapping file must be .csv or .json")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidParameterError(f"{path}: not a JSON mapping file ({error})") from None
    if isinstance(data, dict):
        return [{"file": name, **entry} for name, entry in data.items()]
    if isinstance(data, list) and all(isinstance(entry, dict) for entry in data):
        return data
    raise InvalidParameterError(f"{path}: JSON mapping must be an object or a list of objects")


def load_mapping(
    mapping: Mapping[str, Mapping[str, Any]] | str | os.PathLike | None,
) -> dict[str, dict[str, Any]]:
    """File name -> identifying fields, from a mapping or a ``.csv``/``.json`` file.

    A CSV file has a header row with a ``file`` column and any of
    :data:`MAPPING_FIELDS`; a JSON file is ``{file: {field: value}}`` or a list
    of records with ``file``. File names match the ingested path as given, its
    absolute path or its base name. Empty values are ignored.

    Raises
    ------
    InvalidParameterError
        Naming the file and entry, for unknown fields or entries without ``file``.
    """
    if mapping is None:
        return {}
    source = "mapping"
    if isinstance(mapping, Mapping):
        entries = [{"file": name, **entry} for name, entry in mapping.items()]
    else:
        source = os.fspath(mapping)
        entries = _mapping_entries(Path(mapping))
    result = {}
    for entry in entries:
        name = str(entry.get("file") or "").strip()
        unknown = sorted(set(entry) - {"file", *MAPPING_FIELDS})
        if not name or unknown:
            problem = f"unknown fields {unknown}" if unknown else "no 'file'"
            raise InvalidParameterError(
                f"{source}: entry {entry} has {problem}; "
                f"fields are file, {', '.join(MAPPING_FIELDS)}"
            )
        result[name] = {k: v for k, v in entry.items() if k != "file" and v not in ("", None)}
    return result


def _mapping_entry(mapping: Mapping[str, dict[str, Any]], path: Path) -> dict[str, Any]:
    for key in (str(path), str(path.resolve()), path.name):
        if key in mapping:
            return mapping[key]
    return {}


def companion_path(image: str | os.PathLike, spec: str) -> Path:
    """The weight, variance or mask file beside an image.

    ``spec`` is either ``OLD=NEW``, replacing text in the file name (DECam
    community pipeline: ``ooi=oow`` gives the weight of ``..._ooi_r_v1.fits.fz``),
    or a suffix inserted before the FITS extension (``.weight``:
    ``img.fits`` -> ``img.weight.fits``).
    """
    image = Path(image)
    name = image.name
    if "=" in spec:
        old, new = spec.split("=", 1)
        if not old or old not in name:
            raise InvalidParameterError(f"{image}: companion pattern {spec!r} does not match")
        return image.with_name(name.replace(old, new, 1))
    for extension in _FITS_SUFFIXES:
        if name.lower().endswith(extension):
            stem = name[: -len(extension)]
            return image.with_name(f"{stem}{spec}{name[-len(extension) :]}")
    return image.with_name(name + spec)


# -- identifying a file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What ingest learns of a file: its calexp data ID and filter names."""

    data_id: DataId
    band: str
    physical_filter: str


def _clean(text: Any) -> str:
    """A header string made fit for a data ID (spaces and odd characters -> ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text or "").strip()).strip("_.+-")


def _header_value(path: Path, key: str) -> Any:
    """The value of card ``key`` in the first HDU that has it, or None."""
    with open_fits(path) as hdul:
        for hdu in hdul:
            if key in hdu.header:
                return hdu.header[key]
    return None


def _number(path: Path, name: str, entry: dict, key: str | None, header_value: Any) -> Any:
    if name in entry:
        return entry[name]
    if key is not None:
        value = _header_value(path, key)
        if value is None:
            raise InvalidParameterError(
                f"{path}: has no {key} card (named by {name}_key= / --{name}-key)"
            )
        return value
    return header_value


def identify(
    path: Path,
    exposure: Exposure,
    entry: Mapping[str, Any],
    *,
    instrument: str | None = None,
    band: str | None = None,
    visit_key: str | None = None,
    detector_key: str | None = None,
) -> Identity:
    """The calexp data ID, band and physical filter of an ingested file.

    Each field comes from the file's mapping ``entry``, else the argument, else
    the header (``VisitInfo``: ``VISIT``/``EXPNUM``/``EXPID``,
    ``DETECTOR``/``CCDNUM``/``CCD_ID``, ``INSTRUME``; band from ``BAND`` or the
    first word of ``FILTER``), or the card named by ``visit_key``/``detector_key``.

    Raises
    ------
    InvalidParameterError
        Naming the file, the missing fields and how to supply them.
    """
    info = exposure.visit_info
    entry = dict(entry)
    visit = _number(path, "visit", entry, visit_key, info.visit)
    detector = _number(path, "detector", entry, detector_key, info.detector)
    fields = {
        "instrument": entry.get("instrument") or instrument or _clean(info.instrument),
        "band": entry.get("band") or band or _clean(exposure.band),
    }
    values = {"visit": visit, "detector": detector, **fields}
    missing = [name for name, value in values.items() if value is None or value == ""]
    if missing:
        raise InvalidParameterError(
            f"{path}: no {', '.join(missing)} in its header; give "
            f"{'them' if len(missing) > 1 else 'it'} in a mapping file (--mapping, CSV columns "
            f"file,{','.join(MAPPING_FIELDS[:4])}) or as options (--instrument, --band, "
            "--visit-key CARD, --detector-key CARD)"
        )
    try:
        data_id = get_dataset_type("calexp").data_id(
            instrument=fields["instrument"], visit=visit, detector=detector
        )
        band_value = coerce_dimension("band", fields["band"], "band")
    except InvalidParameterError as error:
        raise InvalidParameterError(f"{path}: {error}") from None
    physical_filter = str(entry.get("physical_filter") or exposure.physical_filter or "")
    return Identity(data_id, str(band_value), physical_filter)


def as_calexp(exposure: Exposure, identity: Identity) -> Exposure:
    """The exposure carrying its identity: visit information, band and physical filter."""
    d = identity.data_id
    info = dataclasses.replace(
        exposure.visit_info, instrument=d["instrument"], visit=d["visit"], detector=d["detector"]
    )
    return exposure.replace(
        visit_info=info, band=identity.band, physical_filter=identity.physical_filter
    )


# -- reading and preparing -------------------------------------------------------------------


def _read(path: Path, companions: Mapping[str, str], read_options: Mapping[str, Any]) -> Exposure:
    options = dict(read_options)
    for kind, spec in companions.items():
        if kind not in _COMPANIONS:
            raise InvalidParameterError(f"companions keys are {_COMPANIONS}, got {kind!r}")
        companion = companion_path(path, spec)
        if not companion.is_file():
            raise InvalidParameterError(f"{path}: its {kind} file {companion} does not exist")
        options[kind] = companion
    return read_any(path, **options)


def _is_skydiff_file(path: Path) -> bool:
    with open_fits(path) as hdul:
        return hdul[0].header.get("SDFORMAT") == SKYDIFF_FORMAT


def _unchanged(original: Exposure, calexp: Exposure) -> bool:
    return (
        original.visit_info == calexp.visit_info
        and original.band == calexp.band
        and original.physical_filter == calexp.physical_filter
    )


@dataclass(frozen=True)
class _Prepared:
    """A calexp ready to write, with its companions when it was characterized."""

    exposure: Exposure
    background: Any = None
    sources: Any = None
    config: Any = None


def _characterize(path: Path, exposure: Exposure, config: Any) -> _Prepared:
    from ..characterize import CharacterizeConfig, CharacterizeTask

    config = CharacterizeConfig() if config is None else config
    log.info("%s: no PSF; characterizing", path)
    try:
        result = CharacterizeTask(config).run(exposure)
    except AlgorithmError as error:
        raise type(error)(f"{path}: characterization failed: {error}", error.metadata) from error
    return _Prepared(result.exposure, result.background, result.sources, config)


# -- ingest ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOptions:
    """How :func:`ingest` reads, identifies and stores files (see its parameters)."""

    instrument: str | None = None
    band: str | None = None
    visit_key: str | None = None
    detector_key: str | None = None
    characterize: bool = True
    characterize_config: Any = None
    transfer: str = "copy"
    companions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    read_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    skip_existing: bool = False
    run: str = "ingest"


def _store(repo: Any, path: Path, prepared: _Prepared, verbatim: bool, o: IngestOptions):
    """Write the calexp (and its background and sources), returning their refs."""
    data_id = {
        k: getattr(prepared.exposure.visit_info, k) for k in ("instrument", "visit", "detector")
    }
    if verbatim:
        refs = [repo.write_file("calexp", data_id, path, transfer=o.transfer, overwrite=True)]
    else:
        refs = [repo.write("calexp", data_id, prepared.exposure, overwrite=True)]
    if prepared.background is not None:
        refs.append(repo.write("calexp_background", data_id, prepared.background, overwrite=True))
        refs.append(repo.write("calexp_sources", data_id, prepared.sources, overwrite=True))
    return refs


def _provenance(path: Path, prepared: _Prepared, verbatim: bool, o: IngestOptions) -> dict:
    config = {
        "ingest": {
            "source": str(path.resolve()),
            "transfer": o.transfer if verbatim else "converted",
            "characterized": prepared.config is not None,
        }
    }
    if prepared.config is not None:
        config["characterize"] = prepared.config.to_dict()
    return config


def _undo(repo: Any, refs: list[DatasetRef], moved_from: Path | None) -> None:
    """Remove the files of a failed ingest; a moved file goes back where it came from."""
    for ref in refs:
        path = repo.root / ref.path
        if moved_from is not None and ref.dataset_type == "calexp":
            shutil.move(path, moved_from)
        else:
            path.unlink(missing_ok=True)


def _ingest_file(
    repo: Any, path: Path, entry: dict, o: IngestOptions, seen: dict[DataId, Path]
) -> DatasetRef | None:
    original = _read(path, o.companions, o.read_options)
    identity = identify(
        path, original, entry, instrument=o.instrument, band=o.band,
        visit_key=o.visit_key, detector_key=o.detector_key,
    )  # fmt: skip
    if identity.data_id in seen:
        raise InvalidParameterError(
            f"{path} and {seen[identity.data_id]} are both calexp {dict(identity.data_id)}; "
            "correct their headers or the mapping"
        )
    seen[identity.data_id] = path
    registered = repo.exists("calexp", identity.data_id)
    if registered and o.skip_existing:
        log.info("%s: calexp %s is already ingested; skipped", path, dict(identity.data_id))
        return None
    if registered and not o.overwrite:
        raise DatasetExistsError(
            f"{path}: calexp {dict(identity.data_id)} is in the repository already; "
            "pass overwrite=True to replace it or skip_existing=True to skip it"
        )
    calexp = as_calexp(original, identity)
    if calexp.wcs is None:
        raise InvalidParameterError(f"{path}: the exposure has no WCS; a calexp needs one")
    prepared = _Prepared(calexp)
    if o.characterize and calexp.psf is None:
        prepared = _characterize(path, calexp, o.characterize_config)
    elif calexp.psf is None:
        log.warning("%s: no PSF and characterize=False; ingested without a PSF", path)
    verbatim = prepared.config is None and _unchanged(original, calexp) and _is_skydiff_file(path)
    refs = _store(repo, path, prepared, verbatim, o)
    try:
        repo.register(
            refs, config=_provenance(path, prepared, verbatim, o), run=o.run, overwrite=o.overwrite
        )
    except BaseException:
        if not registered:
            _undo(repo, refs, path if verbatim and o.transfer == "move" else None)
        raise
    log.info("%s -> %s", path, refs[0].path)
    return refs[0]


def ingest(
    repo: Any,
    paths: Iterable[str | os.PathLike],
    *,
    mapping: Mapping[str, Mapping[str, Any]] | str | os.PathLike | None = None,
    **options: Any,
) -> list[DatasetRef]:
    """Add exposure files to a repository as calexps (LSST ``butler ingest-raws`` + calexp).

    Parameters
    ----------
    repo : Repository
        Destination.
    paths : iterable of path-like
        skydiff, LSST afw or plain FITS exposures (with a WCS).
    mapping : mapping or path-like, optional
        File name -> ``visit``, ``detector``, ``band``, ``instrument``,
        ``physical_filter``; or a ``.csv``/``.json`` file of the same (see
        :func:`load_mapping`). Overrides the header.
    **options
        Fields of :class:`IngestOptions`: ``instrument``, ``band`` (used where
        the mapping has none; they override the header), ``visit_key`` and
        ``detector_key`` (header cards holding the visit and detector),
        ``characterize`` (fit a PSF, background and sources when a file has no
        PSF; default True), ``characterize_config``, ``transfer`` (``copy``,
        ``move``, ``symlink`` or ``hardlink``, for skydiff files stored as they
        are; others are converted), ``companions`` (``{"weight": "ooi=oow",
        "mask": ".mask"}``, see :func:`companion_path`), ``read_options``
        (keywords of :func:`skydiff.io.read_image`: ``hdu``, ``gain``,
        ``mask_values``...), ``overwrite``, ``skip_existing`` and ``run``.

    Returns
    -------
    list of DatasetRef
        The calexps ingested, in the order of ``paths`` (skipped files omitted).
        Characterized files also get ``calexp_background`` and
        ``calexp_sources`` datasets.

    Raises
    ------
    InvalidParameterError
        Naming the file, when it cannot be read or identified.
    DatasetExistsError
        If a calexp is registered already (without ``overwrite`` or ``skip_existing``).
    """
    try:
        o = IngestOptions(**options)
    except TypeError as error:
        raise InvalidParameterError(f"ingest: {error}") from None
    if o.transfer not in TRANSFER_MODES:
        raise InvalidParameterError(
            f"transfer must be one of {', '.join(TRANSFER_MODES)}, got {o.transfer!r}"
        )
    entries = load_mapping(mapping)
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InvalidParameterError(f"no such file(s): {', '.join(missing)}")
    refs: list[DatasetRef] = []
    seen: dict[DataId, Path] = {}
    for path in paths:
        ref = _ingest_file(repo, path, _mapping_entry(entries, path), o, seen)
        if ref is not None:
            refs.append(ref)
    return refs
