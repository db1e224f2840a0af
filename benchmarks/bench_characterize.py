"""Time characterization of a simulated 4096 x 4096 exposure, and sep on the same image.

Steps timed (median of ``--repeat`` runs, after one warm-up run that also
loads numba's compiled code):

- background: ``SubtractBackgroundTask`` (128 px bins, clipped mean, Akima);
- detection + measurement: ``SourceDetectionTask`` and ``SourceMeasurementTask``;
- PSF model: ``StarSelectorTask`` and ``PsfDeterminerTask`` on the catalogue;
- the whole ``CharacterizeTask`` (no input PSF, two PSF iterations, variance scaling);
- sep: ``sep.Background`` + ``sep.extract`` (5 sigma, with the error plane) for comparison.

Usage: ``python benchmarks/bench_characterize.py [--size 4096] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import sep

from skydiff.background import SubtractBackgroundTask
from skydiff.characterize import CharacterizeTask, PsfDeterminerTask, StarSelectorTask
from skydiff.detection import SourceDetectionTask, SourceMeasurementTask
from skydiff.sim import Camera, SurveyConfig, simulate_exposure


def timed(function, repeat: int):
    """Median wall time of ``function()`` over ``repeat`` runs after a warm-up, and its result."""
    result = function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    config = SurveyConfig(seed=2).with_sky(star_density=24.0, star_mag_range=(17.0, 22.5))
    simulated = simulate_exposure(config, Camera.single(args.size), visit=1, detector=0)
    exposure = simulated.exposure
    print(f"simulated {args.size}x{args.size}: {int(simulated.truth['inside'].sum())} sources")

    background = SubtractBackgroundTask()
    t_background, bg = timed(lambda: background.run(exposure), args.repeat)
    subtracted = bg.exposure
    detection, measurement = SourceDetectionTask(), SourceMeasurementTask()

    def detect_and_measure():
        return measurement.run(subtracted, detection.run(subtracted)).catalog

    t_detect, catalog = timed(detect_and_measure, args.repeat)
    selector, determiner = StarSelectorTask(), PsfDeterminerTask()
    fwhm = subtracted.psf.fwhm(*subtracted.bbox.center)

    def fit_psf():
        selected = selector.run(catalog, subtracted.bbox, fwhm=fwhm).selected
        return determiner.run(subtracted, catalog[selected])

    t_psf, psf_result = timed(fit_psf, args.repeat)
    no_psf = exposure.replace(psf=None)
    t_all, _ = timed(lambda: CharacterizeTask().run(no_psf), max(1, args.repeat - 2))

    image = np.ascontiguousarray(exposure.image)
    error = np.sqrt(exposure.variance)

    def run_sep():
        sky = sep.Background(image)
        return sep.extract(image - sky.back(), 5.0, err=error)

    sep.set_extract_pixstack(10_000_000)
    t_sep, objects = timed(run_sep, args.repeat)

    rows = [
        ("background", t_background, 0.3),
        (f"detection + measurement ({len(catalog)} sources)", t_detect, 1.5),
        (f"PSF model ({psf_result.n_stars_used} stars)", t_psf, 3.0),
        ("CharacterizeTask, no input PSF", t_all, None),
        (f"sep Background + extract ({len(objects)} objects)", t_sep, None),
    ]
    print(f"\n{'step':<48} {'seconds':>8} {'target':>7}")
    for name, seconds, target in rows:
        print(f"{name:<48} {seconds:>8.3f} {'' if target is None else f'<= {target}':>7}")
    ratio = t_sep / (t_background + t_detect)
    print(
        f"\nsep (Background + extract) / skydiff (background + detection + measurement): "
        f"{ratio:.2f}"
    )


if __name__ == "__main__":
    main()
