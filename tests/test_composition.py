"""The composition chapter's analysis (disclatent.analysis.composition): the ordinal CV of
Pfirrmann grade, the long table, paired differences and truth recovery, on synthetic
discs whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from disclatent.analysis import composition as co


def _table(n_patients=40, per=5, seed=0):
    rng = np.random.default_rng(seed)
    state = rng.uniform(1, 5, n_patients * per)
    grade = np.clip(np.rint(state + 0.3 * rng.normal(size=len(state))), 1, 5).astype(int)
    return pd.DataFrame(
        {
            "patient": np.repeat(np.arange(n_patients), per).astype(str),
            "signal": -state + 0.1 * rng.normal(size=len(state)),
            "noise": rng.normal(size=len(state)),
            "degeneration": state,
            "pfirrmann_grade": grade,
            "disc_narrowing": (state + rng.normal(size=len(state)) > 3).astype(int),
            "disc_bulging": rng.integers(0, 2, len(state)),
        }
    )


def test_ordinal_cv_reads_an_informative_feature_and_not_noise():
    t = _table()
    good = co.ordinal_cv(t, ["signal"], n_repeats=2).summary(n_boot=100)
    bad = co.ordinal_cv(t, ["noise"], n_repeats=2).summary(n_boot=100)
    assert good["qwk"][0] > 0.85 and good["auc_macro"][0] > 0.85
    assert abs(bad["qwk"][0]) < 0.25 and abs(bad["auc_macro"][0] - 0.5) < 0.12
    v, lo, hi = good["qwk"]
    assert lo <= v <= hi and hi - lo < 0.2
    res = co.ordinal_cv(t, ["signal"], n_repeats=1)
    np.testing.assert_allclose(res.proba.sum(axis=2), 1.0, atol=1e-5)  # every disc tested


def test_intensity_prediction_table_and_paired_differences():
    t = _table()
    sets = {"signal": ["signal"], "noise": ["noise"]}
    table, results = co.intensity_prediction(t, sets, n_repeats=2, n_boot=100)
    assert list(table.columns) == co.TABLE_COLUMNS
    assert set(table.target) == {"pfirrmann", "pfirrmann_4plus", "disc_narrowing", "disc_bulging"}
    assert set(table[table.target == "pfirrmann"].metric) == {"qwk", "auc_macro"}
    assert set(table[table.target == "disc_narrowing"].metric) == {"auc", "f1"}
    auc = table.set_index(["target", "features", "metric"])["value"]
    assert auc["pfirrmann_4plus", "signal", "auc"] > 0.9
    assert auc["disc_bulging", "signal", "auc"] < 0.7  # bulging is unrelated here
    diffs = co.paired_differences(results, [("noise", "signal")], n_boot=200)
    assert len(diffs) == 4
    d = diffs.set_index("target")
    assert d.loc["pfirrmann", "metric"] == "qwk" and d.loc["pfirrmann", "difference"] > 0.6
    assert d.loc["pfirrmann_4plus", "p"] < 0.01 and d.loc["pfirrmann_4plus", "lo"] > 0


def test_truth_recovery_and_its_negative_control():
    t = _table()
    rng = np.random.default_rng(1)
    t["shuffled"] = rng.permutation(t["signal"].to_numpy())
    out = co.truth_recovery(t, {"real": ["signal"], "shuffled": ["shuffled"]}, ["degeneration"])
    r = out.set_index("family")["r"]
    assert r["real"] > 0.95
    assert abs(r["shuffled"]) < 0.2


def test_unknown_ordinal_metric_is_named():
    res = co.ordinal_cv(_table(), ["signal"], n_repeats=1)
    with pytest.raises(ValueError, match="unknown ordinal metric"):
        res.pooled("accuracy")


def test_a_target_too_rare_for_the_folds_is_skipped_with_a_warning():
    t = _table()
    t["disc_bulging"] = 0
    t.loc[:2, "disc_bulging"] = 1  # three positives, five folds
    with pytest.warns(UserWarning, match="disc_bulging not cross-validated: too few"):
        table, _ = co.intensity_prediction(
            t, {"signal": ["signal"]}, targets=("disc_bulging", "disc_narrowing"), n_repeats=1
        )
    assert set(table.target) == {"disc_narrowing"}


def test_fast_kappa_and_macro_auc_equal_scikit_learn():
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    rng = np.random.default_rng(3)
    classes = np.arange(1, 6)
    for _ in range(20):
        y = rng.integers(1, 6, 60)
        pred = np.clip(y + rng.integers(-2, 3, 60), 1, 5)
        assert co.quadratic_kappa(y, pred) == pytest.approx(
            cohen_kappa_score(y, pred, weights="quadratic")
        )
        p = rng.dirichlet(np.ones(5), 60)
        assert co.macro_ovr_auc(y, p, classes) == pytest.approx(
            roc_auc_score(y, p, multi_class="ovr", average="macro", labels=classes)
        )
    y = rng.integers(2, 5, 40)  # classes 1 and 5 absent: renormalised over those present
    p = rng.dirichlet(np.ones(5), 40)
    q = p[:, 1:4] / p[:, 1:4].sum(axis=1, keepdims=True)
    assert co.macro_ovr_auc(y, p, classes) == pytest.approx(
        roc_auc_score(y, q, multi_class="ovr", average="macro", labels=[2, 3, 4])
    )
    assert np.isnan(co.quadratic_kappa(np.ones(5, int), np.arange(5)))
