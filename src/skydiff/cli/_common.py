"""Options shared by commands that read images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..image import Exposure
from ..io import DECAM_CP_MASK_VALUES, read_any
from ..task import Config


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """Options for reading plain FITS images with companions."""
    group = parser.add_argument_group("plain FITS input")
    group.add_argument("--hdu", help="HDU of the image (index or EXTNAME)")
    group.add_argument("--weight", type=Path, help="inverse-variance weight file")
    group.add_argument("--variance", type=Path, help="variance file")
    group.add_argument("--mask", type=Path, help="data-quality mask file")
    group.add_argument(
        "--mask-codes",
        choices=["decam"],
        help="DQ codes of a known instrument (default: every non-zero DQ pixel is BAD)",
    )
    group.add_argument("--gain", type=float, help="electrons per count, for an estimated variance")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--config key=value`` and ``--config-file FILE.toml``."""
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="configuration override, repeatable (e.g. detection.threshold=4)",
    )
    parser.add_argument("--config-file", type=Path, help="TOML file of configuration overrides")


def read_input(path: Path, args: argparse.Namespace) -> Exposure:
    """Read a skydiff/LSST exposure or a plain image with the command's input options."""
    hdu = args.hdu
    if hdu is not None and hdu.isdigit():
        hdu = int(hdu)
    return read_any(
        path,
        hdu=hdu,
        weight=args.weight,
        variance=args.variance,
        mask=args.mask,
        mask_values=DECAM_CP_MASK_VALUES if args.mask_codes == "decam" else None,
        gain=args.gain,
    )


def configured(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with the TOML file and then the ``--config`` overrides applied."""
    if args.config_file is not None:
        config = config.with_toml(args.config_file)
    return config.with_overrides(args.config)
