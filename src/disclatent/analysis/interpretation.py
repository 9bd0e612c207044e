"""What the latent features mean: sweeps through the decoder, correlations, levels.

* :func:`sweep_codes`: hold every latent feature at its **mean** over the cohort (the public
  implementation used half the range) and move one from its minimum to its maximum in
  ``n_steps`` equal steps (6: min, 1/5, ..., max, as the paper's Fig. 5B).
* :func:`latent_sweep`: decode those codes into masks and measure each decoded mask with
  the geometry module, so a sweep reads as "feature 2 up -> AP width down by x mm".
* :func:`level_differences`: does a latent feature separate spinal levels? Kruskal-Wallis
  test per feature, FDR-corrected over features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from disclatent.discs.isolation import central_slices
from disclatent.stats import correlation_table


def sweep_codes(z: np.ndarray, n_steps: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Latent codes of the sweeps: ``(k, n_steps, k)`` codes and ``(k, n_steps)`` values.

    Row ``j`` moves feature ``j`` linearly from its minimum to its maximum over ``z``
    (discs x k); every other feature stays at its mean.
    """
    z = np.asarray(z, float)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"need latent codes of at least two discs, got shape {z.shape}")
    if n_steps < 2:
        raise ValueError("n_steps must be at least 2")
    k = z.shape[1]
    mean, lo, hi = z.mean(axis=0), z.min(axis=0), z.max(axis=0)
    fractions = np.linspace(0.0, 1.0, n_steps)
    codes = np.repeat(mean[None, None, :], k, axis=0).repeat(n_steps, axis=1)
    values = lo[:, None] + (hi - lo)[:, None] * fractions[None, :]
    for j in range(k):
        codes[j, :, j] = values[j]
    return codes, values


def latent_sweep(
    z: np.ndarray,
    decode: Callable[[np.ndarray], np.ndarray],
    measure: Callable[[np.ndarray], pd.DataFrame] | None = None,
    n_steps: int = 6,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Decode each feature's sweep; returns masks ``(k, n_steps, S, S, S)`` and a table.

    The table has one row per (feature, step) with the swept value, the fraction of the
    range, and (with ``measure``: cubes -> feature table) the geometry of the decoded mask.
    """
    codes, values = sweep_codes(z, n_steps)
    k = codes.shape[0]
    decoded = np.asarray(decode(codes.reshape(k * n_steps, -1)))
    masks = decoded.reshape((k, n_steps) + decoded.shape[1:])
    table = pd.DataFrame(
        {
            "feature": np.repeat([f"latent_{j}" for j in range(k)], n_steps),
            "step": np.tile(np.arange(n_steps), k),
            "fraction": np.tile(np.linspace(0, 1, n_steps), k),
            "value": values.reshape(-1),
            "voxels": decoded.reshape(k * n_steps, -1).sum(axis=1),
        }
    )
    if measure is not None:
        geo = measure(decoded).reset_index(drop=True)
        table = pd.concat([table, geo.drop(columns=[c for c in geo if c in table])], axis=1)
    return masks, table


def sweep_slopes(table: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Change of each measured feature per unit of each latent feature along its sweep.

    Least-squares slope of feature against swept value, scaled to the whole sweep
    (``slope * (max - min)``): "from min to max, AP width changes by x mm".
    """
    rows = []
    for name, g in table.groupby("feature", sort=False):
        span = g["value"].max() - g["value"].min()
        row = {"latent": name}
        for f in features:
            ok = g[f].notna()
            row[f] = (
                np.polyfit(g.loc[ok, "value"], g.loc[ok, f], 1)[0] * span
                if ok.sum() >= 2
                else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("latent")


def correlation_matrix(
    x: pd.DataFrame, y: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pearson r, p and FDR q as three (x columns) x (y columns) matrices."""
    long = correlation_table(x, y)
    piv = {
        v: long.pivot(index="x", columns="y", values=v).loc[list(x.columns), list(y.columns)]
        for v in ("r", "p", "q")
    }
    return piv["r"], piv["p"], piv["q"]


def level_differences(z: pd.DataFrame, levels: Sequence[str]) -> pd.DataFrame:
    """Kruskal-Wallis test of each latent feature across spinal levels (FDR over features)."""
    from statsmodels.stats.multitest import multipletests

    levels = np.asarray(levels)
    rows = []
    for col in z.columns:
        groups = [z.loc[levels == lv, col].to_numpy() for lv in pd.unique(levels)]
        groups = [g for g in groups if len(g) > 0]
        h, p = sps.kruskal(*groups) if len(groups) > 1 else (np.nan, np.nan)
        rows.append({"latent": col, "H": float(h), "p": float(p), "levels": len(groups)})
    out = pd.DataFrame(rows).set_index("latent")
    ok = out["p"].notna()
    out["q"] = np.nan
    if ok.any():
        out.loc[ok, "q"] = multipletests(out.loc[ok, "p"], method="fdr_bh")[1]
    return out


def stars(q: float) -> str:
    if not np.isfinite(q):
        return ""
    return "***" if q < 0.001 else "**" if q < 0.01 else "*" if q < 0.05 else ""


def correlation_heatmap(
    r: pd.DataFrame,
    q: pd.DataFrame,
    ax: plt.Axes | None = None,
    title: str = "",
    labels: dict[str, str] | None = None,
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


def plot_sweep(
    masks: np.ndarray,
    table: pd.DataFrame,
    spacing_mm: Sequence[float],
    planes: Sequence[str] = ("sagittal", "coronal", "transverse"),
) -> plt.Figure:
    """The paper's Fig. 5B: one row per (latent feature, plane), one column per sweep step."""
    k, n_steps = masks.shape[:2]
    sp_si, sp_ap, sp_lr = spacing_mm
    extents = {"sagittal": sp_si / sp_ap, "coronal": sp_si / sp_lr, "transverse": sp_ap / sp_lr}
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
                    frac = table.loc[
                        (table.feature == f"latent_{j}") & (table.step == s), "fraction"
                    ].iloc[0]
                    ax.set_title(
                        "min" if s == 0 else "max" if s == n_steps - 1 else f"{frac:.1f}",
                        fontsize=8,
                    )
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig
