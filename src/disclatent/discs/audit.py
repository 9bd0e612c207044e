"""The cohort's data report: every series of a SPIDER folder checked once, its problems named.

A large cohort always holds a few bad series: a truncated download, a mask with no disc
labels, a mask written on another grid than its image, discs numbered from the other end.
Each step of the study leaves such a series out (or maps it) and goes on with the rest;
:func:`audit_cohort` checks every series once, up front, so that the book names them all in
one table. The data chapter (``00_data``) writes it to ``<build>/tables/data_problems.csv``
and ``disclatent book`` prints it at the end of the run (:func:`format_problems`).

What is checked, per series (one row of :data:`PROBLEM_COLUMNS` per problem found):

======================  ==============================================================
problem                 what the study does with the series
======================  ==============================================================
``mask unreadable``     missing, truncated or corrupt file, non-integer or unknown labels:
                        left out everywhere
``no discs``            no voxel carries a disc label 201-225: nothing to isolate or
                        measure; left out of segmentation training and evaluation
``disc numbering``      disc labels that contradict anatomy and that the vertebra labels
                        cannot correct: left out
``renumbered``          disc labels numbered from the other end (or offset) and confirmed
                        by the vertebra labels: kept, its discs renamed
``image missing``       no image file: left out of segmentation and composition
``image unreadable``    missing, truncated or corrupt image: as above
``grid mismatch``       the mask's voxel grid (size, spacing, origin, direction) is not its
                        image's: as above (which of the two headers is right is unknown)
======================  ==============================================================

Each series is one :func:`~disclatent.parallel.run_tasks` task keyed on its mask's and
image's bytes, so the check runs on any scheduler and a rerun reads only new or changed
files. The task also returns the mask's header summary
(:func:`disclatent.data.survey.describe_mask`), so the data chapter reads each mask once.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.data.spider import SpiderFolder
from disclatent.data.survey import describe_mask
from disclatent.data.volume import (
    DataError,
    Volume,
    read_image,
    read_mask,
    series_name,
)
from disclatent.discs.isolation import RenumberedWarning, find_discs
from disclatent.discs.numbering import NumberingError
from disclatent.discs.store import mask_files
from disclatent.parallel import Task, code_version, run_tasks
from disclatent.paths import BuildPaths, Table

#: what the study does with a series that has each problem
PROBLEMS = {
    "mask unreadable": "left out everywhere",
    "no discs": "nothing to measure; left out of segmentation",
    "disc numbering": "left out everywhere",
    "renumbered": "kept, its discs renamed",
    "image missing": "left out of segmentation and composition",
    "image unreadable": "left out of segmentation and composition",
    "grid mismatch": "left out of segmentation and composition",
}
PROBLEM_COLUMNS = ["series", "file", "problem", "effect", "detail"]
#: problems that leave a series' mask out of every step
MASK_PROBLEMS = ("mask unreadable", "no discs", "disc numbering")


@dataclass(frozen=True)
class Audit:
    """:func:`audit_cohort`'s result: ``reports``, the header summary of every readable mask
    (in the order of the files), and ``problems``, one row per problem found."""

    reports: list[dict]
    problems: pd.DataFrame
    n_series: int

    @property
    def bad_series(self) -> list[str]:
        """Every series with a problem, renumbered ones included."""
        return list(dict.fromkeys(self.problems["series"]))

    @property
    def unusable(self) -> list[str]:
        """The series left out somewhere: a problem other than a confirmed renumbering."""
        left_out = self.problems[self.problems["problem"] != "renumbered"]
        return list(dict.fromkeys(left_out["series"]))


def _problem(series: str, path: Path | str, problem: str, detail: str) -> dict:
    return {
        "series": series,
        "file": str(path),
        "problem": problem,
        "effect": PROBLEMS[problem],
        "detail": detail,
    }


def _mask_problems(series: str, path: Path, mask: Volume) -> list[dict]:
    out = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            found = find_discs(mask)
        except NumberingError as exc:
            return [_problem(series, path, "disc numbering", str(exc))]
    if not found:
        out.append(_problem(series, path, "no discs", "no voxel carries a disc label 201-225"))
    out += [
        _problem(series, path, "renumbered", str(w.message))
        for w in caught
        if issubclass(w.category, RenumberedWarning)
    ]
    return out


def audit_series(task: Task, out: Path) -> None:
    """One series of :func:`audit_cohort` (a :func:`~disclatent.parallel.run_tasks` task):
    its header summary and problems, written to ``out`` (``.npz``)."""
    series, mask_path = task.name, task.inputs[0]
    image_path = Path(task.params["image"]) if task.params["image"] else None
    problems: list[dict] = []
    report, mask = None, None
    try:
        mask = read_mask(mask_path)
    except DataError as exc:
        problems.append(_problem(series, mask_path, "mask unreadable", str(exc)))
    if mask is not None:
        report = describe_mask(mask, mask_path)
        problems += _mask_problems(series, mask_path, mask)
    if image_path is None:
        problems.append(
            _problem(series, mask_path, "image missing", f"no image file for series {series}")
        )
    else:
        try:
            image = read_image(image_path)
        except DataError as exc:
            problems.append(_problem(series, image_path, "image unreadable", str(exc)))
        else:
            if mask is not None and not image.same_grid(mask):
                detail = (
                    f"mask size {mask.size}, spacing {_mm(mask.spacing)}; "
                    f"image size {image.size}, spacing {_mm(image.spacing)}"
                    + ("" if image.size != mask.size else " (origin or direction differ)")
                )
                problems.append(_problem(series, mask_path, "grid mismatch", detail))
    with open(out, "wb") as fh:
        np.savez(fh, report=np.array(json.dumps(report)), problems=np.array(json.dumps(problems)))


def _mm(spacing: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{s:.3g}" for s in spacing) + ") mm"


def audit_cohort(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Audit:
    """Check every series with a mask in the SPIDER folder ``root`` (see the module
    docstring). ``cache_dir`` keeps each series' result under a key of its files' bytes;
    ``scheduler``/``workers`` as in :func:`~disclatent.parallel.run_tasks`."""
    folder = SpiderFolder(Path(root))
    folder.check()
    masks = mask_files(folder.root, modalities=None)
    tasks = []
    for path in masks:
        series = series_name(path)
        try:
            image: Path | None = folder.image_path(series)
        except DataError:
            image = None
        inputs = (path,) if image is None else (path, image)
        tasks.append(Task(series, inputs, {"image": None if image is None else str(image)}))
    salt = code_version("discs.audit", "discs.isolation", "discs.numbering", "data.volume")
    run = run_tasks(audit_series, tasks, cache_dir, salt, scheduler, workers, progress, "auditing")
    failed = run.failures.set_index("series")["error"].to_dict()
    reports, problems = [], []
    for task in tasks:
        if task.name in failed:  # a file that vanished, a lost worker: named, never lost
            problems.append(
                _problem(task.name, task.inputs[0], "mask unreadable", failed[task.name])
            )
            continue
        with np.load(run.files[task.name]) as z:
            report = json.loads(str(z["report"]))
            problems += json.loads(str(z["problems"]))
        if report is not None:
            reports.append(report)
    table = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    return Audit(reports, table, len(tasks))


def format_problems(problems: pd.DataFrame, n_series: int | None = None) -> str:
    """The end-of-run report: one line per problem, naming the series and its file."""
    if not len(problems):
        return "data: no problem found" + ("" if n_series is None else f" in the {n_series} series")
    total = "" if n_series is None else f" of {n_series}"
    n = problems["series"].nunique()
    lines = [f"data: {n}{total} series with problems (the rest were processed):"]
    for r in problems.itertuples():
        where = "" if str(r.detail).startswith(str(r.file)) else f"{r.file}: "
        lines.append(f"  {r.series}: {r.problem} ({r.effect}). {where}{r.detail}")
    return "\n".join(lines)


def load_problems(paths: BuildPaths) -> pd.DataFrame:
    """The data chapter's table of series with problems (``<build>/tables/data_problems.csv``,
    :data:`PROBLEM_COLUMNS`); :class:`~disclatent.paths.MissingOutputError` if not written."""
    path = paths.require(paths.table(Table.DATA_PROBLEMS), "00_data")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def usable_masks(
    root: str | os.PathLike, problems: pd.DataFrame, modalities: Sequence[str] | None = ("t1",)
) -> list[Path]:
    """The mask files of ``root`` (of ``modalities``) less the series whose mask has one of
    :data:`MASK_PROBLEMS` in ``problems`` (:func:`load_problems`)."""
    bad = set(problems.loc[problems["problem"].isin(MASK_PROBLEMS), "series"])
    return [f for f in mask_files(root, modalities) if series_name(f) not in bad]
