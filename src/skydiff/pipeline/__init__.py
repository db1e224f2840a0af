"""Pipeline layer: the data repository (dataset types, registry, ingest).

A repository is a directory with an SQLite registry (``registry.sqlite3``) and
one file per dataset, laid out by dataset type and data ID::

    from skydiff.pipeline import Repository

    repo = Repository.create("repo", skymap="rings_120")
    repo.ingest(["calexp_v1_d0.fits"])
    calexp = repo.get("calexp", {"instrument": "SkydiffSim", "visit": 1, "detector": 0})
    refs = repo.calexps_overlapping(9813, 45, band="r")

See ``docs/repository.md``.
"""

import importlib
from typing import Any

from ._dataset_types import (
    DATASET_TYPES,
    DIMENSIONS,
    STORAGE_KINDS,
    DataId,
    DatasetRef,
    DatasetType,
    get_dataset_type,
    register_dataset_type,
)
from ._ingest import companion_path, ingest, load_mapping
from ._registry import DatasetExistsError, DatasetNotFoundError, Registry
from ._repository import REGISTRY_NAME, Repository
from ._spatial import ExposureSummary, SkyBox

#: Names of the pipeline runner's modules, imported on first use (they pull in every task).
_LAZY = {
    **dict.fromkeys(["Pipeline", "QuantumReport", "RunSummary"], "._runner"),
    **dict.fromkeys(["STEPS", "PipelineConfig"], "._config"),
    **dict.fromkeys(
        ["DaskExecutor", "Executor", "InProcessExecutor", "ProcessExecutor", "make_executor"],
        "._executors",
    ),
    **dict.fromkeys(["Job", "Quantum", "QuantumOutcome", "execute_job"], "._quantum"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DATASET_TYPES",
    "DIMENSIONS",
    "REGISTRY_NAME",
    "STORAGE_KINDS",
    "DataId",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "DatasetRef",
    "DatasetType",
    "ExposureSummary",
    "Registry",
    "Repository",
    "SkyBox",
    "companion_path",
    "get_dataset_type",
    "ingest",
    "load_mapping",
    "register_dataset_type",
    *_LAZY,
]
