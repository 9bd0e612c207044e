"""The disc autoencoder: architecture, honest convergence, resume, baselines, API, CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, ellipsoids
from disclatent import autoencoder as A
from disclatent.autoencoder import checkpoint, training
from disclatent.cli import main
from disclatent.data import volume as io
from disclatent.data.phantom import write_phantom

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cubes():
    return ellipsoids(12)


# -- architecture ---------------------------------------------------------------------------
def test_paper_architecture_has_about_9_4_million_parameters():
    cfg = A.AEConfig.from_profile("paper")
    assert (cfg.size, cfg.channels, cfg.spacing_mm) == (
        64,
        (32, 64, 128, 256, 512),
        (1.5, 1.2, 1.4),
    )
    model = A.build_model(cfg)
    n = A.count_parameters(model)
    assert 9.3e6 < n < 9.5e6
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv3d)]
    tconvs = [m for m in model.decoder if isinstance(m, torch.nn.ConvTranspose3d)]
    assert [m.stride for m in convs] == [(2, 2, 2)] * 5
    assert len(tconvs) == 5 and tconvs[-1].out_channels == 1
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) == 10
    model.eval()
    x = torch.zeros(1, 1, 64, 64, 64)
    x[0, 0, 28:36, 20:44, 16:48] = 1
    with torch.no_grad():
        z = model.encode(x)
        y = model(x)
    assert z.shape == (1, 4) and y.shape == (1, 1, 64, 64, 64)
    # no skip connections: the output is a function of the k latent numbers only
    assert torch.equal(model.decode(z), y)


def expected_parameters(size: int, channels: tuple[int, ...], k: int, kernel: int = 3) -> int:
    """Parameters of the architecture counted by hand: 3^3 encoder kernels and kernel^3
    decoder kernels without bias before normalisation (2 parameters per channel, batch norm or
    GroupNorm alike), linear layers in and out of the bottleneck."""
    flat = channels[-1] * (size // 2 ** len(channels)) ** 3
    pairs = list(zip((1, *channels[:-1]), channels, strict=True))
    encoder = sum(27 * a * b + 2 * b for a, b in pairs)
    bottleneck = (flat * k + k) + k * flat + 2 * channels[-1]
    kk = kernel**3
    decoder = sum(kk * b * a + 2 * a for a, b in pairs[1:]) + kk * channels[0] + 1
    return encoder + bottleneck + decoder


@pytest.mark.parametrize("name", ["quick", "default", "paper"])
def test_every_profile_gives_a_valid_model(name):
    from disclatent.profiles import get_profile

    profile = get_profile(name)
    cfg = A.AEConfig.from_profile(name, 3)
    assert (cfg.latent_dim, cfg.size, cfg.channels) == (3, profile.ae_size, profile.ae_channels)
    assert cfg.spacing_mm == profile.disc_spacing_mm  # the isolation chapter's grid
    model = A.build_model(cfg).eval()
    assert model.bottom == cfg.size // 2 ** len(cfg.channels) >= 2
    x = torch.zeros(2, 1, cfg.size, cfg.size, cfg.size)
    with torch.no_grad():
        z = model.encode(x)
        y = model.decode(z)
    assert z.shape == (2, 3) and y.shape == x.shape
    assert A.count_parameters(model) == expected_parameters(
        cfg.size, cfg.channels, 3, cfg.decoder_kernel
    )
    norms = {torch.nn.BatchNorm3d: "batch", torch.nn.GroupNorm: "group"}
    assert {norms[type(m)] for m in model.modules() if type(m) in norms} == {cfg.norm}
    if name == "paper":  # the paper's "about 9.4 M parameters" (k = 4)
        paper = A.build_model(A.AEConfig.from_profile(name, 4))
        assert A.count_parameters(paper) == 9_438_789


def test_paper_architecture_trains_encodes_and_decodes_on_the_cpu():
    """The `paper` network (64^3, 32-512 channels, batch norm, kernel-3 decoder) through one
    epoch of training on three discs, then encoding and decoding: the GPU path's code, run
    here first rather than by a user."""
    cfg = replace(
        A.AEConfig.from_profile("paper", 4), max_epochs=1, stop_at_target=False, cpu_threads=1
    )
    discs = ellipsoids(3, size=64, seed=5)
    ae = A.fit(discs, cfg, device="cpu", progress=False)
    assert A.count_parameters(ae.model) == 9_438_789
    assert len(ae.history) == 1 and np.isfinite(ae.history["loss"]).all()
    assert ae.metrics["epochs"] == 1 and not ae.metrics["converged"]
    z = ae.encode(discs)
    assert z.shape == (3, 4) and np.isfinite(z).all()
    out = ae.decode(z)
    assert out.shape == (3, 64, 64, 64) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ae.reconstruct(discs))  # no path around the code
    np.testing.assert_allclose(ae.iou(discs).mean(), ae.history["train_iou"].iloc[-1])


@pytest.mark.parametrize(("kernel", "taps"), [(3, {1, 2, 4, 8}), (4, {8})])
def test_decoder_kernel_sets_how_many_inputs_each_output_voxel_sees(kernel, taps):
    """With unit weights on a field of ones, a transposed convolution writes into each output
    voxel the number of input voxels it sees: kernel 3 (the paper) alternates 1 and 2 per
    axis, kernel 4 gives every interior voxel 2 per axis."""
    from disclatent.autoencoder.network import upsampling

    layer = upsampling(1, 1, kernel, bias=False)
    torch.nn.init.ones_(layer.weight)
    with torch.no_grad():
        out = layer(torch.ones(1, 1, 6, 6, 6))[0, 0]
    assert out.shape == (12, 12, 12)
    assert set(out[2:-2, 2:-2, 2:-2].unique().int().tolist()) == taps


def test_group_norm_model_has_no_batch_statistics(cubes, tmp_path):
    """With GroupNorm the eval-mode network is the train-mode one (no running statistics to
    re-estimate); training skips the batch-norm recalibration."""
    cfg = replace(TINY, norm="group", decoder_kernel=4, max_epochs=2, stop_at_target=False)
    ae = A.fit(cubes, cfg, device="cpu", progress=False)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in ae.model.modules())
    x = torch.as_tensor(cubes[:3]).float().unsqueeze(1)
    with torch.no_grad():
        ae.model.train()
        train_mode = ae.model(x)
        ae.model.eval()
        eval_mode = ae.model(x)
    torch.testing.assert_close(train_mode, eval_mode)
    ae.save(tmp_path / "gn")
    again = A.DiscAE.load(tmp_path / "gn", device="cpu")
    assert again.config == cfg  # the folder says which network to build
    np.testing.assert_array_equal(again.encode(cubes), ae.encode(cubes))


def test_hard_voxel_weight_by_hand():
    """BCE where the thresholded output is wrong weighs 1 + hard_weight."""
    from disclatent.autoencoder.objective import reconstruction_loss

    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # voxels 1 and 2 are wrong
    bce = torch.nn.functional.softplus(torch.tensor([-2.0, 1.0, 0.5, -3.0]))  # -log p(target)
    w = torch.tensor([1.0, 4.0, 4.0, 1.0])
    got = reconstruction_loss(logits, target, "bce", hard_weight=3.0)
    torch.testing.assert_close(got, (w * bce).mean())
    torch.testing.assert_close(reconstruction_loss(logits, target, "bce"), bce.mean())


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="divisible"):
        A.AEConfig(size=24, channels=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="loss"):
        A.AEConfig(loss="mse")
    with pytest.raises(ValueError, match="norm"):
        A.AEConfig(norm="layer")
    with pytest.raises(ValueError, match="decoder_kernel"):
        A.AEConfig(decoder_kernel=5)
    with pytest.raises(ValueError, match="hard_weight"):
        A.AEConfig(hard_weight=-1)
    assert A.AEConfig.from_dict(TINY.to_dict()) == TINY


# -- metrics --------------------------------------------------------------------------------
def test_iou_per_disc_known_values():
    a = np.zeros((3, 4, 4, 4), np.uint8)
    b = np.zeros_like(a)
    a[0, :2] = 1  # 32 voxels
    b[0, 1:3] = 1  # 32 voxels, 16 shared -> 16 / 48
    a[1, 0, 0, 0] = 1
    b[1, 0, 0, 0] = 1
    np.testing.assert_allclose(A.iou_per_disc(a, b), [1 / 3, 1.0, 1.0])  # both empty: 1


def test_patient_split_keeps_patients_whole():
    patients = np.repeat([str(p) for p in range(10)], 6)
    tr, ho = A.patient_split(patients, 0.2, seed=3)
    assert ho.sum() == 12 and tr.sum() == 48
    assert not set(patients[tr]) & set(patients[ho])
    tr0, ho0 = A.patient_split(patients, 0.0)
    assert tr0.all() and not ho0.any()


# -- training -------------------------------------------------------------------------------
def test_convergence_is_the_eval_mode_mean_over_all_training_discs(cubes):
    cfg = replace(TINY, max_epochs=60, batch_size=2, target_iou=0.85)
    ae = A.fit(cubes, cfg, device="cpu", progress=False)
    h = ae.history
    m = ae.metrics
    assert m["converged"], f"did not reach 0.85 in 60 epochs: {h['train_iou'].max():.3f}"
    # stops at the first epoch whose mean IoU (all discs, eval mode) reaches the target
    assert m["epochs"] == m["epochs_to_converge"] == int(h["epoch"].iloc[-1])
    assert (h["train_iou"].iloc[:-1] < cfg.target_iou).all()
    # the number recorded is exactly what the eval-mode model gives on every disc
    recomputed = A.iou_per_disc(ae.reconstruct(cubes), cubes)
    assert h["train_iou"].iloc[-1] == pytest.approx(recomputed.mean(), abs=1e-9)
    assert m["train_iou"] == pytest.approx(recomputed.mean(), abs=1e-9)
    assert m["train_iou_min"] == pytest.approx(recomputed.min(), abs=1e-9)
    lo, hi = m["train_iou_ci"]
    assert lo <= m["train_iou"] <= hi
    assert not ae.model.training


def test_an_unreachable_target_is_reported_as_not_converged(cubes):
    cfg = replace(TINY, max_epochs=2, target_iou=0.9999)
    ae = A.fit(cubes, cfg, device="cpu", progress=False)
    assert ae.metrics["converged"] is False and ae.metrics["epochs_to_converge"] is None
    assert ae.metrics["epochs"] == 2 and len(ae.history) == 2


def test_training_is_seeded(cubes):
    a = A.fit(cubes[:8], replace(TINY, max_epochs=2), device="cpu", progress=False)
    b = A.fit(cubes[:8], replace(TINY, max_epochs=2), device="cpu", progress=False)
    np.testing.assert_array_equal(a.encode(cubes[:8]), b.encode(cubes[:8]))


def test_resume_after_interruption_matches_an_uninterrupted_run(cubes, tmp_path):
    cfg = replace(TINY, max_epochs=4, freeze_bn_epoch=2, stop_at_target=False)
    straight = A.fit(cubes, cfg, device="cpu", progress=False)

    class Stop(Exception):
        pass

    def interrupt(row):
        if row["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        A.fit(
            cubes,
            cfg,
            out_dir=tmp_path / "a",
            device="cpu",
            progress=False,
            checkpoint_seconds=0,
            callback=interrupt,
        )
    ckpt = tmp_path / "a" / checkpoint.CHECKPOINT_FILE
    assert ckpt.exists() and not (tmp_path / "a" / checkpoint.MODEL_FILE).exists()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    seen = []
    resumed = A.fit(
        cubes,
        cfg,
        out_dir=tmp_path / "a",
        device="cpu",
        progress=False,
        callback=lambda r: seen.append(r["epoch"]),
    )
    assert seen == [3, 4]  # epochs 1-2 were not repeated
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    for (name, p), q in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    assert (tmp_path / "a" / checkpoint.MODEL_FILE).exists() and not ckpt.exists()
    # a checkpoint of another configuration (or other discs) is not resumed
    seen.clear()
    A.fit(
        cubes,
        replace(cfg, lr=1e-3),
        out_dir=tmp_path / "b",
        device="cpu",
        progress=False,
        callback=lambda r: seen.append(r["epoch"]),
    )
    assert seen == [1, 2, 3, 4]


def test_save_and_load_use_safetensors_only(cubes, tmp_path, monkeypatch):
    ae = A.fit(cubes, replace(TINY, max_epochs=1), out_dir=tmp_path, device="cpu", progress=False)
    from safetensors import safe_open

    with safe_open(str(tmp_path / checkpoint.MODEL_FILE), framework="pt") as f:
        assert "decoder.0.running_mean" in f.keys()  # batch-norm statistics are saved
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was used"))
    loaded = A.DiscAE.load(tmp_path, "cpu")
    assert loaded.config == ae.config
    np.testing.assert_array_equal(loaded.encode(cubes), ae.encode(cubes))
    z = loaded.encode(cubes)
    masks = loaded.decode(z)
    assert (
        masks.dtype == np.uint8 and masks.shape == cubes.shape and set(np.unique(masks)) <= {0, 1}
    )
    np.testing.assert_array_equal(masks, ae.reconstruct(cubes))
    assert list(loaded.history.columns[:4]) == ["epoch", "stage", "loss", "train_iou"]


# -- baselines and API ----------------------------------------------------------------------
def test_pca_baseline(cubes):
    full = A.PCABaseline(64).fit(cubes)
    assert full.n_components_ == len(cubes) - 1  # capped
    assert A.iou_per_disc(full.reconstruct(cubes), cubes).min() == 1.0
    one = A.PCABaseline(1).fit(cubes)
    assert one.transform(cubes).shape == (len(cubes), 1)
    assert A.iou_per_disc(one.reconstruct(cubes), cubes).mean() < 0.99


def test_latent_features_transformer(cubes, tmp_path):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = A.LatentFeatures(latent_dim=3, profile="quick", max_epochs=1, device="cpu")
    assert clone(est).get_params()["latent_dim"] == 3
    # the quick profile's cube is 32^3: pad the 16^3 test shapes into it
    big = np.zeros((len(cubes), 32, 32, 32), np.uint8)
    big[:, 8:24, 8:24, 8:24] = cubes
    pipe = make_pipeline(est, StandardScaler()).fit(big.reshape(len(big), -1))
    out = pipe.transform(big.reshape(len(big), -1))
    assert out.shape == (len(big), 3)
    assert list(pipe[0].get_feature_names_out()) == ["latent_0", "latent_1", "latent_2"]
    # a trained model can be used frozen: fit() loads it and does not train
    pipe[0].model_.save(tmp_path)
    frozen = A.LatentFeatures(model_dir=str(tmp_path), device="cpu").fit(big[:2])
    np.testing.assert_array_equal(frozen.transform(big), pipe[0].transform(big))
    with pytest.raises(ValueError, match="cubes"):
        frozen.transform(np.zeros((2, 10)))


def test_sweep_table_and_cached_models(cubes, tmp_path, monkeypatch):
    train, held = cubes[:9], cubes[9:]
    base = replace(TINY, max_epochs=2)
    results, models, pcas = A.sweep(
        train, held, base, (4, 3), out_dir=tmp_path, progress=False, device="cpu"
    )
    assert list(results["latent_dim"]) == [4, 3] and set(models) == set(pcas) == {4, 3}
    assert results["n_heldout"].eq(3).all()
    for col in ("train_iou", "heldout_iou", "pca_train_iou", "pca_heldout_iou"):
        assert results[col].between(0, 1).all()
        assert (results[col + "_lo"] <= results[col] + 1e-12).all()
    metrics = json.loads((tmp_path / "k4" / "metrics.json").read_text())
    for key in ("latent_dim", "epochs", "converged", "train_iou", "heldout_iou"):
        assert key in metrics
    table = A.sweep_table(results)
    assert table.loc[table["k"] == 4, "paper: train IoU"].item() == "0.9984 (0.9979-0.9989)"
    assert table.loc[table["k"] == 3, "ours: epochs"].item() == "no convergence in 2"
    assert len(models[4].history) == 2
    # unchanged settings and discs: the saved models are reused, not retrained
    with monkeypatch.context() as mp:
        mp.setattr(training, "fit", lambda *a, **k: pytest.fail("retrained an unchanged model"))
        again, _, _ = A.sweep(
            train, held, base, (4,), out_dir=tmp_path, progress=False, device="cpu"
        )
    assert again["train_iou"].iloc[0] == pytest.approx(results["train_iou"].iloc[0])
    # other training discs: retrained
    calls = []
    real_fit = training.fit
    monkeypatch.setattr(training, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    A.sweep(train[:8], held, base, (4,), out_dir=tmp_path, progress=False, device="cpu")
    assert calls == [1]
    # a model written before a configuration field existed is not taken as trained with
    # that field's default: retrained
    config_file = tmp_path / "k4" / "config.json"
    stored = json.loads(config_file.read_text())
    del stored["hard_weight"]
    config_file.write_text(json.dumps(stored))
    A.sweep(train[:8], held, base, (4,), out_dir=tmp_path, progress=False, device="cpu")
    assert calls == [1, 1]


# -- from masks: isolation and the command line ---------------------------------------------
def test_load_discs_skips_a_disc_that_does_not_fit(tmp_path):
    arr = np.zeros((60, 80, 40), np.int16)  # (SI, AP, LR) at 1 mm
    arr[10:14, 20:50, 5:35] = 201  # 30 x 30 mm: fits a 32^3 cube at 2 mm
    arr[40:44, 2:78, 1:39] = 202  # 76 mm antero-posterior: does not fit 64 mm
    io.write_image(io.Volume(arr, (1.0, 1.0, 1.0)), tmp_path / "masks" / "1_t1.mha")
    cfg = A.AEConfig(size=32, spacing_mm=(2.0, 2.0, 2.0), channels=(8, 16))
    with pytest.warns(UserWarning, match="does not fit"):
        discs = A.load_discs(tmp_path, cfg)
    assert len(discs.cubes) == 1 and discs.table["ivd_label"].tolist() == [1]
    assert discs.skipped["ivd_label"].tolist() == [2]


def test_cli_train_encode_decode_on_unseen_masks(phantom_dir, tmp_path, capsys):
    model = tmp_path / "model"
    assert (
        main(
            [
                "autoencoder",
                "train",
                "--masks",
                str(phantom_dir),
                "--latent-dim",
                "4",
                "--out",
                str(model),
                "--profile",
                "quick",
                "--max-epochs",
                "2",
                "--encoder-epochs",
                "1",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["latent_dim"] == 4 and metrics["epochs"] == 3  # 2 decoder + 1 encoder
    assert metrics["strategy"] == "decoder_first" and metrics["decoder_epochs"] == 2
    assert metrics["converged"] in (True, False)
    assert 0 < metrics["train_iou"] <= 1 and 0 <= metrics["heldout_iou"] <= 1
    split = pd.read_csv(model / "discs.csv", dtype={"patient": str})
    held = split[split["split"] == "heldout"]
    assert len(held) == metrics["n_heldout"] > 0
    assert not set(held["patient"]) & set(split.loc[split["split"] == "train", "patient"])

    unseen = tmp_path / "unseen"
    write_phantom(unseen, n_patients=1, seed=99, workers=1)
    latent_csv = tmp_path / "latent.csv"
    assert (
        main(
            [
                "autoencoder",
                "encode",
                "--model",
                str(model),
                "--masks",
                str(unseen),
                "--out",
                str(latent_csv),
            ]
        )
        == 0
    )
    assert "encoded" in capsys.readouterr().out
    table = pd.read_csv(latent_csv, dtype={"patient": str})
    truth = pd.read_csv(unseen / "phantom_truth.csv", dtype={"patient": str})
    assert len(table) == (truth["series"] == "1_t1").sum()
    assert [c for c in table.columns if c.startswith("latent_")] == [
        f"latent_{j}" for j in range(4)
    ]
    assert table["level"].iloc[0] == "L5/S1" and table["reconstruction_iou"].between(0, 1).all()
    assert list((tmp_path / "latent.csv.series").glob("1_t1-*.npz"))  # kept per series

    # one task per series: the same vectors as encoding the isolated cubes in one batch,
    # the same table bit for bit on a LocalCluster, and a bad series costs only itself
    from disclatent.autoencoder.encoding import encode_masks
    from disclatent.discs.isolation import DiscWarning

    ae = A.DiscAE.load(model)
    discs = A.load_discs(unseen, ae.config, modalities=None)
    both = tmp_path / "both"
    shutil.copytree(unseen / "masks", both)
    raw = (both / "1_t1.mha").read_bytes()
    (both / "1_t15.mha").write_bytes(raw[: len(raw) // 3])  # truncated, between the two
    with pytest.warns(DiscWarning, match="1_t15"):
        serial, skipped = encode_masks(model, both, None, scheduler="serial", progress=False)
    assert skipped["series"].tolist() == ["1_t15"] and "1_t15.mha" in skipped["reason"][0]
    assert serial["series"].tolist() == discs.table["series"].tolist()
    np.testing.assert_allclose(
        serial[[f"latent_{j}" for j in range(4)]].to_numpy(),
        ae.encode(discs.cubes),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.warns(DiscWarning, match="1_t15"):
        local, _ = encode_masks(model, both, None, scheduler="local", workers=2, progress=False)
    pd.testing.assert_frame_equal(local, serial)

    out = tmp_path / "decoded"
    assert (
        main(
            [
                "autoencoder",
                "decode",
                "--model",
                str(model),
                "--latent",
                str(latent_csv),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    files = sorted(out.glob("*.mha"))
    assert len(files) == len(table)
    first = io.read_mask(out / "1_t1_ivd1.mha")
    assert first.size == (32, 32, 32) and set(np.unique(first.array)) <= {0, 201}
    assert first.spacing == pytest.approx((2.8, 2.4, 3.0))  # (LR, AP, SI) = quick grid
    centre = first.index_to_world(np.array([15.5, 15.5, 15.5]))
    np.testing.assert_allclose(
        centre,
        table.loc[0, ["centre_x_mm", "centre_y_mm", "centre_z_mm"]].to_numpy(float),
        atol=1e-3,
    )


def test_cli_errors_are_clear(tmp_path, capsys):
    assert (
        main(
            [
                "autoencoder",
                "encode",
                "--model",
                str(tmp_path),
                "--masks",
                str(tmp_path),
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert "no trained model" in capsys.readouterr().err


def test_larger_store_cubes_are_cropped_about_their_centre(cubes):
    ae = A.fit(cubes[:4], replace(TINY, max_epochs=1), device="cpu", progress=False)
    big = np.zeros((4, 24, 24, 24), np.uint8)
    big[:, 4:20, 4:20, 4:20] = cubes[:4]
    np.testing.assert_array_equal(ae.encode(big), ae.encode(cubes[:4]))
    np.testing.assert_array_equal(A.fit_cubes(big.reshape(4, -1), 16), cubes[:4])
    big[0, 0, 0, 0] = 1  # a voxel outside the central crop is reported, not dropped silently
    with pytest.warns(A.CropWarning, match="1 of 4 discs"):
        ae.encode(big)
    small = cubes[:4, 2:14, 2:14, 2:14]
    assert A.fit_cubes(small, 16).shape == (4, 16, 16, 16)
    with pytest.raises(ValueError, match="even"):
        A.fit_cubes(np.zeros((1, 17, 17, 17)), 16)


def test_metrics_json_is_strict_json_without_heldout_discs(cubes, tmp_path):
    ae, ev = A.train_or_load(
        cubes[:4], replace(TINY, max_epochs=1), tmp_path, progress=False, device="cpu"
    )
    text = (tmp_path / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert metrics["heldout_iou"] is None and metrics["n_heldout"] == 0
    assert metrics["train_iou"] == pytest.approx(ev["train_iou"])


def test_cpu_threads_come_from_the_profile_the_environment_or_an_override(monkeypatch):
    from disclatent.segmentation.config import config_from_profile

    monkeypatch.delenv("DISCLATENT_CPU_THREADS", raising=False)
    assert A.AEConfig.from_profile("quick").cpu_threads == 1
    assert A.AEConfig.from_profile("default").cpu_threads == 2
    assert A.AEConfig.from_profile("default", cpu_threads=3).cpu_threads == 3  # CLI --threads
    assert config_from_profile("default").threads == 2
    monkeypatch.setenv("DISCLATENT_CPU_THREADS", "1")
    assert A.AEConfig.from_profile("default").cpu_threads == 1
    assert config_from_profile("default").threads == 1
    # how fast it trains is not what it learns: cached models stay valid
    assert (
        A.AEConfig.from_profile("default", cpu_threads=1).training_key()
        == A.AEConfig.from_profile("default", cpu_threads=2).training_key()
    )
    monkeypatch.setenv("DISCLATENT_CPU_THREADS", "two")
    with pytest.raises(ValueError, match="DISCLATENT_CPU_THREADS"):
        A.AEConfig.from_profile("default")


# -- the learning-rate schedule -------------------------------------------------------------
def test_learning_rate_schedules_hand_computed():
    from disclatent.autoencoder.objective import learning_rate

    one = replace(TINY, lr=1e-3, schedule="onecycle")
    assert learning_rate(one, 0, 100) == pytest.approx(1e-3)  # start of the warm-up
    assert learning_rate(one, 5, 100) == pytest.approx(2e-3)  # half way: lr + (3 lr - lr) / 2
    assert learning_rate(one, 10, 100) == pytest.approx(3e-3)  # peak after 10 %
    assert learning_rate(one, 55, 100) == pytest.approx(1e-5 + (3e-3 - 1e-5) / 2)  # cos(pi/2)
    assert learning_rate(one, 100, 100) == pytest.approx(1e-5)  # lr / 100 at the end
    cos = replace(TINY, lr=1e-3, schedule="cosine")
    assert learning_rate(cos, 0, 10) == pytest.approx(1e-3)
    assert learning_rate(cos, 10, 10) == pytest.approx(2e-5)  # lr / 50
    assert learning_rate(replace(TINY, schedule="constant"), 7, 10) == TINY.lr


# -- discs from the geometry chapter's store ------------------------------------------------
def test_discs_from_a_larger_store_equal_discs_isolated_at_the_model_size(tmp_path):
    from disclatent.discs.isolation import DiscWarning
    from disclatent.discs.store import build_disc_store, load_disc_store

    arr = np.zeros((60, 100, 40), np.int16)  # (SI, AP, LR) at 1 mm
    arr[8:13, 20:50, 5:33] = 201  # 30 mm AP: fits a 16^3 cube at 2 mm (32 mm)
    arr[24:28, 10:80, 4:36] = 202  # 70 mm AP: fits the 48^3 store (96 mm), not 16^3
    arr[44:49, 30:61, 8:34] = 203  # 31 mm AP
    io.write_image(io.Volume(arr, (1.0, 1.0, 1.0)), tmp_path / "masks" / "7_t1.mha")
    cfg = A.AEConfig(size=16, spacing_mm=(2.0, 2.0, 2.0), channels=(8, 16))
    with pytest.warns(UserWarning, match="does not fit"):
        direct = A.load_discs(tmp_path, cfg)
    store = load_disc_store(
        build_disc_store(tmp_path, tmp_path / "s.npz", spacing_mm=(2.0, 2.0, 2.0), size=48)
    )
    assert store.size == 48 and len(store) == 3
    with pytest.warns(DiscWarning, match="7_t1 disc 2: does not fit the model's 16"):
        cropped = A.discs_from_store(store, cfg)
    np.testing.assert_array_equal(cropped.cubes, direct.cubes)
    cols = ["patient", "series", "ivd_label", "level"]
    pd.testing.assert_frame_equal(cropped.table[cols], direct.table[cols])
    assert cropped.skipped["ivd_label"].tolist() == direct.skipped["ivd_label"].tolist() == [2]
    with pytest.raises(ValueError, match="grid"):
        A.discs_from_store(store, replace(cfg, spacing_mm=(2.0, 2.0, 2.5)))


# -- the chapter's tables and sentences -----------------------------------------------------
def sweep_results(converged: bool = True) -> pd.DataFrame:
    row = dict(
        converged=converged,
        epochs_to_converge=35.0 if converged else np.nan,
        epochs_run=40,
        train_iou=0.99,
        heldout_iou=0.95,
        pca_components=4,
        pca_train_iou=0.9,
        pca_heldout_iou=0.96,
        train_seconds=20.0,
        parameters=1000,
        n_train=30,
        n_heldout=8,
    )
    return pd.DataFrame([{"latent_dim": 8, **row, "train_seconds": 30.0}, {"latent_dim": 4, **row}])


def test_summary_text_hand_written():
    assert A.summary_text(sweep_results(), "quick") == (
        "At k = 4: training IoU 0.9900, held-out IoU 0.9500 (a gap of 0.0400); PCA with 4 "
        "components: training 0.9000, held out 0.9600. The autoencoder converged by the "
        "paper's criterion after 35 epochs. On discs it has never seen, the autoencoder "
        "reconstructs no better than the linear shape model with the same 4 numbers "
        "(0.9500 vs 0.9600)."
    )
    text = A.summary_text(sweep_results(converged=False).iloc[:1], "default")
    assert text.startswith("At k = 8: ")  # without k = 4, the last k swept
    assert "did **not** reach the paper's criterion (0.995) within the `default` budget of " in text
    assert text.endswith(
        "of 40 epochs. On discs it has never seen, the autoencoder "
        "reconstructs no better than the linear shape model with the same 8 "
        "numbers (0.9500 vs 0.9600)."
    )
    nan_held = sweep_results().assign(heldout_iou=np.nan)
    assert "never seen" not in A.summary_text(nan_held, "quick")  # no held-out discs


def test_split_table_and_text():
    table = pd.DataFrame(
        {
            "patient": ["1", "1", "2", "3", "3", "3"],
            "series": ["1_t1", "1_t1", "2_t1", "3_t1", "3_t1", "3_t1"],
            "ivd_label": [1, 2, 1, 1, 2, 3],
            "level": ["L5/S1", "L4/L5", "L5/S1", "L5/S1", "L4/L5", "L3/L4"],
            "n_voxels": [1, 2, 3, 4, 5, 6],
        }
    )
    held = np.array([False, False, True, False, False, False])
    split = A.split_table(table, held)
    assert list(split.columns) == ["patient", "series", "ivd_label", "level", "split"]
    assert split["split"].tolist() == ["train", "train", "heldout", "train", "train", "train"]
    assert A.split_text("phantom-quick", table, held, "cpu") == (
        "Cohort `phantom-quick`: 6 discs of 3 patients (T1 masks). 5 discs of 2 patients "
        "train the models; 1 discs of 1 patients are held out. Device: `cpu`."
    )


def test_timing_and_metrics_tables():
    timing = A.timing_table(sweep_results())
    assert timing.index.tolist() == [8, 4]
    assert timing["seconds per epoch"].tolist() == [0.75, 0.5]  # 30 / 40, 20 / 40
    models = {
        k: A.DiscAE(
            TINY,
            device="cpu",
            metrics={
                "epochs": 3,
                "converged": False,
                "train_iou": 0.5 + k / 100,
                "train_iou_ci": [0.4, 0.6],  # lists are left out
                "train_iou_min": 0.2,
                "heldout_iou": 0.4,
                "train_seconds": 1.5,
                "volumes_per_second": 10.0,
                "parameters": 99,
                "device": "cpu",
                "data": "abc",
            },
        )
        for k in (8, 4)
    }
    table = A.metrics_table(models)
    assert table.index.tolist() == [8, 4]
    assert table.columns[0] == "epochs" and table.columns[-1] == "device"
    assert "train_iou_ci" not in table and "data" not in table
    assert table.loc[4, "train_iou"] == pytest.approx(0.54)
    assert A.main_latent_dim([64, 8, 4, 3]) == 4 and A.main_latent_dim([64, 8]) == 8


def test_settings_table_sets_the_paper_beside_this_run():
    table = A.settings_table(A.AEConfig.from_profile("quick"), "quick")
    assert list(table.columns) == ["paper profile", "this run (quick)"]
    assert table.loc["parameters (k=4)", "paper profile"] == "9,438,789"
    assert table.loc["input cube (voxels)"].tolist() == ["64^3", "32^3"]
    assert table.loc["spacing SI x AP x LR (mm)"].tolist() == ["1.5 x 1.2 x 1.4", "3 x 2.4 x 2.8"]
    assert table.loc["field of view (mm)", "paper profile"] == "96 x 77 x 90"
    assert table.loc["normalisation"].tolist() == ["batch norm", "GroupNorm"]
    assert table.loc["decoder kernel"].tolist() == ["3^3, stride 2", "4^3, stride 2"]
    assert table.loc["loss", "this run (quick)"] == "Dice + BCE; wrong voxels weigh 6"


def test_ideas_table_reads_the_benchmark_file(tmp_path):
    """The chapter's table of training ideas comes from the benchmark's JSON: a converged
    run shows its seconds and epochs, one cut by the cap only the IoU it reached."""
    from disclatent.paths import benchmark_result

    runs = [
        dict(idea="before", converged=False, epochs_to_0995=None, seconds_to_0995=None,
             best_train_iou=0.93, epochs_run=200, seconds_per_epoch=0.9),
        dict(idea="+ batch 2", converged=True, epochs_to_0995=150, seconds_to_0995=170.2,
             best_train_iou=0.9951, epochs_run=150, seconds_per_epoch=1.13, epoch_budget=300,
             heldout_iou=0.71),
    ]  # fmt: skip
    path = benchmark_result("autoencoder_ideas", root=tmp_path)
    assert path == tmp_path / "benchmarks" / "results" / "autoencoder_ideas.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"results": runs}))
    table = A.ideas_table(path)
    assert table.index.tolist() == ["before", "+ batch 2"]
    assert table.loc["before", "seconds to 0.995"] == "-"  # not reached
    assert table.loc["+ batch 2", "seconds to 0.995"] == "170"
    assert table.loc["+ batch 2", "epochs to 0.995"] == "150"
    assert table.loc["before", "best train IoU"] == 0.93
    assert table.loc["+ batch 2", "epoch budget"] == 300
    assert table.loc["+ batch 2", "held-out IoU"] == 0.71
    assert np.isnan(table.loc["before", "epoch budget"])  # not recorded: not guessed


def test_the_sweep_writes_the_split_and_its_models_load_for_new_discs(cubes, tmp_path):
    table = pd.DataFrame({"patient": [str(i // 3) for i in range(12)], "ivd_label": 1})
    held = np.arange(12) >= 9
    split = A.split_table(table, held)
    _, models, _ = A.sweep(
        cubes[~held],
        cubes[held],
        replace(TINY, max_epochs=1),
        (4,),
        out_dir=tmp_path,
        progress=False,
        device="cpu",
        split=split,
    )
    saved = pd.read_csv(tmp_path / "k4" / "discs.csv", dtype={"patient": str})
    pd.testing.assert_frame_equal(saved, split)
    loaded = A.DiscAE.load(tmp_path / "k4", "cpu")  # what later chapters do
    assert (loaded.config.size, loaded.config.spacing_mm) == (16, (2.0, 2.0, 2.0))
    np.testing.assert_array_equal(loaded.encode(cubes), models[4].encode(cubes))


# -- the chapter's figures ------------------------------------------------------------------
def test_reconstruction_picks_and_figures(cubes):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from disclatent.report import autoencoder_plots as P

    picks = P.reconstruction_picks(9, 3, seed=0)
    rng = np.random.default_rng(0)
    expected = [("train", int(i)) for i in rng.choice(9, size=2, replace=False)]
    assert picks == [*expected, ("held out", int(rng.integers(3)))]
    assert P.reconstruction_picks(1, 0) == [("train", 0)]
    ae = A.fit(cubes[:9], replace(TINY, max_epochs=1), device="cpu", progress=False)
    pca = A.PCABaseline(4).fit(cubes[:9])
    figs = P.reconstruction_figures(cubes[:9], cubes[9:], {4: ae}, {4: pca}, (2.0, 2.0, 2.0))
    assert len(figs) == 3 and len(figs[0].axes) == 3 * 3  # planes x (input, k=4, PCA)
    sagittal = figs[0].axes[0].images[0]
    assert sagittal.get_extent() == [0, 32.0, 0, 32.0]  # 16 voxels x 2 mm
    assert figs[0].axes[1].get_title().startswith("k=4 (IoU ")
    ae.history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "stage": ["decoder", "decoder", "encoder"],
            "loss": [1.0, 0.5, 0.1],
            "decoder_iou": [0.5, 0.9, np.nan],
            "train_iou": [np.nan, np.nan, 0.996],
        }
    )
    curves = P.plot_training_curves({4: ae}, 0.995)
    # decoder stage dotted (its codes' IoU), the autoencoder solid; 1 - IoU on a log axis
    assert [line.get_linestyle() for line in curves.axes[0].get_lines()] == [":", "-"]
    dotted, solid, target = curves.axes[1].get_lines()
    np.testing.assert_allclose(dotted.get_ydata()[:2], [0.5, 0.1])
    assert solid.get_label() == "k=4" and solid.get_ydata()[2] == pytest.approx(0.004)
    assert target.get_ydata()[0] == pytest.approx(0.005)
    assert curves.axes[1].get_yscale() == "log"
    results = sweep_results()
    for col, _ in P.IOU_BARS:
        results[col + "_lo"], results[col + "_hi"] = results[col] - 0.01, results[col] + 0.01
    bars = P.plot_iou_bars(results, 0.995)
    assert len(bars.axes[0].patches) == 2 * 4  # (train, held out) x (AE, PCA) for 2 k
    assert bars.axes[0].get_ylim() == pytest.approx((0.85, 1.0))  # lowest lower bound - 0.05
    plt.close("all")
