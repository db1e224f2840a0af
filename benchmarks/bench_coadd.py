"""Time AssembleCoaddTask on N warps of size x size read block-wise from FITS, and its peak memory.

The warps are simulated and written to FITS in a temporary directory first:
a static sky of Gaussian stars, per-warp noise levels (weights differ by a
factor 2), a NO_DATA stripe and BAD columns in some warps, and a satellite
trail in one. The timed runs happen in a fresh process that opens the files
as :class:`~skydiff.io.ExposureHandle` (headers only) and coadds them with the
default configuration (MEANCLIP, artifact rejection on), so the task reads
each warp ``block_rows`` rows at a time; the timing covers opening the
handles and the coadd, not writing it. A warm-up coadd of a small box runs
first (numba caches, imports), then ``--repeat`` timed runs; the reported
peak RSS is that of the measuring process (``ru_maxrss``).

Usage: ``python benchmarks/bench_coadd.py [--size 4096] [--warps 10] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from skydiff.coadd import AssembleCoaddTask
from skydiff.image import Box, Exposure, Mask, MaskedImage, VisitInfo
from skydiff.io import ExposureHandle, write_exposure
from skydiff.psf import CoaddPsf, CoaddPsfInput, GaussianPsf

ORIGIN = (12000, 8000)  # tract pixel of the warps' first pixel


def tract_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [15000.5, 15000.5]
    wcs.wcs.cd = np.diag([-0.2, 0.2]) / 3600.0
    return wcs


def static_sky(size: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian stars (FWHM 4 px) with a power-law flux distribution, in nJy."""
    sky = np.zeros((size, size), np.float32)
    n_stars = size * size // 5000
    y, x = rng.integers(8, size - 8, (2, n_stars))
    flux = (1e3 * rng.pareto(1.5, n_stars) + 300.0).astype(np.float32)
    half = 7
    grid = np.arange(-half, half + 1)
    stamp = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 1.7**2)).astype(np.float32)
    stamp /= stamp.sum()
    for yy, xx, f in zip(y, x, flux, strict=True):
        sky[yy - half : yy + half + 1, xx - half : xx + half + 1] += f * stamp
    return sky


def simulate(size: int, n_warps: int, directory: Path) -> None:
    rng = np.random.default_rng(7)
    wcs = tract_wcs()
    bbox = Box(*ORIGIN, size, size)
    sky = static_sky(size, rng)
    planes = Mask.zeros(Box(0, 0, 1, 1)).planes
    for visit in range(n_warps):
        sigma = rng.uniform(20.0, 28.0)
        image = sky + sigma * rng.standard_normal((size, size), dtype=np.float32)
        variance = np.full((size, size), sigma**2, np.float32)
        mask = np.zeros((size, size), np.int32)
        if visit % 3 == 0:  # a chip gap
            gap = slice(size // 3 + 40 * visit, size // 3 + 40 * visit + 60)
            image[:, gap], variance[:, gap] = np.nan, np.inf
            mask[:, gap] = 1 << planes["NO_DATA"]
        mask[:, rng.integers(0, size, 3)] |= 1 << planes["BAD"]
        if visit == 1:  # a satellite trail across the warp
            rows = np.arange(size)
            for width in range(-2, 3):
                cols = np.clip(rows // 2 + 100 + width, 0, size - 1)
                image[rows, cols] += 2000.0
        masked = MaskedImage(image, Mask(mask, bbox=bbox, planes=planes), variance, bbox=bbox)
        psf = CoaddPsf([CoaddPsfInput(GaussianPsf(4.0), wcs, bbox, 1.0, visit, 0)], wcs)
        warp = Exposure(
            masked, wcs=wcs, psf=psf, band="r", units="nJy", visit_info=VisitInfo(visit=visit)
        )
        write_exposure(warp, directory / f"warp_{visit:03d}.fits")
    print(f"wrote {n_warps} warps of {size}x{size} to {directory}")


def measure(directory: Path, repeat: int) -> None:
    paths = sorted(directory.glob("warp_*.fits"))
    task = AssembleCoaddTask()
    first = ExposureHandle(paths[0]).bbox
    task.run([ExposureHandle(p) for p in paths], bbox=Box(first.x0, first.y0, 512, 300))
    times, cpu, result = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), os.times()
        result = task.run([ExposureHandle(p) for p in paths])
        end_cpu = os.times()
        times.append(time.perf_counter() - start)
        cpu.append(end_cpu.user - start_cpu.user + end_cpu.system - start_cpu.system)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    box = result.coadd.bbox
    stages = result.metadata.timings
    values = result.metadata.values
    rows = [
        (
            f"wall time, median of {repeat} (best)",
            f"{statistics.median(times):.2f} s ({min(times):.2f} s)",
            "<= 4 s",
        ),
        ("CPU time (user + system), median", f"{statistics.median(cpu):.2f} s", ""),
        ("peak RSS of the process", f"{peak_gb:.2f} GB", "<= 1.5 GB"),
        *(
            (f"stage `{k}`", f"{stages.get(k, 0.0):.2f} s", "")
            for k in ("weights", "read", "stack")
        ),
        ("values sigma-clipped", f"{100 * values['fraction_clipped']:.2f} %", ""),
        (
            "artifact values (pixels) excluded",
            f"{values['n_artifact_values']} ({values['n_artifact_pixels']})",
            "",
        ),
    ]
    print()
    print(f"| coadd of {len(paths)} warps of {box.width}x{box.height}, MEANCLIP | value | target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--warps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.repeat)
        return
    with tempfile.TemporaryDirectory() as name:
        simulate(args.size, args.warps, Path(name))
        subprocess.run(
            [sys.executable, __file__, "--measure", name, "--repeat", str(args.repeat)], check=True
        )


if __name__ == "__main__":
    main()
