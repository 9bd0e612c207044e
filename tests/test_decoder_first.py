"""Decoder-first training: the decoder with a free code per disc, then the encoder."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import DECODER_FIRST, TINY, ellipsoids
from disclatent import autoencoder as A
from disclatent.autoencoder import checkpoint, stages
from disclatent.autoencoder.objective import iou_per_disc

torch.set_num_threads(1)

DF = DECODER_FIRST


@pytest.fixture(scope="module")
def cubes():
    return ellipsoids(12)


def _fit(cubes, cfg, **kw):
    return A.fit(cubes, cfg, device="cpu", progress=False, **kw)


def test_the_decoder_stage_comes_first_and_the_encoder_stage_leaves_it_alone(cubes):
    ae = _fit(cubes, DF)
    h = ae.history
    assert h["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert h["stage"].tolist() == ["decoder"] * 3 + ["encoder"] * 3
    dec, enc = h[h["stage"] == "decoder"], h[h["stage"] == "encoder"]
    # the criterion is measured on the composed autoencoder only; the decoder stage reports
    # the IoU of its decoded codes
    assert dec["train_iou"].isna().all() and dec["decoder_iou"].between(0, 1).all()
    assert enc["decoder_iou"].isna().all() and enc["train_iou"].between(0, 1).all()
    assert ae.metrics["strategy"] == "decoder_first" and ae.metrics["decoder_epochs"] == 3
    assert ae.metrics["decoder_iou"] == pytest.approx(dec["decoder_iou"].iloc[-1])
    # one encoder epoch or three: the decoder is the same, the encoder is not
    short = _fit(cubes, replace(DF, encoder_epochs=1))
    long_sd, short_sd = ae.model.state_dict(), short.model.state_dict()
    for name in long_sd:
        same = torch.equal(long_sd[name], short_sd[name])
        assert same == (name.startswith(("decoder.", "from_latent."))), name
    # the encoder learned to give the codes: the squared error falls epoch after epoch
    assert enc["loss"].is_monotonic_decreasing


def test_the_stages_end_at_the_criterion(cubes):
    """With stop_at_target, the decoder stage ends as soon as its codes decode to the target
    IoU, and training ends when the composed autoencoder reaches it."""
    ae = _fit(cubes, replace(DF, target_iou=0.0, stop_at_target=True, max_epochs=5))
    assert ae.history["stage"].tolist() == ["decoder", "encoder"]
    assert ae.metrics["converged"] and ae.metrics["epochs_to_converge"] == 2
    # the decoder stage aims a margin above the criterion (the encoder's codes are near the
    # free ones, not equal): out of reach, it runs to its budget
    margin = _fit(cubes, replace(DF, target_iou=0.0, stop_at_target=True, decoder_margin=1.5))
    assert margin.history["stage"].tolist() == ["decoder"] * 3 + ["encoder"]
    never = _fit(cubes, replace(DF, target_iou=1.01, stop_at_target=True, encoder_epochs=2))
    assert never.history["stage"].tolist() == ["decoder"] * 3 + ["encoder"] * 2
    assert not never.metrics["converged"] and never.metrics["epochs_to_converge"] is None


def test_decoder_iou_and_encoder_loss_by_hand(cubes):
    model = A.build_model(DF)
    codes = stages.initial_codes(cubes, DF.latent_dim, seed=3, method="random")
    again = stages.initial_codes(cubes, DF.latent_dim, seed=3, method="random")
    torch.testing.assert_close(codes.weight, again.weight)  # seeded
    w = codes.weight.detach()
    assert abs(float(w.mean())) < 0.5 and 0.6 < float(w.std()) < 1.4
    data = torch.as_tensor(cubes)
    with torch.no_grad():
        pred = model.decode(codes.weight)[:, 0] > 0
    expected = iou_per_disc(pred, data)
    np.testing.assert_allclose(stages.decoder_iou(model, codes, data, batch_size=5), expected)
    x = data[:4].float().unsqueeze(1)
    target = torch.zeros(4, DF.latent_dim)
    with torch.no_grad():
        z = model.encode(x)
        loss = stages.encoder_step(model, x, target)
    assert float(loss) == pytest.approx(float((z**2).mean()))


def test_stage_schedule_and_optimisers():
    cfg = replace(DF, lr=3e-3, encoder_lr=1e-3, batch_size=2, encoder_batch_size=8)
    assert stages.stage_schedule(cfg, "decoder", 1, 0) == (2, 1, 3, 3e-3, "cosine")
    assert stages.stage_schedule(cfg, "encoder", 4, 3) == (8, 1, 3, 1e-3, "cosine")
    model = A.build_model(cfg)
    codes = stages.initial_codes(ellipsoids(5), cfg.latent_dim, 0)
    dec = {
        id(p)
        for g in stages.stage_optimizer(model, codes, "decoder", cfg).param_groups
        for p in g["params"]
    }
    enc = {
        id(p)
        for g in stages.stage_optimizer(model, codes, "encoder", cfg).param_groups
        for p in g["params"]
    }
    assert id(codes.weight) in dec and not dec & enc
    assert dec | enc == {id(p) for p in model.parameters()} | {id(codes.weight)}
    assert cfg.epoch_budget == 6 and replace(TINY, max_epochs=7).epoch_budget == 7
    with pytest.raises(ValueError, match="norm='group'"):
        replace(cfg, norm="batch")
    with pytest.raises(ValueError, match="unknown strategy"):
        replace(cfg, strategy="encoder_first")


@pytest.mark.parametrize(
    ("stop_epoch", "noise"), [(2, 0.0), (4, 0.0), (2, 0.3)]
)  # in the decoder stage, in the encoder stage, and with latent noise
def test_resume_in_either_stage_matches_an_uninterrupted_run(cubes, tmp_path, stop_epoch, noise):
    cfg = replace(DF, code_noise=noise)
    straight = _fit(cubes, cfg)

    class Stop(Exception):
        pass

    def interrupt(row):
        if row["epoch"] == stop_epoch:
            raise Stop

    with pytest.raises(Stop):
        _fit(cubes, cfg, out_dir=tmp_path, checkpoint_seconds=0, callback=interrupt)
    assert (tmp_path / checkpoint.CHECKPOINT_FILE).exists()
    seen = []
    resumed = _fit(cubes, cfg, out_dir=tmp_path, callback=lambda r: seen.append(r["epoch"]))
    assert seen == list(range(stop_epoch + 1, 7))
    assert resumed.history["stage"].tolist() == straight.history["stage"].tolist()
    for (name, p), q in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    np.testing.assert_allclose(
        resumed.history["loss"].to_numpy(), straight.history["loss"].to_numpy(), rtol=1e-6
    )
    shutil.rmtree(tmp_path)


def test_pca_codes_are_the_discs_principal_component_scores_at_unit_variance(cubes):
    """The decoder stage starts from the discs' PCA scores, so similar discs start close."""
    codes = stages.initial_codes(cubes, 3, seed=0).weight.detach().numpy()
    x = cubes.reshape(len(cubes), -1).astype(float)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)  # PCA by hand
    scores = u[:, :3] * s[:3]
    scores /= scores.std(axis=0)
    for j in range(3):  # a component's sign is arbitrary
        assert abs(np.corrcoef(codes[:, j], scores[:, j])[0, 1]) > 0.999
    np.testing.assert_allclose(codes.std(axis=0), 1.0, rtol=1e-4)
    # more numbers than PCA has components (n - 1 = 3 for 4 discs): the rest start at zero
    wide = stages.initial_codes(cubes[:4], 6, seed=0).weight.detach().numpy()
    assert np.abs(wide[:, :3]).max() > 0.5 and not wide[:, 3:].any()
    with pytest.raises(ValueError, match="unknown code_init"):
        replace(DF, code_init="zeros")


