"""Command line: ``python -m disclatent <command> ...`` (also installed as ``disclatent``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from disclatent.data.labels import DISC_LABEL_OFFSET
from disclatent.data.spider import parse_modalities
from disclatent.data.volume import DataError, write_csv_atomic
from disclatent.parallel import SCHEDULER_ENV
from disclatent.paths import DEFAULT_BUILD_DIR, BuildPaths
from disclatent.profiles import PROFILES


def _cmd_inspect(args: argparse.Namespace) -> int:
    from disclatent.data.survey import format_report, inspect_path

    reports = inspect_path(args.path)
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(format_report(reports))
    return 0


def _cmd_phantom(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from disclatent.data.phantom import write_phantom
    from disclatent.data.phantom.rehearsal import spider_patients, write_rehearsal

    start = time.perf_counter()
    if args.like_spider:
        total = len(spider_patients()[: args.patients or None])
    else:
        total = args.patients or 40
    with tqdm(total=total, desc="phantom patients", unit="patient", disable=args.quiet) as bar:
        report = lambda done, _total: bar.update(done - bar.n)  # noqa: E731
        if args.like_spider:
            write_rehearsal(args.out, args.patients, args.seed, args.workers, report)
        else:
            write_phantom(args.out, total, args.seed, args.workers, report)
    if not args.quiet:
        print(f"wrote {total} patients to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from disclatent.data.download import download_spider

    download_spider(args.out, progressbar=not args.quiet)
    print(f"SPIDER is in {args.out}")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from disclatent.report.book import build_book

    build_book(
        profile=args.profile,
        data=args.data,
        build_dir=Path(args.build_dir),
        html=not args.no_html,
        force=args.force,
    )
    return 0


def _cmd_explore(args: argparse.Namespace) -> int:
    from disclatent.app.serve import serve

    return serve(args.profile, args.build_dir, args.data, args.port)


def _cmd_geometry(args: argparse.Namespace) -> int:
    from disclatent.discs.features import measure_masks
    from disclatent.discs.isolation import parse_label_spec

    labels = parse_label_spec(args.labels) if args.labels else None
    modalities = parse_modalities(args.modalities)
    start = time.perf_counter()
    out = Path(args.out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = measure_masks(
            args.masks,
            labels,
            label_offset=args.label_offset,
            modalities=modalities,
            progress=not args.quiet,
            step_mm=args.step_mm,
            skip_errors=True,
            workers=args.workers,
            cache_dir=out.with_name(out.name + ".series"),
        )
    write_csv_atomic(table, out, float_format="%.6g")
    skipped = [w for w in caught if str(w.message).startswith("skipped: ")]
    for w in caught:
        if w not in skipped:
            warnings.warn(w.message, stacklevel=2)  # notes about single discs, as raised
    if not args.quiet:
        print(
            f"measured {len(table)} discs of {table['series'].nunique()} masks in "
            f"{time.perf_counter() - start:.1f} s -> {out}"
        )
    if skipped:
        print(f"{len(skipped)} series left out:", file=sys.stderr)
        for w in skipped:
            print(f"  {str(w.message)[len('skipped: ') :]}", file=sys.stderr)
    return 1 if skipped else 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from disclatent.segmentation.config import config_from_profile
    from disclatent.segmentation.inference import predict_images
    from disclatent.segmentation.training import train

    log = None if args.quiet else print
    if args.segment_command == "train":
        overrides = {
            k: v
            for k, v in (
                ("max_epochs", args.max_epochs),
                ("iters_per_epoch", args.iters_per_epoch),
                ("max_minutes", args.max_minutes),
                ("test_site", args.test_site),
                ("device", args.device),
                ("threads", args.threads),
            )
            if v is not None
        }
        cfg = config_from_profile(args.profile, args.model, **overrides)
        result = train(args.data, args.out, cfg, log=log)
        if not args.quiet:
            print(
                f"model written to {args.out} (split in {Path(args.out) / 'split.csv'}); "
                f"best validation IoU {result['best_val_iou']:.4f} at epoch "
                f"{result['best_epoch']}"
            )
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the failures are printed below
        table = predict_images(args.model, args.images, args.out, log=log, skip_errors=True)
    failures = table.attrs["failures"]
    if not args.quiet:
        print(
            f"wrote {len(table)} mask(s) to {Path(args.out) / 'masks'} in "
            f"{table['seconds'].sum():.1f} s"
        )
    if len(failures):
        print(f"{len(failures)} series not segmented:", file=sys.stderr)
        for row in failures.itertuples():
            print(f"  {row.series}: {row.error}", file=sys.stderr)
    return 1 if len(failures) else 0


def _cmd_autoencoder(args: argparse.Namespace) -> int:
    from disclatent.autoencoder import commands

    return {
        "train": commands.cli_train,
        "encode": commands.cli_encode,
        "decode": commands.cli_decode,
    }[args.ae_command](args)


def _cmd_check_pages(args: argparse.Namespace) -> int:
    from disclatent.report.pages import check_pages

    rows = check_pages(args.html, args.screenshots)
    bad = 0
    for r in rows:
        flag = "ok" if not r["broken_images"] and not r["errors"] else "PROBLEM"
        bad += flag != "ok"
        print(
            f"{flag:7} {r['page']}: {r['images']} images ({len(r['broken_images'])} broken), "
            f"{r['tables']} tables, {r['errors']} error outputs"
            + (f", screenshot {r['screenshot']}" if r["screenshot"] else "")
        )
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="disclatent",
        description="Latent and geometric description of lumbar discs from SPIDER-format masks.",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="where per-series steps run: 'local' (a Dask LocalCluster, one process per "
        "core; the default), 'serial', or an existing Dask scheduler's address, e.g. "
        "tcp://host:8786 (SLURM via dask-jobqueue, Kubernetes); same as "
        "$DISCLATENT_SCHEDULER, and passed on to the book's notebooks",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="list series, spacing, orientation and discs of masks")
    p.add_argument("path", help="a mask file, a folder of masks, or a SPIDER folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("phantom", help="write a synthetic cohort in SPIDER's layout")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--patients",
        type=int,
        default=None,
        help="patients (default 40; with --like-spider: all of SPIDER's 218, else its first N)",
    )
    p.add_argument(
        "--like-spider",
        action="store_true",
        help="SPIDER's full structure from its real metadata: its patients, series (T1, T2, "
        "T2-SPACE), spacings, scanners, discs per series and gradings",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("download-spider", help="download SPIDER from Zenodo (checksummed)")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("book", help="execute the notebooks (cached) and build the HTML book")
    p.add_argument("--profile", default="default", choices=list(PROFILES))
    p.add_argument("--data", default="", help="a SPIDER folder (default: the phantom)")
    p.add_argument("--build-dir", default=DEFAULT_BUILD_DIR)
    p.add_argument("--no-html", action="store_true", help="execute notebooks only")
    p.add_argument("--force", action="store_true", help="re-execute every notebook")
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser(
        "explore", help="serve the explorers of the last `make book` with Voila (127.0.0.1)"
    )
    p.add_argument("--profile", default="default", choices=list(PROFILES))
    p.add_argument("--data", default="", help="the SPIDER folder the book read (default: phantom)")
    p.add_argument("--build-dir", default=DEFAULT_BUILD_DIR)
    p.add_argument("--port", type=int, default=8866)
    p.set_defaults(func=_cmd_explore)

    p = sub.add_parser(
        "check-pages",
        help="check the rendered book's images and tables; "
        "screenshot each page with headless Chromium",
    )
    p.add_argument("--html", default=str(BuildPaths(Path(DEFAULT_BUILD_DIR)).html))
    p.add_argument("--screenshots", default="", help="folder for PNG screenshots")
    p.set_defaults(func=_cmd_check_pages)

    p = sub.add_parser("geometry", help="measure every disc of masks (mm, degrees) to a CSV")
    p.add_argument(
        "--masks",
        required=True,
        help="a mask file, a folder of masks (.mha, .nii.gz, ...) or a SPIDER folder",
    )
    p.add_argument("--out", required=True, help="output CSV file")
    p.add_argument(
        "--labels",
        default="",
        help="disc label values, e.g. '201-207' or '11,12,13' (default: "
        "offset+1 to offset+25, SPIDER's 201-225)",
    )
    p.add_argument(
        "--label-offset",
        type=int,
        default=DISC_LABEL_OFFSET,
        help=f"IVD label = value - offset, 1 = L5/S1 (SPIDER: {DISC_LABEL_OFFSET})",
    )
    p.add_argument(
        "--modalities",
        default="all",
        help="SPIDER series to measure, e.g. 't1' or 't1,t2' (default: all)",
    )
    p.add_argument(
        "--step-mm", type=float, default=0.25, help="sampling step of the mid-plane section (mm)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="LocalCluster processes (default: all cores)"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_geometry)

    from disclatent.segmentation.config import MODEL_NAMES

    p = sub.add_parser("segment", help="train a disc segmentation model, or segment images")
    seg = p.add_subparsers(dest="segment_command", required=True)
    t = seg.add_parser("train", help="train on a SPIDER-format folder, one site held out")
    t.add_argument(
        "--data", required=True, help="a SPIDER-format folder (images/, masks/, overview.csv)"
    )
    t.add_argument("--out", required=True, help="model folder (weights, split.csv, history)")
    t.add_argument(
        "--model",
        default=None,
        choices=MODEL_NAMES,
        help="network (default: the profile's; SwinUNETR is SwinUNETR-V2)",
    )
    t.add_argument("--profile", default="default", choices=list(PROFILES))
    t.add_argument("--test-site", default=None, help="site held out (default: auto)")
    t.add_argument("--max-epochs", type=int, default=None, help="override the profile's")
    t.add_argument("--iters-per-epoch", type=int, default=None, help="override the profile's")
    t.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    t.add_argument("--device", default=None, help="auto (default), cpu, cuda, ...")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_segment)
    t = seg.add_parser("predict", help="segment images; write SPIDER-format disc masks")
    t.add_argument("--model", required=True, help="a model folder written by `segment train`")
    t.add_argument(
        "--images", required=True, help="an image file, a folder of images, or a SPIDER folder"
    )
    t.add_argument(
        "--out",
        required=True,
        help="output folder; masks go to OUT/masks/ with the input file names",
    )
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_segment)

    p = sub.add_parser("autoencoder", help="train the disc autoencoder; encode and decode discs")
    aes = p.add_subparsers(dest="ae_command", required=True)
    t = aes.add_parser("train", help="train on the discs of a folder of masks, patients held out")
    t.add_argument(
        "--masks",
        required=True,
        help="a SPIDER folder, a folder of masks (.mha, .nii.gz, ...) or one mask",
    )
    t.add_argument("--latent-dim", type=int, required=True, help="bottleneck size k")
    t.add_argument("--out", required=True, help="model folder (weights, metrics.json, history)")
    t.add_argument("--profile", default="default", choices=list(PROFILES))
    t.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="epoch budget (decoder-first training: of the decoder stage); default: the profile's",
    )
    t.add_argument(
        "--encoder-epochs",
        type=int,
        default=None,
        help="epoch budget of the encoder stage of decoder-first training (default: the profile's)",
    )
    t.add_argument(
        "--heldout-fraction",
        type=float,
        default=None,
        help="share of patients kept out of training (default: the profile's)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--modalities",
        default="t1",
        help="SPIDER series to use, e.g. 't1' or 't1,t2', or 'all' (default t1)",
    )
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_autoencoder)
    t = aes.add_parser("encode", help="latent vectors of every disc of masks, to a CSV")
    t.add_argument("--model", required=True, help="a model folder written by `train`")
    t.add_argument("--masks", required=True, help="a SPIDER folder, a folder of masks or one mask")
    t.add_argument("--out", required=True, help="output CSV (one row per disc)")
    t.add_argument("--modalities", default="t1", help="as for `train`")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_autoencoder)
    t = aes.add_parser("decode", help="masks (.mha, one per row) from latent vectors in a CSV")
    t.add_argument("--model", required=True, help="a model folder written by `train`")
    t.add_argument(
        "--latent",
        required=True,
        help="CSV with columns latent_0 .. latent_{k-1} (e.g. from `encode`)",
    )
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_autoencoder)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.scheduler:
        os.environ[SCHEDULER_ENV] = args.scheduler  # this process and the notebooks it runs
    try:
        return args.func(args)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
