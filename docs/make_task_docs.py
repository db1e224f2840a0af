"""Write docs/tasks.md: one section per task, its LSST name and its configuration fields.

The tables come from the config dataclasses themselves (field, default, doc),
so they cannot drift from the code: ``python docs/make_task_docs.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from skydiff.characterize import CharacterizeTask, ScaleVarianceTask
from skydiff.coadd import AssembleCoaddTask, GetTemplateTask, MakeWarpTask, MatchBackgroundsTask
from skydiff.diffim import (
    AlardLuptonPreconvolveSubtractTask,
    AlardLuptonSubtractTask,
    DetectAndMeasureTask,
    ModelPsfMatchTask,
)
from skydiff.skyframe import SkyCorrectionTask, SkyMeasurementTask
from skydiff.task import Config

#: (our task, LSST task, what it does)
TASKS = [
    (CharacterizeTask, "CharacterizeImageTask", "background, detection, PSF model of a calexp"),
    (ScaleVarianceTask, "ScaleVarianceTask", "variance plane matched to the pixel noise"),
    (SkyMeasurementTask, "SkyMeasurementTask", "sky frames: measure, average, scale, subtract"),
    (SkyCorrectionTask, "SkyCorrectionTask", "focal-plane background and scaled sky frame"),
    (MakeWarpTask, "MakeWarpTask (MakeCoaddTempExpTask)", "calexps of a visit onto a patch"),
    (ModelPsfMatchTask, "ModelPsfMatchTask", "an exposure convolved to a model PSF"),
    (MatchBackgroundsTask, "MatchBackgroundsTask", "warps' backgrounds matched to a reference"),
    (AssembleCoaddTask, "AssembleCoaddTask / CompareWarpAssembleCoaddTask", "warps stacked"),
    (GetTemplateTask, "GetTemplateTask", "coadd patches resampled onto a science exposure"),
    (AlardLuptonSubtractTask, "AlardLuptonSubtractTask", "PSF-matched subtraction, decorrelated"),
    (AlardLuptonPreconvolveSubtractTask, "AlardLuptonPreconvolveSubtractTask", "score image"),
    (DetectAndMeasureTask, "DetectAndMeasureTask", "DIA sources on a difference image"),
]


def config_rows(config: Config, prefix: str = "") -> list[str]:
    rows = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        name = f"{prefix}{field.name}"
        if isinstance(value, Config):
            rows += config_rows(value, f"{name}.")
            continue
        doc = field.metadata.get("doc", "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{value!r}` | {doc} |")
    return rows


def section(task, lsst: str, summary: str) -> str:
    doc = (task.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [
        f"## {task.__name__}",
        "",
        f"LSST: `{lsst}` — {summary}.",
        "",
        doc,
        "",
        f"Configuration: `{task.ConfigClass.__name__}` (nested fields with dots, as in "
        "`--config` / `-c key=value` overrides).",
        "",
        "| field | default | meaning |",
        "|---|---|---|",
        *config_rows(task.ConfigClass()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    header = [
        "# Tasks",
        "",
        "One section per task: its LSST counterpart and every configuration field "
        "(generated from the code by `docs/make_task_docs.py`).",
        "",
    ]
    text = "\n".join(header) + "\n" + "\n".join(section(*t) for t in TASKS)
    Path(__file__).with_name("tasks.md").write_text(text)


if __name__ == "__main__":
    main()
