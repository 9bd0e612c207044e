"""Segmentation: grid and axis mapping, normalisation, split, loss, models, inference,
instance labelling, evaluation, and one end-to-end run of the command line."""

from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import oblique_direction
from disclatent.cli import main
from disclatent.data import spider
from disclatent.data import volume as io
from disclatent.segmentation.data import (
    NETWORK_SPACING,
    load_case,
    make_split,
    normalise_intensity,
    resample_to_spacing,
    site_table,
)
from disclatent.segmentation.evaluation import evaluate_series, label_instances
from disclatent.segmentation.training import (
    SegConfig,
    Segmenter,
    build_model,
    config_from_profile,
    is_trained,
    make_loss,
    resolve_device,
    train,
    write_pred_cohort,
)
from disclatent.stats import bootstrap_mean_ci

# index axes i -> Superior, j -> Anterior, k -> Left: no array axis is where canonical
# LPS puts it, and one is flipped
PERMUTED = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])


def _world_centroid(vol: io.Volume, value) -> np.ndarray:
    kji = np.argwhere(vol.array == value).mean(axis=0)
    return vol.index_to_world(kji[::-1])


def test_resampling_maps_spacing_to_anatomical_axes():
    arr = np.zeros((30, 40, 50), np.float32)  # (k, j, i)
    arr[10:14, 5:25, 20:30] = 100.0
    vol = io.Volume(arr, (0.5, 0.7, 3.0), (5.0, -20.0, 40.0), PERMUTED)
    assert vol.orientation != "LPS"
    out = resample_to_spacing(vol)
    assert out.orientation == "LPS"
    # spacing along i (left-right), j (anterior-posterior), k (superior-inferior)
    np.testing.assert_allclose(out.spacing, (1.4, 1.2, 1.5))
    axes = out.anatomical_axes()
    assert axes["SI"][0] == 0 and axes["AP"][0] == 1 and axes["LR"][0] == 2
    # the field of view is kept: extent along each world axis within one output voxel
    extent_in = np.abs(PERMUTED @ (np.array(vol.size) * vol.spacing))
    extent_out = np.array(out.size) * out.spacing
    assert np.all(np.abs(extent_in - extent_out) <= np.array(out.spacing) / 2 + 1e-6)
    # the bright block stays at the same world position
    np.testing.assert_allclose(_weighted_centroid(out), _weighted_centroid(vol), atol=1.0)


def _weighted_centroid(vol: io.Volume) -> np.ndarray:
    a = np.clip(vol.array.astype(float), 0, None)
    kji = np.array(np.nonzero(a > 0)).T
    w = a[a > 0]
    return vol.index_to_world((kji * w[:, None]).sum(0)[::-1] / w.sum())


def test_label_resampling_is_nearest_neighbour_and_does_not_dilate():
    # a thin "disc": 6 mm thick in SI, on a grid with 0.6 mm in-plane and 3.5 mm slices
    arr = np.zeros((100, 80, 20), np.int16)
    arr[45:55, 10:60, 4:16] = 201
    arr[70:80, 10:60, 4:16] = 202
    vol = io.Volume(arr, (3.5, 0.6, 0.6))
    out = resample_to_spacing(vol, label=True)
    assert set(np.unique(out.array)) == {0, 201, 202}
    for v in (201, 202):
        before = (arr == v).sum() * vol.voxel_volume_mm3
        after = (out.array == v).sum() * out.voxel_volume_mm3
        assert abs(after / before - 1) < 0.12, (v, after / before)


def test_normalisation_uses_the_image_only(phantom_dir):
    assert list(inspect.signature(normalise_intensity).parameters)[0] == "array"
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 100.0, (20, 30, 10)).astype(np.float32)
    y = normalise_intensity(x)
    assert y.min() == 0.0 and y.max() == 1.0
    np.testing.assert_allclose(normalise_intensity(3.0 * x + 50.0), y, atol=1e-5)
    # a test scan is preprocessed identically with or without its mask
    folder = spider.SpiderFolder(phantom_dir)
    with_mask = load_case(folder.image_path("4_t1"), folder.mask_path("4_t1"))
    without = load_case(folder.image_path("4_t1"))
    np.testing.assert_array_equal(with_mask.image, without.image)
    assert with_mask.label.any() and without.label is None


def test_split_holds_out_one_site_by_patient(phantom_dir):
    sites = site_table(phantom_dir, modalities=None)
    split = make_split(sites, "auto", 0.2, seed=3)
    assert set(split.loc[split["role"] == "test", "site"]) == {"D"}
    assert "D" not in set(split.loc[split["role"] != "test", "site"])
    assert split.groupby("patient")["role"].nunique().max() == 1  # T1 and T2 together
    assert {"train", "val", "test"} <= set(split["role"])

    many = pd.DataFrame(
        {
            "patient": [str(i) for i in range(40)],
            "site": list("AAAAAAAAAAAABBBBBBBBBBCCCCCCCCCCDDDDDDDD"),
        }
    )
    many["series"] = many["patient"] + "_t1"
    a = make_split(many, "auto", 0.2, seed=1)
    assert a.equals(make_split(many, "auto", 0.2, seed=1))  # seeded
    assert set(a.loc[a["role"] == "test", "site"]) == {"D"}  # 8/40 = 20 %
    val = a[a["role"] == "val"]
    assert len(val) == round(0.2 * 32) and set(val["site"]) == {"A", "B", "C"}
    explicit = make_split(many, "B", 0.2, seed=1)
    assert set(explicit.loc[explicit["role"] == "test", "site"]) == {"B"}
    with pytest.raises(ValueError, match="not in the cohort"):
        make_split(many, "E")


