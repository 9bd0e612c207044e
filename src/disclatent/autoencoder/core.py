"""The 3D CNN autoencoder of isolated disc masks: model, honest training, sweep, baseline.

**Model** (:class:`DiscAutoencoder`). Input: one binary disc cube ``(S, S, S)`` in the
canonical anatomical order of :mod:`disclatent.discs.isolation` (numpy axes SI, AP, LR). Encoder:
``n`` stride-2 3-D convolutions (kernel 3) each followed by batch normalisation and ReLU;
a *linear* bottleneck of size ``k`` (no activation on the latent vector); decoder: a linear
layer back to the coarsest grid, then ``n`` stride-2 3-D transposed convolutions (kernel 3)
with batch normalisation and ReLU, the last one giving one channel of logits. No skip
connections. With 64^3 inputs and channels 32-64-128-256-512 (the ``paper`` profile) the
model has about 9.4 M parameters (:func:`count_parameters`).

**Training** (:func:`fit`). Binary cross-entropy on the logits, optionally plus soft Dice
(``loss="dice_bce"``), Adam, batch 4, seeded, CUDA when present; the output bias starts at
the log-odds of the discs' foreground share. After *every* epoch the
model is put in eval mode and the intersection over union (IoU) of the thresholded output
(logit > 0) with the input is computed for *every* training disc; the model has converged when
the mean of these IoUs reaches the target (0.995). This is stricter than declaring convergence
on one batch in train mode (STUDY.md section 2). Before each evaluation the batch-norm
statistics are re-estimated over all training discs (``precise_bn``), so the eval-mode model
is a fixed function of the weights; optionally (``freeze_bn_epoch``) batch norm keeps those
fixed statistics for the rest of training, so the network is trained as exactly the function
that is evaluated. Per-epoch history (loss, mean/min IoU,
learning rate, seconds) is kept; a checkpoint (weights, optimiser state, history) is written
atomically as safetensors so an interrupted run resumes where it stopped. Nothing is ever
read back with pickle.

**Evaluation.** Held-out reconstruction (discs of patients never seen in training, encoded
and decoded) and a linear baseline (:class:`PCABaseline`: PCA of the flattened masks with the
same ``k``, reconstruction thresholded at 0.5, the classical statistical shape model).
Confidence intervals are percentile bootstraps of the mean over discs (:func:`disclatent.stats.bootstrap_mean_ci`).

**Cube size.** Cubes larger than the model's (e.g. a disc store isolated at 48^3 for a 32^3
model on the same grid) are cropped about their centre and smaller ones zero-padded
(:func:`fit_cubes`); disc voxels cut by a crop are reported with a :class:`CropWarning`.

**Files** of a trained model folder: ``model.safetensors`` (weights and batch-norm statistics;
the configuration in its metadata), ``config.json``, ``metrics.json``, ``history.csv`` and,
while training, ``checkpoint.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from disclatent import published
from disclatent.data.volume import atomic_path, write_text_atomic
from disclatent.discs.isolation import central_slices
from disclatent.formatting import format_ci
from disclatent.stats import bootstrap_mean_ci

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
FORMAT_VERSION = 1
TRAINING_VERSION = 1  # bump when training changes, so cached models are retrained


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AEConfig:
    """Everything that defines one autoencoder and its training run."""

    latent_dim: int = 4
    size: int = 64  # cube edge (voxels); must be divisible by 2 ** len(channels)
    spacing_mm: tuple[float, float, float] = (1.5, 1.2, 1.4)  # cube spacing, (SI, AP, LR)
    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    max_epochs: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    schedule: str = "constant"  # "constant" (the paper) | "onecycle" | "cosine"
    loss: str = "bce"  # "bce" (the paper) | "dice_bce" (soft Dice + bce_weight x BCE)
    bce_weight: float = 1.0
    target_iou: float = published.TARGET_IOU
    stop_at_target: bool = True
    seed: int = 0
    channels_last: bool = False
    precise_bn: bool = True  # re-estimate batch-norm statistics on all discs before eval
    freeze_bn_epoch: int = 0  # from this epoch on, batch norm uses fixed statistics (0: never)
    cpu_threads: int = 1  # torch CPU threads on a CPU device (0: torch's default); see profiles

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.latent_dim < 1:
            raise ValueError("latent_dim must be at least 1")
        if not self.channels:
            raise ValueError("channels must name at least one stage")
        if self.size % 2 ** len(self.channels):
            raise ValueError(
                f"cube size {self.size} is not divisible by 2^{len(self.channels)} "
                f"({len(self.channels)} stride-2 stages)"
            )
        if self.schedule not in ("constant", "onecycle", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.loss not in ("bce", "dice_bce"):
            raise ValueError(f"unknown loss {self.loss!r}")
        if self.max_epochs < 1 or self.batch_size < 1:
            raise ValueError("max_epochs and batch_size must be positive")

    @classmethod
    def from_profile(cls, profile, latent_dim: int = 4, **overrides) -> AEConfig:
        """The configuration a :class:`~disclatent.profiles.Profile` (or its name) sets."""
        from disclatent.profiles import cpu_threads, get_profile

        p = get_profile(profile) if isinstance(profile, str) else profile
        values = dict(
            latent_dim=latent_dim,
            size=p.ae_size,
            spacing_mm=p.disc_spacing_mm,
            channels=p.ae_channels,
            max_epochs=p.ae_max_epochs,
            batch_size=p.ae_batch_size,
            lr=p.ae_lr,
            schedule=p.ae_schedule,
            loss=p.ae_loss,
            freeze_bn_epoch=p.ae_freeze_bn_epoch,
            channels_last=p.ae_channels_last,
            cpu_threads=cpu_threads(p),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spacing_mm"] = list(self.spacing_mm)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AEConfig:
        names = {f.name for f in fields(cls)}
        return cls(
            **{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        )

    def training_key(self) -> dict:
        """The fields that change what training produces (not the stopping budget)."""
        d = self.to_dict()
        for k in ("max_epochs", "stop_at_target", "channels_last", "cpu_threads"):
            d.pop(k)
        return d


# ---------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------
class DiscAutoencoder(nn.Module):
    """Strided 3-D conv encoder, linear bottleneck, transposed-conv decoder; logits out."""

    def __init__(
        self, size: int = 64, channels: Sequence[int] = (32, 64, 128, 256, 512), latent_dim: int = 4
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        n = len(channels)
        if size % 2**n:
            raise ValueError(f"size {size} not divisible by 2^{n}")
        self.size, self.channels, self.latent_dim = size, channels, latent_dim
        self.bottom = size // 2**n
        enc: list[nn.Module] = []
        c_in = 1
        for c in channels:
            enc += [
                nn.Conv3d(c_in, c, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(c),
                nn.ReLU(inplace=True),
            ]
            c_in = c
        self.encoder = nn.Sequential(*enc)
        flat = channels[-1] * self.bottom**3
        self.to_latent = nn.Linear(flat, latent_dim)  # linear bottleneck: no activation
        self.from_latent = nn.Linear(latent_dim, flat, bias=False)
        dec: list[nn.Module] = [nn.BatchNorm3d(channels[-1]), nn.ReLU(inplace=True)]
        rev = channels[::-1]
        for c_a, c_b in zip(rev[:-1], rev[1:], strict=True):
            dec += [
                nn.ConvTranspose3d(c_a, c_b, 3, stride=2, padding=1, output_padding=1, bias=False),
                nn.BatchNorm3d(c_b),
                nn.ReLU(inplace=True),
            ]
        dec.append(nn.ConvTranspose3d(channels[0], 1, 3, stride=2, padding=1, output_padding=1))
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 1, S, S, S) float -> (n, k)."""
        return self.to_latent(torch.flatten(self.encoder(x), 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, k) -> (n, 1, S, S, S) logits."""
        h = self.from_latent(z).view(-1, self.channels[-1], self.bottom, self.bottom, self.bottom)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(cfg: AEConfig) -> DiscAutoencoder:
    return DiscAutoencoder(cfg.size, cfg.channels, cfg.latent_dim)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------
def iou_per_disc(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU of binary masks, one value per disc (first axis). Two empty masks count as 1."""
    p = torch.as_tensor(pred).bool().flatten(1)
    t = torch.as_tensor(target).bool().flatten(1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    out = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return out.cpu().numpy()


def _loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str, bce_weight: float = 1.0
) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if kind == "bce":
        return bce
    bce = bce_weight * bce
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def _lr_at(cfg: AEConfig, step: int, total: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(step / max(total, 1), 1.0)
    if cfg.schedule == "cosine":
        return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
    # onecycle: linear warm-up over the first 10 % to 3 x lr, cosine down to lr / 100
    peak, warm = 3 * cfg.lr, 0.1
    if frac < warm:
        return cfg.lr + (peak - cfg.lr) * frac / warm
    f = (frac - warm) / (1 - warm)
    return cfg.lr / 100 + (peak - cfg.lr / 100) * 0.5 * (1 + math.cos(math.pi * f))


def data_digest(cubes: np.ndarray) -> str:
    h = hashlib.sha256(str(cubes.shape).encode())
    h.update(np.ascontiguousarray(cubes, dtype=np.uint8).tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# Saving and loading (safetensors only: no pickle from disk)
# ---------------------------------------------------------------------------------------
def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})


def _load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        for k in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, device: torch.device
) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            # Adam keeps "step" on the CPU unless capturable; keep the other moments on device
            state.setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    for key, value in meta.get("scalars", {}).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# ---------------------------------------------------------------------------------------
