"""Disc intensity cubes: the image on the same canonical cube as the disc's mask.

(``book/method.md``, *Composition*.) A disc store (:mod:`disclatent.discs.store`) holds each
disc's binary cube on a grid centred on its centre of mass, axis-aligned in LPS world
millimetres, spacing (SI, AP, LR). Here the series' *image* is resampled onto exactly that
grid, from the header's geometry (origin, spacing, direction), with linear interpolation,
and normalised by a reference tissue the mask provides: the median image intensity over
the spinal canal (label 100, CSF: bright on T2) or, where a mask has no canal, over the
vertebral bodies. Intensities are then in units of the reference ("disc-to-CSF ratio"),
comparable between sites and scanners whose gains differ.

* :func:`intensity_cube`: one image resampled onto one cube (no normalisation);
* :func:`reference_intensity`: the series' reference value and which tissue gave it;
* :func:`build_intensity_store`: every disc of a store, one task per series
  (:func:`disclatent.parallel.run_tasks`: resumable, content-keyed, failures named), written
  beside the store as ``.npz`` (float16 cubes in the store's row order);
* :func:`load_intensity_store`: read it back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from disclatent.data import labels as lab
from disclatent.data.volume import DataError, Volume, atomic_path, read_pair
from disclatent.discs.isolation import cube_origin
from disclatent.discs.store import DiscStore, read_json_table
from disclatent.parallel import Task, code_version, run_tasks

__all__ = [
    "REFERENCE_TISSUES",
    "IntensityStore",
    "build_intensity_store",
    "image_path_for",
    "intensity_cube",
    "intensity_cubes",
    "load_intensity_store",
    "reference_intensity",
]

#: reference tissues, in order of preference: the spinal canal (CSF), the vertebral bodies
REFERENCE_TISSUES = ("spinal_canal", "vertebrae")
INTENSITY_VERSION = 1


def intensity_cube(
    image: Volume,
    centre_mm: Sequence[float],
    size: int,
    spacing_mm: Sequence[float],
) -> np.ndarray:
    """``image`` resampled (linear) onto the ``size``^3 cube centred on ``centre_mm`` (LPS
    mm) with ``spacing_mm`` in the cube's numpy order (SI, AP, LR), as float32 ``[si, ap,
    lr]``; voxels outside the image are NaN. The geometry is the header's: origin, spacing
    and direction of ``image``, never its array order."""
    return intensity_cubes(image, [centre_mm], size, spacing_mm)[0]


def intensity_cubes(
    image: Volume,
    centres_mm: Sequence[Sequence[float]],
    size: int,
    spacing_mm: Sequence[float],
) -> list[np.ndarray]:
    """:func:`intensity_cube` for each of ``centres_mm``, the image converted once."""
    sp_xyz = tuple(float(s) for s in np.asarray(spacing_mm, float)[::-1])
    src = sitk.Cast(image.to_sitk(), sitk.sitkFloat32)
    out = []
    for centre in centres_mm:
        origin = tuple(float(o) for o in cube_origin(np.asarray(centre, float), size, spacing_mm))
        cube = sitk.Resample(
            src,
            [int(size)] * 3,
            sitk.Transform(),
            sitk.sitkLinear,
            origin,
            sp_xyz,
            (1, 0, 0, 0, 1, 0, 0, 0, 1),
            float("nan"),
            sitk.sitkFloat32,
        )
        out.append(sitk.GetArrayFromImage(cube))  # (z, y, x) = (SI, AP, LR), LPS-aligned
    return out


def reference_intensity(image: Volume, mask: Volume) -> tuple[float, str]:
    """The median image intensity over the mask's spinal canal (label 100) or, without one,
    over its vertebral bodies (labels 1-25), and the tissue's name; ``DataError`` naming the
    mask when it has neither or the reference is not positive."""
    m = np.asarray(mask.array)
    regions = {
        "spinal_canal": lambda: m == lab.SPINAL_CANAL_LABEL,
        "vertebrae": lambda: (m >= 1) & (m <= lab.MAX_INDEX),
    }
    for tissue in REFERENCE_TISSUES:
        inside = regions[tissue]()
        if inside.sum() >= 10:
            value = float(np.median(np.asarray(image.array, float)[inside]))
            if not value > 0:
                raise DataError(
                    f"{mask.where}: the {tissue.replace('_', ' ')}'s median intensity in "
                    f"{image.where} is {value:g}; it cannot normalise the discs"
                )
            return value, tissue
    raise DataError(
        f"{mask.where}: no spinal canal (label {lab.SPINAL_CANAL_LABEL}) or vertebra voxels "
        "to normalise the image intensities against"
    )


def image_path_for(mask_path: str | os.PathLike) -> Path:
    """The image of a SPIDER-format mask: the same name under ``images/`` beside ``masks/``."""
    mask_path = Path(mask_path)
    if mask_path.parent.name != "masks":
        raise DataError(f"{mask_path}: not in a SPIDER 'masks' folder; its image is unknown")
    return mask_path.parent.parent / "images" / mask_path.name


def _intensity_series(task: Task, out: Path) -> None:
    """One series of :func:`build_intensity_store`: its discs' normalised cubes (float16)."""
    image_path, mask_path = task.inputs
    image, mask = read_pair(image_path, mask_path)
    ref, tissue = reference_intensity(image, mask)
    p = task.params
    size, spacing = int(p["size"]), [float(s) for s in p["spacing_mm"]]
    cubes = [c / ref for c in intensity_cubes(image, p["centres"], size, spacing)]
    stack = np.stack(cubes) if cubes else np.zeros((0, size, size, size), np.float32)
    with open(out, "wb") as fh:
        np.savez_compressed(
            fh, cubes=stack.astype(np.float16), reference=np.array(ref), tissue=np.array(tissue)
        )


