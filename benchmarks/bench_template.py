"""Time GetTemplateTask: a 4096 x 4096 template cut from 4 coadd patches on disk.

Four 3400 x 3400 patches (LSST sizes: 0.2" pixels, 200 px borders) of one tract are
written as skydiff FITS files; the science exposure is a 4096 x 4096 grid
rotated by 30 degrees whose footprint straddles all four. Timed (median of
``--repeat`` after a warm-up, in a fresh process): ``GetTemplateTask.run_on_coadds``
with lazy file handles (only the sub-boxes needed are read), Lanczos-5 as in
LSST, including the reads. Peak RSS of that process is reported too.

Usage: ``python benchmarks/bench_template.py [--repeat 3] [--kernel lanczos5]``
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

import numpy as np
from astropy.wcs import WCS

from skydiff.coadd import GetTemplateConfig, GetTemplateTask
from skydiff.image import Box, Exposure, MaskedImage
from skydiff.io import ExposureHandle, write_exposure
from skydiff.psf import GaussianPsf
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

RA, DEC, SIZE = 150.0, 2.0, 4096


def skymap() -> DiscreteSkyMap:
    config = SkyMapConfig(patch_inner_dimensions=(3000, 3000), patch_border=200)
    return DiscreteSkyMap.from_centers([RA], [DEC], [0.1], config=config)


def science_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [RA, DEC]
    wcs.wcs.crpix = [SIZE / 2 + 0.5, SIZE / 2 + 0.5]
    angle = np.radians(30.0)
    c, s = np.cos(angle), np.sin(angle)
    wcs.wcs.cd = 0.2 / 3600 * np.array([[-c, s], [s, c]])
    return wcs


def write_coadds(directory: Path) -> None:
    """The patches around the tract centre that a rotated 4096^2 science box touches."""
    tract = skymap()[0]
    rng = np.random.default_rng(1)
    cx, cy = tract.sky_to_pixel(RA, DEC)
    found = tract.find_patches(*_science_outline())
    for patch in found:
        box = patch.outer_bbox
        masked = MaskedImage.zeros(box)
        masked.image[...] = rng.normal(0.0, 1.0, box.shape).astype(np.float32)
        masked.variance[...] = 1.0
        coadd = Exposure(masked, wcs=tract.wcs, psf=GaussianPsf(4.0), units="nJy", band="r")
        write_exposure(coadd, directory / f"coadd_{patch.sequential_index}.fits")
    shape = found[0].outer_bbox.shape
    print(f"{len(found)} patches of {shape} around tract pixel ({cx:.0f}, {cy:.0f})")


def _science_outline():
    x = np.array([0, SIZE - 1, SIZE - 1, 0], float)
    y = np.array([0, 0, SIZE - 1, SIZE - 1], float)
    return science_wcs().all_pix2world(x, y, 0)


def measure(directory: Path, repeat: int, kernel: str) -> None:
    handles = [ExposureHandle(p) for p in sorted(directory.glob("coadd_*.fits"))]
    config = GetTemplateConfig().with_values({"warper": {"kernel": kernel}})
    task = GetTemplateTask(config)
    bbox, wcs = Box(0, 0, SIZE, SIZE), science_wcs()
    task.run_on_coadds(handles, bbox, wcs)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = task.run_on_coadds(handles, bbox, wcs)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    t = result.metadata.timings
    print("| template | patches | kernel | median | best | read | warp | combine | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {SIZE} x {SIZE} (+20 px border) | {result.metadata['n_patches']} | {kernel} | "
        f"{statistics.median(times):.2f} s | {min(times):.2f} s | {t['read']:.2f} s | "
        f"{t['warp']:.2f} s | {t['combine']:.2f} s | {peak:.2f} GB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kernel", default="lanczos5")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.repeat, args.kernel)
        return
    with tempfile.TemporaryDirectory() as name:
        write_coadds(Path(name))
        command = [sys.executable, __file__, "--measure", name, "--repeat", str(args.repeat)]
        subprocess.run([*command, "--kernel", args.kernel], check=True)


if __name__ == "__main__":
    main()
