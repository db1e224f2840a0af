"""Run the pipeline over a repository: build each step's quanta, execute, register, summarise."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from ._config import STEPS, PipelineConfig
from ._executors import Executor, InProcessExecutor
from ._quantum import Job, Quantum, QuantumOutcome, execute_job
from ._steps import STEP_BUILDERS, visit_roles

__all__ = ["Pipeline", "QuantumReport", "RunSummary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantumReport:
    """One quantum's fate: ``done``, ``skipped`` (outputs exist), ``no_work`` or ``failed``."""

    label: str
    step: str
    status: str
    seconds: float = 0.0
    message: str = ""


@dataclass
class RunSummary:
    """What a run did, per quantum and per step, with wall times."""

    reports: list[QuantumReport] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)

    def count(self, status: str, step: str | None = None) -> int:
        return sum(r.status == status and (step is None or r.step == step) for r in self.reports)

    @property
    def failures(self) -> list[QuantumReport]:
        return [r for r in self.reports if r.status == "failed"]

    def table(self) -> str:
        """A plain-text table: per step, quanta done / skipped / no work / failed and seconds."""
        lines = [f"{'step':<18} {'done':>5} {'skipped':>8} {'no work':>8} {'failed':>7} {'s':>8}"]
        for step, seconds in self.step_seconds.items():
            counts = [self.count(s, step) for s in ("done", "skipped", "no_work", "failed")]
            lines.append(
                f"{step:<18} {counts[0]:>5} {counts[1]:>8} {counts[2]:>8} {counts[3]:>7} "
                f"{seconds:>8.1f}"
            )
        for report in self.failures:
            lines.append(f"FAILED {report.label}: {report.message.splitlines()[0]}")
        return "\n".join(lines)


class Pipeline:
    """The skydiff pipeline over one repository.

    Parameters
    ----------
    repo : Repository
        Where inputs are found and outputs go; only this (driver) process
        writes its registry.
    config : PipelineConfig, optional
    """

    def __init__(self, repo, config: PipelineConfig | None = None):
        self.repo = repo
        self.config = config or PipelineConfig()

    def run(
        self,
        *,
        steps: tuple[str, ...] | None = None,
        where: dict[str, Any] | None = None,
        executor: Executor | None = None,
        progress: bool | None = None,
    ) -> RunSummary:
        """Build and run the quanta of each step in order; existing outputs are skipped.

        A failed quantum is recorded (with its error) and the run goes on;
        later steps simply lack its outputs.
        """
        steps = tuple(s for s in STEPS if s in (steps or self.config.steps))
        executor = executor or InProcessExecutor()
        progress = sys.stderr.isatty() if progress is None else progress
        summary = RunSummary()
        roles = visit_roles(self.repo, self.config, where or {})
        log.info(
            "template visits %s, science visits %s", sorted(roles.template), sorted(roles.science)
        )
        for step in steps:
            start = time.perf_counter()
            quanta = STEP_BUILDERS[step](self.repo, self.config, roles)
            todo = []
            for quantum in quanta:
                if all(self.repo.exists(t, dict(d)) for t, d in quantum.outputs):
                    summary.reports.append(QuantumReport(quantum.label, step, "skipped"))
                else:
                    todo.append(quantum)
            self._execute(step, todo, executor, summary, progress)
            summary.step_seconds[step] = time.perf_counter() - start
        return summary

    def _execute(self, step, quanta: list[Quantum], executor, summary, progress) -> None:
        jobs = [Job(str(self.repo.root), q, self.config) for q in quanta]
        bar = tqdm(total=len(jobs), desc=step, unit="quantum", disable=not progress or not jobs)
        with bar:
            for job, outcome in executor.map(execute_job, jobs):
                if isinstance(outcome, BaseException):  # the executor itself failed
                    outcome = QuantumOutcome(
                        "failed", message=f"{type(outcome).__name__}: {outcome}"
                    )
                self._record(job.quantum, outcome, summary)
                bar.update(1)

    def _record(self, quantum: Quantum, outcome: QuantumOutcome, summary: RunSummary) -> None:
        if outcome.status == "done":
            if outcome.written:  # one transaction: a quantum's outputs appear together
                self.repo.register(
                    list(outcome.written), inputs=quantum.inputs, config=self.config.to_dict()
                )
            metadata_id = {"task": quantum.step, **quantum.id_dict()}
            self.repo.put("task_metadata", metadata_id, outcome.metadata, overwrite=True)
        elif outcome.status == "failed":
            log.warning("%s failed: %s", quantum.label, outcome.message.splitlines()[0])
        summary.reports.append(
            QuantumReport(
                quantum.label, quantum.step, outcome.status, outcome.seconds, outcome.message
            )
        )
