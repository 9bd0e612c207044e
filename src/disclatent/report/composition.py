"""Figures and headline numbers of the composition chapter (07_composition).

* :func:`grade_gallery`: mid-sagittal slices of T2 disc intensity cubes, a column per
  Pfirrmann grade;
* :func:`reconstruction_figure`: the intensity-aware autoencoder's input beside its
  reconstruction, mask and intensity;
* :func:`intensity_sweep`: one latent feature swept, decoded as intensity;
* :func:`composition_numbers`: what the results chapter quotes from this chapter's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from disclatent.paths import Table, table_slug

__all__ = ["composition_numbers", "grade_gallery", "intensity_sweep", "reconstruction_figure"]

VMAX = 1.2  # intensity scale of the figures (reference units: CSF = 1)


def _mid(cube: np.ndarray) -> np.ndarray:
    """The mid-sagittal (SI x AP) slice of a cube ``[si, ap, lr]``, superior at the top."""
    return np.asarray(cube, float)[:, :, cube.shape[2] // 2]


def grade_gallery(
    table: pd.DataFrame, intensities: np.ndarray, per_grade: int = 3, seed: int = 0
) -> plt.Figure:
    """Mid-sagittal slices of the normalised intensity cubes of ``per_grade`` discs of each
    Pfirrmann grade (``table``: ``pfirrmann_grade`` and ``cube_index``), anterior left."""
    grades = sorted(table["pfirrmann_grade"].unique())
    fig, axes = plt.subplots(
        per_grade, len(grades), figsize=(1.9 * len(grades), 1.5 * per_grade), squeeze=False
    )
    rng = np.random.default_rng(seed)
    for j, g in enumerate(grades):
        rows = table[table["pfirrmann_grade"] == g]
        pick = rng.choice(len(rows), size=min(per_grade, len(rows)), replace=False)
        for i in range(per_grade):
            ax = axes[i, j]
            ax.set_axis_off()
            if i < len(pick):
                cube = intensities[int(rows["cube_index"].iloc[pick[i]])]
                ax.imshow(np.nan_to_num(_mid(cube)), cmap="gray", vmin=0, vmax=VMAX)
        axes[0, j].set_title(f"grade {g} (n={len(rows)})", fontsize=9)
    fig.suptitle("T2 intensity / spinal canal, mid-sagittal (anterior left)", fontsize=10)
    fig.tight_layout()
    return fig


def reconstruction_figure(x: np.ndarray, mask: np.ndarray, inten: np.ndarray) -> plt.Figure:
    """Input (mask outline over intensity) beside the reconstruction, one row per disc:
    ``x`` ``(n, 2, S, S, S)`` and the decoded ``mask`` and ``inten`` ``(n, S, S, S)``."""
    n = len(x)
    fig, axes = plt.subplots(n, 2, figsize=(4.2, 1.6 * n), squeeze=False)
    for i in range(n):
        for ax, m, im, title in (
            (axes[i, 0], x[i, 0], x[i, 1], "input"),
            (axes[i, 1], mask[i], inten[i], "reconstruction"),
        ):
            ax.imshow(_mid(im), cmap="gray", vmin=0, vmax=VMAX)
            ax.contour(_mid(m), levels=[0.5], colors="tab:orange", linewidths=0.6)
            ax.set_axis_off()
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def intensity_sweep(
    decode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    z: np.ndarray,
    steps: int = 5,
) -> plt.Figure:
    """Each latent feature swept from its cohort 5th to 95th percentile (the others at their
    medians), decoded (``decode(z) -> (mask, intensity)``) and shown mid-sagittally."""
    k = z.shape[1]
    fig, axes = plt.subplots(k, steps, figsize=(1.6 * steps, 1.3 * k), squeeze=False)
    centre = np.median(z, axis=0)
    for j in range(k):
        values = np.quantile(z[:, j], np.linspace(0.05, 0.95, steps))
        grid = np.repeat(centre[None], steps, axis=0)
        grid[:, j] = values
        _, inten = decode(grid)
        for s in range(steps):
            ax = axes[j, s]
            ax.imshow(_mid(inten[s]), cmap="gray", vmin=0, vmax=VMAX)
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_ylabel(f"latent {j}", fontsize=8)
            if j == k - 1:
                ax.set_xlabel(f"q{int(round(5 + 90 * s / (steps - 1)))}", fontsize=8)
    fig.suptitle("intensity-aware latent features swept, decoded as intensity", fontsize=10)
    fig.tight_layout()
    return fig


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    path = tables / f"{table_slug(name)}.csv"
    return pd.read_csv(path) if path.exists() else None


#: the keys :func:`composition_numbers` fills (``None`` where the chapter did not run)
COMPOSITION_KEYS = [
    *(f"comp_qwk_{s}" for s in ("handcrafted", "shape", "intensity", "level")),
    *(f"comp_qwk_{s}_{b}" for s in ("handcrafted", "shape", "intensity") for b in ("lo", "hi")),
    "comp_best_reader_qwk",
    "comp_qwk_shuffled",
    "comp_intensity_heldout_iou",
    "comp_intensity_heldout_mae",
]


def composition_numbers(tables: str | Path) -> dict[str, float | None]:
    """Pfirrmann grade's quadratic-weighted kappa per feature family (with CIs), of the
    negative control and of the best possible reader, and the intensity model's held-out
    reconstruction (k = 4), from the composition chapter's tables."""
    t = Path(tables)
    out: dict[str, float | None] = dict.fromkeys(COMPOSITION_KEYS)
    pred = _read(t, Table.INTENSITY_PREDICTION)
    if pred is not None:
        qwk = pred[(pred["target"] == "pfirrmann") & (pred["metric"] == "qwk")]
        qwk = qwk.set_index("features")
        for key, name in (
            ("handcrafted", "hand-crafted"),
            ("shape", "shape latent"),
            ("intensity", "intensity latent"),
            ("level", "level"),
            ("shuffled", "hand-crafted, shuffled intensities"),
        ):
            if name in qwk.index:
                out[f"comp_qwk_{key}"] = float(qwk.loc[name, "value"])
                if f"comp_qwk_{key}_lo" in out:
                    out[f"comp_qwk_{key}_lo"] = float(qwk.loc[name, "lo"])
                    out[f"comp_qwk_{key}_hi"] = float(qwk.loc[name, "hi"])
        best = pred[(pred["target"] == "pfirrmann") & (pred["features"] == "best reader")]
        if len(best):
            out["comp_best_reader_qwk"] = float(best["value"].iloc[0])
    model = _read(t, Table.INTENSITY_AE)
    if model is not None and len(k4 := model[model["latent_dim"] == 4]):
        out["comp_intensity_heldout_iou"] = float(k4["heldout_iou"].iloc[0])
        out["comp_intensity_heldout_mae"] = float(k4["heldout_intensity_mae"].iloc[0])
    return out


