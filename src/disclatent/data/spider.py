"""The SPIDER folder layout, its overview and gradings tables, and the per-disc table.

A SPIDER folder holds::

    images/<patient>_t1.mha, <patient>_t2.mha, <patient>_t2_SPACE.mha
    masks/<same names>
    overview.csv                  one row per series (``new_file_name`` = "<patient>_<modality>")
    radiological_gradings.csv     one row per (Patient, IVD label)

Gradings are per patient and disc, not per series: every series of a patient shares them.
Quirks handled here: rows with ``IVD label`` 0 (no disc; dropped with a warning), the
"Pfirrman grade" spelling (either spelling accepted), 3-9 discs per series, and several
series (T1, T2, T2-SPACE) per patient.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from disclatent.data import labels as lab
from disclatent.data.volume import (
    DataError,
    MissingFileError,
    image_suffix,
    list_images,
    series_name,
)
from disclatent.formatting import natural_key

GRADING_COLUMNS = [
    "Patient",
    "IVD label",
    "Modic",
    "UP endplate",
    "LOW endplate",
    "Spondylolisthesis",
    "Disc herniation",
    "Disc narrowing",
    "Disc bulging",
    "Pfirrman grade",
]
# SPIDER's column names -> ours (snake case, "Pfirrmann" spelled right)
_GRADING_RENAME = {
    "Patient": "patient",
    "IVD label": "ivd_label",
    "Modic": "modic",
    "UP endplate": "up_endplate",
    "LOW endplate": "low_endplate",
    "Spondylolisthesis": "spondylolisthesis",
    "Disc herniation": "disc_herniation",
    "Disc narrowing": "disc_narrowing",
    "Disc bulging": "disc_bulging",
    "Pfirrman grade": "pfirrmann_grade",
    "Pfirrmann grade": "pfirrmann_grade",
}
GRADING_TARGETS = ["disc_narrowing", "disc_bulging"]

OVERVIEW_COLUMNS = [
    "new_file_name",
    "num_vertebrae",
    "num_discs",
    "sex",
    "subset",
    "Manufacturer",
    "PixelSpacing",
    "SliceThickness",
    "EchoTime",
    "RepetitionTime",
    "FlipAngle",
    "MagneticFieldStrength",
]
MODALITIES = ("t1", "t2", "t2_SPACE")
_SERIES_RE = re.compile(r"^(?P<patient>.+?)_(?P<modality>t1|t2|t2_SPACE)$", re.IGNORECASE)


def parse_modalities(text: str) -> tuple[str, ...] | None:
    """A command line's ``--modalities``: ``"t1,t2"`` -> ``("t1", "t2")``; ``"all"`` -> ``None``."""
    return None if text == "all" else tuple(text.split(","))


def parse_pixel_spacing(text: str) -> tuple[float, float]:
    """``overview.csv``'s ``PixelSpacing`` ("[0.625, 0.625]", "[.46875, .46875]") in mm."""
    try:
        values = [float(v) for v in str(text).strip().strip("[]").split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) <= 0:
        raise DataError(f"PixelSpacing {text!r} is not two positive numbers in brackets")
    return values[0], values[1]


def parse_series(name: str) -> tuple[str, str]:
    """Split a SPIDER series name into (patient, modality): "12_t2_SPACE" -> ("12", "t2_SPACE").

    Names that do not follow the pattern (a user's own masks) are their own patient, with
    modality "".
    """
    m = _SERIES_RE.match(name)
    if not m:
        return name, ""
    modality = {mod.lower(): mod for mod in MODALITIES}[m["modality"].lower()]
    return m["patient"], modality


@dataclass(frozen=True)
class SpiderFolder:
    """Paths of a SPIDER-format folder (real or phantom)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"

    @property
    def overview_csv(self) -> Path:
        return self.root / "overview.csv"

    @property
    def gradings_csv(self) -> Path:
        return self.root / "radiological_gradings.csv"

    def check(self) -> None:
        """Raise a clear error if this does not look like a SPIDER folder."""
        if not self.root.is_dir():
            raise MissingFileError(f"{self.root}: SPIDER folder not found")
        missing = [p.name for p in (self.masks_dir,) if not p.is_dir()]
        if missing:
            raise DataError(
                f"{self.root}: not a SPIDER-format folder (missing {', '.join(missing)}/; "
                "expected images/, masks/, overview.csv, radiological_gradings.csv)"
            )

    def series(self, modalities: tuple[str, ...] | None = ("t1",)) -> list[str]:
        """Series names that have a mask, optionally only of the given modalities."""
        self.check()
        names = [series_name(p) for p in list_images(self.masks_dir)]
        if modalities is None:
            return names
        wanted = {m.lower() for m in modalities}
        return [n for n in names if parse_series(n)[1].lower() in wanted]

    def _find(self, folder: Path, series: str) -> Path:
        for suffix in (".mha", ".nii.gz", ".nii", ".mhd", ".nrrd"):
            path = folder / f"{series}{suffix}"
            if path.exists():
                return path
        raise MissingFileError(f"{folder / (series + '.mha')}: file not found for series {series}")

    def mask_path(self, series: str) -> Path:
        return self._find(self.masks_dir, series)

    def image_path(self, series: str) -> Path:
        return self._find(self.images_dir, series)


def _require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))}")


def _read_csv(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot parse CSV: {exc}") from exc


def read_overview(path: str | os.PathLike) -> pd.DataFrame:
    """``overview.csv`` with added ``series``, ``patient`` and ``modality`` columns."""
    path = Path(path)
    df = _read_csv(path)
    _require_columns(df, ["new_file_name"], path)
    df = df.copy()
    df["series"] = (
        df["new_file_name"].astype(str).map(lambda s: series_name(s) if image_suffix(s) else s)
    )
    parsed = df["series"].map(parse_series)
    df["patient"] = parsed.map(lambda t: t[0])
    df["modality"] = parsed.map(lambda t: t[1])
    if df["series"].duplicated().any():
        dup = df.loc[df["series"].duplicated(), "series"].tolist()[:5]
        raise DataError(f"{path}: duplicated series {dup}")
    return df


def site_column(table: pd.DataFrame) -> str:
    """The column naming a series' imaging site: ``institution`` (the phantom's, and a
    SPIDER copy that adds it), else the scanner's ``Manufacturer``."""
    return "institution" if "institution" in table else "Manufacturer"


