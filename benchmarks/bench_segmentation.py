"""Inference time per series of the segmentation models (target: at most 10 s on a CPU).

Times the whole per-series path of ``segment predict``: read the image, resample and
normalise, sliding-window inference, resample the probabilities back, threshold, split into
disc instances, write the SPIDER mask. Prints one line per series and a summary per model,
with the load average (other processes share the cores) and the number of torch threads.

    .venv/bin/python benchmarks/bench_segmentation.py                      # default profile
    .venv/bin/python benchmarks/bench_segmentation.py --models-dir _build/models/seg-default
    .venv/bin/python benchmarks/bench_segmentation.py --profile paper --models SwinUNETR

Without ``--models-dir`` (or when a model is missing there) the profile's network is timed
with untrained weights: the compute is the same, but the instance post-processing of a noisy
untrained output may differ, so trained models are preferred when available.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from disclatent.data.phantom import write_phantom
from disclatent.data.spider import SpiderFolder
from disclatent.data.volume import read_image, series_name, write_image
from disclatent.profiles import get_profile
from disclatent.segmentation.config import config_from_profile
from disclatent.segmentation.inference import Segmenter
from disclatent.segmentation.network import build_model


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", choices=["quick", "default", "paper"])
    parser.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="models to time (default: the profile's comparison)",
    )
    parser.add_argument(
        "--models-dir",
        default="",
        help="folder holding trained model folders named after the models",
    )
    parser.add_argument(
        "--data",
        default="",
        help="a SPIDER folder (default: a 4-patient "
        "phantom, one patient per site, written to a temporary folder)",
    )
    parser.add_argument("--series", type=int, default=4, help="series to time per model")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: the model's setting, 1 by default)",
    )
    args = parser.parse_args()

    settings = get_profile(args.profile)
    models = args.models or list(settings.seg_models)
    with tempfile.TemporaryDirectory() as tmp:
        root = (
            Path(args.data)
            if args.data
            else write_phantom(Path(tmp) / "phantom", 4, seed=1, workers=1)
        )
        folder = SpiderFolder(root)
        series = folder.series(("t1",))[: args.series]
        print(
            f"profile {args.profile}; {len(series)} T1 series from {root}; torch "
            f"{torch.__version__}, {os.cpu_count()} CPUs; load average {_load()}"
        )
        summary = []
        for name in models:
            trained = Path(args.models_dir) / name if args.models_dir else None
            if trained is not None and (trained / "model.safetensors").exists():
                seg, what = Segmenter(trained, device="cpu"), f"trained ({trained})"
            else:
                cfg = config_from_profile(args.profile, model=name, device="cpu")
                torch.manual_seed(0)
                seg, what = Segmenter.from_model(build_model(cfg), cfg), "untrained weights"
            if args.threads:  # otherwise the model's own setting (1 thread by default)
                torch.set_num_threads(args.threads)
            seg.segment(read_image(folder.image_path(series[0])))  # warm-up
            times = []
            for s in series:
                t0 = time.perf_counter()
                image = read_image(folder.image_path(s))
                mask, info = seg.segment(image)
                write_image(image.with_array(mask.array), Path(tmp) / "out" / f"{s}.mha")
                dt = time.perf_counter() - t0
                times.append(dt)
                print(
                    f"  {name:10s} {series_name(s):8s} {image.size} voxels (i, j, k): "
                    f"{dt:6.2f} s, {info['n_discs']} discs, {torch.get_num_threads()} "
                    f"thread(s)  [load {_load()}]"
                )
            summary.append((name, what, np.mean(times), np.max(times)))
        print("\nmodel       mean s/series  max s/series  <= 10 s?  weights")
        for name, what, mean, worst in summary:
            print(
                f"{name:10s} {mean:13.2f} {worst:13.2f}  {'yes' if worst <= 10 else 'NO':>8s}"
                f"  {what}"
            )
        print(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
