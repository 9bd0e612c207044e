"""Writing a phantom cohort in SPIDER's layout: files, tables, manifest and digest."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import labels as lab
from disclatent.data.phantom.anatomy import (
    GRADER_NOISE,
    SITES,
    PatientSpec,
    Site,
    hydration,
    make_patient,
    nucleus_extent,
)
from disclatent.data.phantom.raster import Grid, rasterise, series_grid, synthesise_image
from disclatent.data.volume import (
    Volume,
    write_csv_atomic,
    write_image,
    write_text_atomic,
)

PHANTOM_VERSION = 4  # 3: angles and widths on the principal axes; 4: degeneration state
#: the phantom's generating truth, one row per disc of every series
TRUTH_FILE = "phantom_truth.csv"

# ---------------------------------------------------------------------------------------
# Writing a cohort
# ---------------------------------------------------------------------------------------
_SEQUENCE = {  # (EchoTime, RepetitionTime, FlipAngle) per modality
    "t1": (10.0, 600.0, 90.0),
    "t2": (100.0, 3500.0, 90.0),
}


def write_series(
    spec: PatientSpec,
    grid: Grid,
    modality: str,
    rng: np.random.Generator,
    out_dir: Path,
    series: str,
    site: Site | None = None,
) -> np.ndarray:
    """Rasterise ``spec`` on ``grid``, synthesise its ``modality`` image (T2 contrast for
    T2-SPACE) and write ``images/<series>.mha`` and ``masks/<series>.mha``; returns the
    label values present."""
    labels, (tissue, nucleus) = rasterise(spec, grid)
    contrast = "t1" if modality.lower() == "t1" else "t2"
    image = synthesise_image(tissue, nucleus, grid, site or spec.site, contrast, rng)
    for arr, folder in ((image, "images"), (labels, "masks")):
        write_image(
            Volume(arr, grid.spacing, tuple(grid.origin), grid.direction),
            out_dir / folder / f"{series}.mha",
        )
    return np.unique(labels)


def truth_rows(
    spec: PatientSpec, truths: list[dict], series: str, present: np.ndarray | None = None
) -> list[dict]:
    """``phantom_truth.csv`` rows of the discs of ``spec`` shown in ``series`` (those whose
    label is ``present``; all when ``None``)."""
    rows = []
    for d, t in zip(spec.discs, truths, strict=True):
        if present is not None and lab.disc_mask_label(d.ivd_label) not in present:
            continue
        rows.append(
            {
                "series": series,
                "patient": spec.patient,
                "ivd_label": d.ivd_label,
                "level": d.level,
                **{k: t[k] for k in GEOMETRY_FEATURES},
                "narrowing_factor": d.narrowing_factor,
                "bulge_mm": d.bulge_mm,
                "narrowing_severity": d.narrowing_severity,
                "bulge_severity": d.bulge_severity,
                "pfirrmann_grade": d.pfirrmann,
                "degeneration": d.degeneration,
                "hydration": hydration(d.degeneration),
                "nucleus_extent": nucleus_extent(d.degeneration),
                "convexity": d.convexity,
                "wedge": d.wedge,
                "centroid_x_mm": t["centroid_x_mm"],
                "centroid_y_mm": t["centroid_y_mm"],
                "centroid_z_mm": t["centroid_z_mm"],
                "institution": spec.site.name,
            }
        )
    return rows


def _write_patient(args: tuple[int, int, int, str]) -> dict:
    seed, index, n_patients, out = args
    spec = make_patient(seed, index, n_patients)
    out_dir = Path(out)
    rows_overview, rows_truth = [], []
    truths = [d.truth() for d in spec.discs]  # world geometry: the same in every series
    for m_i, modality in enumerate(("t1", "t2")):
        rng = np.random.default_rng([seed, index, 2 + m_i])
        grid = series_grid(spec, spec.site, rng)
        series = f"{spec.patient}_{modality}"
        present = write_series(spec, grid, modality, rng, out_dir, series)
        te, tr, fa = _SEQUENCE[modality]
        rows_overview.append(
            {
                "new_file_name": series,
                "patient_id": int(spec.patient),
                "num_vertebrae": int(sum(1 <= v <= lab.MAX_INDEX for v in present)),
                "num_discs": int(sum(lab.is_disc_label(int(v)) for v in present)),
                "sex": spec.sex,
                "subset": "training",
                "Manufacturer": spec.site.manufacturer,
                "PixelSpacing": f"[{grid.spacing[1]:.4f}, {grid.spacing[2]:.4f}]",
                "SliceThickness": grid.spacing[0],
                "EchoTime": te,
                "RepetitionTime": tr,
                "FlipAngle": fa,
                "MagneticFieldStrength": spec.site.field_strength,
                "institution": spec.site.name,
            }
        )
        rows_truth += truth_rows(spec, truths, series)
    return {
        "overview": rows_overview,
        "truth": rows_truth,
        "gradings": _gradings(spec, seed, index),
    }


def _gradings(spec: PatientSpec, seed: int, index: int) -> list[dict]:
    """Radiological gradings drawn from the generating severities with grader noise."""
    rng = np.random.default_rng([seed, index, 9])
    rows = []
    for d in spec.discs:
        narrowing = int(d.narrowing_severity + GRADER_NOISE * rng.normal() > 0)
        bulging = int(d.bulge_severity + GRADER_NOISE * rng.normal() > 0)
        herniation = int(d.bulge_severity + 1.0 * rng.normal() > 1.4)
        modic = int(rng.choice([0, 1, 2], p=[0.86, 0.05, 0.09]))
        rows.append(
            {
                "Patient": int(spec.patient),
                "IVD label": d.ivd_label,
                "Modic": modic,
                "UP endplate": int(rng.random() < 0.15 + 0.1 * narrowing),
                "LOW endplate": int(rng.random() < 0.15 + 0.1 * narrowing),
                "Spondylolisthesis": int(rng.random() < 0.04),
                "Disc herniation": herniation,
                "Disc narrowing": narrowing,
                "Disc bulging": bulging,
                "Pfirrman grade": d.pfirrmann,
            }
        )
    return rows


def write_phantom(
    out: str | os.PathLike,
    n_patients: int = 40,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a phantom cohort in SPIDER's layout to ``out``; returns ``out``.

    Files: ``images/<id>_t1.mha``, ``images/<id>_t2.mha``, ``masks/`` (same names),
    ``overview.csv``, ``radiological_gradings.csv``, ``phantom_truth.csv`` and
    ``phantom.json`` (how it was made). The same ``seed`` and ``n_patients`` give
    byte-identical files. ``overview.csv`` adds two columns SPIDER lacks: ``patient_id`` and
    ``institution`` (the imaging site, used to hold one site out).
    """
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    jobs = [(seed, i, n_patients, str(out)) for i in range(n_patients)]
    results: list[dict] = []
    if workers > 1 and n_patients > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for n_done, res in enumerate(pool.map(_write_patient, jobs), start=1):
                results.append(res)
                if progress:
                    progress(n_done, n_patients)
    else:
        for n_done, job in enumerate(jobs, start=1):
            results.append(_write_patient(job))
            if progress:
                progress(n_done, n_patients)
    overview = pd.DataFrame([r for res in results for r in res["overview"]])
    truth = pd.DataFrame([r for res in results for r in res["truth"]])
    gradings = pd.DataFrame([r for res in results for r in res["gradings"]])
    # SPIDER's gradings carry two rows with IVD label 0; reproduce the quirk
    if n_patients >= 3:
        quirk = gradings.iloc[[0]].copy()
        quirk["IVD label"] = 0
        gradings = pd.concat([gradings.iloc[:1], quirk, gradings.iloc[1:]], ignore_index=True)
    write_csv_atomic(overview, out / "overview.csv", float_format="%.6g")
    write_csv_atomic(gradings, out / "radiological_gradings.csv", float_format="%.6g")
    write_csv_atomic(truth, out / TRUTH_FILE, float_format="%.6g")
    manifest = {
        "generator": "disclatent.data.phantom",
        "version": PHANTOM_VERSION,
        "n_patients": n_patients,
        "seed": seed,
        "sites": [asdict(s) for s in SITES],
    }
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", out / "phantom.json")
    return out


def phantom_is_current(out: str | os.PathLike, n_patients: int, seed: int) -> bool:
    """True when ``out`` already holds a complete phantom made with these settings."""
    path = Path(out) / "phantom.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("version") == PHANTOM_VERSION
        and manifest.get("n_patients") == n_patients
        and manifest.get("seed") == seed
        and has_truth(out)
    )


def tree_digest(root: str | os.PathLike) -> str:
    """SHA-256 over the relative paths and bytes of every file under ``root``."""
    h = hashlib.sha256()
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def has_truth(root: str | os.PathLike) -> bool:
    """True when the cohort folder ``root`` is a phantom: it holds the generating truth."""
    return (Path(root) / TRUTH_FILE).exists()


def read_truth(path: str | os.PathLike) -> pd.DataFrame:
    """``phantom_truth.csv`` (or the one in the cohort folder ``path``), patient and series as
    strings: per disc its true geometry and the
    :data:`~disclatent.data.phantom.anatomy.GENERATING_FACTORS`."""
    path = Path(path)
    if path.is_dir():
        path = path / TRUTH_FILE
    return pd.read_csv(path, dtype={"patient": str, "series": str})
