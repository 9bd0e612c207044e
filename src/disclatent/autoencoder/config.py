"""What defines one autoencoder and its training run: :class:`AEConfig`.

A profile (:mod:`disclatent.profiles`) sets every field through :meth:`AEConfig.from_profile`;
:func:`describe_config` turns a configuration into the rows of the chapter's settings table.
The defaults are the published model (``book/method.md``, *Autoencoder*): a 64^3 cube at
1.5 x 1.2 x 1.4 mm (SI, AP, LR), five stride-2 stages of 32 to 512 channels, binary
cross-entropy, Adam at a constant 10^-3, batch 4, a 1000-epoch budget and the 0.995 IoU
criterion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from disclatent import published
from disclatent.accel import check_amp
from disclatent.conventions import PAPER_SPACING
from disclatent.profiles import Profile, cpu_threads, get_profile

SCHEDULES = ("constant", "onecycle", "cosine")
LOSSES = ("bce", "dice_bce")
NORMS = ("batch", "group")  # the network's normalisation (disclatent.autoencoder.network)
DECODER_KERNELS = (3, 4)
STRATEGIES = ("joint", "decoder_first")  # see disclatent.autoencoder.stages
CODE_INITS = ("pca", "random")  # the decoder stage's starting codes (decoder_first)
#: fields added after models were first cached, with the value that reproduces the training
#: from before they existed: a stored model without one was trained with that value
NEUTRAL_DEFAULTS: dict[str, Any] = {
    "code_lr_scale": 1.0,
    "code_noise": 0.0,
    "amp": "off",
    "deterministic": True,
    "budget_discs": None,
}


def epochs_for_discs(epochs: int, n_discs: int, budget_discs: int | None) -> int:
    """An epoch budget meant for up to ``budget_discs`` training discs, for ``n_discs``: the
    same ``epochs`` up to that many discs; beyond, ``epochs x budget_discs // n_discs`` (at
    least 1), so a stage shows the network at most ``epochs x budget_discs`` discs (the same
    optimiser steps) however large the cohort. ``budget_discs`` ``None``: epochs are epochs."""
    if budget_discs is None or n_discs <= budget_discs:
        return int(epochs)
    return max(1, int(epochs) * int(budget_discs) // int(n_discs))


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
    # "joint" (the paper: encoder and decoder together, max_epochs) | "decoder_first": the
    # decoder with a free code per disc (max_epochs), then the encoder regresses the codes
    # (encoder_epochs, Adam at encoder_lr, cosine, batch encoder_batch_size)
    strategy: str = "joint"
    encoder_epochs: int = 80
    encoder_lr: float = 1e-3
    encoder_batch_size: int = 8
    # the decoder stage ends once its decoded codes reach target_iou + decoder_margin: the
    # encoder's codes are near, not equal to, the free ones, so the composed autoencoder
    # lands a little below the decoder stage's IoU
    decoder_margin: float = 0.001
    code_init: str = "pca"  # the decoder stage's starting codes: "pca" | "random"
    # the codes' learning rate in the decoder stage, as a multiple of lr
    code_lr_scale: float = 1.0
    # latent noise (a plausibility regulariser, decoder_first only): in the decoder stage
    # each code is decoded as code + code_noise x s x N(0, 1), s the codes' standard
    # deviation per latent feature, so the decoder must draw a disc for every code near a
    # training disc's, not only for the codes themselves (0: none)
    code_noise: float = 0.0
    target_iou: float = published.TARGET_IOU
    stop_at_target: bool = True
    seed: int = 0
    channels_last: bool = False
    precise_bn: bool = True  # re-estimate batch-norm statistics on all discs before eval
    freeze_bn_epoch: int = 0  # from this epoch on, batch norm uses fixed statistics (0: never)
    cpu_threads: int = 1  # torch CPU threads on a CPU device (0: torch's default); see profiles
    # mixed precision of the training steps (disclatent.accel: "off", "auto" = bfloat16 on a
    # CUDA device that supports it, "bf16"); the IoU criterion is always computed in float32
    amp: str = "off"
    # CUDA: deterministic algorithms (True) or cuDNN autotuning (False); see disclatent.accel
    deterministic: bool = True
    # the epoch budgets (max_epochs, encoder_epochs) are meant for up to this many training
    # discs; a larger training set gets as many optimiser steps, not as many epochs
    # (epochs_for_discs; None: epochs are epochs). Training resolves it (for_discs).
    budget_discs: int | None = None

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
        for name, value, allowed in (
            ("schedule", self.schedule, SCHEDULES),
            ("loss", self.loss, LOSSES),
            ("norm", self.norm, NORMS),
            ("decoder_kernel", self.decoder_kernel, DECODER_KERNELS),
            ("strategy", self.strategy, STRATEGIES),
            ("code_init", self.code_init, CODE_INITS),
        ):
            if value not in allowed:
                choices = ", ".join(str(a) for a in allowed)
                raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")
        if self.hard_weight < 0:
            raise ValueError("hard_weight must be non-negative")
        if self.max_epochs < 1 or self.batch_size < 1:
            raise ValueError("max_epochs and batch_size must be positive")
        if self.budget_discs is not None and self.budget_discs < 1:
            raise ValueError(f"budget_discs must be positive or None, got {self.budget_discs}")
        check_amp(self.amp)
        self._check_codes()
        if self.strategy == "decoder_first":
            self._check_decoder_first()

    def _check_codes(self) -> None:
        if self.code_noise < 0 or self.code_lr_scale <= 0:
            raise ValueError("code_noise must be non-negative and code_lr_scale positive")
        if self.code_noise and self.strategy != "decoder_first":
            raise ValueError("code_noise needs strategy='decoder_first' (it perturbs its codes)")

    def _check_decoder_first(self) -> None:
        if self.norm != "group":
            raise ValueError(
                "decoder_first training needs norm='group': batch statistics would differ "
                "between the decoder's codes and the encoder's"
            )
        if self.encoder_epochs < 1 or self.encoder_batch_size < 1:
            raise ValueError("encoder_epochs and encoder_batch_size must be positive")

    @property
    def epoch_budget(self) -> int:
        """Most epochs a run may take: both stages' budgets for ``decoder_first``."""
        return self.max_epochs + (self.encoder_epochs if self.strategy == "decoder_first" else 0)

    def for_discs(self, n_discs: int) -> AEConfig:
        """This configuration for a training set of ``n_discs`` discs, with its epoch budgets
        resolved (:func:`epochs_for_discs`) and ``budget_discs`` set to ``None``: the run
        that is trained, checkpointed, cached and described. Up to ``budget_discs`` discs it
        is the same run as with ``budget_discs = None``; resolving twice changes nothing."""
        if self.budget_discs is None:
            return self
        b = self.budget_discs
        return replace(
            self,
            budget_discs=None,
            max_epochs=epochs_for_discs(self.max_epochs, n_discs, b),
            encoder_epochs=epochs_for_discs(self.encoder_epochs, n_discs, b),
        )

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
            strategy=p.ae_strategy,
            encoder_epochs=p.ae_encoder_epochs,
            channels_last=p.ae_channels_last,
            cpu_threads=cpu_threads(p),
            amp=p.amp,
            deterministic=p.deterministic,
            budget_discs=p.ae_budget_discs,
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
        for k in ("max_epochs", "stop_at_target", "channels_last", "cpu_threads", "deterministic"):
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
        "training": "encoder and decoder together"
        if cfg.strategy == "joint"
        else f"decoder first ({ {'pca': 'PCA', 'random': 'random'}[cfg.code_init] } codes), "
        "then encoder",
        "optimiser": f"Adam, lr {cfg.lr:g}, {cfg.schedule}",
        "encoder stage": f"Adam {cfg.encoder_lr:g}, cosine, batch {cfg.encoder_batch_size}, "
        "MSE to codes"
        if cfg.strategy == "decoder_first"
        else "-",
        "batch": str(cfg.batch_size),
        "batch-norm statistics": (
            ("precise BN" if cfg.precise_bn else "running averages")
            + (f"; fixed from epoch {cfg.freeze_bn_epoch}" if cfg.freeze_bn_epoch else "")
        )
        if cfg.norm == "batch"
        else "none (GroupNorm)",
        "epoch budget": (
            str(cfg.max_epochs)
            if cfg.strategy == "joint"
            else f"decoder {cfg.max_epochs}, then encoder {cfg.encoder_epochs}"
        )
        + (
            f" (for up to {cfg.budget_discs} training discs; more discs: the same "
            "optimiser steps, fewer epochs)"
            if cfg.budget_discs is not None
            else ""
        ),
        "criterion": f"mean IoU >= {cfg.target_iou}, all training discs, eval mode",
    }
