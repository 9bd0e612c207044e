"""What the prediction explorer computes: one cross-validated XGBoost per setting, cached.

(``book/method.md``, *Prediction*; the live app is :mod:`disclatent.app`.) A reader picks a
target, a feature set (the paper's three or the level-aware baselines), XGBoost's depth,
number of trees and learning rate, class weighting and a decision threshold.
:class:`PredictionExplorer` answers with an :class:`Evaluation`: the patient-grouped CV's
out-of-fold probabilities, the ROC curve, AUC with its patient-bootstrap 95 % CI, F1 at the
threshold with its CI, and the feature importances (gain) of the model fitted on all discs.
Evaluations are cached per setting (the threshold needs no refit), so a setting seen before
answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from disclatent import published, stats
from disclatent.analysis.estimators import feature_columns, make_pipeline
from disclatent.analysis.validation import CVResult, cross_validate, f1_positive

#: the XGBoost settings a reader may change, with the paper's values as defaults
PAPER_XGB = {k: published.XGB_SETTINGS[k] for k in ("max_depth", "n_estimators", "learning_rate")}


@dataclass(frozen=True)
class Setting:
    """One choice of the prediction explorer (everything but the decision threshold)."""

    target: str = "disc_narrowing"
    features: str = "geometric + latent"
    max_depth: int = int(PAPER_XGB["max_depth"])
    n_estimators: int = int(PAPER_XGB["n_estimators"])
    learning_rate: float = float(PAPER_XGB["learning_rate"])
    class_weighted: bool = False

    def xgb(self) -> dict[str, float | int]:
        return {
            "max_depth": self.max_depth,
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
        }


@dataclass
class Evaluation:
    """A cross-validated setting: out-of-fold probabilities and what they give."""

    setting: Setting
    result: CVResult
    columns: list[str]
    importances: pd.Series  # gain of each column, model fitted on all discs; sums to 1
    auc: float
    auc_lo: float
    auc_hi: float
    n_boot: int
    seed: int
    _f1: dict[float, tuple[float, float, float]] = field(default_factory=dict, repr=False)

    @property
    def probability(self) -> np.ndarray:
        """Each disc's out-of-fold probability, averaged over the CV repeats."""
        return np.nanmean(self.result.oof, axis=0)

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        """False- and true-positive rates of :attr:`probability` (sklearn's ``roc_curve``)."""
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(self.result.y, self.probability)
        return fpr, tpr

    def f1(self, threshold: float) -> tuple[float, float, float]:
        """F1 of the positive class at ``threshold`` and its patient-bootstrap 95 % CI."""
        key = round(float(threshold), 4)
        if key not in self._f1:
            y, p = self.result.y, self.probability

            def statistic(i: np.ndarray) -> float:
                return f1_positive(y[i], p[i], key) if len(np.unique(y[i])) == 2 else np.nan

            self._f1[key] = stats.bootstrap_ci(
                statistic, len(y), n_boot=self.n_boot, seed=self.seed, groups=self.result.groups
            )
        return self._f1[key]


class PredictionExplorer:
    """Cross-validates settings on one feature table (a row per disc: features, gradings,
    ``patient``), caching each :class:`Evaluation`.

    ``n_repeats`` repeats of patient-grouped stratified 5-fold CV; ``n_boot`` patient-bootstrap
    resamples per interval. The defaults are small so that a new setting answers in about a
    second on a laptop; the prediction chapter's tables use the profile's repeats.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        latent_dim: int,
        n_repeats: int = 1,
        n_boot: int = 200,
        seed: int = 0,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.latent_dim = latent_dim
        self.n_repeats, self.n_boot, self.seed = n_repeats, n_boot, seed
        self._cache: dict[Setting, Evaluation] = {}

    def evaluate(self, setting: Setting) -> Evaluation:
        """The (cached) evaluation of ``setting``."""
        if setting not in self._cache:
            self._cache[setting] = self._evaluate(setting)
        return self._cache[setting]

    def cached(self, setting: Setting) -> bool:
        return setting in self._cache

    def _evaluate(self, s: Setting) -> Evaluation:
        if s.target not in self.table:
            raise KeyError(f"no grading column {s.target!r} in the feature table")
        rows = self.table[self.table[s.target].notna()]
        columns = feature_columns(s.features, self.latent_dim)
        missing = [c for c in columns if c not in rows]
        if missing:
            raise KeyError(f"feature set {s.features!r} needs columns {missing}")
        y = rows[s.target].to_numpy(int)
        groups = rows["patient"].astype(str).to_numpy()

        def estimator(fold_seed: int):
            return make_pipeline(columns, s.class_weighted, fold_seed, xgb=s.xgb())

        result = cross_validate(
            estimator, rows, y, groups, n_repeats=self.n_repeats, seed=self.seed
        )
        summary = result.summary(n_boot=self.n_boot, seed=self.seed)
        full = make_pipeline(columns, s.class_weighted, self.seed, xgb=s.xgb()).fit(rows, y)
        gain = full.named_steps["xgb"].model_.feature_importances_
        importances = pd.Series(np.asarray(gain, float), index=columns, name="gain")
        return Evaluation(
            s,
            result,
            columns,
            importances,
            summary["auc"],
            summary["auc_lo"],
            summary["auc_hi"],
            self.n_boot,
            self.seed,
        )
