"""Segmentation cases kept on disk: training on a cohort never holds the cohort.

:func:`store_case` resamples one series to the network grid once
(:func:`~disclatent.segmentation.data.load_case`) and writes it beside a key of its files'
bytes; :class:`StoredCase` reads it back patch by patch. ``load_cases(..., case_dir=...)``
(:mod:`disclatent.segmentation.data`) and :func:`~disclatent.segmentation.training.train`
use it; :func:`split_digest` keys a training run's data by the same case keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from disclatent.conventions import PAPER_SPACING, Spacing
from disclatent.data.spider import SpiderFolder
from disclatent.data.volume import (
    DataError,
    Volume,
    atomic_path,
    series_name,
    write_text_atomic,
)
from disclatent.parallel import Task, code_version, content_key
from disclatent.segmentation.data import Case, load_case


@dataclass(frozen=True, eq=False)
class StoredCase:
    """One series on the network grid, kept on disk: :class:`Case`'s fields, read when used.

    The image (float32) and the disc foreground (uint8), both (SI, AP, LR), are ``.npy``
    files beside the case's ``.json`` (grid geometry in mm, LPS). Every access to ``image``
    or ``label`` maps its file anew, read-only, and the mapping goes with the last view of
    that array: a training batch holds its patches, not the series they were cut from.
    Only the foreground's flat indices (a few hundred kB) stay in memory.
    """

    series: str
    meta: Path  # <series>-<key>.json
    spacing: tuple[float, float, float]  # mm, ITK (x, y, z) order
    origin: tuple[float, float, float]  # mm
    direction: np.ndarray  # 3 x 3, columns: index axes in LPS
    source: Path  # the image file the case was made from
    foreground: np.ndarray  # flat indices of foreground voxels

    @property
    def image(self) -> np.ndarray:
        return np.load(_part_file(self.meta, "image"), mmap_mode="r")

    @property
    def label(self) -> np.ndarray:
        return np.load(_part_file(self.meta, "label"), mmap_mode="r")

    @property
    def grid(self) -> Volume:
        return Volume(self.image, self.spacing, self.origin, self.direction, self.source)


AnyCase = Case | StoredCase  # what training and validation accept


def _part_file(meta: Path, part: str) -> Path:
    """The ``image`` or ``label`` array file beside a case's ``.json``."""
    return meta.with_name(f"{meta.stem}.{part}.npy")


def _open_stored(meta: Path) -> StoredCase:
    info = json.loads(meta.read_text())
    label_file = _part_file(meta, "label")
    label = np.load(label_file, mmap_mode="r")
    if tuple(label.shape) != tuple(info["shape"]):
        raise DataError(f"{label_file}: shape {label.shape}, its case file says {info['shape']}")
    return StoredCase(
        series=info["series"],
        meta=meta,
        spacing=tuple(info["spacing"]),
        origin=tuple(info["origin"]),
        direction=np.asarray(info["direction"], float),
        source=Path(info["source"]),
        foreground=np.flatnonzero(label),
    )


def case_key(
    image_path: str | Path, mask_path: str | Path, spacing: Spacing = PAPER_SPACING
) -> str:
    """The key of one series' case: its image's and mask's bytes, the spacing (mm) and the
    code of :func:`load_case` and this module (:func:`~disclatent.parallel.content_key`). A
    file that cannot be read is a :class:`DataError` naming it."""
    image_path, mask_path = Path(image_path), Path(mask_path)
    series = series_name(image_path)
    task = Task(series, (image_path, mask_path), {"spacing": list(spacing.xyz)})
    try:
        return content_key(task, salt=code_version("segmentation.data", "segmentation.cases"))
    except OSError as exc:
        raise DataError(f"{series}: cannot read {exc.filename}: {exc.strerror}") from exc


def store_case(
    image_path: str | Path,
    mask_path: str | Path,
    case_dir: str | Path,
    spacing: Spacing = PAPER_SPACING,
    key: str | None = None,
) -> StoredCase:
    """:func:`load_case` written once to ``case_dir`` and opened from there.

    The files are named by the series' :func:`case_key` (``key``: already computed, so the
    files are not read once more), so a rerun (or another model trained on the same series)
    reads them back and a changed file is made anew. Each file is written to a temporary
    name and renamed; the ``.json``, written last, marks a complete case.
    """
    image_path, mask_path = Path(image_path), Path(mask_path)
    series = series_name(image_path)
    key = key or case_key(image_path, mask_path, spacing)
    meta = Path(case_dir) / f"{series}-{key}.json"
    if not meta.exists():
        case = load_case(image_path, mask_path, spacing)
        assert case.label is not None  # a mask was given
        for part, arr in (("image", case.image), ("label", case.label)):
            with atomic_path(_part_file(meta, part)) as tmp:
                np.save(tmp, arr)
        grid = case.grid
        info = {
            "series": series,
            "shape": list(case.image.shape),
            "spacing": list(grid.spacing),
            "origin": list(grid.origin),
            "direction": grid.direction.tolist(),
            "source": str(image_path),
            "mask": str(mask_path),
        }
        write_text_atomic(json.dumps(info, indent=1) + "\n", meta)
    return _open_stored(meta)


def split_digest(root: Path, split: pd.DataFrame, spacing: Spacing) -> tuple[str, dict[str, str]]:
    """SHA-256 of the split and of the case key of every training and validation series
    (:func:`~disclatent.segmentation.cases.case_key`: its image's and mask's bytes, the
    network spacing, the resampling code), and those keys by series, so that the cases are
    stored under them without reading the files again. A series whose files cannot be read
    enters the digest by its error and is left out when the cases are loaded."""
    folder = SpiderFolder(root)
    h = hashlib.sha256(split[["series", "role"]].to_csv(index=False).encode())
    keys: dict[str, str] = {}
    series = list(split.loc[split["role"].isin(["train", "val"]), "series"])
    for s in tqdm(series, desc="hashing series", unit="series", disable=len(series) < 2):
        try:
            keys[s] = case_key(folder.image_path(s), folder.mask_path(s), spacing)
            h.update(keys[s].encode())
        except DataError as exc:
            h.update(f"unreadable: {exc}".encode())
    return h.hexdigest(), keys
