"""Throughput of the whole pipeline on simulated 4096 x 4096 detectors, in Mpix/s of science.

Simulates ``--template-visits`` template visits and ``--science-visits``
science visits of one 4096 x 4096 detector (about 3000 stars), subtracts
each calexp's background, ingests them into a fresh repository (LSST-sized
patches: 3000 px + 200 px borders), and runs warp -> coadd -> template ->
subtract (with DIA detection) on local processes. Reports the wall time of
each step and science megapixels differenced per second of pipeline time.

Usage: ``python benchmarks/bench_throughput.py [--template-visits 2] [--science-visits 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from skydiff.background import SubtractBackgroundTask
from skydiff.io import write_exposure
from skydiff.pipeline import Pipeline, PipelineConfig, Repository, make_executor
from skydiff.sim import Camera, SurveyConfig, simulate_survey
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template-visits", type=int, default=2)
    parser.add_argument("--science-visits", type=int, default=2)
    args = parser.parse_args()
    n_visits = args.template_visits + args.science_visits
    config = SurveyConfig(n_visits=n_visits, seed=3, seeing_range=(0.6, 0.9))
    camera = Camera.single(4096)
    survey = simulate_survey(config, camera)
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        paths = []
        for visit in survey.visits:
            exposure = SubtractBackgroundTask().run(survey.simulate(visit, 0).exposure).exposure
            paths.append(write_exposure(exposure, root / f"calexp_v{visit}_d0.fits"))
        skymap = DiscreteSkyMap.from_centers(
            [config.ra], [config.dec], [0.15], config=SkyMapConfig()
        )
        repo = Repository.create(root / "repo", skymap=skymap)
        repo.ingest(paths, characterize=False)
        visits = sorted(survey.visits)
        pipeline = PipelineConfig(
            template_visits=tuple(visits[: args.template_visits]),
            science_visits=tuple(visits[args.template_visits :]),
        )
        start = time.perf_counter()
        with make_executor("processes") as executor:
            summary = Pipeline(repo, pipeline).run(executor=executor, progress=False)
        total = time.perf_counter() - start
    science_mpix = args.science_visits * camera.width * camera.height / 1e6
    print(summary.table())
    print("\n| science Mpix | pipeline wall time | throughput |\n|---|---|---|")
    print(f"| {science_mpix:.1f} | {total:.1f} s | {science_mpix / total:.2f} Mpix/s |")


if __name__ == "__main__":
    main()