def test_the_decoder_stage_iou_is_that_of_its_own_forward_passes(cubes, monkeypatch):
    """Without latent noise the decoder stage records each disc's IoU from the forward pass
    that trained it (no eval pass); with the weights not moving that is the eval-mode IoU,
    disc by disc."""
    from disclatent.autoencoder import training

    still = replace(DF, lr=1e-12, max_epochs=2, encoder_epochs=1)
    codes = stages.initial_codes(cubes, still.latent_dim, still.seed, still.code_init)
    eval_pass = training.decoder_iou

    def no_eval_pass(*args, **kw):
        raise AssertionError("the decoder stage ran an eval pass")

    monkeypatch.setattr(training, "decoder_iou", no_eval_pass)
    seen = {}
    real_record = training.DiscAE._record

    def record(self, run, row):
        if run.step_ious is not None and row["stage"] == "decoder":
            seen[row["epoch"]] = run.step_ious.copy()
        real_record(self, run, row)

    monkeypatch.setattr(training.DiscAE, "_record", record)
    ae = _fit(cubes, still)
    # per disc: the eval IoU of the final decoder at the start codes (lr ~ 0: nothing moved)
    expected = eval_pass(ae.model, codes, torch.as_tensor(cubes))
    np.testing.assert_allclose(seen[2], expected, atol=1e-12)
    rows = ae.history[ae.history.stage == "decoder"]
    assert rows["decoder_iou"].iloc[-1] == pytest.approx(expected.mean(), abs=1e-12)
    assert rows["decoder_iou_min"].iloc[-1] == pytest.approx(expected.min(), abs=1e-12)


