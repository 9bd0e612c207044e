"""What defines one segmentation model and its training: :class:`SegConfig`.

A config is saved as ``config.json`` in its model folder; :func:`is_trained
<disclatent.segmentation.training.is_trained>` reuses a folder only while the saved config
(and the data) equal the wanted one, so a field added here changes every model's identity.
The run profiles (:mod:`disclatent.profiles`) set the sizes and budgets
(:func:`config_from_profile`); the method is in ``book/method.md``, *Segmentation*.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from disclatent import published
from disclatent.accel import check_amp
from disclatent.conventions import PAPER_SPACING, Spacing
from disclatent.profiles import Profile, cpu_threads, get_profile

MODEL_NAMES = ("UNet", "SegResNet", "SwinUNETR")
SEG_VERSION = 2  # bump when training changes meaning, to invalidate cached models
#: fields added after models were trained, with the value those models were trained with: a
#: saved config without the field still names the same model
NEUTRAL_DEFAULTS: dict[str, Any] = {"amp": "off"}


# the files of one trained model's folder
MODEL_FILE = "model.safetensors"  # the weights with the best validation IoU
CONFIG_FILE = "config.json"  # SegConfig, version and data digest
SPLIT_FILE = "split.csv"  # every series' role: train, validation or test
HISTORY_FILE = "history.csv"  # one row per epoch
DONE_FILE = "train.json"  # written last: the run finished (status, best epoch, time)


@dataclass(frozen=True)
class SegConfig:
    """Everything that defines one segmentation model and its training."""

    model: str = "UNet"
    patch: tuple[int, int, int] = (64, 64, 32)  # numpy order (SI, AP, LR) on the network grid
    batch_size: int = published.SEGMENTATION_TRAINING.batch_size
    lr: float = published.SEGMENTATION_TRAINING.lr
    max_epochs: int = 40
    iters_per_epoch: int = 0  # 0: one pass, ceil(n_train * patches_per_volume / batch_size)
    patches_per_volume: int = 4
    patience: int = published.SEGMENTATION_TRAINING.patience
    # optional wall-clock budget (CPU profiles), checked before every training iteration;
    # when reached, the epoch is cut short, validated, and training stops
    max_minutes: float | None = None
    val_fraction: float = 0.2
    test_site: str = "auto"
    modalities: tuple[str, ...] = ("t1",)
    seed: int = 0
    # the network grid in ITK (x, y, z) = (LR, AP, SI) order, mm, as config.json stores it;
    # a :class:`Spacing` given here is converted; read it back as :attr:`network_spacing`
    spacing: tuple[float, float, float] = PAPER_SPACING.xyz
    pos_fraction: float = 2 / 3
    augment: bool = True
    threshold: float = 0.5
    sw_overlap: float = 0.25
    sw_batch_size: int = 4
    device: str = "auto"
    # mixed precision of the training steps (disclatent.accel: "off", "auto" = bfloat16 on a
    # CUDA device that supports it, "bf16"); evaluation and inference stay float32
    amp: str = "off"
    # CUDA: deterministic algorithms (True) or cuDNN autotuning (False); not part of a
    # trained model's identity
    deterministic: bool = True
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
        spacing = self.spacing.xyz if isinstance(self.spacing, Spacing) else self.spacing
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "spacing", tuple(float(s) for s in spacing))
        object.__setattr__(self, "unet_channels", tuple(int(c) for c in self.unet_channels))
        check_amp(self.amp)
        self._check_patch()

    def _check_patch(self) -> None:
        if self.model == "SwinUNETR" and (
            any(p % 32 for p in self.patch) or math.prod(p // 32 for p in self.patch) < 2
        ):
            raise ValueError(
                "SwinUNETR needs patch sizes divisible by 32 and larger than "
                f"32 x 32 x 32, got {self.patch}"
            )
        if self.model != "SwinUNETR" and any(p % 8 for p in self.patch):
            raise ValueError(f"patch sizes must be divisible by 8, got {self.patch}")

    @property
    def network_spacing(self) -> Spacing:
        """The network grid with named axes (:attr:`spacing` is its ITK order)."""
        return Spacing.from_xyz(self.spacing)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names
        }
        return cls(**kwargs)


def config_from_profile(
    profile: str | Profile = "default", model: str | None = None, **overrides: Any
) -> SegConfig:
    """The segmentation settings of a run profile (``profiles.py``), optionally changed."""
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
        amp=p.amp,
        deterministic=p.deterministic,
    )
    return dataclasses.replace(cfg, **overrides) if overrides else cfg
