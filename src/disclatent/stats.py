"""Confidence intervals, paired tests and correlation tables used throughout the book.

(``book/method.md`` states where each is used.)

Every interval here is stated with how it is computed:

* :func:`bootstrap_ci`: percentile bootstrap; with ``groups`` it resamples whole groups
  (patients), which is right when discs of one spine are not independent.
* :func:`t_ci`: Student-t interval of a mean (e.g. IoU over discs).
* :func:`corrected_repeated_cv_ttest`: Nadeau & Bengio's corrected resampled t-test for
  comparing two models evaluated on the same repeated cross-validation folds.
* :func:`correlation_table`: Pearson r with p-values, Benjamini-Hochberg FDR-corrected
  (statsmodels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps


def t_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the mean: ``(mean, lo, hi)``."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (np.nan, np.nan, np.nan)
    m = float(x.mean())
    if len(x) == 1:
        return (m, np.nan, np.nan)
    half = sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return (m, m - half, m + half)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the mean: ``(mean, lo, hi)`` (vectorised).

    With ``groups`` whole groups (e.g. patients) are resampled. NaNs and entries that are not
    numbers are dropped; one value gives no interval.
    """
    x = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    keep = np.isfinite(x)
    x = x[keep]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    if x.size == 1:
        return (float(x[0]), np.nan, np.nan)
    rng = np.random.default_rng(seed)
    if groups is None:
        means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1)
    else:
        uniq, inv = np.unique(np.asarray(groups)[keep], return_inverse=True)
        sums = np.bincount(inv, weights=x, minlength=uniq.size)
        counts = np.bincount(inv, minlength=uniq.size)
        pick = rng.integers(0, uniq.size, (n_boot, uniq.size))
        means = sums[pick].sum(1) / counts[pick].sum(1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return (float(x.mean()), float(lo), float(hi))


def bootstrap_indices(
    n: int, n_boot: int, seed: int = 0, groups: Sequence | np.ndarray | None = None
) -> list[np.ndarray]:
    """Row indices of ``n_boot`` bootstrap samples; whole groups are drawn if ``groups``."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return [rng.integers(0, n, n) for _ in range(n_boot)]
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(uniq))]
    out = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        out.append(np.concatenate([members[g] for g in pick]))
    return out


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> tuple[float, float, float]:
    """Percentile bootstrap of ``statistic(indices)``: ``(estimate, lo, hi)``.

    ``statistic`` receives an index array into the data (all rows for the estimate, a
    resample for each replicate) and returns a number; replicates giving NaN (e.g. AUC of a
    resample with one class) are dropped.
    """
    estimate = float(statistic(np.arange(n)))
    reps = np.array([statistic(idx) for idx in bootstrap_indices(n, n_boot, seed, groups)], float)
    reps = reps[np.isfinite(reps)]
    if len(reps) < max(10, n_boot // 10):
        return (estimate, np.nan, np.nan)
    lo, hi = np.quantile(reps, [0.5 - level / 2, 0.5 + level / 2])
    return (estimate, float(lo), float(hi))


def bootstrap_paired_p(
    statistic_a: Callable[[np.ndarray], float],
    statistic_b: Callable[[np.ndarray], float],
    n: int,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence | np.ndarray | None = None,
) -> tuple[float, float, float, float]:
    """Paired bootstrap of ``b - a`` on the same resamples: ``(diff, lo, hi, p)``.

    ``p`` is the two-sided bootstrap p-value ``2 * min(P(d <= 0), P(d >= 0))`` (at least
    ``1 / n_boot``).
    """
    diff = float(statistic_b(np.arange(n)) - statistic_a(np.arange(n)))
    draws = [
        statistic_b(idx) - statistic_a(idx) for idx in bootstrap_indices(n, n_boot, seed, groups)
    ]
    reps = np.asarray(draws, float)
    reps = reps[np.isfinite(reps)]
    lo, hi = np.quantile(reps, [0.025, 0.975])
    p = 2 * min((reps <= 0).mean(), (reps >= 0).mean())
    return (diff, float(lo), float(hi), float(max(p, 1 / len(reps))))


def corrected_repeated_cv_ttest(
    scores_a: Sequence[float], scores_b: Sequence[float], n_train: int, n_test: int
) -> tuple[float, float, float]:
    """Nadeau-Bengio corrected resampled t-test of ``b - a`` over paired CV folds.

    The variance of the mean difference over the ``J`` folds (all repeats) is inflated by
    ``(1/J + n_test/n_train)`` to account for overlapping training sets. Returns
    ``(mean difference, t, two-sided p)`` with ``J - 1`` degrees of freedom.
    """
    d = np.asarray(scores_b, float) - np.asarray(scores_a, float)
    j = len(d)
    if j < 2:
        raise ValueError("need at least two paired folds")
    var = d.var(ddof=1)
    if var == 0:
        return (float(d.mean()), np.inf if d.mean() else 0.0, 0.0 if d.mean() else 1.0)
    t = d.mean() / np.sqrt((1 / j + n_test / n_train) * var)
    p = 2 * sps.t.sf(abs(t), j - 1)
    return (float(d.mean()), float(t), float(p))


def correlation_table(x: pd.DataFrame, y: pd.DataFrame, method: str = "fdr_bh") -> pd.DataFrame:
    """Pearson r and p of every column of ``x`` with every column of ``y``, with FDR q.

    Long format: one row per pair with ``x, y, r, p, q, n``. The correction runs over all
    pairs of the table.
    """
    from statsmodels.stats.multitest import multipletests

    rows = []
    for a in x.columns:
        for b in y.columns:
            ok = np.isfinite(x[a].to_numpy(float)) & np.isfinite(y[b].to_numpy(float))
            xa, yb = x[a].to_numpy(float)[ok], y[b].to_numpy(float)[ok]
            if ok.sum() < 3 or xa.std() == 0 or yb.std() == 0:
                r, p = np.nan, np.nan
            else:
                r, p = sps.pearsonr(xa, yb)
            rows.append({"x": a, "y": b, "r": float(r), "p": float(p), "n": int(ok.sum())})
    out = pd.DataFrame(rows)
    finite = out["p"].notna()
    out["q"] = np.nan
    if finite.any():
        out.loc[finite, "q"] = multipletests(out.loc[finite, "p"], method=method)[1]
    return out
