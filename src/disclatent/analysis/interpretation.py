"""What the latent features mean: sweeps through the decoder, correlations, levels.

(``book/method.md``, *Interpretation*.) The figures are drawn by
:mod:`disclatent.report.interpretation_plots`.

* :func:`sweep_codes`: hold every latent feature at its **mean** over the cohort (the public
  implementation used half the range) and move one from its minimum to its maximum in
  ``n_steps`` equal steps (6: min, 1/5, ..., max, as the paper's Fig. 5B).
* :func:`latent_sweep`: decode those codes into masks and measure each decoded mask with
  the geometry module, so a sweep reads as "feature 2 up -> AP width down by x mm".
* :func:`correlation_matrix`: Pearson r, p and FDR q of latent against geometric features
  (Fig. 5A), and :func:`max_off_diagonal` for the latent features among themselves.
* :func:`level_differences`: does a latent feature separate spinal levels? Kruskal-Wallis
  test per feature, FDR-corrected over features.
* :func:`factor_correlation`: on the phantom, the latent features against the factors that
  generated each disc (:data:`disclatent.data.phantom.GENERATING_FACTORS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from disclatent.conventions import latent_columns
from disclatent.data.phantom import GENERATING_FACTORS
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
            "feature": np.repeat(latent_columns(k), n_steps),
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

    names = np.asarray(levels)
    rows = []
    for col in z.columns:
        groups = [z.loc[names == lv, col].to_numpy() for lv in pd.unique(names)]
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
    """FDR significance marks: * q < 0.05, ** q < 0.01, *** q < 0.001."""
    if not np.isfinite(q):
        return ""
    return "***" if q < 0.001 else "**" if q < 0.01 else "*" if q < 0.05 else ""


def max_off_diagonal(r: pd.DataFrame | np.ndarray) -> float:
    """Largest |r| between two different variables of a square correlation matrix."""
    m = np.asarray(r, float)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or len(m) < 2:
        raise ValueError(f"need a square matrix of at least two variables, got {m.shape}")
    return float(np.abs(m[~np.eye(len(m), dtype=bool)]).max())


@dataclass
class FactorCorrelation:
    """Latent features against the phantom's generating factors, disc by disc."""

    joined: pd.DataFrame  # one row per disc: series, ivd_label, latent columns, factors
    r: pd.DataFrame  # latent x factors, Pearson r
    q: pd.DataFrame  # FDR-corrected p-values
    table: pd.DataFrame  # long format (:func:`disclatent.stats.correlation_table`)

    def strongest(self) -> pd.DataFrame:
        """For each latent feature, the factor it correlates with most (by |r|) and that r."""
        best = self.r.abs().idxmax(axis=1)
        return pd.DataFrame(
            {"strongest factor": best, "r": [self.r.loc[i, best[i]] for i in self.r.index]}
        ).rename_axis("latent feature")


def factor_correlation(
    table: pd.DataFrame,
    truth: pd.DataFrame,
    latent: Sequence[str],
    factors: Sequence[str] = GENERATING_FACTORS,
) -> FactorCorrelation:
    """Correlate the ``latent`` columns of ``table`` with the generating ``factors`` of
    ``truth`` (the phantom's ``phantom_truth.csv``), joined on (series, IVD label)."""
    keys = ["series", "ivd_label"]
    joined = table[[*keys, *latent]].merge(
        truth[[*keys, *factors]], on=keys, how="inner", validate="one_to_one"
    )
    r, _, q = correlation_matrix(joined[list(latent)], joined[list(factors)])
    long = correlation_table(joined[list(latent)], joined[list(factors)])
    return FactorCorrelation(joined, r, q, long)
