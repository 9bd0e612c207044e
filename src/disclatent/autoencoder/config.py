"""What defines one autoencoder and its training run: :class:`AEConfig`.

A profile (:mod:`disclatent.profiles`) sets every field through :meth:`AEConfig.from_profile`;
:func:`describe_config` turns a configuration into the rows of the chapter's settings table.
The defaults are the published model (``book/method.md``, *Autoencoder*): a 64^3 cube at
1.5 x 1.2 x 1.4 mm (SI, AP, LR), five stride-2 stages of 32 to 512 channels, binary
cross-entropy, Adam at a constant 10^-3, batch 4, a 1000-epoch budget and the 0.995 IoU
criterion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from disclatent import published
from disclatent.conventions import PAPER_SPACING
from disclatent.profiles import Profile, cpu_threads, get_profile

SCHEDULES = ("constant", "onecycle", "cosine")
LOSSES = ("bce", "dice_bce")
NORMS = ("batch", "group")  # the network's normalisation (disclatent.autoencoder.network)
DECODER_KERNELS = (3, 4)


@dataclass(frozen=True)
class AEConfig:
    """Everything that defines one autoencoder and its training run."""

    latent_dim: int = 4
    size: int = published.CUBE_SIZE  # cube edge (voxels); divisible by 2 ** len(channels)
    spacing_mm: tuple[float, float, float] = PAPER_SPACING  # cube spacing, (SI, AP, LR)
    channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    max_epochs: int = published.AUTOENCODER_EPOCH_BUDGET
    batch_size: int = published.AUTOENCODER_TRAINING.batch_size
    lr: float = published.AUTOENCODER_TRAINING.lr
    schedule: str = "constant"  # "constant" (the paper) | "onecycle" | "cosine"
    loss: str = "bce"  # "bce" (the paper) | "dice_bce" (soft Dice + bce_weight x BCE)
    bce_weight: float = 1.0
    # BCE weight 1 + hard_weight on the voxels the model currently gets wrong (0: the paper)
    hard_weight: float = 0.0
    norm: str = "batch"  # "batch" (the paper) | "group"; see disclatent.autoencoder.network
    decoder_kernel: int = 3  # 3 (the paper) | 4
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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.decoder_kernel not in DECODER_KERNELS:
            raise ValueError(f"decoder_kernel must be one of {DECODER_KERNELS}")
        if self.hard_weight < 0:
            raise ValueError("hard_weight must be non-negative")
        if self.max_epochs < 1 or self.batch_size < 1:
            raise ValueError("max_epochs and batch_size must be positive")

    @classmethod
    def from_profile(
        cls, profile: str | Profile, latent_dim: int = 4, **overrides: Any
    ) -> AEConfig:
        """The configuration a :class:`~disclatent.profiles.Profile` (or its name) sets.

        ``overrides`` replace fields; an override of ``None`` keeps the profile's value.
        """
        p = get_profile(profile) if isinstance(profile, str) else profile
        values: dict[str, Any] = dict(
            latent_dim=latent_dim,
            size=p.ae_size,
            spacing_mm=p.disc_spacing_mm,
            channels=p.ae_channels,
            max_epochs=p.ae_max_epochs,
            batch_size=p.ae_batch_size,
            lr=p.ae_lr,
            schedule=p.ae_schedule,
            loss=p.ae_loss,
            hard_weight=p.ae_hard_weight,
            norm=p.ae_norm,
            decoder_kernel=p.ae_decoder_kernel,
            freeze_bn_epoch=p.ae_freeze_bn_epoch,
            channels_last=p.ae_channels_last,
            cpu_threads=cpu_threads(p),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        d = asdict(self)
        d["spacing_mm"] = list(self.spacing_mm)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AEConfig:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names
        }
        return cls(**values)

    def training_key(self) -> dict[str, Any]:
        """The fields that change what training produces (not the stopping budget)."""
        d = self.to_dict()
        for k in ("max_epochs", "stop_at_target", "channels_last", "cpu_threads"):
            d.pop(k)
        return d


def describe_config(cfg: AEConfig, n_params: int | None = None) -> dict[str, str]:
    """The settings of a configuration, as table rows."""
    extent = " x ".join(f"{cfg.size * s:.0f}" for s in cfg.spacing_mm)
    return {
        "input cube (voxels)": f"{cfg.size}^3",
        "spacing SI x AP x LR (mm)": " x ".join(f"{s:g}" for s in cfg.spacing_mm),
        "field of view (mm)": extent,
        "stride-2 stages, channels": "-".join(str(c) for c in cfg.channels),
        "normalisation": {"batch": "batch norm", "group": "GroupNorm"}[cfg.norm],
        "decoder kernel": f"{cfg.decoder_kernel}^3, stride 2",
        "parameters (k=4)": f"{n_params:,}" if n_params else "-",
        "loss": {"bce": "BCE", "dice_bce": "Dice + BCE"}[cfg.loss]
        + (f" (BCE x {cfg.bce_weight:g})" if cfg.loss != "bce" and cfg.bce_weight != 1 else "")
        + (f"; wrong voxels weigh {1 + cfg.hard_weight:g}" if cfg.hard_weight else ""),
        "output bias at start": "log-odds of the foreground share",
        "optimiser": f"Adam, lr {cfg.lr:g}, {cfg.schedule}",
        "batch": str(cfg.batch_size),
        "batch-norm statistics": (
            ("precise BN" if cfg.precise_bn else "running averages")
            + (f"; fixed from epoch {cfg.freeze_bn_epoch}" if cfg.freeze_bn_epoch else "")
        )
        if cfg.norm == "batch"
        else "none (GroupNorm)",
        "epoch budget": str(cfg.max_epochs),
        "criterion": f"mean IoU >= {cfg.target_iou}, all training discs, eval mode",
    }
