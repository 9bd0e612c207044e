"""Command line: ``python -m disclatent <command> ...`` (also installed as ``disclatent``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .io import DataError


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import format_report, inspect_path

    reports = inspect_path(args.path)
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(format_report(reports))
    return 0


def _cmd_phantom(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .phantom import write_phantom

    start = time.perf_counter()
    with tqdm(total=args.patients, desc="phantom patients", unit="patient",
              disable=args.quiet) as bar:
        write_phantom(args.out, n_patients=args.patients, seed=args.seed, workers=args.workers,
                      progress=lambda done, total: bar.update(done - bar.n))
    if not args.quiet:
        print(f"wrote {args.patients} patients to {args.out} in "
              f"{time.perf_counter() - start:.1f} s")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .download import download_spider

    download_spider(args.out, progressbar=not args.quiet)
    print(f"SPIDER is in {args.out}")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from .book import build_book

    build_book(profile=args.profile, data=args.data, build_dir=Path(args.build_dir),
               html=not args.no_html, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="disclatent",
        description="Latent and geometric description of lumbar discs from SPIDER-format masks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="list series, spacing, orientation and discs of masks")
    p.add_argument("path", help="a mask file, a folder of masks, or a SPIDER folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("phantom", help="write a synthetic cohort in SPIDER's layout")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--patients", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("download-spider", help="download SPIDER from Zenodo (checksummed)")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("book", help="execute the notebooks (cached) and build the HTML book")
    p.add_argument("--profile", default="default", choices=["quick", "default", "paper"])
    p.add_argument("--data", default="", help="a SPIDER folder (default: the phantom)")
    p.add_argument("--build-dir", default="_build")
    p.add_argument("--no-html", action="store_true", help="execute notebooks only")
    p.add_argument("--force", action="store_true", help="re-execute every notebook")
    p.set_defaults(func=_cmd_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
