"""Segmentation: grid and axis mapping, normalisation, split, loss, models, inference,
instance labelling, evaluation, Supplementary Table 1, the chapter's figures, and one
end-to-end run of the command line."""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import oblique_direction
from disclatent import published
from disclatent.accel import resolve_device
from disclatent.cli import main
from disclatent.conventions import PAPER_SPACING, Spacing
from disclatent.data import spider
from disclatent.data import volume as io
from disclatent.formatting import format_ci
from disclatent.parallel import Task, code_version
from disclatent.segmentation import evaluation as ev
from disclatent.segmentation.config import SegConfig, config_from_profile
from disclatent.segmentation.data import (
    held_out_site,
    load_case,
    make_split,
    normalise_intensity,
    resample_to_spacing,
    site_table,
    spacing_table,
    split_counts,
)
from disclatent.segmentation.evaluation import evaluate_series, label_instances
from disclatent.segmentation.inference import (
    Segmenter,
    evaluate_every_series,
    evaluate_test_site,
    write_pred_cohort,
)
from disclatent.segmentation.network import build_model, make_loss
from disclatent.segmentation.training import (
    binary_overlap,
    is_trained,
    read_split,
    settings_table,
    train,
    training_table,
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


def _n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _unet_parameters(channels: tuple[int, ...]) -> int:
    """MONAI's UNet without residual units, counted by hand: a 3^3 convolution (weights +
    bias) and one PReLU weight per block; level ``i`` goes down ``c[i-1] -> c[i]`` and back
    up from its skip plus what came from below, the top block ends in 1 logit, no PReLU."""

    def conv(c_in: int, c_out: int) -> int:
        return c_in * c_out * 27 + c_out

    n = conv(channels[-2], channels[-1]) + 1  # the bottom block
    for level, c in enumerate(channels[:-1]):
        top = level == 0
        below = channels[-1] if level == len(channels) - 2 else c
        n += conv(1 if top else channels[level - 1], c) + 1  # down
        n += conv(c + below, 1 if top else channels[level - 1]) + (0 if top else 1)  # up
    return n


def _conv_widths(model: torch.nn.Module) -> set[int]:
    kinds = (torch.nn.Conv3d, torch.nn.ConvTranspose3d)
    return {m.out_channels for m in model.modules() if isinstance(m, kinds)}


@pytest.mark.parametrize("name", ["UNet", "SegResNet", "SwinUNETR"])
def test_models_are_selectable_by_name(name):
    from monai.networks import nets

    patch = (64, 32, 32)
    cfg = SegConfig(
        model=name, patch=patch, unet_channels=(4, 8, 16), segresnet_filters=8, swin_feature_size=12
    )
    model = build_model(cfg).eval()
    assert isinstance(model, getattr(nets, name))
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(torch.randn(2, 1, *patch))
    assert out.shape == (2, 1, *patch)
    assert out.min() < 0 < out.max()  # logits: no final activation, one sigmoid in the loss
    # the widths follow the configuration; twice the width, about four times the weights
    wider = {"unet_channels": (8, 16, 32), "segresnet_filters": 16, "swin_feature_size": 24}
    ratio = _n_parameters(build_model(replace(cfg, **wider))) / _n_parameters(model)
    assert 3.8 < ratio < 4.0
    if name == "UNet":
        assert _conv_widths(model) == {1, 4, 8, 16}
        assert _n_parameters(model) == _unet_parameters((4, 8, 16)) == 7273
        assert _n_parameters(build_model(SegConfig())) == _unet_parameters((8, 16, 32, 64))
    elif name == "SegResNet":
        assert model.convInit.conv.out_channels == 8
        assert _conv_widths(model) == {1, 8, 16, 32, 64}  # doubled at each of 3 stages
    else:
        assert model.swinViT.use_v2 is True  # SwinUNETR-V2, the paper's model
        assert model.swinViT.patch_embed.proj.out_channels == 12
        assert _conv_widths(model) == {1, 12, 24, 48, 96, 192}


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
    assert paper.max_minutes is None and paper.spacing == PAPER_SPACING.xyz
    assert paper.network_spacing == PAPER_SPACING
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    default = config_from_profile("default")
    assert default.patience == 15 and default.lr == 1e-3
    assert config_from_profile("quick", model="SegResNet").model == "SegResNet"


def test_spacing_axes_are_named_never_guessed():
    vol = io.Volume(np.zeros((20, 30, 40), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="Spacing"):
        resample_to_spacing(vol, (1.4, 1.2, 1.5))  # a bare tuple: LR first, or SI first?
    out = resample_to_spacing(vol, Spacing(si=4.0, ap=2.0, lr=1.0))
    assert out.spacing == (1.0, 2.0, 4.0)  # ITK (x, y, z) = (LR, AP, SI)
    assert out.array.shape == (5, 15, 40)  # numpy (SI, AP, LR): 20/4, 30/2, 40/1
    # a config given a Spacing stores ITK order (as config.json always has) and reads back
    cfg = SegConfig(spacing=Spacing(si=1.5, ap=1.2, lr=1.4))
    assert cfg.spacing == (1.4, 1.2, 1.5) == SegConfig().spacing
    again = SegConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert again == cfg and again.network_spacing == Spacing(si=1.5, ap=1.2, lr=1.4)
    table = spacing_table().set_index("axis")["spacing (mm)"]
    assert table.to_dict() == {
        "LR (x, index i)": 1.4,
        "AP (y, index j)": 1.2,
        "SI (z, index k)": 1.5,
    }


def test_binary_overlap_by_hand():
    prob = np.zeros((2, 2, 3), np.float32)
    prob[0, 0, :3] = 0.9  # 3 predicted voxels
    prob[1, 1, 2] = 0.5  # not above the threshold
    label = np.zeros((2, 2, 3), np.uint8)
    label[0, 0, 1:] = 1
    label[1, 0, :2] = 1  # 4 true voxels, 2 shared
    iou, dice = binary_overlap(prob, label, 0.5)
    assert iou == pytest.approx(2 / 5) and dice == pytest.approx(2 * 2 / 7)
    assert binary_overlap(np.zeros(3), np.zeros(3), 0.5) == (1.0, 1.0)


def _split(roles: str, sites: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series": [f"{i}_t1" for i in range(len(roles))],
            "patient": [str(i) for i in range(len(roles))],
            "site": list(sites),
            "role": [{"t": "train", "v": "val", "x": "test"}[r] for r in roles],
            "site_source": "institution",
        }
    )


def test_split_tables(tmp_path):
    split = _split("ttvxxt", "AABCCB")
    assert held_out_site(split) == "C"
    counts = split_counts(split)
    assert counts.loc["A"].to_dict() == {"test": 0, "train": 2, "val": 0}
    assert counts.loc["B"].to_dict() == {"test": 0, "train": 1, "val": 1}
    assert counts.loc["C"].to_dict() == {"test": 2, "train": 0, "val": 0}
    with pytest.raises(io.DataError, match="exactly one site"):
        held_out_site(_split("ttvxxt", "AABCAB"))
    dirs = [tmp_path / "UNet", tmp_path / "SegResNet"]
    for d in dirs:
        d.mkdir()
        split.to_csv(d / "split.csv", index=False)
    pd.testing.assert_frame_equal(read_split(dirs), split)
    _split("tvtxxt", "AABCCB").to_csv(dirs[1] / "split.csv", index=False)
    with pytest.raises(io.DataError, match="split differs"):
        read_split(dirs)


def test_training_and_settings_tables():
    run = {
        "parameters": 28365,
        "epochs": 7,
        "best_epoch": 5,
        "best_val_iou": 0.123456,
        "stop_reason": "max epochs",
        "seconds": 93.0,
        "device": "cpu",
        "threads": 1,
        "load_avg_start": 1.5,
    }
    row = training_table({"UNet": run}).iloc[0]
    assert row["model"] == "UNet" and row["best validation IoU"] == 0.1235
    assert row["training (min)"] == 1.6 and row["best epoch"] == 5
    quick = settings_table(config_from_profile("quick"))["every model"]
    assert quick["patch (SI, AP, LR voxels)"] == "64 x 64 x 32" and quick["batch"] == 2
    assert quick["iterations per epoch"] == 2 and quick["wall-clock cap per model"] == "none"
    default = settings_table(config_from_profile("default"))["every model"]
    assert default["iterations per epoch"] == "one pass (4 patches per series)"
    assert default["wall-clock cap per model"] == "1.5 min"
    assert default["early stopping"] == "validation IoU, patience 15"


def _evaluation(iou, dsc, seconds=0.5) -> ev.ModelEvaluation:
    n = len(iou)
    series = pd.DataFrame(
        {
            "series": [f"{i}_t1" for i in range(n)],
            "iou": iou,
            "dsc": dsc,
            "gt_discs": [6] * n,
            "detected": [6] * (n - 1) + [5],
            "missed": [0] * (n - 1) + [1],
            "extra": [0] * (n - 1) + [2],
            "mislabelled": [0] * n,
        }
    )
    return ev.ModelEvaluation(series, pd.DataFrame(), seconds)


def test_supplementary_table_1_puts_the_models_beside_the_paper():
    evals = {
        "UNet": _evaluation([0.5, 0.6, 0.7], [0.6, 0.7, 0.8], seconds=0.234),
        "SwinUNETR": _evaluation([0.8, 0.8], [0.9, 0.9], seconds=2.0),
    }
    table = ev.supplementary_table_1(evals, {"UNet": 90.0, "SwinUNETR": 600.0}, "phantom, site D")
    assert list(table.columns) == [
        "model", "data", "series", "IoU", "IoU low", "IoU high", "DSC", "DSC low", "DSC high",
        "IoU (95% CI)", "DSC (95% CI)", "discs detected", "extra", "mislabelled",
        "training (min)", "inference (s/series)",
    ]  # fmt: skip
    unet, swin, paper, abstract = (table.iloc[i] for i in range(4))
    assert unet["model"] == "UNet" and swin["model"] == "SwinUNETR-V2"
    assert unet["series"] == 3 and unet["IoU"] == pytest.approx(0.6)
    assert unet["DSC"] == pytest.approx(0.7) and unet["IoU low"] < 0.6 < unet["IoU high"]
    assert unet["IoU (95% CI)"] == format_ci(*bootstrap_mean_ci([0.5, 0.6, 0.7]))
    assert unet["discs detected"] == "17/18" and unet["extra"] == 2
    assert unet["training (min)"] == 1.5 and unet["inference (s/series)"] == 0.23
    assert swin["IoU (95% CI)"] == "0.80 (0.80-0.80)" and swin["discs detected"] == "11/12"
    # the paper's rows: figures from disclatent.published, as the paper prints them
    assert paper["model"] == published.SEGMENTATION["model"]
    assert paper["data"] == abstract["data"] == "SPIDER T1, held-out hospital"
    assert (paper["IoU (95% CI)"], paper["DSC (95% CI)"]) == (
        "0.82 (0.80-0.84)",
        "0.90 (0.89-0.91)",
    )
    assert (paper["IoU low"], paper["DSC high"]) == (0.80, 0.91) and np.isnan(paper["series"])
    assert (abstract["IoU (95% CI)"], abstract["DSC (95% CI)"]) == ("0.74", "0.85")
    assert np.isnan(abstract["IoU low"]) and abstract["DSC"] == 0.85
    assert ev.paper_ci(published.SEGMENTATION_ABSTRACT) == ("0.74", "0.85")
    shown = ev.for_display(table)
    assert list(shown.columns) == ev.SHOWN_COLUMNS
    assert shown["series"].tolist() == [3, 2, "", ""]
    assert shown["extra"].tolist() == [2, 2, "", ""] and shown.loc[2, "discs detected"] == ""
    assert ev.best_model(evals) == "SwinUNETR"


def test_series_with_issues():
    series = _evaluation([0.5, 0.6, 0.7], [0.6, 0.7, 0.8]).series
    assert ev.series_with_issues(series)["series"].tolist() == ["2_t1"]
    series.loc[0, "mislabelled"] = 3
    assert ev.series_with_issues(series)["series"].tolist() == ["0_t1", "2_t1"]


def test_discs_per_mask(tmp_path):
    from disclatent.segmentation.inference import discs_per_mask

    arr = np.zeros((10, 10, 10), np.int16)
    arr[1:3], arr[5:7], arr[8] = 201, 202, 203
    io.write_image(io.Volume(arr, (1.0, 1.0, 1.0)), tmp_path / "masks" / "3_t1.mha")
    io.write_image(io.Volume(arr * 0, (1.0, 1.0, 1.0)), tmp_path / "masks" / "4_t1.mha")
    table = discs_per_mask(tmp_path, ["3_t1", "4_t1"])
    assert table.set_index("series")["discs in mask"].to_dict() == {"3_t1": 3, "4_t1": 0}


def test_chapter_figures(phantom_dir):
    import matplotlib

    matplotlib.use("Agg")
    from disclatent.report import segmentation_plots as plots

    h = pd.DataFrame(
        {"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7], "val_iou": [0.2, 0.5, 0.4]}
    )
    fig = plots.learning_curves({"UNet": h})
    kept = fig.axes[1].lines[-1]  # the dot on the epoch whose weights were kept
    assert kept.get_xdata().tolist() == [2] and kept.get_ydata().tolist() == [0.5]
    series = pd.DataFrame({"series": ["1_t1", "2_t1", "3_t1"], "dsc": [1.0, 1.0, 0.5]})
    fig = plots.example_slices(phantom_dir, phantom_dir, series, n=2)
    assert [ax.get_title() for ax in fig.axes] == ["1_t1: DSC 1.000", "2_t1: DSC 1.000"]
    assert all(len(ax.collections) == 2 for ax in fig.axes)  # true and predicted outlines
    with pytest.raises(ValueError, match="true or a predicted mask"):
        plots.show_contours(
            fig.axes[0],
            io.read_image(spider.SpiderFolder(phantom_dir).image_path("1_t1")),
            None,
            None,
        )


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
    # the chapter's evaluations: the test site, then every series with its site and role
    test = evaluate_test_site(model_dir, phantom_dir, tmp_path / "test_pred")
    assert sorted(test.series["series"]) == sorted(test_series) and test.seconds_per_series > 0
    assert len(test.discs) == test.series["gt_discs"].sum()
    every = evaluate_every_series(model_dir, phantom_dir, tmp_path / "all_pred", split)
    assert sorted(every["series"]) == sorted(split["series"])
    assert set(every["role"]) == {"train", "val", "test"} and every["iou"].between(0, 1).all()
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


def _untrained_model_dir(out, model="UNet"):
    """A model folder holding a seeded, untrained network (inference needs no training)."""
    from disclatent.segmentation.config import CONFIG_FILE, MODEL_FILE
    from disclatent.segmentation.training import _new_fit

    cfg = config_from_profile("quick", model)
    out.mkdir(parents=True)
    _new_fit(cfg).save(out / MODEL_FILE)
    (out / CONFIG_FILE).write_text(json.dumps({"config": cfg.to_json()}))
    return out


def test_inference_runs_per_series_on_a_cluster_and_resumes(phantom_dir, tmp_path):
    from disclatent.segmentation.inference import predict_images

    model_dir = _untrained_model_dir(tmp_path / "model")
    folder = spider.SpiderFolder(phantom_dir)
    names = folder.series(modalities=None)[:3]
    images = tmp_path / "images"
    images.mkdir()
    for s in names:
        shutil.copy(folder.image_path(s), images / f"{s}.mha")
    raw = folder.image_path(names[0]).read_bytes()
    (images / "9_t1.mha").write_bytes(raw[: len(raw) // 3])  # truncated, in the middle

    # a bad series is named; the others are written, then the error lists it
    with pytest.raises(io.DataError, match=r"1 series could not be segmented \(9_t1: "):
        predict_images(model_dir, images, tmp_path / "a", scheduler="serial")
    assert sorted(p.name for p in (tmp_path / "a" / "masks").iterdir()) == sorted(
        f"{s}.mha" for s in names
    )
    with pytest.warns(UserWarning, match="9_t1"):
        serial = predict_images(
            model_dir, images, tmp_path / "a", scheduler="serial", skip_errors=True
        )
    assert sorted(serial["series"]) == sorted(names)
    assert serial.attrs["failures"]["series"].tolist() == ["9_t1"]

    # a rerun reuses every finished series: no result file is rewritten
    cache = tmp_path / "a" / ".series"
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(stamps) == 3
    with pytest.warns(UserWarning):
        predict_images(model_dir, images, tmp_path / "a", scheduler="serial", skip_errors=True)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    first = tmp_path / "a" / "masks" / f"{names[0]}.mha"
    kept = io.read_mask(first).array
    first.unlink()  # a mask removed since is written again from its kept result
    with pytest.warns(UserWarning):
        predict_images(model_dir, images, tmp_path / "a", scheduler="serial", skip_errors=True)
    np.testing.assert_array_equal(io.read_mask(first).array, kept)

    # two workers on a LocalCluster write the same masks, bit for bit, with the same keys
    with pytest.warns(UserWarning, match="9_t1"):
        local = predict_images(
            model_dir, images, tmp_path / "b", scheduler="local", workers=2, skip_errors=True
        )
    assert local["series"].tolist() == serial["series"].tolist()
    kept_b = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "b" / ".series").iterdir())
    assert kept_b == sorted(names)  # one result per series (keyed on its output path too)
    for s in names:
        a = io.read_mask(tmp_path / "a" / "masks" / f"{s}.mha")
        b = io.read_mask(tmp_path / "b" / "masks" / f"{s}.mha")
        image = io.read_image(images / f"{s}.mha")
        assert a.same_grid(image) and b.same_grid(image)
        np.testing.assert_array_equal(a.array, b.array)
    # and the same masks as the in-process segmenter
    direct = Segmenter(model_dir)
    for s in names:
        mask, _ = direct.segment(io.read_image(images / f"{s}.mha"))
        np.testing.assert_array_equal(
            mask.array, io.read_mask(tmp_path / "a" / "masks" / f"{s}.mha").array
        )


@pytest.mark.parametrize("on_disk", [False, True], ids=["in memory", "kept on disk"])
def test_a_mask_off_its_image_grid_costs_that_series_only(phantom_dir, tmp_path, on_disk):
    from disclatent.segmentation.data import SeriesSkippedWarning, load_cases

    cohort = tmp_path / "cohort"
    shutil.copytree(phantom_dir, cohort)
    folder = spider.SpiderFolder(cohort)
    names = folder.series(modalities=None)[:3]
    bad, truncated = names[1], names[2]
    mask = io.read_mask(folder.mask_path(bad))
    shifted = io.Volume(mask.array, mask.spacing, tuple(np.add(mask.origin, 5.0)), mask.direction)
    io.write_image(shifted, folder.mask_path(bad))  # same array, origin 5 mm off the image's
    raw = folder.image_path(truncated).read_bytes()
    folder.image_path(truncated).write_bytes(raw[: len(raw) // 2])
    split = pd.DataFrame({"series": names, "role": "train"})
    cfg = config_from_profile("quick", "UNet")
    with pytest.warns(SeriesSkippedWarning) as said:
        cases, skipped = load_cases(
            cohort, split, "train", cfg, tmp_path / "cases" if on_disk else None
        )
    assert [c.series for c in cases] == [names[0]]
    assert [r["series"] for r in skipped] == [bad, truncated]
    assert "mask grid does not match image" in skipped[0]["reason"]
    assert str(folder.mask_path(bad)) in skipped[0]["reason"]
    assert str(folder.image_path(truncated)) in skipped[1]["reason"]
    assert len(said) == 2 and bad in str(said[0].message)


def _mapped(folder) -> list[str]:
    """The lines of this process's memory map that name a file under ``folder`` (Linux)."""
    return [ln for ln in open("/proc/self/maps").read().splitlines() if str(folder) in ln]


def test_cases_kept_on_disk_are_the_cases_and_training_does_not_hold_them(
    phantom_dir, tmp_path, monkeypatch
):
    """A stored case reads back the in-memory case voxel for voxel, with its grid; batches
    cut from stored cases are the same as from in-memory ones; once a batch is made no file
    of the store stays mapped; a rerun reads the store instead of resampling again, and a
    changed mask is resampled anew."""
    import gc

    from disclatent.segmentation import cases as seg_cases
    from disclatent.segmentation import data as seg_data

    cohort = tmp_path / "cohort"
    shutil.copytree(phantom_dir, cohort)
    folder = spider.SpiderFolder(cohort)
    names = ["1_t1", "2_t1"]
    store = tmp_path / "cases"
    split = pd.DataFrame({"series": names, "role": "train"})
    cfg = config_from_profile("quick", "UNet")
    memory, _ = seg_data.load_cases(cohort, split, "train", cfg)
    stored, _ = seg_data.load_cases(cohort, split, "train", cfg, store)
    assert len(list(store.glob("*.json"))) == 2 and len(list(store.glob("*.npy"))) == 4
    for m, d in zip(memory, stored, strict=True):
        assert isinstance(d, seg_cases.StoredCase) and d.series == m.series
        np.testing.assert_array_equal(d.image, m.image)
        np.testing.assert_array_equal(d.label, m.label)
        np.testing.assert_array_equal(d.foreground, m.foreground)
        assert d.grid.spacing == m.grid.spacing and d.grid.origin == m.grid.origin
        np.testing.assert_array_equal(d.grid.direction, m.grid.direction)
        assert d.image.dtype == np.float32 and not d.image.flags.writeable
    gc.collect()
    assert _mapped(store) == []  # the comparisons' arrays are gone, so are their maps
    batches = [
        seg_data.make_batch(cases, 3, cfg.patch, np.random.default_rng(5), cfg.pos_fraction)
        for cases in (memory, stored)
    ]
    for a, b in zip(*batches, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.flags.writeable and b.flags.writeable  # copies, not views of the files
    gc.collect()
    assert _mapped(store) == []

    def no_resampling(*args, **kwargs):
        raise AssertionError("resampled again")

    monkeypatch.setattr(seg_cases, "load_case", no_resampling)
    again, _ = seg_data.load_cases(cohort, split, "train", cfg, store)
    assert [c.meta for c in again] == [c.meta for c in stored]
    monkeypatch.undo()
    m = io.read_mask(folder.mask_path("2_t1"))
    io.write_image(m.with_array(np.where(m.array == 203, 0, m.array)), m.path)
    changed, _ = seg_data.load_cases(cohort, split, "train", cfg, store)
    assert changed[0].meta == stored[0].meta and changed[1].meta != stored[1].meta
    assert len(changed[1].foreground) < len(stored[1].foreground)


def test_a_training_run_reads_each_series_files_once_for_its_digest_and_its_cases(
    phantom_dir, tmp_path, monkeypatch
):
    """``split_digest`` keys the run's data by the series' case keys, and the cases are
    stored under those keys without hashing the files again; a changed mask changes the
    digest, and a missing file enters it by its error instead of failing the run."""
    from disclatent.segmentation import cases as seg_cases
    from disclatent.segmentation import data as seg_data

    cohort = tmp_path / "cohort"
    shutil.copytree(phantom_dir, cohort)
    split = pd.DataFrame({"series": ["1_t1", "2_t1", "3_t1"], "role": ["train", "val", "test"]})
    cfg = config_from_profile("quick", "UNet")
    hashed: list[str] = []
    real_key = seg_cases.content_key

    def counted(task, salt=""):
        hashed.append(task.name)
        return real_key(task, salt)

    monkeypatch.setattr(seg_cases, "content_key", counted)
    digest, keys = seg_cases.split_digest(cohort, split, cfg.network_spacing)
    assert hashed == ["1_t1", "2_t1"]  # training and validation series, not the test site
    folder = spider.SpiderFolder(cohort)
    assert keys["1_t1"] == real_key(
        Task(
            "1_t1",
            (folder.image_path("1_t1"), folder.mask_path("1_t1")),
            {"spacing": list(cfg.network_spacing.xyz)},
        ),
        code_version("segmentation.data", "segmentation.cases"),
    )
    store = tmp_path / "cases"
    for role in ("train", "val"):
        seg_data.load_cases(cohort, split, role, cfg, store, keys)
    assert hashed == ["1_t1", "2_t1"]  # stored under the digest's keys: no second read
    assert sorted(p.name for p in store.glob("*.json")) == sorted(
        f"{s}-{keys[s]}.json" for s in ("1_t1", "2_t1")
    )
    m = io.read_mask(folder.mask_path("2_t1"))
    io.write_image(m.with_array(np.where(m.array == 203, 0, m.array)), m.path)
    changed, changed_keys = seg_cases.split_digest(cohort, split, cfg.network_spacing)
    assert changed != digest and changed_keys["1_t1"] == keys["1_t1"]
    folder.mask_path("2_t1").unlink()
    missing, missing_keys = seg_cases.split_digest(cohort, split, cfg.network_spacing)
    assert missing not in (digest, changed) and set(missing_keys) == {"1_t1"}
    with pytest.warns(seg_data.SeriesSkippedWarning, match="2_t1"):
        val, skipped = seg_data.load_cases(cohort, split, "val", cfg, store, missing_keys)
    assert val == [] and "file not found" in skipped[0]["reason"]


def test_evaluation_leaves_out_a_series_it_cannot_score_and_names_it(phantom_dir, tmp_path):
    """Truth masks truncated, without discs or off the prediction's grid: those series are
    named in a warning and in ``attrs["skipped"]``; the others are scored."""
    from disclatent.segmentation.data import SeriesSkippedWarning
    from disclatent.segmentation.inference import evaluate_folder

    truth = tmp_path / "truth"
    shutil.copytree(phantom_dir, truth)
    pred = tmp_path / "pred" / "masks"
    shutil.copytree(phantom_dir / "masks", pred)  # a perfect prediction
    names = ["1_t1", "2_t1", "3_t1", "4_t1"]
    raw = (truth / "masks" / "2_t1.mha").read_bytes()
    (truth / "masks" / "2_t1.mha").write_bytes(raw[: len(raw) // 2])
    m = io.read_mask(truth / "masks" / "3_t1.mha")
    io.write_image(m.with_array(np.where(m.array > 200, 0, m.array)), m.path)
    m = io.read_mask(truth / "masks" / "4_t1.mha")
    io.write_image(replace(m, origin=(9.0, 0.0, 0.0)), m.path)
    with pytest.warns(SeriesSkippedWarning) as said:
        series_df, discs = evaluate_folder(tmp_path / "pred", truth, names)
    assert series_df["series"].tolist() == ["1_t1"]
    assert series_df["iou"].iloc[0] == pytest.approx(1.0)
    skipped = series_df.attrs["skipped"]
    assert skipped["series"].tolist() == ["2_t1", "3_t1", "4_t1"]
    assert "2_t1.mha" in skipped["reason"].iloc[0]
    assert "no disc labels" in skipped["reason"].iloc[1]
    assert "different grids" in skipped["reason"].iloc[2]
    assert len(said) == 3 and set(discs["series"]) == {"1_t1"}
