"""A full-size rehearsal cohort: SPIDER's structure, from its real metadata, with phantom discs.

``python -m disclatent phantom --like-spider --out DIR`` writes, for every patient of SPIDER
(218; or the first ``n_patients``), the series SPIDER has for that patient (T1, T2 and the
near-isotropic T2-SPACE), each with its real pixel spacing, slice spacing and number of
discs, and copies SPIDER's own ``overview.csv`` rows (all columns, the values exactly as
published, e.g. ``PixelSpacing`` "[0.625, 0.625]" or "[.46875, .46875]") and
``radiological_gradings.csv`` rows (with its two IVD-label-0 rows). The metadata ship with
the package (``disclatent/data/spider_metadata``, CC BY 4.0; its README).

The discs are the phantom's (:mod:`disclatent.data.phantom.anatomy`) with a calibration
(:func:`rehearsal_levels`) that matches disc sizes measured on real SPIDER masks
(:data:`REAL_MEDIANS`), and with each disc's severities drawn *given* its real gradings, so
narrowing and bulging still follow from the generating chain the default phantom uses.
``phantom_truth.csv`` holds the generating values as for the default phantom.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.data import labels as lab
from disclatent.data.phantom.anatomy import (
    DEFAULT_LEVELS,
    SITES,
    Grades,
    Levels,
    Site,
    build_patient,
)
from disclatent.data.phantom.raster import series_grid
from disclatent.data.phantom.writer import TRUTH_FILE, truth_rows, write_series
from disclatent.data.spider import parse_series
from disclatent.data.volume import atomic_path, write_csv_atomic, write_text_atomic

REHEARSAL_VERSION = 1

#: medians per level measured by this project's geometry code on 48 real SPIDER masks (T1,
#: T2 and T2-SPACE, 346 discs; issue 15): height, AP width, lateral width (mm), volume (mm3)
REAL_MEDIANS = pd.DataFrame(
    {
        "level": ["L5/S1", "L4/L5", "L3/L4", "L2/L3", "L1/L2"],
        "height_mm": [5.1, 6.0, 5.9, 5.7, 5.4],
        "ap_width_mm": [36.5, 39.8, 39.0, 36.8, 35.8],
        "lateral_width_mm": [49.0, 52.2, 50.2, 48.0, 44.0],
        "volume_mm3": [7300.0, 9700.0, 9300.0, 8800.0, 7000.0],
    }
)
# the default phantom's medians per level (its own truth, 150 patients, seed 0), from which
# the rehearsal calibration scales the default one: parameter x real / default
_DEFAULT_MEDIANS = {
    "height_mm": [4.86, 5.62, 5.67, 5.46, 5.13],
    "ap_width_mm": [33.68, 36.08, 34.97, 32.80, 31.01],
    "lateral_width_mm": [45.69, 47.02, 45.58, 43.14, 41.23],
}
# real discs fill less of their bounding box than ellipses (volume / (h x AP x lateral)
# 0.78-0.82 against the phantom's 0.82-0.86): a super-ellipse of exponent < 2
SQUARENESS = 1.85
MAX_LEVELS = 9  # SPIDER series show up to 9 discs (L5/S1 .. T9/T10)


def metadata_path(name: str) -> Path:
    """Path of a shipped SPIDER metadata file (``overview.csv``, ``radiological_gradings.csv``)."""
    return Path(str(resources.files("disclatent.data") / "spider_metadata" / name))


def read_raw_csv(path: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a CSV file as the strings it holds: nothing parsed or reformatted."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [row for row in reader if row]


def spider_patients() -> list[str]:
    """SPIDER's patients in ``overview.csv`` order (the shipped metadata)."""
    _, rows = read_raw_csv(metadata_path("overview.csv"))
    return list(dict.fromkeys(parse_series(r[0])[0] for r in rows))


