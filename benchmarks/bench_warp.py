"""Time warping a 4096 x 4096 TAN-SIP exposure onto a rotated TAN patch, against reproject.

The source is a simulated calibrated exposure (sky noise, a few thousand
Gaussian stars, an EDGE border and scattered SAT/CR bits in the mask) with a
TAN-SIP WCS; the destination is a 4096 x 4096 TAN patch of about the same
pixel scale, rotated by 30 degrees and offset, as a tract patch would be.
Timed (median of ``--repeat`` after a warm-up that also loads the compiled
kernels): ``skydiff.warp.warp_exposure`` with Lanczos-3 on image, variance and
mask. For comparison, ``reproject.reproject_interp`` (bilinear, image only,
exact transform at every pixel) runs once on the same image, if installed.

The peak memory reported is the growth of the process's resident set during
one warp (the kernel's ``VmHWM`` is reset first, where Linux allows it),
besides the inputs and outputs themselves.

Usage: ``python benchmarks/bench_warp.py [--size 4096] [--repeat 5] [--no-reproject]``
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
from pathlib import Path

import numpy as np
from astropy.wcs import WCS, Sip

from skydiff.image import Box, Exposure, MaskedImage
from skydiff.warp import warp_exposure


def make_wcs(size: int, *, rotation: float, sip: bool, offset: float = 0.0) -> WCS:
    """TAN(-SIP) WCS with 0.2 arcsec pixels centred on the box of ``size``."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crpix = [size / 2 + 1 + offset, size / 2 + 1 - offset / 2]
    wcs.wcs.crval = [150.0, 2.0]
    c, s = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    wcs.wcs.cd = 0.2 / 3600 * np.array([[-c, s], [s, c]])
    if sip:
        a, b = np.zeros((4, 4)), np.zeros((4, 4))
        a[2, 0], a[1, 1], a[0, 2], a[3, 0] = 2e-7, -1e-7, 1.5e-7, 2e-11
        b[0, 2], b[1, 1], b[2, 0], b[0, 3] = 1.5e-7, 1e-7, -1e-7, 1e-11
        wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


def make_exposure(size: int, seed: int = 3) -> Exposure:
    """Sky noise and stars on a TAN-SIP detector, with EDGE, SAT and CR mask bits."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((size, size), dtype=np.float32)
    image *= 10.0
    n_stars = size * size // 5000
    xs, ys = rng.uniform(0, size, n_stars), rng.uniform(0, size, n_stars)
    flux = 10 ** rng.uniform(2.5, 5.0, n_stars)
    offsets = np.arange(-8, 9)
    for x, y, f in zip(xs, ys, flux, strict=True):
        ix, iy = int(x), int(y)
        px, py = np.clip(ix + offsets, 0, size - 1), np.clip(iy + offsets, 0, size - 1)
        gx = np.exp(-0.5 * ((px - x) / 1.7) ** 2)
        gy = np.exp(-0.5 * ((py - y) / 1.7) ** 2)
        image[np.ix_(py, px)] += (f / (2 * np.pi * 1.7**2) * np.outer(gy, gx)).astype(np.float32)
    variance = np.full((size, size), 100.0, np.float32)
    masked = MaskedImage(image, None, variance)
    edge = np.zeros((size, size), bool)
    edge[:16, :] = edge[-16:, :] = edge[:, :16] = edge[:, -16:] = True
    masked.mask.set("EDGE", edge)
    for plane in ("SAT", "CR"):
        bits = np.zeros((size, size), bool)
        bits[rng.integers(0, size, 2000), rng.integers(0, size, 2000)] = True
        masked.mask.set(plane, bits)
    return Exposure(masked, wcs=make_wcs(size, rotation=0.0, sip=True))


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def time_warp(
    exposure: Exposure, wcs: WCS, box: Box, repeat: int
) -> tuple[list[float], list[float], float]:
    """Wall and CPU times of ``repeat`` warps after a warm-up, and the peak RSS growth of one."""
    warp_exposure(exposure, wcs, box)
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        warp_exposure(exposure, wcs, box)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    resettable = _reset_peak()
    before = _current_rss_mb()
    warp_exposure(exposure, wcs, box)
    growth = _peak_rss_mb() - before if resettable else math.nan
    return times, cpu, growth


def time_reproject(exposure: Exposure, wcs: WCS, box: Box) -> float:
    from reproject import reproject_interp

    start = time.perf_counter()
    reproject_interp((exposure.image, exposure.wcs), wcs, shape_out=box.shape, order="bilinear")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-reproject", action="store_true")
    args = parser.parse_args()
    import numba

    exposure = make_exposure(args.size)
    box = Box(0, 0, args.size, args.size)
    wcs = make_wcs(args.size, rotation=30.0, sip=False, offset=args.size / 10)
    times, cpu, growth = time_warp(exposure, wcs, box, args.repeat)
    warped = warp_exposure(exposure, wcs, box)
    covered = 1.0 - warped.mask.get("NO_DATA").mean()
    del warped
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    median = statistics.median(times)
    rows = [
        ("skydiff warp_exposure, Lanczos-3, image+variance+mask", f"{median:.2f}"),
    ]
    ratio = None
    if not args.no_reproject:
        try:
            seconds = time_reproject(exposure, wcs, box)
        except ImportError:
            print("reproject is not installed: comparison skipped")
        else:
            ratio = seconds / median
            rows.append(("reproject.reproject_interp, bilinear, image only", f"{seconds:.2f}"))
    print(
        f"{args.size}x{args.size} TAN-SIP -> TAN rotated 30 deg, {covered:.0%} of the "
        f"destination covered, {numba.get_num_threads()} threads"
    )
    print()
    print("| task | wall time (s) |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    print(
        f"warp: median {median:.2f} s, best {min(times):.2f} s of {len(times)} "
        f"(CPU {statistics.median(cpu):.2f} s); target <= 1.5 s"
    )
    if ratio is not None:
        print(f"reproject / skydiff: {ratio:.1f}x (expected >= 10x)")
    outputs_mb = 3 * exposure.image.nbytes / 1024**2
    print(
        f"peak RSS growth during one warp: {growth:.0f} MB (its {outputs_mb:.0f} MB of outputs "
        f"included); process peak before reproject: {process_peak:.0f} MB "
        f"(inputs {outputs_mb:.0f} MB, imports, simulation)"
    )


if __name__ == "__main__":
    main()
