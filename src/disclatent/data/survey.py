"""A first look at a mask file or a folder of masks: geometry, orientation and discs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.data import labels as lab
from disclatent.data.volume import (
    DataError,
    Volume,
    image_suffix,
    list_images,
    read_mask,
    series_name,
)


def inspect_mask(path: str | os.PathLike) -> dict:
    """Spacing, size, orientation and discs (label, level, voxels, mm3) of one mask file."""
    return describe_mask(read_mask(path), path)


def describe_mask(vol: Volume, path: str | os.PathLike) -> dict:
    """:func:`inspect_mask` of a mask already read (``path``: its file, for the report)."""
    values, counts = np.unique(vol.array, return_counts=True)
    discs = [
        {
            "label": int(v),
            "ivd_label": lab.ivd_label_of_mask_value(int(v)),
            "level": lab.level_name(lab.ivd_label_of_mask_value(int(v))),
            "voxels": int(c),
            "volume_mm3": round(float(c) * vol.voxel_volume_mm3, 1),
        }
        for v, c in zip(values, counts, strict=True)
        if lab.is_disc_label(int(v))
    ]
    structures = sorted({lab.describe_label(int(v)) for v in values if v != 0})
    return {
        "series": series_name(path),
        "path": str(path),
        "size": list(vol.size),
        "spacing_mm": [round(s, 4) for s in vol.spacing],
        "orientation": vol.orientation,
        "axis_aligned": vol.is_axis_aligned(),
        "n_discs": len(discs),
        "discs": discs,
        "structures": structures,
    }


def inspect_path(path: str | os.PathLike) -> list[dict]:
    """:func:`inspect_mask` for a file, a folder of masks, or a SPIDER folder (its masks/)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "masks" if (path / "masks").is_dir() else path
        files = list_images(folder)
        if not files:
            raise DataError(f"{folder}: no mask files (.mha, .nii.gz, ...) found")
        return [inspect_mask(f) for f in files]
    if not image_suffix(path) and path.exists():
        raise DataError(f"{path}: not an image file")
    return [inspect_mask(path)]


def format_report(reports: list[dict]) -> str:
    """Plain-text table of :func:`inspect_path` results."""
    lines = []
    for r in reports:
        sp = " x ".join(f"{s:g}" for s in r["spacing_mm"])
        size = " x ".join(map(str, r["size"]))
        lines.append(
            f"{r['series']}: size {size}, spacing {sp} mm, orientation {r['orientation']}"
            + ("" if r["axis_aligned"] else " (oblique)")
            + f", {r['n_discs']} discs"
        )
        for d in r["discs"]:
            lines.append(
                f"    {d['label']}  {d['level']:<8} {d['voxels']:>8d} voxels "
                f"{d['volume_mm3']:>10.1f} mm3"
            )
        if not r["discs"]:
            lines.append("    (no disc labels 201-225 in this mask)")
    return "\n".join(lines)


def header_table(reports: list[dict]) -> pd.DataFrame:
    """One row per mask of :func:`inspect_path` results: series, orientation code, spacing
    along the image axes i, j, k (mm) and number of discs."""
    return pd.DataFrame(
        [
            {
                "series": r["series"],
                "orientation": r["orientation"],
                "spacing i (mm)": r["spacing_mm"][0],
                "spacing j (mm)": r["spacing_mm"][1],
                "spacing k (mm)": r["spacing_mm"][2],
                "discs": r["n_discs"],
            }
            for r in reports
        ],
        columns=[
            "series",
            "orientation",
            "spacing i (mm)",
            "spacing j (mm)",
            "spacing k (mm)",
            "discs",
        ],
    )


def acquisition_summary(reports: list[dict], overview: pd.DataFrame, site_col: str) -> pd.DataFrame:
    """Acquisition geometry per site and modality, read from the mask headers: number of
    series, orientation code, mean spacings (sagittal series: i is the left-right slice
    thickness, j and k the antero-posterior and superior-inferior pixel sizes) and the
    range of the number of discs. ``overview``: :func:`disclatent.data.spider.read_overview`."""
    table = header_table(reports).merge(
        overview[["series", "modality", site_col]], on="series", how="left"
    )
    summary = table.groupby([site_col, "modality"]).agg(
        series=("series", "count"),
        orientation=("orientation", "first"),
        slice_mm=("spacing i (mm)", "mean"),
        ap_pixel_mm=("spacing j (mm)", "mean"),
        si_pixel_mm=("spacing k (mm)", "mean"),
        discs_min=("discs", "min"),
        discs_max=("discs", "max"),
    )
    return summary.round(3)
