"""The stability chapter's experiments on several trained autoencoders (``book/method.md``,
*Stability* and *Plausibility*): their reconstruction figures, their plausibility over the
sweep grid and the cohort's latent distribution, and what a rotation of the latent basis does
to correlations and to prediction. The measures themselves are in
:mod:`disclatent.analysis.stability` and :mod:`disclatent.analysis.plausibility`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from disclatent.analysis import plausibility as pl
from disclatent.analysis.interpretation import max_off_diagonal, sweep_codes
from disclatent.analysis.prediction import run_experiment
from disclatent.conventions import latent_columns

if TYPE_CHECKING:
    from disclatent.autoencoder import DiscAE

#: the samples of latent vectors whose decodes are judged
SAMPLES = {
    "held-out discs": "the held-out discs' own codes (a reference: real discs, re-drawn)",
    "sweep grid": "the interpretation chapter's sweeps: one feature from its minimum to its "
    "maximum in 6 steps, the others at their mean",
    "cohort distribution": "vectors drawn from a Gaussian with the mean and covariance of "
    "the training discs' codes",
}


def model_kind(name: str) -> str:
    """ "latent noise" for a ``...-noise-...`` model, else "plain"."""
    return "latent noise" if "-noise-" in name else "plain"


def model_table(models: Mapping[str, DiscAE]) -> pd.DataFrame:
    """One row per model (``{name: DiscAE}``): kind, seed, whether and when it reached the
    criterion, training and held-out IoU, seconds."""
    rows = []
    for name, m in models.items():
        met, cfg = m.metrics, m.config
        rows.append(
            {
                "model": name,
                "kind": model_kind(name),
                "seed": cfg.seed,
                "code_noise": cfg.code_noise,
                "converged": bool(met.get("converged")),
                "epochs": met.get("epochs_to_converge") or met.get("epochs"),
                "train_iou": met.get("train_iou"),
                "heldout_iou": met.get("heldout_iou"),
                "train_seconds": met.get("train_seconds"),
            }
        )
    return pd.DataFrame(rows)


def sample_codes(
    model: DiscAE, train: np.ndarray, heldout: np.ndarray, n_samples: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """The latent vectors of :data:`SAMPLES` for one model (``DiscAE``): the held-out discs'
    codes, the sweep grid over its training discs' codes and ``n_samples`` draws from their
    Gaussian."""
    z_train = model.encode(train)
    grid, _ = sweep_codes(z_train, n_steps=6)
    return {
        "held-out discs": model.encode(heldout),
        "sweep grid": grid.reshape(-1, z_train.shape[1]),
        "cohort distribution": pl.cohort_samples(z_train, n_samples, seed),
    }


def plausibility_table(
    models: Mapping[str, DiscAE],
    train: np.ndarray,
    heldout: np.ndarray,
    check: pl.PlausibilityCheck,
    spacing_mm: Sequence[float],
    n_samples: int,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Per model and sample (:data:`SAMPLES`) the plausible share of the decoded discs with
    its Wilson interval, the commonest reason for implausibility, and the model's held-out
    IoU: columns ``model, kind, seed, sample, n, plausible_share, lo, hi, top_reason,
    heldout_iou``; and each model's judged sweep grid (for figures)."""
    rows, grids = [], {}
    for name, m in models.items():
        for sample, z in sample_codes(m, train, heldout, n_samples, seed).items():
            judged = check.judge(m.decode(z), spacing_mm)
            if sample == "sweep grid":
                grids[name] = judged
            value, lo, hi = pl.share(judged["plausible"])
            reasons = judged.loc[~judged["plausible"], "reason"].str.split("; ").explode()
            rows.append(
                {
                    "model": name,
                    "kind": model_kind(name),
                    "seed": m.config.seed,
                    "sample": sample,
                    "n": len(judged),
                    "plausible_share": value,
                    "lo": lo,
                    "hi": hi,
                    "top_reason": reasons.mode().iloc[0] if len(reasons) else "",
                    "heldout_iou": m.metrics.get("heldout_iou"),
                }
            )
    return pd.DataFrame(rows), grids


