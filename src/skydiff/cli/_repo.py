"""``skydiff repo create|query|info`` and ``skydiff ingest``: data repositories."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidParameterError
from ._common import add_config_options, configured


def add_parser(commands: argparse._SubParsersAction) -> None:
    _add_repo_parser(commands)
    _add_ingest_parser(commands)


# -- skydiff repo ----------------------------------------------------------------------------


def _add_repo_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "repo",
        help="create, query and describe a data repository",
        description="A data repository is a directory of datasets (calexps, warps, coadds, "
        "differences...) laid out by dataset type and data ID, with an SQLite registry.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create a repository in a new or empty directory",
        description="Create a repository, optionally with its sky map.",
    )
    create.add_argument("repo", type=Path, help="repository directory")
    create.add_argument(
        "--skymap",
        metavar="NAME_OR_FILE",
        help="sky map: a built-in name (rings_120, hsc_rings_120) or a JSON file",
    )
    create.set_defaults(handler=run_create)
    query = actions.add_parser(
        "query",
        help="list registered datasets",
        description="List the registered datasets of one type (or all) matching constraints.",
    )
    query.add_argument("repo", type=Path, help="repository directory")
    query.add_argument("dataset_type", nargs="?", help="dataset type (default: all)")
    query.add_argument(
        "-w",
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE[,VALUE...]",
        help="constraint on a dimension, band, physical_filter or run; repeatable",
    )
    query.add_argument("--paths", action="store_true", help="print only the absolute file paths")
    query.set_defaults(handler=run_query)
    info = actions.add_parser("info", help="sky map and dataset counts of a repository")
    info.add_argument("repo", type=Path, help="repository directory")
    info.set_defaults(handler=run_info)


def parse_where(items: list[str]) -> dict[str, list[str]]:
    """``["visit=1,2", "band=r"]`` -> ``{"visit": ["1", "2"], "band": ["r"]}``."""
    where: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidParameterError(f"--where {item!r}: expected KEY=VALUE[,VALUE...]")
        values = [v.strip() for v in value.split(",") if v.strip()]
        where.setdefault(key.strip(), []).extend(values)
    return where


def run_create(args: argparse.Namespace) -> int:
    from ..pipeline import Repository

    repo = Repository.create(args.repo, skymap=args.skymap)
    sky = f" with sky map {args.skymap}" if args.skymap else " (no sky map)"
    print(f"Created repository {repo.root}{sky}")
    return 0


def _describe(ref) -> str:
    values = " ".join(f"{k}={v}" for k, v in ref.data_id.items())
    return f"{ref.dataset_type:<18} {values:<48} {ref.path}"


def run_query(args: argparse.Namespace) -> int:
    from ..pipeline import Repository

    repo = Repository(args.repo)
    refs = repo.query(args.dataset_type, **parse_where(args.where))
    for ref in refs:
        print(repo.root / ref.path if args.paths else _describe(ref))
    if not args.paths:
        print(f"{len(refs)} dataset(s)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..pipeline import Repository

    repo = Repository(args.repo)
    info = repo.registry.info()
    print(f"Repository {repo.root}")
    print(f"created {info.get('created')} by skydiff {info.get('software_version')}")
    try:
        print(f"sky map: {repo.skymap!r}")
    except InvalidParameterError:
        print("sky map: none")
    for name, count in repo.counts().items():
        print(f"{name:<18} {count:>7}")
    return 0


# -- skydiff ingest --------------------------------------------------------------------------


def _add_ingest_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ingest",
        help="add exposure files to a repository as calexps",
        description="Ingest skydiff, LSST afw or plain FITS exposures as calexps. Visit, "
        "detector, band and instrument come from a mapping file, the options or the "
        "header (VISIT/EXPNUM, DETECTOR/CCDNUM, BAND/FILTER, INSTRUME). Exposures without "
        "a PSF are characterized (background, variance, sources, PSF).",
    )
    parser.add_argument("repo", type=Path, help="repository directory")
    parser.add_argument("files", type=Path, nargs="+", help="FITS files to ingest")
    ident = parser.add_argument_group("identification")
    ident.add_argument("--instrument", help="instrument name (where the mapping gives none)")
    ident.add_argument("--band", help="band, e.g. r (where the mapping gives none)")
    ident.add_argument("--visit-key", metavar="CARD", help="header card holding the visit")
    ident.add_argument("--detector-key", metavar="CARD", help="header card holding the detector")
    ident.add_argument(
        "--mapping",
        type=Path,
        metavar="FILE",
        help="CSV (columns file,visit,detector,band,instrument) or JSON mapping of file names",
    )
    plain = parser.add_argument_group("plain FITS input")
    plain.add_argument("--hdu", help="HDU of the image (index or EXTNAME)")
    for kind, example in (("weight", "ooi=oow"), ("variance", ".var"), ("mask", "ooi=ood")):
        plain.add_argument(
            f"--{kind}-suffix",
            metavar="SUFFIX|OLD=NEW",
            help=f"{kind} file of each image: a suffix before .fits or a substitution in the "
            f"file name (e.g. {example})",
        )
    plain.add_argument("--mask-codes", choices=["decam"], help="DQ codes of a known instrument")
    plain.add_argument("--gain", type=float, help="electrons per count, for an estimated variance")
    store = parser.add_argument_group("storage")
    store.add_argument(
        "--transfer",
        choices=["copy", "move", "symlink", "hardlink"],
        default="copy",
        help="how skydiff files are put in the repository (default: copy)",
    )
    store.add_argument(
        "--no-characterize",
        action="store_true",
        help="ingest exposures without a PSF as they are",
    )
    store.add_argument("--overwrite", action="store_true", help="replace ingested calexps")
    store.add_argument("--skip-existing", action="store_true", help="skip ingested calexps")
    add_config_options(parser)
    parser.set_defaults(handler=run_ingest)


def _read_options(args: argparse.Namespace) -> dict:
    from ..io import DECAM_CP_MASK_VALUES

    options: dict = {}
    if args.hdu is not None:
        options["hdu"] = int(args.hdu) if args.hdu.isdigit() else args.hdu
    if args.gain is not None:
        options["gain"] = args.gain
    if args.mask_codes == "decam":
        options["mask_values"] = DECAM_CP_MASK_VALUES
    return options


def run_ingest(args: argparse.Namespace) -> int:
    from ..characterize import CharacterizeConfig
    from ..pipeline import Repository

    repo = Repository(args.repo)
    companions = {
        kind: spec
        for kind in ("weight", "variance", "mask")
        if (spec := getattr(args, f"{kind}_suffix")) is not None
    }
    refs = repo.ingest(
        args.files,
        instrument=args.instrument,
        band=args.band,
        mapping=args.mapping,
        characterize=not args.no_characterize,
        transfer=args.transfer,
        visit_key=args.visit_key,
        detector_key=args.detector_key,
        companions=companions,
        read_options=_read_options(args),
        characterize_config=configured(CharacterizeConfig(), args),
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
    )
    for ref in refs:
        print(_describe(ref))
    skipped = len(args.files) - len(refs)
    print(
        f"Ingested {len(refs)} calexp(s) into {repo.root}"
        + (f"; skipped {skipped} already ingested" if skipped else "")
    )
    return 0
