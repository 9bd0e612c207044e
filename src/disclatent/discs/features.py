"""Cohorts measured: the geometry table of every disc, the transformer, and the gradings join.

:func:`measure_masks` measures every disc of a set of masks in its mask's own physical space
(:func:`disclatent.discs.geometry.measure_disc`); :func:`measure_cohort` does so for a
SPIDER folder and adds each series' modality, site and slice thickness: that is the geometry
table the geometry chapter (``02_geometry``) writes to ``<build>/tables/geometry_features.csv``
and later chapters read with :func:`load_geometry_table`. :class:`GeometryFeatures` is the
same measurement as a scikit-learn transformer (of masks or of cubes). Gradings are joined on
(patient, IVD label), never on position. Method: ``book/method.md``, *Geometry*.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from disclatent.conventions import GEOMETRY_FEATURES, ID_COLUMNS, PAPER_SPACING
from disclatent.data import labels as lab
from disclatent.data.spider import (
    SpiderFolder,
    parse_series,
    read_gradings,
    read_overview,
    site_column,
)
from disclatent.data.volume import DataError, Volume, read_mask, series_name
from disclatent.discs.geometry import DEFAULT_STEP_MM, measure_cubes, measure_disc
from disclatent.discs.isolation import (
    DiscVoxels,
    DiscWarning,
    EmptyDiscError,
    find_discs,
    label_map,
)
from disclatent.discs.store import DiscStore, load_disc_store, mask_files
from disclatent.parallel import (
    Task,
    code_version,
    error_class,
    frame_arrays,
    frame_from_arrays,
    qualified_name,
    replay_warnings,
    run_tasks,
    warning_records,
)
from disclatent.paths import BuildPaths, Table

#: columns of a measured disc table: who the disc is, then its features
COLUMNS = ID_COLUMNS + GEOMETRY_FEATURES
#: the geometry table of the cohort (every series), written by the chapter 02_geometry
_TABLE_DTYPES = {
    "series": str,
    "patient": str,
    "ivd_label": int,
    "level": str,
    "touches_border": bool,
    "modality": str,
    "institution": str,
    "Manufacturer": str,
}


class GradingMismatchWarning(DiscWarning):
    """Discs without gradings, or gradings without a disc in the masks."""


def _as_mask(mask: Volume | str | os.PathLike, label_offset: int) -> Volume:
    if isinstance(mask, Volume):
        return mask
    return read_mask(mask, allow_unknown_labels=label_offset != lab.DISC_LABEL_OFFSET)


def measure_mask(
    mask: Volume | str | os.PathLike,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    *,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    step_mm: float = DEFAULT_STEP_MM,
    discs: list[DiscVoxels] | None = None,
) -> pd.DataFrame:
    """Every disc of one mask, measured in the mask's own physical space.

    Columns: :data:`COLUMNS` plus ``touches_border`` (the disc reaches the edge of the image
    volume, so it may be cut). ``labels``/``label_offset`` as in
    :func:`disclatent.discs.isolation.find_discs`.
    """
    vol = _as_mask(mask, label_offset)
    if discs is None:
        discs = find_discs(vol, labels, label_offset)
    series = series_name(vol.path) if vol.path is not None else ""
    patient = parse_series(series)[0] if series else ""
    rows = []
    for disc in discs:
        geo = measure_disc(vol, disc, step_mm)
        rows.append(
            {
                "series": series,
                "patient": patient,
                "ivd_label": disc.ivd_label,
                "level": disc.level,
                **geo.features,
                "touches_border": disc.touches_border,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS + ["touches_border"])


def measure_masks(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    labels: Iterable[int] | Mapping[int, int] | None = None,
    *,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    modalities: Sequence[str] | None = ("t1",),
    progress: bool = True,
    step_mm: float = DEFAULT_STEP_MM,
    skip_errors: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """:func:`measure_mask` for a SPIDER folder, a folder of masks, a file or a list.

    One :func:`disclatent.parallel.run_tasks` task per series (``scheduler``, ``workers`` as
    there); with ``cache_dir`` each series' table is kept under a key of its mask's bytes, so
    a rerun measures only new or changed series. A series that cannot be read or numbered
    raises its error, or with ``skip_errors`` is left out with a :class:`DiscWarning` naming
    it. Rows in the order of the files whatever the scheduler; warnings re-emitted here.
    """
    files = mask_files(masks, modalities)
    mapping = label_map(labels, label_offset)
    params = {
        "labels": None if mapping is None else sorted(mapping.items()),
        "label_offset": int(label_offset),
        "step_mm": float(step_mm),
    }
    tasks = [Task(series_name(f), (Path(f),), params) for f in files]
    salt = code_version("discs.features", "discs.geometry", "discs.isolation", "discs.numbering")
    with contextlib.ExitStack() as stack:
        cache = cache_dir or stack.enter_context(tempfile.TemporaryDirectory())
        run = run_tasks(
            measure_series, tasks, cache, salt, scheduler, workers, progress, "measuring discs"
        )
        errors = run.failures.set_index("series")["error"].to_dict()
        tables = []
        for task in tasks:
            if task.name in errors:
                said: list = []
                error: list[str] | None = [
                    qualified_name(DataError),
                    f"{task.inputs[0]}: {errors[task.name]}",
                ]
                table = None
            else:
                table, said, error = _read_measured(run.files[task.name])
            replay_warnings(said)
            if error:
                if not skip_errors:
                    raise error_class(error[0], DataError)(error[1])
                warnings.warn(f"skipped: {error[1]}", DiscWarning, stacklevel=2)
                continue
            if table is not None and len(table):
                tables.append(table)
    return (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=COLUMNS + ["touches_border"])
    )


def measure_series(task: Task, out: Path) -> None:
    """One series of :func:`measure_masks` (a :func:`~disclatent.parallel.run_tasks` task):
    its table, warnings and data error (if any) written to ``out`` (``.npz``)."""
    p = task.params
    labels = None if p["labels"] is None else {int(v): int(k) for v, k in p["labels"]}
    table, error = pd.DataFrame(columns=COLUMNS + ["touches_border"]), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = measure_mask(
                task.inputs[0], labels, label_offset=p["label_offset"], step_mm=p["step_mm"]
            )
        except DataError as exc:
            error = [qualified_name(type(exc)), str(exc)]
    with open(out, "wb") as fh:
        np.savez_compressed(
            fh,
            **frame_arrays(table),
            warnings=np.array(json.dumps(warning_records(caught))),
            error=np.array(json.dumps(error)),
        )


def _read_measured(path: Path) -> tuple[pd.DataFrame, list, list[str] | None]:
    """(table, warning records, ``[error class, message]`` or ``None``) of one series."""
    with np.load(path, allow_pickle=False) as z:
        return (
            frame_from_arrays(z),
            json.loads(str(z["warnings"])),
            json.loads(str(z["error"])),
        )


class GeometryFeatures(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: discs -> geometric feature table (mm, degrees).

    ``transform`` accepts a :class:`~disclatent.discs.store.DiscStore` (or the path of one),
    a disc table with a ``mask_path`` column (rows with ``ivd_label``; as in the store's
    table), or an array of cubes ``(n, S, S, S)``.

    * ``space="cube"`` measures the isolated cubes (what the autoencoder sees and decodes);
      ``space="mask"`` re-reads each disc's source mask and measures it in its original
      physical space (more accurate: no resampling).
    * ``ids=True`` returns :data:`COLUMNS` (identity columns first, when known); ``ids=False``
      only the numeric :data:`~disclatent.conventions.GEOMETRY_FEATURES`, for use inside a pipeline.

    It has nothing to learn: ``fit`` only records the output feature names.
    """

    def __init__(
        self,
        space: str = "cube",
        ids: bool = True,
        spacing_mm: Sequence[float] | None = None,
        step_mm: float = DEFAULT_STEP_MM,
        label_offset: int = lab.DISC_LABEL_OFFSET,
        allow_empty: bool = False,
    ):
        self.space = space
        self.ids = ids
        self.spacing_mm = spacing_mm
        self.step_mm = step_mm
        self.label_offset = label_offset
        self.allow_empty = allow_empty

    def fit(self, X=None, y=None):  # noqa: N803 (scikit-learn's names)
        if self.space not in ("cube", "mask"):
            raise ValueError(f"space must be 'cube' or 'mask', got {self.space!r}")
        self.feature_names_out_ = np.array(GEOMETRY_FEATURES, dtype=object)
        return self

    def get_feature_names_out(self, input_features=None):
        return np.array(GEOMETRY_FEATURES, dtype=object)

    def transform(self, X):  # noqa: N803
        if not hasattr(self, "feature_names_out_"):
            self.fit()
        if isinstance(X, str | os.PathLike):
            X = load_disc_store(X)
        if isinstance(X, DiscStore):
            table = X.table.reset_index(drop=True)
            if self.space == "cube":
                spacing = self.spacing_mm or X.spacing_mm
                feats = measure_cubes(X.cubes, spacing, self.step_mm, self.allow_empty)
            else:
                feats = self._from_masks(table)
        elif isinstance(X, pd.DataFrame):
            table = X.reset_index(drop=True)
            if self.space == "cube":
                raise ValueError(
                    "a disc table holds no cubes: use space='mask' (it needs a "
                    "mask_path column) or pass the DiscStore"
                )
            feats = self._from_masks(table)
        else:
            cubes = np.asarray(X)
            if cubes.ndim == 3:
                cubes = cubes[None]
            if cubes.ndim != 4:
                raise ValueError(f"expected cubes (n, S, S, S), got shape {cubes.shape}")
            table = pd.DataFrame(index=range(len(cubes)))
            feats = measure_cubes(
                cubes, self.spacing_mm or PAPER_SPACING, self.step_mm, self.allow_empty
            )
        if not self.ids:
            return feats
        ids = [c for c in ID_COLUMNS if c in table]
        return pd.concat([table[ids], feats], axis=1)

    def _from_masks(self, table: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("mask_path", "ivd_label") if c not in table]
        if missing:
            raise ValueError(f"disc table lacks column(s) {missing} needed for space='mask'")
        out = pd.DataFrame(index=table.index, columns=GEOMETRY_FEATURES, dtype=float)
        for path, rows in table.groupby("mask_path", sort=False):
            vol = _as_mask(path, self.label_offset)
            # every disc of the mask, so that a renumbered series (discs.numbering) finds
            # its discs by the IVD labels the store holds
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DiscWarning)  # reported when isolated
                found = {d.ivd_label: d for d in find_discs(vol, label_offset=self.label_offset)}
            for idx, k in rows["ivd_label"].items():
                if int(k) not in found:
                    if self.allow_empty:
                        continue
                    raise EmptyDiscError(f"{path}: disc {lab.level_name(int(k))} not found")
                geo = measure_disc(vol, found[int(k)], self.step_mm)
                out.loc[idx, GEOMETRY_FEATURES] = [geo.features[f] for f in GEOMETRY_FEATURES]
        return out.astype(float)


