"""Speed of disc isolation plus geometry, on one CPU core.

    .venv/bin/python benchmarks/bench_geometry.py [--data SPIDER_FOLDER] [--patients 8]

Reads every mask of a cohort (the phantom by default, written to a temporary folder), then
times, per mask: finding the discs, isolating each into a 64^3 cube at the paper's spacing
and measuring its features in the mask's own space. Reading the files is timed apart (it
depends on the disk, not on this code). Threads are limited to one (SimpleITK, BLAS). The
target of issue 3 is at least 100 discs per second.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import SimpleITK as sitk  # noqa: E402

from disclatent.conventions import PAPER_SPACING  # noqa: E402
from disclatent.data.phantom import write_phantom  # noqa: E402
from disclatent.data.volume import read_mask  # noqa: E402
from disclatent.discs import geometry as geo  # noqa: E402
from disclatent.discs import isolation as iso  # noqa: E402
from disclatent.discs.store import mask_files  # noqa: E402

TARGET = 100.0  # discs per second


def run(masks, repeats: int) -> tuple[list[float], list[float], int]:
    """Seconds per repeat for isolation + geometry, and for geometry of the cubes alone."""
    both, cubes_only, n = [], [], 0
    for _ in range(repeats):
        cubes = []
        start = time.perf_counter()
        n = 0
        for mask in masks:
            discs = iso.find_discs(mask)
            for d in discs:
                cubes.append(iso.isolate_disc(mask, d))
                geo.measure_disc(mask, d)
            n += len(discs)
        both.append(time.perf_counter() - start)
        start = time.perf_counter()
        for c in cubes:
            geo.measure_cube(c.cube, c.spacing_mm)
        cubes_only.append(time.perf_counter() - start)
    return both, cubes_only, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="", help="a SPIDER folder (default: a new phantom)")
    parser.add_argument("--patients", type=int, default=8, help="phantom patients")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when below {TARGET:.0f} discs/s"
    )
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = (
            Path(args.data)
            if args.data
            else write_phantom(Path(tmp) / "phantom", n_patients=args.patients, seed=0, workers=1)
        )
        files = mask_files(root, modalities=None)
        start = time.perf_counter()
        masks = [read_mask(f) for f in files]
        read_s = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iso.DiscWarning)
        run(masks[:2], 1)  # warm up
        both, cubes_only, n = run(masks, args.repeats)
    best, median = min(both), statistics.median(both)
    rate = n / median
    print(
        f"{len(masks)} masks, {n} discs; reading the files: {read_s:.2f} s "
        f"({n / read_s:.0f} discs/s, not included below)"
    )
    print(
        f"isolation (64^3, {tuple(PAPER_SPACING)} mm) + geometry, 1 thread: "
        f"{1e3 * median / n:.2f} ms per disc, {rate:.0f} discs/s (median of {args.repeats}; "
        f"best {n / best:.0f} discs/s)"
    )
    print(
        f"geometry of the 64^3 cubes alone: {1e3 * statistics.median(cubes_only) / n:.2f} ms "
        f"per disc, {n / statistics.median(cubes_only):.0f} discs/s"
    )
    verdict = "meets" if rate >= TARGET else "BELOW"
    print(
        f"target {TARGET:.0f} discs/s: {verdict} (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; a shared machine is slower)"
    )
    return 1 if args.check and rate < TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())
