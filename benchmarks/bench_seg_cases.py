"""Memory of segmentation training's cases: held in memory, or kept on disk and read per patch.

    .venv/bin/python benchmarks/bench_seg_cases.py --data /tmp/rehearsal-218 [--batches 200]

Training resamples every training and validation series of the split to the network grid.
Held in memory (``load_cases(..., case_dir=None)``) the cohort's cases are all resident at
once; kept on disk (``case_dir=...``, what ``segment train`` and the book do) each patch maps
its file, and the mapping goes with the batch. Each mode runs in a fresh child process that
loads the cases of the profile's split (train and validation roles) and cuts ``--batches``
training batches from them. Printed per mode: the time to load (and, on disk, to write and
then to reopen) the cases, the resident memory after loading and after sampling, the peak of
the process (``ru_maxrss``, MB) and patches per second; the figures are written to
``benchmarks/results/seg_cases.json``.

The cases of the real SPIDER series are larger than the phantom's: the script also prints the
network-grid size of the real mask ``../shared/data/spider/masks/1_t1.mha`` (when present) and
what the real cohort's T1 series would hold in memory at that size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "seg_cases.json"


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def child(mode: str, data: Path, profile: str, batches: int, store: Path) -> dict:
    from disclatent.segmentation.config import config_from_profile
    from disclatent.segmentation.data import load_cases, make_batch, make_split, site_table

    cfg = config_from_profile(profile, model="UNet")
    split = make_split(site_table(data, cfg.modalities), cfg.test_site, cfg.val_fraction, cfg.seed)
    case_dir = None if mode == "memory" else store
    out: dict = {"mode": mode, "rss_start_mb": round(_rss_mb())}
    t0 = time.perf_counter()
    cases = []
    for role in ("train", "val"):
        cases += load_cases(data, split, role, cfg, case_dir)[0]
    out["series"] = len(cases)
    out["load_s"] = round(time.perf_counter() - t0, 1)
    if mode == "disk":  # the second opening: what a resumed run or the next model pays
        t0 = time.perf_counter()
        cases = []
        for role in ("train", "val"):
            cases += load_cases(data, split, role, cfg, case_dir)[0]
        out["reopen_s"] = round(time.perf_counter() - t0, 1)
    out["rss_after_load_mb"] = round(_rss_mb())
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(batches):
        make_batch(cases, cfg.batch_size, cfg.patch, rng, cfg.pos_fraction, cfg.augment)
    seconds = time.perf_counter() - t0
    out["patches_per_s"] = round(batches * cfg.batch_size / seconds, 1)
    out["rss_after_sampling_mb"] = round(_rss_mb())
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def real_series_mb(profile: str) -> tuple[tuple[int, ...], float] | None:
    """Network-grid shape of the real mask of SPIDER patient 1 (T1) and its case's MB."""
    from disclatent.data.volume import read_mask
    from disclatent.segmentation.config import config_from_profile
    from disclatent.segmentation.data import resample_to_spacing

    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "spider" / "masks"
    path = path / "1_t1.mha"
    if not path.exists():
        return None
    cfg = config_from_profile(profile, model="UNet")
    grid = resample_to_spacing(read_mask(path), cfg.network_spacing, label=True)
    shape = grid.array.shape
    return shape, float(np.prod(shape)) * (4 + 1) / 2**20  # float32 image + uint8 label


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/rehearsal-218")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--child", choices=["memory", "disk"], help=argparse.SUPPRESS)
    parser.add_argument("--store", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = Path(args.data)
    if args.child:
        print(json.dumps(child(args.child, data, args.profile, args.batches, Path(args.store))))
        return 0
    if not (data / "masks").is_dir():
        sys.exit(f"{data}: not a SPIDER-format folder (no masks/)")
    print(f"cohort {data}, profile {args.profile}, {args.batches} batches, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="seg-cases-") as store:
        results = []
        for mode in ("memory", "disk"):
            cmd = [sys.executable, __file__, "--data", str(data), "--profile", args.profile]
            cmd += ["--batches", str(args.batches), "--child", mode, "--store", store]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        disk_mb = sum(f.stat().st_size for f in Path(store).iterdir()) / 2**20
    for r in results:
        extra = f", reopened in {r['reopen_s']} s" if "reopen_s" in r else ""
        print(
            f"{r['mode']:>6}: {r['series']} series loaded in {r['load_s']} s{extra}; resident "
            f"{r['rss_start_mb']} MB at start, {r['rss_after_load_mb']} MB loaded, "
            f"{r['rss_after_sampling_mb']} MB after sampling; peak {r['peak_rss_mb']} MB; "
            f"{r['patches_per_s']} patches/s"
        )
    n = results[0]["series"]
    print(f"store on disk: {disk_mb:.0f} MB for {n} series ({disk_mb / max(n, 1):.1f} MB each)")
    record = {"cohort": str(data), "profile": args.profile, "batches": args.batches}
    record |= {"modes": results, "store_mb": round(disk_mb)}
    real = real_series_mb(args.profile)
    if real is not None:
        shape, mb = real
        print(
            f"real SPIDER 1_t1 on the network grid: {shape} (SI, AP, LR), {mb:.1f} MB per case; "
            f"in memory, {n} such series would hold {n * mb / 1024:.1f} GB, "
            f"all 196 real T1 series {196 * mb / 1024:.1f} GB"
        )
        record |= {"real_1_t1_network_shape": list(shape), "real_case_mb": round(mb, 1)}
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
