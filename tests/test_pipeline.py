"""The pipeline runner: graph, resume, failure isolation, executors, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from skydiff.math import robust_sigma
from skydiff.pipeline import (
    DaskExecutor,
    InProcessExecutor,
    Pipeline,
    PipelineConfig,
    ProcessExecutor,
    Repository,
)
from skydiff.sim import Camera, SurveyConfig, simulate_survey, write_survey
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

TEMPLATE_VISITS, SCIENCE_VISITS = (1, 2), (3,)


def make_repo(root, directory):
    """A repository with a 3-visit, 2x2-detector simulated survey ingested."""
    config = SurveyConfig(n_visits=3, seed=5, pointing_offset=4.0, seeing_range=(0.6, 0.9))
    config = config.with_sky(
        star_density=40.0,
        star_mag_range=(16.0, 21.0),
        n_transients=6,
        transient_mag_range=(18.0, 20.0),
    )
    survey = simulate_survey(config, Camera.small(width=320, height=320))
    paths = write_survey(survey, directory)
    skymap = DiscreteSkyMap.from_centers(
        [config.ra],
        [config.dec],
        [0.03],
        config=SkyMapConfig(patch_inner_dimensions=(400, 400), patch_border=40),
    )
    repo = Repository.create(root, skymap=skymap)
    repo.ingest([p for p in paths if p.suffix == ".fits"], characterize=False)
    return repo, survey


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    repo, survey = make_repo(root / "repo", root / "files")
    config = PipelineConfig(template_visits=TEMPLATE_VISITS, science_visits=SCIENCE_VISITS)
    summary = Pipeline(repo, config).run(executor=InProcessExecutor())
    return repo, survey, config, summary


def test_pipeline_makes_every_product(ran):
    repo, _, _, summary = ran
    assert not summary.failures, summary.table()
    assert summary.count("done", "warp") >= 2 and summary.count("done", "coadd") >= 1
    assert summary.count("done", "subtract") == 4  # one science visit x 4 detectors
    for name in ("difference", "matched_template", "dia_sources", "template"):
        assert len(repo.query(name, visit=3)) == 4
    difference = repo.get("difference", {"visit": 3, "detector": 0})
    good = difference.mask.array == 0
    normalized = difference.image[good] / np.sqrt(difference.variance[good])
    # white noise of the expected amplitude away from sources (robust: transients remain)
    assert abs(robust_sigma(normalized) - 1.0) < 0.1
    metadata = repo.get("task_metadata", {"task": "subtract", "visit": 3, "detector": 0})
    assert 1.0 <= metadata["values"]["difference_variance_factor"] < 2.0
    # provenance: a difference records its inputs and the software version
    ref = repo.query("difference", visit=3, detector=0)[0]
    provenance = repo.provenance(ref)
    assert provenance["inputs"] and provenance["software_version"]


def test_rerun_skips_everything_and_resumes_missing_outputs(ran):
    repo, _, config, _ = ran
    again = Pipeline(repo, config).run(executor=InProcessExecutor())
    assert again.count("done") == 0 and again.count("skipped") > 0


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_other_executors_give_identical_results(ran, tmp_path, kind):
    """Local processes and a Dask LocalCluster reproduce the in-process run bit for bit."""
    repo, _, config, _ = ran
    other, _ = make_repo(tmp_path / "repo", tmp_path / "files")
    executor = ProcessExecutor(2) if kind == "processes" else DaskExecutor("local", n_workers=2)
    with executor:
        summary = Pipeline(other, config).run(executor=executor)
    assert not summary.failures, summary.table()
    for ref in repo.query("difference"):
        a = repo.get("difference", ref.data_id)
        b = other.get("difference", ref.data_id)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask.array, b.mask.array)


def test_a_failed_quantum_does_not_stop_the_others(tmp_path):
    repo, _ = make_repo(tmp_path / "repo", tmp_path / "files")
    ref = repo.query("calexp", visit=3, detector=1)[0]
    path = repo.root / ref.path
    path.write_bytes(path.read_bytes()[:5000])  # truncate one science calexp
    config = PipelineConfig(template_visits=TEMPLATE_VISITS, science_visits=SCIENCE_VISITS)
    summary = Pipeline(repo, config).run(executor=InProcessExecutor())
    failed = summary.failures
    assert failed and all("visit=3" in r.label and "detector=1" in r.label for r in failed)
    assert summary.count("done", "subtract") == 3
