"""Predicting disc pathology with XGBoost under honest cross-validation.

* The classifier has the paper's settings (max_depth 3, 200 trees, learning rate 0.1), not the
  library defaults; the class-weighted variant computes its weight from the training fold.
* Every fitted step lives in a scikit-learn ``Pipeline`` and is fitted inside each fold.
* Folds are grouped by patient and stratified by the target (``StratifiedGroupKFold``), and
  the whole 5-fold CV is repeated with different seeds.
* Reported: F1 of the positive class (threshold 0.5 on the predicted probability) and
  AUC-ROC. The estimate is the mean over repeats of the metric of the pooled out-of-fold
  predictions; its 95 % CI is a percentile bootstrap over *patients* (1000 resamples) of that
  same repeat-averaged metric.
* The paper's protocol (folds not grouped by patient) is available as ``grouped=False`` so the
  book can show what that leakage is worth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from disclatent import published, stats
from disclatent.conventions import PREDICTION_FEATURES
from disclatent.formatting import format_ci


class ColumnSelector(BaseEstimator, TransformerMixin):
    """Keep the named columns of a DataFrame (a stateless first pipeline step)."""

    def __init__(self, columns: Sequence[str] = ()):
        self.columns = columns

    def fit(self, X, y=None):  # noqa: N803 (scikit-learn's argument names)
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise KeyError(f"feature columns missing: {missing}")
        self.feature_names_in_ = np.asarray(X.columns)
        return self

    def transform(self, X):  # noqa: N803
        return X[list(self.columns)].to_numpy(float)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(self.columns)


class DiscXGBClassifier(BaseEstimator, ClassifierMixin):
    """XGBoost with the paper's settings; optional class weighting from the training fold.

    ``class_weighted=True`` sets ``scale_pos_weight = negatives / positives`` of the data it is
    fitted on, so the weight is never computed from test discs.
    """

    def __init__(
        self,
        max_depth: int = published.XGB_SETTINGS["max_depth"],
        n_estimators: int = published.XGB_SETTINGS["n_estimators"],
        learning_rate: float = published.XGB_SETTINGS["learning_rate"],
        class_weighted: bool = False,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.max_depth = max_depth
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.class_weighted = class_weighted
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):  # noqa: N803
        from xgboost import XGBClassifier

        y = np.asarray(y).astype(int)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"need both classes in the training fold, got {self.classes_}")
        pos = y.sum()
        weight = (len(y) - pos) / pos if self.class_weighted else 1.0
        self.scale_pos_weight_ = float(weight)
        self.model_ = XGBClassifier(
            max_depth=self.max_depth,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            scale_pos_weight=weight,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            tree_method="hist",
            eval_metric="logloss",
        )
        self.model_.fit(np.asarray(X, float), y)
        return self

    def predict_proba(self, X):  # noqa: N803
        return self.model_.predict_proba(np.asarray(X, float))

    def predict(self, X):  # noqa: N803
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class LatentCache:
    """Fitted latent extractors, shared by pipelines that train on the same discs.

    In the AE-in-fold protocol the "latent" and "geometric + latent" feature sets use the same
    folds (same seeds), so each fold's autoencoder is trained once and reused. An entry is
    keyed on the training discs (their cube indices) and the extractor's parameters (seed
    included). scikit-learn's ``clone`` deep-copies parameters; a copy of this object is the
    object itself, so every clone of a pipeline shares it. ``fits`` and ``hits`` count.
    """

    def __init__(self) -> None:
        self._fitted: dict[str, object] = {}
        self.fits = 0
        self.hits = 0

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    def fit(self, latent, cubes: np.ndarray, index: np.ndarray):
        """``latent`` (unfitted) fitted on ``cubes[index]``, trained once per key."""
        import hashlib

        index = np.asarray(index, np.int64)
        params = sorted((k, repr(v)) for k, v in latent.get_params(deep=False).items())
        key = hashlib.sha256(
            index.tobytes() + repr((type(latent).__name__, params)).encode()
        ).hexdigest()
        if key in self._fitted:
            self.hits += 1
        else:
            self._fitted[key] = clone(latent).fit(np.asarray(cubes)[index])
            self.fits += 1
        return self._fitted[key]


class AppendLatent(BaseEstimator, TransformerMixin):
    """Fit a latent-feature extractor on the fold's training discs; append its columns.

    ``X`` is the feature table with a ``cube_index`` column pointing into ``cubes`` (the disc
    store's cubes). ``latent`` is an unfitted scikit-learn transformer from cubes to latent
    vectors (:class:`disclatent.autoencoder.core.LatentFeatures`); a fresh clone is fitted on the
    training rows only, so no test disc shapes the latent space. With a :class:`LatentCache`
    an extractor already fitted on exactly these training discs is reused.
    """

    def __init__(
        self, cubes=None, latent=None, prefix: str = "latent_", cache: LatentCache | None = None
    ):
        self.cubes = cubes
        self.latent = latent
        self.prefix = prefix
        self.cache = cache

    def _cubes(self, X):  # noqa: N803
        return np.asarray(self.cubes)[X["cube_index"].to_numpy(int)]

    def fit(self, X, y=None):  # noqa: N803
        if self.cache is not None:
            self.latent_ = self.cache.fit(self.latent, self.cubes, X["cube_index"].to_numpy(int))
        else:
            self.latent_ = clone(self.latent).fit(self._cubes(X))
        return self

    def transform(self, X):  # noqa: N803
        z = np.asarray(self.latent_.transform(self._cubes(X)), float)
        cols = {f"{self.prefix}{i}": z[:, i] for i in range(z.shape[1])}
        return X.drop(columns=[c for c in cols if c in X]).assign(**cols)


FEATURE_SETS = {
    "latent": "latent",
    "geometric": "geometric",
    "geometric + latent": "geometric + latent",
}


def feature_columns(
    feature_set: str, latent_dim: int, geometric: Sequence[str] = PREDICTION_FEATURES
) -> list[str]:
    """Columns of a feature set: "latent", "geometric" or "geometric + latent"."""
    latent = [f"latent_{i}" for i in range(latent_dim)]
    sets = {
        "latent": latent,
        "geometric": list(geometric),
        "geometric + latent": list(geometric) + latent,
    }
    if feature_set not in sets:
        raise ValueError(f"unknown feature set {feature_set!r}; choose from {list(sets)}")
    return sets[feature_set]


def disc_features(store, gradings, latent: np.ndarray | None = None) -> pd.DataFrame:
    """One row per disc of a :class:`~disclatent.discs.isolation.DiscStore` with its gradings.

    Geometric features are measured on each disc in its original mask (millimetres, no
    resampling: :class:`~disclatent.discs.geometry.GeometryFeatures` with ``space="mask"``);
    ``latent`` (n x k, same row order as the store) adds ``latent_0..``; ``cube_index``
    points back into ``store.cubes``. Gradings are joined on (patient, IVD label); mismatches
    are reported by :func:`disclatent.discs.geometry.join_gradings`.
    """
    from disclatent.discs.geometry import GeometryFeatures, join_gradings

    table = GeometryFeatures(space="mask").transform(store)
    table["cube_index"] = np.arange(len(table))
    for col in ("source", "mask_path"):
        if col in store.table:
            table[col] = store.table[col].to_numpy()
    if latent is not None:
        latent = np.asarray(latent, float)
        if len(latent) != len(table):
            raise ValueError(f"{len(latent)} latent vectors for {len(table)} discs")
        for i in range(latent.shape[1]):
            table[f"latent_{i}"] = latent[:, i]
    return join_gradings(table, gradings, how="inner").reset_index(drop=True)


def make_pipeline(
    columns: Sequence[str],
    class_weighted: bool = False,
    seed: int = 0,
    steps: Sequence[tuple[str, object]] = (),
) -> Pipeline:
    """``[extra steps ->] select columns -> XGBoost``; every step is fitted inside a fold."""
    return Pipeline(
        [
            *steps,
            ("select", ColumnSelector(list(columns))),
            ("xgb", DiscXGBClassifier(class_weighted=class_weighted, random_state=seed)),
        ]
    )


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
        vals = [_metric(metric, y, p[idx]) for p in self.oof]
        return float(np.mean(vals))

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
        """``f1, f1_lo, f1_hi, auc, auc_lo, auc_hi``: patient-bootstrap 95 % CIs."""
        out = {}
        for metric in ("f1", "auc"):
            est, lo, hi = stats.bootstrap_ci(
                lambda i, m=metric: self.pooled(m, i),
                len(self.y),
                n_boot=n_boot,
                seed=seed,
                groups=self.groups,
            )
            out.update({metric: est, f"{metric}_lo": lo, f"{metric}_hi": hi})
        return out


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


def _metric(metric: str, y: np.ndarray, p: np.ndarray) -> float:
    if metric == "auc":
        return auc_score(y, p)
    if metric == "f1":
        return f1_positive(y, p)
    raise ValueError(f"unknown metric {metric!r}")


def fold_splits(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, grouped: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped stratified folds (``grouped=False``: the paper's ungrouped folds)."""
    placeholder = np.zeros(len(y))
    if grouped:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(cv.split(placeholder, y, groups))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(placeholder, y))


