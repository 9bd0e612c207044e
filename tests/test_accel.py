"""The GPU code paths (disclatent.accel), run on the CPU: device choice, bfloat16 autocast of
the training steps only, cuDNN switches, the batch stream, and the `paper` profile's
segmentation and autoencoder paths end to end with one or two steps per model."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import disclatent.autoencoder as A
from conftest import ellipsoids
from disclatent import accel
from disclatent.data.spider import SpiderFolder
from disclatent.profiles import get_profile
from disclatent.segmentation import training as seg_training
from disclatent.segmentation.config import config_from_profile
from disclatent.segmentation.data import load_case, make_batch
from disclatent.segmentation.inference import predict_images

CPU = torch.device("cpu")


def test_amp_modes_resolve_per_device():
    assert accel.amp_dtype("off", CPU) is None
    assert accel.amp_dtype("bf16", CPU) is torch.bfloat16
    assert accel.amp_dtype("auto", CPU) is None  # auto: bfloat16 on CUDA only
    with pytest.raises(ValueError, match="unknown amp mode 'fp8'"):
        accel.amp_dtype("fp8", CPU)
    with pytest.raises(ValueError, match="amp mode"):
        config_from_profile("quick", amp="half")
    with pytest.raises(ValueError, match="amp mode"):
        A.AEConfig(amp="half")


def test_autocast_runs_convolutions_in_bfloat16_only_when_asked():
    conv = torch.nn.Conv3d(1, 2, 3)
    x = torch.randn(1, 1, 6, 6, 6)
    with accel.autocast(CPU, torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
    with accel.autocast(CPU, None):
        assert conv(x).dtype == torch.float32


def test_profiles_switch_mixed_precision_and_autotuning_on_for_the_gpu_only():
    for name in ("quick", "default"):
        p = get_profile(name)
        assert (p.amp, p.deterministic) == ("off", True)
    paper = get_profile("paper")
    assert (paper.amp, paper.deterministic) == ("auto", False)
    seg, ae = config_from_profile("paper"), A.AEConfig.from_profile("paper", 4)
    assert (seg.amp, seg.deterministic) == ("auto", False)
    assert (ae.amp, ae.deterministic) == ("auto", False)


def test_backend_switches_leave_the_cpu_alone_and_read_the_environment(monkeypatch):
    before = (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    accel.configure_backends(CPU, deterministic=False)
    assert (torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before
    monkeypatch.setenv("DISCLATENT_DETERMINISTIC", "1")
    assert accel.deterministic_setting(False) is True
    monkeypatch.setenv("DISCLATENT_DETERMINISTIC", "0")
    assert accel.deterministic_setting(True) is False
    monkeypatch.setenv("DISCLATENT_DETERMINISTIC", "maybe")
    with pytest.raises(ValueError, match="DISCLATENT_DETERMINISTIC"):
        accel.deterministic_setting(True)
    assert accel.gpu_memory_peak_gb(CPU) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_backend_switches_on_cuda(monkeypatch):
    monkeypatch.delenv("DISCLATENT_DETERMINISTIC", raising=False)
    cuda = torch.device("cuda")
    try:
        accel.configure_backends(cuda, deterministic=False)
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        accel.configure_backends(cuda, deterministic=True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_batch_stream_made_ahead_is_the_serial_sequence(phantom_dir):
    cfg = config_from_profile("quick", model="UNet", batch_size=2)
    folder = SpiderFolder(phantom_dir)
    series = folder.series()[:2]
    cases = [
        load_case(folder.image_path(s), folder.mask_path(s), cfg.network_spacing) for s in series
    ]
    serial_rng, ahead_rng = np.random.default_rng(3), np.random.default_rng(3)
    expected = [
        make_batch(cases, 2, cfg.patch, serial_rng, cfg.pos_fraction, cfg.augment) for _ in range(3)
    ]
    stream = seg_training.BatchStream(cases, cfg, ahead_rng, CPU, ahead=True)
    try:
        got = [stream.next() for _ in range(3)]
    finally:
        stream.close()
    for (x, y), (xt, yt) in zip(expected, got, strict=True):
        np.testing.assert_array_equal(x, xt.numpy())
        np.testing.assert_array_equal(y, yt.numpy())


def _record_training_dtypes(monkeypatch) -> list[torch.dtype]:
    """Patch segmentation's model builder so every network logs its output dtype in train
    mode (the training steps) and in eval mode (validation, inference)."""
    seen: list[tuple[bool, torch.dtype]] = []
    build = seg_training.build_model

    def build_and_watch(cfg):
        model = build(cfg)
        model.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
        return model

    monkeypatch.setattr(seg_training, "build_model", build_and_watch)
    return seen  # type: ignore[return-value]


@pytest.mark.parametrize("model", ["UNet", "SegResNet", "SwinUNETR"])
def test_paper_segmentation_path_trains_and_predicts_on_the_cpu(
    model, phantom_dir, tmp_path, monkeypatch
):
    """The `paper` profile's settings for each model (its SwinUNETR-V2, its U-Net channels,
    SegResNet filters, batch 4, deterministic off, autotuning), with bfloat16 autocast forced
    on the CPU and sizes cut so that it runs here: one epoch of two steps, validation, then
    predicting the test site. The training steps run in bfloat16, validation and inference in
    float32."""
    small = {"patch": (64, 64, 32), "swin_feature_size": 12} if model == "SwinUNETR" else {}
    cfg = config_from_profile(
        "paper", model, amp="bf16", max_epochs=1, iters_per_epoch=2, threads=1, **small
    )
    assert cfg.deterministic is False and cfg.batch_size == 4
    seen = _record_training_dtypes(monkeypatch)
    out = tmp_path / model
    done = seg_training.train(phantom_dir, out, cfg, log=None)
    assert done["status"] == "complete" and done["epochs"] == 1
    assert done["amp"] == "bfloat16" and done["device"] == "cpu"
    assert done["gpu_memory_peak_gb"] is None and done["gpu"] is None
    history = pd.read_csv(out / "history.csv")
    assert history["iterations"].tolist() == [2] and np.isfinite(history["train_loss"]).all()
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}
    assert json.loads((out / "config.json").read_text())["config"]["amp"] == "bf16"
    assert seg_training.is_trained(out, cfg)
    assert seg_training.is_trained(out, replace(cfg, deterministic=True))  # speed, not identity
    assert not seg_training.is_trained(out, replace(cfg, amp="off"))

    split = pd.read_csv(out / "split.csv")
    test_series = split.loc[split["role"] == "test", "series"].tolist()
    table = predict_images(out, phantom_dir, tmp_path / "pred", series=test_series)
    assert len(table) == len(test_series) >= 1
    assert all((tmp_path / "pred" / "masks" / f"{s}.mha").exists() for s in test_series)


def test_older_segmentation_models_without_amp_are_reused(phantom_dir, tmp_path):
    cfg = config_from_profile("quick", "UNet", max_epochs=1, iters_per_epoch=1, threads=1)
    out = tmp_path / "m"
    seg_training.train(phantom_dir, out, cfg, log=None)
    saved = json.loads((out / "config.json").read_text())
    del saved["config"]["amp"]  # a model trained before the field existed
    (out / "config.json").write_text(json.dumps(saved))
    assert seg_training.is_trained(out, cfg)
    assert not seg_training.is_trained(out, replace(cfg, amp="bf16"))


def test_paper_autoencoder_path_in_bfloat16_keeps_a_float32_criterion():
    """The `paper` autoencoder (64^3, 32-512 channels, batch norm, joint training) for two
    epochs with bfloat16 autocast forced on the CPU: the steps run in bfloat16 (the
    batch-norm recalibration, without gradients, in float32), while the
    IoU criterion of every epoch is the float32 eval-mode IoU of the weights (recomputed
    here without autocast), so mixed precision cannot change whether a model converged."""
    cfg = replace(
        A.AEConfig.from_profile("paper", 4),
        max_epochs=2,
        stop_at_target=False,
        cpu_threads=1,
        amp="bf16",
    )
    assert cfg.strategy == "joint" and cfg.norm == "batch" and cfg.deterministic is False
    discs = ellipsoids(3, size=64, seed=5)
    seen: list[torch.dtype] = []
    ae = A.DiscAE(cfg, device="cpu")
    real_build = A.training.build_model

    def build_and_watch(config):
        model = real_build(config)
        model.output_layer.register_forward_hook(
            lambda m, i, o: seen.append(o.dtype) if torch.is_grad_enabled() else None
        )
        return model

    A.training.build_model = build_and_watch
    try:
        ae.fit(discs, progress=False)
    finally:
        A.training.build_model = real_build
    assert seen and set(seen) == {torch.bfloat16}
    assert ae.metrics["amp"] == "bfloat16" and ae.metrics["gpu_memory_peak_gb"] is None
    assert len(ae.history) == 2 and np.isfinite(ae.history["loss"]).all()
    last = ae.history["train_iou"].iloc[-1]
    np.testing.assert_allclose(ae.iou(discs).mean(), last)  # float32, eval mode
    assert ae.metrics["converged"] == bool(last >= cfg.target_iou)


def test_decoder_first_in_bfloat16_ends_its_stage_on_a_float32_iou():
    """With autocast, the decoder stage's IoU (which ends the stage) comes from a float32
    eval pass of the codes, not from the bfloat16 training passes."""
    base = replace(
        A.AEConfig.from_profile("quick", 2),
        max_epochs=2,
        encoder_epochs=1,
        stop_at_target=False,
        cpu_threads=1,
    )
    discs = ellipsoids(4, size=base.size, seed=2)
    plain = A.fit(discs, base, device="cpu", progress=False)
    mixed = A.fit(discs, replace(base, amp="bf16"), device="cpu", progress=False)
    assert plain._step_ious_exact and not mixed._step_ious_exact
    rows = mixed.history[mixed.history["stage"] == "decoder"]
    assert len(rows) == 2 and rows["decoder_iou"].between(0, 1).all()
    assert mixed.metrics["amp"] == "bfloat16" and plain.metrics["amp"] == "float32"


def test_gpu_run_record_is_shown_or_its_absence_said(tmp_path):
    from disclatent.report.gpu_run import gpu_run_table, gpu_run_text, read_gpu_run

    assert read_gpu_run(tmp_path / "none.json") is None
    assert "No run of the `paper` profile on a GPU" in gpu_run_text(None, 2.0)
    record = {
        "device": "NVIDIA H100 80GB HBM3",
        "profile": "paper",
        "chapter_seconds": {"00_data": 60.0, "01_segmentation": 900.0},
        "total_minutes": 16.0,
        "gpu_memory_peak_gb": 21.44,
        "complete": False,
        "date": "2026-12-06",
    }
    path = tmp_path / "paper-gpu.json"
    path.write_text(json.dumps(record))
    got = read_gpu_run(path)
    text = gpu_run_text(got, 2.0)
    assert "took 16 minutes (7.5 times faster than the paper's 2 hours)" in text
    assert "GPU memory peak of 21.4 GB" in text and "partial" in text
    table = gpu_run_table(got)
    assert table.iloc[:, 1].tolist() == [1.0, 15.0]
    path.write_text(json.dumps({"device": "x"}))
    with pytest.raises(ValueError, match="missing chapter_seconds, profile, total_minutes"):
        read_gpu_run(path)


def test_a_block_of_minutes_starts_no_chapter_once_spent(tmp_path, capsys):
    from disclatent.report.book import execute_all

    assert execute_all("quick", "", tmp_path / "_build", minutes=0) == []
    assert "00_data: not started (the 0 minutes are spent)" in capsys.readouterr().out