def plausibility_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean plausible share (and its range over seeds) per kind of model and sample, with
    the mean held-out IoU: the side-by-side comparison of plain and regularised decoders."""
    g = table.groupby(["kind", "sample"], sort=False)
    out = g.agg(
        models=("model", "nunique"),
        plausible_share=("plausible_share", "mean"),
        share_min=("plausible_share", "min"),
        share_max=("plausible_share", "max"),
        heldout_iou=("heldout_iou", "mean"),
    )
    return out.reset_index()


# --- decorrelation is a choice of basis ------------------------------------------------------
def whitened(z: np.ndarray, fit_rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """Codes ``z`` (n, k) rotated onto the principal axes of ``z[fit_rows]`` and scaled to unit
    variance there (PCA whitening fitted on those rows only)."""
    pca = PCA(whiten=True, random_state=seed).fit(np.asarray(z, float)[fit_rows])
    return pca.transform(np.asarray(z, float))


def rotated_table(table: pd.DataFrame, latent_dim: int, fit_rows: np.ndarray) -> pd.DataFrame:
    """``table`` with its ``latent_0..`` columns replaced by their :func:`whitened` version."""
    cols = latent_columns(latent_dim)
    out = table.copy()
    out[cols] = whitened(table[cols].to_numpy(float), fit_rows)
    return out


def basis_correlations(tables: Mapping[str, pd.DataFrame], latent_dim: int) -> pd.DataFrame:
    """The largest |r| between two different latent features, per basis (``{name: table}``)
    and over all the table's discs."""
    cols = latent_columns(latent_dim)
    return pd.DataFrame(
        [
            {"basis": name, "max_abs_r_between_latents": max_off_diagonal(t[cols].corr())}
            for name, t in tables.items()
        ]
    )


def basis_prediction(
    tables: Mapping[str, pd.DataFrame],
    latent_dim: int,
    targets: Sequence[str],
    feature_sets: Sequence[str] = ("latent", "geometric + latent"),
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """AUC and F1 (patient-grouped CV, as Table 1) of each feature set in each latent basis:
    trees split on one feature at a time, so they are not rotation invariant."""
    rows = []
    for basis, table in tables.items():
        for target in targets:
            for fs in feature_sets:
                _, row = run_experiment(
                    table, target, fs, latent_dim, n_repeats=n_repeats, n_boot=n_boot, seed=seed
                )
                rows.append({"basis": basis, **row})
    return pd.DataFrame(rows)


# --- the chapter's sentences -------------------------------------------------------------------
def _range(values: pd.Series, digits: int = 2) -> str:
    return f"median {values.median():.{digits}f}, range {values.min():.{digits}f}-{values.max():.{digits}f}"


def similarity_text(pairs: pd.DataFrame, shuffled_cka: float) -> str:
    """What the seed-by-seed similarities say, with their numbers."""
    n = len(set(pairs.seed_a) | set(pairs.seed_b))
    return (
        f"Over the {len(pairs)} pairs of {n} seeds, the held-out discs' codes have a linear "
        f"CKA of {_range(pairs.cka)} and a Procrustes R² of {_range(pairs.procrustes_r2)}. "
        f"With the discs shuffled between two runs (a negative control) CKA falls to "
        f"{shuffled_cka:.2f}."
    )


def claims_summary(claims: pd.DataFrame) -> pd.DataFrame:
    """Per claim of :func:`~disclatent.analysis.stability.paper_claims`: in how many seeds it
    holds and its value in each."""
    rows = []
    for claim, g in claims.groupby("claim", sort=False):
        values = ", ".join(f"{v:+.2f}" for v in g.sort_values("seed")["value"])
        holds = f"{int(g['holds'].sum())} of {len(g)}"
        rows.append({"claim": claim, "holds in seeds": holds, "value per seed": values})
    return pd.DataFrame(rows)


def plausibility_text(summary: pd.DataFrame) -> str:
    """Plain against latent-noise decoders, per sample, with numbers."""
    s = summary.set_index(["kind", "sample"])
    parts = []
    for sample in ("sweep grid", "cohort distribution"):
        if ("plain", sample) in s.index and ("latent noise", sample) in s.index:
            a, b = s.loc[("plain", sample)], s.loc[("latent noise", sample)]
            parts.append(
                f"over the {sample}, {a.plausible_share:.0%} of the plain decoder's discs are "
                f"plausible (seeds {a.share_min:.0%}-{a.share_max:.0%}) against "
                f"{b.plausible_share:.0%} with latent noise ({b.share_min:.0%}-{b.share_max:.0%})"
            )
    if not parts:
        return "No latent-noise model was trained in this profile."
    a, b = s.loc[("plain", "held-out discs")], s.loc[("latent noise", "held-out discs")]
    iou = f"held-out IoU {a.heldout_iou:.3f} against {b.heldout_iou:.3f}"
    return "; ".join(parts).capitalize() + f"; {iou}."
