"""What disc composition adds: Pfirrmann grade, narrowing and bulging from intensity features.

(``book/method.md``, *Composition*.) Three feature families are compared on the same discs
and the same patient-grouped folds: the hand-crafted measures
(:data:`~disclatent.discs.composition.COMPOSITION_FEATURES`), the shape-only latent code and
the intensity-aware latent code (:mod:`disclatent.autoencoder.composition`), beside the
level-aware baselines of the prediction chapter.

* :func:`ordinal_cv`: Pfirrmann grade as an ordinal target: a multi-class XGBoost (the
  paper's settings) per fold, scored by quadratic-weighted kappa of the expected grade
  (rounded) and the macro one-vs-rest AUC, with patient-bootstrap CIs (:class:`OrdinalResult`);
* :func:`intensity_prediction`: every (target, feature set) as rows ``target, features,
  metric, value, lo, hi``; binary targets (grade >= 4, narrowing, bulging) through
  :func:`~disclatent.analysis.validation.cross_validate`;
* :func:`paired_differences`: one feature set against another on the same folds;
* :func:`truth_recovery`: how well each family recovers the phantom's generating
  composition (the correlation of a cross-validated linear read-out with the truth).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GroupKFold

from disclatent import published, stats
from disclatent.analysis.estimators import make_pipeline
from disclatent.analysis.prediction import cv_problem
from disclatent.analysis.validation import (
    CVResult,
    auc_score,
    compare,
    cross_validate,
    fold_splits,
)

__all__ = [
    "BINARY_TARGETS",
    "ORDINAL_METRICS",
    "PFIRRMANN",
    "OrdinalResult",
    "add_binary_grade",
    "best_reader",
    "feature_sets",
    "shuffled_composition",
    "train_intensity_models",
    "intensity_prediction",
    "macro_ovr_auc",
    "ordinal_cv",
    "paired_differences",
    "quadratic_kappa",
    "truth_recovery",
]

PFIRRMANN = "pfirrmann_grade"
SEVERE = "pfirrmann_4plus"  # binary: grade >= 4
BINARY_TARGETS = (SEVERE, "disc_narrowing", "disc_bulging")
ORDINAL_METRICS = ("qwk", "auc_macro")
TABLE_COLUMNS = ["target", "features", "metric", "value", "lo", "hi", "discs", "repeats"]


def add_binary_grade(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the binary target ``pfirrmann_4plus`` (grade >= 4)."""
    return table.assign(**{SEVERE: (table[PFIRRMANN] >= 4).astype(int)})


def quadratic_kappa(y: np.ndarray, pred: np.ndarray) -> float:
    """Quadratic-weighted Cohen's kappa of integer ratings (NaN when ``y`` has one value);
    equal to ``sklearn.metrics.cohen_kappa_score(weights="quadratic")`` (tested), from one
    confusion matrix, fast enough to bootstrap."""
    y, pred = np.asarray(y, int), np.asarray(pred, int)
    if len(np.unique(y)) < 2:
        return np.nan
    lo = min(y.min(), pred.min())
    k = max(y.max(), pred.max()) - lo + 1
    conf = np.bincount((y - lo) * k + (pred - lo), minlength=k * k).reshape(k, k).astype(float)
    expected = np.outer(conf.sum(axis=1), conf.sum(axis=0)) / conf.sum()
    i, j = np.indices((k, k))
    w = (i - j) ** 2
    denom = (w * expected).sum()
    return float(1 - (w * conf).sum() / denom) if denom > 0 else np.nan


