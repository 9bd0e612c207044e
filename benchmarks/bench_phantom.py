"""Phantom cohort speed and determinism: 40 patients in at most 60 s on a 2-core machine.

.venv/bin/python benchmarks/bench_phantom.py [--patients 40] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from disclatent.data.phantom import tree_digest, write_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        times, digests = [], []
        for run in ("a", "b"):
            start = time.perf_counter()
            out = write_phantom(
                Path(tmp) / run, n_patients=args.patients, seed=0, workers=args.workers
            )
            times.append(time.perf_counter() - start)
            digests.append(tree_digest(out))
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    print(f"cores: {os.cpu_count()}, workers: {args.workers or 'default'}")
    print(
        f"{args.patients} patients ({2 * args.patients} series): "
        f"{times[0]:.1f} s and {times[1]:.1f} s (target <= 60 s); {size_mb:.0f} MB"
    )
    print(f"byte-identical on re-run: {digests[0] == digests[1]}")


if __name__ == "__main__":
    main()