def test_latent_noise_is_seeded_scaled_and_regularises_the_codes(cubes):
    z = torch.zeros(3, 4)
    every = torch.tensor([[0.0, 0, 0, 0], [2, 4, 0, 1], [4, 8, 0, 2]])  # SD 2, 4, 0, 1
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = stages.noisy_codes(z, every, 0.5, g1)
    torch.testing.assert_close(a, stages.noisy_codes(z, every, 0.5, g2))  # seeded
    assert torch.all(a[:, 2] == 0)  # a feature without spread gets no noise
    big = stages.noisy_codes(torch.zeros(20000, 4), every, 0.5, torch.Generator().manual_seed(1))
    np.testing.assert_allclose(big.std(0).numpy(), [1.0, 2.0, 0.0, 0.5], atol=0.03)
    noisy = replace(DF, code_noise=0.3)
    one, two = _fit(cubes, noisy), _fit(cubes, noisy)  # same seed, same model
    torch.testing.assert_close(one.model.state_dict(), two.model.state_dict())
    plain = _fit(cubes, DF)
    assert not torch.equal(one.model.decoder[0].weight, plain.model.decoder[0].weight)
    with pytest.raises(ValueError, match="decoder_first"):
        replace(TINY, code_noise=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        replace(DF, code_noise=-1.0)


def test_the_codes_learning_rate_scale(cubes):
    cfg = replace(DF, code_lr_scale=10.0)
    model = A.build_model(cfg)
    codes = stages.initial_codes(cubes, cfg.latent_dim, 0)
    groups = stages.stage_optimizer(model, codes, "decoder", cfg).param_groups
    scales = {len(g["params"]): g["lr_scale"] for g in groups}
    assert scales[1] == 10.0 and sorted(scales.values()) == [1.0, 10.0]
    fast, slow = _fit(cubes, cfg), _fit(cubes, DF)
    assert not torch.equal(fast.model.decoder[0].weight, slow.model.decoder[0].weight)


def test_a_model_saved_before_a_neutral_field_existed_is_reused(cubes, tmp_path):
    import json

    from disclatent.autoencoder import evaluation
    from disclatent.autoencoder.config import NEUTRAL_DEFAULTS

    cfg = replace(DF, max_epochs=1, encoder_epochs=1)
    first, _ = evaluation.train_or_load(cubes, cfg, tmp_path, progress=False, device="cpu")
    stored = json.loads((tmp_path / checkpoint.CONFIG_FILE).read_text())
    for key in NEUTRAL_DEFAULTS:  # as written before these fields existed
        stored.pop(key)
    (tmp_path / checkpoint.CONFIG_FILE).write_text(json.dumps(stored))
    assert evaluation._cached(tmp_path, cfg, cubes, "cpu") is not None
    # ... but not for a configuration that sets one of them
    assert evaluation._cached(tmp_path, replace(cfg, code_noise=0.2), cubes, "cpu") is None
    stored.pop("code_init")  # a field whose absence is not neutral
    (tmp_path / checkpoint.CONFIG_FILE).write_text(json.dumps(stored))
    assert evaluation._cached(tmp_path, cfg, cubes, "cpu") is None


def test_epoch_budgets_hold_for_up_to_budget_discs_then_the_optimiser_steps_do():
    """Hand-computed: the default profile's 200 + 80 epochs hold for the phantom's 169
    training discs; on the 218-patient cohort's 1090 discs each stage gets as many disc
    presentations (epochs x discs <= budget x 250), hence as many optimiser steps."""
    from disclatent.autoencoder.config import epochs_for_discs

    assert epochs_for_discs(200, 169, 250) == 200
    assert epochs_for_discs(200, 250, 250) == 200
    assert (epochs_for_discs(200, 1090, 250), epochs_for_discs(80, 1090, 250)) == (45, 18)
    assert 45 * 1090 <= 200 * 250 < 46 * 1090
    assert epochs_for_discs(3, 10**6, 250) == 1  # never no training at all
    assert epochs_for_discs(200, 10**6, None) == 200
    default = A.AEConfig.from_profile("default")
    assert default.budget_discs == 250 and A.AEConfig.from_profile("paper").budget_discs is None
    # resolved for a training set: the same run as without the budget up to 250 discs
    assert default.for_discs(169) == replace(default, budget_discs=None)
    big = default.for_discs(1090)
    assert (big.max_epochs, big.encoder_epochs, big.budget_discs) == (45, 18, None)
    assert big.for_discs(1090) == big  # resolving twice changes nothing
    assert "for up to 250 training discs" in A.describe_config(default)["epoch budget"]
    with pytest.raises(ValueError, match="budget_discs"):
        replace(DF, budget_discs=0)


def test_a_training_set_above_the_budget_trains_fewer_epochs_and_is_cached_so(
    cubes, tmp_path, monkeypatch
):
    """12 discs against a budget of 4: decoder 3 x 4 // 12 = 1 epoch, encoder 6 x 4 // 12 = 2;
    the model folder records the run it had, and a rerun reuses it instead of retraining."""
    cfg = replace(DF, encoder_epochs=6, budget_discs=4)
    ae, _ = A.train_or_load(cubes, cfg, tmp_path, progress=False, device="cpu")
    assert ae.history["stage"].tolist() == ["decoder", "encoder", "encoder"]
    assert (ae.config.max_epochs, ae.config.encoder_epochs, ae.config.budget_discs) == (1, 2, None)
    assert A.DiscAE.load(tmp_path).config == ae.config
    direct = _fit(cubes, cfg)  # the same resolution without a folder
    assert direct.history["stage"].tolist() == ae.history["stage"].tolist()
    from disclatent.autoencoder import evaluation

    def no_training(*args, **kwargs):
        raise AssertionError("retrained a cached model")

    monkeypatch.setattr(evaluation.training, "fit", no_training)
    again, _ = A.train_or_load(cubes, cfg, tmp_path, progress=False, device="cpu")
    assert again.history.equals(ae.history)
    # a set within the budget trains the stated epochs
    within = A.DiscAE(cfg, device="cpu").fit(cubes[:4], progress=False)
    assert within.history["stage"].tolist() == ["decoder"] * 3 + ["encoder"] * 6
