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


def make_repo(root, directory, *, characterize: bool = False):
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
    calexps = [p for p in paths if p.suffix == ".fits"]
    if characterize:  # ingest characterizes files without a PSF: drop the simulated one
        from skydiff.io import read_exposure, write_exposure

        for path in calexps:
            write_exposure(read_exposure(path).replace(psf=None), path, overwrite=True)
    from skydiff.characterize import CharacterizeConfig

    small = CharacterizeConfig().with_values(
        {"psf_determiner": {"spatial_order": 0, "min_stars": 4}}  # few stars on 320^2 px
    )
    repo.ingest(calexps, characterize=characterize, characterize_config=small)
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
    """Local processes, and a Dask scheduler with two worker processes on 127.0.0.1 reached
    by its address, reproduce the in-process run bit for bit."""
    repo, _, config, _ = ran
    other, _ = make_repo(tmp_path / "repo", tmp_path / "files")
    if kind == "processes":
        with ProcessExecutor(2) as executor:
            summary = Pipeline(other, config).run(executor=executor)
    else:
        from distributed import LocalCluster

        with LocalCluster(
            host="127.0.0.1", n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster:
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            with DaskExecutor(cluster.scheduler_address) as executor:
                summary = Pipeline(other, config).run(executor=executor)
    assert not summary.failures, summary.table()
    for ref in repo.query("difference"):
        a = repo.get("difference", ref.data_id)
        b = other.get("difference", ref.data_id)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask.array, b.mask.array)


def test_sky_steps_remove_the_sky_of_every_visit(tmp_path):
    """sky_frame builds one frame per detector from all visits; sky_correction fits each
    visit's sky (scaled frame + focal-plane background across the chip gaps); warps and
    science images are corrected with it. The simulated sky (~35 sigma of pixel noise, with a
    gradient across the focal plane) is removed to < 0.15 sigma on average and < 0.6 sigma
    everywhere: with only three visits the flat simulated frame still carries part of their
    gradients (without a sky frame the residual is 0.06 sigma; the demo's six visits give
    0.01 and 0.09)."""
    from skydiff.sim import sky_image

    repo, _ = make_repo(tmp_path / "repo", tmp_path / "files")
    config = PipelineConfig(
        steps=("sky_frame", "sky_correction", "warp"),
        template_visits=TEMPLATE_VISITS,
        science_visits=SCIENCE_VISITS,
    )
    summary = Pipeline(repo, config).run(executor=InProcessExecutor())
    assert not summary.failures, summary.table()
    assert len(repo.query("sky_frame")) == 4 and len(repo.query("sky_correction")) == 12
    for ref in repo.query("calexp"):
        calexp = repo.get(ref)
        data_id = {"visit": ref.data_id["visit"], "detector": ref.data_id["detector"]}
        residual = repo.get("sky_correction", data_id).evaluate(calexp.bbox) - sky_image(calexp)
        noise = float(np.sqrt(np.median(calexp.variance)))
        assert abs(residual.mean()) < 0.15 * noise and np.abs(residual).max() < 0.6 * noise
    metadata = repo.get("task_metadata", {"task": "sky_correction", "visit": 1})
    assert metadata["values"]["sky_frame_scale"] > 100  # the flat frame scaled to the sky
    warp = repo.query("direct_warp", visit=1)[0]
    assert repo.provenance(warp)["inputs"]
    image = repo.get(warp).image
    sky_free = image[np.isfinite(image)]
    assert abs(np.median(sky_free)) < 0.1 * robust_sigma(sky_free)
    # calexps without their focal-plane position are refused, naming the file
    from skydiff.pipeline._steps import _focal_plane_origin

    bare = repo.get(ref).replace(metadata={})
    with pytest.raises(Exception, match=r"FPX0/FPY0.*focal plane"):
        _focal_plane_origin(ref, bare)