# ---------------------------------------------------------------------------------------
# Joining the radiological gradings
# ---------------------------------------------------------------------------------------
def grading_mismatches(features: pd.DataFrame, gradings: pd.DataFrame) -> pd.DataFrame:
    """Discs measured but not graded, and graded discs absent from the masks.

    ``gradings`` as read by :func:`disclatent.data.spider.read_gradings`. Only patients that have
    at least one measured series are compared (a patient with no mask is not a mismatch of
    its discs). Columns: ``patient, ivd_label, level, problem``.
    """
    f = features[["patient", "ivd_label"]].astype({"patient": str, "ivd_label": int})
    g = gradings[["patient", "ivd_label"]].astype({"patient": str, "ivd_label": int})
    g = g[g["patient"].isin(set(f["patient"]))]
    keys_f = set(map(tuple, f.drop_duplicates().to_numpy()))
    keys_g = set(map(tuple, g.drop_duplicates().to_numpy()))
    rows = [(p, k, "in mask, not graded") for p, k in sorted(keys_f - keys_g)]
    rows += [(p, k, "graded, not in mask") for p, k in sorted(keys_g - keys_f)]
    out = pd.DataFrame(rows, columns=["patient", "ivd_label", "problem"])
    out.insert(2, "level", out["ivd_label"].map(lab.level_name))
    return out


