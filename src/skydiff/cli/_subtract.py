"""``skydiff subtract``: Alard-Lupton subtraction of a template from a science exposure."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..diffim import (
    AlardLuptonSubtractConfig,
    AlardLuptonSubtractTask,
    DetectAndMeasureTask,
)
from ..image import Exposure, grid_offset
from ..io import read_any, write_exposure
from ._common import add_config_options, configured


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "subtract",
        help="PSF-match and subtract a template from a science exposure",
        description="Alard-Lupton subtraction with decorrelation. SCIENCE and TEMPLATE are "
        "skydiff, LSST or plain FITS exposures with PSFs (characterize plain images "
        "first). A template on another pixel grid is resampled onto the science grid first "
        "(as skydiff template does).",
    )
    parser.add_argument("science", type=Path, help="science exposure")
    parser.add_argument(
        "template", type=Path, help="template exposure (resampled if on another grid)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="difference image")
    parser.add_argument(
        "--mode",
        choices=["convolveTemplate", "convolveScience", "auto"],
        help="which image to convolve (default: from the configuration)",
    )
    parser.add_argument("--matched-template", type=Path, help="write the matched template")
    parser.add_argument(
        "--sources", type=Path, help="catalogue (ECSV with x, y and snr) of kernel sources"
    )
    parser.add_argument("--dia-sources", type=Path, help="detect and write DIA sources (ECSV)")
    parser.add_argument("--metrics", type=Path, help="metadata and quality figures (JSON)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def _refuse_existing(paths: list[Path | None], overwrite: bool) -> None:
    for path in paths:
        if path is not None and path.exists() and not overwrite:
            raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")


def run(args: argparse.Namespace) -> int:
    _refuse_existing(
        [args.output, args.matched_template, args.dia_sources, args.metrics], args.overwrite
    )
    config = configured(AlardLuptonSubtractConfig(), args)
    if args.mode:
        config = config.replace(mode=args.mode)
    science, template = read_any(args.science), read_any(args.template)
    template = _on_science_grid(template, science)
    sources = Table.read(args.sources) if args.sources else None
    result = AlardLuptonSubtractTask(config).run(template, science, sources)
    write_exposure(result.difference, args.output, overwrite=args.overwrite)
    if args.matched_template:
        write_exposure(result.matched_template, args.matched_template, overwrite=args.overwrite)
    summary = (
        f"kernel sum {result.metadata['kernel_sum']:.4f}, "
        f"{result.metadata['n_stamps_used']} stamps, residual std "
        f"{result.metadata['residual_std']:.3f}"
    )
    metrics = result.metadata.to_dict()
    if args.dia_sources:
        found = DetectAndMeasureTask().run(
            result.difference, science=science, matched_template=result.matched_template
        )
        found.dia_sources.write(args.dia_sources, format="ascii.ecsv", overwrite=True)
        metrics["dia"] = found.metadata.to_dict()
        summary += f", {len(found.dia_sources)} DIA sources"
    if args.metrics:
        args.metrics.write_text(json.dumps(metrics, indent=2, default=_jsonable))
    print(f"{args.output}: {result.mode}, {summary}")
    return 0


def _on_science_grid(template: Exposure, science: Exposure) -> Exposure:
    """The template, resampled onto the science grid when it is on another (GetTemplateTask)."""
    if template.wcs is None or science.wcs is None:
        return template
    if grid_offset(science.wcs, template.wcs, science.bbox) < 0.01:
        return template
    from ..coadd import GetTemplateTask
    from ..io import InMemoryHandle

    result = GetTemplateTask().run_on_coadds([InMemoryHandle(template)], science.bbox, science.wcs)
    return result.template


def _jsonable(value):
    return value.item() if isinstance(value, np.generic) else str(value)
