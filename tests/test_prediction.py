import numpy as np
import pandas as pd
import pytest

from disclatent import published
from disclatent.analysis import prediction as pr
from disclatent.conventions import PREDICTION_FEATURES


def cohort(n_patients=60, discs=6, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), discs)
    x1 = rng.normal(size=len(patient))
    logit = signal * 2 * x1 - 0.5
    y = (rng.random(len(patient)) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"height_mm": x1, "noise": rng.normal(size=len(patient))})
    return X, y, patient


def test_classifier_has_the_paper_settings_and_fold_weights():
    clf = pr.DiscXGBClassifier(class_weighted=True)
    assert (clf.max_depth, clf.n_estimators, clf.learning_rate) == (3, 200, 0.1)
    X, y, _ = cohort()
    clf.fit(X.to_numpy(), y)
    assert clf.scale_pos_weight_ == pytest.approx((y == 0).sum() / (y == 1).sum())
    assert clf.model_.get_params()["max_depth"] == 3
    assert pr.DiscXGBClassifier().fit(X.to_numpy(), y).scale_pos_weight_ == 1.0


def test_grouped_folds_never_share_a_patient():
    X, y, groups = cohort()
    res = pr.cross_validate(pr.make_pipeline(["height_mm"]), X, y, groups, n_repeats=2)
    assert (res.folds["patients_shared"] == 0).all()
    assert not np.isnan(res.oof).any()
    ungrouped = pr.cross_validate(
        pr.make_pipeline(["height_mm"]), X, y, groups, n_repeats=1, grouped=False
    )
    assert (ungrouped.folds["patients_shared"] > 0).all()


def test_summary_recovers_a_real_signal_with_a_ci():
    X, y, groups = cohort(signal=1.0)
    s = pr.cross_validate(pr.make_pipeline(["height_mm"]), X, y, groups, n_repeats=2).summary(
        n_boot=200
    )
    assert 0.7 < s["auc"] < 0.95 and s["auc_lo"] < s["auc"] < s["auc_hi"]
    assert 0 < s["f1"] <= 1 and s["f1_lo"] <= s["f1"] <= s["f1_hi"]
    noise = pr.cross_validate(pr.make_pipeline(["noise"]), X, y, groups, n_repeats=2).summary(
        n_boot=200
    )
    assert noise["auc_lo"] < 0.5 + 0.12 and noise["auc"] < s["auc"] - 0.15


def test_ungrouped_folds_leak_a_patient_identity_feature():
    """Labels shared within a patient + a feature that identifies the patient: ungrouped CV
    'predicts' from identity (optimistic), grouped CV sees chance."""
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(50), 6)
    y = np.repeat(rng.integers(0, 2, 50), 6)
    X = pd.DataFrame({"id_like": np.repeat(rng.normal(size=50), 6) + rng.normal(0, 0.01, 300)})
    honest = pr.cross_validate(pr.make_pipeline(["id_like"]), X, y, patients, n_repeats=2)
    leaky = pr.cross_validate(
        pr.make_pipeline(["id_like"]), X, y, patients, n_repeats=2, grouped=False
    )
    assert leaky.pooled("auc") > 0.8
    assert abs(honest.pooled("auc") - 0.5) < 0.15


def test_compare_finds_the_better_feature_set():
    X, y, groups = cohort(signal=1.0, seed=3)
    a = pr.cross_validate(pr.make_pipeline(["noise"]), X, y, groups, n_repeats=2)
    b = pr.cross_validate(pr.make_pipeline(["height_mm", "noise"]), X, y, groups, n_repeats=2)
    c = pr.compare(a, b, n_boot=300)
    assert c["difference"] > 0.2 and c["p_bootstrap"] < 0.01 and c["p_corrected_t"] < 0.01


def test_missing_feature_column_is_named():
    X, y, groups = cohort()
    with pytest.raises(KeyError, match="latent_0"):
        pr.make_pipeline(["latent_0"]).fit(X, y)


def test_paper_table_is_complete():
    t = published.PREDICTION
    assert len(t) == 12
    row = t[(t.source == "gt") & (t.target == "disc_narrowing") & (t.features == "latent")]
    assert row[["f1", "auc"]].values.tolist() == [[0.81, 0.75]]


class _MeanLatent:
    """A stand-in latent extractor: fitted statistic = mean cube of the training rows."""

    def get_params(self, deep=False):
        return {}

    def set_params(self, **kw):
        return self

    def fit(self, cubes):
        self.mean_ = cubes.mean(axis=0)
        self.seen_ = len(cubes)
        return self

    def transform(self, cubes):
        return ((cubes - self.mean_) ** 2).reshape(len(cubes), -1).sum(axis=1, keepdims=True)


