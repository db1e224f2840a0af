"""The Task base class, per-run metadata and result dataclasses."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from ..errors import InvalidParameterError
from ._config import Config

__all__ = ["Task", "TaskMetadata", "TaskResult"]

MetadataValue = float | int | str | bool | None


@dataclasses.dataclass
class TaskMetadata:
    """Timings and quality figures of one run of a task (and of its subtasks).

    Created by :meth:`Task.new_metadata` at the start of ``run``, filled
    while it runs, and returned inside its result; the task itself keeps no
    state between runs.
    """

    task: str
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    values: dict[str, MetadataValue] = dataclasses.field(default_factory=dict)
    children: dict[str, TaskMetadata] = dataclasses.field(default_factory=dict)

    def add(self, key: str, value: Any) -> None:
        """Record a quality figure (numbers converted to Python scalars)."""
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (float, int, str, bool, type(None))):
            raise InvalidParameterError(f"metadata {key!r} must be a scalar, got {type(value)}")
        self.values[key] = value

    def add_child(self, child: TaskMetadata) -> None:
        """Attach a subtask's metadata."""
        self.children[child.task.rsplit(".", 1)[-1]] = child

    def __getitem__(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        if key in self.timings:
            return self.timings[key]
        raise KeyError(f"{self.task} metadata has no {key!r}")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dictionary (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskMetadata:
        """Inverse of :meth:`to_dict`."""
        children = {k: cls.from_dict(v) for k, v in data.get("children", {}).items()}
        return cls(
            data["task"], dict(data.get("timings", {})), dict(data.get("values", {})), children
        )

    def flattened(self) -> dict[str, Any]:
        """``{"task:subtask.key": value}`` for every value and timing (LSST style)."""
        prefix = self.task.replace(".", ":")
        flat = {f"{prefix}.{k}": v for k, v in self.values.items()}
        flat.update({f"{prefix}.{k}_seconds": v for k, v in self.timings.items()})
        for child in self.children.values():
            flat.update(child.flattened())
        return flat


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """Base of typed task results: every result carries the run's metadata."""

    metadata: TaskMetadata = dataclasses.field(kw_only=True)


class Task:
    """Base class of skydiff tasks.

    A task holds a frozen :class:`Config`, a logger named after its place in
    the task hierarchy, and its subtasks. Its ``run`` method takes and
    returns in-memory objects (a :class:`TaskResult` subclass), stores
    nothing on ``self`` and touches no files.

    Parameters
    ----------
    config : Config, optional
        Configuration; default ``ConfigClass()``.
    name : str, optional
        Name in the hierarchy; default ``_DefaultName``.
    parent : Task, optional
        Parent task (set by :meth:`make_subtask`).
    """

    ConfigClass: ClassVar[type[Config]] = Config
    _DefaultName: ClassVar[str] = "task"

    def __init__(
        self, config: Config | None = None, *, name: str | None = None, parent: Task | None = None
    ):
        if config is None:
            config = self.ConfigClass()
        if not isinstance(config, self.ConfigClass):
            raise InvalidParameterError(
                f"{type(self).__name__} needs a {self.ConfigClass.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config
        self.name = name or self._DefaultName
        self.parent = parent
        self.full_name = f"{parent.full_name}.{self.name}" if parent else self.name
        self.log = logging.getLogger(f"skydiff.{self.full_name}")
        self._subtasks: dict[str, Task] = {}

    def make_subtask(self, name: str, task_class: type[Task], config: Config | None = None) -> Task:
        """Create subtask ``name`` (also set as an attribute) with the given config."""
        subtask = task_class(config, name=name, parent=self)
        self._subtasks[name] = subtask
        setattr(self, name, subtask)
        return subtask

    def get_task_dict(self) -> dict[str, Task]:
        """Full name -> task for this task and all its subtasks."""
        tasks: dict[str, Task] = {self.full_name: self}
        for sub in self._subtasks.values():
            tasks.update(sub.get_task_dict())
        return tasks

    def new_metadata(self) -> TaskMetadata:
        """Empty metadata for one run of this task."""
        return TaskMetadata(self.full_name)

    @contextlib.contextmanager
    def timer(self, name: str, metadata: TaskMetadata) -> Iterator[None]:
        """Time a block: wall seconds go to ``metadata.timings[name]`` and the debug log."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            metadata.timings[name] = metadata.timings.get(name, 0.0) + elapsed
            self.log.debug("%s took %.3f s", name, elapsed)

    def __reduce__(self) -> tuple:
        return (type(self), (self.config,), {"name": self.name})

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(self.config, name=state["name"])
