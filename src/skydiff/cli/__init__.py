"""The ``skydiff`` command line."""

from __future__ import annotations

import argparse
import ctypes
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import SkydiffError
from . import (
    _characterize,
    _coadd,
    _demo,
    _info,
    _match_backgrounds,
    _repo,
    _sky_frame,
    _subtract,
    _template,
    _warp,
)

__all__ = ["main"]

_COMMANDS = (
    _demo,
    _info,
    _characterize,
    _subtract,
    _warp,
    _template,
    _coadd,
    _sky_frame,
    _match_backgrounds,
    _repo,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per module of :data:`_COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="skydiff",
        description="Survey difference imaging after the LSST Science Pipelines.",
    )
    parser.add_argument("--version", action="version", version=f"skydiff {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.add_parser(commands)
    return parser


def _keep_freed_memory() -> None:
    """Let glibc reuse freed image buffers instead of returning them to the system.

    The commands allocate and free many 30-60 MB arrays; with glibc's default
    each one is a fresh mmap whose page faults cost 0.2-0.4 s per command.
    Only for this short-lived process (the library never does this); a no-op
    where glibc is absent.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: large blocks from the heap
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD: keep the heap
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    _keep_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (SkydiffError, FileExistsError) as error:
        message = str(error)
        if isinstance(error, FileExistsError) and hasattr(args, "overwrite"):
            message = message.replace("pass overwrite=True", "use --overwrite")
        print(f"skydiff {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
