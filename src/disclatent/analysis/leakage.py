"""The same prediction experiment under three protocols: what leaks when folds ignore
patients, and when the autoencoder has seen the test discs (``book/method.md``,
*Prediction*, "Leakage").

* :data:`PROTOCOLS` (defined with the experiments, re-exported here): the paper's ungrouped folds, patient-grouped folds with the
  autoencoder fitted once outside them, and an autoencoder trained on each training fold;
* :class:`InFold`: the AE-in-fold protocol's inputs (cubes, a factory of unfitted latent
  extractors, repeats, folds run, workers), built from a profile with :meth:`InFold.from_profile`;
* :func:`leakage_table`: one row per (target, feature set, protocol).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from disclatent.analysis.estimators import FEATURE_SETS, LatentCache
from disclatent.analysis.prediction import PROTOCOLS, run_experiment
from disclatent.data.spider import GRADING_TARGETS
from disclatent.profiles import Profile

__all__ = ["LEAKAGE_COLUMNS", "PROTOCOLS", "InFold", "leakage_table"]


@dataclass
class InFold:
    """The AE-in-fold protocol: the discs' ``cubes`` (rows as ``cube_index``), a factory
    ``fold_seed -> unfitted latent extractor``, its repeats and the targets it runs for."""

    cubes: np.ndarray
    latent_factory: Callable[[int], object]
    n_repeats: int = 1
    targets: tuple[str, ...] = ("disc_narrowing",)
    cache: LatentCache = field(default_factory=LatentCache)
    # fold autoencoders trained at once (processes, cores // workers threads each); > 1
    # plans the folds with a dry run first (LatentCache.planning), then trains them together
    workers: int = 1
    # folds run of each repeat's 5-fold split (None: all five); each still trains on 4/5 of
    # the discs, only the discs of the folds run are tested (validation.cross_validate)
    max_folds: int | None = None

    @classmethod
    def from_profile(
        cls, profile: Profile, cubes: np.ndarray, latent_factory: Callable[[int], object]
    ) -> InFold | None:
        """The protocol as ``profile`` runs it (repeats, folds, workers); ``None`` where the
        profile skips it (``quick``: it trains one autoencoder per fold)."""
        if not profile.pred_ae_in_fold:
            return None
        return cls(
            cubes,
            latent_factory,
            profile.pred_fold_repeats,
            workers=profile.ae_workers,
            max_folds=profile.pred_fold_max_folds,
        )

    def summary(self) -> str:
        """One sentence: how many folds, repeats and autoencoders this protocol trains."""
        folds = self.max_folds or 5
        return (
            f"AE in fold: {folds} of 5 folds, {self.n_repeats} repeat(s), "
            f"{folds * self.n_repeats} autoencoders (shared by the feature sets with latent "
            "columns), for " + ", ".join(t.replace("_", " ") for t in self.targets) + "."
        )


LEAKAGE_COLUMNS = [
    "target",
    "features",
    "protocol",
    "repeats",
    "discs",
    *("f1", "f1_lo", "f1_hi", "auc", "auc_lo", "auc_hi"),
]


def leakage_table(
    table: pd.DataFrame,
    grouped: pd.DataFrame,
    latent_dim: int,
    targets: Sequence[str] = GRADING_TARGETS,
    in_fold: InFold | None = None,
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The same experiments under the three :data:`PROTOCOLS`.

    ``grouped`` holds the grouped rows already run (:func:`prediction_grid`'s ground-truth
    rows, reused, not re-run); the paper's ungrouped folds are run here, and with ``in_fold``
    an autoencoder trained on each training fold, for the feature sets with latent columns
    and ``in_fold.targets`` (one autoencoder per fold is costly).
    """

    def in_fold_row(target: str, fs: str) -> dict:
        assert in_fold is not None
        return run_experiment(
            table,
            target,
            fs,
            latent_dim,
            "grouped, AE in fold",
            n_repeats=in_fold.n_repeats,
            n_boot=n_boot,
            seed=seed,
            cubes=in_fold.cubes,
            latent_factory=in_fold.latent_factory,
            latent_cache=in_fold.cache,
            max_folds=in_fold.max_folds,
        )[1]

    wanted = [
        (t, fs)
        for t in targets
        for fs in FEATURE_SETS
        if in_fold is not None and fs != "geometric" and t in in_fold.targets
    ]
    if in_fold is not None and in_fold.workers > 1 and wanted:
        with in_fold.cache.planning():  # which discs each fold trains on, nothing trained
            for target, fs in wanted:
                in_fold_row(target, fs)
        in_fold.cache.fit_planned(in_fold.cubes, in_fold.workers)
    rows = []
    for target in targets:
        for fs in FEATURE_SETS:
            _, paper = run_experiment(
                table,
                target,
                fs,
                latent_dim,
                "paper",
                n_repeats=n_repeats,
                n_boot=n_boot,
                seed=seed,
            )
            hit = grouped[(grouped.target == target) & (grouped.features == fs)]
            rows += [paper, hit.iloc[0].to_dict()]
            if (target, fs) in wanted:
                rows.append(in_fold_row(target, fs))
    return pd.DataFrame(rows)[LEAKAGE_COLUMNS]
