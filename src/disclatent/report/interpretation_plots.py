"""The interpretation chapter's figures: decoder sweeps, their measurements, correlations.

(``book/method.md``, *Interpretation*.) The numbers behind them come from
:mod:`disclatent.analysis.interpretation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from disclatent.analysis.interpretation import stars
from disclatent.discs.isolation import central_slices, slice_aspects


def correlation_heatmap(
    r: pd.DataFrame,
    q: pd.DataFrame,
    ax: plt.Axes | None = None,
    title: str = "",
    labels: Mapping[str, str] | None = None,
) -> plt.Axes:
    """Annotated heatmap of r with FDR significance stars (* q<0.05, ** <0.01, *** <0.001)."""
    ax = ax or plt.gca()
    im = ax.imshow(r.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            v = r.iat[i, j]
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}{stars(q.iat[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(v) > 0.6 else "black",
                )
    names = labels or {}
    ax.set_xticks(
        range(r.shape[1]), [names.get(c, c) for c in r.columns], rotation=40, ha="right", fontsize=8
    )
    ax.set_yticks(range(r.shape[0]), [names.get(c, c) for c in r.index], fontsize=8)
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.04, label="Pearson r")
    return ax


def _step_title(table: pd.DataFrame, s: int, n_steps: int) -> str:
    if s == 0:
        return "min"
    if s == n_steps - 1:
        return "max"
    frac = table.loc[(table.feature == "latent_0") & (table.step == s), "fraction"].iloc[0]
    return f"{frac:.1f}"


def plot_sweep(
    masks: np.ndarray,
    table: pd.DataFrame,
    spacing_mm: Sequence[float],
    planes: Sequence[str] = ("sagittal", "coronal", "transverse"),
) -> plt.Figure:
    """The paper's Fig. 5B: one row per (latent feature, plane), one column per sweep step."""
    k, n_steps = masks.shape[:2]
    extents = slice_aspects(spacing_mm)
    fig, axes = plt.subplots(
        k * len(planes), n_steps, figsize=(1.5 * n_steps, 1.35 * k * len(planes)), squeeze=False
    )
    for j in range(k):
        for s in range(n_steps):
            sl = central_slices(masks[j, s])
            for p, plane in enumerate(planes):
                ax = axes[j * len(planes) + p, s]
                ax.imshow(
                    sl[plane],
                    cmap="gray_r",
                    origin="lower",
                    vmin=0,
                    vmax=1,
                    aspect=extents[plane],
                    interpolation="nearest",
                )
                ax.set_xticks([])
                ax.set_yticks([])
                if s == 0:
                    ax.set_ylabel(f"z{j}\n{plane}", fontsize=7)
                if j == 0 and p == 0:
                    ax.set_title(_step_title(table, s, n_steps), fontsize=8)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def sweep_profiles(
    sweep: pd.DataFrame, features: Sequence[str], labels: Mapping[str, str] | None = None
) -> plt.Figure:
    """One panel per measured feature: its value on the decoded mask against the fraction of
    each latent feature's range swept (one line per latent feature)."""
    names = labels or {}
    fig, axes = plt.subplots(1, len(features), figsize=(2.6 * len(features), 2.6), squeeze=False)
    for ax, f in zip(axes[0], features, strict=True):
        for name, g in sweep.groupby("feature"):
            ax.plot(g["fraction"], g[f], "o-", ms=3, label=name)
        ax.set_title(names.get(f, f), fontsize=8)
        ax.set_xlabel("fraction of range", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
