"""``skydiff sky-frame``: build a detector's sky frame, or apply one to a calexp."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io import read_background, read_exposure, write_background, write_exposure
from ._common import add_config_options, add_input_options, configured, read_input


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sky-frame",
        help="build a sky frame from many exposures of a detector, or apply one",
        description="Sky frames (LSST SkyMeasurementTask): the binned response of one detector "
        "to the night sky, averaged over many exposures with objects masked.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_build(actions)
    _add_apply(actions)


def _add_build(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "build",
        help="average many exposures of one detector into its sky frame",
        description="Mask objects on each exposure, bin it, divide it by its sky level and "
        "average the bins with clipping (SkyFrameBuilderTask). The exposures must still "
        "contain their sky, or their subtracted backgrounds must be given with --background.",
    )
    parser.add_argument("calexps", nargs="+", type=Path, metavar="CALEXP", help="input FITS files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="sky frame (FITS)")
    parser.add_argument(
        "--background",
        type=Path,
        action="append",
        default=[],
        help="subtracted background of each CALEXP, in order (repeat once per CALEXP)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_input_options(parser)
    add_config_options(parser)
    parser.set_defaults(handler=run_build)


def _add_apply(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "apply",
        help="subtract a scaled sky frame and a smooth background from a calexp",
        description="Scale the sky frame to the calexp, subtract it, then fit and subtract a "
        "binned background (SkyCorrectionTask on one detector).",
    )
    parser.add_argument("calexp", type=Path, metavar="CALEXP", help="input FITS file")
    parser.add_argument("--sky", type=Path, required=True, help="sky frame of the detector")
    parser.add_argument("-o", "--output", type=Path, required=True, help="corrected calexp")
    parser.add_argument("--background", type=Path, help="background subtracted from CALEXP")
    parser.add_argument("--sky-corr", type=Path, help="write the sky correction (FITS)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_input_options(parser)
    add_config_options(parser)
    parser.set_defaults(handler=run_apply)


def _refuse_existing(args: argparse.Namespace, *paths: Path | None) -> None:
    for path in paths:
        if path is not None and path.exists() and not args.overwrite:
            raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")


def run_build(args: argparse.Namespace) -> int:
    from ..errors import InvalidParameterError
    from ..skyframe import SkyFrameBuilderConfig, SkyFrameBuilderTask

    _refuse_existing(args, args.output)
    if args.background and len(args.background) != len(args.calexps):
        raise InvalidParameterError(
            f"--background was given {len(args.background)} times for {len(args.calexps)} calexps"
        )
    config = configured(SkyFrameBuilderConfig(), args)
    exposures = [read_input(path, args) for path in args.calexps]
    backgrounds = [read_background(path) for path in args.background] or None
    result = SkyFrameBuilderTask(config).run(exposures, backgrounds=backgrounds)
    write_exposure(result.exposure, args.output, overwrite=args.overwrite)
    ny, nx = result.sky_frame.values.shape
    print(
        f"sky frame of {exposures[0].describe()} from {len(exposures)} exposures "
        f"({nx} x {ny} bins, levels {min(result.levels):.4g} .. {max(result.levels):.4g}, "
        f"rms {result.metadata['frame_rms']:.4f}); wrote {args.output}"
    )
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from ..background import BackgroundList
    from ..skyframe import SkyCorrectionConfig, SkyCorrectionTask, exposure_to_background

    _refuse_existing(args, args.output, args.sky_corr)
    config = configured(SkyCorrectionConfig(), args)
    calexp = read_input(args.calexp, args)
    sky_frame = exposure_to_background(read_exposure(args.sky))
    backgrounds: list[BackgroundList | None] | None = None
    if args.background is not None:
        backgrounds = [read_background(args.background)]
    result = SkyCorrectionTask(config).run(
        [calexp], None, sky_frames=[sky_frame], backgrounds=backgrounds
    )
    write_exposure(result.calexps[0], args.output, overwrite=args.overwrite)
    if args.sky_corr is not None:
        write_background(result.sky_corrections[0], args.sky_corr, overwrite=args.overwrite)
    print(
        f"{args.calexp}: sky frame scale {result.scale:.5g}, "
        f"{len(result.sky_corrections[0])} background models subtracted; wrote {args.output}"
    )
    return 0