def test_loss_is_bce_plus_dice_with_one_sigmoid():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, 8) * 3
    target = (torch.rand(2, 1, 8, 8, 8) > 0.7).float()
    p = torch.sigmoid(logits)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    dice = 1 - (2 * (p * target).sum() + 1e-5) / (p.sum() + target.sum() + 1e-5)
    got = make_loss()(logits, target)
    assert torch.allclose(got, bce + dice, atol=1e-5)
    # a second sigmoid (the published bug) gives a different value
    p2 = torch.sigmoid(p)
    twice = (
        torch.nn.functional.binary_cross_entropy_with_logits(p, target)
        + 1
        - (2 * (p2 * target).sum() + 1e-5) / (p2.sum() + target.sum() + 1e-5)
    )
    assert not torch.allclose(got, twice, atol=1e-3)


@pytest.mark.parametrize("name", ["UNet", "SegResNet", "SwinUNETR"])
def test_models_are_selectable_by_name(name):
    patch = (64, 32, 32)
    cfg = SegConfig(
        model=name, patch=patch, unet_channels=(4, 8, 16), segresnet_filters=8, swin_feature_size=12
    )
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *patch))
    assert out.shape == (2, 1, *patch)
    expected = {"UNet": "UNet", "SegResNet": "SegResNet", "SwinUNETR": "SwinUNETR"}[name]
    assert type(model).__name__ == expected
    if name == "SwinUNETR":
        assert model.swinViT.use_v2 is True


def test_unknown_model_and_bad_patch_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        SegConfig(model="VNet")
    with pytest.raises(ValueError, match="divisible by 32"):
        SegConfig(model="SwinUNETR", patch=(64, 64, 40))
    with pytest.raises(ValueError, match="larger than 32"):
        SegConfig(model="SwinUNETR", patch=(32, 32, 32))


class _Constant(torch.nn.Module):
    def __init__(self, logit: float):
        super().__init__()
        self.logit = logit
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.full_like(x, self.logit)


@pytest.mark.parametrize("logit,expect_foreground", [(0.3, True), (-0.3, False)])
def test_inference_thresholds_probabilities_not_logits(logit, expect_foreground):
    arr = np.random.default_rng(0).normal(100, 10, (40, 30, 12)).astype(np.float32)
    image = io.Volume(arr, (3.3, 0.6, 0.6), (1.0, 2.0, 3.0))
    seg = Segmenter.from_model(_Constant(logit), SegConfig(patch=(32, 32, 32)))
    prob = seg.probability(image)
    assert prob.same_grid(image)
    np.testing.assert_allclose(prob.array, 1 / (1 + np.exp(-logit)), atol=1e-5)
    mask, info = seg.segment(image)
    assert mask.same_grid(image)
    # sigmoid(0.3) = 0.57 > 0.5: all foreground; a threshold on logits would give none
    assert bool((mask.array > 0).all()) is expect_foreground
    assert info["n_discs"] == (1 if expect_foreground else 0)


def _blob_mask(direction: np.ndarray) -> io.Volume:
    arr = np.zeros((60, 20, 20), np.uint8)
    arr[5:10, 5:15, 5:15] = 1  # k = 5..9
    arr[25:30, 5:15, 5:15] = 1  # k = 25..29
    arr[45:50, 5:15, 5:15] = 1  # k = 45..49
    arr[55, 2, 2] = 1  # a one-voxel speck: dropped
    return io.Volume(arr, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction)


@pytest.mark.parametrize("k_points_superior", [True, False])
def test_instances_are_numbered_upward_from_the_header(k_points_superior):
    direction = (
        np.eye(3) if k_points_superior else np.diag([1.0, 1.0, -1.0]) @ np.diag([-1.0, 1.0, 1.0])
    )
    fg = _blob_mask(direction)
    labelled, info = label_instances(fg, min_volume_mm3=100)
    assert info["n_components"] == 4 and info["n_dropped"] == 1 and info["n_discs"] == 3
    z = {v: _world_centroid(labelled, v)[2] for v in (201, 202, 203)}
    assert z[201] < z[202] < z[203]  # 201 is the most inferior, whatever the array order
    bottom_k = 7 if k_points_superior else 47
    assert labelled.array[bottom_k, 10, 10] == 201


def test_instances_follow_an_oblique_header():
    fg = _blob_mask(oblique_direction(30.0))
    labelled, _ = label_instances(fg, min_volume_mm3=100)
    z = [_world_centroid(labelled, v)[2] for v in (201, 202, 203)]
    assert z == sorted(z)


