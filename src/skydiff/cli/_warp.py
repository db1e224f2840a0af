"""``skydiff warp``: calexps onto a sky-map patch, or any image onto the grid of another."""

from __future__ import annotations

import argparse
from pathlib import Path

from astropy.io import fits

from ..errors import InvalidParameterError, NoWorkFound
from ..io import read_any, write_exposure
from ..psf import CoaddPsf, CoaddPsfInput
from ._common import add_config_options, configured


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "warp",
        help="resample calexps onto a sky-map patch, or an image onto another's grid",
        description="With --skymap/--tract/--patch: MakeWarpTask on the calexps of one visit "
        "(direct warp, optionally PSF-matched). With --like: resample one image onto the "
        "pixel grid (WCS and box) of TARGET.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="calexps of one visit, or one image")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the (direct) warp")
    parser.add_argument("--like", type=Path, help="put the image on this exposure's grid")
    parser.add_argument("--skymap", help="sky-map name (e.g. rings_120) or JSON file")
    parser.add_argument("--tract", type=int, help="tract id")
    parser.add_argument("--patch", help="patch as X,Y or its sequential index")
    parser.add_argument("--psf-matched", type=Path, help="also write the PSF-matched warp")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    for path in (args.output, args.psf_matched):
        if path is not None and path.exists() and not args.overwrite:
            raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    if args.like is not None:
        return _warp_like(args)
    if args.skymap is None or args.tract is None or args.patch is None:
        raise InvalidParameterError("give --like TARGET, or all of --skymap, --tract and --patch")
    return _warp_patch(args)


def _warp_like(args: argparse.Namespace) -> int:
    from ..coadd import MakeWarpConfig
    from ..warp import warp_exposure

    if len(args.inputs) != 1 or args.psf_matched is not None:
        raise InvalidParameterError("--like warps exactly one image and makes no PSF-matched warp")
    warper = configured(MakeWarpConfig(), args).warper
    source, target = read_any(args.inputs[0]), read_any(args.like)
    if target.wcs is None:
        raise InvalidParameterError(f"{args.like}: the target has no WCS")
    warped = warp_exposure(
        source, target.wcs, target.bbox, kernel=warper.kernel, interp_length=warper.interp_length
    )
    if source.psf is not None:
        item = CoaddPsfInput(source.psf, source.wcs, source.bbox)
        warped = warped.replace(psf=CoaddPsf([item], target.wcs))
    write_exposure(warped, args.output, overwrite=args.overwrite)
    good = float((~warped.mask.get("NO_DATA")).mean())
    print(f"{args.output}: {args.inputs[0]} on the grid of {args.like}, {good:.1%} covered")
    return 0


def _warp_patch(args: argparse.Namespace) -> int:
    from ..coadd import MakeWarpConfig, MakeWarpTask
    from ..skymap import load_skymap

    config = configured(MakeWarpConfig(), args)
    if args.psf_matched is not None:
        config = config.replace(make_psf_matched=True)
    tract = load_skymap(args.skymap)[args.tract]
    patch = tract.patch(_patch_index(args.patch))
    calexps = [read_any(path) for path in args.inputs]
    result = MakeWarpTask(config).run_on_patch(calexps, tract, patch)
    if result.direct is None:
        raise NoWorkFound(
            f"no input pixel falls on tract {args.tract} patch {args.patch} ({patch.outer_bbox})"
        )
    inputs = fits.table_to_hdu(result.inputs)
    inputs.header["EXTNAME"] = "INPUTS"
    write_exposure(result.direct, args.output, overwrite=args.overwrite, extra_hdus=(inputs,))
    summary = (
        f"{args.output}: {len(result.inputs)} detectors on tract {args.tract} patch {args.patch}"
    )
    if args.psf_matched is not None:
        if result.psf_matched is None:
            raise NoWorkFound("no calexp could be PSF-matched to the model PSF")
        write_exposure(
            result.psf_matched, args.psf_matched, overwrite=args.overwrite, extra_hdus=(inputs,)
        )
        summary += f"; PSF-matched warp {args.psf_matched}"
    print(summary)
    return 0


def _patch_index(text: str) -> int | tuple[int, int]:
    try:
        if "," in text:
            x, y = (int(v) for v in text.split(","))
            return x, y
        return int(text)
    except ValueError:
        raise InvalidParameterError(f"--patch must be X,Y or an integer, got {text!r}") from None