def macro_ovr_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y`` (at least two), each class's
    column of ``proba`` renormalised over those classes; equal to ``sklearn.metrics.
    roc_auc_score(multi_class="ovr", average="macro")`` on the same scores (tested)."""
    present = np.isin(classes, y)
    if present.sum() < 2:
        return np.nan
    p = proba[:, present]
    p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
    return float(np.mean([auc_score(y == c, p[:, j]) for j, c in enumerate(classes[present])]))


@dataclass
class OrdinalResult:
    """Out-of-fold class probabilities ``proba[repeat, disc, class]`` of ``classes``."""

    proba: np.ndarray
    classes: np.ndarray
    y: np.ndarray
    groups: np.ndarray

    def _metric(self, metric: str, y: np.ndarray, p: np.ndarray) -> float:
        if metric == "qwk":
            return quadratic_kappa(y, np.rint(p @ self.classes).astype(int))
        if metric == "auc_macro":
            return macro_ovr_auc(y, p, self.classes)
        raise ValueError(f"unknown ordinal metric {metric!r}; choose from {ORDINAL_METRICS}")

    def pooled(self, metric: str, idx: np.ndarray | None = None) -> float:
        """Repeat-averaged metric of the pooled out-of-fold predictions (rows ``idx``)."""
        idx = np.arange(len(self.y)) if idx is None else idx
        return float(np.mean([self._metric(metric, self.y[idx], p[idx]) for p in self.proba]))

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
        """``metric -> (estimate, lo, hi)``, patient-bootstrap 95 % intervals."""
        out = {}
        for m in ORDINAL_METRICS:

            def statistic(i: np.ndarray, m: str = m) -> float:
                return self.pooled(m, i)

            out[m] = stats.bootstrap_ci(
                statistic, len(self.y), n_boot, seed=seed, groups=self.groups
            )
        return out


def ordinal_cv(
    table: pd.DataFrame,
    columns: Sequence[str],
    target: str = PFIRRMANN,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
) -> OrdinalResult:
    """Repeated patient-grouped K-fold CV (stratified by grade) of a multi-class XGBoost with
    the paper's settings on ``columns``; a class absent from a training fold gets
    probability 0 in that fold."""
    from xgboost import XGBClassifier

    y = table[target].to_numpy(int)
    groups = table["patient"].astype(str).to_numpy()
    X = table[list(columns)].to_numpy(float)  # noqa: N806
    classes = np.unique(y)
    proba = np.zeros((n_repeats, len(y), len(classes)))
    for r in range(n_repeats):
        with warnings.catch_warnings():  # rare grades: fewer discs than folds is expected
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            splits = fold_splits(y, groups, n_splits, seed + r)
        for f, (train, test) in enumerate(splits):
            seen = np.unique(y[train])
            model = XGBClassifier(
                **published.XGB_SETTINGS,
                random_state=seed + 1000 * r + f,
                n_jobs=1,
                tree_method="hist",
            )
            model.fit(X[train], np.searchsorted(seen, y[train]))
            p = model.predict_proba(X[test])
            cols = np.searchsorted(classes, seen)
            if p.shape[1] == 1:  # a fold with one class: certain
                p = np.ones((len(test), 1))
            proba[r][np.ix_(test, cols)] = p
    return OrdinalResult(proba, classes, y, groups)


def _binary(table: pd.DataFrame, target: str, columns: Sequence[str], n_repeats: int, seed: int):
    y = table[target].to_numpy(int)
    groups = table["patient"].astype(str).to_numpy()
    return cross_validate(
        lambda s: make_pipeline(list(columns), seed=s),
        table,
        y,
        groups,
        n_repeats=n_repeats,
        seed=seed,
    )


def intensity_prediction(
    table: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    targets: Sequence[str] = ("pfirrmann", *BINARY_TARGETS),
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[tuple[str, str], CVResult | OrdinalResult]]:
    """Every (target, feature set): rows :data:`TABLE_COLUMNS`, and the CV results by
    ``(target, feature set)`` for paired comparisons. ``pfirrmann`` is the ordinal grade
    (metrics ``qwk`` and ``auc_macro``); the binary targets report ``auc`` and ``f1``."""
    table = add_binary_grade(table)
    rows, results = [], {}
    for target in targets:
        problem = cv_problem(table, PFIRRMANN if target == "pfirrmann" else target)
        if problem and not (target == "pfirrmann" and "class" in problem):
            warnings.warn(f"{target} not cross-validated: {problem}", stacklevel=2)
            continue
        for name, columns in feature_sets.items():
            res: CVResult | OrdinalResult
            summary: dict[str, tuple[float, float, float]]
            if target == "pfirrmann":
                res = ordinal_cv(table, columns, n_repeats=n_repeats, seed=seed)
                summary = res.summary(n_boot, seed)
            else:
                res = _binary(table, target, columns, n_repeats, seed)
                s = res.summary(n_boot, seed)
                summary = {m: (s[m], s[f"{m}_lo"], s[f"{m}_hi"]) for m in ("auc", "f1")}  # type: ignore[misc]
            results[(target, name)] = res
            for metric, (v, lo, hi) in summary.items():
                rows.append(
                    dict(target=target, features=name, metric=metric, value=v, lo=lo, hi=hi)
                    | {"discs": len(table), "repeats": n_repeats}
                )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS), results


def _pooled_kappa(result: OrdinalResult, idx: np.ndarray) -> float:
    return result.pooled("qwk", idx)


def paired_differences(
    results: Mapping[tuple[str, str], CVResult | OrdinalResult],
    pairs: Sequence[tuple[str, str]],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """For every target and pair ``(a, b)`` of feature sets: ``b - a`` in the target's main
    metric (AUC; quadratic-weighted kappa for the ordinal grade) with its paired patient
    bootstrap interval and p-value."""
    rows = []
    for target in dict.fromkeys(t for t, _ in results):
        for a, b in pairs:
            ra, rb = results.get((target, a)), results.get((target, b))
            if ra is None or rb is None:
                continue
            if isinstance(ra, OrdinalResult) and isinstance(rb, OrdinalResult):
                metric = "qwk"
                d, lo, hi, p = stats.bootstrap_paired_p(
                    partial(_pooled_kappa, ra),
                    partial(_pooled_kappa, rb),
                    len(ra.y),
                    n_boot,
                    seed,
                    ra.groups,
                )
            elif isinstance(ra, CVResult) and isinstance(rb, CVResult):
                metric = "auc"
                c = compare(ra, rb, metric, n_boot, seed)
                d, lo, hi, p = (
                    float(c["difference"]),
                    float(c["diff_lo"]),
                    float(c["diff_hi"]),
                    float(c["p_bootstrap"]),
                )
            else:
                raise TypeError(f"{target}: {a} and {b} are not results of the same kind")
            rows.append(
                dict(target=target, a=a, b=b, metric=metric, difference=d, lo=lo, hi=hi, p=p)
            )
    return pd.DataFrame(rows)


def truth_recovery(
    table: pd.DataFrame,
    families: Mapping[str, Sequence[str]],
    factors: Sequence[str] = ("degeneration", "hydration"),
    n_splits: int = 5,
) -> pd.DataFrame:
    """For each feature family and generating factor of ``table`` (the phantom's truth
    joined to the features): Pearson r between the factor and its out-of-fold linear
    read-out from the family's columns (patient-grouped folds), so that a family of many
    columns gains nothing from fitting its own test discs."""
    groups = table["patient"].astype(str).to_numpy()
    rows = []
    for name, columns in families.items():
        X = table[list(columns)].to_numpy(float)  # noqa: N806
        for factor in factors:
            t = table[factor].to_numpy(float)
            pred = np.full(len(t), np.nan)
            for train, test in GroupKFold(n_splits=n_splits).split(X, t, groups):
                pred[test] = LinearRegression().fit(X[train], t[train]).predict(X[test])
            r = float(np.corrcoef(pred, t)[0, 1])
            rows.append({"family": name, "factor": factor, "r": r})
    return pd.DataFrame(rows)


def best_reader(
    table: pd.DataFrame, truth: str = "degeneration", n_boot: int = 1000, seed: int = 0
) -> dict:
    """The ceiling of any feature on the phantom: quadratic-weighted kappa between the
    graded Pfirrmann grade and a reader who knows the generating degeneration state exactly
    (rounded to a grade), with a patient-bootstrap interval; a row of the prediction table."""
    y = table[PFIRRMANN].to_numpy(int)
    read = np.clip(np.rint(table[truth].to_numpy(float)), 1, 5).astype(int)
    groups = table["patient"].astype(str).to_numpy()

    def kappa(i: np.ndarray) -> float:
        if len(np.unique(y[i])) < 2:
            return np.nan
        return quadratic_kappa(y[i], read[i])

    v, lo, hi = stats.bootstrap_ci(kappa, len(y), n_boot, seed=seed, groups=groups)
    return dict(target="pfirrmann", features="best reader", metric="qwk", value=v, lo=lo, hi=hi) | {
        "discs": len(y),
        "repeats": 0,
    }


def feature_sets(shape: Sequence[str], intensity: Sequence[str]) -> dict[str, list[str]]:
    """The chapter's feature sets: the level-aware baselines, each family alone and with
    the level or the others, and the negative control (``shuffled_`` hand-crafted columns:
    :func:`shuffled_composition`)."""
    from disclatent.analysis.estimators import LEVEL_COLUMN
    from disclatent.discs.composition import COMPOSITION_FEATURES

    hand = list(COMPOSITION_FEATURES)
    return {
        "level": [LEVEL_COLUMN],
        "height + level": ["height_mm", LEVEL_COLUMN],
        "hand-crafted": hand,
        "hand-crafted + level": [*hand, LEVEL_COLUMN],
        "shape latent": list(shape),
        "shape latent + hand-crafted": [*shape, *hand],
        "intensity latent": list(intensity),
        "intensity latent + level": [*intensity, LEVEL_COLUMN],
        "hand-crafted, shuffled intensities": [f"shuffled_{c}" for c in hand],
    }


def shuffled_composition(masks: np.ndarray, intensities: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """The negative control: the hand-crafted measures of each disc's mask read from
    another disc's intensity cube (a random permutation), columns ``shuffled_<measure>``;
    any feature that still predicts the grade from these reads something other than the
    disc's own composition."""
    from disclatent.discs.composition import composition_features

    perm = np.random.default_rng(seed).permutation(len(intensities))
    out = composition_features(masks, np.asarray(intensities, np.float32)[perm])
    return out.add_prefix("shuffled_")


