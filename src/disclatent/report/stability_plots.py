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
    trained (left; the first seed, the interpretation chapter's model, ringed) and after
    aligning each seed's axes to the first seed's (right)."""
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
                first = seed == seeds[0]
                ax.plot(x + jitter, y, "o", ms=6 if first else 4, alpha=0.8,
                        mfc="none" if first else None, color=f"C{k}",
                        label=f"seed {seed}")  # fmt: skip
            ax.axhline(0, color="0.6", lw=0.6)
            ax.set_ylim(-1.05, 1.05)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(f"{lat.replace('_', ' ')}\nr", fontsize=8)
            if i == 0:
                title = "as trained" if col == "r" else f"aligned to seed {seeds[0]}"
                ax.set_title(title, fontsize=9)
    for ax in axes[-1]:
        ax.set_xticks(x, [names.get(f, f) for f in features], rotation=35, ha="right")
    handles, names_ = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names_, fontsize=7, ncol=len(seeds), loc="upper center")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
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


_SHORT = {
    "volume_mm3": "volume",
    "height_mm": "height",
    "ap_width_mm": "AP width",
    "lateral_width_mm": "lat. width",
}


def short_reason(reason: str) -> str:
    """The first reason of a plausibility verdict in a word or two ("AP width", "2 pieces")."""
    first = str(reason).split(";")[0].strip()
    return _SHORT.get(first.replace(" out of range", ""), first)


def _crop(slices: list[np.ndarray], margin: int = 2) -> tuple[slice, slice]:
    """The rows and columns that hold every foreground pixel of ``slices``, plus a margin."""
    union = np.any(np.stack([s > 0 for s in slices]), axis=0)
    if not union.any():
        return slice(None), slice(None)
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, union.shape[0])
    c0, c1 = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, union.shape[1])
    return slice(r0, r1), slice(c0, c1)


def sweep_gallery(
    galleries: Mapping[str, tuple[np.ndarray, pd.DataFrame]], spacing_mm: Sequence[float]
) -> plt.Figure:
    """Central sagittal slices of each model's decoded sweep grid (rows: latent features;
    columns: steps from the feature's minimum to its maximum), cropped to the discs;
    implausible decodes framed in red and labelled with their first reason."""
    aspect = slice_aspects(spacing_mm)["sagittal"]
    slices = {
        name: [[central_slices(m)["sagittal"] for m in row] for row in masks]
        for name, (masks, _) in galleries.items()
    }
    rows, cols = _crop([s for grid in slices.values() for row in grid for s in row])
    k, steps = next(iter(galleries.values()))[0].shape[:2]
    n_models = len(galleries)
    fig, axes = plt.subplots(
        k, steps * n_models, figsize=(0.95 * steps * n_models, 0.95 * k + 0.4), squeeze=False
    )
    for m, (name, (_, judged)) in enumerate(galleries.items()):
        for j in range(k):
            for s in range(steps):
                ax = axes[j, m * steps + s]
                row = judged.iloc[j * steps + s]
                ax.imshow(slices[name][j][s][rows, cols], cmap="gray_r", origin="lower",
                          vmin=0, vmax=1, aspect=aspect, interpolation="nearest")  # fmt: skip
                ax.set_xticks([])
                ax.set_yticks([])
                bad = not bool(row["plausible"])
                for side in ax.spines.values():
                    side.set_edgecolor("red" if bad else "0.7")
                    side.set_linewidth(2 if bad else 0.5)
                if bad:
                    ax.set_xlabel(short_reason(row["reason"]), fontsize=6, color="red", labelpad=1)
                if s == 0 and m == 0:
                    ax.set_ylabel(f"latent {j}", fontsize=7)
        axes[0, m * steps].set_title(name, fontsize=8, loc="left")
    fig.tight_layout(h_pad=0.4, w_pad=0.1)
    return fig