def composition_verdict(numbers: dict[str, float | None]) -> str:
    """The chapter's finding in one paragraph, from :func:`composition_numbers`."""

    def f(key: str) -> str:
        v = numbers.get(key)
        return "n/a" if v is None else f"{v:.2f}"

    def ci(key: str) -> str:
        return f"{f(key)} ({f(key + '_lo')}-{f(key + '_hi')})"

    text = (
        f"Pfirrmann grade, quadratic-weighted kappa: hand-crafted measures {ci('comp_qwk_handcrafted')}, "
        f"shape latent {ci('comp_qwk_shape')}, intensity-aware latent {ci('comp_qwk_intensity')}; "
        f"the spinal level alone {f('comp_qwk_level')}; the negative control (another disc's "
        f"intensities) {f('comp_qwk_shuffled')}."
    )
    if numbers.get("comp_best_reader_qwk") is not None:
        text += (
            f" A reader who knew the phantom's generating state exactly would reach "
            f"{f('comp_best_reader_qwk')}: the ceiling the graders' noise sets."
        )
    if numbers.get("comp_intensity_heldout_iou") is not None:
        text += (
            f" The intensity-aware autoencoder (k = 4) reconstructs held-out discs at a mask "
            f"IoU of {f('comp_intensity_heldout_iou')} and a mean absolute intensity error of "
            f"{f('comp_intensity_heldout_mae')} (CSF units)."
        )
    return text
