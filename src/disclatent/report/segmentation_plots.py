"""Figures of the segmentation chapter: learning curves, true and predicted disc outlines.

Slices are shown as radiologists read them (anterior left, superior up), from the canonical
LPS orientation of the header (:func:`disclatent.data.volume.to_canonical`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from disclatent.data.spider import SpiderFolder
from disclatent.data.volume import Volume, read_mask, read_pair, to_canonical
from disclatent.report.plots import (
    draw_sagittal_image,
    label_sagittal_axes,
    mid_sagittal_index,
    sagittal_extent,
)
from disclatent.segmentation.data import disc_foreground


def learning_curves(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Training loss and validation IoU per epoch of every model (``history.csv`` tables,
    keyed by model name); a black dot marks the epoch whose weights were kept."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, h in histories.items():
        marker = "o" if len(h) <= 5 else None  # a capped run may have a single epoch
        axes[0].plot(h["epoch"], h["train_loss"], label=name, marker=marker)
        axes[1].plot(h["epoch"], h["val_iou"], label=name, marker=marker)
        best = h.loc[h["val_iou"].idxmax()]
        axes[1].plot(best["epoch"], best["val_iou"], "k.", ms=8)
    axes[0].set(xlabel="epoch", ylabel="training loss (BCE + Dice)", title="training loss")
    axes[1].set(
        xlabel="epoch", ylabel="validation IoU", title="validation IoU (dot: kept)", ylim=(0, 1)
    )
    axes[1].legend()
    fig.tight_layout()
    return fig


def show_contours(
    ax: Axes, image: Volume, truth: Volume | None, pred: Volume | None, title: str | None = None
) -> None:
    """Mid-sagittal slice (anterior left, superior up) with the true disc outlines (solid,
    green) and the predicted ones (dashed, orange)."""
    reference = truth if truth is not None else pred
    if reference is None:
        raise ValueError("show_contours needs a true or a predicted mask")
    lr = mid_sagittal_index(reference)
    extent = sagittal_extent(image)
    draw_sagittal_image(ax, image, lr, extent)
    for vol, color, style in ((truth, "limegreen", "solid"), (pred, "orange", "dashed")):
        if vol is None:
            continue
        sl = disc_foreground(to_canonical(vol).array[:, :, lr]).astype(float)
        if sl.any():
            ax.contour(
                sl,
                levels=[0.5],
                origin="lower",
                extent=extent,
                colors=[color],
                linewidths=1.1,
                linestyles=style,
            )
    label_sagittal_axes(ax, title)


def example_slices(
    data_root: str | Path, pred_root: str | Path, series_df: pd.DataFrame, n: int = 4
) -> Figure:
    """Outlines of the first ``n`` evaluated series (``series`` and ``dsc`` columns of
    :func:`disclatent.segmentation.evaluation.evaluate_series` rows): truth from
    ``data_root``, prediction from ``pred_root``, the series' Dice in the title."""
    folder, pred_folder = SpiderFolder(Path(data_root)), SpiderFolder(Path(pred_root))
    shown = series_df.head(n)
    fig, axes = plt.subplots(1, len(shown), figsize=(3.0 * len(shown), 5.4), squeeze=False)
    for ax, (_, row) in zip(axes[0], shown.iterrows(), strict=False):
        s = row["series"]
        image, truth = read_pair(folder.image_path(s), folder.mask_path(s))
        pred = read_mask(pred_folder.mask_path(s))
        show_contours(ax, image, truth, pred, title=f"{s}: DSC {row['dsc']:.3f}")
        ax.label_outer()
    fig.tight_layout()
    return fig
