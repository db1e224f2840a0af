"""``skydiff demo``: simulate a small survey and write it as FITS files."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="simulate a small survey and write its calexps and truth",
        description="Simulate a survey of a 2x2-detector camera (transients, variables, "
        "saturated stars, a varying PSF) and write the calibrated exposures as "
        "skydiff FITS files with their truth tables.",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("skydiff-demo"),
        help="output directory (default: ./skydiff-demo)",
    )
    parser.add_argument("--visits", type=int, default=4, help="number of visits (default: 4)")
    parser.add_argument(
        "--size", type=int, default=512, help="detector width and height in pixels (default: 512)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # imported here: the simulator (scipy.signal, scipy.special) is not needed by other commands
    from ..sim import Camera, SurveyConfig, simulate_survey, write_survey

    config = SurveyConfig(n_visits=args.visits, seed=args.seed)
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
    return 0
