"""The stability chapter's figures: similarity of retrained latent spaces, latent-geometry
correlations per seed, canonical correlations and the plausibility of decoded discs.

The numbers come from :mod:`disclatent.analysis.stability`,
:mod:`disclatent.analysis.robustness` and :mod:`disclatent.analysis.plausibility`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from disclatent.discs.isolation import central_slices, slice_aspects


def similarity_matrices(pairs: pd.DataFrame) -> plt.Figure:
    """Two seed-by-seed heatmaps: linear CKA and Procrustes R^2 (1 on the diagonal)."""
    seeds = sorted(set(pairs.seed_a) | set(pairs.seed_b))
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3))
    for ax, col, title in zip(
        axes, ("cka", "procrustes_r2"), ("linear CKA", "Procrustes R²"), strict=True
    ):
        m = pd.DataFrame(np.eye(len(seeds)), index=seeds, columns=seeds)
        for row in pairs.itertuples():
            m.loc[row.seed_a, row.seed_b] = m.loc[row.seed_b, row.seed_a] = getattr(row, col)
        im = ax.imshow(m.to_numpy(float), vmin=0, vmax=1, cmap="viridis")
        for i in range(len(seeds)):
            for j in range(len(seeds)):
                v = m.iat[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if v > 0.6 else "white")  # fmt: skip
        ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds], fontsize=8)
        ax.set_yticks(range(len(seeds)), [f"seed {s}" for s in seeds], fontsize=8)
        ax.set_title(f"{title} of held-out discs' codes", fontsize=9)
        plt.colorbar(im, ax=ax, fraction=0.045)
    fig.tight_layout()
    return fig


def correlation_strips(
    by_seed: pd.DataFrame, features: Sequence[str], labels: Mapping[str, str] | None = None
) -> plt.Figure:
    """Per latent feature (rows) and geometric feature (x), Pearson r in every seed: as
    trained (left; seed 0, the interpretation chapter's model, ringed) and after aligning each
    seed's axes to seed 0's (right)."""
    names = labels or {}
    latents = sorted(by_seed.latent.unique())
    seeds = sorted(by_seed.seed.unique())
    fig, axes = plt.subplots(
        len(latents), 2, figsize=(10, 1.45 * len(latents) + 0.8), sharex=True, sharey=True
    )
    axes = np.atleast_2d(axes)
    x = np.arange(len(features))
    for i, lat in enumerate(latents):
        for j, col in enumerate(("r", "r_aligned")):
            ax = axes[i, j]
            part = by_seed[by_seed.latent == lat].set_index(["seed", "feature"])[col]
            for k, seed in enumerate(seeds):
                y = [part.get((seed, f), np.nan) for f in features]
                jitter = (k - (len(seeds) - 1) / 2) * 0.06
                ax.plot(x + jitter, y, "o", ms=4 if seed else 6, alpha=0.8,
                        mfc="none" if seed == seeds[0] else None, color=f"C{k}",
                        label=f"seed {seed}")  # fmt: skip
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_ylim(-1.05, 1.05)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(f"{lat.replace('_', ' ')}\nr", fontsize=8)
            if i == 0:
                ax.set_title("as trained" if col == "r" else "aligned to seed 0", fontsize=9)
    for ax in axes[-1]:
        ax.set_xticks(x, [names.get(f, f) for f in features], rotation=35, ha="right")
    axes[0, 1].legend(fontsize=7, ncol=len(seeds), loc="lower right")
    fig.tight_layout()
    return fig


def canonical_correlations(cca: pd.DataFrame) -> plt.Figure:
    """Canonical correlations between the latent space and the geometry, one line per seed."""
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    for seed, g in cca.groupby("seed"):
        ax.plot(g["component"], g["canonical_r"], "o-", ms=4, label=f"seed {seed}", alpha=0.8)
    ax.set_xticks(sorted(cca.component.unique()))
    ax.set_xlabel("canonical component", fontsize=8)
    ax.set_ylabel("canonical correlation", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plausibility_bars(table: pd.DataFrame) -> plt.Figure:
    """Plausible share (Wilson 95 % CI) per model, one panel per sample of latent vectors."""
    samples = list(dict.fromkeys(table["sample"]))
    fig, axes = plt.subplots(1, len(samples), figsize=(3.6 * len(samples), 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, sample in zip(axes, samples, strict=True):
        part = table[table["sample"] == sample].reset_index(drop=True)
        colors = ["C0" if k == "plain" else "C3" for k in part["kind"]]
        err = np.vstack([part.plausible_share - part.lo, part.hi - part.plausible_share])
        ax.bar(range(len(part)), part.plausible_share, color=colors, yerr=err, capsize=2)
        ax.set_xticks(range(len(part)), part["model"], rotation=60, ha="right", fontsize=7)
        ax.set_title(sample, fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("plausible share", fontsize=8)
    fig.tight_layout()
    return fig


def sweep_gallery(
    galleries: Mapping[str, tuple[np.ndarray, pd.DataFrame]], spacing_mm: Sequence[float]
) -> plt.Figure:
    """Central sagittal slices of each model's decoded sweep grid (rows: latent features;
    columns: steps), implausible decodes framed in red and titled with the first reason."""
    aspect = slice_aspects(spacing_mm)["sagittal"]
    n_models = len(galleries)
    first = next(iter(galleries.values()))[0]
    k, steps = first.shape[:2]
    fig, axes = plt.subplots(
        k, steps * n_models, figsize=(0.95 * steps * n_models, 1.05 * k), squeeze=False
    )
    for m, (name, (masks, judged)) in enumerate(galleries.items()):
        for j in range(k):
            for s in range(steps):
                ax = axes[j, m * steps + s]
                row = judged.iloc[j * steps + s]
                ax.imshow(central_slices(masks[j, s])["sagittal"], cmap="gray_r", origin="lower",
                          vmin=0, vmax=1, aspect=aspect, interpolation="nearest")  # fmt: skip
                ax.set_xticks([])
                ax.set_yticks([])
                bad = not bool(row["plausible"])
                for side in ax.spines.values():
                    side.set_edgecolor("red" if bad else "0.7")
                    side.set_linewidth(2 if bad else 0.5)
                if bad:
                    ax.set_title(str(row["reason"]).split(";")[0][:14], fontsize=5, color="red")
                if s == 0 and m == 0:
                    ax.set_ylabel(f"latent {j}", fontsize=7)
        axes[0, m * steps].annotate(name, (0, 1.45), xycoords="axes fraction", fontsize=8)
    fig.tight_layout(h_pad=0.3, w_pad=0.1)
    return fig
