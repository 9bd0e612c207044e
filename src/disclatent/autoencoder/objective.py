"""What training optimises and how it is measured: loss, learning-rate schedule, IoU.

* :func:`reconstruction_loss`: binary cross-entropy on the logits (the paper), optionally plus
  soft Dice (``"dice_bce"``);
* :func:`learning_rate`: the learning rate at an optimisation step (constant, cosine or
  one-cycle);
* :func:`iou_per_disc`: intersection over union of binary masks, one value per disc, the
  quantity of the convergence criterion (``book/method.md``, *Autoencoder*);
* :func:`iou_summary`: the mean over discs with a percentile-bootstrap 95 % interval
  (:func:`disclatent.stats.bootstrap_mean_ci`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from disclatent.autoencoder.config import AEConfig
from disclatent.stats import bootstrap_mean_ci


def iou_per_disc(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU of binary masks, one value per disc (first axis). Two empty masks count as 1."""
    p = torch.as_tensor(pred).bool().flatten(1)
    t = torch.as_tensor(target).bool().flatten(1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    out = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return out.cpu().numpy()


def iou_summary(ious: np.ndarray) -> dict[str, float]:
    """``{"mean", "lo", "hi"}``: mean IoU and its bootstrap 95 % CI (NaN without discs)."""
    if len(ious) == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan}
    _, lo, hi = bootstrap_mean_ci(np.asarray(ious, float))
    return {"mean": float(np.mean(ious)), "lo": lo, "hi": hi}


def reconstruction_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    bce_weight: float = 1.0,
    hard_weight: float = 0.0,
) -> torch.Tensor:
    """Mean BCE on the logits (``"bce"``), or ``bce_weight`` x BCE + mean soft Dice loss.

    With ``hard_weight`` > 0 the BCE of every voxel that the thresholded output (logit > 0)
    currently gets wrong weighs ``1 + hard_weight``: the last errors before the IoU criterion
    are a few confidently wrong voxels per disc, and the plain mean dilutes them among the
    thousands that are already right.
    """
    weight = None
    if hard_weight:
        wrong = (logits.detach() > 0) != (target > 0.5)
        weight = 1.0 + hard_weight * wrong.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
    if kind == "bce":
        return bce
    bce = bce_weight * bce
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


def learning_rate(
    cfg: AEConfig, step: int, total: int, lr: float | None = None, schedule: str | None = None
) -> float:
    """The learning rate at optimisation ``step`` of ``total`` under ``cfg.schedule`` from
    ``cfg.lr`` (``lr`` and ``schedule`` override them: the encoder stage of decoder-first
    training runs its own cosine from ``cfg.encoder_lr``).

    ``constant``: ``lr``. ``cosine``: from ``lr`` down to ``lr / 50``. ``onecycle``: linear
    warm-up over the first 10 % to 3 x ``lr``, then cosine down to ``lr / 100``.
    """
    base = cfg.lr if lr is None else lr
    kind = cfg.schedule if schedule is None else schedule
    if kind == "constant":
        return base
    frac = min(step / max(total, 1), 1.0)
    if kind == "cosine":
        return base * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
    peak, warm = 3 * base, 0.1
    if frac < warm:
        return base + (peak - base) * frac / warm
    f = (frac - warm) / (1 - warm)
    return base / 100 + (peak - base / 100) * 0.5 * (1 + math.cos(math.pi * f))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded order in which epoch ``epoch`` visits ``n`` training discs."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def criterion_iou(row: dict) -> float:
    """The criterion's IoU of a history row (NaN for a decoder-stage row: no encoder yet)."""
    return float(row.get("train_iou", math.nan))


def throughput(history: list[dict], n: int) -> float:
    """Training volumes per second (optimisation steps only, evaluation excluded)."""
    t = sum(r["seconds"] - r.get("eval_seconds", 0.0) for r in history)
    return round(len(history) * n / t, 2) if t > 0 else math.nan
