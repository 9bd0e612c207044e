"""The recorded run of the `paper` profile on a GPU (``benchmarks/bench_paper_gpu.py`` writes
``benchmarks/results/paper-gpu.json``), as the results chapter shows it beside the paper's
time and this build's."""

from __future__ import annotations

import os

import pandas as pd

from disclatent.paths import read_benchmark


def read_gpu_run(path: str | os.PathLike) -> dict | None:
    """The record, or ``None`` when no GPU run has been recorded."""
    required = {"device", "profile", "chapter_seconds", "total_minutes"}
    return read_benchmark(path, required, "a GPU run record")


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