def test_append_latent_fits_on_the_training_rows_only():
    rng = np.random.default_rng(0)
    cubes = rng.random((30, 4, 4, 4))
    X = pd.DataFrame({"cube_index": np.arange(30), "height_mm": rng.normal(size=30)})
    step = pr.AppendLatent(cubes, _MeanLatent())
    out = step.fit(X.iloc[:20]).transform(X.iloc[20:])
    assert step.latent_.seen_ == 20
    np.testing.assert_allclose(step.latent_.mean_, cubes[:20].mean(axis=0))
    assert list(out.columns) == ["cube_index", "height_mm", "latent_0"]
    expected = ((cubes[20:] - cubes[:20].mean(axis=0)) ** 2).reshape(10, -1).sum(axis=1)
    np.testing.assert_allclose(out["latent_0"], expected)
    y = (X["height_mm"] > 0).astype(int).to_numpy()
    pipe = pr.make_pipeline(["height_mm", "latent_0"], steps=[("latent", step)])
    assert pipe.fit(X, y).predict_proba(X).shape == (30, 2)


def test_fast_metrics_equal_scikit_learn():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(7)
    for _ in range(20):
        y = rng.integers(0, 2, 80)
        p = np.round(rng.random(80), 1)  # many ties
        assert pr.auc_score(y, p) == pytest.approx(roc_auc_score(y, p))
        assert pr.f1_positive(y, p) == pytest.approx(f1_score(y, p >= 0.5, zero_division=0))
    assert np.isnan(pr.auc_score(np.ones(5), rng.random(5)))
    assert pr.f1_positive(np.zeros(4), np.zeros(4)) == 0.0


def test_ae_in_fold_protocol_refits_the_extractor_per_fold():
    rng = np.random.default_rng(4)
    n = 120
    cubes = rng.random((n, 3, 3, 3))
    X, y, groups = cohort(n_patients=20, discs=6, seed=4)
    X = X.assign(cube_index=np.arange(n), latent_0=999.0)  # stale column must be replaced
    fitted = []

    class Spy(_MeanLatent):
        def fit(self, c):
            fitted.append(len(c))
            return super().fit(c)

    res, row = pr.run_experiment(
        X.assign(patient=groups, disc_narrowing=y),
        "disc_narrowing",
        "latent",
        1,
        "grouped, AE in fold",
        n_repeats=1,
        n_boot=50,
        cubes=cubes,
        latent_factory=lambda seed: Spy(),
    )
    assert len(fitted) == 5 and all(80 <= k <= 110 for k in fitted)  # training folds only
    assert row["protocol"] == "grouped, AE in fold" and 0 <= row["auc"] <= 1
    assert (res.folds["patients_shared"] == 0).all()


def test_latent_cache_trains_each_fold_once_and_changes_no_result():
    rng = np.random.default_rng(5)
    n = 120
    cubes = rng.random((n, 3, 3, 3))
    X, y, groups = cohort(n_patients=20, discs=6, seed=5)
    table = X.assign(cube_index=np.arange(n), patient=groups, disc_narrowing=y)
    for col in PREDICTION_FEATURES:
        if col not in table:
            table[col] = rng.normal(size=n)
    fitted = []

    class Spy(_MeanLatent):
        def fit(self, c):
            fitted.append(len(c))
            return super().fit(c)

    def run(fs, cache):
        return pr.run_experiment(
            table,
            "disc_narrowing",
            fs,
            1,
            "grouped, AE in fold",
            n_repeats=1,
            n_boot=50,
            cubes=cubes,
            latent_factory=lambda seed: Spy(),
            latent_cache=cache,
        )[1]

    plain = [run(fs, None) for fs in ("latent", "geometric + latent")]
    assert len(fitted) == 10
    cache = pr.LatentCache()
    cached = [run(fs, cache) for fs in ("latent", "geometric + latent")]
    assert len(fitted) == 15 and (cache.fits, cache.hits) == (5, 5)  # one AE per fold
    for a, b in zip(plain, cached, strict=True):
        assert (a["auc"], a["f1"]) == (b["auc"], b["f1"])
    # other training discs: a new fit, not a stale hit
    cache.fit(Spy(), cubes, np.arange(10))
    cache.fit(Spy(), cubes, np.arange(10))
    cache.fit(Spy(), cubes, np.arange(11))
    assert (cache.fits, cache.hits) == (7, 6)


def test_cv_problem_explains_infeasible_tables():
    X, y, groups = cohort(n_patients=10, discs=4)
    table = X.assign(patient=groups, disc_narrowing=y)
    assert pr.cv_problem(table, "disc_narrowing") is None
    assert pr.cv_problem(table.iloc[:0], "disc_narrowing") == "no discs"
    assert "fewer than 5 folds" in pr.cv_problem(table[table.patient < 3], "disc_narrowing")
    assert "one class" in pr.cv_problem(table.assign(disc_narrowing=0), "disc_narrowing")
