"""The recorded run of the `paper` profile on a GPU (``benchmarks/bench_paper_gpu.py`` writes
``benchmarks/results/paper-gpu.json``), as the results chapter shows it beside the paper's
time and this build's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd


def read_gpu_run(path: str | os.PathLike) -> dict | None:
    """The record, or ``None`` when no GPU run has been recorded."""
    path = Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    missing = {"device", "profile", "chapter_seconds", "total_minutes"} - set(record)
    if missing:
        raise ValueError(f"{path}: not a GPU run record (missing {', '.join(sorted(missing))})")
    return record


def gpu_run_table(record: dict) -> pd.DataFrame:
    """Minutes per chapter on the GPU."""
    rows = [(name, round(s / 60, 1)) for name, s in record["chapter_seconds"].items()]
    return pd.DataFrame(rows, columns=["chapter", f"minutes on {record['device']}"])


def gpu_run_text(record: dict | None, paper_hours: float) -> str:
    """One paragraph: the GPU run against the paper's ``paper_hours``, or that none exists."""
    if record is None:
        return (
            "No run of the `paper` profile on a GPU has been recorded yet: "
            "`benchmarks/bench_paper_gpu.py` runs it and records it in "
            "`benchmarks/results/paper-gpu.json`, which this section then shows."
        )
    minutes = float(record["total_minutes"])
    peak = record.get("gpu_memory_peak_gb")
    text = (
        f"On one {record['device']}, the `paper` profile's chapters took {minutes:.0f} minutes "
        f"({paper_hours * 60 / minutes:.1f} times faster than the paper's {paper_hours:g} hours)"
        + (f", with a GPU memory peak of {peak:.1f} GB" if peak is not None else "")
        + f" (recorded {record.get('date', 'on an unknown date')})."
    )
    if not record.get("complete", True):
        text += " The run is partial: only the chapters listed below have run."
    return text
