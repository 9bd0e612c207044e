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
    "sweep grid": "the interpretation chapter's sweeps over the cohort's codes: one feature "
    "from its minimum to its maximum in 6 steps, the others at their mean",
    "cohort distribution": "vectors drawn from a Gaussian with the mean and covariance of "
    "the cohort's codes",
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
    model: DiscAE, cohort: np.ndarray, heldout: np.ndarray, n_samples: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """The latent vectors of :data:`SAMPLES` for one model (``DiscAE``): the held-out discs'
    codes, and over the codes of the ``cohort`` cubes (every disc, as the interpretation
    chapter sweeps them) the sweep grid (feature-major: feature j, step s at row j * 6 + s)
    and ``n_samples`` draws from their Gaussian."""
    z = model.encode(cohort)
    grid, _ = sweep_codes(z, n_steps=6)
    return {
        "held-out discs": model.encode(heldout),
        "sweep grid": grid.reshape(-1, z.shape[1]),
        "cohort distribution": pl.cohort_samples(z, n_samples, seed),
    }


def plausibility_table(
    models: Mapping[str, DiscAE],
    cohort: np.ndarray,
    heldout: np.ndarray,
    check: pl.PlausibilityCheck,
    spacing_mm: Sequence[float],
    n_samples: int,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, pd.DataFrame]]]:
    """Per model and sample (:data:`SAMPLES`) the plausible share of the decoded discs with
    its Wilson interval, the commonest reason for implausibility, and the model's held-out
    IoU: columns ``model, kind, seed, sample, n, plausible_share, lo, hi, top_reason,
    heldout_iou``; and each model's decoded sweep grid ``(k, 6, S, S, S)`` with its verdicts
    (for figures)."""
    rows, grids = [], {}
    for name, m in models.items():
        for sample, z in sample_codes(m, cohort, heldout, n_samples, seed).items():
            decoded = m.decode(z)
            judged = check.judge(decoded, spacing_mm)
            if sample == "sweep grid":
                k = m.config.latent_dim
                grids[name] = (decoded.reshape(k, -1, *decoded.shape[1:]), judged)
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


def plausibility_text(table: pd.DataFrame) -> str:
    """The latent-noise decoder against the plain one *of the same seed* (paired: same
    initial weights and disc order), per sample, with the plain decoder's range over all its
    seeds as the yardstick of seed-to-seed variation; and their held-out IoU."""
    noisy = table[table["kind"] == "latent noise"]
    if noisy.empty:
        return "No latent-noise model was trained in this run."
    plain = table[table["kind"] == "plain"]
    parts = []
    for sample in ("sweep grid", "cohort distribution"):
        p_all = plain[plain["sample"] == sample]
        for row in noisy[noisy["sample"] == sample].itertuples():
            twin = p_all[p_all.seed == row.seed]
            if twin.empty:
                continue
            parts.append(
                f"over the {sample}, {row.plausible_share:.0%} "
                f"({row.lo:.0%}-{row.hi:.0%}) of the latent-noise decoder's discs (seed "
                f"{row.seed}) are plausible against {twin.plausible_share.iloc[0]:.0%} for "
                f"the plain decoder of the same seed (plain, all seeds: "
                f"{p_all.plausible_share.min():.0%}-{p_all.plausible_share.max():.0%})"
            )
    iou = table.drop_duplicates("model").groupby("kind")["heldout_iou"]
    lo, hi = iou.min(), iou.max()
    tail = (
        f"held-out IoU {hi['latent noise']:.3f} with latent noise against "
        f"{lo['plain']:.3f}-{hi['plain']:.3f} for the plain seeds"
    )
    text = "; ".join(parts + [tail]) + "."
    return text[0].upper() + text[1:]


def basis_text(basis_auc: pd.DataFrame, target: str = "disc_narrowing") -> str:
    """What whitening did to the AUC of each feature set for ``target``, with intervals."""
    part = basis_auc[basis_auc["target"] == target].set_index(["features", "basis"])
    parts = []
    for fs in dict.fromkeys(part.index.get_level_values(0)):
        a, b = part.loc[(fs, "as trained")], part.loc[(fs, "PCA-whitened")]
        parts.append(
            f"{fs}: {a.auc:.2f} ({a.auc_lo:.2f}-{a.auc_hi:.2f}) as trained, "
            f"{b.auc:.2f} ({b.auc_lo:.2f}-{b.auc_hi:.2f}) whitened"
        )
    return f"AUC for {target.replace('_', ' ')}: " + "; ".join(parts) + "."


def claims_verdict(claims: pd.DataFrame, cca: pd.DataFrame) -> str:
    """Which of the paper's statements about single latent axes survive retraining (hold in
    every seed), which hold only in some or none, and the axis-free view: whether the first
    canonical correlation with geometry exceeds its shuffled-discs null in every seed."""
    n = claims["seed"].nunique()
    every: list[str] = []
    some: list[str] = []
    none: list[str] = []
    for claim, g in claims.groupby("claim", sort=False):
        held = int(g["holds"].sum())
        (every if held == n else some if held else none).append(f"{claim} ({held} of {n})")
    parts = []
    if every:
        parts.append("survive retraining (hold in every seed): " + "; ".join(every))
    if some:
        parts.append("hold in some seeds only: " + "; ".join(some))
    if none:
        parts.append("hold in no seed: " + "; ".join(none))
    first = cca[cca["component"] == 1]
    r, null = first["canonical_r"], first["null_r_95"]
    seeds = f"{int(first['above_null'].sum())} of {len(first)} seeds"
    axis_free = (
        f"The axis-free view: the first canonical correlation between latent space and "
        f"geometry is {r.min():.2f}-{r.max():.2f} over seeds, against {null.max():.2f} at most "
        f"for the 95th percentile of shuffled discs; above it in {seeds}."
    )
    return "Of the paper's statements, " + "; ".join(parts) + ". " + axis_free
