"""Scaling of the per-series steps over Dask workers: disc isolation, geometry, encoding
with an autoencoder and segmentation inference.

    .venv/bin/python benchmarks/bench_scale.py [--data FOLDER] [--patients 8] [--workers 1 2]
                                               [--no-segmentation]

On a rehearsal cohort (``phantom --like-spider``: SPIDER's slice and pixel spacings and discs
per series; written to a temporary folder unless ``--data`` is given), each step runs over
every series from an empty cache, serially and on a LocalCluster of 1 and 2 workers (one
thread each). Every run is a fresh Python process, so its peak memory is its own: the
parent's peak resident set (the serial run, or the client of a cluster run) and that of its
largest worker. Printed per step: series/s and discs/s; then the wall time projected for
30,000 spines (one series each) on N workers, from the per-worker rate measured with the most
workers. Writes ``benchmarks/results/scale.json``.

Encoding and segmentation use the default profile's networks with seeded, untrained
weights: their cost does not depend on the weights' values (the masks they write do, which
this benchmark does not read).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

OUT = Path(__file__).parent / "results" / "scale.json"
SPINES = 30_000
STEPS = ("isolation", "geometry", "encoding", "segmentation")


def _models(root: Path) -> tuple[Path, Path]:
    """An autoencoder and a segmentation model folder (default profile, untrained)."""
    from disclatent.autoencoder.config import AEConfig
    from disclatent.autoencoder.training import DiscAE
    from disclatent.segmentation.config import CONFIG_FILE, MODEL_FILE, config_from_profile
    from disclatent.segmentation.training import _new_fit

    ae_dir, seg_dir = root / "ae", root / "seg"
    if not ae_dir.exists():
        DiscAE(AEConfig.from_profile("default", 4), device="cpu").save(ae_dir)
    if not seg_dir.exists():
        cfg = config_from_profile("default", "UNet")
        seg_dir.mkdir(parents=True)
        _new_fit(cfg).save(seg_dir / MODEL_FILE)
        (seg_dir / CONFIG_FILE).write_text(json.dumps({"config": cfg.to_json()}))
    return ae_dir, seg_dir


def one_step(step: str, data: Path, models: Path, scheduler: str, workers: int, work: Path):
    """Run one step over every series; returns (series, discs) counted from its output."""
    from disclatent.discs.store import build_disc_store, load_disc_store, mask_files

    ae_dir, seg_dir = models / "ae", models / "seg"
    kw = dict(scheduler=scheduler, workers=workers)
    n_series = len(mask_files(data, None))
    if step == "isolation":
        store = build_disc_store(
            data,
            work / "discs.npz",
            size=32,
            spacing_mm=(2.0, 2.0, 2.0),
            progress=False,
            modalities=None,
            skip_errors=True,
            **kw,
        )
        return n_series, len(load_disc_store(store))
    if step == "geometry":
        from disclatent.discs.features import measure_masks

        geo = measure_masks(
            data,
            modalities=None,
            progress=False,
            skip_errors=True,
            cache_dir=work / "geometry",
            **kw,
        )
        return n_series, len(geo)
    if step == "encoding":
        from disclatent.autoencoder.encoding import encode_masks

        table, _ = encode_masks(
            ae_dir, data, None, cache_dir=work / "encoding", progress=False, **kw
        )
        return n_series, len(table)
    from disclatent.segmentation.inference import predict_images

    table = predict_images(seg_dir, data / "images", work / "seg", skip_errors=True, **kw)
    return len(table), int(table["n_discs"].sum())


def child(args: argparse.Namespace) -> None:
    """One timed run in this (fresh) process; prints one JSON line."""
    work = Path(args.work)
    work.mkdir(parents=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        series, discs = one_step(
            args.step, Path(args.data), Path(args.models), args.scheduler, args.n, work
        )
    wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(
        json.dumps(
            {
                "step": args.step,
                "scheduler": args.scheduler,
                "workers": args.n,
                "series": series,
                "discs": discs,
                "wall_s": round(wall, 2),
                "series_per_s": round(series / wall, 3),
                "discs_per_s": round(discs / wall, 2),
                "peak_rss_mb": {"process": round(own), "largest_worker": round(workers)},
            }
        )
    )


def run_child(step: str, data: Path, models: Path, scheduler: str, n: int, work: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--step",
        step,
        "--data",
        str(data),
        "--models",
        str(models),
        "--scheduler",
        scheduler,
        "--n",
        str(n),
        "--work",
        str(work),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if scheduler == "serial" else dict(os.environ)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="", help="a SPIDER-format folder (default: rehearsal)")
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--no-segmentation", action="store_true", help="skip the slowest step")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("--step", "--models", "--scheduler", "--work"):
        ap.add_argument(name, default="", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    steps = [s for s in STEPS if not (args.no_segmentation and s == "segmentation")]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "rehearsal"
        if not args.data:
            from disclatent.data.phantom.rehearsal import write_rehearsal

            t0 = time.perf_counter()
            write_rehearsal(data, n_patients=args.patients, workers=max(args.workers))
            print(f"rehearsal cohort: {args.patients} patients in {time.perf_counter() - t0:.0f} s")
        models = Path(tmp) / "models"
        _models(models)
        runs = []
        for step in steps:
            for scheduler, n in [("serial", 1)] + [("local", n) for n in args.workers]:
                r = run_child(
                    step, data, models, scheduler, n, Path(tmp) / f"{step}-{scheduler}-{n}"
                )
                runs.append(r)
                print(
                    f"{step:>12} {scheduler:>6} x{n}: {r['series']} series, {r['discs']} discs "
                    f"in {r['wall_s']:.1f} s -> {r['series_per_s']:.3f} series/s, "
                    f"{r['discs_per_s']:.2f} discs/s; peak RSS process "
                    f"{r['peak_rss_mb']['process']} MB, largest worker "
                    f"{r['peak_rss_mb']['largest_worker']} MB",
                    flush=True,
                )
    projection: dict[str, dict[int, float]] = {}
    for step in steps:
        local = [r for r in runs if r["step"] == step and r["scheduler"] == "local"]
        best = max(local, key=lambda r: r["workers"])
        per_worker = best["series_per_s"] / best["workers"]
        projection[step] = {
            n: round(SPINES / (per_worker * n) / 3600.0, 2) for n in (2, 16, 64, 256)
        }
    total = {n: round(sum(p[n] for p in projection.values()), 2) for n in (2, 16, 64, 256)}
    for n in (2, 16, 64, 256):
        parts = ", ".join(f"{s} {projection[s][n]:.1f} h" for s in steps)
        print(f"projected for {SPINES} spines on {n} workers: {total[n]:.1f} h ({parts})")
    record = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "cohort": str(args.data or f"rehearsal, {args.patients} patients"),
        "runs": runs,
        "projected_hours_30000_spines": {"total": total, **projection},
        "command": "python benchmarks/bench_scale.py "
        + (f"--data {args.data} " if args.data else f"--patients {args.patients} ")
        + "--workers "
        + " ".join(map(str, args.workers))
        + (" --no-segmentation" if args.no_segmentation else ""),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = OUT.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(record, indent=2) + "\n")
    tmp_out.replace(OUT)
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