def join_gradings(
    features: pd.DataFrame, gradings: pd.DataFrame | str | os.PathLike, how: str = "inner"
) -> pd.DataFrame:
    """Join gradings to measured discs on (patient, IVD label), never on position.

    Mismatches in either direction are reported with a :class:`GradingMismatchWarning` that
    lists them; ``how="inner"`` (default) keeps only discs that have both, ``"left"`` keeps
    every measured disc (gradings NaN where missing).
    """
    if not isinstance(gradings, pd.DataFrame):
        gradings = read_gradings(gradings)
    if how not in ("inner", "left"):
        raise ValueError(f"how must be 'inner' or 'left', got {how!r}")
    bad = grading_mismatches(features, gradings)
    for problem, rows in bad.groupby("problem"):
        shown = ", ".join(
            f"patient {p} {lv}"
            for p, lv in rows[["patient", "level"]].head(8).itertuples(index=False)
        )
        more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
        action = (
            ("dropped" if how == "inner" else "kept without gradings")
            if problem.startswith("in mask")
            else "ignored"
        )
        warnings.warn(
            f"{len(rows)} disc(s) {problem} ({action}): {shown}{more}",
            GradingMismatchWarning,
            stacklevel=2,
        )
    left = features.astype({"patient": str})
    right = gradings.drop(columns=[c for c in ("level",) if c in gradings and c in left])
    return left.merge(
        right.astype({"patient": str}), on=["patient", "ivd_label"], how=how, validate="many_to_one"
    )


