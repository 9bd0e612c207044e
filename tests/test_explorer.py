"""The prediction explorer's computation and widget, and the app's inputs and server command."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import f1_score, roc_auc_score, roc_curve  # noqa: E402

from disclatent.analysis.estimators import BASELINE_SETS, feature_columns  # noqa: E402
from disclatent.analysis.explorer import PredictionExplorer, Setting  # noqa: E402
from disclatent.app import serve  # noqa: E402
from disclatent.paths import BuildPaths, MissingOutputError  # noqa: E402
from disclatent.report import explorers  # noqa: E402


def disc_table(n_patients: int = 30, seed: int = 0) -> pd.DataFrame:
    """Five discs per patient; narrowing follows height (low = narrowed) and level, bulging
    is a coin flip; latent_0 carries height, the other latent numbers are noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for level in range(1, 6):
            height = rng.normal(9 - 0.4 * level, 1.0)
            rows.append(
                {
                    "patient": str(p),
                    "series": f"{p}_t1",
                    "ivd_label": level,
                    "height_mm": height,
                    **{f: rng.normal() for f in feature_columns("geometric", 4)[1:]},
                    "latent_0": -height + rng.normal(0, 0.3),
                    **{f"latent_{j}": rng.normal() for j in (1, 2, 3)},
                    "disc_narrowing": int(height + rng.normal(0, 0.5) < 8.0 - 0.2 * level),
                    "disc_bulging": int(rng.random() < 0.4),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def explorer():
    return PredictionExplorer(disc_table(), latent_dim=4, n_repeats=1, n_boot=100)


def test_baseline_feature_sets_name_their_columns():
    assert feature_columns("level", 4) == ["ivd_label"]
    assert feature_columns("height + level", 4) == ["height_mm", "ivd_label"]
    assert feature_columns("latent + level", 2) == ["latent_0", "latent_1", "ivd_label"]
    assert feature_columns("geometric + level", 4)[-1] == "ivd_label"
    assert set(BASELINE_SETS) == {
        "level",
        "height",
        "height + level",
        "geometric + level",
        "latent + level",
    }


def test_an_informative_feature_set_beats_noise_and_the_numbers_are_the_oof_ones(explorer):
    height = explorer.evaluate(Setting(features="height"))
    noise = explorer.evaluate(Setting(target="disc_bulging", features="height"))
    assert height.auc > 0.8 and 0.3 < noise.auc < 0.7
    assert height.auc_lo < height.auc < height.auc_hi
    y, p = height.result.y, height.probability
    assert height.auc == pytest.approx(roc_auc_score(y, p))  # one repeat: the pooled AUC
    fpr, tpr = height.roc()
    ref_fpr, ref_tpr, _ = roc_curve(y, p)
    np.testing.assert_allclose(fpr, ref_fpr) and np.testing.assert_allclose(tpr, ref_tpr)
    f1, lo, hi = height.f1(0.3)
    assert f1 == pytest.approx(f1_score(y, p >= 0.3)) and lo <= f1 <= hi
    assert height.f1(0.7)[0] == pytest.approx(f1_score(y, p >= 0.7))
    # importances: a share per column; in "latent" the informative number leads
    latent = explorer.evaluate(Setting(features="latent"))
    assert latent.importances.sum() == pytest.approx(1.0)
    assert latent.importances.idxmax() == "latent_0"
    # the settings reach XGBoost: stumps and few trees give another model
    stumps = explorer.evaluate(Setting(features="latent", max_depth=1, n_estimators=10))
    assert not np.allclose(stumps.probability, latent.probability)


def test_settings_are_cached_and_the_threshold_needs_no_refit(explorer):
    s = Setting(features="height + level", class_weighted=True)
    assert not explorer.cached(s)
    first = explorer.evaluate(s)
    assert explorer.cached(s) and explorer.evaluate(s) is first
    assert first.f1(0.5) is first.f1(0.5)  # kept per threshold
    with pytest.raises(KeyError, match="pfirrmann"):
        explorer.evaluate(Setting(target="pfirrmann"))


def test_widget_updates_numbers_and_figure_when_a_control_changes(explorer):
    box = explorers.prediction_explorer(explorer)
    (left, right), numbers, _ = box.children[0].children, box.children[1], box.children[2]
    before = numbers.value
    assert before.startswith("<b>AUC ") and "F1 at 0.50" in before
    features = left.children[1]
    features.value = "level"
    assert numbers.value != before and "cross-validated in" in numbers.value
    threshold = left.children[3]
    threshold.value = 0.3
    assert "F1 at 0.30" in numbers.value and "cached" in numbers.value
    trees = right.children[1]
    trees.value = 50
    assert explorer.cached(Setting(features="level", n_estimators=50))
    fig = explorers.render_evaluation(explorer.evaluate(Setting(features="level")), 0.5)
    assert len(fig.axes) == 2 and fig.axes[1].get_yticklabels()[0].get_text() == "level"


def test_app_inputs_are_checked_before_the_server_starts(tmp_path):
    with pytest.raises(MissingOutputError, match=r"make book PROFILE=quick BUILD=.*first"):
        serve.check_inputs("quick", tmp_path)
    paths = BuildPaths(tmp_path, "quick")
    # a chapter's missing input names the same command, with the build folder
    with pytest.raises(MissingOutputError, match=f"`make book PROFILE=quick BUILD={tmp_path}`"):
        paths.require(tmp_path / "absent.csv", "02_geometry")
    nb_path = serve.write_app_notebook(paths, "")
    nb = nbformat.read(nb_path, as_version=4)
    assert len(nb.cells) == 1 and "build_app(load_inputs(" in nb.cells[0].source
    assert f"build_dir={json.dumps(str(tmp_path))}" in nb.cells[0].source
    cmd = serve.voila_command(nb_path, 9123)
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=9123" in cmd and "--no-browser" in cmd
    assert "--strip_sources=True" in cmd
