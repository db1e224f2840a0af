"""``skydiff coadd``: stack warps of one patch and band into a coadd."""

from __future__ import annotations

import argparse
from pathlib import Path

from astropy.io import fits

from ._common import add_config_options, configured


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "coadd",
        help="stack warps of one patch and band into a coadd",
        description="AssembleCoaddTask on warps in nJy on one pixel grid (skydiff or LSST "
        "exposure files), read block by block. The inputs table (visit, detector, weight, "
        "pixels used) is written as the extension INPUTS.",
    )
    parser.add_argument("warps", nargs="+", type=Path, help="warp files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the coadd")
    parser.add_argument(
        "--statistic",
        choices=["meanclip", "mean", "median"],
        help="per-pixel statistic (default: the configuration's, meanclip)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..coadd import AssembleCoaddConfig, AssembleCoaddTask
    from ..io import ExposureHandle, write_exposure

    if args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output}: exists; pass overwrite=True to replace it")
    config = configured(AssembleCoaddConfig(), args)
    if args.statistic is not None:
        config = config.replace(statistic=args.statistic.upper())
    handles = [ExposureHandle(path) for path in args.warps]
    result = AssembleCoaddTask(config).run(handles)
    inputs = fits.table_to_hdu(result.inputs)
    inputs.header["EXTNAME"] = "INPUTS"
    write_exposure(result.coadd, args.output, overwrite=args.overwrite, extra_hdus=(inputs,))
    values = result.metadata.values
    print(
        f"{args.output}: {values['n_inputs']} warps ({values['n_skipped']} without data), "
        f"{config.statistic}, {values['fraction_clipped']:.2%} of values clipped, "
        f"{values['n_artifact_values']} artifact values excluded, "
        f"{values['fraction_no_data']:.1%} without data"
    )
    return 0
