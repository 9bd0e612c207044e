"""The disc store: a cohort's isolated discs in one compressed ``.npz`` file.

:func:`build_disc_store` isolates every disc of a set of masks
(:func:`disclatent.discs.isolation.isolate_disc`) and writes the cubes bit-packed with one
table row per cube (:data:`STORE_COLUMNS`); :func:`load_disc_store` reads it back as a
:class:`DiscStore`, and :func:`cached_disc_store` rebuilds it only when the masks or the grid
change. Method: ``book/method.md``, *Geometry* (isolating a disc).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from disclatent import published
from disclatent.conventions import PAPER_SPACING
from disclatent.data import labels as lab
from disclatent.data.spider import parse_series
from disclatent.data.volume import (
    DataError,
    atomic_path,
    list_images,
    read_mask,
    series_name,
    write_text_atomic,
)
from disclatent.discs.isolation import (
    DiscWarning,
    check_spacing,
    find_discs,
    isolate_disc,
    label_map,
)
from disclatent.parallel import (
    Task,
    code_version,
    error_class,
    qualified_name,
    replay_warnings,
    run_tasks,
    warning_records,
)
from disclatent.paths import SOURCES

STORE_VERSION = 1

STORE_COLUMNS = [
    "patient",
    "series",
    "ivd_label",
    "level",
    "source",
    "spacing_si_mm",
    "spacing_ap_mm",
    "spacing_lr_mm",
    "centre_x_mm",
    "centre_y_mm",
    "centre_z_mm",
    "n_voxels",
    "volume_mm3",
    "touches_border",
    "mask_path",
]


# ---------------------------------------------------------------------------------------
# A cohort's discs in one file
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DiscStore:
    """Cubes ``(n, S, S, S)`` uint8 in (SI, AP, LR) order and their table (same row order)."""

    cubes: np.ndarray
    table: pd.DataFrame
    spacing_mm: tuple[float, float, float]
    size: int
    skipped: pd.DataFrame
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.cubes.shape[0])


def mask_files(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    modalities: Sequence[str] | None = ("t1",),
) -> list[Path]:
    """Mask files from a SPIDER folder (its ``masks/``), a folder of masks, one file or a list.

    ``modalities`` filters SPIDER-named series (``<patient>_t1`` ...) when a folder is given;
    files whose names do not follow SPIDER's pattern are always kept. ``None``: all.
    """
    if isinstance(masks, str | os.PathLike):
        path = Path(masks)
        if path.is_dir():
            folder = path / "masks" if (path / "masks").is_dir() else path
            files = list_images(folder)
            if modalities is not None:
                wanted = {m.lower() for m in modalities}
                files = [
                    f for f in files if parse_series(series_name(f))[1].lower() in wanted | {""}
                ]
            if not files:
                raise DataError(
                    f"{folder}: no mask files (.mha, .nii.gz, ...)"
                    + (f" of modality {', '.join(modalities)}" if modalities else "")
                )
            return files
        if not path.exists():
            raise DataError(f"{path}: mask file or folder not found")
        return [path]
    files = [Path(p) for p in masks]
    if not files:
        raise ValueError("empty list of mask files")
    return files


def build_disc_store(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    source: str = "gt",
    spacing_mm: Sequence[float] = PAPER_SPACING,
    size: int = published.CUBE_SIZE,
    progress: bool = True,
    *,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    modalities: Sequence[str] | None = ("t1",),
    skip_errors: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Isolate every disc of ``masks`` and write them to one compressed ``.npz`` (atomically).

    The file holds the cubes bit-packed, the table (:data:`STORE_COLUMNS`, one row per cube)
    and the settings; read it with :func:`load_disc_store`. ``source`` is ``"gt"`` for
    reference masks and ``"pred"`` for segmentations. With ``skip_errors`` a disc or a series
    that cannot be read, numbered or isolated is left out with a warning (listed in
    ``DiscStore.skipped`` with its reason); otherwise the first such error is raised.

    Each series is one task of :func:`disclatent.parallel.run_tasks` (``scheduler``:
    ``serial``, ``local`` - a LocalCluster of ``workers`` processes - or a scheduler's
    address; default ``$DISCLATENT_SCHEDULER``, else ``local``). Its result is written once
    to ``cache_dir`` (default ``<out_path stem>.series/`` beside the store) under a key of
    the mask's bytes, these settings and this code, so a rerun after an interruption, or
    with one new series, isolates only what is not done. The store is the same on every
    scheduler: rows in the order of ``masks``, warnings re-emitted here in that order.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    spacing_mm = check_spacing(spacing_mm, size)
    files = mask_files(masks, modalities)
    mapping = label_map(labels, label_offset)
    params = isolation_params(source, spacing_mm, size, mapping, label_offset)
    tasks = [Task(series_name(f), (Path(f),), params) for f in files]
    out_path = Path(out_path)
    cache = Path(cache_dir) if cache_dir is not None else out_path.with_suffix(".series")
    run = run_tasks(
        isolate_series,
        tasks,
        cache,
        salt=code_version(*ISOLATION_MODULES),
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        desc="isolating discs",
    )
    cubes: list[np.ndarray] = []
    tables: list[pd.DataFrame] = []
    skipped: list[pd.DataFrame] = []
    errors = run.failures.set_index("series")["error"].to_dict()
    for task in tasks:
        if task.name in errors:  # not a DataError: a bug or a lost worker, named here
            problem = DataError(f"{task.inputs[0]}: {errors[task.name]}")
            if not skip_errors:
                raise problem
            warnings.warn(f"skipped: {problem}", DiscWarning, stacklevel=2)
            skipped.append(_skip_rows(task.name, np.nan, str(problem))[SKIPPED_COLUMNS])
            continue
        part = read_isolated_series(run.files[task.name], size)
        replay_warnings(part["warnings"])
        for _, row in part["skipped"].iterrows():
            if not skip_errors:
                raise error_class(row["error_class"], DataError)(row["reason"])
            warnings.warn(f"skipped: {row['reason']}", DiscWarning, stacklevel=2)
        skipped.append(part["skipped"].drop(columns="error_class"))
        cubes.append(part["cubes"])
        tables.append(part["table"])
    table = (
        pd.concat(tables, ignore_index=True)[STORE_COLUMNS]
        if tables
        else pd.DataFrame(columns=STORE_COLUMNS)
    )
    stack = np.concatenate(cubes) if cubes else np.zeros((0, size, size, size), np.uint8)
    skipped_table = pd.concat(
        [s for s in skipped if len(s)] or [pd.DataFrame(columns=SKIPPED_COLUMNS)],
        ignore_index=True,
    )
    return write_disc_store(stack, table, out_path, spacing_mm, skipped_table)


SKIPPED_COLUMNS = ["series", "ivd_label", "reason"]
#: the modules whose source keys a series' isolated cubes (:func:`code_version`)
ISOLATION_MODULES = ("discs.store", "discs.isolation", "discs.numbering", "data.volume")


def isolation_params(
    source: str,
    spacing_mm: Sequence[float],
    size: int,
    mapping: Mapping[int, int] | None,
    label_offset: int,
) -> dict[str, Any]:
    """The JSON-ready settings of :func:`isolate_series` (they key its result)."""
    return {
        "source": source,
        "spacing_mm": [float(s) for s in spacing_mm],
        "size": int(size),
        "labels": None if mapping is None else sorted(mapping.items()),
        "label_offset": int(label_offset),
    }


def _skip_rows(series: str, ivd_label: float, reason: str, error: str = "") -> pd.DataFrame:
    row = {"series": series, "ivd_label": ivd_label, "reason": reason, "error_class": error}
    return pd.DataFrame([row], columns=[*SKIPPED_COLUMNS, "error_class"])


def isolate_series(task: Task, out: Path) -> None:
    """One series of :func:`build_disc_store` (a :func:`~disclatent.parallel.run_tasks`
    task): its cubes, table rows, skipped discs and warnings, written to ``out`` (``.npz``).

    A :class:`~disclatent.data.volume.DataError` (unreadable mask, disc labels that
    contradict anatomy, a disc that does not fit) is a result, not a failure: it is kept
    with its reason and error class so that the store raises or skips it as asked.
    """
    p = task.params
    path = task.inputs[0]
    series = task.name
    patient = parse_series(series)[0]
    spacing_mm = tuple(float(x) for x in p["spacing_mm"])
    size, offset = int(p["size"]), int(p["label_offset"])
    labels = None if p["labels"] is None else {int(v): int(k) for v, k in p["labels"]}
    cubes, rows, skipped = [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mask = read_mask(path, allow_unknown_labels=offset != lab.DISC_LABEL_OFFSET)
            found = find_discs(mask, labels, offset)
        except DataError as exc:
            found = []
            skipped.append(_skip_rows(series, np.nan, str(exc), qualified_name(type(exc))))
        for disc in found:
            try:
                iso = isolate_disc(mask, disc, spacing_mm, size)
            except DataError as exc:
                skipped.append(
                    _skip_rows(series, disc.ivd_label, str(exc), qualified_name(type(exc)))
                )
                continue
            cubes.append(iso.cube)
            rows.append(
                {
                    "patient": patient,
                    "series": series,
                    "ivd_label": iso.ivd_label,
                    "level": iso.level,
                    "source": p["source"],
                    "spacing_si_mm": spacing_mm[0],
                    "spacing_ap_mm": spacing_mm[1],
                    "spacing_lr_mm": spacing_mm[2],
                    "centre_x_mm": iso.centre_mm[0],
                    "centre_y_mm": iso.centre_mm[1],
                    "centre_z_mm": iso.centre_mm[2],
                    "n_voxels": iso.n_voxels,
                    "volume_mm3": iso.volume_mm3,
                    "touches_border": iso.touches_border,
                    "mask_path": str(path),
                }
            )
    said = warning_records(caught)
    stack = np.stack(cubes) if cubes else np.zeros((0, size, size, size), np.uint8)
    skipped_table = pd.concat(skipped, ignore_index=True) if skipped else _skip_rows("", 0, "")[:0]
    with open(out, "wb") as fh:
        np.savez_compressed(
            fh,
            cubes=np.packbits(stack.astype(bool), axis=None),
            n=np.array(len(stack)),
            table=np.array(pd.DataFrame(rows, columns=STORE_COLUMNS).to_json(orient="split")),
            skipped=np.array(skipped_table.to_json(orient="split")),
            warnings=np.array(json.dumps(said)),
        )


#: the identifier columns of the stores' tables, read back as strings (never as numbers)
_STRING_COLUMNS = {"patient": str, "series": str, "mask_path": str, "level": str}


def read_json_table(text: str | np.ndarray) -> pd.DataFrame:
    """A table that a store holds as ``to_json(orient="split")`` text, with its identifier
    columns (patient, series, mask path, level) as strings."""
    return pd.read_json(io.StringIO(str(text)), orient="split", dtype=_STRING_COLUMNS)


def read_isolated_series(path: Path, size: int) -> dict:
    """The cubes, table, skipped discs and warnings that :func:`isolate_series` wrote."""
    with np.load(path, allow_pickle=False) as z:
        n = int(z["n"])
        cubes = np.unpackbits(z["cubes"], count=n * size**3).reshape(n, size, size, size)
        table = read_json_table(z["table"])
        skipped = read_json_table(z["skipped"])
        said = json.loads(str(z["warnings"]))
    return {"cubes": cubes, "table": table, "skipped": skipped, "warnings": said}


def write_disc_store(
    cubes: np.ndarray,
    table: pd.DataFrame,
    out_path: str | os.PathLike,
    spacing_mm: Sequence[float],
    skipped: pd.DataFrame | None = None,
) -> Path:
    """Write cubes ``(n, S, S, S)`` and their table to a compressed ``.npz`` atomically."""
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"{out_path}: a disc store is an .npz file")
    cubes = np.asarray(cubes)
    if cubes.ndim != 4 or len(set(cubes.shape[1:])) != 1:
        raise ValueError(f"cubes must have shape (n, S, S, S), got {cubes.shape}")
    if len(table) != len(cubes):
        raise ValueError(f"table has {len(table)} rows for {len(cubes)} cubes")
    if cubes.dtype != bool and not ((cubes == 0) | (cubes == 1)).all():
        raise ValueError("cubes must be binary (0/1)")
    skipped = (
        skipped if skipped is not None else pd.DataFrame(columns=["series", "ivd_label", "reason"])
    )
    meta = {
        "version": STORE_VERSION,
        "size": int(cubes.shape[1]) if cubes.ndim == 4 else 0,
        "n": int(len(cubes)),
        "spacing_mm": [float(s) for s in spacing_mm],
        "axes": "SI,AP,LR (index grows to superior, posterior, left)",
    }
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                cubes=np.packbits(cubes.astype(bool), axis=None),
                table=np.array(table.reset_index(drop=True).to_json(orient="split")),
                skipped=np.array(skipped.to_json(orient="split")),
                meta=np.array(json.dumps(meta)),
            )
    return out_path


def cached_disc_store(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    source: str = "gt",
    spacing_mm: Sequence[float] = PAPER_SPACING,
    size: int = published.CUBE_SIZE,
    progress: bool = False,
    modalities: Sequence[str] | None = ("t1",),
) -> DiscStore:
    """:func:`build_disc_store` (skipping discs that do not fit, with a warning), reused while
    the mask files (paths, sizes, modification times) and the cube settings are unchanged.

    The key sits beside the store in ``<out_path>.key``; a changed mask, a new segmentation
    or another grid rebuilds the store.
    """
    files = mask_files(masks, modalities)
    key = hashlib.sha256(
        json.dumps(
            {
                "files": [
                    [str(Path(f).resolve()), Path(f).stat().st_mtime_ns, Path(f).stat().st_size]
                    for f in files
                ],
                "source": source,
                "size": int(size),
                "spacing": [float(s) for s in spacing_mm],
            }
        ).encode()
    ).hexdigest()[:16]
    path = Path(out_path)
    stamp = path.with_suffix(".key")
    if path.exists() and stamp.exists() and stamp.read_text() == key:
        return load_disc_store(path)
    stamp.unlink(missing_ok=True)
    build_disc_store(
        files,
        path,
        source=source,
        spacing_mm=spacing_mm,
        size=size,
        progress=progress,
        modalities=None,
        skip_errors=True,
    )
    write_text_atomic(key, stamp)
    return load_disc_store(path)


def load_disc_store(path: str | os.PathLike) -> DiscStore:
    """Read a file written by :func:`build_disc_store`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: disc store not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            packed = z["cubes"]
            table = read_json_table(z["table"])
            skipped = read_json_table(z["skipped"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable disc store: {exc}") from exc
    if meta.get("version") != STORE_VERSION:
        raise DataError(
            f"{path}: disc store version {meta.get('version')}, expected "
            f"{STORE_VERSION}; rebuild it"
        )
    n, s = meta["n"], meta["size"]
    cubes = (
        np.unpackbits(packed, count=n * s**3).reshape(n, s, s, s)
        if n
        else np.zeros((0, s, s, s), np.uint8)
    )
    if "patient" in table:
        table["patient"] = table["patient"].astype(str)
    if len(table) != n:
        raise DataError(f"{path}: table has {len(table)} rows for {n} cubes")
    return DiscStore(
        cubes=cubes,
        table=table,
        spacing_mm=tuple(meta["spacing_mm"]),
        size=s,
        skipped=skipped,
        path=path,
    )
