"""Encoding a cohort's masks with a trained autoencoder, one task per series.

:func:`encode_masks` is what ``python -m disclatent autoencoder encode`` runs: each series is
one :func:`disclatent.parallel.run_tasks` task that isolates its discs into the model's cube
(:func:`disclatent.discs.store.isolate_series`, the same code as the disc store), encodes
them and decodes them again for the reconstruction IoU. A worker loads the model once. The
result of a series is kept under a key of its mask's bytes, the model's files and this code,
so a rerun encodes only new or changed series, on any scheduler (``serial``, a LocalCluster,
or a running cluster's address: ``--scheduler`` / ``$DISCLATENT_SCHEDULER``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.autoencoder.checkpoint import CONFIG_FILE, MODEL_FILE
from disclatent.autoencoder.objective import iou_per_disc
from disclatent.autoencoder.training import DiscAE
from disclatent.conventions import latent_columns
from disclatent.data.labels import DISC_LABEL_OFFSET
from disclatent.data.volume import series_name
from disclatent.discs.isolation import DiscWarning
from disclatent.discs.store import (
    ISOLATION_MODULES,
    SKIPPED_COLUMNS,
    isolate_series,
    isolation_params,
    mask_files,
    read_isolated_series,
)
from disclatent.parallel import (
    Task,
    code_version,
    file_stamp,
    frame_arrays,
    frame_from_arrays,
    replay_warnings,
    run_tasks,
)

#: the columns of an encoded table before the latent ones (then ``reconstruction_iou``)
NAME_COLUMNS = [
    "patient",
    "series",
    "ivd_label",
    "level",
    "centre_x_mm",
    "centre_y_mm",
    "centre_z_mm",
]


def encode_masks(
    model_dir: str | os.PathLike,
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    modalities: Sequence[str] | None = ("t1",),
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latent vectors (``latent_0 ..``) and reconstruction IoU of every disc of ``masks``
    (a SPIDER folder, a folder of masks, a file or a list) under the model in ``model_dir``.

    Returns ``(table, skipped)``: one row per encoded disc (:data:`NAME_COLUMNS`, the latent
    columns, ``reconstruction_iou``; discs in file order, then by IVD label as isolated),
    and one row per disc or series left out with its reason (``series, ivd_label, reason``):
    a disc larger than the cube, an unreadable mask, labels that contradict anatomy, or a
    task that failed. Warnings of the isolation are re-emitted here in file order.
    """
    model_dir = Path(model_dir)
    # a missing or broken model folder fails here, before any task; a serial run reuses it
    cfg = _worker_model(str(model_dir.resolve()), file_stamp(model_dir / MODEL_FILE)).config
    files = mask_files(masks, modalities)
    params = isolation_params("gt", cfg.spacing_mm, cfg.size, None, DISC_LABEL_OFFSET)
    params["model_dir"] = str(model_dir.resolve())
    model_files = (model_dir / MODEL_FILE, model_dir / CONFIG_FILE)
    tasks = [Task(series_name(f), (Path(f), *model_files), params) for f in files]
    salt = code_version(
        "autoencoder.encoding", "autoencoder.network", "autoencoder.training", *ISOLATION_MODULES
    )
    with contextlib.ExitStack() as stack:
        cache = cache_dir or stack.enter_context(tempfile.TemporaryDirectory())
        run = run_tasks(
            encode_series, tasks, cache, salt, scheduler, workers, progress, "encoding discs"
        )
        tables, skipped = [], []
        errors = run.failures.set_index("series")["error"].to_dict()
        for task in tasks:
            if task.name in errors:
                reason = f"{task.inputs[0]}: {errors[task.name]}"
                warnings.warn(f"skipped: {reason}", DiscWarning, stacklevel=2)
                skipped.append(pd.DataFrame([[task.name, np.nan, reason]], columns=SKIPPED_COLUMNS))
                continue
            with np.load(run.files[task.name], allow_pickle=False) as z:
                table = frame_from_arrays(z)
                part_skipped = frame_from_arrays(z, "skipped")
                replay_warnings(json.loads(str(z["warnings"])))
            for reason in part_skipped["reason"]:
                warnings.warn(f"skipped: {reason}", DiscWarning, stacklevel=2)
            tables.append(table)
            skipped.append(part_skipped)
    columns = [*NAME_COLUMNS, *latent_columns(cfg.latent_dim), "reconstruction_iou"]
    parts = [t for t in tables if len(t)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    out["patient"] = out["patient"].astype(str)
    out["series"] = out["series"].astype(str)
    left_out = pd.concat([s for s in skipped if len(s)] or [pd.DataFrame(columns=SKIPPED_COLUMNS)])
    return out[columns].reset_index(drop=True), left_out.reset_index(drop=True)


@functools.lru_cache(maxsize=2)
def _worker_model(model_dir: str, weights_key: tuple[int, int]) -> DiscAE:
    """One model per process (and per version of its weights file, ``weights_key``)."""
    return DiscAE.load(model_dir)


def encode_series(task: Task, out: Path) -> None:
    """One series of :func:`encode_masks` (a :func:`~disclatent.parallel.run_tasks` task):
    its discs' names, centres, latent vectors and reconstruction IoU, the discs it left out
    and the isolation's warnings, written to ``out`` (``.npz``)."""
    model_dir = task.params["model_dir"]
    ae = _worker_model(model_dir, file_stamp(Path(model_dir) / MODEL_FILE))
    with tempfile.TemporaryDirectory() as tmp:
        isolated = Path(tmp) / "isolated.npz"
        isolate_series(Task(task.name, task.inputs[:1], task.params), isolated)
        part = read_isolated_series(isolated, int(task.params["size"]))
    table = part["table"].reindex(columns=NAME_COLUMNS).reset_index(drop=True)
    cubes = part["cubes"]
    k = ae.config.latent_dim
    if len(cubes):
        z = ae.encode(cubes)
        iou = iou_per_disc(ae.decode(z), cubes)
    else:
        z, iou = np.zeros((0, k), np.float32), np.zeros(0)
    for j, col in enumerate(latent_columns(k)):
        table[col] = z[:, j].astype(np.float64)
    table["reconstruction_iou"] = np.asarray(iou, np.float64)
    skipped = part["skipped"].reindex(columns=SKIPPED_COLUMNS)
    skipped["ivd_label"] = skipped["ivd_label"].astype(float)
    skipped["series"] = skipped["series"].astype(str)
    skipped["reason"] = skipped["reason"].astype(str)
    with open(out, "wb") as fh:
        np.savez_compressed(
            fh,
            **frame_arrays(table),
            **frame_arrays(skipped, "skipped"),
            warnings=np.array(json.dumps(part["warnings"])),
        )
