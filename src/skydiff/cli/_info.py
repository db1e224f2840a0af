"""``skydiff info``: describe exposures."""

from __future__ import annotations

import argparse

import numpy as np

from ..image import Exposure, statistics
from ..io import read_any


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "info",
        help="describe FITS exposures (skydiff, LSST or plain)",
        description="Print the box, units, calibration, WCS centre, PSF width, mask-plane "
        "counts and pixel statistics of each file.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.set_defaults(handler=run)


def describe(exposure: Exposure) -> list[str]:
    """Human-readable lines about one exposure."""
    bbox, info = exposure.bbox, exposure.visit_info
    lines = [
        f"  box: x0={bbox.x0} y0={bbox.y0} width={bbox.width} height={bbox.height}",
        f"  units: {exposure.units}  band: {exposure.band or '-'}  "
        f"filter: {exposure.physical_filter or '-'}",
        f"  visit: {info.visit}  detector: {info.detector}  mjd: {info.mjd:.6f}  "
        f"exptime: {info.exposure_time:g} s",
    ]
    if exposure.photo_calib is not None:
        lines.append(
            f"  calibration: {exposure.photo_calib.calibration_mean:.6g} nJy/count "
            f"(zero point {exposure.photo_calib.zero_point:.3f})"
        )
    if exposure.wcs is not None:
        ra, dec = exposure.pixel_to_sky(*bbox.center)
        lines.append(f"  centre: RA {float(ra):.6f}  Dec {float(dec):.6f} deg")
    if exposure.psf is not None:
        x, y = bbox.center
        lines.append(
            f"  psf: {type(exposure.psf).__name__}, FWHM {exposure.psf.fwhm(x, y):.3f} px"
            " at the centre"
        )
    stats = statistics(exposure.masked_image)
    lines.append(
        f"  pixels: {stats.n_good} good, median {stats.median:.6g}, "
        f"clipped std {stats.clipped_stddev:.6g}, "
        f"sqrt(median variance) {np.sqrt(stats.median_variance):.6g}"
    )
    counts = {k: v for k, v in exposure.mask.plane_counts().items() if v}
    lines.append(f"  mask: {counts if counts else 'clear'}")
    return lines


def run(args: argparse.Namespace) -> int:
    for path in args.files:
        print(path)
        print("\n".join(describe(read_any(path))))
    return 0
