"""``skydiff template``: a template for one science exposure, cut from coadds."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidParameterError
from ..io import ExposureHandle, write_exposure
from ._common import add_config_options, configured


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "template",
        help="resample coadd patches (of one or more tracts) onto a science exposure's grid",
        description="GetTemplateTask: the coadds overlapping SCIENCE are merged per tract, "
        "warped onto its WCS and box (grown by template_border) and averaged where tracts "
        "overlap. Only the overlapping part of each coadd is read.",
    )
    parser.add_argument("science", type=Path, help="science exposure (its WCS and box are used)")
    parser.add_argument(
        "--coadds", nargs="+", type=Path, required=True, help="coadd files or directories"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="template")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def coadd_files(paths: list[Path]) -> list[Path]:
    """The FITS files named, and those in the directories named (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in (".fits", ".fit"))
        elif path.exists():
            files.append(path)
        else:
            raise InvalidParameterError(f"{path}: no such coadd file or directory")
    if not files:
        raise InvalidParameterError(f"no FITS files in {', '.join(map(str, paths))}")
    return files


def run(args: argparse.Namespace) -> int:
    from ..coadd import GetTemplateConfig, GetTemplateTask

    if args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output}: exists; pass overwrite=True to replace it")
    config = configured(GetTemplateConfig(), args)
    science = ExposureHandle(args.science)  # headers only
    if science.wcs is None:
        raise InvalidParameterError(f"{args.science}: the science exposure has no WCS")
    handles = [ExposureHandle(path) for path in coadd_files(args.coadds)]
    result = GetTemplateTask(config).run_on_coadds(
        handles, science.bbox, science.wcs, science.physical_filter
    )
    write_exposure(result.template, args.output, overwrite=args.overwrite)
    m = result.metadata
    print(
        f"{args.output}: {m['n_patches']} coadds from {m['n_tracts']} tract(s), "
        f"{m['good_fraction']:.1%} of {result.template.bbox} covered"
    )
    return 0