def _newline(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return "\r\n" if fh.readline().endswith(b"\r\n") else "\n"


def _csv_text(header: list[str], rows: list[list[str]], newline: str = "\n") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _extend(values: np.ndarray, n: int, step: float) -> np.ndarray:
    """``values`` continued to ``n`` levels by ``step`` per level."""
    extra = values[-1] + step * np.arange(1, n - len(values) + 1)
    return np.concatenate([values, extra])


def rehearsal_levels(gradings: pd.DataFrame | None = None) -> Levels:
    """The rehearsal calibration: the default phantom's per-level sizes scaled to
    :data:`REAL_MEDIANS` (levels above L1/L2 by the L1/L2 ratio), continued to 9 levels, the
    footprint a super-ellipse of :data:`SQUARENESS`, and SPIDER's own per-level prevalence of
    narrowing and bulging and mean Pfirrmann grade from ``gradings`` (SPIDER's columns)."""
    if gradings is None:
        gradings = pd.read_csv(metadata_path("radiological_gradings.csv"))
    d = DEFAULT_LEVELS
    n = MAX_LEVELS

    def scaled(default: np.ndarray, column: str, step: float) -> np.ndarray:
        ratio = REAL_MEDIANS[column].to_numpy() / np.asarray(_DEFAULT_MEDIANS[column])
        ratio = np.concatenate([ratio, np.full(len(default) - len(ratio), ratio[-1])])
        return _extend(default * ratio, n, step * ratio[-1])

    g = gradings[gradings["IVD label"].between(1, n)]
    by = g.groupby("IVD label")
    grade_col = "Pfirrman grade" if "Pfirrman grade" in g else "Pfirrmann grade"

    def per_level(series: pd.Series, step: float, lo: float, hi: float) -> np.ndarray:
        """Per IVD label 1..n; levels SPIDER grades too rarely continue the last by step."""
        known = series[by.size() >= 5].reindex(range(1, n + 1)).to_numpy(float)
        last = int(np.nonzero(~np.isnan(known))[0].max())
        for i in range(last + 1, n):
            known[i] = known[last] + step * (i - last)
        return np.clip(known, lo, hi)

    return Levels(
        ap_depth_mm=scaled(d.ap_depth_mm, "ap_width_mm", -1.0),
        lateral_width_mm=scaled(d.lateral_width_mm, "lateral_width_mm", -2.0),
        height_mm=scaled(d.height_mm, "height_mm", -0.3),
        sagittal_deg=_extend(d.sagittal_deg, n, 0.5),
        wedge=_extend(d.wedge, n, 0.0),
        vertebra_height_mm=_extend(d.vertebra_height_mm, n, -0.8),
        narrowing_prevalence=per_level(by["Disc narrowing"].mean(), -0.02, 0.02, 0.98),
        bulging_prevalence=per_level(by["Disc bulging"].mean(), -0.02, 0.02, 0.98),
        pfirrmann_mean=per_level(by[grade_col].mean(), 0.0, 1.0, 5.0),
        squareness=SQUARENESS,
    )


def series_spacing(row: dict[str, str]) -> tuple[float, float, float]:
    """(left-right slice spacing, in-plane y, in-plane z) in mm of an ``overview.csv`` row:
    ``SpacingBetweenSlices`` (else ``SliceThickness``) and ``PixelSpacing``."""
    from disclatent.data.spider import parse_pixel_spacing

    slices = row.get("SpacingBetweenSlices") or row.get("SliceThickness") or ""
    sy, sz = parse_pixel_spacing(row["PixelSpacing"])
    return float(slices), sy, sz


def _site(row: dict[str, str]) -> Site:
    """An imaging site for a real series: its scanner and field strength, the image quality
    of the default phantom's site with the same field strength."""
    field = float(row["MagneticFieldStrength"])
    like = min(SITES, key=lambda s: (abs(s.field_strength - field), s.name))
    name = f"{row['Manufacturer']} {field:g}T"
    return Site(
        name,
        row["Manufacturer"],
        field,
        like.slice_thickness_mm,
        like.inplane_mm,
        like.noise,
        like.bias,
        like.gamma,
        like.gain,
        like.share,
    )


def _write_rehearsal_patient(args: tuple) -> dict:
    seed, index, patient, series_rows, grade_rows, levels, out = args
    out_dir = Path(out)
    rows = [dict(r) for r in series_rows]
    n_discs = max(int(r["num_discs"]) for r in rows)
    grades = {
        int(g["IVD label"]): Grades(
            int(g["Disc narrowing"]), int(g["Disc bulging"]), int(g["Pfirrman grade"])
        )
        for g in grade_rows
        if int(g["IVD label"]) >= 1
    }
    site = _site(rows[0])
    rng = np.random.default_rng([seed, index, 1])
    spec = build_patient(rng, seed, index, patient, site, n_discs, levels, grades)
    truths = [d.truth() for d in spec.discs]
    truth, counts = [], {}
    for m_i, row in enumerate(rows):
        series = row["new_file_name"]
        srng = np.random.default_rng([seed, index, 2 + m_i])
        grid = series_grid(
            spec, site, srng, spacing=series_spacing(row), n_discs=int(row["num_discs"])
        )
        present = write_series(
            spec, grid, parse_series(series)[1], srng, out_dir, series, _site(row)
        )
        counts[series] = int(sum(lab.is_disc_label(int(v)) for v in present))
        truth += truth_rows(spec, truths, series, present)
    return {"truth": truth, "discs": counts}


def write_rehearsal(
    out: str | os.PathLike,
    n_patients: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the rehearsal cohort to ``out`` (SPIDER's layout); returns ``out``.

    ``n_patients``: SPIDER's first patients in ``overview.csv`` order (default: all 218).
    Files as :func:`~disclatent.data.phantom.write_phantom` writes them, with SPIDER's own
    ``overview.csv`` and ``radiological_gradings.csv`` rows for those patients, byte for
    byte, and ``phantom.json`` naming the generator. A patient already written (its files
    and its part of the truth, ``.rehearsal/<patient>.json``) is not written again, so an
    interrupted run resumes.
    """
    out = Path(out)
    for folder in ("images", "masks", ".rehearsal"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    header, rows = read_raw_csv(metadata_path("overview.csv"))
    g_header, g_rows = read_raw_csv(metadata_path("radiological_gradings.csv"))
    by_patient: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_patient.setdefault(parse_series(row[0])[0], []).append(
            dict(zip(header, row, strict=True))
        )
    patients = list(by_patient)[: n_patients or None]
    grades_of: dict[str, list[dict[str, str]]] = {}
    for row in g_rows:
        grades_of.setdefault(row[0], []).append(dict(zip(g_header, row, strict=True)))
    levels = rehearsal_levels(pd.read_csv(metadata_path("radiological_gradings.csv")))
    jobs = [
        (seed, i, p, by_patient[p], grades_of.get(p, []), levels, str(out))
        for i, p in enumerate(patients)
    ]
    done_dir = out / ".rehearsal"
    todo = [j for j in jobs if not (done_dir / f"{j[2]}.json").exists()]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    n_done = len(jobs) - len(todo)

    def finished(job: tuple, result: dict) -> None:
        nonlocal n_done
        write_text_atomic(json.dumps(result), done_dir / f"{job[2]}.json")
        n_done += 1
        if progress:
            progress(n_done, len(jobs))

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for job, res in zip(todo, pool.map(_write_rehearsal_patient, todo), strict=True):
                finished(job, res)
    else:
        for job in todo:
            finished(job, _write_rehearsal_patient(job))
    results = [json.loads((done_dir / f"{j[2]}.json").read_text()) for j in jobs]
    keep = set(patients)
    for name, head, body in (
        ("overview.csv", header, [r for r in rows if parse_series(r[0])[0] in keep]),
        ("radiological_gradings.csv", g_header, [r for r in g_rows if r[0] in keep]),
    ):
        text = _csv_text(head, body, _newline(metadata_path(name)))
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(text.encode("utf-8"))
    truth = pd.DataFrame([r for res in results for r in res["truth"]])
    write_csv_atomic(truth, out / TRUTH_FILE, float_format="%.6g")
    manifest = {
        "generator": "disclatent.data.phantom.rehearsal",
        "version": REHEARSAL_VERSION,
        "like": "SPIDER",
        "n_patients": len(patients),
        "seed": seed,
        "discs_per_series": {k: v for res in results for k, v in res["discs"].items()},
    }
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", out / "phantom.json")
    return out
