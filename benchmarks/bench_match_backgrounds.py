"""Time MatchBackgroundsTask on 10 visits over 3 x 3 patches of 4000 x 4000 pixels, and its memory.

The warps are not written to disk: 90 warps of 4000^2 pixels would take ~18 GB.
Each is a :class:`SyntheticWarp` handle whose ``get(bbox)`` synthesises the
pixels of the box asked for, deterministically: a per-visit sky level and
gradient plus Gaussian noise (sigma 20-30 nJy) read from a fixed 4096 x 4096
bank of normal deviates at a per-visit offset (periodic in tract pixels, so
overlapping patches of a visit agree and a block read equals the same rows of
a full read). Every third visit has a 150-pixel chip gap (NO_DATA) and one
visit covers only the left third of the region. Because nothing is read from
disk the timings measure the task (binning, fits, evaluation of the models)
plus the synthesis, which costs about what reading uncompressed FITS from the
page cache does.

The task runs with ``build_matched_warps=False`` (90 matched warps of 4000^2
would need ~17 GB); the matched warps are then built one at a time from the
returned handles, into one reused buffer per patch (as a writer would, one
warp at a time), and that pass is timed too. A warm-up on a small region runs first (numba
caches, imports). Peak RSS is that of this process (``ru_maxrss``).

Usage: ``python benchmarks/bench_match_backgrounds.py [--patch 4000] [--visits 10]``
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from skydiff.coadd import MatchBackgroundsConfig, MatchBackgroundsTask
from skydiff.image import Box, Exposure, Mask, MaskedImage, VisitInfo
from skydiff.skymap import DiscreteSkyMap, SkyMapConfig

BANK_SIZE = 4096
BORDER = 100


class SyntheticWarp:
    """A warp handle whose pixels are synthesised on each ``get`` (see the module notes)."""

    def __init__(self, visit: int, bbox: Box, tract, bank: np.ndarray, sky: dict):
        self.bbox, self.wcs, self.psf = bbox, tract.wcs, None
        self.band, self.physical_filter, self.units = "r", "", "nJy"
        self.visit_info = VisitInfo(visit=visit)
        self.mask_planes = Mask.zeros(Box(0, 0, 1, 1)).planes
        self._bank, self._sky = bank, sky

    def describe(self) -> str:
        return f"synthetic visit={self.visit_info.visit} {self.bbox}"

    def get(self, bbox: Box | None = None, *, out: MaskedImage | None = None) -> Exposure:
        bbox = self.bbox if bbox is None else bbox
        if out is None:
            out = MaskedImage(
                np.empty(bbox.shape, np.float32),
                Mask(np.empty(bbox.shape, np.int32), bbox=bbox, planes=self.mask_planes),
                np.empty(bbox.shape, np.float32),
                bbox=bbox,
            )
        s = self._sky
        image = out.image
        periodic_copy(self._bank, bbox.y0 + s["dy"], bbox.x0 + s["dx"], image)
        image *= np.float32(s["sigma"])
        x = np.arange(bbox.x0, bbox.x_end, dtype=np.float32)
        y = np.arange(bbox.y0, bbox.y_end, dtype=np.float32)
        image += (s["level"] + s["gx"] * x)[None, :]
        image += (s["gy"] * y)[:, None]
        out.variance[...] = np.float32(s["sigma"] ** 2)
        out.mask.array[...] = 0
        missing = s["missing"](x, y)
        if missing is not None:
            out.set_no_data(missing)
        return Exposure(out, wcs=self.wcs, band="r", units="nJy", visit_info=self.visit_info)


def periodic_copy(bank: np.ndarray, y0: int, x0: int, out: np.ndarray) -> None:
    """``out[j, i] = bank[(y0 + j) % B, (x0 + i) % B]`` with at most four block copies."""
    size = bank.shape[0]
    height, width = out.shape
    for rows_out, rows_in in _pieces(y0 % size, height, size):
        for cols_out, cols_in in _pieces(x0 % size, width, size):
            out[rows_out, cols_out] = bank[rows_in, cols_in]


def _pieces(start: int, length: int, size: int):
    first = min(length, size - start)
    yield slice(0, first), slice(start, start + first)
    if first < length:
        yield slice(first, length), slice(0, length - first)


def visit_skies(n_visits: int, region: Box, rng: np.random.Generator) -> list[dict]:
    skies = []
    for visit in range(n_visits):
        gap_x0 = region.x0 + int(rng.integers(region.width // 4, 3 * region.width // 4))

        def missing(x, y, visit=visit, gap_x0=gap_x0):
            if visit == 1:  # covers the left third only
                return np.broadcast_to(x >= region.x0 + region.width // 3, (y.size, x.size))
            if visit % 3 == 0:  # a chip gap
                gap = (x >= gap_x0) & (x < gap_x0 + 150)
                return np.broadcast_to(gap, (y.size, x.size)) if gap.any() else None
            return None

        skies.append(
            {
                "level": float(rng.uniform(200.0, 900.0)),
                "gx": float(rng.uniform(-2e-3, 2e-3)),
                "gy": float(rng.uniform(-2e-3, 2e-3)),
                "sigma": float(rng.uniform(20.0, 30.0)),
                "dx": int(rng.integers(0, BANK_SIZE)),
                "dy": int(rng.integers(0, BANK_SIZE)),
                "missing": missing,
            }
        )
    return skies


def make_warps(patch: int, n_visits: int) -> list[SyntheticWarp]:
    """Synthetic warps of ``n_visits`` visits on the 3 x 3 central patches of a 5 x 5 tract."""
    inner = patch - 2 * BORDER
    config = SkyMapConfig(patch_inner_dimensions=(inner, inner), patch_border=BORDER)
    half = 2.5 * inner * config.pixel_scale / 3600.0
    tract = DiscreteSkyMap.from_centers(
        [150.0], [2.0], [half], config=config.replace(tract_overlap=0.0)
    )[0]
    patches = [tract.patch((x, y)) for y in (1, 2, 3) for x in (1, 2, 3)]
    region = Box(
        patches[0].outer_bbox.x0,
        patches[0].outer_bbox.y0,
        patches[-1].outer_bbox.x_end - patches[0].outer_bbox.x0,
        patches[-1].outer_bbox.y_end - patches[0].outer_bbox.y0,
    )
    rng = np.random.default_rng(11)
    bank = rng.standard_normal((BANK_SIZE, BANK_SIZE), dtype=np.float32)
    skies = visit_skies(n_visits, region, rng)
    return [
        SyntheticWarp(visit, p.outer_bbox, tract, bank, skies[visit])
        for visit in range(n_visits)
        for p in patches
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=4000, help="outer patch size, pixels")
    parser.add_argument("--visits", type=int, default=10)
    args = parser.parse_args()
    config = MatchBackgroundsConfig(build_matched_warps=False)
    task = MatchBackgroundsTask(config)
    task.run(make_warps(600, 3))  # warm-up: numba caches, imports
    warps = make_warps(args.patch, args.visits)
    load_before = os.getloadavg()[0]
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = task.run(warps)
    matched_at = time.perf_counter()
    checksum = 0.0
    arrays: dict[tuple, tuple] = {}
    for handle in result.matched_handles:  # build each matched warp into reused arrays
        box = handle.bbox
        image, mask, variance = arrays.setdefault(
            box.shape,
            (
                np.empty(box.shape, np.float32),
                np.empty(box.shape, np.int32),
                np.empty(box.shape, np.float32),
            ),
        )
        out = MaskedImage(
            image, Mask(mask, bbox=box, planes=handle.mask_planes), variance, bbox=box
        )
        checksum += float(handle.get(out=out).image[::64, ::64].sum(dtype=np.float64))
    done = time.perf_counter()
    cpu = time.process_time() - cpu_start
    load_after = os.getloadavg()[0]
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    timings = result.metadata.timings
    table = result.diagnostics
    others = table[~table["is_reference"]]
    excess = np.max(others["matched_mse"] / others["diff_image_var"]) - 1
    region = result.backgrounds[0].bbox
    print()
    print(
        f"| {args.visits} visits x 9 patches of {args.patch}^2 ({region.width}x{region.height} "
        f"tract px), bin {config.bin_size} | value | target |"
    )
    print("|---|---|---|")
    print(f"| `run` (bin, select, fit, diagnostics) | {matched_at - start:.2f} s | |")
    print(f"| build all {len(warps)} matched warps, one at a time | {done - matched_at:.2f} s | |")
    print(f"| total wall time | {done - start:.2f} s | <= 20 s |")
    print(f"| CPU time of the process (user + system) | {cpu:.2f} s | |")
    print(f"| peak RSS of the process | {peak_gb:.2f} GB | <= 2 GB |")
    load = f"{load_before:.1f} / {load_after:.1f}"
    print(f"| 1-min load average before / after ({os.cpu_count()} CPUs) | {load} | |")
    for name in ("bin", "select", "fit", "diagnostics"):
        print(f"| stage `{name}` | {timings.get(name, 0.0):.2f} s | |")
    print(f"| reference visit (automatic) | {result.reference_visit} | |")
    print(f"| worst matched MSE / difference variance - 1 | {excess:.2e} | < 1e-2 |")
    offset = np.max(np.abs(others["mean_difference"]))
    print(f"| largest mean (reference - matched) | {offset:.3f} nJy | |")


if __name__ == "__main__":
    main()
