import numpy as np
import pandas as pd
import pytest

from disclatent import published
from disclatent.analysis import baselines as bl
from disclatent.analysis import leakage as lk
from disclatent.analysis import prediction as pr
from disclatent.conventions import GEOMETRY_FEATURES, PREDICTION_FEATURES
from disclatent.data.spider import GRADING_TARGETS
from disclatent.formatting import format_ci


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
    # every (source, target, feature set) the experiments produce has exactly one paper row
    grid = {(s, tg, fs) for s in ("gt", "pred") for tg in GRADING_TARGETS for fs in pr.FEATURE_SETS}
    assert set(zip(t.source, t.target, t.features, strict=True)) == grid and len(t) == len(grid)
    # where the paper gives an interval, it contains the estimate
    for m in ("f1", "auc"):
        ci = t[t[f"{m}_lo"].notna()]
        assert len(ci) and (ci[f"{m}_lo"] <= ci[m]).all() and (ci[m] <= ci[f"{m}_hi"]).all()
        assert t[f"{m}_lo"].isna().eq(t[f"{m}_hi"].isna()).all()
    ours = pd.DataFrame(
        [
            {"source": "gt", "target": "disc_narrowing", "features": "latent", "f1": 0.5,
             "f1_lo": 0.4, "f1_hi": 0.6, "auc": 0.7, "auc_lo": np.nan, "auc_hi": np.nan},
            {"source": "pred", "target": "disc_narrowing", "features": "latent", "f1": 0.5,
             "f1_lo": 0.4, "f1_hi": 0.6, "auc": np.nan, "auc_lo": np.nan, "auc_hi": np.nan},
        ]
    )  # fmt: skip
    row, pred_row = pr.side_by_side(ours).to_dict("records")
    assert row["AUC (paper)"] == "0.75 (0.71-0.79)" and row["F1 (paper)"] == "0.81 (0.77-0.85)"
    assert (row["masks"], row["target"]) == ("ground truth", "disc narrowing")
    assert (row["F1 (ours)"], row["AUC (ours)"]) == ("0.50 (0.40-0.60)", "0.70")
    assert pred_row["AUC (paper)"] == "0.58" and pred_row["AUC (ours)"] == "-"
    unknown = ours.iloc[:1].assign(target="modic")
    assert pr.side_by_side(unknown).loc[0, "F1 (paper)"] == "-"
    base = pr.side_by_side(ours.iloc[:1].assign(features="height + level")).iloc[0]
    assert (base["role"], base["AUC (paper)"], base["F1 (paper)"]) == (
        "baseline",
        "\u2014",
        "\u2014",
    )
    assert (base["F1 (ours)"], row["role"]) == ("0.50 (0.40-0.60)", "paper set")


def test_literature_table_formats_what_is_reported():
    lit = pr.literature_table(
        pd.DataFrame({"study": ["A", "B"], "target": ["t", "t"], "f1": [0.781, None],
                      "auc": [None, 0.7]})
    )  # fmt: skip
    assert lit[["f1", "auc"]].values.tolist() == [["0.78", "-"], ["-", "0.70"]]


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


# --- the feature table: geometry read, not re-measured --------------------------------------
class _Store:
    def __init__(self, table, cubes=None):
        self.table = table
        self.cubes = np.zeros((len(table), 2, 2, 2)) if cubes is None else cubes


def _store_table():
    return pd.DataFrame(
        {
            "patient": ["1", "1", "2"],
            "series": ["1_t1", "1_t1", "2_t1"],
            "ivd_label": [2, 1, 1],
            "level": ["L4/L5", "L5/S1", "L5/S1"],
            "source": "gt",
            "mask_path": ["a.mha", "a.mha", "b.mha"],
        }
    )


