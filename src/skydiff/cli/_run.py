"""``skydiff run``: run the pipeline over a repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidParameterError
from ._common import add_config_options, configured


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run",
        help="run the pipeline (warps, coadds, templates, differences) over a repository",
        description="Builds the graph of what is missing (outputs that exist are skipped, so "
        "a run resumes after a crash), runs it with a progress bar and prints a summary. A "
        "failed quantum is reported and does not stop the others.",
    )
    parser.add_argument("repo", type=Path, help="repository directory")
    parser.add_argument("--steps", nargs="+", help="steps to run (default: from the configuration)")
    parser.add_argument(
        "--where",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="restrict the calexps, e.g. visit=3,4 band=r",
    )
    parser.add_argument("--template-visits", help="comma-separated visits that build coadds")
    parser.add_argument("--science-visits", help="comma-separated visits to difference")
    parser.add_argument(
        "--executor",
        choices=["inprocess", "processes", "dask"],
        default="processes",
        help="where quanta run (default: local processes, one per core)",
    )
    parser.add_argument("-j", "--jobs", type=int, help="number of worker processes")
    parser.add_argument(
        "--dask", metavar="ADDRESS", help="Dask scheduler address, or 'local' for a LocalCluster"
    )
    add_config_options(parser)
    parser.set_defaults(handler=run)


def parse_where(items: list[str]) -> dict:
    """``["visit=3,4", "band=r"]`` -> ``{"visit": [3, 4], "band": ["r"]}``."""
    where = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"--where {item!r} is not of the form key=value")
        values = [int(v) if v.lstrip("-").isdigit() else v for v in text.split(",")]
        where[key.strip()] = values
    return where


def _visits(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameterError(
            f"visits must be comma-separated integers, got {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    from ..pipeline import Pipeline, PipelineConfig, Repository, make_executor

    repo = Repository(args.repo)
    config = configured(PipelineConfig(), args)
    changes = {}
    if args.steps:
        changes["steps"] = tuple(args.steps)
    for name in ("template_visits", "science_visits"):
        visits = _visits(getattr(args, name))
        if visits is not None:
            changes[name] = visits
    config = config.replace(**changes) if changes else config
    executor = make_executor(args.executor, n_workers=args.jobs, dask=args.dask)
    with executor:
        summary = Pipeline(repo, config).run(where=parse_where(args.where), executor=executor)
    print(summary.table())
    return 1 if summary.failures else 0