# ---------------------------------------------------------------------------------------
# The cohort's geometry table
# ---------------------------------------------------------------------------------------
def measure_cohort(
    root: str | os.PathLike,
    modalities: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[str]]:
    """Every disc of a SPIDER folder measured in its mask's own space, and the notes raised.

    The table is :func:`measure_masks` (all series by default: T1 and T2 are two independent
    acquisitions of each disc) with each series' ``modality``, site (``institution``, else
    ``Manufacturer``) and ``SliceThickness`` from ``overview.csv``. The notes are the
    :class:`~disclatent.discs.isolation.DiscWarning` (and other warnings) raised on the way, as
    ``"note (<kind>): <message>"``; a disc is never dropped silently. A series that cannot be
    read or numbered is left out with such a note; the others are measured. With
    ``cache_dir`` each series' table is kept there (see :func:`measure_masks`), so a rerun
    measures only new or changed series.
    """
    overview = read_overview(SpiderFolder(Path(root)).overview_csv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiscWarning)
        table = measure_masks(
            root, modalities=modalities, progress=progress, skip_errors=True, cache_dir=cache_dir
        )
    notes = [f"note ({type(w.message).__name__}): {w.message}" for w in caught]
    columns = ["series", "modality", site_column(overview), "SliceThickness"]
    return table.merge(overview[columns], on="series", how="left"), notes


def load_geometry_table(build_paths: BuildPaths) -> pd.DataFrame:
    """The geometry table written by ``02_geometry`` (``<build>/tables/geometry_features.csv``).

    Columns :data:`COLUMNS`, ``touches_border``, ``modality``, the site column and
    ``SliceThickness``; ``series``, ``patient``, ``level`` and the site are strings,
    ``ivd_label`` an integer. Missing: :class:`~disclatent.paths.MissingOutputError` naming the
    chapter to run.
    """
    path = build_paths.require(build_paths.table(Table.GEOMETRY), "02_geometry")
    return pd.read_csv(path, dtype=_TABLE_DTYPES)
