"""Task framework: typed configs, tasks with subtasks, timers and per-run metadata."""

from ._config import Config, config_field, field_docs
from ._task import Task, TaskMetadata, TaskResult

__all__ = ["Config", "Task", "TaskMetadata", "TaskResult", "config_field", "field_docs"]
