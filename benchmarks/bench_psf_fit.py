"""Time the PSF model fit on a simulated 4096 x 4096 exposure.

Simulates one calexp with the default sky (~3000 stars, ~1000 galaxies),
subtracts its background, picks the unsaturated, isolated stars above an
S/N from the truth table (a few hundred) and times
:class:`skydiff.characterize.PsfDeterminerTask` (stamps and fit), best and
median of several runs, with its accuracy against the true PSF.

Usage: ``python benchmarks/bench_psf_fit.py [--size 4096] [--repeat 5] [--min-snr 10]
[--star-density 16]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.spatial import cKDTree

from skydiff.background import SubtractBackgroundTask
from skydiff.characterize import PsfDeterminerTask
from skydiff.sim import Camera, SurveyConfig, simulate_exposure


def select_stars(truth, *, min_snr: float, sky: float, gain: float, radius: float = 10.0):
    """Unsaturated stars on the image, S/N above ``min_snr``, no source within ``radius``."""
    xy = np.column_stack([truth["x"], truth["y"]])
    distance = cKDTree(xy).query(xy, k=2)[0][:, 1]
    flux = np.asarray(truth["flux_counts"])
    snr = flux / np.sqrt(flux / gain + 150.0 * sky / gain)
    keep = (truth["kind"] == "star") & ~truth["is_saturated"] & truth["inside"]
    return truth[keep & (distance > radius) & (snr > min_snr)]


def _centre_crop(kernel: np.ndarray, size: int) -> np.ndarray:
    start = (kernel.shape[0] - size) // 2
    crop = kernel[start : start + size, start : start + size]
    return crop / crop.sum()


def worst_error(exposure, psf) -> float:
    """Largest |model - truth| / peak at the centre and the four corners (inset by a stamp)."""
    box, half = exposure.bbox, psf.kernel_size // 2
    xs, ys = (box.x0 + half, box.x_end - 1 - half), (box.y0 + half, box.y_end - 1 - half)
    worst = 0.0
    for x, y in [box.center] + [(x, y) for x in xs for y in ys]:
        model, truth = psf.kernel_image(x, y), exposure.psf.kernel_image(x, y)
        size = min(len(model), len(truth))
        model, truth = _centre_crop(model, size), _centre_crop(truth, size)
        worst = max(worst, float(np.abs(model - truth).max() / truth.max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--min-snr", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--star-density", type=float, default=16.0, help="stars per arcmin^2")
    args = parser.parse_args()

    start = time.perf_counter()
    config = SurveyConfig(seed=args.seed).with_sky(star_density=args.star_density)
    sim = simulate_exposure(config, Camera.single(args.size))
    exposure = SubtractBackgroundTask().run(sim.exposure).exposure
    meta = exposure.metadata
    stars = select_stars(sim.truth, min_snr=args.min_snr, sky=meta["SKYLEVEL"], gain=meta["GAIN"])
    print(
        f"simulated {args.size}^2 with {len(sim.truth)} sources in "
        f"{time.perf_counter() - start:.1f} s; {len(stars)} candidate stars"
    )

    task = PsfDeterminerTask()
    times, stamp_times, fit_times = [], [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = task.run(exposure, stars)
        times.append(time.perf_counter() - start)
        stamp_times.append(result.metadata.timings["stamps"])
        fit_times.append(result.metadata.timings["fit"])
    values = result.metadata.values
    print(
        f"stars: {values['n_candidates']} stamps, {result.n_stars_used} used, "
        f"{result.n_reserved} held out, {result.n_rejected} rejected"
    )
    print(f"chi2/dof: fit {result.chi2_dof_fit:.3f}, held out {result.chi2_dof_holdout:.3f}")
    worst = 100 * worst_error(exposure, result.psf)
    print(f"worst |model - truth| / peak (centre, corners): {worst:.2f}%")
    for name, series in (("stamps", stamp_times), ("fit", fit_times), ("total", times)):
        print(f"{name:>7}: best {min(series):.3f} s, median {statistics.median(series):.3f} s")


if __name__ == "__main__":
    main()
