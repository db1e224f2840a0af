"""``skydiff match-backgrounds``: warps of many visits matched to one visit's background."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from astropy.io import fits

from ..errors import InvalidParameterError
from ..io import ExposureHandle, write_exposure
from ._common import add_config_options, configured

#: Name of the diagnostics file written next to the matched warps.
DIAGNOSTICS_NAME = "match_backgrounds.json"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "match-backgrounds",
        help="match the backgrounds of the warps of many visits to a reference visit",
        description="MatchBackgroundsTask: every visit's warps are binned over the tract, the "
        "binned difference with the reference visit is modelled (spline or Chebyshev) and "
        "added to the visit's warps. Writes the matched warps under their input file names "
        f"in OUTDIR, and {DIAGNOSTICS_NAME}. Warps are read block by block and written one at "
        "a time.",
    )
    parser.add_argument(
        "warps",
        nargs="+",
        type=Path,
        metavar="WARP",
        help="warp files (nJy) of several visits, one tract and band",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUTDIR",
        help="directory for the matched warps",
    )
    parser.add_argument(
        "--ref-visit",
        type=int,
        metavar="V",
        help="reference visit (default: chosen by the task's cost)",
    )
    parser.add_argument(
        "--skymap", help="sky-map name or JSON file; the warps must lie on one of its tracts"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..coadd import MatchBackgroundsConfig, MatchBackgroundsTask

    config = configured(MatchBackgroundsConfig(), args).replace(build_matched_warps=False)
    targets = output_paths(args.warps, args.output, overwrite=args.overwrite)
    skymap = None
    if args.skymap is not None:
        from ..skymap import load_skymap

        skymap = load_skymap(args.skymap)
    handles = [ExposureHandle(path) for path in args.warps]  # headers only
    result = MatchBackgroundsTask(config).run(handles, skymap, ref_visit_id=args.ref_visit)
    args.output.mkdir(parents=True, exist_ok=True)
    for source, target, matched in zip(args.warps, targets, result.matched_handles, strict=True):
        write_exposure(
            matched.get(), target, overwrite=args.overwrite, extra_hdus=extra_tables(source)
        )
    report = diagnostics_report(result, args.warps, targets, config)
    (args.output / DIAGNOSTICS_NAME).write_text(json.dumps(report, indent=2) + "\n")
    visits = len(result.diagnostics)
    print(
        f"{args.output}: {len(targets)} warps of {visits} visits matched to reference visit "
        f"{result.reference_visit}; diagnostics in {DIAGNOSTICS_NAME}"
    )
    return 0


def output_paths(inputs: list[Path], directory: Path, *, overwrite: bool) -> list[Path]:
    """``directory / input.name`` for every input, refusing clashes before any work."""
    targets = [directory / path.name for path in inputs]
    names = [t.name for t in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidParameterError(
            f"several input warps are named {repeated}: outputs would clash"
        )
    for source, target in zip(inputs, targets, strict=True):
        if target.exists() and target.resolve() == source.resolve():
            raise InvalidParameterError(
                f"{target}: writing the matched warp would overwrite its input; choose another -o"
            )
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target}: exists; pass overwrite=True to replace it")
    return targets


def extra_tables(path: Path) -> tuple[fits.BinTableHDU, ...]:
    """The further tables of a skydiff exposure file (``SDEXTRA``), e.g. a warp's inputs."""
    with fits.open(path, memmap=False) as hdul:
        names = [n for n in str(hdul[0].header.get("SDEXTRA", "")).split(",") if n]
        return tuple(
            fits.BinTableHDU(data=hdul[name].data.copy(), header=hdul[name].header.copy())
            for name in names
            if name in hdul
        )


def diagnostics_report(result, inputs, targets, config) -> dict[str, Any]:
    """The JSON report: reference, per-visit diagnostics, files, configuration and metadata."""
    visits = json.loads(result.metadata["diagnostics"])
    files = [
        {"input": str(source), "output": str(target), "visit": int(h.visit_info.visit)}
        for source, target, h in zip(inputs, targets, result.matched_handles, strict=True)
    ]
    return _finite(
        {
            "reference_visit": result.reference_visit,
            "tract": result.metadata["tract"],
            "visits": visits,
            "warps": files,
            "config": config.to_dict(),
            "metadata": result.metadata.to_dict(),
        }
    )


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
