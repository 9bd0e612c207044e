"""Time to the paper's criterion: how fast the disc autoencoder reaches a mean training IoU of
0.995 (every training disc, eval mode, checked after every epoch) on a 2-core CPU.

The target (issue 12): k = 4 on the default phantom cohort (about 170 training discs, 20 %
of patients held out as in the autoencoder chapter) within 180 s. The limit is progress per
unit of compute, so ``--ideas`` measures a ladder of training ideas, each adding one change
to the one before, and prints seconds and epochs to 0.995 (or the IoU reached when the
wall-clock cap of ``--cap-seconds`` ends a run). Run from the project root::

    .venv/bin/python benchmarks/bench_autoencoder.py [--profile default] [--threads 2]
        [--latent-dim 4] [--build-dir _build] [--heldout-fraction 0.2] [--cap-seconds 240]
        [--ideas] [--norm group] [--decoder-kernel 4] [--batch-size 2] [--lr 3e-3]
        [--schedule cosine] [--hard-weight 5] [--channels 8,32,256] [--epochs 200]
        [--strategy decoder_first] [--encoder-epochs 80] [--code-lr-scale 1]
        [--code-noise 0] [--seed 0]

Without ``--ideas`` one run with the profile's settings (and any overrides) is measured. The
cohort is the profile's phantom (written under ``<build>/data`` when missing) or ``--data``.
The machine's load average is printed: on a shared machine the wall time says as much about
the neighbours as about the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

#: the ladder of ideas: each row changes the settings of the row before it
IDEAS: list[tuple[str, dict[str, Any]]] = [
    (
        "before (batch norm, kernel-3 decoder, 16-32-64, batch 4, lr 1e-3 one-cycle)",
        dict(
            strategy="joint",
            norm="batch",
            decoder_kernel=3,
            channels=(16, 32, 64),
            batch_size=4,
            lr=1e-3,
            schedule="onecycle",
            hard_weight=0.0,
            freeze_bn_epoch=10,
        ),
    ),
    (
        "GroupNorm, lr 3e-3 cosine",
        dict(norm="group", lr=3e-3, schedule="cosine", freeze_bn_epoch=0),
    ),
    ("+ kernel-4 decoder", dict(decoder_kernel=4)),
    ("+ channels 8-32-256 (wide coarse stage)", dict(channels=(8, 32, 256))),
    ("+ wrong voxels weigh 6 in the BCE", dict(hard_weight=5.0)),
    ("+ batch 2", dict(batch_size=2)),
    (
        "+ decoder first (free codes from N(0, 1)), then the encoder",
        dict(strategy="decoder_first", code_init="random"),
    ),
    ("+ codes start at the discs' PCA scores (the default profile)", dict(code_init="pca")),
]


class _OutOfTime(Exception):
    pass


def _measure(train, held, cfg, cap: float) -> dict[str, Any]:
    """Train until 0.995, the epoch budget or ``cap`` seconds; the run's figures, with the
    mean IoU of the held-out discs under the model as it stands at the end."""
    import tempfile

    from disclatent import autoencoder as A

    rows: list[dict] = []
    start = time.perf_counter()

    def report(row: dict) -> None:
        rows.append(dict(row, wall=time.perf_counter() - start))
        iou = row.get("train_iou", float("nan"))
        if row["epoch"] % 20 == 0 or iou >= cfg.target_iou:
            what = "train IoU" if row["stage"] != "decoder" else "decoder IoU (codes)"
            name = "train_iou" if row["stage"] != "decoder" else "decoder_iou"
            print(
                f"    epoch {row['epoch']:4d}  {row['stage']:<7} {what} {row[name]:.4f} "
                f"(min {row[name + '_min']:.3f})  {rows[-1]['wall']:.0f} s",
                flush=True,
            )
        if time.perf_counter() - start > cap:
            raise _OutOfTime

    ae = A.DiscAE(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ae.fit(train, out_dir=Path(tmp), progress=False, callback=report)
        except _OutOfTime:
            pass
    measured = [r for r in rows if "train_iou" in r]  # the decoder stage has no encoder yet
    hit = next((r for r in measured if r["train_iou"] >= cfg.target_iou), None)
    best = max((r["train_iou"] for r in measured), default=float("nan"))
    decoder = [r for r in rows if r["stage"] == "decoder"]
    return {
        "epochs_run": len(rows),
        "converged": hit is not None,
        "epochs_to_0995": hit["epoch"] if hit else None,
        "seconds_to_0995": round(hit["wall"], 1) if hit else None,
        "best_train_iou": round(best, 4),
        "seconds_run": round(rows[-1]["wall"], 1),
        "seconds_per_epoch": round(rows[-1]["wall"] / len(rows), 2),
        "heldout_iou": round(float(ae.iou(held).mean()), 4) if len(held) else None,
        "decoder_epochs": len(decoder),
        "decoder_seconds": round(decoder[-1]["wall"], 1) if decoder else None,
    }


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = ("norm", "decoder_kernel", "batch_size", "lr", "schedule", "hard_weight")
    for name in (*names, "strategy", "encoder_epochs", "code_lr_scale", "code_noise", "seed"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.channels:
        out["channels"] = tuple(int(c) for c in args.channels.split(","))
    if args.epochs:
        out["max_epochs"] = args.epochs
    return out


def main(argv: list[str] | None = None) -> int:
    from disclatent.autoencoder.config import DECODER_KERNELS, NORMS, SCHEDULES, STRATEGIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--data", default="", help="a SPIDER folder (default: the phantom)")
    ap.add_argument("--build-dir", default="_build")
    ap.add_argument("--latent-dim", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--heldout-fraction", type=float, default=0.2)
    ap.add_argument("--cap-seconds", type=float, default=240.0, help="wall-clock cap per run")
    ap.add_argument("--ideas", action="store_true", help="measure the ladder of ideas")
    ap.add_argument(
        "--from-idea",
        type=int,
        default=0,
        help="with --ideas: measure the ladder from this row (0-based) on and keep the rows "
        "before it from the JSON file (each kept row says its own epoch budget)",
    )
    ap.add_argument("--norm", choices=NORMS)
    ap.add_argument("--decoder-kernel", type=int, choices=DECODER_KERNELS)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--schedule", choices=SCHEDULES)
    ap.add_argument("--hard-weight", type=float)
    ap.add_argument("--channels", default="", help="encoder channels per stage, e.g. 8,32,256")
    ap.add_argument(
        "--epochs", type=int, default=None, help="epoch budget (decoder first: its decoder stage)"
    )
    ap.add_argument("--strategy", choices=STRATEGIES)
    ap.add_argument("--encoder-epochs", type=int, help="encoder-stage budget (decoder first)")
    ap.add_argument("--code-lr-scale", type=float, help="codes' learning rate / lr")
    ap.add_argument("--code-noise", type=float, help="latent noise (x the codes' sd)")
    ap.add_argument("--seed", type=int, help="training seed")
    ap.add_argument(
        "--json",
        default="",
        help="also write the results to this JSON file (with --ideas, by default "
        "benchmarks/results/autoencoder_ideas.json, which the autoencoder chapter shows)",
    )
    args = ap.parse_args(argv)
    os.environ["DISCLATENT_CPU_THREADS"] = str(args.threads)

    import torch

    from disclatent import autoencoder as A
    from disclatent.data.cohort import cohort_root
    from disclatent.data.volume import write_text_atomic
    from disclatent.paths import benchmark_result

    torch.set_num_threads(args.threads)
    base = A.AEConfig.from_profile(args.profile, args.latent_dim)
    root = cohort_root(args.profile, args.data, args.build_dir)
    discs = A.load_discs(root, base)
    tr, ho = A.patient_split(discs.table["patient"], args.heldout_fraction, seed=base.seed)
    train, held = discs.cubes[tr], discs.cubes[ho]
    print(
        f"cohort {root}: {len(discs.cubes)} discs, training on {len(train)}; cube "
        f"{base.size}^3 at {base.spacing_mm} mm; k={base.latent_dim}; torch threads "
        f"{args.threads}; cap {args.cap_seconds:.0f} s per run; load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    out = args.json or (str(benchmark_result("autoencoder_ideas")) if args.ideas else "")
    kept: list[dict] = []
    if args.ideas:
        runs, cfg = [], base
        for name, change in IDEAS:
            cfg = replace(cfg, **change)
            runs.append((name, cfg))
        if args.from_idea:
            kept = json.loads(Path(out).read_text())["results"][: args.from_idea]
            assert [r["idea"] for r in kept] == [n for n, _ in runs[: args.from_idea]]
            runs = runs[args.from_idea :]
    else:
        runs = [(f"profile {args.profile}", replace(base, **_overrides(args)))]
    results = list(kept)
    for name, cfg in runs:
        print(f"  {name}", flush=True)
        r = {
            "idea": name,
            "epoch_budget": cfg.max_epochs,
            **_measure(train, held, cfg, args.cap_seconds),
        }
        r["load_average"] = round(os.getloadavg()[0], 2)
        results.append(r)
        print("  " + json.dumps(r), flush=True)
    print(
        f"\n{'idea':<78} {'s to 0.995':>10} {'epochs':>7} {'best IoU':>9} {'held out':>9} "
        f"{'s/epoch':>8}"
    )
    for r in results:
        s = f"{r['seconds_to_0995']:.0f}" if r["converged"] else "-"
        e = str(r["epochs_to_0995"]) if r["converged"] else f">{r['epochs_run']}"
        print(
            f"{r['idea']:<78} {s:>10} {e:>7} {r['best_train_iou']:>9.4f} "
            f"{r.get('heldout_iou') or float('nan'):>9.4f} {r['seconds_per_epoch']:>8.2f}"
        )
    summary = {
        "profile": args.profile,
        "n_train": len(train),
        "latent_dim": base.latent_dim,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cap_seconds": args.cap_seconds,
        "results": results,
    }
    if out:
        write_text_atomic(json.dumps(summary, indent=1) + "\n", Path(out))
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
