"""Time Alard-Lupton subtraction of a simulated 4096 x 4096 pair, and its peak memory.

The pair is two visits of one simulated field on the same pixel grid (no
pointing offsets) with different seeing, about 3000 detectable stars.
Timed (median of ``--repeat`` after a warm-up): ``AlardLuptonSubtractTask``
in ``convolveTemplate`` mode with spatial kernel order 1, background order
2, decorrelation, then ``DetectAndMeasureTask`` on the difference; FITS I/O
excluded. Peak RSS is that of the whole process (``resource``), which also
holds the two inputs.

Usage: ``python benchmarks/bench_subtract.py [--size 4096] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from skydiff.background import SubtractBackgroundTask
from skydiff.detection import SourceDetectionConfig, SourceDetectionTask, SourceMeasurementTask
from skydiff.diffim import AlardLuptonSubtractTask, DetectAndMeasureTask
from skydiff.sim import Camera, SurveyConfig, make_truth, simulate_exposure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    config = SurveyConfig(seed=11, n_visits=2, pointing_offset=0.0, rotation_scatter=0.0,
                          seeing_range=(0.6, 1.0)).with_sky(
        star_density=24.0, star_mag_range=(17.0, 22.5))
    camera = Camera.single(args.size)
    truth = make_truth(config, camera)
    pair = [simulate_exposure(config, camera, visit=v, detector=0, truth=truth).exposure
            for v in (1, 2)]
    pair.sort(key=lambda e: e.psf.fwhm(*e.bbox.center))
    template, science = (SubtractBackgroundTask().run(e).exposure for e in pair)
    detections = SourceDetectionTask(SourceDetectionConfig(threshold=10.0)).run(science)
    sources = SourceMeasurementTask().run(science, detections).catalog
    print(f"{args.size}x{args.size} pair: template FWHM "
          f"{template.psf.fwhm(*template.bbox.center):.2f} px, science "
          f"{science.psf.fwhm(*science.bbox.center):.2f} px, {len(sources)} sources at 10 sigma")

    subtract, detect = AlardLuptonSubtractTask(), DetectAndMeasureTask()

    def run():
        result = subtract.run(template, science, sources)
        return result, detect.run(result.difference).dia_sources

    run()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result, dia = run()
        times.append(time.perf_counter() - start)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"subtraction + decorrelation + DIA detection: median {statistics.median(times):.2f} s "
          f"(best {min(times):.2f} s), target <= 3 s")
    print(f"peak RSS of the process: {peak_gb:.2f} GB, target <= 2 GB")
    print("stages:", {k: round(v, 3) for k, v in result.metadata.timings.items()})
    print(f"kernel sum {result.metadata['kernel_sum']:.4f}, {result.metadata['n_stamps_used']} "
          f"stamps, residual std {result.metadata['residual_std']:.3f}, {len(dia)} DIA sources")


if __name__ == "__main__":
    main()
