"""Figures: slices shown the way radiologists read them, with physical aspect ratios.

Sagittal views are drawn with anterior on the left and superior at the top; every image is
first put into the canonical LPS orientation from its header (:func:`disclatent.data.volume.to_canonical`),
so a flipped or permuted file is shown the same way.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from disclatent.data import labels as lab
from disclatent.data.volume import Volume, to_canonical

LEVEL_ORDER = [lab.level_name(k) for k in range(7, 0, -1)]  # T11/T12 ... L5/S1, top to bottom


def level_colors() -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {lab.level_name(k): cmap(k - 1) for k in range(1, 8)}


def mid_sagittal_index(mask: Volume) -> int:
    """Left-right index (canonical LPS array, numpy axis 2) through the discs' centre."""
    arr = to_canonical(mask).array
    discs = arr > lab.DISC_LABEL_OFFSET
    if not discs.any():
        return arr.shape[2] // 2
    per_slice = discs.sum(axis=(0, 1))
    return int(np.argmax(per_slice))


def sagittal_extent(volume: Volume) -> tuple[float, float, float, float]:
    """``imshow`` extent (mm) of a canonical sagittal slice: AP across, SI up."""
    canon = to_canonical(volume)
    sp_ap, sp_si = canon.spacing[1], canon.spacing[2]
    n_si, n_ap = canon.array.shape[0], canon.array.shape[1]
    return (0, n_ap * sp_ap, 0, n_si * sp_si)


def draw_sagittal_image(
    ax: plt.Axes, image: Volume, lr_index: int, extent: tuple[float, float, float, float]
) -> None:
    """The image's sagittal slice ``lr_index`` in grey, contrast from its 1st-99.5th
    percentiles."""
    img = to_canonical(image).array[:, :, lr_index].astype(float)
    lo, hi = np.percentile(img, [1, 99.5])
    ax.imshow(
        img,
        cmap="gray",
        origin="lower",
        extent=extent,
        vmin=lo,
        vmax=hi,
        interpolation="nearest",
    )


def label_sagittal_axes(ax: plt.Axes, title: str | None = None) -> None:
    """Millimetre axes of a sagittal view (anterior left, superior up), equal aspect."""
    ax.set_xlabel("anterior → posterior (mm)")
    ax.set_ylabel("inferior → superior (mm)")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)


def show_sagittal(
    ax: plt.Axes,
    image: Volume | None,
    mask: Volume | None = None,
    lr_index: int | None = None,
    title: str | None = None,
) -> None:
    """One sagittal slice (anterior left, superior up), with disc outlines coloured by level."""
    ref = mask if mask is not None else image
    if ref is None:
        raise ValueError("need an image or a mask")
    if lr_index is None:
        lr_index = mid_sagittal_index(mask) if mask is not None else ref.array.shape[2] // 2
    extent = sagittal_extent(ref)
    if image is not None:
        draw_sagittal_image(ax, image, lr_index, extent)
    if mask is not None:
        m = to_canonical(mask).array[:, :, lr_index]
        colors = level_colors()
        for value in np.unique(m):
            if not lab.is_disc_label(int(value)):
                continue
            level = lab.level_name(int(value) - lab.DISC_LABEL_OFFSET)
            ax.contour(
                (m == value).astype(float),
                levels=[0.5],
                origin="lower",
                extent=extent,
                colors=[colors.get(level, "w")],
                linewidths=1.2,
            )
        other = np.where((m > 0) & (m < lab.DISC_LABEL_OFFSET), 1.0, np.nan)
        if image is None:
            ax.imshow(
                other,
                cmap="Greys",
                origin="lower",
                extent=extent,
                vmin=0,
                vmax=2,
                interpolation="nearest",
            )
    label_sagittal_axes(ax, title)


def level_boxplots(
    df: pd.DataFrame,
    columns: list[str],
    labels: dict[str, str] | None = None,
    ncols: int = 4,
    points: bool = True,
) -> plt.Figure:
    """Box plots of ``columns`` per spinal level (rows of ``df`` need a ``level`` column),
    from L5/S1 up; with ``points`` every disc is drawn over its box (jittered)."""
    levels = [lv for lv in LEVEL_ORDER[::-1] if lv in set(df["level"])]
    nrows = int(np.ceil(len(columns) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, columns, strict=False):
        data = [df.loc[df["level"] == lv, col].dropna().to_numpy() for lv in levels]
        ax.boxplot(data, tick_labels=levels, showfliers=False)
        for i, d in enumerate(data if points else [], start=1):
            ax.plot(
                np.random.default_rng(i).normal(i, 0.06, len(d)),
                d,
                ".",
                ms=2.5,
                alpha=0.5,
                color="C0",
            )
        ax.set_title((labels or {}).get(col, col), fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _interval_points(
    ax: plt.Axes, rows: pd.DataFrame, y: np.ndarray, metric: str, label: str, **style
) -> None:
    """``rows[metric]`` at heights ``y`` with their 95 % CI as horizontal error bars."""
    err = [rows[metric] - rows[f"{metric}_lo"], rows[f"{metric}_hi"] - rows[metric]]
    ax.errorbar(rows[metric], y, xerr=err, capsize=3, label=label, **style)


def forest_plot(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    metric: str = "auc",
    ax: plt.Axes | None = None,
) -> plt.Axes:
    """Our metric with its 95 % CI per (target, feature set), the paper's value as a cross.

    ``ours`` needs ``target, features, <metric>, <metric>_lo, <metric>_hi``; rows whose
    optional ``role`` is ``"baseline"`` are drawn as grey squares; ``paper`` (same keys,
    optional) is drawn where it reports the value (never for a baseline). A dotted line
    separates the targets.
    """
    ax = ax or plt.gca()
    rows = ours.reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    baseline = (rows["role"] == "baseline").to_numpy() if "role" in rows else np.zeros(len(y), bool)
    for keep, style, label in (
        (~baseline, dict(fmt="o", color="C0"), "this study (95 % CI)"),
        (baseline, dict(fmt="s", color="0.45", ms=4), "baseline (95 % CI)"),
    ):
        if keep.any():
            _interval_points(ax, rows[keep], y[keep], metric, label, **style)
    for edge in np.flatnonzero(rows["target"].to_numpy()[1:] != rows["target"].to_numpy()[:-1]):
        ax.axhline(y[edge] - 0.5, color="grey", lw=0.6, ls=":")
    if paper is not None:
        merged = rows.merge(
            paper[["target", "features", metric]],
            on=["target", "features"],
            how="left",
            suffixes=("", "_paper"),
        )
        ok = merged[f"{metric}_paper"].notna().to_numpy()
        ax.plot(merged.loc[ok, f"{metric}_paper"], y[ok], "x", color="C3", ms=8, label="paper")
    ax.set_yticks(
        y,
        [
            f"{t.replace('disc_', '')}: {f}"
            for t, f in zip(rows["target"], rows["features"], strict=True)
        ],
        fontsize=8,
    )
    ax.axvline(0.5 if metric == "auc" else 0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(metric.upper() if metric == "auc" else "F1 (positive class)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)  # below
    return ax