def test_sky_steps_restore_the_background_subtracted_at_ingest(tmp_path):
    """Calexps characterized at ingest are background-subtracted; the sky steps add their
    calexp_background back, so the corrections replace it: calexp - correction is again
    free of the true sky (the correction holds the inverted ingest background)."""
    from skydiff.sim import sky_image

    repo, _ = make_repo(tmp_path / "repo", tmp_path / "files", characterize=True)
    assert len(repo.query("calexp_background")) == 12
    config = PipelineConfig(steps=("sky_frame", "sky_correction"), template_visits=(1, 2, 3))
    summary = Pipeline(repo, config).run(executor=InProcessExecutor())
    assert not summary.failures, summary.table()
    for ref in repo.query("calexp", visit=2):
        calexp = repo.get(ref)
        data_id = {"visit": 2, "detector": ref.data_id["detector"]}
        background = repo.get("calexp_background", ref.data_id).evaluate(calexp.bbox)
        correction = repo.get("sky_correction", data_id).evaluate(calexp.bbox)
        # the corrected calexp keeps the true sky minus the new model, that is, nothing
        residual = (calexp.image + background) - (calexp.image - correction) - sky_image(calexp)
        noise = float(np.sqrt(np.median(calexp.variance)))
        assert abs(np.mean(residual)) < 0.15 * noise


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


def test_warp_graph_has_one_quantum_per_visit_and_touched_patch(ran):
    """The warp quanta are exactly the (visit, tract, patch) a template calexp overlaps."""
    from skydiff.pipeline._steps import build_warp, visit_roles

    repo, _, config, _ = ran
    quanta = build_warp(repo, config, visit_roles(repo, config, {}))
    expected = set()
    skymap = repo.skymap
    for ref in repo.query("calexp"):
        if ref.data_id["visit"] not in TEMPLATE_VISITS:
            continue
        calexp = repo.handle(ref)
        for tract, patches in skymap.find_overlapping_exposure(calexp.wcs, calexp.bbox):
            expected |= {
                (ref.data_id["visit"], tract.tract_id, p.sequential_index) for p in patches
            }
    got = {(q.id_dict()["visit"], q.id_dict()["tract"], q.id_dict()["patch"]) for q in quanta}
    assert got == expected and len(got) == len(quanta)
    assert all(len(q.inputs) >= 1 for q in quanta)


def test_default_templates_are_the_best_seeing_visits(ran):
    """Without visit lists the narrowest-PSF visits (LSST's best-seeing selection) build
    the templates, so that convolving the template matches it to every science visit;
    ``earliest`` keeps the time order."""
    from skydiff.pipeline._steps import visit_roles

    repo, survey, _, _ = ran
    seeing = {int(r["visit"]): float(r["seeing"]) for r in survey.truth.visit_table()}
    ranked = sorted(seeing, key=seeing.get)
    roles = visit_roles(repo, PipelineConfig(), {})
    assert roles.template == {ranked[0]} and roles.science == set(ranked[1:])
    roles = visit_roles(repo, PipelineConfig(template_fraction=0.67), {})
    assert roles.template == set(ranked[:2]) and roles.science == {ranked[2]}
    roles = visit_roles(repo, PipelineConfig(template_selection="earliest"), {})
    assert roles.template == {1} and roles.science == {2, 3}


class _KilledAfter(InProcessExecutor):
    """Stops the run (as a kill would) after ``n`` quanta."""

    def __init__(self, n: int):
        self.n = n

    def map(self, fn, items):
        for count, pair in enumerate(super().map(fn, items)):
            if count == self.n:
                raise KeyboardInterrupt
            yield pair


def test_a_killed_run_resumes_without_redoing_or_duplicating(tmp_path):
    repo, _ = make_repo(tmp_path / "repo", tmp_path / "files")
    config = PipelineConfig(template_visits=TEMPLATE_VISITS, science_visits=SCIENCE_VISITS)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(repo, config).run(executor=_KilledAfter(3))
    done_before = {r.id for r in repo.query("direct_warp")}
    assert len(done_before) == 3
    summary = Pipeline(repo, config).run(executor=InProcessExecutor())
    assert not summary.failures and summary.count("skipped", "warp") == 3
    assert {r.id for r in repo.query("direct_warp")} >= done_before  # finished ones kept
    # one registry row per dataset: no duplicates from the interrupted run
    refs = repo.query()
    assert len({(r.dataset_type, tuple(sorted(r.data_id.items()))) for r in refs}) == len(refs)
    assert len(repo.query("difference")) == 4