def _geometry_table():
    """Rows in another order than the store's, T2 rows of the same discs, extra columns."""
    keys = [("2_t1", 1), ("1_t1", 1), ("1_t1", 2), ("1_t2", 1), ("1_t2", 2)]
    rows = []
    for n, (series, label) in enumerate(keys):
        rows.append(
            {"series": series, "patient": series[0], "ivd_label": label, "modality": "x",
             **{f: 10.0 * n + i for i, f in enumerate(GEOMETRY_FEATURES)}}
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_store_geometry_joins_on_series_and_label_in_store_order():
    out = pr.store_geometry(_Store(_store_table()), _geometry_table())
    assert list(out.columns) == ["series", "patient", "ivd_label", "level", *GEOMETRY_FEATURES]
    assert out["series"].tolist() == ["1_t1", "1_t1", "2_t1"]
    # 1_t1 disc 2 is geometry row 2, 1_t1 disc 1 row 1, 2_t1 disc 1 row 0 (never the T2 rows)
    assert out["height_mm"].tolist() == [20.0, 10.0, 0.0]
    assert out["volume_mm3"].tolist() == [26.0, 16.0, 6.0]
    with pytest.raises(ValueError, match="2_t1 disc 1"):
        pr.store_geometry(_Store(_store_table()), _geometry_table().iloc[1:])


def test_disc_features_take_geometry_latent_and_gradings():
    gradings = pd.DataFrame(
        {"patient": ["1", "1", "2"], "ivd_label": [1, 2, 1], "disc_narrowing": [0, 1, 1]}
    )
    latent = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    out = pr.disc_features(_Store(_store_table()), gradings, latent, _geometry_table())
    assert out["cube_index"].tolist() == [0, 1, 2]
    assert out["latent_1"].tolist() == [0.2, 0.4, 0.6]
    assert out["height_mm"].tolist() == [20.0, 10.0, 0.0]
    assert out["disc_narrowing"].tolist() == [1, 0, 1]  # joined on (patient, IVD label)
    assert out["mask_path"].tolist() == ["a.mha", "a.mha", "b.mha"]
    with pytest.raises(ValueError, match="2 latent vectors for 3 discs"):
        pr.disc_features(_Store(_store_table()), gradings, latent[:2], _geometry_table())


# --- the chapter's tables ---------------------------------------------------------------
def _graded(n_patients=20, discs=6, seed=0):
    X, y, groups = cohort(n_patients, discs, seed)
    rng = np.random.default_rng(seed + 1)
    table = X.assign(patient=groups.astype(str), disc_narrowing=y)
    table["disc_bulging"] = (table["height_mm"] + rng.normal(0, 1, len(table)) > 0).astype(int)
    for col in PREDICTION_FEATURES:
        if col not in table:
            table[col] = rng.normal(size=len(table))
    table["latent_0"] = table["height_mm"] + rng.normal(0, 0.5, len(table))
    table["ivd_label"] = np.tile(np.arange(1, discs + 1), n_patients)
    return table


def test_feasible_tables_and_counts():
    gt, pred = _graded(), _graded(n_patients=3)
    kept, notes = pr.feasible_tables({"gt": gt, "pred": pred})
    assert list(kept) == ["gt"] and len(notes) == 1
    assert (
        notes[0].startswith("Features from pred masks are left out") and "fewer than 5" in notes[0]
    )
    with pytest.raises(RuntimeError, match="too small"):
        pr.feasible_tables({"gt": pred})
    counts = pr.cohort_counts({"gt": gt, "pred": pred})
    assert counts.index.tolist() == [
        "ground-truth masks (all sites)",
        "predicted masks (test site)",
    ]
    assert counts.loc["ground-truth masks (all sites)", "discs"] == 120
    assert counts["patients"].tolist() == [20, 3]
    assert counts.iloc[0]["narrowing (%)"] == round(100 * gt["disc_narrowing"].mean(), 1)
    assert counts.iloc[1]["bulging (%)"] == round(100 * pred["disc_bulging"].mean(), 1)


def test_small_cohort_notes_name_the_small_tables():
    notes = pr.small_cohort_notes({"gt": _graded(n_patients=20), "pred": _graded(n_patients=4)})
    assert len(notes) == 1 and notes[0].startswith("Only 4 patients behind the `pred` rows")
    assert pr.small_cohort_notes({"gt": _graded(n_patients=4)}, min_patients=4) == []


def test_prediction_grid_is_the_experiments_one_by_one():
    table = _graded()
    settings = dict(n_repeats=1, n_boot=50, seed=3)
    main, results = pr.prediction_grid({"gt": table}, 1, **settings)
    sets = [*pr.FEATURE_SETS, *pr.BASELINE_SETS]  # the paper's three, then the baselines
    assert list(results) == [("gt", t, fs) for t in GRADING_TARGETS for fs in sets]
    assert main["source"].eq("gt").all() and len(main) == 16
    assert main["role"].tolist() == (["paper set"] * 3 + ["baseline"] * 5) * 2
    assert pr.paper_set_rows(main)["features"].tolist() == [*pr.FEATURE_SETS] * 2
    _, level = pr.run_experiment(table, "disc_narrowing", "level", 1, **settings)
    hit = main[(main.target == "disc_narrowing") & (main.features == "level")]
    assert hit.iloc[0][["auc", "f1"]].tolist() == [level["auc"], level["f1"]]
    only, _ = pr.prediction_grid({"gt": table}, 1, **settings, feature_sets=["height"])
    assert only["features"].tolist() == ["height", "height"]
    _, row = pr.run_experiment(table, "disc_bulging", "geometric + latent", 1, **settings)
    hit = main[(main.target == "disc_bulging") & (main.features == "geometric + latent")]
    assert hit.iloc[0][["auc", "f1", "auc_lo"]].tolist() == [row["auc"], row["f1"], row["auc_lo"]]
    paired = pr.paired_comparisons(results, "auc", n_boot=50, seed=3)
    assert paired[["masks", "target"]].values.tolist() == [["gt", t] for t in GRADING_TARGETS]
    direct = pr.compare(
        results[("gt", "disc_narrowing", "geometric")],
        results[("gt", "disc_narrowing", "geometric + latent")],
        n_boot=50,
        seed=3,
    )
    assert paired.iloc[0]["difference"] == direct["difference"]
    assert paired.iloc[0]["p_corrected_t"] == direct["p_corrected_t"]


def test_class_weight_table_pivots_by_hand():
    def rows(weighted, f1, auc):
        return pd.DataFrame(
            {"target": ["t1", "t1", "t2"], "features": ["a", "b", "a"],
             "class_weighted": weighted, "f1": f1, "auc": auc}
        )  # fmt: skip

    table = pr.class_weight_table(
        rows(False, [0.1, 0.2, 0.3], [0.61234, 0.7, 0.8]), rows(True, [0.4, 0.5, 0.6], [0.9] * 3)
    )
    assert list(table.columns) == [
        "auc (unweighted)", "auc (weighted)", "f1 (unweighted)", "f1 (weighted)"
    ]  # fmt: skip
    assert table.loc[("t1", "a")].tolist() == [0.612, 0.9, 0.1, 0.4]
    assert table.loc[("t2", "a")].tolist() == [0.8, 0.9, 0.3, 0.6]


def test_class_weighted_rows_weigh_every_fold():
    rows = pr.class_weighted_rows(_graded(), 1, n_repeats=1, n_boot=20)
    assert rows["class_weighted"].all() and rows["source"].eq("gt").all() and len(rows) == 6


def test_leakage_table_reuses_grouped_rows_and_runs_the_others():
    table = _graded().assign(cube_index=lambda d: np.arange(len(d)))
    settings = dict(n_repeats=1, n_boot=20, seed=0)
    grouped = pd.DataFrame(
        [
            {"source": "gt", "target": t, "features": fs, "protocol": "grouped", "repeats": 9,
             **dict.fromkeys(["f1", "f1_lo", "f1_hi", "auc", "auc_lo", "auc_hi"], 0.5)}
            for t in GRADING_TARGETS for fs in pr.FEATURE_SETS
        ]
    )  # fmt: skip
    fitted = []

    class Spy(_MeanLatent):
        def fit(self, c):
            fitted.append(len(c))
            return super().fit(c)

    cubes = np.random.default_rng(0).random((len(table), 3, 3, 3))
    in_fold = lk.InFold(cubes, lambda seed: Spy(), n_repeats=1)
    out = lk.leakage_table(table, grouped, 1, in_fold=in_fold, **settings)
    assert list(out.columns) == lk.LEAKAGE_COLUMNS
    expected = []
    for t in GRADING_TARGETS:
        for fs in pr.FEATURE_SETS:
            expected += [(t, fs, "paper"), (t, fs, "grouped")]
            if t == "disc_narrowing" and fs != "geometric":
                expected.append((t, fs, "grouped, AE in fold"))
    assert list(out[["target", "features", "protocol"]].itertuples(index=False)) == expected
    assert out.loc[out.protocol == "grouped", "repeats"].eq(9).all()  # reused, not re-run
    _, paper = pr.run_experiment(table, "disc_bulging", "latent", 1, "paper", **settings)
    hit = out[
        (out.protocol == "paper") & (out.target == "disc_bulging") & (out.features == "latent")
    ]
    assert hit.iloc[0]["auc"] == paper["auc"]
    assert len(fitted) == 5 and (in_fold.cache.fits, in_fold.cache.hits) == (5, 5)
    none = lk.leakage_table(table, grouped, 1, **settings)
    assert "grouped, AE in fold" not in set(none.protocol) and len(none) == 12


# --- the study: what chapters 02 and 03 wrote, read back ------------------------------------
def test_load_study_reads_the_earlier_chapters_outputs(phantom_dir, tmp_path):
    import torch

    from disclatent import autoencoder as ae
    from disclatent.analysis.study import load_study
    from disclatent.discs.features import measure_cohort
    from disclatent.discs.store import build_disc_store
    from disclatent.paths import BuildPaths, MissingOutputError
    from disclatent.profiles import get_profile

    cfg = get_profile("quick")
    paths = BuildPaths(tmp_path, "quick")

    def load():
        return load_study("quick", phantom_dir, tmp_path)

    with pytest.raises(MissingOutputError, match="02_geometry"):
        load()
    build_disc_store(
        phantom_dir,
        paths.disc_store("gt"),
        spacing_mm=cfg.disc_spacing_mm,
        size=cfg.disc_cube_size,
        progress=False,
    )
    geometry, _ = measure_cohort(phantom_dir)
    paths.tables.mkdir(parents=True)
    geometry.to_csv(paths.table("geometry_features"), index=False)
    with pytest.raises(MissingOutputError, match="03_autoencoder"):
        load()
    torch.manual_seed(0)
    ae.DiscAE(ae.AEConfig.from_profile(cfg, 4), device="cpu").save(paths.autoencoder(4))

    study = load()
    assert study.build == tmp_path and study.latent_columns == [f"latent_{i}" for i in range(4)]
    assert study.predicted_store() is None  # no segmentation chapter in this build
    table = study.features(study.gt)
    t1 = geometry[geometry.series.str.endswith("_t1")]
    assert len(table) == len(t1) == len(study.gt)  # every phantom disc is graded
    expected = table[["series", "ivd_label"]].merge(t1, on=["series", "ivd_label"], how="left")
    np.testing.assert_array_equal(table[GEOMETRY_FEATURES], expected[GEOMETRY_FEATURES])
    z = study.model.encode(study.gt.cubes)
    np.testing.assert_allclose(table[study.latent_columns], z[table["cube_index"]], rtol=1e-6)
    assert study.fold_autoencoder(7).get_params()["seed"] == 7
    tables, notes = study.feature_tables()
    assert list(tables) == ["gt"] and tables["gt"].equals(table)
    assert notes[-1].startswith(f"No predicted masks in {paths.predicted_masks}")
    decoded = study.model.decode(z[:2])
    measured = study.measure_decoded(decoded)
    assert len(measured) == 2 and set(GEOMETRY_FEATURES) <= set(measured.columns)
    truth = study.phantom_truth()
    assert truth is not None and {"wedge", "bulge_mm"} <= set(truth.columns)


# --- trivial baselines: every feature set against the best one ------------------------------
def _level_cohort(n_patients=40, seed=0, driver="level"):
    """Five discs per patient (IVD labels 1-5); the narrowing grade depends on the level
    only (``driver="level"``: L5/S1 and L4/L5 mostly narrowed, the others mostly not) or
    on ``latent_0`` only (``driver="latent"``); every other feature is noise."""
    rng = np.random.default_rng(seed)
    n = 5 * n_patients
    table = pd.DataFrame({"patient": np.repeat(np.arange(n_patients), 5).astype(str)})
    table["ivd_label"] = np.tile(np.arange(1, 6), n_patients)
    for col in [*PREDICTION_FEATURES, "latent_0"]:
        table[col] = rng.normal(size=n)
    signal = table["ivd_label"] <= 2 if driver == "level" else table["latent_0"] > 0
    table["disc_narrowing"] = (rng.random(n) < np.where(signal, 0.9, 0.1)).astype(int)
    return table


def _baselines(table, n_boot=200):
    settings = dict(targets=["disc_narrowing"], n_repeats=2, n_boot=n_boot, seed=0)
    main, results = pr.prediction_grid({"gt": table}, 1, **settings)
    comparisons = bl.baseline_comparisons(main, results, n_boot=n_boot, seed=0)
    return main, results, comparisons, bl.baseline_table(main, comparisons)


def test_the_reference_baselines_need_no_autoencoder():
    assert bl.REFERENCE_BASELINES == ("level", "height", "height + level", "geometric + level")
    main = pd.DataFrame(
        {"source": "gt", "target": "t", "auc": [0.9, 0.6, 0.7, 0.7],
         "features": ["latent + level", "level", "height + level", "geometric + level"]}
    )  # fmt: skip
    assert bl.best_baselines(main) == {("gt", "t"): "height + level"}  # first of a tie
    assert bl.best_baselines(main, candidates=pr.BASELINE_SETS) == {("gt", "t"): "latent + level"}


def test_a_level_driven_grade_is_predicted_by_the_level_not_by_noise():
    main, results, comparisons, table = _baselines(_level_cohort())
    auc = table.set_index("features")["auc"]
    assert auc["level"] > 0.8 and abs(auc["latent"] - 0.5) < 0.1 and abs(auc["height"] - 0.5) < 0.1
    best = table["best_baseline"].iloc[0]
    assert best in {"level", "height + level", "geometric + level"} and auc[best] > 0.8
    latent = table[table.features == "latent"].iloc[0]
    assert latent["delta_auc"] == pytest.approx(latent["auc"] - auc[best], abs=1e-9)
    assert latent["delta_auc_hi"] < -0.2 and latent["p_bootstrap"] < 0.01
    assert latent["p_corrected_t"] < 0.01
    direct = pr.compare(
        results[("gt", "disc_narrowing", best)],
        results[("gt", "disc_narrowing", "latent")],
        n_boot=200,
        seed=0,
    )
    assert latent["delta_auc_lo"] == direct["diff_lo"]
    assert latent["p_corrected_t"] == direct["p_corrected_t"]
    # the best baseline is not compared with itself; every other set is
    own = table[table.features == best].iloc[0]
    assert own[bl.DELTA_COLUMNS].isna().all() and own["role"] == "baseline"
    assert len(comparisons) == 7 and best not in set(comparisons.features)
    text = bl.baseline_verdict(table, targets=["disc_narrowing"])
    assert f"the best baseline is {best}" in text
    assert "latent, AUC" in text and "is worse than it" in text and "beats" not in text


def test_a_latent_driven_grade_beats_every_baseline_and_the_table_is_complete():
    main, _, _, table = _baselines(_level_cohort(seed=1, driver="latent"))
    assert list(table.columns[:10]) == [
        "source", "target", "features", "role",
        "auc", "auc_lo", "auc_hi", "f1", "f1_lo", "f1_hi",
    ]  # fmt: skip
    assert list(table.columns) == bl.BASELINE_COLUMNS and len(table) == len(main) == 8
    assert not table.duplicated(["source", "target", "features"]).any()
    assert table["role"].tolist() == ["paper set"] * 3 + ["baseline"] * 5
    rows = table.set_index("features")
    assert rows.loc["latent", "auc"] > 0.8 and rows.loc["latent", "delta_auc_lo"] > 0.2
    assert rows.loc["geometric + latent", "delta_auc_lo"] > 0
    assert rows.loc["latent", "p_bootstrap"] < 0.01 and rows.loc["latent", "p_corrected_t"] < 0.01
    assert rows["best_baseline"].iloc[0] in bl.REFERENCE_BASELINES
    assert rows.loc[rows["best_baseline"].iloc[0], "delta_auc"] != rows.loc["latent", "delta_auc"]
    text = bl.baseline_verdict(table, targets=["disc_narrowing"])
    assert text.startswith("From ground-truth masks. Narrowing: the best baseline is")
    assert text.count("beats it") == 2 and "worse" not in text
    assert f"latent, AUC {format_ci(*rows.loc['latent', ['auc', 'auc_lo', 'auc_hi']])}" in text
    assert bl.baseline_verdict(table, source="pred") == (
        "No baseline comparison for the predicted masks."
    )


def test_verdict_words_follow_the_interval_of_the_difference():
    assert bl.difference_word(0.01, 0.2) == "beats"
    assert bl.difference_word(-0.3, -0.02) == "is worse than"
    assert bl.difference_word(-0.05, 0.1) == "is no better than"
    assert bl.difference_word(np.nan, np.nan) == "is no better than"
    assert bl.format_difference(-0.1, -0.2, np.nan) == "-0.100"
    assert (bl.format_p(0.0004), bl.format_p(0.0312), bl.format_p(np.nan)) == (
        "p < 0.001", "p = 0.031", "p n/a"
    )  # fmt: skip
    row = {"source": "gt", "target": "disc_bulging", "role": "paper set", "f1": 0.5,
           "f1_lo": 0.4, "f1_hi": 0.6, "best_baseline": "level", "p_corrected_t": 0.2}  # fmt: skip
    table = pd.DataFrame(
        [
            {**row, "features": "level", "role": "baseline", "auc": 0.7, "auc_lo": 0.6,
             "auc_hi": 0.8, **dict.fromkeys(bl.DELTA_COLUMNS, np.nan)},
            {**row, "features": "latent", "auc": 0.72, "auc_lo": 0.62, "auc_hi": 0.81,
             "delta_auc": 0.02, "delta_auc_lo": -0.03, "delta_auc_hi": 0.07, "p_bootstrap": 0.4},
        ]
    )  # fmt: skip
    text = bl.baseline_verdict(table, targets=["disc_bulging"], features=["latent"])
    assert text == (
        "From ground-truth masks. Bulging: the best baseline is level, AUC 0.70 (0.60-0.80). "
        "Against it, latent, AUC 0.72 (0.62-0.81), is no better than it (difference "
        "+0.020 (95 % CI -0.030 to +0.070); p = 0.400 by the patient bootstrap, p = 0.200 by the "
        "corrected t-test)."
    )


def test_fold_extractors_planned_then_trained_together_give_the_same_table():
    """InFold(workers=2): a dry run plans the folds, the five fold extractors train in two
    processes, and the table is the one the serial protocol gives."""
    table = _graded().assign(cube_index=lambda d: np.arange(len(d)))
    settings = dict(n_repeats=1, n_boot=20, seed=0)
    grouped = pd.DataFrame(
        [
            {"source": "gt", "target": t, "features": fs, "protocol": "grouped", "repeats": 9,
             **dict.fromkeys(["f1", "f1_lo", "f1_hi", "auc", "auc_lo", "auc_hi"], 0.5)}
            for t in GRADING_TARGETS for fs in pr.FEATURE_SETS
        ]
    )  # fmt: skip
    cubes = np.random.default_rng(0).random((len(table), 3, 3, 3))
    serial = lk.InFold(cubes, lambda seed: _MeanLatent(), n_repeats=1)
    together = lk.InFold(cubes, lambda seed: _MeanLatent(), n_repeats=1, workers=2)
    a = lk.leakage_table(table, grouped, 1, in_fold=serial, **settings)
    b = lk.leakage_table(table, grouped, 1, in_fold=together, **settings)
    pd.testing.assert_frame_equal(a, b)
    assert len(together.cache.plan_) == 5
    assert (together.cache.fits, together.cache.hits) == (5, 10)  # planned once, all reused
    three = lk.InFold(cubes, lambda seed: _MeanLatent(), n_repeats=1, workers=2, max_folds=3)
    c = lk.leakage_table(table, grouped, 1, in_fold=three, **settings)
    assert len(three.cache.plan_) == 3  # three fold extractors, not five
    in_fold = c.protocol == "grouped, AE in fold"
    paper = c.protocol == "paper"
    assert (c.discs[in_fold] < len(table)).all() and (c.discs[paper] == len(table)).all()


def test_fold_autoencoders_train_with_the_threads_they_are_given(monkeypatch):
    """Each fold process trains with its share of the cores: the default profile's 2 threads
    in each of 2 processes on 2 cores made the AE-in-fold protocol many times slower."""
    import types

    import torch

    from disclatent.analysis import estimators
    from disclatent.autoencoder import features

    seen = {}

    def fake_fit(cubes, cfg, **kw):
        seen["config"], seen["torch"] = cfg.cpu_threads, torch.get_num_threads()
        return types.SimpleNamespace(config=cfg)

    monkeypatch.setattr(features.training, "fit", fake_fit)
    before = torch.get_num_threads()
    try:
        latent = features.LatentFeatures(profile="default")
        estimators._fit_latent(latent, np.zeros((2, 32, 32, 32), np.uint8), 1)
    finally:
        torch.set_num_threads(before)
    assert seen == {"config": 1, "torch": 1}
    assert latent.cpu_threads is None  # the planned extractor itself is left as it was


def test_round_threads_give_a_last_lone_job_every_core():
    from disclatent.parallel import round_threads

    assert round_threads(5, 2, 2) == [1, 1, 1, 1, 2]
    assert round_threads(3, 2, 2) == [1, 1, 2]
    assert round_threads(4, 2, 2) == [1, 1, 1, 1]
    assert round_threads(2, 1, 4) == [4, 4]  # serial: every core
    assert round_threads(3, 4, 2) == [1, 1, 1]  # never below one thread
    assert round_threads(0, 2, 2) == []


def test_cross_validate_can_run_only_the_first_folds_of_each_split():
    from sklearn.linear_model import LogisticRegression

    from disclatent.analysis.validation import cross_validate, fold_splits

    table = _graded()
    y, groups = table["disc_narrowing"].to_numpy(int), table["patient"].astype(str).to_numpy()
    X = table[["height_mm", "latent_0"]]  # noqa: N806
    full = cross_validate(LogisticRegression(), X, y, groups, n_repeats=1, seed=3)
    part = cross_validate(LogisticRegression(), X, y, groups, n_repeats=1, seed=3, max_folds=3)
    splits = fold_splits(y, groups, 5, 3)
    tested = np.sort(np.concatenate([test for _, test in splits[:3]]))
    assert len(part.folds) == 3 and len(full.folds) == 5
    assert (part.folds["n_train"] == full.folds["n_train"][:3]).all()  # 4/5 of the discs each
    assert len(part.y) == len(tested) < len(y)
    np.testing.assert_array_equal(part.y, y[tested])
    np.testing.assert_array_equal(part.oof, full.oof[:, tested])  # the same fits, fewer of them
    with pytest.raises(ValueError, match="max_folds"):
        cross_validate(LogisticRegression(), X, y, groups, n_repeats=1, max_folds=6)


def test_in_fold_protocol_follows_the_profile():
    """The quick profile skips the AE-in-fold protocol; default runs 3 of 5 folds with the
    profile's workers, paper all five, and the summary says how many models that trains."""
    from disclatent.profiles import get_profile

    cubes = np.zeros((4, 2, 2, 2), np.uint8)
    assert lk.InFold.from_profile(get_profile("quick"), cubes, lambda s: None) is None
    default = lk.InFold.from_profile(get_profile("default"), cubes, lambda s: None)
    assert (default.max_folds, default.n_repeats, default.workers) == (3, 1, 2)
    assert default.summary().startswith("AE in fold: 3 of 5 folds, 1 repeat(s), 3 autoencoders")
    paper = lk.InFold.from_profile(get_profile("paper"), cubes, lambda s: None)
    assert "5 of 5 folds, 2 repeat(s), 10 autoencoders" in paper.summary()
