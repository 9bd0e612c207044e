"""A first look at a mask file or a folder of masks: geometry, orientation and discs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from disclatent.data import labels as lab
from disclatent.data.volume import DataError, image_suffix, list_images, read_mask, series_name


def inspect_mask(path: str | os.PathLike) -> dict:
    """Spacing, size, orientation and discs (label, level, voxels, mm3) of one mask file."""
    vol = read_mask(path)
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
