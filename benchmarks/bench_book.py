"""What the whole book costs as the cohort grows: wall time of every chapter and peak memory.

    .venv/bin/python benchmarks/bench_book.py --patients 40 [--data FOLDER] [--build FOLDER]
                                              [--profile default]

Runs ``python -m disclatent book --profile PROFILE --data FOLDER --build-dir BUILD`` (what
``make book DATA=FOLDER`` runs) as a child process and prints its output. The cohort is a
rehearsal (``phantom --like-spider --patients N``: SPIDER's patients, series, spacings and
discs per series), written to ``FOLDER`` first unless it already holds one. Every second the
resident memory of the book's whole process tree (the command, the notebook kernel, its Dask
and training workers) is summed: the peak of that sum is what a laptop must hold. The peak
of the largest single process is recorded beside it. Chapter times are the book's own
(``<chapter>: executed in S s``); a chapter reused from an earlier, interrupted run is marked
as such, so a resumed run is never reported as a whole one.

``--from-log LOG --tree-peak-mb MB`` records a run made outside this script instead: LOG
is the output of ``/usr/bin/time -v python -m disclatent book ...`` (chapter times, wall
time, largest process), MB the peak of the summed tree memory sampled beside it. LOG may
also be this script's own output (a run stopped before its end, say at the end of a work
session: the chapters it finished are recorded, and the one it was executing is named).

Merges one record per (profile, patients) into ``benchmarks/results/book_cohorts.json``,
which the results chapter shows as "how the cost grows with the cohort".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "book_cohorts.json"
EXECUTED = re.compile(r"^(\S+): executed in ([0-9.]+) s$")
REUSED = re.compile(r"^(\S+): up to date$")
STARTED = re.compile(r"^(\S+): executing \(")
# bench_book's own summary line (a run recorded from this script's log)
SUMMARY = re.compile(
    r"min wall \(exit (-?\d+)\); peak memory ([0-9.]+) GB for the whole process tree .*"
    r"largest process ([0-9.]+) GB"
)
WALL = re.compile(r"\b([0-9.]+) min wall \(exit")
LIMIT_GB = 8.0


def unfinished_chapter(lines: list[str]) -> str | None:
    """The chapter that was executing when the run stopped (``None``: none was)."""
    started = [m.group(1) for line in lines if (m := STARTED.match(line.strip()))]
    seconds, _ = parse_chapters(lines)
    return started[-1] if started and started[-1] not in seconds else None


def parse_chapters(lines: list[str]) -> tuple[dict[str, float], list[str]]:
    """The chapters' seconds and the chapters reused from the cache, from the book's output."""
    seconds, reused = {}, []
    for line in lines:
        if m := EXECUTED.match(line.strip()):
            seconds[m.group(1)] = float(m.group(2))
        elif m := REUSED.match(line.strip()):
            reused.append(m.group(1))
    return seconds, reused


class TreeMemory(threading.Thread):
    """Peak of the summed resident memory of a process and all its descendants (MB)."""

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_mb = pid, every_s, 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self.stopped.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.stopped.wait(self.every_s)


def cohort_size(data: Path, build: Path) -> dict[str, int]:
    """Patients and series (masks) of a SPIDER-format folder, and the discs the book measured."""
    from disclatent.data.spider import SpiderFolder
    from disclatent.paths import BuildPaths, Table

    series = SpiderFolder(data).series(modalities=None)
    geometry = BuildPaths(build).table(Table.GEOMETRY)
    discs = sum(1 for _ in geometry.open()) - 1 if geometry.exists() else 0
    return {
        "patients": len({s.split("_")[0] for s in series}),
        "series": len(series),
        "discs": discs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--data", default="", help="cohort folder (default: /tmp/rehearsal-N)")
    ap.add_argument("--build", default="", help="build folder (default: <data>-build)")
    ap.add_argument("--profile", default="default")
    ap.add_argument("--from-log", default="", help="record a finished run's output")
    ap.add_argument("--tree-peak-mb", type=float, default=0.0)
    ap.add_argument("--note", default="", help="how the run was made, recorded with it")
    args = ap.parse_args()
    data = Path(args.data or f"/tmp/rehearsal-{args.patients}")
    build = Path(args.build or f"{data}-build")
    if args.from_log:
        text = Path(args.from_log).read_text()
        if m := SUMMARY.search(text):  # this script's own log
            rc, tree_mb, largest = int(m.group(1)), float(m.group(2)) * 1024, float(m.group(3))
            wall = 60 * float(WALL.search(text).group(1))
            lines = [ln for ln in text.splitlines() if not SUMMARY.search(ln)]
            save(args, data, build, lines, rc, wall, tree_mb, largest * 1024, own_log=True)
            return
        wall = _clock(re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text).group(1))
        largest = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
        rc = int(re.search(r"Exit status: (\d+)", text).group(1))
        save(args, data, build, text.splitlines(), rc, wall, args.tree_peak_mb, largest / 1024)
        return
    if not (data / "overview.csv").exists():
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "disclatent", "phantom", "--like-spider", "--quiet"]
            + ["--patients", str(args.patients), "--out", str(data)],
            check=True,
        )
        print(f"rehearsal cohort: {args.patients} patients in {time.perf_counter() - t0:.0f} s")
    cmd = [sys.executable, "-m", "disclatent", "book", "--profile", args.profile]
    cmd += ["--data", str(data), "--build-dir", str(build)]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = TreeMemory(proc.pid)
    memory.start()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    rc = proc.wait()
    wall = time.perf_counter() - t0
    memory.stopped.set()
    memory.join()
    largest_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    save(args, data, build, lines, rc, wall, memory.peak_mb, largest_mb)
    sys.exit(rc)


def _clock(text: str) -> float:
    """``h:mm:ss`` or ``m:ss.ss`` in seconds."""
    parts = [float(x) for x in text.split(":")]
    return sum(x * 60**i for i, x in enumerate(reversed(parts)))


def _command(args: argparse.Namespace, own_log: bool) -> str:
    """How the recorded run was made: by this script, or outside it (``--from-log``)."""
    script = f"python benchmarks/bench_book.py --patients {args.patients} --profile {args.profile}"
    if not args.from_log:
        return script
    if own_log:
        return f"{script} (its log recorded with --from-log)"
    return (
        f"/usr/bin/time -v python -m disclatent book --profile {args.profile} --data "
        f"<phantom --like-spider --patients {args.patients}> (recorded with --from-log)"
    )


def save(
    args: argparse.Namespace,
    data: Path,
    build: Path,
    lines: list[str],
    rc: int,
    wall: float,
    tree_mb: float,
    largest_mb: float,
    own_log: bool = False,
) -> None:
    """Print the run's figures and merge its record into :data:`OUT`."""
    seconds, reused = parse_chapters(lines)
    record = {
        "profile": args.profile,
        **cohort_size(data, build),
        "returncode": rc,
        "complete": rc == 0 and not reused,
        "wall_s": round(wall, 1),
        "chapters_s": seconds,
        "reused_chapters": reused,
        "unfinished_chapter": unfinished_chapter(lines),
        "peak_tree_rss_mb": round(tree_mb),
        "peak_largest_process_rss_mb": round(largest_mb),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": _command(args, own_log),
        "note": args.note,
    }
    print(
        f"{record['patients']} patients, {record['series']} series, {record['discs']} discs: "
        f"{wall / 60:.1f} min wall (exit {rc}); peak memory {tree_mb / 1024:.2f} GB "
        f"for the whole process tree (bound {LIMIT_GB:g} GB), largest process "
        f"{largest_mb / 1024:.2f} GB"
    )
    for name, s in seconds.items():
        print(f"  {name:<18} {s:8.1f} s")
    if reused:
        print(f"  reused from an earlier run: {', '.join(reused)}")
    if record["unfinished_chapter"]:
        print(f"  stopped while executing {record['unfinished_chapter']}")
    runs = json.loads(OUT.read_text())["runs"] if OUT.exists() else []
    runs = [r for r in runs if (r["profile"], r["patients"]) != (args.profile, record["patients"])]
    runs = sorted([*runs, record], key=lambda r: (r["profile"], r["patients"]))
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    tmp.replace(OUT)
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
