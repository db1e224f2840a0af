"""``skydiff characterize``: background, variance, sources and PSF of an image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..characterize import CharacterizeConfig, CharacterizeTask
from ..io import write_background, write_exposure
from ._common import add_config_options, add_input_options, configured, read_input


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "characterize",
        help="subtract the background, detect and measure sources, fit a PSF",
        description="Characterize an exposure (skydiff, LSST or plain FITS): subtract its "
        "background, scale its variance plane, detect and measure sources and, "
        "if it has none, fit a spatially varying PSF model.",
    )
    parser.add_argument("image", type=Path, help="input FITS file")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="characterized exposure (skydiff FITS)"
    )
    parser.add_argument("--catalog", type=Path, help="source catalogue (ECSV)")
    parser.add_argument("--background", type=Path, help="subtracted background (FITS)")
    parser.add_argument("--metrics", type=Path, help="metadata and quality figures (JSON)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_input_options(parser)
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = configured(CharacterizeConfig(), args)
    exposure = read_input(args.image, args)
    result = CharacterizeTask(config).run(exposure)
    write_exposure(result.exposure, args.output, overwrite=args.overwrite)
    if args.catalog is not None:
        if args.catalog.exists() and not args.overwrite:
            raise FileExistsError(f"{args.catalog}: exists; pass overwrite=True to replace it")
        result.sources.write(args.catalog, format="ascii.ecsv", overwrite=True)
    if args.background is not None:
        write_background(result.background, args.background, overwrite=args.overwrite)
    if args.metrics is not None:
        args.metrics.write_text(json.dumps(result.metadata.to_dict(), indent=2))
    psf = result.exposure.psf
    x, y = result.exposure.bbox.center
    print(
        f"{args.image}: {len(result.sources)} sources, PSF FWHM {psf.fwhm(x, y):.2f} px "
        f"({type(psf).__name__}), variance scaled by {result.variance_factor:.3f}; "
        f"wrote {args.output}"
    )
    return 0
