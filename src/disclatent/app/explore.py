"""The explorers in one page of tabs, read from the outputs of the last ``make book``.

* **Latent explorer**: one slider per latent feature of the autoencoder chapter's k = 4
  model (cohort minimum to maximum); the decoded disc's central slices, measured geometry
  and plausibility (:mod:`disclatent.analysis.plausibility`).
* **Cohort browser**: a series and a level; the mid-sagittal slice with the mask overlay and
  the disc's features.
* **Prediction explorer**: target, feature set, XGBoost settings, class weighting and
  threshold; grouped-CV ROC, AUC and F1 with CIs, feature importances.

Nothing is trained or measured here except what the explorers compute on demand: the model
and tables are those the chapters wrote (:class:`~disclatent.paths.BuildPaths`); a missing
one raises :class:`~disclatent.paths.MissingOutputError` naming the ``make book`` to run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.analysis.explorer import PredictionExplorer
from disclatent.analysis.study import Study, load_study
from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import spider
from disclatent.paths import DEFAULT_BUILD_DIR
from disclatent.report.explorers import prediction_explorer
from disclatent.report.widgets import cohort_browser, latent_explorer

TABS = ("Latent explorer", "Cohort browser", "Prediction explorer")


@dataclass
class AppInputs:
    """What the explorers read: the study (model, discs, geometry) and 04's feature table."""

    study: Study
    features: pd.DataFrame  # one row per ground-truth disc (04_prediction)


def load_inputs(
    profile: str = "default",
    build_dir: str | os.PathLike = DEFAULT_BUILD_DIR,
    data_dir: str | os.PathLike = "",
) -> AppInputs:
    """The outputs of chapters 02-04 of ``profile``'s build (each one required)."""
    study = load_study(profile, data_dir, build_dir)
    path = study.paths.require(study.paths.prediction_features, "04_prediction")
    features = pd.read_csv(path, dtype={"patient": str, "series": str})
    return AppInputs(study, features)


def build_app(inputs: AppInputs):
    """The three explorers as tabs of one ipywidgets ``Tab``."""
    import ipywidgets as W

    study, features = inputs.study, inputs.features
    z = features[study.latent_columns].to_numpy(float)

    def measure_one(cube: np.ndarray) -> dict[str, float]:
        return study.measure_decoded(cube[None]).iloc[0][GEOMETRY_FEATURES].to_dict()

    check = study.plausibility_check()
    latent = latent_explorer(
        z,
        study.model.decode,
        measure_one,
        study.gt.spacing_mm,
        judge=lambda cube: study.judge_decoded(check, cube),
    )
    browser = cohort_browser(
        spider.SpiderFolder(Path(study.root)), features[["series", "level", *GEOMETRY_FEATURES]]
    )
    predict = prediction_explorer(PredictionExplorer(features, study.latent_dim))
    tab = W.Tab(children=[latent, browser, predict])
    for i, title in enumerate(TABS):
        tab.set_title(i, title)
    return tab