@dataclass(frozen=True, eq=False)
class IntensityStore:
    """Normalised intensity cubes ``(n, S, S, S)`` float16 in the disc store's row order,
    and per row the reference intensity and tissue; rows whose series failed are NaN."""

    cubes: np.ndarray
    table: pd.DataFrame  # store rows + reference_intensity, reference_tissue

    def __len__(self) -> int:
        return len(self.cubes)


def build_intensity_store(
    store: DiscStore,
    out_path: str | os.PathLike,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[Path, pd.DataFrame]:
    """The intensity cubes of every disc of ``store`` (its images found beside its masks,
    :func:`image_path_for`), written atomically to ``out_path``; returns the path and the
    failures (series, error) - a series whose image is missing, corrupt, on another grid or
    without a reference tissue is named there, its rows NaN, and the others go on. Each
    series is one task keyed on its image's and mask's bytes and the disc centres, so a
    rerun reuses finished series (cache: ``<out_path stem>.series/``)."""
    table = store.table.reset_index(drop=True)
    spacing, size = [float(s) for s in store.spacing_mm], int(store.size)
    tasks, rows_of = [], {}
    for series, rows in table.groupby("series", sort=False):
        mask_path = Path(rows["mask_path"].iloc[0])
        centres = rows[["centre_x_mm", "centre_y_mm", "centre_z_mm"]].to_numpy(float)
        params = {"size": size, "spacing_mm": spacing, "centres": centres.round(6).tolist()}
        tasks.append(Task(str(series), (image_path_for(mask_path), mask_path), params))
        rows_of[str(series)] = rows.index.to_numpy()
    out_path = Path(out_path)
    run = run_tasks(
        _intensity_series,
        tasks,
        out_path.with_suffix(".series"),
        salt=code_version("discs.intensity", "data.volume") + f"v{INTENSITY_VERSION}",
        scheduler=scheduler,
        workers=workers,
        progress=progress,
        desc="intensity cubes",
    )
    cubes = np.full((len(table), size, size, size), np.nan, np.float16)
    ref = np.full(len(table), np.nan)
    tissue = np.full(len(table), "", object)
    for task in tasks:
        if task.name not in run.files:
            continue
        idx = rows_of[task.name]
        with np.load(run.files[task.name], allow_pickle=False) as z:
            cubes[idx] = z["cubes"]
            ref[idx], tissue[idx] = float(z["reference"]), str(z["tissue"])
    out = table.assign(reference_intensity=ref, reference_tissue=tissue)
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, cubes=cubes, table=np.array(out.to_json(orient="split")))
    return out_path, run.failures


def load_intensity_store(path: str | os.PathLike) -> IntensityStore:
    """An :class:`IntensityStore` written by :func:`build_intensity_store`."""
    with np.load(path, allow_pickle=False) as z:
        cubes = z["cubes"]
        table = read_json_table(z["table"])
    return IntensityStore(cubes, table)