# The trained model
# ---------------------------------------------------------------------------------------
@dataclass
class DiscAE:
    """A disc autoencoder with its configuration, history and metrics.

    ``fit`` trains it; ``encode`` maps cubes to latent vectors; ``decode`` maps latent vectors
    to binary cubes; ``save`` / ``load`` use a folder of safetensors and JSON files.
    """

    config: AEConfig
    model: DiscAutoencoder = None  # type: ignore[assignment]
    device: torch.device = field(default_factory=default_device)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = build_model(self.config)
        self.device = torch.device(self.device)
        self.model.to(self.device)
        if self.config.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)

    # -- inference ------------------------------------------------------------------------
    def _batches(self, cubes: np.ndarray, batch: int):
        for i in range(0, len(cubes), batch):
            x = torch.as_tensor(np.asarray(cubes[i : i + batch]), device=self.device)
            x = x.to(torch.float32).unsqueeze(1)
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            yield x

    def _check_cubes(self, cubes: np.ndarray) -> np.ndarray:
        return fit_cubes(cubes, self.config.size)

    @torch.inference_mode()
    def encode(self, cubes: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Binary cubes (n, S, S, S) -> latent vectors (n, k), in eval mode."""
        cubes = self._check_cubes(cubes)
        self.model.eval()
        out = [self.model.encode(x).float().cpu() for x in self._batches(cubes, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.latent_dim), np.float32)

    @torch.inference_mode()
    def decode_logits(self, z: np.ndarray, batch_size: int = 32) -> np.ndarray:
        z = np.asarray(z, np.float32).reshape(-1, self.config.latent_dim)
        self.model.eval()
        out = []
        for i in range(0, len(z), batch_size):
            zz = torch.as_tensor(z[i : i + batch_size], device=self.device)
            out.append(self.model.decode(zz)[:, 0].float().cpu())
        s = self.config.size
        return torch.cat(out).numpy() if out else np.zeros((0, s, s, s), np.float32)

    def decode(self, z: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Latent vectors (n, k) -> binary cubes (n, S, S, S) uint8 (logit > 0)."""
        return (self.decode_logits(z, batch_size) > 0).astype(np.uint8)

    @torch.inference_mode()
    def reconstruct(self, cubes: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Encode then decode, in eval mode; binary cubes out."""
        cubes = self._check_cubes(cubes)
        self.model.eval()
        out = [
            (self.model(x)[:, 0] > 0).to(torch.uint8).cpu()
            for x in self._batches(cubes, batch_size)
        ]
        s = self.config.size
        return torch.cat(out).numpy() if out else np.zeros((0, s, s, s), np.uint8)

    def iou(self, cubes: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Per-disc IoU of the eval-mode reconstruction with the input."""
        cubes = self._check_cubes(cubes)
        return iou_per_disc(self.reconstruct(cubes, batch_size), cubes)

    # -- training -------------------------------------------------------------------------
    def fit(
        self,
        cubes: np.ndarray,
        out_dir: str | os.PathLike | None = None,
        resume: bool = True,
        progress: bool = True,
        checkpoint_seconds: float = 30.0,
        callback: Callable[[dict], None] | None = None,
    ) -> DiscAE:
        """Train on ``cubes`` (n, S, S, S) binary; see the module docstring.

        With ``out_dir`` a checkpoint is written at most every ``checkpoint_seconds`` and at the
        end; with ``resume`` a checkpoint of the same configuration and data is continued.
        """
        cubes = self._check_cubes(cubes)
        if len(cubes) == 0:
            raise ValueError("no training discs")
        cfg = self.config
        out = Path(out_dir) if out_dir is not None else None
        digest = data_digest(cubes)
        _seed_everything(cfg.seed)
        self.model = build_model(cfg)  # same seed -> same initial weights
        # start from the prior: output bias = log-odds of the foreground share of the discs
        # (otherwise every voxel starts at p = 0.5 and the first epochs only learn "empty")
        share = float(np.clip(cubes.mean(), 1e-4, 0.5))
        with torch.no_grad():
            self.model.decoder[-1].bias.fill_(math.log(share / (1 - share)))
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        n, bs = len(cubes), cfg.batch_size
        steps_per_epoch = math.ceil(n / bs)
        total_steps = steps_per_epoch * cfg.max_epochs
        history: list[dict] = []
        start_epoch, elapsed = 0, 0.0
        ckpt = out / CHECKPOINT_FILE if out is not None else None
        if resume and ckpt is not None and ckpt.exists():
            tensors, meta = _load_tensors(ckpt)
            if (
                meta.get("training_key") == cfg.training_key()
                and meta.get("data") == digest
                and meta.get("max_epochs") == cfg.max_epochs
                and meta.get("training_version") == TRAINING_VERSION
            ):
                self.model.load_state_dict(
                    {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
                )
                _restore_optimizer(opt, tensors, meta["optimizer"], self.device)
                history = meta["history"]
                start_epoch = int(meta["epoch"])
                elapsed = float(meta.get("seconds", 0.0))
        data = torch.as_tensor(cubes, dtype=torch.uint8)  # stays on the CPU; batches move
        pin = self.device.type == "cuda"
        if pin:
            data = data.pin_memory()
        converged = bool(history) and history[-1]["train_iou"] >= cfg.target_iou
        last_save = time.perf_counter()
        bar = _progress(cfg.max_epochs, start_epoch, progress, cfg.latent_dim)
        epoch = start_epoch
        try:
            while epoch < cfg.max_epochs and not (converged and cfg.stop_at_target):
                t0 = time.perf_counter()
                self.model.train()
                frozen = 0 < cfg.freeze_bn_epoch <= epoch
                if frozen:  # train exactly the function that is evaluated
                    if cfg.freeze_bn_epoch == epoch and not cfg.precise_bn:
                        self._recalibrate_bn(data, bs)
                        self.model.train()
                    for m in self.model.modules():
                        if isinstance(m, nn.modules.batchnorm._BatchNorm):
                            m.eval()
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
                perm = torch.randperm(n, generator=g)
                loss_sum = 0.0
                for b in range(steps_per_epoch):
                    idx = perm[b * bs : (b + 1) * bs]
                    x = data[idx].to(self.device, non_blocking=pin).float().unsqueeze(1)
                    if cfg.channels_last:
                        x = x.contiguous(memory_format=torch.channels_last_3d)
                    for group in opt.param_groups:
                        group["lr"] = _lr_at(cfg, epoch * steps_per_epoch + b, total_steps)
                    opt.zero_grad(set_to_none=True)
                    loss = _loss(self.model(x), x, cfg.loss, cfg.bce_weight)
                    loss.backward()
                    opt.step()
                    loss_sum += float(loss.detach()) * len(idx)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                t1 = time.perf_counter()
                if cfg.precise_bn and not frozen:
                    self._recalibrate_bn(data, bs)
                ious = self.iou(cubes)  # every training disc, eval mode
                epoch += 1
                seconds = time.perf_counter() - t0
                elapsed += seconds
                row = {
                    "epoch": epoch,
                    "loss": loss_sum / n,
                    "train_iou": float(ious.mean()),
                    "train_iou_min": float(ious.min()),
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": seconds,
                    "eval_seconds": time.perf_counter() - t1,
                }
                history.append(row)
                converged = row["train_iou"] >= cfg.target_iou
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", iou=f"{row['train_iou']:.4f}")
                done = epoch >= cfg.max_epochs or (converged and cfg.stop_at_target)
                if ckpt is not None and (
                    done or time.perf_counter() - last_save >= checkpoint_seconds
                ):
                    self._write_checkpoint(ckpt, opt, history, epoch, elapsed, digest)
                    last_save = time.perf_counter()
                if callback is not None:
                    callback(row)
        finally:
            bar.close()
        self.history = pd.DataFrame(history)
        ious = self.iou(cubes)
        _, lo, hi = bootstrap_mean_ci(ious)
        first = next((r["epoch"] for r in history if r["train_iou"] >= cfg.target_iou), None)
        self.metrics = {
            "latent_dim": cfg.latent_dim,
            "epochs": epoch,
            "converged": first is not None,
            "epochs_to_converge": first,
            "train_iou": float(ious.mean()),
            "train_iou_ci": [lo, hi],
            "train_iou_min": float(ious.min()),
            "n_train": int(n),
            "train_seconds": round(elapsed, 2),
            "volumes_per_second": _throughput(history, n),
            "parameters": count_parameters(self.model),
            "device": str(self.device),
            "data": digest,
            "training_version": TRAINING_VERSION,
        }
        if out is not None:
            self.save(out)
            ckpt.unlink(missing_ok=True)  # the finished model replaces the checkpoint
        return self

    @torch.no_grad()
    def _recalibrate_bn(self, data: torch.Tensor, batch_size: int) -> None:
        """Replace the running batch-norm statistics by their average over all training
        discs, in batches of the training size ("precise BN"): the eval-mode model is then a
        fixed function of the weights, not of the last few noisy batches."""
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        for i in range(0, len(data), batch_size):
            x = data[i : i + batch_size].to(self.device).float().unsqueeze(1)
            if self.config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            self.model(x)
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
        self.model.eval()

    def _write_checkpoint(self, path: Path, opt, history, epoch, elapsed, digest) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = _optimizer_tensors(opt)
        tensors.update(opt_tensors)
        _save_tensors(
            tensors,
            path,
            {
                "format": FORMAT_VERSION,
                "training_version": TRAINING_VERSION,
                "training_key": self.config.training_key(),
                "max_epochs": self.config.max_epochs,
                "data": digest,
                "epoch": epoch,
                "seconds": elapsed,
                "history": history,
                "optimizer": opt_meta,
            },
        )

    # -- persistence ----------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike, metrics: dict | None = None) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if metrics:
            self.metrics.update(metrics)
        _save_tensors(
            self.model.state_dict(),
            out / MODEL_FILE,
            {"format": FORMAT_VERSION, "config": self.config.to_dict()},
        )
        write_text_atomic(json.dumps(self.config.to_dict(), indent=2) + "\n", out / "config.json")
        write_text_atomic(
            json.dumps(_finite(self.metrics), indent=2, allow_nan=False) + "\n",
            out / "metrics.json",
        )
        if not self.history.empty:
            with atomic_path(out / "history.csv") as tmp:
                self.history.to_csv(tmp, index=False, lineterminator="\n")
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str | torch.device | None = None) -> DiscAE:
        """Load a model folder written by :meth:`save` (safetensors; no pickle)."""
        folder = Path(model_dir)
        path = folder / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: no trained model here")
        tensors, meta = _load_tensors(path)
        cfg = AEConfig.from_dict(meta["config"])
        ae = cls(cfg, device=torch.device(device) if device else default_device())
        ae.model.load_state_dict(tensors)
        ae.model.eval()
        if (folder / "metrics.json").exists():
            ae.metrics = json.loads((folder / "metrics.json").read_text())
        if (folder / "history.csv").exists():
            ae.history = pd.read_csv(folder / "history.csv")
        return ae


def _finite(obj):
    """JSON-safe copy: NaN and infinities become None (null)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def _throughput(history: list[dict], n: int) -> float:
    """Training volumes per second (optimisation steps only, evaluation excluded)."""
    t = sum(r["seconds"] - r.get("eval_seconds", 0.0) for r in history)
    return round(len(history) * n / t, 2) if t > 0 else math.nan


def _seed_everything(seed: int) -> None:
    from monai.utils import set_determinism

    set_determinism(seed=seed)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool, k: int):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"autoencoder k={k}", unit="epoch", leave=False)


def fit(
    cubes: np.ndarray,
    config: AEConfig,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **kwargs,
) -> DiscAE:
    """Train a new autoencoder on ``cubes``; see :meth:`DiscAE.fit`.

    On the CPU, torch uses ``config.cpu_threads`` threads (set from the profile and
    ``DISCLATENT_CPU_THREADS`` by :meth:`AEConfig.from_profile`; 0 keeps torch's default).
    """
    ae = DiscAE(config, device=torch.device(device) if device else default_device())
    if ae.device.type == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    return ae.fit(cubes, out_dir=out_dir, **kwargs)


def encode(model: DiscAE | str | os.PathLike, cubes: np.ndarray) -> np.ndarray:
    ae = model if isinstance(model, DiscAE) else DiscAE.load(model)
    return ae.encode(cubes)


def decode(model: DiscAE | str | os.PathLike, z: np.ndarray) -> np.ndarray:
    ae = model if isinstance(model, DiscAE) else DiscAE.load(model)
    return ae.decode(z)


# ---------------------------------------------------------------------------------------
# The linear baseline
# ---------------------------------------------------------------------------------------
class PCABaseline:
    """PCA of the flattened binary masks with ``k`` components (a linear shape model).

    ``reconstruct`` projects onto the components, maps back and thresholds at 0.5. ``k`` is
    capped at the number of training discs minus one (PCA has no more components).
    """

    def __init__(self, latent_dim: int, seed: int = 0) -> None:
        self.latent_dim = latent_dim
        self.seed = seed

    def fit(self, cubes: np.ndarray) -> PCABaseline:
        from sklearn.decomposition import PCA

        x = np.asarray(cubes, np.float32).reshape(len(cubes), -1)
        self.shape_ = np.asarray(cubes).shape[1:]
        self.n_components_ = int(min(self.latent_dim, max(len(x) - 1, 1)))
        self.pca_ = PCA(
            n_components=self.n_components_, svd_solver="full", random_state=self.seed
        ).fit(x)
        return self

    def transform(self, cubes: np.ndarray) -> np.ndarray:
        return self.pca_.transform(np.asarray(cubes, np.float32).reshape(len(cubes), -1))

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        x = self.pca_.inverse_transform(np.asarray(z, np.float32))
        return (x.reshape(-1, *self.shape_) > 0.5).astype(np.uint8)

    def reconstruct(self, cubes: np.ndarray) -> np.ndarray:
        return self.inverse_transform(self.transform(cubes))

    def iou(self, cubes: np.ndarray) -> np.ndarray:
        return iou_per_disc(self.reconstruct(cubes), cubes)


# ---------------------------------------------------------------------------------------
# scikit-learn style transformer for latent features
# ---------------------------------------------------------------------------------------
try:
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError:  # pragma: no cover - scikit-learn is a dependency
    BaseEstimator, TransformerMixin = object, object


class LatentFeatures(BaseEstimator, TransformerMixin):
    """Latent features of disc cubes, as a scikit-learn transformer.

    ``X`` is an array of cubes ``(n, S, S, S)`` or of flattened cubes ``(n, S**3)`` (so it can
    pass through pipelines). ``fit`` trains a new autoencoder on the discs it is given (all of
    them inside a cross-validation fold are training discs), unless ``model_dir`` names a
    trained model, which is then loaded and frozen (``fit`` does not train). ``transform``
    returns ``(n, k)`` latent vectors named ``latent_0 ..``.
    """

    def __init__(
        self,
        latent_dim: int = 4,
        profile: str = "default",
        model_dir: str = "",
        max_epochs: int | None = None,
        seed: int = 0,
        device: str | None = None,
        progress: bool = False,
    ) -> None:
        self.latent_dim = latent_dim
        self.profile = profile
        self.model_dir = model_dir
        self.max_epochs = max_epochs
        self.seed = seed
        self.device = device
        self.progress = progress

    def fit(self, X, y=None):  # noqa: N803 (scikit-learn naming)
        if self.model_dir:
            self.model_ = DiscAE.load(self.model_dir, self.device)
        else:
            cfg = AEConfig.from_profile(
                self.profile, self.latent_dim, max_epochs=self.max_epochs, seed=self.seed
            )
            self.model_ = fit(
                _as_cubes(X, cfg.size), cfg, device=self.device, progress=self.progress
            )
        self.n_features_out_ = self.model_.config.latent_dim
        return self

    def transform(self, X):  # noqa: N803
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")
        return self.model_.encode(_as_cubes(X, self.model_.config.size))

    def get_feature_names_out(self, input_features=None):
        return np.array([f"latent_{i}" for i in range(self.n_features_out_)], dtype=object)


def _as_cubes(X, size: int) -> np.ndarray:  # noqa: N803
    return fit_cubes(X, size)


class CropWarning(UserWarning):
    """Disc voxels fell outside the model's central crop of a larger cube."""


def fit_cubes(cubes, size: int) -> np.ndarray:
    """Cubes ``(n, S, S, S)`` (or flattened ``(n, S**3)``) brought to the model's ``size``.

    Disc cubes are centred on the disc's centre of mass, so a larger cube on the same grid
    (e.g. the isolation chapter's 48^3 store for a 32^3 model) is cropped about its centre
    and a smaller one zero-padded about its centre; ``S - size`` must be even. Disc voxels
    that fall outside a crop are reported with a :class:`CropWarning`, never dropped
    silently.
    """
    x = np.asarray(cubes)
    if x.ndim == 2:
        side = round(x.shape[1] ** (1 / 3)) if x.shape[1] else 0
        if side**3 != x.shape[1]:
            raise ValueError(f"expected cubes (n, S, S, S) or flattened (n, S^3); got {x.shape}")
        x = x.reshape(-1, side, side, side)
    if x.ndim != 4 or len(set(x.shape[1:])) != 1:
        raise ValueError(f"expected cubes of shape (n, S, S, S), got {x.shape}")
    side = x.shape[1]
    if side == size:
        return x
    if len(x) == 0:
        return np.zeros((0, size, size, size), x.dtype)
    if (side - size) % 2:
        raise ValueError(
            f"cubes of {side}^3 cannot be centred in the model's {size}^3 "
            "(the difference must be even)"
        )
    m = abs(side - size) // 2
    if side > size:
        inner = x[:, m : m + size, m : m + size, m : m + size]
        lost = x.reshape(len(x), -1).sum(1) - inner.reshape(len(x), -1).sum(1)
        if lost.any():
            warnings.warn(
                f"{int((lost > 0).sum())} of {len(x)} discs have voxels outside the "
                f"central {size}^3 crop of their {side}^3 cube (up to "
                f"{int(lost.max())} voxels each); they are cut",
                CropWarning,
                stacklevel=3,
            )
        return inner
    out = np.zeros((len(x), size, size, size), x.dtype)
    out[:, m : m + side, m : m + side, m : m + side] = x
    return out


# ---------------------------------------------------------------------------------------
# Splits and the sweep
# ---------------------------------------------------------------------------------------
def patient_split(
    patients: Sequence, heldout_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, heldout) over discs; whole patients are held out."""
    patients = np.asarray([str(p) for p in patients])
    uniq = np.unique(patients)
    n_out = int(round(heldout_fraction * len(uniq)))
    if heldout_fraction > 0 and len(uniq) >= 2:
        n_out = min(max(n_out, 1), len(uniq) - 1)
    else:
        n_out = 0
    rng = np.random.default_rng(seed)
    out = set(rng.choice(uniq, size=n_out, replace=False).tolist()) if n_out else set()
    heldout = np.array([p in out for p in patients])
    return ~heldout, heldout


def _summary(ious: np.ndarray) -> dict:
    if len(ious) == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan}
    _, lo, hi = bootstrap_mean_ci(ious)
    return {"mean": float(np.mean(ious)), "lo": lo, "hi": hi}


def evaluate(ae: DiscAE, train: np.ndarray, heldout: np.ndarray) -> dict:
    """Training and held-out IoU of a trained model, with bootstrap CIs over discs."""
    tr = ae.iou(train)
    ho = ae.iou(heldout) if heldout is not None and len(heldout) else np.zeros(0)
    s_tr, s_ho = _summary(tr), _summary(ho)
    return {
        "train_iou": s_tr["mean"],
        "train_iou_ci": [s_tr["lo"], s_tr["hi"]],
        "heldout_iou": s_ho["mean"],
        "heldout_iou_ci": [s_ho["lo"], s_ho["hi"]],
        "n_heldout": int(len(ho)),
        "train_ious": tr,
        "heldout_ious": ho,
    }


def train_or_load(
    cubes: np.ndarray,
    config: AEConfig,
    out_dir: str | os.PathLike,
    heldout: np.ndarray | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[DiscAE, dict]:
    """Train (resuming a checkpoint) unless ``out_dir`` holds a model of this configuration
    trained on these discs; then evaluate on training and held-out discs and save metrics."""
    out = Path(out_dir)
    cubes = fit_cubes(cubes, config.size)
    heldout = (
        np.zeros((0,) + cubes.shape[1:], np.uint8)
        if heldout is None
        else fit_cubes(heldout, config.size)
    )
    ae = None
    if (out / MODEL_FILE).exists() and (out / "metrics.json").exists():
        cached = DiscAE.load(out, device)
        if (
            cached.config == config
            and cached.metrics.get("data") == data_digest(cubes)
            and cached.metrics.get("training_version") == TRAINING_VERSION
            and "heldout_iou" in cached.metrics
        ):
            ae = cached
    if ae is None:
        ae = fit(cubes, config, out_dir=out, device=device, progress=progress)
    ev = evaluate(ae, cubes, heldout)
    ae.metrics.update({k: v for k, v in ev.items() if not k.endswith("ious")})
    ae.save(out)
    return ae, ev


def _fmt_ci(mean: float, lo: float, hi: float) -> str:
    return format_ci(mean, lo, hi, digits=4, missing="-")


def _paper_sweep_cells(latent_dim: int) -> tuple[str, str]:
    """The published training IoU and epochs for ``latent_dim``, as table text."""
    p = published.sweep_row(latent_dim)
    if p is None:
        return "-", "-"
    if not p["converged"]:
        return p["note"], f"no convergence in {published.AUTOENCODER_MAX_EPOCHS}"
    return _fmt_ci(p["iou"], p["iou_lo"], p["iou_hi"]), str(int(p["epochs"]))


def sweep(
    train: np.ndarray,
    heldout: np.ndarray,
    base: AEConfig,
    latent_dims: Sequence[int] = (64, 8, 4, 3),
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[pd.DataFrame, dict[int, DiscAE], dict[int, PCABaseline]]:
    """The bottleneck sweep: an autoencoder and a PCA baseline per ``k``.

    Returns the result table (one row per k, numbers as floats), the models and the PCA fits.
    Models are saved under ``out_dir/k<K>`` and reused when nothing changed.
    """
    rows, models, pcas = [], {}, {}
    train, heldout = fit_cubes(train, base.size), fit_cubes(heldout, base.size)
    for k in latent_dims:
        cfg = replace(base, latent_dim=int(k))
        folder = Path(out_dir) / f"k{k}" if out_dir is not None else None
        if folder is not None:
            ae, ev = train_or_load(train, cfg, folder, heldout, progress, device)
        else:
            ae = fit(train, cfg, device=device, progress=progress)
            ev = evaluate(ae, train, heldout)
        pca = PCABaseline(int(k), seed=base.seed).fit(train)
        p_tr = _summary(pca.iou(train))
        p_ho = _summary(pca.iou(heldout) if len(heldout) else np.zeros(0))
        m = ae.metrics
        rows.append(
            {
                "latent_dim": int(k),
                "converged": bool(m["converged"]),
                "epochs_to_converge": m.get("epochs_to_converge"),
                "epochs_run": m["epochs"],
                "train_iou": ev["train_iou"],
                "train_iou_lo": ev["train_iou_ci"][0],
                "train_iou_hi": ev["train_iou_ci"][1],
                "train_iou_min": float(ev["train_ious"].min()),
                "heldout_iou": ev["heldout_iou"],
                "heldout_iou_lo": ev["heldout_iou_ci"][0],
                "heldout_iou_hi": ev["heldout_iou_ci"][1],
                "pca_components": pca.n_components_,
                "pca_train_iou": p_tr["mean"],
                "pca_train_iou_lo": p_tr["lo"],
                "pca_train_iou_hi": p_tr["hi"],
                "pca_heldout_iou": p_ho["mean"],
                "pca_heldout_iou_lo": p_ho["lo"],
                "pca_heldout_iou_hi": p_ho["hi"],
                "n_train": len(train),
                "n_heldout": len(heldout),
                "train_seconds": m.get("train_seconds"),
                "parameters": m.get("parameters"),
            }
        )
        models[int(k)], pcas[int(k)] = ae, pca
    return pd.DataFrame(rows), models, pcas


def sweep_table(results: pd.DataFrame) -> pd.DataFrame:
    """The sweep beside the paper: one row per k, IoU as 'mean (95 % CI)' strings."""
    rows = []
    for r in results.itertuples(index=False):
        paper_iou, paper_epochs = _paper_sweep_cells(r.latent_dim)
        if r.converged:
            ours_epochs = str(int(r.epochs_to_converge))
        else:
            ours_epochs = f"no convergence in {int(r.epochs_run)}"
        rows.append(
            {
                "k": r.latent_dim,
                "paper: train IoU": paper_iou,
                "paper: epochs": paper_epochs,
                "ours: train IoU (95% CI)": _fmt_ci(r.train_iou, r.train_iou_lo, r.train_iou_hi),
                "ours: epochs": ours_epochs,
                "ours: held-out IoU (95% CI)": _fmt_ci(
                    r.heldout_iou, r.heldout_iou_lo, r.heldout_iou_hi
                ),
                "PCA: components": int(r.pca_components),
                "PCA: train IoU": _fmt_ci(r.pca_train_iou, r.pca_train_iou_lo, r.pca_train_iou_hi),
                "PCA: held-out IoU": _fmt_ci(
                    r.pca_heldout_iou, r.pca_heldout_iou_lo, r.pca_heldout_iou_hi
                ),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# Discs from masks, for the notebook and the command line
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Discs:
    """Cubes ``(n, S, S, S)`` (SI, AP, LR) and their table (patient, series, IVD label ...)."""

    cubes: np.ndarray
    table: pd.DataFrame
    skipped: pd.DataFrame


def load_discs(
    masks: str | os.PathLike,
    config: AEConfig,
    store: str | os.PathLike | None = None,
    modalities: Sequence[str] | None = ("t1",),
    progress: bool = False,
) -> Discs:
    """Isolate the discs of ``masks`` (SPIDER folder, folder of masks or one file) into cubes
    of the model's size and spacing (:func:`disclatent.discs.isolation.build_disc_store`).

    The cube is the model's: ``config.size`` voxels at ``config.spacing_mm``, centred on the
    disc's centre of mass. A disc that does not fit is left out with a warning and listed in
    ``skipped`` (never truncated). With ``store`` the cubes are written there and reused
    while the masks and settings are unchanged.
    """
    from disclatent.discs.isolation import build_disc_store, cached_disc_store, load_disc_store

    if store is not None:
        ds = cached_disc_store(
            masks,
            store,
            spacing_mm=config.spacing_mm,
            size=config.size,
            progress=progress,
            modalities=modalities,
        )
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            ds = load_disc_store(
                build_disc_store(
                    masks,
                    Path(tmp) / "discs.npz",
                    spacing_mm=config.spacing_mm,
                    size=config.size,
                    progress=progress,
                    modalities=modalities,
                    skip_errors=True,
                )
            )
    if len(ds.cubes) == 0:
        raise ValueError(
            f"{masks}: no disc could be isolated into a {config.size}^3 cube at "
            f"{config.spacing_mm} mm"
        )
    return Discs(ds.cubes, ds.table.reset_index(drop=True), ds.skipped)


def describe_config(cfg: AEConfig, n_params: int | None = None) -> dict:
    """The settings of a configuration, as table rows."""
    extent = " x ".join(f"{cfg.size * s:.0f}" for s in cfg.spacing_mm)
    return {
        "input cube (voxels)": f"{cfg.size}^3",
        "spacing SI x AP x LR (mm)": " x ".join(f"{s:g}" for s in cfg.spacing_mm),
        "field of view (mm)": extent,
        "stride-2 stages, channels": "-".join(str(c) for c in cfg.channels),
        "parameters (k=4)": f"{n_params:,}" if n_params else "-",
        "loss": {"bce": "BCE", "dice_bce": "Dice + BCE"}[cfg.loss]
        + (f" (BCE x {cfg.bce_weight:g})" if cfg.loss != "bce" and cfg.bce_weight != 1 else ""),
        "output bias at start": "log-odds of the foreground share",
        "optimiser": f"Adam, lr {cfg.lr:g}, {cfg.schedule}",
        "batch": str(cfg.batch_size),
        "batch norm": ("precise BN" if cfg.precise_bn else "running averages")
        + (f"; fixed from epoch {cfg.freeze_bn_epoch}" if cfg.freeze_bn_epoch else ""),
        "epoch budget": str(cfg.max_epochs),
        "criterion": f"mean IoU >= {cfg.target_iou}, all training discs, eval mode",
    }


def plot_reconstructions(
    train: np.ndarray,
    heldout: np.ndarray,
    picks: list[tuple[str, int]],
    models: dict[int, DiscAE],
    pca: PCABaseline | None,
    k_pca: int,
    spacing_mm: Sequence[float],
):
    """One figure per picked disc: rows = planes, columns = input, each k, and PCA."""
    import matplotlib.pyplot as plt

    sp_si, sp_ap, sp_lr = spacing_mm
    figs = []
    for split, i in picks:
        cube = (train if split == "train" else heldout)[i]
        cols = [("input", cube)]
        for k, m in models.items():
            rec = m.reconstruct(cube[None])[0]
            cols.append((f"k={k} (IoU {iou_per_disc(rec[None], cube[None])[0]:.3f})", rec))
        if pca is not None:
            rec = pca.reconstruct(cube[None])[0]
            cols.append((f"PCA k={k_pca} (IoU {iou_per_disc(rec[None], cube[None])[0]:.3f})", rec))
        fig, axes = plt.subplots(3, len(cols), figsize=(1.9 * len(cols), 5.6), squeeze=False)
        s = cube.shape[0]
        extents = {
            "sagittal": (0, s * sp_ap, 0, s * sp_si),
            "coronal": (0, s * sp_lr, 0, s * sp_si),
            "transverse": (0, s * sp_lr, s * sp_ap, 0),
        }
        origin = {"sagittal": "lower", "coronal": "lower", "transverse": "upper"}
        ref = central_slices(cube)
        for j, (title, vol) in enumerate(cols):
            for r, (plane, sl) in enumerate(central_slices(vol).items()):
                ax = axes[r, j]
                ax.imshow(
                    sl,
                    cmap="Greys",
                    vmin=0,
                    vmax=1.6,
                    origin=origin[plane],
                    extent=extents[plane],
                    interpolation="nearest",
                )
                if j > 0 and ref[plane].any():
                    # pixel centres in mm, so the outline sits on the pixels drawn above
                    rows, cols = ref[plane].shape
                    sx = (extents[plane][1] - extents[plane][0]) / cols
                    sy = abs(extents[plane][3] - extents[plane][2]) / rows
                    ax.contour(
                        (np.arange(cols) + 0.5) * sx,
                        (np.arange(rows) + 0.5) * sy,
                        ref[plane],
                        levels=[0.5],
                        colors="red",
                        linewidths=0.8,
                    )
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(title, fontsize=7)
                if j == 0:
                    ax.set_ylabel(plane, fontsize=8)
        fig.suptitle(f"{split} disc {i}", fontsize=9)
        fig.tight_layout()
        figs.append(fig)
    return figs


# ---------------------------------------------------------------------------------------
# Command line (registered in disclatent.cli)
# ---------------------------------------------------------------------------------------
def _disc_names(table: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("patient", "series", "ivd_label", "level") if c in table]
    return table[cols].reset_index(drop=True)


def cli_train(args) -> int:
    """``autoencoder train --masks PATH --latent-dim K --out DIR [--profile P] ...``"""
    from disclatent.profiles import get_profile

    prof = get_profile(args.profile)
    # --threads overrides the profile's (and DISCLATENT_CPU_THREADS); fit() applies it
    cfg = AEConfig.from_profile(
        prof,
        args.latent_dim,
        max_epochs=args.max_epochs,
        seed=args.seed,
        cpu_threads=args.threads or None,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    modalities = None if args.modalities == "all" else tuple(args.modalities.split(","))
    discs = load_discs(args.masks, cfg, out / "discs.npz", modalities, progress=not args.quiet)
    frac = prof.ae_heldout_fraction if args.heldout_fraction is None else args.heldout_fraction
    tr, ho = patient_split(discs.table["patient"], frac, seed=cfg.seed)
    split = _disc_names(discs.table).assign(split=np.where(ho, "heldout", "train"))
    with atomic_path(out / "discs.csv") as tmp:
        split.to_csv(tmp, index=False, lineterminator="\n")
    start = time.perf_counter()
    ae, ev = train_or_load(discs.cubes[tr], cfg, out, discs.cubes[ho], progress=not args.quiet)
    ae.save(
        out,
        {
            "n_heldout": int(ho.sum()),
            "n_skipped": int(len(discs.skipped)),
            "heldout_fraction": frac,
            "masks": str(Path(args.masks).resolve()),
        },
    )
    if not args.quiet:
        m = ae.metrics
        held = (
            f"held-out IoU {m['heldout_iou']:.4f} ({m['n_heldout']} discs)"
            if m["n_heldout"]
            else "no held-out discs"
        )
        print(
            f"k={cfg.latent_dim}: {m['epochs']} epochs, "
            f"{'converged' if m['converged'] else 'not converged'}, training IoU "
            f"{m['train_iou']:.4f} ({m['n_train']} discs), {held}; "
            f"{time.perf_counter() - start:.1f} s -> {out}"
        )
    return 0


def cli_encode(args) -> int:
    """``autoencoder encode --model DIR --masks PATH --out FILE.csv``"""
    if args.threads:
        torch.set_num_threads(args.threads)
    ae = DiscAE.load(args.model)
    modalities = None if args.modalities == "all" else tuple(args.modalities.split(","))
    discs = load_discs(args.masks, ae.config, None, modalities, progress=not args.quiet)
    z = ae.encode(discs.cubes)
    iou = iou_per_disc(ae.decode(z), discs.cubes)
    table = _disc_names(discs.table)
    for c in ("centre_x_mm", "centre_y_mm", "centre_z_mm"):
        if c in discs.table:
            table[c] = discs.table[c].to_numpy()
    for j in range(z.shape[1]):
        table[f"latent_{j}"] = z[:, j]
    table["reconstruction_iou"] = iou
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")
    if not args.quiet:
        print(
            f"encoded {len(table)} discs (k={ae.config.latent_dim}, mean reconstruction IoU "
            f"{iou.mean():.4f}) -> {args.out}"
        )
        if len(discs.skipped):
            print(f"{len(discs.skipped)} disc(s) skipped (do not fit the {ae.config.size}^3 cube)")
    return 0


def cli_decode(args) -> int:
    """``autoencoder decode --model DIR --latent FILE.csv --out DIR``: one mask per row.

    Each decoded cube is written as ``<out>/<name>.mha`` with the model's spacing, in LPS
    orientation, centred at ``centre_*_mm`` when the CSV has those columns (else at 0). The
    disc carries its SPIDER label ``200 + ivd_label`` when the CSV names the IVD label, else
    201.
    """
    from disclatent.data.volume import Volume, write_image

    ae = DiscAE.load(args.model)
    table = pd.read_csv(args.latent, dtype={"patient": str, "series": str})
    cols = [f"latent_{j}" for j in range(ae.config.latent_dim)]
    missing = [c for c in cols if c not in table]
    if missing:
        raise ValueError(
            f"{args.latent}: missing columns {', '.join(missing)} "
            f"(the model has k={ae.config.latent_dim})"
        )
    masks = ae.decode(table[cols].to_numpy(np.float32))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sp = ae.config.spacing_mm
    spacing_xyz = (sp[2], sp[1], sp[0])
    s = ae.config.size
    for i, row in table.iterrows():
        if {"series", "ivd_label"} <= set(table.columns):
            name = f"{row['series']}_ivd{int(row['ivd_label'])}"
        else:
            name = f"disc{i:04d}"
        centre = np.array(
            [row.get("centre_x_mm", 0.0), row.get("centre_y_mm", 0.0), row.get("centre_z_mm", 0.0)],
            float,
        )
        origin = centre - (s - 1) / 2.0 * np.asarray(spacing_xyz)
        value = 200 + int(row["ivd_label"]) if "ivd_label" in table.columns else 201
        arr = masks[i].astype(np.int16) * value
        write_image(Volume(arr, spacing_xyz, tuple(origin)), out / f"{name}.mha")
    if not args.quiet:
        print(f"decoded {len(table)} latent vectors to {out}")
    return 0