def cross_validate(
    estimator: BaseEstimator | Callable[[int], BaseEstimator],
    X: pd.DataFrame,  # noqa: N803
    y: Sequence[int],
    groups: Sequence,
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = 0,
    grouped: bool = True,
    progress: bool = False,
) -> CVResult:
    """Repeated (grouped, stratified) K-fold CV; each fold fits a fresh clone.

    ``estimator`` may be a callable ``fold_seed -> estimator`` for pipelines whose steps need
    a per-fold seed (e.g. an autoencoder trained inside the fold).
    """
    from tqdm.auto import tqdm

    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    oof = np.full((n_repeats, len(y)), np.nan)
    rows = []
    bar = tqdm(total=n_repeats * n_splits, desc="CV folds", disable=not progress)
    for r in range(n_repeats):
        for f, (train, test) in enumerate(fold_splits(y, groups, n_splits, seed + r, grouped)):
            fold_seed = seed + 1000 * r + f
            model = (
                estimator(fold_seed)
                if callable(estimator) and not isinstance(estimator, BaseEstimator)
                else clone(estimator)
            )
            model.fit(X.iloc[train], y[train])
            p = model.predict_proba(X.iloc[test])[:, 1]
            oof[r, test] = p
            rows.append(
                {
                    "repeat": r,
                    "fold": f,
                    "n_train": len(train),
                    "n_test": len(test),
                    "f1": _metric("f1", y[test], p),
                    "auc": _metric("auc", y[test], p),
                    "patients_shared": len(set(groups[train]) & set(groups[test])),
                }
            )
            bar.update()
    bar.close()
    return CVResult(oof=oof, folds=pd.DataFrame(rows), y=y, groups=groups)


