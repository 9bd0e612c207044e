"""Figures of the autoencoder chapter: training curves, reconstructions, AE against PCA.

Slices are the central ones of the cube (:func:`disclatent.discs.isolation.central_slices`),
drawn in millimetres: sagittal anterior left and superior up; coronal the patient's left on
the right, superior up; transverse anterior up, the patient's left on the right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from disclatent.autoencoder import DiscAE, PCABaseline, iou_per_disc, main_latent_dim
from disclatent.conventions import Spacing
from disclatent.discs.isolation import central_slices

PLANE_ORIGIN = {"sagittal": "lower", "coronal": "lower", "transverse": "upper"}
#: the bars of :func:`plot_iou_bars`: column of the sweep's results and legend label
IOU_BARS = [
    ("train_iou", "autoencoder, training"),
    ("heldout_iou", "autoencoder, held out"),
    ("pca_train_iou", "PCA, training"),
    ("pca_heldout_iou", "PCA, held out"),
]


# ---------------------------------------------------------------------------------------
# Training curves
# ---------------------------------------------------------------------------------------
def plot_training_curves(models: Mapping[int, DiscAE], target_iou: float) -> Figure:
    """Loss (log scale) and the distance to a perfect reconstruction, 1 - mean IoU over all
    training discs in eval mode (log scale), after every epoch, one colour per k; the dashed
    line is the convergence criterion.

    Decoder-first training draws its decoder stage dotted (the reconstruction loss and IoU
    of the decoded codes: there is no encoder yet) and its encoder stage solid (loss: the
    squared error to the codes; IoU: the autoencoder's, the criterion's).
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    histories = {k: m.history for k, m in models.items() if not m.history.empty}
    for i, (k, h) in enumerate(histories.items()):
        color = f"C{i}"
        stage = h["stage"] if "stage" in h else pd.Series("joint", index=h.index)
        for name, style in (("joint", "-"), ("decoder", ":"), ("encoder", "-")):
            part = h[stage == name]
            if not part.empty:
                axes[0].plot(part["epoch"], part["loss"], style, color=color)
        if "decoder_iou" in h:
            axes[1].plot(h["epoch"], 1 - h["decoder_iou"], ":", color=color)
        if "train_iou" in h:
            axes[1].plot(h["epoch"], 1 - h["train_iou"], "-", color=color, label=f"k={k}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss")
    axes[1].axhline(1 - target_iou, ls="--", color="k", lw=1, label=f"IoU {target_iou:g}")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("1 - mean IoU, all training discs")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Reconstructions
# ---------------------------------------------------------------------------------------
def reconstruction_picks(n_train: int, n_heldout: int, seed: int = 0) -> list[tuple[str, int]]:
    """Up to two random training discs and one held-out disc: ``(split, index)`` pairs."""
    rng = np.random.default_rng(seed)
    picks = [("train", int(i)) for i in rng.choice(n_train, size=min(2, n_train), replace=False)]
    if n_heldout:
        picks.append(("held out", int(rng.integers(n_heldout))))
    return picks


def _extents(size: int, spacing_mm: Sequence[float]) -> dict[str, tuple[float, ...]]:
    sp = Spacing(*spacing_mm)
    return {
        "sagittal": (0, size * sp.ap, 0, size * sp.si),
        "coronal": (0, size * sp.lr, 0, size * sp.si),
        "transverse": (0, size * sp.lr, size * sp.ap, 0),
    }


def _outline(ax: Axes, ref: np.ndarray, extent: tuple[float, ...]) -> None:
    """The input mask's outline in red, at pixel centres in mm (on the pixels drawn)."""
    rows, cols = ref.shape
    sx = (extent[1] - extent[0]) / cols
    sy = abs(extent[3] - extent[2]) / rows
    ax.contour(
        (np.arange(cols) + 0.5) * sx,
        (np.arange(rows) + 0.5) * sy,
        ref,
        levels=[0.5],
        colors="red",
        linewidths=0.8,
    )


