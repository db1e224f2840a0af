import json
import logging
import pickle
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from skydiff.errors import InvalidParameterError
from skydiff.task import Config, Task, TaskMetadata, TaskResult, config_field, field_docs


@dataclass(frozen=True)
class KernelConfig(Config):
    spatial_order: int = config_field(1, doc="Polynomial order of the spatial variation.")
    bad_planes: tuple[str, ...] = config_field(("BAD", "SAT"), doc="Planes to reject.")

    def validate(self) -> None:
        self.check(0 <= self.spatial_order <= 5, "spatial_order", "must be in 0..5")


@dataclass(frozen=True)
class SubtractConfig(Config):
    mode: Literal["convolveTemplate", "convolveScience", "auto"] = config_field(
        "convolveTemplate", doc="Which image to convolve."
    )
    threshold: float = config_field(5.0, doc="Detection threshold in sigma.")
    do_decorrelation: bool = config_field(True, doc="Whiten the difference noise.")
    max_fraction: float | None = config_field(None, doc="Optional limit.")
    kernel: KernelConfig = config_field(doc="Kernel fitting.", factory=KernelConfig)


@dataclass(frozen=True)
class SubtractResult(TaskResult):
    value: float


class KernelTask(Task):
    ConfigClass = KernelConfig
    _DefaultName = "kernel"

    def run(self, data):
        metadata = self.new_metadata()
        with self.timer("fit", metadata):
            metadata.add("n_stamps", np.int64(len(data)))
        return metadata


class SubtractTask(Task):
    ConfigClass = SubtractConfig
    _DefaultName = "subtract"

    def __init__(self, config=None, **kwargs):
        super().__init__(config, **kwargs)
        self.make_subtask("kernel", KernelTask, self.config.kernel)

    def run(self, data) -> SubtractResult:
        metadata = self.new_metadata()
        metadata.add_child(self.kernel.run(data))
        with self.timer("total", metadata):
            value = float(np.sum(data)) * self.config.threshold
        metadata.add("sum", value)
        return SubtractResult(value=value, metadata=metadata)


def test_defaults_validation_names_the_field():
    config = SubtractConfig()
    assert config.kernel.spatial_order == 1
    with pytest.raises(InvalidParameterError, match=r"KernelConfig\.spatial_order must be in"):
        KernelConfig(spatial_order=9)
    with pytest.raises(InvalidParameterError, match=r"SubtractConfig\.mode must be one of"):
        SubtractConfig(mode="sideways")
    with pytest.raises(InvalidParameterError, match=r"SubtractConfig\.threshold must be float"):
        SubtractConfig(threshold="high")
    with pytest.raises(InvalidParameterError, match=r"do_decorrelation must be true or false"):
        SubtractConfig(do_decorrelation=1)
    assert SubtractConfig(threshold=3).threshold == 3.0  # ints accepted for floats


def test_dict_round_trip_and_json():
    config = SubtractConfig(mode="auto", kernel=KernelConfig(spatial_order=2, bad_planes=("X",)))
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert SubtractConfig.from_dict(data) == config
    with pytest.raises(InvalidParameterError, match="has no field 'kernal'"):
        SubtractConfig.from_dict({"kernal": {}})


def test_string_overrides():
    config = SubtractConfig().with_overrides(
        [
            "kernel.spatial_order=3",
            "mode=auto",
            "threshold=4.5",
            "do_decorrelation=false",
            "kernel.bad_planes=NO_DATA, EDGE",
            "max_fraction=0.25",
        ]
    )
    assert config.kernel == KernelConfig(3, ("NO_DATA", "EDGE"))
    assert (config.mode, config.threshold, config.do_decorrelation) == ("auto", 4.5, False)
    assert config.max_fraction == 0.25
    assert config.with_overrides(["max_fraction=none"]).max_fraction is None
    with pytest.raises(InvalidParameterError, match="key=value"):
        config.with_overrides(["threshold"])
    with pytest.raises(InvalidParameterError, match="spatial_order"):
        config.with_overrides(["kernel.spatial_order=7"])


def test_toml_overrides(tmp_path):
    path = tmp_path / "subtract.toml"
    path.write_text('mode = "convolveScience"\n[kernel]\nspatial_order = 0\n')
    config = SubtractConfig.from_toml(path)
    assert config.mode == "convolveScience" and config.kernel.spatial_order == 0
    (tmp_path / "bad.toml").write_text("mode = [unclosed")
    with pytest.raises(InvalidParameterError, match=r"bad\.toml"):
        SubtractConfig.from_toml(tmp_path / "bad.toml")


def test_field_docs_cover_nested_fields():
    docs = field_docs(SubtractConfig)
    assert "kernel.spatial_order" in docs and "default: 1" in docs["kernel.spatial_order"]


def test_task_hierarchy_metadata_and_no_state(caplog):
    task = SubtractTask(SubtractConfig(threshold=2.0))
    assert task.kernel.full_name == "subtract.kernel"
    assert set(task.get_task_dict()) == {"subtract", "subtract.kernel"}
    assert task.log.name == "skydiff.subtract"
    before = dict(vars(task))
    with caplog.at_level(logging.DEBUG, logger="skydiff"):
        result = task.run(np.ones(4))
    assert vars(task) == before  # run stored nothing on the task
    assert result.value == 8.0
    assert result.metadata["sum"] == 8.0 and result.metadata.timings["total"] >= 0
    assert result.metadata.children["kernel"]["n_stamps"] == 4
    assert isinstance(result.metadata.children["kernel"].values["n_stamps"], int)
    flat = result.metadata.flattened()
    assert flat["subtract.sum"] == 8.0 and flat["subtract:kernel.n_stamps"] == 4
    assert "fit took" in caplog.text
    assert TaskMetadata.from_dict(result.metadata.to_dict()) == result.metadata
    with pytest.raises(InvalidParameterError, match="needs a SubtractConfig"):
        SubtractTask(KernelConfig())


def test_everything_pickles():
    task = SubtractTask()
    clone = pickle.loads(pickle.dumps(task))
    assert clone.config == task.config and clone.kernel.config == task.kernel.config
    result = task.run(np.arange(3.0))
    assert pickle.loads(pickle.dumps(result)) == result
