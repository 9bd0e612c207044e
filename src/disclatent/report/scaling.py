"""The recorded scaling benchmark (``benchmarks/bench_scale.py`` writes
``benchmarks/results/scale.json``): throughput of the per-series steps over Dask workers, as
the results chapter shows it."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from disclatent.paths import read_benchmark

STEP_NAMES = {
    "isolation": "disc isolation",
    "geometry": "geometry",
    "encoding": "encoding (autoencoder)",
    "segmentation": "segmentation inference",
}


def read_scale_run(path: str | os.PathLike) -> dict | None:
    """The record, or ``None`` when the benchmark has not been run."""
    required = {"machine", "cohort", "runs", "projected_hours_30000_spines"}
    return read_benchmark(path, required, "a scaling record")


def scale_table(record: dict) -> pd.DataFrame:
    """One row per step and scheduler: series/s, discs/s, speed-up over the serial run and
    peak memory (MB) of the process and of its largest worker."""
    runs = pd.DataFrame(record["runs"])
    serial = runs[runs["scheduler"] == "serial"].set_index("step")["series_per_s"]
    rows = []
    for r in record["runs"]:
        rows.append(
            {
                "step": STEP_NAMES.get(r["step"], r["step"]),
                "run": "serial" if r["scheduler"] == "serial" else f"{r['workers']} worker(s)",
                "series": r["series"],
                "series/s": r["series_per_s"],
                "discs/s": r["discs_per_s"],
                "vs serial": round(r["series_per_s"] / serial[r["step"]], 2),
                "peak MB (process)": r["peak_rss_mb"]["process"],
                "peak MB (largest worker)": r["peak_rss_mb"]["largest_worker"] or None,
            }
        )
    return pd.DataFrame(rows)


def projection_table(record: dict) -> pd.DataFrame:
    """Hours projected for 30,000 spines (one series each) per step and number of workers."""
    proj = record["projected_hours_30000_spines"]
    table = pd.DataFrame(
        {STEP_NAMES.get(k, k): {int(n): h for n, h in v.items()} for k, v in proj.items()}
    ).T
    table.columns = [f"{n} workers (h)" for n in table.columns]
    return table


def scale_text(record: dict | None) -> str:
    """One paragraph: what was measured and where, or that the benchmark has not run."""
    if record is None:
        return (
            "The scaling benchmark has not been recorded yet: "
            "`python benchmarks/bench_scale.py` measures it and writes "
            "`benchmarks/results/scale.json`, which this section then shows."
        )
    total = record["projected_hours_30000_spines"]["total"]
    most = max(total, key=int)
    return (
        f"Measured on {record['machine']} ({record['cohort']}; `{record['command']}`): every "
        "step runs one task per series, serially or on a Dask LocalCluster with one thread "
        f"per worker. From the per-worker rate, 30,000 spines would take {total[most]:.1f} h "
        f"on {most} workers for these four steps together ({total[min(total, key=int)]:.1f} h "
        f"on {min(total, key=int)})."
    )


def scale_figure(record: dict) -> Any:
    """Series per second per step, serial and with each number of workers (bars)."""
    import matplotlib.pyplot as plt

    table = scale_table(record)
    wide = table.pivot(index="step", columns="run", values="series/s")
    order = [STEP_NAMES.get(s, s) for s in dict.fromkeys(r["step"] for r in record["runs"])]
    wide = wide.reindex(order)
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    wide.plot.barh(ax=ax, width=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("series per second (log scale)")
    ax.set_ylabel("")
    ax.invert_yaxis()
    ax.legend(title="", fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# The whole book on growing cohorts (benchmarks/bench_book.py -> book_cohorts.json)
# ---------------------------------------------------------------------------------------
def read_book_runs(path: str | os.PathLike) -> dict | None:
    """The record of ``benchmarks/bench_book.py``, or ``None`` when it has not been run."""
    return read_benchmark(path, {"runs"}, "a book-cost record")


def _chapter_cell(run: dict, chapter: str) -> object:
    if chapter in run["chapters_s"]:
        return run["chapters_s"][chapter]
    if chapter in run["reused_chapters"]:
        return "reused"
    return "stopped" if run.get("unfinished_chapter") == chapter else "-"


def book_cost_table(record: dict, profile: str = "default") -> pd.DataFrame:
    """Seconds per chapter (rows) for each recorded cohort (columns), then the wall time and
    the peak memory of the whole process tree and of its largest process. A chapter that a
    resumed run reused from an earlier run shows ``reused``; the one a stopped run was
    executing, ``stopped``; one not reached, ``-``."""
    runs = [r for r in record["runs"] if r["profile"] == profile]
    chapters = sorted(
        {
            c
            for r in runs
            for c in (*r["chapters_s"], *r["reused_chapters"], r.get("unfinished_chapter"))
            if c
        }
    )
    columns = {}
    for r in runs:
        name = f"{r['patients']} patients ({r['series']} series, {r['discs']} discs)"
        col: dict[str, object] = {c: _chapter_cell(r, c) for c in chapters}
        col["whole book (min)"] = round(r["wall_s"] / 60, 1)
        col["peak memory, all processes (GB)"] = round(r["peak_tree_rss_mb"] / 1024, 2)
        col["peak memory, largest process (GB)"] = round(r["peak_largest_process_rss_mb"] / 1024, 2)
        col["finished"] = "yes" if r["returncode"] == 0 else f"no (exit {r['returncode']})"
        columns[name] = col
    return pd.DataFrame(columns)


def book_cost_text(record: dict | None, profile: str = "default") -> str:
    """What was measured, and how the cost grew from the smallest to the largest cohort."""
    if record is None or not [r for r in record["runs"] if r["profile"] == profile]:
        return (
            "The book's cost on growing cohorts has not been recorded yet: "
            "`python benchmarks/bench_book.py --patients N` measures it and writes "
            "`benchmarks/results/book_cohorts.json`, which this section then shows."
        )
    runs = sorted(
        (r for r in record["runs"] if r["profile"] == profile), key=lambda r: r["patients"]
    )
    first, last = runs[0], runs[-1]
    text = (
        f"The `{profile}` book on rehearsal cohorts (`phantom --like-spider`), measured on "
        f"{first['machine']}: peak memory of all its processes together "
        + ", ".join(
            f"{r['peak_tree_rss_mb'] / 1024:.1f} GB at {r['patients']} patients" for r in runs
        )
        + " (a laptop's share is 8 GB)."
    )
    if len(runs) > 1 and first["complete"] and last["complete"]:
        growth = last["wall_s"] / first["wall_s"]
        text += (
            f" From {first['patients']} to {last['patients']} patients the wall time grew "
            f"{growth:.1f}-fold for {last['series'] / first['series']:.1f} times the series."
        )
    elif len(runs) > 1:
        both = [c for c in first["chapters_s"] if c in last["chapters_s"]]
        if both:
            text += (
                f" The {last['patients']}-patient run is not a whole one "
                + (
                    f"(stopped while executing {last['unfinished_chapter']}); "
                    if last.get("unfinished_chapter")
                    else "; "
                )
                + f"from {first['patients']} to {last['patients']} patients "
                f"({last['discs'] / max(first['discs'], 1):.1f} times the discs), the chapters "
                "measured in both took "
                + ", ".join(
                    f"{last['chapters_s'][c] / first['chapters_s'][c]:.1f} times as long ({c})"
                    for c in both
                )
                + "."
            )
    return text
