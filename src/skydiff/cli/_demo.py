"""``skydiff demo``: simulate a small survey, run the whole pipeline on it, score the result."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="simulate a small survey, run the pipeline on it and score it against the truth",
        description="Simulate a survey of a 2x2-detector camera (transients, variables, "
        "saturated stars, a varying PSF), write the calibrated exposures and truth, create a "
        "repository, ingest them, run sky frames, sky correction, warps, background "
        "matching, coadds, templates, subtraction and DIA detection, and report how many "
        "injected transients were recovered, the false detections and the time of each "
        "step, with PNG figures and a JSON summary.",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("skydiff-demo"),
        help="output directory (default: ./skydiff-demo)",
    )
    parser.add_argument("--visits", type=int, default=6, help="number of visits (default: 6)")
    parser.add_argument(
        "--simulate-only", action="store_true", help="only write the simulated survey"
    )
    parser.add_argument(
        "--executor",
        choices=["inprocess", "processes", "dask"],
        default="processes",
        help="where the pipeline's quanta run (default: local processes)",
    )
    parser.add_argument(
        "--size", type=int, default=512, help="detector width and height in pixels (default: 512)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # imported here: the simulator (scipy.signal, scipy.special) is not needed by other commands
    from ..sim import Camera, SurveyConfig, simulate_survey, write_survey

    config = SurveyConfig(n_visits=args.visits, seed=args.seed).with_sky(
        star_density=60.0, star_mag_range=(16.0, 23.0)
    )
    camera = Camera.small(width=args.size, height=args.size)
    start = time.perf_counter()
    survey = simulate_survey(config, camera)
    paths = write_survey(survey, args.output, overwrite=args.overwrite)
    elapsed = time.perf_counter() - start
    truth = survey.truth
    print(
        f"Simulated {config.n_visits} visits x {camera.n_detectors} detectors of "
        f"{camera.width}x{camera.height} px (seed {config.seed}) in {elapsed:.1f} s."
    )
    print(
        f"Sky truth: {len(truth.sources)} stars and galaxies, {len(truth.transients)} "
        f"transients, {len(truth.variables)} variables."
    )
    print(f"\n{'visit':>5} {'seeing':>7} {'sky':>7} {'zp':>6}  files")
    for row in truth.visit_table():
        visit = int(row["visit"])
        names = sorted(p.name for p in paths if p.name.startswith(f"calexp_v{visit}_"))
        print(
            f'{visit:>5} {row["seeing"]:>6.2f}" {row["sky_level"]:>7.1f} '
            f"{row['zero_point']:>6.2f}  {', '.join(names)}"
        )
    n_fits = sum(p.suffix == ".fits" for p in paths)
    print(
        f"\nWrote {n_fits} calexps and {len(paths) - n_fits} truth files to {args.output.resolve()}"
    )
    bright = np.sum(truth.transient_flux.max(axis=1) > 0)
    print(f"{bright} transients are on during the survey; see truth_transients.ecsv.")
    if args.simulate_only:
        return 0
    return _run_pipeline(args, survey, paths)


def _run_pipeline(args: argparse.Namespace, survey, paths) -> int:
    from ..pipeline import STEPS, Pipeline, PipelineConfig, Repository, make_executor
    from ..pipeline._demo import score_transients, write_figures
    from ..pipeline._steps import visit_roles
    from ..skymap import DiscreteSkyMap, SkyMapConfig

    start = time.perf_counter()
    config = survey.config
    skymap = DiscreteSkyMap.from_centers(
        [config.ra],
        [config.dec],
        [0.05],
        config=SkyMapConfig(patch_inner_dimensions=(1000, 1000), patch_border=100),
    )
    repo_root = args.output / "repo"
    if repo_root.exists() and args.overwrite:
        import shutil

        shutil.rmtree(repo_root)
    repo = Repository.create(repo_root, skymap=skymap)
    # the calexps keep their sky: the pipeline's sky_frame and sky_correction steps model it
    # (LSST SkyCorrectionTask), and warps and science images are corrected with that model
    repo.ingest(sorted(p for p in paths if p.suffix == ".fits"), characterize=False)
    print(
        f"\nRepository {repo_root}: {len(repo.query('calexp'))} calexps ingested "
        f"in {time.perf_counter() - start:.1f} s."
    )
    pipeline_config = PipelineConfig(steps=STEPS)
    roles = visit_roles(repo, pipeline_config, {})
    print(
        f"Template visits (best seeing): {sorted(roles.template)}; "
        f"science visits: {sorted(roles.science)}."
    )
    with make_executor(args.executor) as executor:
        summary = Pipeline(repo, pipeline_config).run(executor=executor)
    print(summary.table())
    score = score_transients(repo, survey.truth, sorted(roles.science), sorted(roles.template))
    print("\nTransients in the science visits (expected S/N from the difference noise):")
    print(score.recovery())
    n_found = int(sum(score.candidates["recovered"]))
    print(
        f"Recovered {n_found} of {len(score.candidates)} transient epochs; {score.n_dia} DIA "
        f"sources, {score.n_clean} without pixel flags, of which {score.n_false} match no "
        "transient or variable star."
    )
    report = {
        "template_visits": sorted(roles.template),
        "science_visits": sorted(roles.science),
        "score": score.to_dict(),
        "steps": {
            step: {
                "seconds": seconds,
                **{s: summary.count(s, step) for s in ("done", "skipped", "no_work", "failed")},
            }
            for step, seconds in summary.step_seconds.items()
        },
    }
    report_path = args.output / "demo_summary.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{score.n_false / max(score.n_differences, 1):.2f} false detections per detector "
        f"per visit; summary in {report_path}."
    )
    try:
        figures = write_figures(repo, score, args.output / "figures")
        print("Figures: " + ", ".join(str(p) for p in figures))
    except ImportError:
        print("(matplotlib is not installed: no figures)")
    print(f"Total {time.perf_counter() - start:.1f} s for the pipeline part.")
    return 1 if summary.failures else 0
