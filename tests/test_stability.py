"""Stability of latent spaces across retraining, plausibility of decoded discs, and the
models trained side by side for them."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ortho_group

from conftest import DECODER_FIRST, ellipsoids
from disclatent import autoencoder as A
from disclatent.analysis import plausibility as pl
from disclatent.analysis import robustness as rb
from disclatent.analysis import stability as st
from disclatent.discs.geometry import measure_cubes

RNG = np.random.default_rng(0)


def _codes(n=200, k=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, k)) * [3.0, 2.0, 1.0, 0.5]


# --- similarity of latent spaces --------------------------------------------------------------
def test_cka_and_procrustes_are_one_for_a_rotated_scaled_copy_and_low_for_unrelated_codes():
    x = _codes()
    q = ortho_group.rvs(4, random_state=1)
    y = 2.5 * x @ q + 7.0  # rotated, scaled and shifted: the same latent space
    assert st.linear_cka(x, y) == pytest.approx(1.0, abs=1e-12)
    assert st.procrustes_r2(x, y) == pytest.approx(1.0, abs=1e-12)
    unrelated = _codes(seed=5)
    assert st.linear_cka(x, unrelated) < 0.1 and st.procrustes_r2(x, unrelated) < 0.2
    # a non-uniform rescaling keeps the information but not the geometry: CKA < 1
    stretched = x * [1.0, 1.0, 1.0, 20.0]
    assert st.linear_cka(x, stretched) < 0.6


def test_cka_by_hand_and_symmetry():
    x = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    y = np.array([[1.0], [0], [-1], [0]])  # only the first axis of x
    # centred already: ||y'x||^2 = 4, ||x'x|| = sqrt(8), ||y'y|| = 2 -> 4 / (2 sqrt 8)
    assert st.linear_cka(x, y) == pytest.approx(4 / (2 * np.sqrt(8)))
    a, b = _codes(seed=2), _codes(seed=2) + _codes(seed=3) * 0.3
    assert st.linear_cka(a, b) == pytest.approx(st.linear_cka(b, a))
    assert st.procrustes_r2(a, b) == pytest.approx(st.procrustes_r2(b, a))
    with pytest.raises(ValueError, match="different discs"):
        st.linear_cka(a, b[:-1])


def test_pairwise_similarity_has_every_pair_once():
    codes = {s: _codes(seed=s) for s in (0, 1, 2)}
    codes[3] = codes[0] @ ortho_group.rvs(4, random_state=2)
    table = st.pairwise_similarity(codes)
    assert list(table.columns) == ["seed_a", "seed_b", "cka", "procrustes_r2"]
    assert len(table) == 6 and (table.seed_a < table.seed_b).all()
    same = table[(table.seed_a == 0) & (table.seed_b == 3)].iloc[0]
    assert same.cka == pytest.approx(1.0) and same.procrustes_r2 == pytest.approx(1.0)
    assert (table.drop(same.name).cka < 0.2).all()


def test_canonical_correlations_are_invariant_to_the_latent_basis():
    n = 300
    g = RNG.normal(size=(n, 3))
    lat = np.column_stack([g[:, 0] + 0.1 * RNG.normal(size=n), RNG.normal(size=(n, 3))])
    r = st.canonical_correlations(lat, g)
    assert r.shape == (3,) and r[0] > 0.99 and r[1] < 0.3  # one shared direction
    mixed = lat @ RNG.normal(size=(4, 4))  # any invertible map of the latent side
    np.testing.assert_allclose(st.canonical_correlations(mixed, g), r, atol=1e-8)
    geo = pd.DataFrame(g, columns=["a", "b", "c"])
    table = st.cca_table({0: lat, 1: mixed}, geo, n_perm=50)
    assert table.groupby("seed").size().tolist() == [3, 3]
    first = table[table.component == 1]
    assert first.above_null.all() and (first.null_r_95 < 0.4).all()
    # unrelated codes: the null explains their canonical correlations
    noise = st.cca_table({0: np.random.default_rng(11).normal(size=(n, 4))}, geo, n_perm=100)
    assert not noise.above_null.all() and (noise.null_r_95 > 0.05).all()
    np.testing.assert_allclose(
        table[table.seed == 0].canonical_r.to_numpy(), table[table.seed == 1].canonical_r
    )


def test_correlations_by_seed_see_a_relabelled_axis_and_alignment_undoes_it():
    n = 400
    g = pd.DataFrame({"ap_width_mm": RNG.normal(size=n), "height_mm": RNG.normal(size=n)})
    base = np.column_stack([g.ap_width_mm, g.height_mm, RNG.normal(size=(n, 2))])
    codes = {0: base, 1: base[:, [1, 0, 2, 3]] * [1, -1, 1, 1]}  # swapped, one sign flipped
    by_seed = st.correlations_by_seed(codes, g)
    r = by_seed.set_index(["seed", "latent", "feature"])["r"]
    assert r[(0, "latent_0", "ap_width_mm")] == pytest.approx(1.0)
    assert r[(1, "latent_0", "ap_width_mm")] == pytest.approx(0.0, abs=0.15)
    assert r[(1, "latent_1", "ap_width_mm")] == pytest.approx(-1.0)
    aligned = by_seed.set_index(["seed", "latent", "feature"])["r_aligned"]
    assert aligned[(1, "latent_0", "ap_width_mm")] == pytest.approx(1.0, abs=1e-6)
    spread = st.correlation_spread(by_seed).set_index(["latent", "feature"])
    row = spread.loc[("latent_0", "ap_width_mm")]
    assert row.r_reference == pytest.approx(1.0) and row.r_sd > 0.5
    assert (
        row.aligned_r_sd == pytest.approx(0.0, abs=1e-6) and row.holds_share == 0.0
    )  # seed 1 of 1
    top = st.strongest_by_feature(by_seed).set_index(["seed", "feature"])
    assert top.loc[(1, "ap_width_mm"), "latent"] == "latent_1"
    claims = st.paper_claims(by_seed, {0: 0.01, 1: 0.2}, [(0, "ap_width_mm", -0.8)], 0.05)
    held = claims.set_index(["seed", "claim"])["holds"]
    assert not held.iloc[0]  # r = +1 against the paper's -0.80: the wrong sign
    some = "some latent feature ~ ap_width_mm (paper r = -0.80, any sign)"
    assert held[(0, some)] and held[(1, some)]  # but AP width is carried by an axis in both
    assert held[(0, "latent features mutually uncorrelated (paper |r| < 0.05)")]
    assert not held[(1, "latent features mutually uncorrelated (paper |r| < 0.05)")]


# --- plausibility --------------------------------------------------------------------------
def _disc(size=32, shift=0, radius=10, height=3):
    c = np.arange(size) - size / 2
    si, ap, lr = np.meshgrid(c, c, c, indexing="ij")
    return ((ap - shift) ** 2 + lr**2 <= radius**2) & (np.abs(si) <= height)


def test_topology_counts_pieces_and_cavities():
    d = _disc().astype(np.uint8)
    assert pl.topology(d) == (1, 0, 0)
    two = d.copy()
    two[:, 16, :] = 0  # cut through: two halves
    assert pl.topology(two)[0] == 2
    hollow = d.copy()
    hollow[15:18, 14:19, 14:19] = 0  # a closed cavity of 3 x 5 x 5 voxels
    assert pl.topology(hollow) == (1, 75, 0)
    ring = d & ~_disc(radius=4, height=10)  # a hole through the middle: a ring
    assert pl.topology(ring) == (1, 0, 1)
    assert pl.topology(np.zeros_like(d)) == (0, 0, 0)


def test_plausibility_check_uses_the_cohort_range_and_names_the_reasons():
    spacing = (2.0, 1.6, 1.9)
    sizes = [(r, h) for r in (8, 9, 10, 11, 12) for h in (1, 2, 3, 4)]
    cohort = np.stack([_disc(radius=r, height=h) for r, h in sizes]).astype(np.uint8)
    check = pl.PlausibilityCheck(quantiles=(0.0, 1.0)).fit(measure_cubes(cohort, spacing))
    big, hollow = _disc(radius=14).astype(np.uint8), _disc().astype(np.uint8)
    hollow[15:18, 14:19, 14:19] = 0
    two = _disc(radius=10).astype(np.uint8)
    two[:, 16, :] = 0
    judged = check.judge(np.stack([cohort[10], big, hollow, two, 0 * big]), spacing)
    assert judged["plausible"].tolist() == [True, False, False, False, False]
    assert "ap_width_mm out of range" in judged.reason[1] and judged.in_range[0]
    assert judged.reason[2] == "cavity" and judged.reason[4] == "empty"
    assert judged.reason[3].startswith("2 pieces")
    assert pl.verdict_text(judged.iloc[0]) == "plausible"
    assert pl.verdict_text(judged.iloc[2]) == "implausible: cavity"
    with pytest.raises(RuntimeError, match="not fitted"):
        pl.PlausibilityCheck().judge(cohort, spacing)


def test_share_and_cohort_samples():
    value, lo, hi = pl.share([True] * 8 + [False] * 2)
    assert (
        value == 0.8
        and lo == pytest.approx(0.4902, abs=1e-3)
        and hi == pytest.approx(0.9433, abs=1e-3)
    )
    z = _codes(n=500)
    draws = pl.cohort_samples(z, 4000, seed=3)
    np.testing.assert_allclose(draws.std(0), z.std(0), rtol=0.08)
    np.testing.assert_array_equal(draws, pl.cohort_samples(z, 4000, seed=3))


# --- several models, trained side by side ------------------------------------------------------
DF = replace(DECODER_FIRST, max_epochs=2, encoder_epochs=1, cpu_threads=1)


def test_train_many_in_two_processes_matches_one_and_reuses_finished_models(tmp_path):
    cubes = ellipsoids(10)
    train, held = cubes[:8], cubes[8:]
    jobs = A.ensemble.seed_jobs(DF, lambda n: tmp_path / "a" / n, seeds=[1, 2], threads=1)
    assert [j.name for j in jobs] == ["k4-seed1", "k4-seed2"] and jobs[1].config.seed == 2
    serial = A.train_many(train, held, jobs, workers=1, progress=False)
    other = A.ensemble.seed_jobs(DF, lambda n: tmp_path / "b" / n, seeds=[1, 2], threads=1)
    parallel = A.train_many(train, held, other, workers=2, progress=False)
    for name in serial:
        np.testing.assert_array_equal(serial[name].encode(held), parallel[name].encode(held))
        assert serial[name].metrics["heldout_iou"] == parallel[name].metrics["heldout_iou"]
    again = A.train_many(train, held, jobs[:1], workers=1, progress=False)["k4-seed1"]
    # reused, not retrained: a new run would have its own wall time
    assert again.metrics["train_seconds"] == serial["k4-seed1"].metrics["train_seconds"]
    noisy = A.ensemble.seed_jobs(DF, lambda n: tmp_path / n, seeds=[0], code_noise=0.3)
    assert noisy[0].name == "k4-noise-seed0" and noisy[0].config.code_noise == 0.3


def test_a_failing_job_is_named_and_the_others_finish(tmp_path, monkeypatch):
    cubes = ellipsoids(10)
    real = A.ensemble.evaluation.train_or_load

    def flaky(train, config, folder, *args, **kw):
        if str(folder).endswith("bad"):
            raise OSError("disc full")
        return real(train, config, folder, *args, **kw)

    monkeypatch.setattr(A.ensemble.evaluation, "train_or_load", flaky)
    good, bad = A.Job("good", DF, tmp_path / "good"), A.Job("bad", DF, tmp_path / "bad")
    with pytest.raises(A.TrainingFailed, match="bad: OSError: disc full") as err:
        A.train_many(cubes[:8], cubes[8:], [bad, good], workers=1, progress=False)
    assert list(err.value.failures) == ["bad"]
    assert (tmp_path / "good" / "model.safetensors").exists()


def test_robustness_tables_on_trained_models(tmp_path):
    cubes = ellipsoids(16, seed=4)
    train, held = cubes[:12], cubes[12:]
    jobs = A.ensemble.seed_jobs(DF, lambda n: tmp_path / n, seeds=[0, 1])
    models = A.train_many(train, held, jobs, progress=False)
    table = rb.model_table(models)
    assert table.model.tolist() == ["k4-seed0", "k4-seed1"] and (table.kind == "plain").all()
    spacing = (2.0, 2.0, 2.0)
    check = pl.PlausibilityCheck().fit(measure_cubes(train, spacing))
    plaus, grids = rb.plausibility_table(models, cubes, held, check, spacing, n_samples=10)
    assert set(plaus["sample"]) == set(rb.SAMPLES) and len(plaus) == 6
    assert plaus.set_index(["model", "sample"]).n[("k4-seed0", "sweep grid")] == 24
    assert plaus.plausible_share.between(0, 1).all() and (plaus.lo <= plaus.hi).all()
    masks, judged = grids["k4-seed1"]
    assert masks.shape == (4, 6, 16, 16, 16) and len(judged) == 24
    # the grid is the sweep of every disc's codes, decoded feature by feature
    z = models["k4-seed1"].encode(cubes)
    codes, _ = rb.sweep_codes(z, 6)
    np.testing.assert_array_equal(masks[2, 5], models["k4-seed1"].decode(codes[2, 5][None])[0])
    summary = rb.plausibility_summary(plaus)
    assert summary.models.tolist() == [2, 2, 2]
    assert rb.plausibility_text(plaus) == "No latent-noise model was trained in this run."


def test_whitening_decorrelates_on_the_rows_it_is_fitted_on():
    z = _codes(n=300) @ np.array([[1, 0.8, 0, 0], [0, 1, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    fit = np.arange(300) < 200
    w = rb.whitened(z, fit)
    np.testing.assert_allclose(np.corrcoef(w[fit], rowvar=False), np.eye(4), atol=1e-8)
    table = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(4)])
    rot = rb.rotated_table(table, 4, fit)
    corr = rb.basis_correlations({"as trained": table, "whitened": rot}, 4)
    assert corr.max_abs_r_between_latents[0] > 0.5 > 0.2 > corr.max_abs_r_between_latents[1]


def test_claims_verdict_sorts_the_claims_by_how_many_seeds_they_hold_in():
    claims = pd.DataFrame(
        {
            "seed": [0, 1, 0, 1, 0, 1],
            "claim": ["a"] * 2 + ["b"] * 2 + ["c"] * 2,
            "value": [0.0] * 6,
            "holds": [True, True, True, False, False, False],
        }
    )
    cca = pd.DataFrame(
        {
            "seed": [0, 1],
            "component": [1, 1],
            "canonical_r": [0.91, 0.25],
            "null_r_95": [0.30, 0.31],
            "above_null": [True, False],
        }
    )
    text = rb.claims_verdict(claims, cca)
    assert "survive retraining (hold in every seed): a (2 of 2)" in text
    assert "hold in some seeds only: b (1 of 2)" in text and "hold in no seed: c (0 of 2)" in text
    assert "is 0.25-0.91 over seeds, against 0.31 at most" in text
    assert text.endswith("above it in 1 of 2 seeds.")


def test_plausibility_text_pairs_each_noise_model_with_the_plain_one_of_its_seed():
    rows = [
        ("k4-seed0", "plain", 0, "sweep grid", 0.50, 0.70),
        ("k4-seed1", "plain", 1, "sweep grid", 0.90, 0.72),
        ("k4-noise-seed0", "latent noise", 0, "sweep grid", 0.75, 0.74),
    ]
    table = pd.DataFrame(
        rows, columns=["model", "kind", "seed", "sample", "plausible_share", "heldout_iou"]
    )
    table["lo"], table["hi"] = table.plausible_share - 0.1, table.plausible_share + 0.1
    text = rb.plausibility_text(table)
    assert text.startswith("Over the sweep grid, 75% (65%-85%) of the latent-noise decoder's")
    assert "against 50% for the plain decoder of the same seed (plain, all seeds: 50%-90%)" in text
    assert text.endswith(
        "held-out IoU 0.740 with latent noise against 0.700-0.720 for the plain seeds."
    )


def test_stability_jobs_pair_noise_with_plain_seeds_and_skip_noise_for_joint_training(tmp_path):
    jobs, notes = A.ensemble.stability_jobs(DF, lambda n: tmp_path / n, 4, 2, 0.3, workers=2)
    assert [j.name for j in jobs] == [
        "k4-noise-seed0", "k4-noise-seed1", "k4-seed1", "k4-seed2", "k4-seed3"
    ]  # fmt: skip
    assert not notes and all(j.config.cpu_threads == 1 for j in jobs)
    joint = replace(DF, strategy="joint", norm="batch", seed=5, cpu_threads=0)
    jobs, notes = A.ensemble.stability_jobs(joint, lambda n: tmp_path / n, 3, 2, 0.3, workers=2)
    assert [j.name for j in jobs] == ["k4-seed6", "k4-seed7"] and "jointly" in notes[0]
    assert jobs[0].config.cpu_threads == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ValueError, match="at least 2"):
        A.ensemble.stability_jobs(DF, lambda n: tmp_path / n, 1, 0, 0.3, workers=1)


def test_the_noise_variant_trains_as_many_epochs_per_stage_as_the_plain_model(tmp_path):
    jobs, notes = A.ensemble.stability_jobs(
        DF, lambda n: tmp_path / n, 3, 1, 0.3, workers=2, trained_epochs=(148, 178)
    )
    noisy, plain = jobs[0], jobs[1:]
    assert noisy.name == "k4-noise-seed0"
    assert (noisy.config.max_epochs, noisy.config.encoder_epochs) == (148, 30)
    assert all(
        (j.config.max_epochs, j.config.encoder_epochs) == (DF.max_epochs, DF.encoder_epochs)
        for j in plain
    )  # the plain seeds keep the profile's budget and criterion
    assert "148 decoder-stage and 30 encoder-stage epochs" in notes[0]
    with pytest.raises(ValueError, match="decoder <= total"):
        A.ensemble.stability_jobs(
            DF, lambda n: tmp_path / n, 2, 1, 0.3, workers=1, trained_epochs=(50, 40)
        )


def test_basis_text_quotes_both_bases():
    rows = [
        ("as trained", "disc_narrowing", "latent", 0.70, 0.60, 0.80),
        ("PCA-whitened", "disc_narrowing", "latent", 0.65, 0.55, 0.75),
    ]
    auc = pd.DataFrame(rows, columns=["basis", "target", "features", "auc", "auc_lo", "auc_hi"])
    assert rb.basis_text(auc) == (
        "AUC for disc narrowing: latent: 0.70 (0.60-0.80) as trained, 0.65 (0.55-0.75) whitened."
    )


def test_the_sweep_trains_its_models_side_by_side(tmp_path):
    cubes = ellipsoids(10)
    base = replace(DF, cpu_threads=2)
    table, models, _ = A.sweep(
        cubes[:8], cubes[8:], base, (4, 2), out_dir=tmp_path, progress=False, workers=2
    )
    assert table.latent_dim.tolist() == [4, 2]  # in the order asked, trained smallest k first
    assert {m.config.cpu_threads for m in models.values()} == {1}  # 2 threads shared by 2
    assert (tmp_path / "k2" / "model.safetensors").exists() and table.heldout_iou.between(
        0, 1
    ).all()
    alone = A.train_or_load(
        cubes[:8], models[2].config, tmp_path / "k2", cubes[8:], progress=False
    )[0]
    assert alone.metrics["train_seconds"] == models[2].metrics["train_seconds"]  # reused
