"""Files of a model folder, written atomically; safetensors and JSON only, never pickle.

A trained model folder holds ``model.safetensors`` (weights and batch-norm statistics; the
configuration in its metadata), ``config.json``, ``metrics.json`` (strict JSON: NaN is
``null``), ``history.csv``, ``discs.csv`` (which discs trained the model and which were
held out) and, while training, ``checkpoint.safetensors`` (weights, Adam's
state, the history so far), from which an interrupted run resumes. :func:`data_digest` names
the training discs, so a cached model or checkpoint of other discs is never reused.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from disclatent.autoencoder.config import AEConfig
from disclatent.data.volume import atomic_path, write_csv_atomic, write_text_atomic

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SPLIT_FILE = "discs.csv"  # the training discs and those held out (patient, series, IVD label)
FORMAT_VERSION = 1
TRAINING_VERSION = 3  # bump when training changes, so cached models are retrained


def data_digest(cubes: np.ndarray) -> str:
    """A short hash of the cubes' shape and voxels."""
    h = hashlib.sha256(str(cubes.shape).encode())
    h.update(np.ascontiguousarray(cubes, dtype=np.uint8).tobytes())
    return h.hexdigest()[:16]


def finite_json(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (null); numpy scalars Python ones."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


# ---------------------------------------------------------------------------------------
# safetensors with JSON metadata
# ---------------------------------------------------------------------------------------
def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, Any]) -> None:
    """Write tensors (moved to the CPU) and JSON-encoded metadata to ``path`` atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and decoded metadata of a file written by :func:`save_tensors`."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        for k in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimiser's state as tensors (``optim.<param>.<name>``) and JSON metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, device: torch.device
) -> None:
    """Load the state written by :func:`optimizer_tensors` into ``opt``."""
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
# The training checkpoint
# ---------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Where an interrupted run stopped: epochs done, seconds spent, per-epoch history and,
    for decoder-first training, the stage and how many epochs the decoder stage took."""

    epoch: int
    seconds: float
    history: list[dict]
    stage: str = "joint"  # "joint" | "decoder" | "encoder"
    decoder_epochs: int = 0


def write_checkpoint(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    config: AEConfig,
    digest: str,
    state: Checkpoint,
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Weights, optimiser state and ``state`` of a run, keyed by its configuration and data;
    ``extra`` tensors (the decoder-first codes) are kept under their own names."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    opt_tensors, opt_meta = optimizer_tensors(opt)
    tensors.update(opt_tensors)
    save_tensors(
        tensors,
        path,
        {
            "format": FORMAT_VERSION,
            "training_version": TRAINING_VERSION,
            "training_key": config.training_key(),
            "max_epochs": config.max_epochs,
            "data": digest,
            "epoch": state.epoch,
            "seconds": state.seconds,
            "history": state.history,
            "stage": state.stage,
            "decoder_epochs": state.decoder_epochs,
            "optimizer": opt_meta,
        },
    )


def resume_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer_for: Callable[[str], torch.optim.Optimizer],
    config: AEConfig,
    digest: str,
    device: torch.device,
    extra: dict[str, torch.Tensor] | None = None,
) -> tuple[Checkpoint, torch.optim.Optimizer] | None:
    """Resume the run saved at ``path`` if it belongs to this one (same training settings,
    budget, discs and training version), else ``None``.

    Loads the weights into ``model`` and the ``extra`` tensors in place; the optimiser of the
    saved stage comes from ``optimizer_for(stage)`` and gets the saved state.
    """
    tensors, meta = load_tensors(path)
    if not (
        meta.get("training_key") == config.training_key()
        and meta.get("data") == digest
        and meta.get("max_epochs") == config.max_epochs
        and meta.get("training_version") == TRAINING_VERSION
    ):
        return None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    with torch.no_grad():
        for name, target in (extra or {}).items():
            target.copy_(tensors[f"extra.{name}"].to(target.device))
    state = Checkpoint(
        int(meta["epoch"]),
        float(meta.get("seconds", 0.0)),
        meta["history"],
        str(meta.get("stage", "joint")),
        int(meta.get("decoder_epochs", 0)),
    )
    opt = optimizer_for(state.stage)
    restore_optimizer(opt, tensors, meta["optimizer"], device)
    return state, opt


# ---------------------------------------------------------------------------------------
# The trained model folder
# ---------------------------------------------------------------------------------------
def write_model_folder(
    out: Path,
    state: dict[str, torch.Tensor],
    config: AEConfig,
    metrics: dict[str, Any],
    history: pd.DataFrame,
) -> Path:
    """Write weights, configuration, metrics and history to the folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(state, out / MODEL_FILE, {"format": FORMAT_VERSION, "config": config.to_dict()})
    write_text_atomic(json.dumps(config.to_dict(), indent=2) + "\n", out / CONFIG_FILE)
    write_text_atomic(
        json.dumps(finite_json(metrics), indent=2, allow_nan=False) + "\n", out / METRICS_FILE
    )
    if not history.empty:
        write_csv_atomic(history, out / HISTORY_FILE)
    return out


def read_model_folder(
    folder: Path,
) -> tuple[AEConfig, dict[str, torch.Tensor], dict[str, Any], pd.DataFrame]:
    """Configuration, weights, metrics (``{}`` if none) and history of a model folder."""
    path = folder / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained model here")
    tensors, meta = load_tensors(path)
    cfg = AEConfig.from_dict(meta["config"])
    metrics = (
        json.loads((folder / METRICS_FILE).read_text()) if (folder / METRICS_FILE).exists() else {}
    )
    history = (
        pd.read_csv(folder / HISTORY_FILE) if (folder / HISTORY_FILE).exists() else pd.DataFrame()
    )
    return cfg, tensors, metrics, history
