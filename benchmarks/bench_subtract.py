"""Time Alard-Lupton subtraction of a simulated 4096 x 4096 pair, and its peak memory.

The pair is two visits of one simulated field on the same pixel grid (no
pointing offsets) with different seeing, about 3000 detectable stars.
Timed (median of ``--repeat`` after a warm-up): ``AlardLuptonSubtractTask``
in ``convolveTemplate`` mode with spatial kernel order 1, background order
2, decorrelation, then ``DetectAndMeasureTask`` on the difference; FITS I/O
excluded. The pair is simulated and written to FITS first; the timed runs
happen in a fresh process that reads it, so the reported peak RSS is that of
subtraction and detection (with the two inputs, the kernel-source catalogue
and the imports), not of the simulation.

Usage: ``python benchmarks/bench_subtract.py [--size 4096] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skydiff.background import SubtractBackgroundTask
from skydiff.detection import SourceDetectionConfig, SourceDetectionTask, SourceMeasurementTask
from skydiff.diffim import AlardLuptonSubtractTask, DetectAndMeasureTask
from skydiff.io import read_exposure, write_exposure
from skydiff.sim import Camera, SurveyConfig, make_truth, simulate_exposure


def simulate(size: int, directory: Path) -> None:
    """Write a simulated pair (background-subtracted) and its 10-sigma catalogue."""
    config = SurveyConfig(
        seed=11, n_visits=2, pointing_offset=0.0, rotation_scatter=0.0, seeing_range=(0.6, 1.0)
    ).with_sky(star_density=24.0, star_mag_range=(17.0, 22.5))
    camera = Camera.single(size)
    truth = make_truth(config, camera)
    pair = [
        simulate_exposure(config, camera, visit=v, detector=0, truth=truth).exposure for v in (1, 2)
    ]
    pair.sort(key=lambda e: e.psf.fwhm(*e.bbox.center))
    template, science = (SubtractBackgroundTask().run(e).exposure for e in pair)
    detections = SourceDetectionTask(SourceDetectionConfig(threshold=10.0)).run(science)
    sources = SourceMeasurementTask().run(science, detections).catalog
    write_exposure(template, directory / "template.fits")
    write_exposure(science, directory / "science.fits")
    sources.write(directory / "sources.ecsv")
    print(
        f"{size}x{size} pair: template FWHM {template.psf.fwhm(*template.bbox.center):.2f} "
        f"px, science {science.psf.fwhm(*science.bbox.center):.2f} px, {len(sources)} "
        "sources at 10 sigma"
    )


def measure(directory: Path, repeat: int) -> None:
    """Time subtraction + DIA detection on the written pair; report peak RSS."""
    from astropy.table import Table

    template = read_exposure(directory / "template.fits")
    science = read_exposure(directory / "science.fits")
    sources = Table.read(directory / "sources.ecsv")
    subtract, detect = AlardLuptonSubtractTask(), DetectAndMeasureTask()

    def run():
        result = subtract.run(template, science, sources)
        return result, detect.run(result.difference).dia_sources

    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result, dia = run()
        times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"subtraction + decorrelation + DIA detection: median {statistics.median(times):.2f} s "
        f"(best {min(times):.2f} s), target <= 3 s"
    )
    print(f"peak RSS of the measuring process: {peak_gb:.2f} GB, target <= 2 GB")
    print("stages:", {k: round(v, 3) for k, v in result.metadata.timings.items()})
    print(
        f"kernel sum {result.metadata['kernel_sum']:.4f}, {result.metadata['n_stamps_used']} "
        f"stamps, residual std {result.metadata['residual_std']:.3f}, {len(dia)} DIA sources"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.repeat)
        return
    with tempfile.TemporaryDirectory() as name:
        simulate(args.size, Path(name))
        subprocess.run(
            [sys.executable, __file__, "--measure", name, "--repeat", str(args.repeat)], check=True
        )


if __name__ == "__main__":
    main()
