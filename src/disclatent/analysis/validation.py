"""Honest cross-validation of a disc classifier, its metrics and paired comparisons.

(``book/method.md``, *Prediction*.)

* Folds are grouped by patient and stratified by the target (``StratifiedGroupKFold``), and
  the whole 5-fold CV is repeated with different seeds; ``grouped=False`` gives the paper's
  folds (not grouped), so the book can show what that leakage is worth.
* Reported: F1 of the positive class (threshold 0.5 on the predicted probability) and
  AUC-ROC. The estimate is the mean over repeats of the metric of the pooled out-of-fold
  predictions; its 95 % CI is a percentile bootstrap over *patients* of that same
  repeat-averaged metric (:meth:`CVResult.summary`).
* :func:`compare`: a paired patient bootstrap of a difference, and the Nadeau-Bengio
  corrected repeated-CV t-test on per-fold scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from disclatent import stats

METRICS = ("f1", "auc")


def auc_score(y: np.ndarray, p: np.ndarray) -> float:
    """AUC-ROC by the Mann-Whitney statistic (ties count one half); NaN with one class.

    Equal to ``sklearn.metrics.roc_auc_score`` (tested) and fast enough to bootstrap.
    """
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_positive(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the positive class for predictions ``p >= threshold`` (0 if nothing positive)."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(p) >= threshold
    tp = np.sum(y & pred)
    denom = y.sum() + pred.sum()
    return float(2 * tp / denom) if denom else 0.0


def metric_value(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    """``"auc"`` (:func:`auc_score`) or ``"f1"`` (:func:`f1_positive`) of ``p`` for ``y``."""
    if metric == "auc":
        return auc_score(y, p)
    if metric == "f1":
        return f1_positive(y, p)
    raise ValueError(f"unknown metric {metric!r}")


@dataclass
class CVResult:
    """Out-of-fold probabilities (repeats x discs) and per-fold scores."""

    oof: np.ndarray
    folds: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray

    def pooled(self, metric: str, idx: np.ndarray | None = None) -> float:
        """Repeat-averaged metric of the pooled out-of-fold predictions (rows ``idx``)."""
        idx = np.arange(len(self.y)) if idx is None else idx
        y = self.y[idx]
        if len(np.unique(y)) < 2:
            return np.nan
        vals = [metric_value(metric, y, p[idx]) for p in self.oof]
        return float(np.mean(vals))

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
        """``f1, f1_lo, f1_hi, auc, auc_lo, auc_hi``: patient-bootstrap 95 % CIs."""
        out = {}
        for metric in METRICS:

            def statistic(i: np.ndarray, m: str = metric) -> float:
                return self.pooled(m, i)

            est, lo, hi = stats.bootstrap_ci(
                statistic, len(self.y), n_boot=n_boot, seed=seed, groups=self.groups
            )
            out.update({metric: est, f"{metric}_lo": lo, f"{metric}_hi": hi})
        return out


def fold_splits(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, grouped: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped stratified folds (``grouped=False``: the paper's ungrouped folds)."""
    placeholder = np.zeros(len(y))
    if grouped:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(cv.split(placeholder, y, groups))
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(skf.split(placeholder, y))


def _fold_row(
    r: int, f: int, train: np.ndarray, test: np.ndarray, y: np.ndarray, p: np.ndarray, groups
) -> dict:
    return {
        "repeat": r,
        "fold": f,
        "n_train": len(train),
        "n_test": len(test),
        "f1": metric_value("f1", y[test], p),
        "auc": metric_value("auc", y[test], p),
        "patients_shared": len(set(groups[train]) & set(groups[test])),
    }


def cross_validate(
    estimator: BaseEstimator | Callable[[int], BaseEstimator],
    X: pd.DataFrame,  # noqa: N803
    y: Sequence[int] | np.ndarray,
    groups: Sequence | np.ndarray,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    grouped: bool = True,
    progress: bool = False,
    max_folds: int | None = None,
) -> CVResult:
    """Repeated (grouped, stratified) K-fold CV; each fold fits a fresh clone.

    ``estimator`` may be a callable ``fold_seed -> estimator`` for pipelines whose steps need
    a per-fold seed (e.g. an autoencoder trained inside the fold). ``max_folds`` (< ``n_splits``)
    fits and tests only the first folds of each repeat's split, for a costly estimator:
    every fold still trains on (n_splits - 1) / n_splits of the discs, and the result keeps
    only the discs tested in every repeat.
    """
    if max_folds is not None and not 1 <= max_folds <= n_splits:
        raise ValueError(f"max_folds must be between 1 and n_splits={n_splits}, got {max_folds}")
    n_run = n_splits if max_folds is None else max_folds
    from tqdm.auto import tqdm

    labels = np.asarray(y).astype(int)
    patients = np.asarray(groups)
    oof = np.full((n_repeats, len(labels)), np.nan)
    seen = np.zeros(oof.shape, bool)  # tested in that repeat (not inferred from NaN)
    rows = []
    bar = tqdm(total=n_repeats * n_run, desc="CV folds", disable=not progress)
    for r in range(n_repeats):
        splits = fold_splits(labels, patients, n_splits, seed + r, grouped)
        for f, (train, test) in enumerate(splits[:n_run]):
            fold_seed = seed + 1000 * r + f
            per_fold = callable(estimator) and not isinstance(estimator, BaseEstimator)
            model = estimator(fold_seed) if per_fold else clone(estimator)
            model.fit(X.iloc[train], labels[train])
            p = model.predict_proba(X.iloc[test])[:, 1]
            oof[r, test], seen[r, test] = p, True
            rows.append(_fold_row(r, f, train, test, labels, p, patients))
            bar.update()
    bar.close()
    tested = seen.all(axis=0)
    return CVResult(
        oof=oof[:, tested], folds=pd.DataFrame(rows), y=labels[tested], groups=patients[tested]
    )


def compare(
    a: CVResult, b: CVResult, metric: str = "auc", n_boot: int = 1000, seed: int = 0
) -> dict[str, float | str]:
    """Paired comparison of ``b`` against ``a`` on the same discs and folds.

    Two tests: a paired patient bootstrap of the difference in the pooled metric, and the
    Nadeau-Bengio corrected repeated-CV t-test on per-fold scores.
    """
    if not (np.array_equal(a.y, b.y) and np.array_equal(a.groups, b.groups)):
        raise ValueError("the two results must be on the same discs")
    diff, lo, hi, p_boot = stats.bootstrap_paired_p(
        lambda i: a.pooled(metric, i),
        lambda i: b.pooled(metric, i),
        len(a.y),
        n_boot=n_boot,
        seed=seed,
        groups=a.groups,
    )
    fa, fb = a.folds[metric].to_numpy(), b.folds[metric].to_numpy()
    ok = np.isfinite(fa) & np.isfinite(fb)
    n_train = int(a.folds["n_train"].mean())
    n_test = int(a.folds["n_test"].mean())
    mean_d, t, p_t = stats.corrected_repeated_cv_ttest(fa[ok], fb[ok], n_train, n_test)
    return {
        "metric": metric,
        "difference": diff,
        "diff_lo": lo,
        "diff_hi": hi,
        "p_bootstrap": p_boot,
        "fold_mean_difference": mean_d,
        "t_corrected": t,
        "p_corrected_t": p_t,
    }
