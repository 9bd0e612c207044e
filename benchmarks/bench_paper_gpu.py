"""The `paper` profile on a GPU, end to end: per-chapter times, GPU memory peak, hardware.

Runs the book's notebooks with ``--profile paper`` (the published settings: SwinUNETR-V2 at
96 x 96 x 64, 200-epoch segmentation budgets, the 9.4 M-parameter autoencoder with its
1000-epoch budget) and writes ``benchmarks/results/paper-gpu.json``::

    {"device": "NVIDIA H100 ...", "profile": "paper", "chapter_seconds": {"00_data": ...},
     "total_minutes": ..., "gpu_memory_peak_gb": ..., "complete": true, ...}

which the results chapter shows beside the paper's 2 hours and the CPU build's times.
The GPU memory peak is the device-wide peak of ``nvidia-smi``'s used memory, sampled every
0.5 s while the chapters run (the chapters are separate kernels, so torch's own counters
cannot see them all).

GPU time comes in blocks: ``--minutes`` stops starting new chapters once that much time is
spent, and a later run with the same ``--build-dir`` continues where the last one stopped
(the book's cache reuses the finished chapters, which keep their recorded times; the file
says ``"complete": false`` until every chapter has run). Then ``make book PROFILE=paper``
renders the pages from the same cache::

    .venv/bin/python benchmarks/bench_paper_gpu.py                       # whole profile
    .venv/bin/python benchmarks/bench_paper_gpu.py --minutes 12          # one block of time
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import subprocess
import threading
from pathlib import Path

from disclatent.paths import benchmark_result

ROOT = Path(__file__).resolve().parents[1]
RESULT = benchmark_result("paper-gpu", ROOT)


class GpuMemorySampler:
    """Device-wide peak of used GPU memory (GB) from ``nvidia-smi``, sampled in the
    background; ``peak_gb`` is ``None`` where there is no ``nvidia-smi``."""

    def __init__(self, interval_ms: int = 500) -> None:
        self.peak_gb: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        exe = shutil.which("nvidia-smi")
        if exe:
            cmd = [exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
            self._proc = subprocess.Popen(
                [*cmd, f"-lms={interval_ms}"], stdout=subprocess.PIPE, text=True
            )
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                mib = float(line.strip().splitlines()[0])
            except (ValueError, IndexError):
                continue
            gb = mib * 2**20 / 1e9
            self.peak_gb = gb if self.peak_gb is None else max(self.peak_gb, gb)

    def stop(self) -> float | None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        return None if self.peak_gb is None else round(self.peak_gb, 2)


def _hardware() -> dict[str, object]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "device": gpu,
        "gpu_count": torch.cuda.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
    }


def _write(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def run(minutes: float | None, build_dir: Path, out: Path) -> dict:
    """Execute the paper profile's chapters (those not already executed in ``build_dir``);
    returns the record written to ``out``."""
    from disclatent.paths import BuildPaths
    from disclatent.report.book import execute_all, notebook_sources, project_root
    from disclatent.report.results import notebook_timings

    paths = BuildPaths(build_dir, "paper")
    previous = json.loads(out.read_text()) if out.exists() else {}
    peaks = [p for p in [previous.get("gpu_memory_peak_gb")] if p is not None]
    sampler = GpuMemorySampler()
    try:
        execute_all("paper", "", build_dir, minutes=minutes)
    finally:
        peak = sampler.stop()
        if peak is not None:
            peaks.append(peak)
        recorded = notebook_timings(paths.notebooks).dropna()
        seconds = {str(n): round(float(s), 1) for n, s in recorded.itertuples(index=False)}
        chapters = {s.stem for s in notebook_sources(project_root())}
        record = {
            **_hardware(),
            "profile": "paper",
            "chapter_seconds": seconds,
            "total_minutes": round(sum(seconds.values()) / 60, 1),
            "gpu_memory_peak_gb": max(peaks) if peaks else None,
            "complete": chapters <= set(seconds),
            "date": dt.date.today().isoformat(),
        }
        _write(record, out)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="start no chapter after this")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    record = run(args.minutes, args.build_dir, args.out)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