def train_intensity_models(
    x: np.ndarray,
    train: np.ndarray,
    heldout: np.ndarray,
    latent_dims: Sequence[int],
    profile: str,
    epochs: int,
    seed: int = 0,
) -> tuple[dict[int, Any], pd.DataFrame]:
    """One :class:`~disclatent.autoencoder.composition.IntensityAutoencoder` per bottleneck,
    trained on the discs ``train`` of ``x`` (:func:`~disclatent.autoencoder.composition.two_channel`
    cubes), and their mask IoU and intensity error on training and held-out discs."""
    from disclatent.autoencoder.composition import IntensityAutoencoder

    models, rows = {}, []
    for k in latent_dims:
        model = IntensityAutoencoder(k, profile, epochs, seed=seed, progress=True).fit(x[train])
        tr, ho = model.reconstruction_error(x[train]), model.reconstruction_error(x[heldout])
        models[k] = model
        rows.append(
            {
                "latent_dim": k,
                "epochs": epochs,
                "train_discs": int(train.sum()),
                "heldout_discs": int(heldout.sum()),
                "train_iou": tr["iou"].mean(),
                "heldout_iou": ho["iou"].mean(),
                "train_intensity_mae": tr["intensity_mae"].mean(),
                "heldout_intensity_mae": ho["intensity_mae"].mean(),
                "final_loss": float(model.history_["loss"].iloc[-1]),
            }
        )
    return models, pd.DataFrame(rows)