def test_evaluation_reports_missed_extra_and_mislabelled_discs():
    gt = np.zeros((60, 20, 20), np.int16)
    gt[5:10, 5:15, 5:15] = 201
    gt[25:30, 5:15, 5:15] = 202
    gt[45:50, 5:15, 5:15] = 203
    pred = np.zeros_like(gt)
    pred[25:30, 5:15, 5:15] = 201  # L5/S1 missed: everything above is shifted by one
    pred[45:50, 5:15, 5:14] = 202
    pred[55:58, 2:6, 2:6] = 203  # spurious component
    vol = io.Volume(gt, (1.0, 1.0, 1.0))
    row, discs = evaluate_series(vol.with_array(pred), vol, "s")
    inter = 500 + 450
    union = 1500 + 48
    assert row["iou"] == pytest.approx(inter / union)
    assert row["dsc"] == pytest.approx(2 * inter / (1500 + 500 + 450 + 48))
    assert (row["gt_discs"], row["pred_discs"]) == (3, 3)
    assert (row["detected"], row["missed"], row["extra"], row["mislabelled"]) == (2, 1, 1, 2)
    by = discs.set_index("ivd_label")
    assert not by.loc[1, "detected"] and by.loc[1, "dice"] == 0
    assert by.loc[2, "pred_level"] == "L5/S1" and not by.loc[2, "label_correct"]
    assert by.loc[3, "dice"] == pytest.approx(2 * 450 / 950)


def test_bootstrap_interval():
    assert bootstrap_mean_ci([0.8] * 5) == (0.8, 0.8, 0.8)
    x = np.random.default_rng(1).normal(0.85, 0.05, 30)
    est, lo, hi = bootstrap_mean_ci(x, seed=2)
    assert lo < est < hi and est == pytest.approx(x.mean())
    assert bootstrap_mean_ci(x, seed=2) == (est, lo, hi)
    assert 0.01 < hi - lo < 0.1


def test_profiles_carry_the_published_settings():
    paper = config_from_profile("paper")
    assert paper.model == "SwinUNETR" and paper.max_epochs == 200 and paper.patience == 15
    assert paper.batch_size == 4 and paper.lr == 1e-3 and paper.device == "auto"
    assert paper.max_minutes is None and paper.spacing == NETWORK_SPACING
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    default = config_from_profile("default")
    assert default.patience == 15 and default.lr == 1e-3
    assert config_from_profile("quick", model="SegResNet").model == "SegResNet"


@pytest.mark.slow
def test_train_and_predict_from_the_command_line(phantom_dir, tmp_path):
    model_dir = tmp_path / "model"
    rc = main(
        [
            "segment",
            "train",
            "--data",
            str(phantom_dir),
            "--out",
            str(model_dir),
            "--profile",
            "quick",
            "--model",
            "UNet",
            "--max-epochs",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0
    for name in ("config.json", "split.csv", "model.safetensors", "history.csv", "train.json"):
        assert (model_dir / name).exists(), name
    split = pd.read_csv(model_dir / "split.csv", dtype={"patient": str})
    assert set(split.loc[split["role"] == "test", "site"]) == {"D"}
    history = pd.read_csv(model_dir / "history.csv")
    assert 1 <= len(history) <= 2 and history["val_iou"].between(0, 1).all()
    done = json.loads((model_dir / "train.json").read_text())
    assert done["best_epoch"] == int(history["val_iou"].idxmax()) + 1

    # predict from a folder holding only the test image: no mask is needed or read
    test_series = split.loc[split["role"] == "test", "series"].tolist()
    images = tmp_path / "images_only"
    images.mkdir()
    folder = spider.SpiderFolder(phantom_dir)
    for s in test_series:
        shutil.copy(folder.image_path(s), images / f"{s}.mha")
    out = tmp_path / "pred"
    assert (
        main(
            [
                "segment",
                "predict",
                "--model",
                str(model_dir),
                "--images",
                str(images),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    for s in test_series:
        image, mask = io.read_pair(folder.image_path(s), out / "masks" / f"{s}.mha")
        values = set(np.unique(mask.array).tolist()) - {0}
        assert all(201 <= v <= 225 for v in values)

    # the test cohort as a SPIDER folder that the data layer reads unchanged
    cohort = tmp_path / "cohort"
    cfg = SegConfig.from_json(json.loads((model_dir / "config.json").read_text())["config"])
    table = write_pred_cohort(model_dir, phantom_dir, cohort)
    assert sorted(table["series"]) == sorted(test_series)
    spider.SpiderFolder(cohort).check()
    overview = spider.read_overview(cohort / "overview.csv")
    assert sorted(overview["series"]) == sorted(test_series)
    spider.disc_table(cohort, modalities=None)  # joins gradings; must not raise
    # a finished run with the same config and data is reused, not retrained
    assert is_trained(model_dir, cfg)
    again = train(phantom_dir, model_dir, cfg, reuse=True, log=None)
    assert again == done


def test_predict_reports_a_missing_model(tmp_path, capsys):
    rc = main(
        [
            "segment",
            "predict",
            "--model",
            str(tmp_path / "nothing"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 2
    assert "not a trained model folder" in capsys.readouterr().err