def compare(
    a: CVResult, b: CVResult, metric: str = "auc", n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
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


PROTOCOLS = {
    "paper": "folds not grouped by patient; autoencoder fitted once on all discs",
    "grouped": "patient-grouped stratified folds; autoencoder fitted once on all discs",
    "grouped, AE in fold": "patient-grouped stratified folds; autoencoder fitted on the "
    "training folds only",
}


def cv_problem(table: pd.DataFrame, target: str, n_splits: int = 5) -> str | None:
    """Why patient-grouped stratified ``n_splits``-fold CV cannot run on ``table``, or None."""
    if len(table) == 0:
        return "no discs"
    patients = table["patient"].nunique()
    if patients < n_splits:
        return f"{patients} patient(s), fewer than {n_splits} folds"
    counts = table[target].value_counts()
    if len(counts) < 2 or counts.min() < n_splits:
        return f"too few discs of one class ({counts.to_dict()}) for {n_splits} folds"
    return None


def run_experiment(
    table: pd.DataFrame,
    target: str,
    feature_set: str,
    latent_dim: int,
    protocol: str = "grouped",
    class_weighted: bool = False,
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    cubes: np.ndarray | None = None,
    latent_factory: Callable[[int], object] | None = None,
    latent_cache: LatentCache | None = None,
) -> tuple[CVResult, dict]:
    """Cross-validate one (target, feature set, protocol); returns the result and a table row.

    For ``"grouped, AE in fold"`` the latent columns of ``table`` are ignored: an extractor
    from ``latent_factory(fold_seed)`` is fitted on each training fold's ``cubes`` (once per
    fold across calls that share ``latent_cache``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    columns = feature_columns(feature_set, latent_dim)
    y = table[target].to_numpy(int)
    groups = table["patient"].astype(str).to_numpy()
    in_fold = protocol == "grouped, AE in fold" and feature_set != "geometric"
    if in_fold:
        if cubes is None or latent_factory is None:
            raise ValueError("the AE-in-fold protocol needs cubes and a latent_factory")
        X = table.drop(columns=[c for c in table if c.startswith("latent_")])

        def estimator(fold_seed: int) -> Pipeline:
            step = AppendLatent(cubes, latent_factory(fold_seed), cache=latent_cache)
            return make_pipeline(columns, class_weighted, fold_seed, steps=[("latent", step)])
    else:
        X = table

        def estimator(fold_seed: int) -> Pipeline:
            return make_pipeline(columns, class_weighted, fold_seed)

    result = cross_validate(
        estimator, X, y, groups, n_repeats=n_repeats, seed=seed, grouped=protocol != "paper"
    )
    row = {
        "target": target,
        "features": feature_set,
        "protocol": protocol,
        "class_weighted": class_weighted,
        "discs": len(y),
        "patients": len(set(groups)),
        "positive_rate": float(y.mean()),
        "repeats": n_repeats,
        **result.summary(n_boot=n_boot, seed=seed),
    }
    return result, row


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame = published.PREDICTION) -> pd.DataFrame:
    """Our F1/AUC with CIs beside the paper's, one row per (source, target, feature set)."""

    def fmt(m, lo, hi):
        return format_ci(m, lo, hi, digits=2, missing="-")

    rows = []
    for _, r in ours.iterrows():
        p = paper[
            (paper.source == r["source"])
            & (paper.target == r["target"])
            & (paper.features == r["features"])
        ]
        p = p.iloc[0] if len(p) else None
        rows.append(
            {
                "masks": {"gt": "ground truth", "pred": "predicted"}[r["source"]],
                "target": r["target"].replace("_", " "),
                "features": r["features"],
                "F1 (ours)": fmt(r["f1"], r["f1_lo"], r["f1_hi"]),
                "AUC (ours)": fmt(r["auc"], r["auc_lo"], r["auc_hi"]),
                "F1 (paper)": "-" if p is None else fmt(p["f1"], p["f1_lo"], p["f1_hi"]),
                "AUC (paper)": "-" if p is None else fmt(p["auc"], p["auc_lo"], p["auc_hi"]),
            }
        )
    return pd.DataFrame(rows)
