"""A trained model's reconstruction IoU, and the cached, evaluated model of a folder.

:func:`evaluate` measures the eval-mode reconstruction IoU of training discs and of discs of
patients never seen in training (held out), with percentile-bootstrap 95 % intervals of the
mean over discs. :func:`train_or_load` trains a model into a folder (resuming a checkpoint)
unless the folder already holds one of the same configuration trained on the same discs,
evaluates it and writes its metrics (``book/method.md``, *Autoencoder*).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from disclatent.autoencoder import training
from disclatent.autoencoder.checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    TRAINING_VERSION,
    data_digest,
)
from disclatent.autoencoder.config import NEUTRAL_DEFAULTS, AEConfig
from disclatent.autoencoder.cubes import fit_cubes
from disclatent.autoencoder.objective import iou_summary
from disclatent.autoencoder.training import DiscAE


def evaluate(ae: DiscAE, train: np.ndarray, heldout: np.ndarray | None) -> dict[str, Any]:
    """Training and held-out IoU of a trained model, with bootstrap CIs over discs."""
    tr = ae.iou(train)
    ho = ae.iou(heldout) if heldout is not None and len(heldout) else np.zeros(0)
    s_tr, s_ho = iou_summary(tr), iou_summary(ho)
    return {
        "train_iou": s_tr["mean"],
        "train_iou_ci": [s_tr["lo"], s_tr["hi"]],
        "heldout_iou": s_ho["mean"],
        "heldout_iou_ci": [s_ho["lo"], s_ho["hi"]],
        "n_heldout": int(len(ho)),
        "train_ious": tr,
        "heldout_ious": ho,
    }


def _cached(
    folder: Path, config: AEConfig, cubes: np.ndarray, device: str | torch.device | None
) -> DiscAE | None:
    """The model in ``folder`` if it has this configuration and was trained on ``cubes``.

    The configuration file must name every field of today's :class:`AEConfig`: a model
    written before a field existed was not trained with that field's default, unless the
    field is one of :data:`~disclatent.autoencoder.config.NEUTRAL_DEFAULTS` (added with a
    default that reproduces the earlier training) and ``config`` has that value."""
    files = (MODEL_FILE, METRICS_FILE, CONFIG_FILE)
    if not all((folder / f).exists() for f in files):
        return None
    stored = json.loads((folder / CONFIG_FILE).read_text())
    cached = DiscAE.load(folder, device)
    m = cached.metrics
    wanted = config.to_dict()
    absent = set(wanted) - set(stored)
    neutral = all(k in NEUTRAL_DEFAULTS and wanted[k] == NEUTRAL_DEFAULTS[k] for k in absent)
    same = (
        neutral
        and set(stored) <= set(wanted)
        and cached.config == config
        and m.get("data") == data_digest(cubes)
        and m.get("training_version") == TRAINING_VERSION
        and "heldout_iou" in m
    )
    return cached if same else None


def train_or_load(
    cubes: np.ndarray,
    config: AEConfig,
    out_dir: str | os.PathLike,
    heldout: np.ndarray | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[DiscAE, dict[str, Any]]:
    """Train (resuming a checkpoint) unless ``out_dir`` holds a model of this configuration
    trained on these discs; then evaluate on training and held-out discs and save metrics."""
    out = Path(out_dir)
    cubes = fit_cubes(cubes, config.size)
    heldout = (
        np.zeros((0,) + cubes.shape[1:], np.uint8)
        if heldout is None
        else fit_cubes(heldout, config.size)
    )
    config = config.for_discs(len(cubes))  # the run these discs get (AEConfig.budget_discs)
    ae = _cached(out, config, cubes, device)
    if ae is None:
        ae = training.fit(cubes, config, out_dir=out, device=device, progress=progress)
    ev = evaluate(ae, cubes, heldout)
    ae.metrics.update({k: v for k, v in ev.items() if not k.endswith("ious")})
    ae.save(out)
    return ae, ev
