"""The networks, the loss, the CPU threads, and sliding-window logits (``book/method.md``,
*Segmentation*).

The three MONAI networks take one input channel (the normalised image) and give one logit
channel (disc foreground) with no final activation: the sigmoid is applied exactly once,
inside the loss during training and by :func:`sigmoid` at inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from disclatent.segmentation.config import SegConfig

if TYPE_CHECKING:
    import torch


def build_model(cfg: SegConfig) -> torch.nn.Module:
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


def make_loss() -> torch.nn.Module:
    """BCE + Dice, equal weights, on logits; the sigmoid is applied once, inside.

    ``DiceCELoss(sigmoid=True)`` with one output channel computes ``BCEWithLogits(logits)``
    plus the Dice loss of ``sigmoid(logits)``; the network itself has no final activation.
    The Dice term is computed over the whole batch, so a patch without disc voxels does not
    yield an undefined per-patch Dice.
    """
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True, lambda_dice=1.0, lambda_ce=1.0, batch=True)


def set_threads(cfg: SegConfig, device: torch.device) -> None:
    """Apply ``cfg.threads`` (0: torch's default) when running on the CPU."""
    import torch

    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)


def _writable_float32(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous float32 array torch may share: a read-only array (a
    case mapped from disk) is copied, an in-memory float32 one is used as it is."""
    arr = np.ascontiguousarray(image, np.float32)
    return arr if arr.flags.writeable else arr.copy()


def sliding_logits(
    model: torch.nn.Module, image: np.ndarray, cfg: SegConfig, device: torch.device
) -> np.ndarray:
    """Logits (SI, AP, LR) of a normalised image on the network grid: Gaussian-weighted
    sliding windows of ``cfg.patch`` overlapping by ``cfg.sw_overlap``, in float32 (never
    under autocast: validation IoU and the masks do not depend on ``cfg.amp``). The image,
    the windows and the stitched logits all stay on ``device`` (the GPU, when there is one)
    until the result is copied back."""
    import torch
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(_writable_float32(image))[None, None].to(device)
    with torch.inference_mode():
        logits = sliding_window_inference(
            x, cfg.patch, cfg.sw_batch_size, model, overlap=cfg.sw_overlap, mode="gaussian"
        )
    if not isinstance(logits, torch.Tensor):  # a network with several outputs
        raise TypeError(f"{cfg.model}: expected one logit tensor, got {type(logits).__name__}")
    return logits[0, 0].float().cpu().numpy()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in float32, without overflow for large ``|x|``."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