def _columns(
    cube: np.ndarray, models: Mapping[int, DiscAE], pca: PCABaseline | None, k_pca: int
) -> list[tuple[str, np.ndarray]]:
    """(title, cube): the input, each model's reconstruction and PCA's, with their IoU."""
    cols = [("input", cube)]
    for k, m in models.items():
        rec = m.reconstruct(cube[None])[0]
        cols.append((f"k={k} (IoU {iou_per_disc(rec[None], cube[None])[0]:.3f})", rec))
    if pca is not None:
        rec = pca.reconstruct(cube[None])[0]
        cols.append((f"PCA k={k_pca} (IoU {iou_per_disc(rec[None], cube[None])[0]:.3f})", rec))
    return cols


def _reconstruction_figure(
    cols: list[tuple[str, np.ndarray]], spacing_mm: Sequence[float], title: str
) -> Figure:
    fig, axes = plt.subplots(3, len(cols), figsize=(1.9 * len(cols), 5.6), squeeze=False)
    cube = cols[0][1]
    extents = _extents(cube.shape[0], spacing_mm)
    ref = central_slices(cube)
    for j, (name, vol) in enumerate(cols):
        for r, (plane, sl) in enumerate(central_slices(vol).items()):
            ax = axes[r, j]
            ax.imshow(
                sl,
                cmap="Greys",
                vmin=0,
                vmax=1.6,
                origin=PLANE_ORIGIN[plane],
                extent=extents[plane],
                interpolation="nearest",
            )
            if j > 0 and ref[plane].any():
                _outline(ax, ref[plane], extents[plane])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=7)
            if j == 0:
                ax.set_ylabel(plane, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_reconstructions(
    train: np.ndarray,
    heldout: np.ndarray,
    picks: list[tuple[str, int]],
    models: Mapping[int, DiscAE],
    pca: PCABaseline | None,
    k_pca: int,
    spacing_mm: Sequence[float],
) -> list[Figure]:
    """One figure per picked disc: rows = planes, columns = input, each k, and PCA; the
    filled area is the reconstruction, the red outline the input mask."""
    figs = []
    for split, i in picks:
        cube = (train if split == "train" else heldout)[i]
        cols = _columns(cube, models, pca, k_pca)
        figs.append(_reconstruction_figure(cols, spacing_mm, f"{split} disc {i}"))
    return figs


def reconstruction_figures(
    train: np.ndarray,
    heldout: np.ndarray,
    models: Mapping[int, DiscAE],
    pcas: Mapping[int, PCABaseline],
    spacing_mm: Sequence[float],
    seed: int = 0,
) -> list[Figure]:
    """:func:`plot_reconstructions` of the :func:`reconstruction_picks`, with the PCA
    baseline of the main bottleneck (:func:`disclatent.autoencoder.main_latent_dim`)."""
    picks = reconstruction_picks(len(train), len(heldout), seed)
    k_pca = main_latent_dim(pcas)
    return plot_reconstructions(train, heldout, picks, models, pcas[k_pca], k_pca, spacing_mm)


# ---------------------------------------------------------------------------------------
# The autoencoder against the linear baseline
# ---------------------------------------------------------------------------------------
def plot_iou_bars(results: pd.DataFrame, target_iou: float) -> Figure:
    """Mean IoU with 95 % CI per k: autoencoder and PCA, training and held-out discs."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(results))
    w = 0.2
    for j, (col, label) in enumerate(IOU_BARS):
        lo, hi = results[col + "_lo"], results[col + "_hi"]
        ax.bar(
            x + (j - 1.5) * w,
            results[col],
            w,
            label=label,
            yerr=[results[col] - lo, hi - results[col]],
            capsize=2,
        )
    ax.set_xticks(x, [f"k={k}" for k in results["latent_dim"]])
    ax.set_ylabel("mean IoU (95% CI)")
    lowest = np.nanmin(results[[c for c, _ in IOU_BARS]].to_numpy())
    ax.set_ylim(max(0.0, lowest - 0.05), 1.0)
    ax.axhline(target_iou, ls="--", color="k", lw=1)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
