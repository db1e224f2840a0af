"""Quanta: one task run on one data ID, and what came of it."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from ..errors import NoWorkFound

__all__ = ["Job", "Quantum", "QuantumOutcome", "execute_job"]


@dataclass(frozen=True)
class Quantum:
    """One unit of work: a step on one data ID, its input datasets and the outputs it makes.

    Attributes
    ----------
    step : str
        Step name (``warp``, ``coadd``, ...).
    data_id : tuple
        Sorted ``(key, value)`` pairs of the quantum's data ID.
    inputs : tuple
        Input :class:`DatasetRef` s.
    outputs : tuple
        ``(dataset_type, data_id tuple)`` of every output it writes.
    """

    step: str
    data_id: tuple[tuple[str, Any], ...]
    inputs: tuple = ()
    outputs: tuple = ()

    @property
    def label(self) -> str:
        """``step[key=value, ...]`` for logs and summaries."""
        return f"{self.step}[{', '.join(f'{k}={v}' for k, v in self.data_id)}]"

    def id_dict(self) -> dict[str, Any]:
        return dict(self.data_id)


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to run a quantum (pickles small)."""

    root: str
    quantum: Quantum
    config: Any


@dataclass(frozen=True)
class QuantumOutcome:
    """What a worker reports back: the files it wrote, or why it did not.

    Attributes
    ----------
    status : str
        ``"done"``, ``"no_work"`` (NoWorkFound: nothing to make) or ``"failed"``.
    written : tuple
        :class:`DatasetRef` s of the files written (not yet registered).
    metadata : dict
        The task's metadata (``TaskMetadata.to_dict()``).
    message : str
        Error message (with the traceback's last lines) when not done.
    seconds : float
        Wall time of the quantum.
    """

    status: str
    written: tuple = ()
    metadata: dict = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0


def execute_job(job: Job) -> QuantumOutcome:
    """Run one quantum in a worker: read inputs, run the task, write outputs (files only)."""
    from ._repository import Repository
    from ._steps import STEP_RUNNERS

    start = time.perf_counter()
    try:
        repo = Repository(job.root)
        written, metadata = STEP_RUNNERS[job.quantum.step](repo, job.quantum, job.config)
    except NoWorkFound as error:
        return QuantumOutcome("no_work", message=str(error), seconds=time.perf_counter() - start)
    except Exception as error:  # a failed quantum must not stop the run
        tail = "".join(traceback.format_exception(error)[-3:]).strip()
        return QuantumOutcome(
            "failed",
            message=f"{type(error).__name__}: {error}\n{tail}",
            seconds=time.perf_counter() - start,
        )
    return QuantumOutcome("done", tuple(written), metadata, seconds=time.perf_counter() - start)
