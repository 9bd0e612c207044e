"""Disc segmentation with MONAI: U-Net, SegResNet or SwinUNETR-V2, one site held out.

The pipeline (STUDY.md section 1, step 1), with the fixes of section 2:

* **Target**: every disc label (201-225) as one foreground channel.
* **Preprocessing** (:mod:`disclatent.segmentation.data`): canonical LPS orientation from the
  header, resampling to 1.4 mm left-right x 1.2 mm anterior-posterior x 1.5 mm
  superior-inferior (images linear, labels nearest neighbour), percentile intensity
  normalisation of the whole image. No scan is cropped or normalised with its mask.
* **Training**: random patches (two thirds centred on a disc voxel) with light augmentation;
  loss = binary cross-entropy + Dice with equal weights on the raw logits, with the sigmoid
  applied exactly once, inside the loss (MONAI ``DiceCELoss(sigmoid=True)``: BCE-with-logits
  plus Dice of ``sigmoid(logits)``); Adam, lr 1e-3; batch 4 (the profile may change it).
  After every epoch the validation series are segmented whole (sliding window, eval mode)
  and their mean IoU decides: the best-IoU weights are kept, training stops when it has not
  improved for ``patience`` epochs (15), or at ``max_epochs``, or at the profile's optional
  wall-clock budget (recorded as the stop reason).
* **Inference**: sliding-window logits, one sigmoid, probabilities resampled back to the
  image's own grid (linear) and thresholded at 0.5, then split into disc instances
  201, 202, ... from the bottom up (:mod:`disclatent.segmentation.evaluation`).

A model folder holds ``config.json``, ``split.csv``, ``model.safetensors`` (best validation
IoU), ``history.csv`` (one row per epoch) and ``train.json`` (time, stop reason, best epoch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.data.spider import SpiderFolder
from disclatent.data.volume import (
    DataError,
    Volume,
    atomic_path,
    image_suffix,
    list_images,
    read_image,
    read_mask,
    series_name,
    write_image,
    write_text_atomic,
)
from disclatent.segmentation.data import (
    NETWORK_SPACING,
    Case,
    load_case,
    make_batch,
    make_split,
    resample_like,
    site_table,
)
from disclatent.segmentation.evaluation import evaluate_series, label_instances

MODEL_NAMES = ("UNet", "SegResNet", "SwinUNETR")
SEG_VERSION = 2  # bump when training changes meaning, to invalidate cached models


@dataclass(frozen=True)
class SegConfig:
    """Everything that defines one segmentation model and its training."""

    model: str = "UNet"
    patch: tuple[int, int, int] = (64, 64, 32)  # numpy order (SI, AP, LR) on the network grid
    batch_size: int = 4
    lr: float = 1e-3
    max_epochs: int = 40
    iters_per_epoch: int = 0  # 0: one pass, ceil(n_train * patches_per_volume / batch_size)
    patches_per_volume: int = 4
    patience: int = 15
    # optional wall-clock budget (CPU profiles), checked before every training iteration;
    # when reached, the epoch is cut short, validated, and training stops
    max_minutes: float | None = None
    val_fraction: float = 0.2
    test_site: str = "auto"
    modalities: tuple[str, ...] = ("t1",)
    seed: int = 0
    spacing: tuple[float, float, float] = NETWORK_SPACING  # LR, AP, SI (mm)
    pos_fraction: float = 2 / 3
    augment: bool = True
    threshold: float = 0.5
    sw_overlap: float = 0.25
    sw_batch_size: int = 4
    device: str = "auto"
    unet_channels: tuple[int, ...] = (8, 16, 32, 64)
    # 0: with residual units MONAI's UNet normalises its 1-channel output (instance norm +
    # PReLU inside the top block), which slowed learning badly here
    unet_res_units: int = 0
    segresnet_filters: int = 8
    swin_feature_size: int = 12
    min_disc_mm3: float = 500.0
    # torch CPU threads (0: torch's default). 1 by default: on a shared machine with more
    # busy processes than cores, 2 OpenMP threads ran one training step 18 times slower
    # than 1 here (threads spin waiting for each other); profiles set it (profiles.py).
    # Not part of a trained model's identity (is_trained ignores it).
    threads: int = 1

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(
                f"unknown model {self.model!r}; choose one of {', '.join(MODEL_NAMES)}"
            )
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "unet_channels", tuple(int(c) for c in self.unet_channels))
        if self.model == "SwinUNETR" and (
            any(p % 32 for p in self.patch) or math.prod(p // 32 for p in self.patch) < 2
        ):
            raise ValueError(
                "SwinUNETR needs patch sizes divisible by 32 and larger than "
                f"32 x 32 x 32, got {self.patch}"
            )
        if self.model != "SwinUNETR" and any(p % 8 for p in self.patch):
            raise ValueError(f"patch sizes must be divisible by 8, got {self.patch}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SegConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(
            **{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        )


def config_from_profile(
    profile: str = "default", model: str | None = None, **overrides
) -> SegConfig:
    """The segmentation settings of a run profile (``profiles.py``), optionally changed."""
    from disclatent.profiles import cpu_threads, get_profile

    p = get_profile(profile) if isinstance(profile, str) else profile
    cfg = SegConfig(
        model=model or p.seg_model,
        patch=p.seg_patch,
        batch_size=p.seg_batch,
        max_epochs=p.seg_max_epochs,
        iters_per_epoch=p.seg_iters_per_epoch,
        patience=p.seg_patience,
        max_minutes=p.seg_max_minutes,
        unet_channels=p.seg_unet_channels,
        segresnet_filters=p.seg_segresnet_filters,
        swin_feature_size=p.seg_swin_feature_size,
        seed=p.phantom_seed,
        threads=cpu_threads(p),
    )
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------------
# Models and loss
# ---------------------------------------------------------------------------------------
def build_model(cfg: SegConfig):
    """The MONAI network named by ``cfg.model`` (1 input channel, 1 logit channel)."""
    from monai.networks.nets import SegResNet, SwinUNETR, UNet

    if cfg.model == "UNet":
        return UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            channels=cfg.unet_channels,
            strides=(2,) * (len(cfg.unet_channels) - 1),
            num_res_units=cfg.unet_res_units,
        )
    if cfg.model == "SegResNet":
        return SegResNet(
            spatial_dims=3, init_filters=cfg.segresnet_filters, in_channels=1, out_channels=1
        )
    return SwinUNETR(
        in_channels=1,
        out_channels=1,
        feature_size=cfg.swin_feature_size,
        use_v2=True,
        spatial_dims=3,
    )


def make_loss():
    """BCE + Dice, equal weights, on logits; the sigmoid is applied once, inside.

    ``DiceCELoss(sigmoid=True)`` with one output channel computes ``BCEWithLogits(logits)``
    plus the Dice loss of ``sigmoid(logits)``; the network itself has no final activation.
    The Dice term is computed over the whole batch, so a patch without disc voxels does not
    yield an undefined per-patch Dice.
    """
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True, lambda_dice=1.0, lambda_ce=1.0, batch=True)


def resolve_device(name: str = "auto"):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def _sliding_logits(model, image: np.ndarray, cfg: SegConfig, device):
    """Logits (SI, AP, LR) of a normalised image on the network grid."""
    import torch
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].to(device)
    with torch.no_grad():
        logits = sliding_window_inference(
            x, cfg.patch, cfg.sw_batch_size, model, overlap=cfg.sw_overlap, mode="gaussian"
        )
    return logits[0, 0].float().cpu().numpy()


def _set_threads(cfg: SegConfig, device) -> None:
    import torch

    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------
def _data_digest(root: Path, split: pd.DataFrame) -> str:
    """SHA-256 of the split and of the bytes of every image and mask it uses."""
    folder = SpiderFolder(root)
    h = hashlib.sha256(split[["series", "role"]].to_csv(index=False).encode())
    for s in split.loc[split["role"].isin(["train", "val"]), "series"]:
        for path in (folder.image_path(s), folder.mask_path(s)):
            h.update(path.read_bytes())
    return h.hexdigest()


def _iou(prob: np.ndarray, label: np.ndarray, threshold: float) -> tuple[float, float]:
    p, g = prob > threshold, label > 0
    inter, union, total = (p & g).sum(), (p | g).sum(), p.sum() + g.sum()
    return (float(inter / union) if union else 1.0, float(2 * inter / total) if total else 1.0)


def _load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def is_trained(model_dir: str | Path, cfg: SegConfig | None = None, data_digest: str = "") -> bool:
    """True when ``model_dir`` holds a finished run with this config and data."""
    model_dir = Path(model_dir)
    try:
        saved = json.loads((model_dir / "config.json").read_text())
        done = json.loads((model_dir / "train.json").read_text())
    except (OSError, ValueError):
        return False
    if not (model_dir / "model.safetensors").exists() or done.get("status") != "complete":
        return False
    if cfg is not None:
        wanted = json.loads(json.dumps(cfg.to_json()))
        have = dict(saved.get("config") or {})
        for d in (wanted, have):
            d.pop("threads", None)  # how fast it trained, not what it learnt
        if have != wanted:
            return False
    if data_digest and saved.get("data_digest") != data_digest:
        return False
    return saved.get("version") == SEG_VERSION


def train(
    data_root: str | Path,
    out_dir: str | Path,
    cfg: SegConfig,
    reuse: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Train ``cfg.model`` on a SPIDER-format folder; write the model folder; return
    ``train.json``'s content. With ``reuse``, a finished run with the same config and the
    same data bytes is loaded instead of trained again."""
    import torch
    from safetensors.torch import save_file

    log = log or (lambda _msg: None)
    data_root, out_dir = Path(data_root), Path(out_dir)
    split = make_split(
        site_table(data_root, cfg.modalities), cfg.test_site, cfg.val_fraction, cfg.seed
    )
    digest = _data_digest(data_root, split)
    if reuse and is_trained(out_dir, cfg, digest):
        log(f"{cfg.model}: reusing the trained model in {out_dir}")
        return json.loads((out_dir / "train.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train.json").unlink(missing_ok=True)
    with atomic_path(out_dir / "split.csv") as tmp:
        split.to_csv(tmp, index=False, lineterminator="\n")
    write_text_atomic(
        json.dumps(
            {
                "version": SEG_VERSION,
                "config": cfg.to_json(),
                "data_root": str(data_root.resolve()),
                "data_digest": digest,
            },
            indent=2,
        )
        + "\n",
        out_dir / "config.json",
    )

    folder = SpiderFolder(data_root)
    start = time.perf_counter()
    load_start = _load_avg()

    def cases(role: str) -> list[Case]:
        return [
            load_case(folder.image_path(s), folder.mask_path(s), cfg.spacing)
            for s in split.loc[split["role"] == role, "series"]
        ]

    train_cases, val_cases = cases("train"), cases("val")
    prep_seconds = time.perf_counter() - start
    device = resolve_device(cfg.device)
    _set_threads(cfg, device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 11])
    model = build_model(cfg).to(device)
    loss_fn = make_loss()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    iters = cfg.iters_per_epoch or max(
        1, math.ceil(len(train_cases) * cfg.patches_per_volume / cfg.batch_size)
    )
    log(
        f"{cfg.model}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(train_cases)} train / {len(val_cases)} val series, {iters} iterations per "
        f"epoch, device {device}, {torch.get_num_threads()} threads"
    )
    history, best_iou, best_epoch, wait = [], -1.0, 0, 0
    stop = "max epochs"

    def over_budget() -> bool:
        return cfg.max_minutes is not None and time.perf_counter() - start >= 60 * cfg.max_minutes

    for epoch in range(1, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        model.train()
        losses = []
        for _ in range(iters):
            if over_budget() and losses:  # cut the epoch short, validate, then stop
                break
            x, y = make_batch(
                train_cases, cfg.batch_size, cfg.patch, rng, cfg.pos_fraction, cfg.augment
            )
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        scores = [
            _iou(sigmoid(_sliding_logits(model, c.image, cfg, device)), c.label, cfg.threshold)
            for c in val_cases
        ]
        val_iou = float(np.mean([s[0] for s in scores]))
        val_dice = float(np.mean([s[1] for s in scores]))
        elapsed = time.perf_counter() - start
        improved = val_iou > best_iou
        if improved:
            best_iou, best_epoch, wait = val_iou, epoch, 0
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            with atomic_path(out_dir / "model.safetensors") as tmp:
                save_file(state, str(tmp))
        else:
            wait += 1
        history.append(
            {
                "epoch": epoch,
                "iterations": len(losses),
                "train_loss": float(np.mean(losses)),
                "val_iou": val_iou,
                "val_dice": val_dice,
                "best": improved,
                "epoch_seconds": time.perf_counter() - t0,
                "elapsed_seconds": elapsed,
            }
        )
        log(
            f"{cfg.model} epoch {epoch:3d}: loss {np.mean(losses):.4f}, val IoU {val_iou:.4f}"
            f"{' (best)' if improved else ''}, {elapsed:.0f} s"
        )
        if wait >= cfg.patience:
            stop = f"early stopping (no better validation IoU for {cfg.patience} epochs)"
            break
        if over_budget():
            stop = f"time budget ({cfg.max_minutes:g} min)"
            break
    seconds = time.perf_counter() - start
    with atomic_path(out_dir / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, lineterminator="\n")
    result = {
        "status": "complete",
        "model": cfg.model,
        "best_epoch": best_epoch,
        "best_val_iou": best_iou,
        "epochs": len(history),
        "stop_reason": stop,
        "seconds": round(seconds, 1),
        "prep_seconds": round(prep_seconds, 1),
        "iterations_per_epoch": iters,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "load_avg_start": load_start,
        "load_avg_end": _load_avg(),
        "n_train_series": len(train_cases),
        "n_val_series": len(val_cases),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    write_text_atomic(json.dumps(result, indent=2) + "\n", out_dir / "train.json")
    log(f"{cfg.model}: {stop}; best epoch {best_epoch} (val IoU {best_iou:.4f}); {seconds:.0f} s")
    return result


# ---------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------
class Segmenter:
    """A trained model folder, ready to segment images."""

    def __init__(self, model_dir: str | Path, device: str | None = None):
        from safetensors.torch import load_file

        self.model_dir = Path(model_dir)
        try:
            saved = json.loads((self.model_dir / "config.json").read_text())
        except OSError as exc:
            raise DataError(
                f"{self.model_dir / 'config.json'}: not a trained model folder "
                "(run `segment train` first)"
            ) from exc
        self.cfg = SegConfig.from_json(saved["config"])
        weights = self.model_dir / "model.safetensors"
        if not weights.exists():
            raise DataError(f"{weights}: model weights not found")
        self.device = resolve_device(device or self.cfg.device)
        _set_threads(self.cfg, self.device)
        self.model = build_model(self.cfg)
        self.model.load_state_dict(load_file(str(weights)))
        self.model.to(self.device).eval()

    @classmethod
    def from_model(cls, model, cfg: SegConfig, device: str = "cpu") -> Segmenter:
        """Wrap an in-memory model (tests, benchmarks)."""
        self = cls.__new__(cls)
        self.model_dir, self.cfg = None, cfg
        self.device = resolve_device(device)
        _set_threads(cfg, self.device)
        self.model = model.to(self.device).eval()
        return self

    def probability(self, image: Volume) -> Volume:
        """Disc probability on the image's own voxel grid (float32)."""
        case = load_case_from_volume(image, self.cfg.spacing)
        prob = sigmoid(_sliding_logits(self.model, case.image, self.cfg, self.device))
        return resample_like(case.grid.with_array(prob), image, label=False)

    def segment(self, image: Volume) -> tuple[Volume, dict]:
        """Disc instances 201, 202, ... (SPIDER labels, numbered upward) on the image's grid."""
        prob = self.probability(image)
        fg = prob.with_array((prob.array > self.cfg.threshold).astype(np.uint8))
        return label_instances(fg, self.cfg.min_disc_mm3)


def load_case_from_volume(image: Volume, spacing=NETWORK_SPACING) -> Case:
    from disclatent.segmentation.data import normalise_intensity, resample_to_spacing

    net = resample_to_spacing(image, spacing, label=False)
    arr = normalise_intensity(net.array)
    return Case(series_name(image.path) if image.path else "", arr, None, net.with_array(arr))


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "images").is_dir():
        path = path / "images"
    files = list_images(path)
    if not files:
        raise DataError(f"{path}: no image files found")
    return files


def predict_images(
    model_dir: str | Path,
    images: str | Path,
    out: str | Path,
    series: list[str] | None = None,
    log: Callable[[str], None] | None = None,
    segmenter: Segmenter | None = None,
) -> pd.DataFrame:
    """Segment an image, a folder of images or a SPIDER folder's ``images/``; write SPIDER
    masks with the input file names to ``out/masks/``. Returns one row per series."""
    seg = segmenter or Segmenter(model_dir)
    files = _image_files(Path(images))
    if series is not None:
        wanted = set(series)
        files = [f for f in files if series_name(f) in wanted]
    rows = []
    for f in files:
        t0 = time.perf_counter()
        image = read_image(f)
        mask, info = seg.segment(image)
        target = Path(out) / "masks" / f.name
        write_image(
            Volume(mask.array.astype(np.int16), image.spacing, image.origin, image.direction),
            target,
        )
        seconds = time.perf_counter() - t0
        rows.append({"series": series_name(f), "file": str(target), "seconds": seconds, **info})
        if log:
            log(f"{series_name(f)}: {info['n_discs']} discs, {seconds:.1f} s")
    return pd.DataFrame(rows)


def write_pred_cohort(
    model_dir: str | Path,
    data_root: str | Path,
    out_root: str | Path,
    roles: tuple[str, ...] = ("test",),
    log=None,
    segmenter: Segmenter | None = None,
) -> pd.DataFrame:
    """Predicted masks of the ``roles`` series of a model's split, as a SPIDER-format folder.

    ``out_root`` gets ``masks/`` (predicted, same file names and grids as the images),
    ``overview.csv`` and ``radiological_gradings.csv`` restricted to those series/patients
    (so :func:`disclatent.data.spider.disc_table` and the later chapters read it unchanged), the
    phantom's ``phantom_truth.csv`` restricted likewise when the source has one (it describes
    the anatomy, not a mask), and ``prediction.json`` naming the model and source.
    Images are not copied: they stay in ``data_root``.
    """
    model_dir, data_root, out_root = Path(model_dir), Path(data_root), Path(out_root)
    split = pd.read_csv(model_dir / "split.csv", dtype={"patient": str})
    chosen = split[split["role"].isin(roles)]
    folder = SpiderFolder(data_root)
    table = predict_images(
        model_dir,
        folder.images_dir,
        out_root,
        series=chosen["series"].tolist(),
        log=log,
        segmenter=segmenter,
    )
    overview = pd.read_csv(folder.overview_csv)
    names = (
        overview["new_file_name"]
        .astype(str)
        .map(lambda s: series_name(s) if image_suffix(s) else s)
    )
    with atomic_path(out_root / "overview.csv") as tmp:
        overview[names.isin(set(chosen["series"]))].to_csv(tmp, index=False, lineterminator="\n")
    patients = set(chosen["patient"])
    if folder.gradings_csv.exists():
        grad = pd.read_csv(folder.gradings_csv)
        with atomic_path(out_root / "radiological_gradings.csv") as tmp:
            grad[grad["Patient"].astype(str).isin(patients)].to_csv(
                tmp, index=False, lineterminator="\n"
            )
    truth = data_root / "phantom_truth.csv"
    if truth.exists():
        t = pd.read_csv(truth, dtype={"patient": str})
        with atomic_path(out_root / "phantom_truth.csv") as tmp:
            t[t["series"].isin(set(chosen["series"]))].to_csv(tmp, index=False, lineterminator="\n")
    cfg = json.loads((model_dir / "config.json").read_text())["config"]
    write_text_atomic(
        json.dumps(
            {
                "source": "pred",
                "model": cfg["model"],
                "model_dir": str(model_dir.resolve()),
                "data_root": str(data_root.resolve()),
                "roles": list(roles),
                "series": table["series"].tolist(),
                "labels": "201, 202, ... numbered upward from the most inferior predicted disc",
            },
            indent=2,
        )
        + "\n",
        out_root / "prediction.json",
    )
    return table


def evaluate_folder(
    pred_root: str | Path, data_root: str | Path, series: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-series and per-disc evaluation of predicted masks against a SPIDER folder."""
    pred_folder, truth = SpiderFolder(Path(pred_root)), SpiderFolder(Path(data_root))
    names = series if series is not None else pred_folder.series(modalities=None)
    rows, discs = [], []
    for s in names:
        row, d = evaluate_series(
            read_mask(pred_folder.mask_path(s)), read_mask(truth.mask_path(s)), s
        )
        rows.append(row)
        discs.append(d)
    disc_df = pd.concat(discs, ignore_index=True) if discs else pd.DataFrame()
    return pd.DataFrame(rows), disc_df