def t1_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of T1 series (``<patient>_t1``, the paper's sagittal T1): one row per disc.

    A table none of whose series is named the SPIDER way (a user's own masks) is kept whole.
    """
    t1 = table["series"].map(lambda s: parse_series(str(s))[1].lower() == "t1")
    return table[t1] if t1.any() else table


def read_gradings(path: str | os.PathLike) -> pd.DataFrame:
    """``radiological_gradings.csv`` in snake case, one row per (patient, ivd_label).

    Adds ``level``. Rows with IVD label 0 (present twice in SPIDER) name no disc: they are
    dropped with a warning. Duplicated (patient, IVD label) pairs are an error.
    """
    path = Path(path)
    df = _read_csv(path)
    _require_columns(df, ["Patient", "IVD label"], path)
    df = df.rename(columns={c: _GRADING_RENAME.get(c, c) for c in df.columns})
    try:
        df["ivd_label"] = pd.to_numeric(df["ivd_label"], errors="raise").astype(int)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: 'IVD label' must be integers: {exc}") from exc
    df["patient"] = df["patient"].astype(str)
    zero = df["ivd_label"] == 0
    if zero.any():
        warnings.warn(
            f"{path}: dropped {int(zero.sum())} grading row(s) with IVD label 0 "
            f"(patients {sorted(df.loc[zero, 'patient'].unique().tolist())}): they name no disc",
            stacklevel=2,
        )
        df = df.loc[~zero]
    bad = ~df["ivd_label"].between(1, lab.MAX_INDEX)
    if bad.any():
        raise DataError(
            f"{path}: IVD label(s) {sorted(df.loc[bad, 'ivd_label'].unique().tolist())} "
            f"outside 1..{lab.MAX_INDEX}"
        )
    dup = df.duplicated(["patient", "ivd_label"])
    if dup.any():
        rows = df.loc[dup, ["patient", "ivd_label"]].head(5).values.tolist()
        raise DataError(f"{path}: duplicated (Patient, IVD label) rows, e.g. {rows}")
    df.insert(2, "level", df["ivd_label"].map(lab.level_name))
    return df.reset_index(drop=True)


def disc_table(
    root: str | os.PathLike, modalities: tuple[str, ...] | None = ("t1",)
) -> pd.DataFrame:
    """One row per (patient, series, ivd_label, level): every graded disc of every series.

    Gradings are joined to each series of their patient. Series listed in ``overview.csv``
    but without a mask file are dropped; which discs a mask really contains is checked when
    the masks are read (see :mod:`disclatent.data.survey`).
    """
    folder = SpiderFolder(Path(root))
    overview = read_overview(folder.overview_csv)
    gradings = read_gradings(folder.gradings_csv)
    have_mask = set(folder.series(modalities=None))
    series = overview[overview["series"].isin(have_mask)]
    if modalities is not None:
        wanted = {m.lower() for m in modalities}
        series = series[series["modality"].str.lower().isin(wanted)]
    keep = ["series", "patient", "modality"] + [
        c for c in ("institution", "Manufacturer", "MagneticFieldStrength") if c in series
    ]
    table = series[keep].merge(gradings, on="patient", how="inner", validate="many_to_many")
    order = ["patient", "series", "ivd_label", "level"]
    table = table[order + [c for c in table.columns if c not in order]]
    return table.sort_values(["series", "ivd_label"], key=_natural_sort_key).reset_index(drop=True)


def _natural_sort_key(col: pd.Series) -> pd.Series:
    return col.map(natural_key) if col.dtype == object else col


def cohort_summary(discs: pd.DataFrame, by: str = "institution") -> pd.DataFrame:
    """Patients, series, discs and grading prevalence per group (site) and in total."""
    if by not in discs:
        discs = discs.assign(**{by: "all"})
    targets = [c for c in GRADING_TARGETS if c in discs]

    def summarise(g: pd.DataFrame) -> pd.Series:
        out = {"patients": g["patient"].nunique(), "series": g["series"].nunique(), "discs": len(g)}
        out.update({f"{t} (%)": 100 * g[t].mean() for t in targets})
        return pd.Series(out)

    per = discs.groupby(by).apply(summarise, include_groups=False)
    total = summarise(discs).rename("all")
    out = pd.concat([per, total.to_frame().T])
    out.index.name = by
    for col in ("patients", "series", "discs"):
        out[col] = out[col].astype(int)
    return out.round(1)


def prevalence_by_level(discs: pd.DataFrame) -> pd.DataFrame:
    """Number of discs and % positive for each grading target, per level (L5/S1 first)."""
    targets = [c for c in GRADING_TARGETS + ["pfirrmann_grade"] if c in discs]
    g = discs.groupby(["ivd_label", "level"])
    out = g[targets].mean()
    for t in GRADING_TARGETS:
        if t in out:
            out[t] = 100 * out[t]
    out.insert(0, "discs", g.size())
    out = out.rename(columns={t: f"{t} (%)" for t in GRADING_TARGETS}).reset_index(
        level=0, drop=True
    )
    return out.round(1)
