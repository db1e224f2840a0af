"""The data repository: layout, registry, round trips, spatial queries, ingest, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import sqlite3
from datetime import datetime

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import skydiff
from skydiff.background import SubtractBackgroundTask
from skydiff.cli import main
from skydiff.errors import InvalidParameterError, SkydiffError
from skydiff.image import Box
from skydiff.pipeline import (
    DataId,
    DatasetExistsError,
    DatasetNotFoundError,
    DatasetRef,
    Repository,
    SkyBox,
    companion_path,
    load_mapping,
)
from skydiff.pipeline._spatial import polygon_overlaps_box
from skydiff.sim import (
    Camera,
    SurveyConfig,
    make_truth,
    simulate_exposure,
    simulate_survey,
    write_survey,
)
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig
from skydiff.task import TaskMetadata

from .conftest import data_path

SPARSE_SKY = dict(
    star_density=2.0, galaxy_density=0.0, bright_star_density=0.0, n_transients=0, n_variables=0
)
CAMERA = Camera.small(width=128, height=128, bad_columns=0)
RA0, DEC0 = 0.02, -30.0  # the field straddles RA 0


def calexp_id(visit: int, detector: int) -> dict:
    return {"instrument": "SkydiffSim", "visit": visit, "detector": detector}


@pytest.fixture(scope="module")
def survey_config() -> SurveyConfig:
    return SurveyConfig(
        ra=RA0, dec=DEC0, n_visits=5, pointing_offset=40.0, rotation_scatter=20.0, seed=7
    ).with_sky(**SPARSE_SKY)


@pytest.fixture(scope="module")
def exposures(survey_config):
    """20 calexps (5 visits x 4 detectors) with pointing offsets and rotations."""
    truth = make_truth(survey_config, CAMERA)
    return [
        simulate_exposure(survey_config, CAMERA, visit=v, detector=d, truth=truth).exposure
        for v in survey_config.visits
        for d in CAMERA.detector_ids()
    ]


@pytest.fixture(scope="module")
def skymap() -> DiscreteSkyMap:
    return DiscreteSkyMap.from_centers(
        [0.0],
        [DEC0],
        [0.03],
        config=SkyMapConfig(pixel_scale=0.2, patch_inner_dimensions=(150, 150), patch_border=16),
    )


@pytest.fixture
def repo(tmp_path, skymap) -> Repository:
    with Repository.create(tmp_path / "repo", skymap=skymap) as repository:
        yield repository


@pytest.fixture(scope="module")
def filled(tmp_path_factory, skymap, exposures) -> Repository:
    """A repository holding all simulated calexps."""
    repository = Repository.create(tmp_path_factory.mktemp("filled") / "repo", skymap=skymap)
    for exposure in exposures:
        info = exposure.visit_info
        repository.put("calexp", calexp_id(info.visit, info.detector), exposure, run="sim")
    yield repository
    repository.close()


# -- creating and opening ------------------------------------------------------------------------


def test_create_open_and_refuse(tmp_path, skymap):
    repo = Repository.create(tmp_path / "a" / "repo", skymap=skymap)
    assert (repo.root / "registry.sqlite3").is_file()
    assert Repository(tmp_path / "a" / "repo") == repo and repo.skymap == skymap
    assert repo.query() == [repo.find("skymap")]
    with pytest.raises(InvalidParameterError, match="is a skydiff repository already"):
        Repository.create(repo.root)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(InvalidParameterError, match="not empty"):
        Repository.create(tmp_path / "full")
    with pytest.raises(InvalidParameterError, match=r"missing.*not a skydiff repository"):
        Repository(tmp_path / "missing")
    with pytest.raises(InvalidParameterError, match=r"no registry\.sqlite3"):
        Repository(tmp_path / "full")
    (tmp_path / "full" / "registry.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(InvalidParameterError, match="not a skydiff registry database"):
        Repository(tmp_path / "full").query()
    with pytest.raises(InvalidParameterError, match=r"unknown sky map name|neither a known"):
        Repository.create(tmp_path / "b", skymap="no_such_map")
    assert not (tmp_path / "b").exists()
    empty = Repository.create(tmp_path / "new")  # a new directory, no sky map
    with pytest.raises(InvalidParameterError, match="has no sky map"):
        _ = empty.skymap
    (tmp_path / "empty").mkdir()
    Repository.create(tmp_path / "empty", skymap="rings_120")
    assert Repository(tmp_path / "empty").skymap.kind == "rings"


def test_repository_and_refs_pickle(repo):
    ref = repo.put("task_metadata", {"task": "warp", "visit": 1}, {"a": 1})
    clone = pickle.loads(pickle.dumps(repo))
    assert clone == repo and clone.query("task_metadata") == [ref]
    assert len(pickle.dumps(repo)) < 200  # the root only, no connection or sky map
    again = pickle.loads(pickle.dumps(ref))
    assert again == ref and hash(again) == hash(ref) and isinstance(again.data_id, DataId)


def test_data_ids_are_frozen_dicts():
    data_id = DataId({"visit": 1, "detector": 2})
    assert data_id == {"detector": 2, "visit": 1} and json.dumps(data_id)
    assert hash(data_id) == hash(DataId({"detector": 2, "visit": 1}))
    with pytest.raises(TypeError, match="cannot change"):
        data_id["visit"] = 3
    with pytest.raises(TypeError, match="cannot change"):
        data_id.update(visit=3)
    assert {**data_id, "visit": 3} == {"visit": 3, "detector": 2}


# -- dataset types, paths and errors ------------------------------------------------------------


def test_path_layout(repo):
    root = repo.root
    expected = {
        ("calexp", (("instrument", "HSC"), ("visit", 12), ("detector", 3))): (
            "calexp/instrument=HSC/visit=12/calexp_HSC_v12_d3.fits"
        ),
        ("coadd", (("tract", 0), ("patch", 5), ("band", "r"))): (
            "coadd/tract=0/patch=5/coadd_t0_p5_r.fits"
        ),
        ("direct_warp", (("visit", 1), ("tract", 2), ("patch", 3))): (
            "direct_warp/visit=1/tract=2/direct_warp_v1_t2_p3.fits"
        ),
        ("dia_sources", (("visit", 4), ("detector", 0))): (
            "dia_sources/visit=4/dia_sources_v4_d0.ecsv"
        ),
        ("sky_frame", (("instrument", "HSC"), ("detector", 9))): (
            "sky_frame/instrument=HSC/sky_frame_HSC_d9.fits"
        ),
        ("skymap", ()): "skymap/skymap.json",
        ("task_config", (("task", "warp"), ("patch", 3), ("visit", 1), ("tract", 0))): (
            "task_config/task=warp/visit=1/tract=0/task_config_warp_v1_t0_p3.json"
        ),
    }
    for (name, items), relative in expected.items():
        assert repo.path_for(name, dict(items)) == root / relative
    # numeric strings and numpy integers are the same data ID
    assert repo.path_for("template", {"visit": "4", "detector": np.int64(0)}) == repo.path_for(
        "template", {"visit": 4, "detector": 0}
    )


@pytest.mark.parametrize(
    ("dataset_type", "data_id", "message"),
    [
        ("calexps", {}, "unknown dataset type 'calexps'; known types: calexp,"),
        ("calexp", {"visit": 1}, r"missing \['instrument', 'detector'\]"),
        ("coadd", {"tract": 0, "patch": 1, "band": "r", "visit": 2}, r"extra \['visit'\]"),
        ("template", {"visit": "one", "detector": 0}, "visit must be an integer"),
        ("template", {"visit": True, "detector": 0}, "visit must be an integer"),
        ("sky_frame", {"instrument": "a/b", "detector": 0}, "instrument must be a non-empty"),
        ("task_config", {"visit": 1}, r"missing \['task'\]"),
        ("task_config", {"task": "warp", "colour": "red"}, r"extra \['colour'\]"),
    ],
)
def test_invalid_dataset_types_and_data_ids(repo, dataset_type, data_id, message):
    with pytest.raises(InvalidParameterError, match=message):
        repo.path_for(dataset_type, data_id)
    with pytest.raises(InvalidParameterError, match=message):
        repo.put(dataset_type, data_id, {})


def test_wrong_objects_and_missing_datasets(repo, exposures):
    with pytest.raises(InvalidParameterError, match="must be a Exposure, got dict"):
        repo.write("template", {"visit": 1, "detector": 0}, {"a": 1})
    with pytest.raises(InvalidParameterError, match="must be a Table"):
        repo.write("dia_sources", {"visit": 1, "detector": 0}, exposures[0])
    with pytest.raises(InvalidParameterError, match="not JSON-serialisable"):
        repo.write("task_metadata", {"task": "warp"}, {"a": object()})
    with pytest.raises(InvalidParameterError, match="visit information has visit=1"):
        repo.write("calexp", calexp_id(2, 0), exposures[0])
    assert not list((repo.root).glob("*/**/*.fits")) and not repo.exists(
        "template", {"visit": 1, "detector": 0}
    )
    with pytest.raises(DatasetNotFoundError, match="no template with data ID"):
        repo.get("template", {"visit": 1, "detector": 0})
    with pytest.raises(LookupError):
        repo.handle("calexp", calexp_id(1, 0))
    with pytest.raises(InvalidParameterError, match="bbox= applies to exposures only"):
        repo.get("skymap", bbox=Box(0, 0, 2, 2))


# -- round trips ---------------------------------------------------------------------------------


def test_exposure_round_trip_is_exact(repo, exposures):
    exposure = exposures[5]
    info = exposure.visit_info
    ref = repo.put("calexp", calexp_id(info.visit, info.detector), exposure)
    assert repo.exists("calexp", calexp_id(info.visit, info.detector))
    assert ref.path == f"calexp/instrument=SkydiffSim/visit={info.visit}/" + (
        f"calexp_SkydiffSim_v{info.visit}_d{info.detector}.fits"
    )
    got = repo.get("calexp", ref.data_id)
    for a, b in ((got.image, exposure.image), (got.variance, exposure.variance)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.mask.array, exposure.mask.array)
    assert got.bbox == exposure.bbox and got.visit_info == info and got.band == "r"
    x, y = exposure.bbox.center
    np.testing.assert_array_equal(got.psf.kernel_image(x, y), exposure.psf.kernel_image(x, y))
    np.testing.assert_allclose(got.pixel_to_sky(3.0, 7.0), exposure.pixel_to_sky(3.0, 7.0))
    box = Box(exposure.bbox.x0 + 10, exposure.bbox.y0 + 20, 30, 40)
    np.testing.assert_array_equal(repo.get(ref, bbox=box).image, exposure[box].image)
    handle = repo.handle("calexp", ref.data_id)
    assert handle.bbox == exposure.bbox
    np.testing.assert_array_equal(handle.get(box).variance, exposure[box].variance)
    # an incomplete data ID is enough when it is unambiguous
    assert repo.find("calexp", {"visit": info.visit, "detector": info.detector}) == ref


def test_table_background_skymap_and_json_round_trips(repo, exposures, survey_config):
    table = Table({"x": [1.5, 2.5], "id": np.array([3, 4], np.int64), "name": ["a", "b"]})
    table.meta["comment"] = "two sources"
    repo.put("dia_sources", {"visit": 1, "detector": 2}, table)
    got = repo.get("dia_sources", {"visit": 1, "detector": 2})
    assert got.colnames == table.colnames and got.meta["comment"] == "two sources"
    for name in table.colnames:
        np.testing.assert_array_equal(got[name], table[name])

    background = SubtractBackgroundTask().run(exposures[0]).background
    repo.put("sky_correction", {"visit": 1, "detector": 0}, background)
    got = repo.get("sky_correction", {"visit": 1, "detector": 0})
    bbox = exposures[0].bbox
    np.testing.assert_array_equal(got.evaluate(bbox), background.evaluate(bbox))

    other = DiscreteSkyMap.from_centers([10.0], [5.0], [0.2])
    repo.put("skymap", {}, other, overwrite=True)
    assert repo.skymap == other and repo.get("skymap") == other
    assert Repository(repo.root).skymap == other

    repo.put("task_config", {"task": "sim", "visit": 1}, survey_config)
    assert SurveyConfig.from_dict(repo.get("task_config", {"task": "sim", "visit": 1})) == (
        survey_config
    )
    metadata = TaskMetadata("characterize")
    metadata.add("n_sources", 12)
    metadata.add("psf_fwhm", float("nan"))
    repo.put("task_metadata", {"task": "characterize", "visit": 1, "detector": 0}, metadata)
    got = repo.get("task_metadata", {"task": "characterize", "visit": 1, "detector": 0})
    assert got["values"]["n_sources"] == 12 and np.isnan(got["values"]["psf_fwhm"])
    assert TaskMetadata.from_dict(got).values["n_sources"] == 12


# -- registry: registration, queries, provenance --------------------------------------------------


def test_write_then_register_and_overwrite(repo):
    data_id = {"task": "warp", "visit": 3}
    ref = repo.write("task_metadata", data_id, {"v": 1})
    assert ref.id and repo.path_for("task_metadata", data_id).is_file()
    assert not repo.exists("task_metadata", data_id)  # written, not registered
    with pytest.raises(DatasetExistsError, match="left by an interrupted run"):
        repo.write("task_metadata", data_id, {"v": 1})
    assert repo.register(ref) is ref and repo.exists("task_metadata", data_id)
    with pytest.raises(DatasetExistsError, match="already registered"):
        repo.register(ref)
    with pytest.raises(DatasetExistsError, match="already registered"):
        repo.put("task_metadata", data_id, {"v": 2})
    assert repo.get("task_metadata", data_id) == {"v": 1}
    new = repo.put("task_metadata", data_id, {"v": 2}, overwrite=True)
    assert new.id != ref.id and repo.find("task_metadata", data_id) == new
    assert repo.get("task_metadata", data_id) == {"v": 2}
    stale = DatasetRef("task_metadata", {"task": "x"}, "elsewhere.json", "abc")
    with pytest.raises(InvalidParameterError, match="is not the expected"):
        repo.register(stale)
    unwritten = DatasetRef(
        "task_metadata", {"task": "x"}, "task_metadata/task_metadata_x.json", "a"
    )
    with pytest.raises(InvalidParameterError, match="write it before registering"):
        repo.register(unwritten)


def test_query_with_where_filters(repo):
    for visit in (1, 2, 3):
        for detector in (0, 1):
            repo.put("task_metadata", {"task": "sub", "visit": visit, "detector": detector}, {})
    repo.put("task_metadata", {"task": "warp", "visit": 1, "tract": 0, "patch": 4}, {}, run="r2")
    refs = repo.query("task_metadata", task="sub")
    assert [(r.data_id["visit"], r.data_id["detector"]) for r in refs] == [
        (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1),
    ]  # fmt: skip
    assert len(repo.query("task_metadata", visit=1)) == 3
    assert len(repo.query("task_metadata", visit=[1, 3], detector=1)) == 2
    assert len(repo.query("task_metadata", visit={"2", 3}, task="sub")) == 4
    assert len(repo.query("task_metadata", visit=[])) == 0
    assert repo.data_ids("task_metadata", run="r2") == [
        {"task": "warp", "visit": 1, "tract": 0, "patch": 4}
    ]
    assert {r.dataset_type for r in repo.query()} == {"skymap", "task_metadata"}
    assert len(repo.query(visit=2)) == 2
    with pytest.raises(InvalidParameterError, match="cannot query on 'colour'"):
        repo.query("task_metadata", colour="red")
    with pytest.raises(InvalidParameterError, match="coadd has no 'visit'"):
        repo.query("coadd", visit=1)
    with pytest.raises(InvalidParameterError, match="visit must be an integer"):
        repo.query("task_metadata", visit="one")
    with pytest.raises(InvalidParameterError, match=r"3 task_metadata datasets match.*\[.task.\]"):
        repo.find("task_metadata", {"visit": 1})


def test_provenance(repo, survey_config):
    a = repo.put("task_metadata", {"task": "a"}, {})
    b = repo.put("task_metadata", {"task": "b"}, {})
    start = datetime.now().astimezone()
    made = repo.put(
        "task_metadata", {"task": "c"}, {"x": 1}, inputs=[a, b.id], config=survey_config, run="run1"
    )
    provenance = repo.provenance(made)
    assert provenance["inputs"] == [a.id, b.id] and provenance["run"] == "run1"
    assert provenance["software_version"] == skydiff.__version__
    assert SurveyConfig.from_dict(provenance["config"]) == survey_config
    assert provenance["data_id"] == {"task": "c"} and provenance["path"] == made.path
    created = datetime.fromisoformat(provenance["created"])
    assert abs((created - start).total_seconds()) < 60
    assert repo.provenance(made.id) == provenance
    with pytest.raises(DatasetNotFoundError):
        repo.provenance("no-such-id")
    with pytest.raises(InvalidParameterError, match="inputs must be DatasetRefs or dataset ids"):
        repo.put("task_metadata", {"task": "d"}, {}, inputs=[3])
    assert not repo.exists("task_metadata", {"task": "d"})


# -- spatial queries ----------------------------------------------------------------------------


def brute_force_overlaps(exposure, tract, margin: float) -> set[int]:
    """Patches whose outer box, grown by ``margin`` pixels, holds a sample of the exposure."""
    b = exposure.bbox  # samples every pixel (~1 tract pixel) over the whole box, edges included
    x, y = np.meshgrid(
        np.linspace(b.x0 - 0.5, b.x_end - 0.5, b.width + 1),
        np.linspace(b.y0 - 0.5, b.y_end - 0.5, b.height + 1),
    )
    tx, ty = tract.sky_to_pixel(*exposure.pixel_to_sky(x.ravel(), y.ravel()))
    found = set()
    for patch in tract.patches():
        (x0, y0), _, (x1, y1), _ = patch.outer_bbox.corners()
        x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
        if tx.max() < x0 or tx.min() > x1 or ty.max() < y0 or ty.min() > y1:
            continue
        if np.any((tx >= x0) & (tx <= x1) & (ty >= y0) & (ty <= y1)):
            found.add(patch.sequential_index)
    return found


def test_calexps_overlapping_matches_brute_force(filled, exposures, skymap):
    tract = skymap[0]
    answer = {
        p.sequential_index: {
            (r.data_id["visit"], r.data_id["detector"])
            for r in filled.calexps_overlapping(0, p.sequential_index)
        }
        for p in tract.patches()
    }
    n_pairs, n_ambiguous = 0, 0
    for exposure in exposures:
        key = (exposure.visit_info.visit, exposure.visit_info.detector)
        listed = {p for p, keys in answer.items() if key in keys}
        surely = brute_force_overlaps(exposure, tract, -1.0)
        maybe = brute_force_overlaps(exposure, tract, 1.0)
        assert surely <= listed <= maybe, key
        n_pairs += len(listed)
        n_ambiguous += len(maybe - surely)
        # patches_for is the exact counterpart of calexps_overlapping
        assert {p for t, p in filled.patches_for(*key)} == listed and all(
            t == 0 for t, _ in filled.patches_for(*key)
        )
    assert n_pairs > 40 and n_ambiguous < n_pairs / 5
    # some footprints straddle RA 0, so their RA box wraps
    wrapped = filled.registry.connection.execute(
        "SELECT COUNT(*) FROM exposure WHERE ra_min > ra_max"
    ).fetchone()[0]
    assert wrapped > 0


def test_calexps_overlapping_filters(filled, skymap):
    busiest = max(
        (p.sequential_index for p in skymap[0].patches()),
        key=lambda p: len(filled.calexps_overlapping(0, p)),
    )
    everything = filled.calexps_overlapping(0, busiest)
    assert len({r.data_id["visit"] for r in everything}) >= 2
    some = filled.calexps_overlapping(0, busiest, visits=[1, 2], band="r")
    assert some == [r for r in everything if r.data_id["visit"] in (1, 2)]
    assert filled.calexps_overlapping(0, busiest, band="g") == []
    x, y = skymap[0].patch(busiest).index
    assert filled.calexps_overlapping(0, (x, y)) == everything
    records = filled.calexp_records(visit=1)
    assert len(records) == 4 and {r["band"] for r in records} == {"r"}
    assert all(r["mjd"] > 60000 and r["exposure_time"] == 30.0 for r in records)
    assert len(filled.query("calexp", band="r", physical_filter="sim-r")) == 20
    with pytest.raises(DatasetNotFoundError):
        filled.patches_for(99, 0)


def test_sky_boxes_and_polygon_tests():
    square = SkyBox.around(np.array([359.9, 0.1, 0.1, 359.9]), np.array([-1, -1, 1, 1]), margin=0)
    assert (square.ra_min, square.ra_max) == pytest.approx((359.9, 0.1))
    assert square.ra_intervals() == [(pytest.approx(359.9), 360.0), (0.0, pytest.approx(0.1))]
    cap = SkyBox.around(np.arange(0.0, 360.0, 30.0), np.full(12, 85.0), margin=0)
    assert (cap.ra_min, cap.ra_max, cap.dec_min, cap.dec_max) == (0.0, 360.0, 85.0, 90.0)
    x, y = np.array([0.0, 10.0, 10.0, 0.0]), np.array([0.0, 0.0, 10.0, 10.0])
    assert polygon_overlaps_box(x, y, 2, 3, 2, 3)  # box inside the polygon
    assert polygon_overlaps_box(x, y, -5, 20, -5, 20)  # polygon inside the box
    assert not polygon_overlaps_box(x, y, 11, 12, 0, 10)
    thin_x, thin_y = np.array([-5.0, 15.0, 15.0, -5.0]), np.array([4.0, 4.0, 4.1, 4.1])
    assert polygon_overlaps_box(thin_x, thin_y, 0, 10, 0, 10)  # edges cross, no vertex inside
    diagonal_x, diagonal_y = np.array([0.0, 10.0, 9.0]), np.array([9.0, 20.0, 20.0])
    assert not polygon_overlaps_box(diagonal_x, diagonal_y, 5, 10, 0, 5)


# -- ingest --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    """The calexps ``skydiff demo`` writes (2 visits x 4 detectors of 128 x 128 pixels)."""
    directory = tmp_path_factory.mktemp("demo")
    survey = simulate_survey(SurveyConfig(n_visits=2, seed=3), Camera.small(width=128, height=128))
    return sorted(p for p in write_survey(survey, directory) if p.suffix == ".fits")


def test_ingest_skydiff_files(repo, demo_files):
    refs = repo.ingest(demo_files)
    assert [(r.data_id["visit"], r.data_id["detector"]) for r in refs] == [
        (v, d) for v in (1, 2) for d in range(4)
    ]
    for source, ref in zip(demo_files, refs, strict=True):
        assert (repo.root / ref.path).read_bytes() == source.read_bytes()  # stored as it is
    provenance = repo.provenance(refs[0])
    assert provenance["config"]["ingest"]["source"] == str(demo_files[0].resolve())
    assert provenance["exposure"]["band"] == "r" and provenance["run"] == "ingest"
    assert provenance["exposure"]["mjd"] == repo.get(refs[0]).visit_info.mjd
    with pytest.raises(DatasetExistsError, match=r"calexp_v1_d0.fits: calexp .* already"):
        repo.ingest(demo_files[:1])
    assert repo.ingest(demo_files, skip_existing=True) == []
    other = Repository.create(repo.root.parent / "linked")
    (ref,) = other.ingest(demo_files[:1], transfer="symlink", band="g")  # band differs: converted
    assert not (other.root / ref.path).is_symlink() and other.get(ref).band == "g"
    (ref,) = other.ingest(demo_files[1:2], transfer="symlink")
    assert (other.root / ref.path).is_symlink()
    with pytest.raises(InvalidParameterError, match="transfer must be one of"):
        other.ingest(demo_files, transfer="teleport")


def test_ingest_by_move_puts_the_file_back_on_failure(repo, demo_files, tmp_path, monkeypatch):
    source = tmp_path / demo_files[0].name
    source.write_bytes(demo_files[0].read_bytes())
    monkeypatch.setattr(type(repo.registry), "_insert_one", _broken_insert)
    with pytest.raises(sqlite3.OperationalError):
        repo.ingest([source], transfer="move")
    monkeypatch.undo()
    assert source.read_bytes() == demo_files[0].read_bytes() and repo.query("calexp") == []
    (ref,) = repo.ingest([source], transfer="move")
    assert not source.exists() and (repo.root / ref.path).is_file()


@pytest.fixture(scope="module")
def plain_image():
    """A single-detector image with bright stars, its header as a plain FITS image would have."""
    sky = {**SPARSE_SKY, "star_density": 30.0, "star_mag_range": (15.0, 20.0)}
    config = SurveyConfig(seed=5, sky_gradient=0.0).with_sky(**sky)
    exposure = simulate_exposure(config, Camera.single(512, saturation=1e7)).exposure
    header = exposure.wcs.to_header(relax=True)
    header["FILTER"] = "r DECam SDSS c0002 6415.0 1480.0"
    header["EXPTIME"] = 30.0
    header["MJD-OBS"] = 60100.25
    return exposure.image, header


def test_ingest_plain_fits_characterizes_it(repo, tmp_path, plain_image):
    image, header = plain_image
    header = header.copy()
    header["INSTRUME"] = "DECam"
    header["EXPNUM"] = 123456
    header["CCDNUM"] = 31
    path = tmp_path / "c4d_ooi_r.fits"
    fits.PrimaryHDU(image, header=header).writeto(path)
    (ref,) = repo.ingest([path])
    assert ref.data_id == {"instrument": "DECam", "visit": 123456, "detector": 31}
    calexp = repo.get(ref)
    assert calexp.psf is not None and calexp.band == "r"
    assert calexp.visit_info.visit == 123456 and calexp.visit_info.mjd == pytest.approx(
        60100.25 + 15.0 / 86400
    )
    assert 2.0 < calexp.psf.fwhm(*calexp.bbox.center) < 6.0
    assert repo.exists("calexp_background", ref.data_id)
    assert len(repo.get("calexp_sources", ref.data_id)) > 20
    provenance = repo.provenance(ref)
    assert provenance["config"]["ingest"]["characterized"] is True
    assert "psf_determiner" in provenance["config"]["characterize"]


def test_ingest_needs_visit_and_detector(repo, tmp_path, plain_image):
    image, header = plain_image
    path = tmp_path / "anonymous.fits"
    fits.PrimaryHDU(image, header=header).writeto(path)
    with pytest.raises(InvalidParameterError, match=r"anonymous.fits: no visit, detector, instru"):
        repo.ingest([path])
    with pytest.raises(InvalidParameterError, match="--mapping"):
        repo.ingest([path], instrument="Mine")
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("file,visit,detector,band\nanonymous.fits,7,2,i\n")
    weights = {"weight": ".weight"}
    with pytest.raises(InvalidParameterError, match=r"weight file .*anonymous.weight.fits does"):
        repo.ingest([path], mapping=mapping, instrument="Mine", companions=weights)
    fits.PrimaryHDU(np.full(image.shape, 0.25, np.float32)).writeto(
        tmp_path / "anonymous.weight.fits"
    )
    (ref,) = repo.ingest(
        [path], mapping=mapping, instrument="Mine", characterize=False, companions=weights
    )
    assert ref.data_id == {"instrument": "Mine", "visit": 7, "detector": 2}
    calexp = repo.get(ref)
    assert calexp.band == "i" and calexp.psf is None and np.all(calexp.variance == 4.0)
    with pytest.raises(InvalidParameterError, match="has no OBSID card"):
        repo.ingest([path], instrument="Mine", visit_key="OBSID", detector_key="CCDNUM")


def test_mappings_and_companions(tmp_path):
    json_file = tmp_path / "m.json"
    json_file.write_text(json.dumps({"a.fits": {"visit": 1, "detector": 2, "band": ""}}))
    assert load_mapping(json_file) == {"a.fits": {"visit": 1, "detector": 2}}
    json_file.write_text(json.dumps([{"file": "b.fits", "visit": 3, "colour": "red"}]))
    with pytest.raises(InvalidParameterError, match=r"m.json: .*unknown fields \['colour'\]"):
        load_mapping(json_file)
    image = tmp_path / "c4d_210101_ooi_r_v1.fits.fz"
    assert companion_path(image, "ooi=oow").name == "c4d_210101_oow_r_v1.fits.fz"
    assert companion_path(tmp_path / "img.fits", ".weight").name == "img.weight.fits"
    with pytest.raises(InvalidParameterError, match="does not match"):
        companion_path(image, "ood=oow")


def test_ingest_lsst_file_with_a_mapping(repo, tmp_path):
    hsc = data_path("lsst_afw_hsc", "HSC-0908120-056-small.fits")
    mapping = {hsc.name: {"visit": 908120, "detector": 56, "band": "i", "instrument": "HSC"}}
    (ref,) = repo.ingest([hsc], mapping=mapping, characterize=False)
    calexp = repo.get(ref)
    assert calexp.bbox == Box(100, 100, 200, 200) and calexp.visit_info.instrument == "HSC"
    patches = repo.patches_for(908120, 56)
    assert patches == []  # the field is far from the test sky map


# -- concurrency and crash safety ----------------------------------------------------------------


def _register_many(repo: Repository, worker: int) -> int:
    """Put 25 datasets, then race the other workers for one shared data ID."""
    for i in range(25):
        repo.put("task_metadata", {"task": f"w{worker}", "visit": i}, {"worker": worker, "i": i})
    try:
        repo.put("task_metadata", {"task": "shared"}, {"worker": worker})
    except DatasetExistsError:
        return 0
    return 1


def test_concurrent_registration_from_four_processes(repo):
    repo.query()  # the parent holds an open connection while the workers start
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(4) as pool:
        winners = pool.starmap(_register_many, [(repo, w) for w in range(4)])
    assert sum(winners) == 1
    assert len(repo.query("task_metadata")) == 101
    for worker in range(4):
        assert repo.get("task_metadata", {"task": f"w{worker}", "visit": 24})["worker"] == worker
    check = sqlite3.connect(repo.root / "registry.sqlite3")
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    check.close()


def _partial_writeto(hdul, name, **kwargs):
    with open(name, "wb") as stream:
        stream.write(b"SIMPLE  =                    T" + b" " * 500)
    raise RuntimeError("disk full")


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_interrupted_writes_leave_nothing(repo, exposures, monkeypatch):
    before = _files(repo.root)
    monkeypatch.setattr(fits.HDUList, "writeto", _partial_writeto)
    with pytest.raises(RuntimeError, match="disk full"):
        repo.put("calexp", calexp_id(1, 0), exposures[0])

    def partial_table(table, name, **kwargs):
        with open(name, "w") as stream:
            stream.write("# %ECSV 1.0\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(Table, "write", partial_table)
    with pytest.raises(KeyboardInterrupt):
        repo.put("dia_sources", {"visit": 1, "detector": 0}, Table({"a": [1]}))
    monkeypatch.undo()
    assert _files(repo.root) == before  # no final file, no temporary file
    assert repo.query() == repo.query("skymap")
    assert not repo.exists("calexp", calexp_id(1, 0))


def _broken_insert(*args, **kwargs):
    raise sqlite3.OperationalError("database is locked")


def test_failed_registration_removes_the_new_file(repo, monkeypatch):
    monkeypatch.setattr(type(repo.registry), "_insert_one", _broken_insert)
    with pytest.raises(sqlite3.OperationalError):
        repo.put("task_metadata", {"task": "x"}, {"a": 1})
    monkeypatch.undo()
    assert not repo.path_for("task_metadata", {"task": "x"}).exists()
    assert not repo.exists("task_metadata", {"task": "x"})


def _killed_put(root, exposure):
    """A driver killed while writing: the process ends abruptly inside the FITS write."""

    def die(hdul, name, **kwargs):
        with open(name, "wb") as stream:
            stream.write(b"SIMPLE  =                    T")
        os._exit(9)

    fits.HDUList.writeto = die
    Repository(root).put("calexp", calexp_id(1, 0), exposure)


def test_killed_process_leaves_no_dataset(repo, exposures):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    process = multiprocessing.get_context("fork").Process(
        target=_killed_put, args=(repo.root, exposures[0])
    )
    process.start()
    process.join(60)
    assert process.exitcode == 9
    assert not repo.exists("calexp", calexp_id(1, 0))
    assert not repo.path_for("calexp", calexp_id(1, 0)).exists()
    ref = repo.put("calexp", calexp_id(1, 0), exposures[0])  # the rerun succeeds
    assert repo.find("calexp", calexp_id(1, 0)) == ref


# -- command line --------------------------------------------------------------------------------


def test_cli_create_ingest_query(tmp_path, capsys, skymap, demo_files):
    sky_file = skymap.write(tmp_path / "sky.json")
    root = tmp_path / "repo"
    assert main(["repo", "create", str(root), "--skymap", str(sky_file)]) == 0
    assert "Created repository" in capsys.readouterr().out
    assert main(["ingest", str(root), *map(str, demo_files[:4])]) == 0
    assert "Ingested 4 calexp(s)" in capsys.readouterr().out
    assert main(["repo", "query", str(root), "calexp", "--where", "detector=1,2"]) == 0
    out = capsys.readouterr().out
    assert "visit=1 detector=1" in out and "visit=1 detector=2" in out and "2 dataset(s)" in out
    assert main(["repo", "query", str(root), "calexp", "-w", "visit=1", "--paths"]) == 0
    paths = capsys.readouterr().out.split()
    assert len(paths) == 4 and all(os.path.isfile(p) for p in paths)
    assert main(["repo", "info", str(root)]) == 0
    assert "calexp" in capsys.readouterr().out
    assert main(["ingest", str(root), str(demo_files[0])]) == 1
    assert "use --overwrite" in capsys.readouterr().err
    assert main(["ingest", str(root), str(demo_files[0]), "--skip-existing"]) == 0
    assert "skipped 1" in capsys.readouterr().out
    assert main(["repo", "query", str(root), "calexp", "--where", "tract"]) == 1
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["repo", "query", str(tmp_path / "nope")]) == 1
    assert "not a skydiff repository" in capsys.readouterr().err
    assert main(["repo", "create", str(root)]) == 1


def test_bad_ingests_leave_the_repository_consistent(repo, demo_files, tmp_path):
    """Missing and corrupt files, and a second ingest of the same visit/detector, are refused
    with the file named, and neither registry rows nor stray files are left behind."""
    repo.ingest(demo_files[:2])

    def snapshot():
        files = sorted(p.relative_to(repo.root) for p in repo.root.rglob("*.fits"))
        return files, sorted((r.dataset_type, r.path) for r in repo.query())

    before = snapshot()
    missing = tmp_path / "nowhere.fits"
    with pytest.raises(SkydiffError, match=r"nowhere\.fits"):
        repo.ingest([missing])
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(demo_files[2].read_bytes()[:4000])
    with pytest.raises(SkydiffError, match=r"corrupt\.fits"):
        repo.ingest([corrupt])
    duplicate = tmp_path / "copy.fits"
    duplicate.write_bytes(demo_files[0].read_bytes())
    with pytest.raises(DatasetExistsError, match=r"copy\.fits"):
        repo.ingest([duplicate])
    assert snapshot() == before
