"""The prediction model: XGBoost with the paper's settings, in a scikit-learn ``Pipeline``.

(``book/method.md``, *Prediction*.)

* :class:`DiscXGBClassifier` has the published settings (max_depth 3, 200 trees, learning
  rate 0.1), not the library defaults; its class-weighted variant computes the weight from
  the data it is fitted on (the training fold).
* :func:`make_pipeline` puts every fitted step in one ``Pipeline``, so cross-validation fits
  each of them inside the fold; :class:`AppendLatent` is such a step for latent features
  learned inside the fold (with :class:`LatentCache`, one extractor per training fold).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.pipeline import Pipeline

from disclatent import published
from disclatent.conventions import PREDICTION_FEATURES, latent_columns
from disclatent.parallel import round_threads

#: the three feature sets of the paper's tables
FEATURE_SETS = {
    "latent": "latent",
    "geometric": "geometric",
    "geometric + latent": "geometric + latent",
}
#: the column that carries the spinal level into a model: the IVD label, an ordinal
#: (1 = L5/S1, 2 = L4/L5, ..., 5 = L1/L2; :func:`disclatent.data.labels.level_name`)
LEVEL_COLUMN = "ivd_label"
#: trivial and level-aware baselines: prevalence depends strongly on the level, and disc
#: height is the textbook reading of narrowing
BASELINE_SETS = {
    "level": "level",
    "height": "height",
    "height + level": "height + level",
    "geometric + level": "geometric + level",
    "latent + level": "latent + level",
}
#: every set Tables 1 and 2 show, in their order: the paper's three, then the baselines
ALL_FEATURE_SETS = (*FEATURE_SETS, *BASELINE_SETS)


def feature_role(feature_set: str) -> str:
    """``"paper set"`` for one of :data:`FEATURE_SETS`, ``"baseline"`` for one of
    :data:`BASELINE_SETS`; another name is an error."""
    if feature_set in FEATURE_SETS:
        return "paper set"
    if feature_set in BASELINE_SETS:
        return "baseline"
    raise ValueError(f"unknown feature set {feature_set!r}; choose from {ALL_FEATURE_SETS}")


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
        max_depth: int = int(published.XGB_SETTINGS["max_depth"]),
        n_estimators: int = int(published.XGB_SETTINGS["n_estimators"]),
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
        self._planned: dict[str, tuple[object, np.ndarray]] | None = None
        self.fits = 0
        self.hits = 0

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    @staticmethod
    def _key(latent, index: np.ndarray) -> str:
        params = sorted((k, repr(v)) for k, v in latent.get_params(deep=False).items())
        return hashlib.sha256(
            index.tobytes() + repr((type(latent).__name__, params)).encode()
        ).hexdigest()

    def fit(self, latent, cubes: np.ndarray, index: np.ndarray):
        """``latent`` (unfitted) fitted on ``cubes[index]``, trained once per key; while
        :meth:`planning`, the fit is only recorded and a stand-in of zeros returned."""
        index = np.asarray(index, np.int64)
        key = self._key(latent, index)
        if key in self._fitted:
            self.hits += 1
        elif self._planned is not None:
            self._planned.setdefault(key, (latent, index))
            return _ZeroLatent(int(getattr(latent, "latent_dim", 1)))
        else:
            self._fitted[key] = clone(latent).fit(np.asarray(cubes)[index])
            self.fits += 1
        return self._fitted[key]

    @contextlib.contextmanager
    def planning(self) -> Iterator[dict[str, tuple[object, np.ndarray]]]:
        """Record the fits a run asks for (the folds' training discs) instead of training:
        a dry run inside this block yields the plan that :meth:`fit_planned` trains."""
        self._planned = {}
        try:
            yield self._planned
        finally:
            self.plan_ = self._planned
            self._planned = None

    def fit_planned(self, cubes: np.ndarray, workers: int = 1, progress: bool = True) -> int:
        """Train every planned extractor not yet fitted, in rounds of ``workers`` at once in
        fresh processes, the cores shared out within each round (:func:`round_threads`: a
        last round of one model gets every core), with a progress bar; returns how many
        were trained. The models depend only on the plan and ``workers``."""
        plan = {k: v for k, v in getattr(self, "plan_", {}).items() if k not in self._fitted}
        if not plan:
            return 0
        from tqdm.auto import tqdm

        cubes = np.asarray(cubes)
        items = list(plan.items())
        threads = round_threads(len(items), workers, os.cpu_count() or 1)
        bar = tqdm(total=len(plan), desc="fold autoencoders", unit="model", disable=not progress)
        fitted: dict[str, object] = {}
        pool = None
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        with bar, pool or contextlib.nullcontext():
            step = max(1, workers)
            for start in range(0, len(items), step):  # one round at a time
                rnd = slice(start, start + step)
                jobs = zip(items[rnd], threads[rnd], strict=True)
                if pool is None:  # in this process
                    for (k, (lat, idx)), n in jobs:
                        fitted[k] = _fit_latent(lat, cubes[idx], n)
                        bar.update()
                    continue
                futures = {
                    pool.submit(_fit_latent, lat, cubes[idx], n): k for (k, (lat, idx)), n in jobs
                }
                for f in as_completed(futures):
                    fitted[futures[f]] = f.result()
                    bar.update()
        self._fitted.update(fitted)
        self.fits += len(fitted)
        return len(fitted)


def _fit_latent(latent, cubes: np.ndarray, threads: int):
    """Worker of :meth:`LatentCache.fit_planned`: one extractor fitted with ``threads`` torch
    threads. An extractor with a ``cpu_threads`` parameter is given them there: training
    sets its own thread count, and two 2-thread fits on 2 cores ran many times slower
    than two 1-thread ones."""
    import torch

    torch.set_num_threads(threads)
    est = clone(latent)
    if "cpu_threads" in est.get_params(deep=False):
        est.set_params(cpu_threads=threads)
    return est.fit(cubes)


class _ZeroLatent:
    """Stand-in for an extractor while a run is only planned: zeros of its width."""

    def __init__(self, width: int) -> None:
        self.width = width

    def transform(self, X) -> np.ndarray:  # noqa: N803
        return np.zeros((len(X), self.width))


class AppendLatent(BaseEstimator, TransformerMixin):
    """Fit a latent-feature extractor on the fold's training discs; append its columns.

    ``X`` is the feature table with a ``cube_index`` column pointing into ``cubes`` (the disc
    store's cubes). ``latent`` is an unfitted scikit-learn transformer from cubes to latent
    vectors (:class:`disclatent.autoencoder.LatentFeatures`); a fresh clone is fitted on the
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


def feature_columns(
    feature_set: str, latent_dim: int, geometric: Sequence[str] = PREDICTION_FEATURES
) -> list[str]:
    """Columns of a feature set: one of :data:`FEATURE_SETS` ("latent", "geometric",
    "geometric + latent") or :data:`BASELINE_SETS` ("level", "height", "height + level",
    "geometric + level", "latent + level")."""
    latent = latent_columns(latent_dim)
    sets = {
        "latent": latent,
        "geometric": list(geometric),
        "geometric + latent": list(geometric) + latent,
        "level": [LEVEL_COLUMN],
        "height": ["height_mm"],
        "height + level": ["height_mm", LEVEL_COLUMN],
        "geometric + level": [*geometric, LEVEL_COLUMN],
        "latent + level": [*latent, LEVEL_COLUMN],
    }
    if feature_set not in sets:
        raise ValueError(f"unknown feature set {feature_set!r}; choose from {list(sets)}")
    return sets[feature_set]


def make_pipeline(
    columns: Sequence[str],
    class_weighted: bool = False,
    seed: int = 0,
    steps: Sequence[tuple[str, object]] = (),
    xgb: Mapping[str, Any] | None = None,
) -> Pipeline:
    """``[extra steps ->] select columns -> XGBoost``; every step is fitted inside a fold.

    ``xgb`` overrides the paper's XGBoost settings (``max_depth``, ``n_estimators``,
    ``learning_rate``)."""
    model = DiscXGBClassifier(class_weighted=class_weighted, random_state=seed, **(xgb or {}))
    return Pipeline([*steps, ("select", ColumnSelector(list(columns))), ("xgb", model)])
