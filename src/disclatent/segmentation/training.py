"""Training a segmentation model with one site held out (``book/method.md``, *Segmentation*).

* **Target**: every disc label (201-225) as one foreground channel.
* **Preprocessing** (:mod:`disclatent.segmentation.data`): canonical LPS orientation from the
  header, resampling to the network grid (images linear, labels nearest neighbour),
  percentile intensity normalisation of the whole image. No scan is cropped or normalised
  with its mask.
* **Training**: random patches (two thirds centred on a disc voxel) with light augmentation;
  loss = binary cross-entropy + Dice with equal weights on the raw logits, with the sigmoid
  applied exactly once, inside the loss (:func:`~disclatent.segmentation.network.make_loss`);
  Adam, lr 1e-3; batch 4 (the profile may change it). After every epoch the validation
  series are segmented whole (sliding window, eval mode) and their mean IoU decides: the
  best-IoU weights are kept, training stops when it has not improved for ``patience``
  epochs (15), or at ``max_epochs``, or at the profile's optional wall-clock budget
  (recorded as the stop reason).

A model folder holds ``config.json``, ``split.csv``, ``model.safetensors`` (best validation
IoU), ``history.csv`` (one row per epoch) and ``train.json`` (time, stop reason, best epoch).
Inference is in :mod:`disclatent.segmentation.inference`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from disclatent.accel import (
    amp_dtype,
    autocast,
    configure_backends,
    gpu_memory_peak_gb,
    reset_gpu_memory_peak,
    resolve_device,
)
from disclatent.data.volume import DataError, atomic_path, write_csv_atomic, write_text_atomic
from disclatent.segmentation.cases import AnyCase, split_digest
from disclatent.segmentation.config import (
    CONFIG_FILE,
    DONE_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    NEUTRAL_DEFAULTS,
    SEG_VERSION,
    SPLIT_FILE,
    SegConfig,
)
from disclatent.segmentation.data import (
    load_cases,
    make_batch,
    make_split,
    site_table,
)
from disclatent.segmentation.network import (
    build_model,
    make_loss,
    set_threads,
    sigmoid,
    sliding_logits,
)

if TYPE_CHECKING:
    import torch

Log = Callable[[str], None]


def binary_overlap(prob: np.ndarray, label: np.ndarray, threshold: float) -> tuple[float, float]:
    """IoU and Dice of ``prob > threshold`` with ``label > 0`` (1 when both are empty)."""
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
        saved = json.loads((model_dir / CONFIG_FILE).read_text())
        done = json.loads((model_dir / DONE_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not (model_dir / MODEL_FILE).exists() or done.get("status") != "complete":
        return False
    if cfg is not None:
        wanted = json.loads(json.dumps(cfg.to_json()))
        have = dict(saved.get("config") or {})
        for d in (wanted, have):
            for key in ("threads", "deterministic"):  # how fast it trained, not what it learnt
                d.pop(key, None)
        for key, value in NEUTRAL_DEFAULTS.items():  # added later; older models trained so
            if key not in have and wanted.get(key) == value:
                wanted.pop(key)
        if have != wanted:
            return False
    if data_digest and saved.get("data_digest") != data_digest:
        return False
    return saved.get("version") == SEG_VERSION


# ---------------------------------------------------------------------------------------
# One training run
# ---------------------------------------------------------------------------------------
@dataclass
class _Clock:
    """Wall time since the run started, and the optional budget."""

    max_minutes: float | None
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.max_minutes is not None and self.elapsed() >= 60 * self.max_minutes


class BatchStream:
    """Training batches in the seeded order of :func:`make_batch`, each made while the
    device trains on the one before (``ahead=True``: one background thread samples and
    augments patches, and pins them when the device is CUDA). The stream lives for the
    whole run, so the batches are the same, in the same order, as made one at a time
    (``ahead=False``); only the last one made is never used."""

    def __init__(
        self,
        cases: Sequence[AnyCase],
        cfg: SegConfig,
        rng: np.random.Generator,
        device: torch.device,
        ahead: bool = True,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.cases, self.cfg, self.rng, self.device = cases, cfg, rng, device
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="patches") if ahead else None
        self._next: Any = None

    def _make(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        cfg = self.cfg
        x, y = make_batch(
            self.cases, cfg.batch_size, cfg.patch, self.rng, cfg.pos_fraction, cfg.augment
        )
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if self.device.type == "cuda":
            xt, yt = xt.pin_memory(), yt.pin_memory()
        return xt, yt

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch (image, label), each ``(batch, 1, *patch)`` float32, on the device."""
        if self._pool is None:
            xt, yt = self._make()
        else:
            if self._next is None:
                self._next = self._pool.submit(self._make)
            xt, yt = self._next.result()
            self._next = self._pool.submit(self._make)
        pinned = self.device.type == "cuda"
        return xt.to(self.device, non_blocking=pinned), yt.to(self.device, non_blocking=pinned)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Fit:
    """Network, loss and optimiser of one run, with its patch sampler."""

    cfg: SegConfig
    model: torch.nn.Module
    loss_fn: torch.nn.Module
    opt: torch.optim.Optimizer
    device: torch.device
    rng: np.random.Generator

    @property
    def amp(self) -> torch.dtype | None:
        """The training steps' autocast dtype (``None``: float32)."""
        return amp_dtype(self.cfg.amp, self.device)

    def epoch(self, batches: BatchStream, iters: int, clock: _Clock) -> list[float]:
        """Up to ``iters`` optimiser steps (fewer when the budget runs out, never none);
        the training losses. Forward pass and loss under the configured autocast."""
        self.model.train()
        losses: list[float] = []
        for _ in range(iters):
            if clock.over_budget() and losses:  # cut the epoch short, validate, then stop
                break
            xt, yt = batches.next()
            self.opt.zero_grad(set_to_none=True)
            with autocast(self.device, self.amp):
                loss = self.loss_fn(self.model(xt), yt)
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
        return losses

    def validate(self, cases: Sequence[AnyCase]) -> tuple[float, float]:
        """Mean IoU and Dice of the whole validation series (eval mode, sliding window)."""
        self.model.eval()
        scores = []
        for c in cases:
            label = c.label
            if label is None:
                raise DataError(f"{c.series}: a validation series needs its mask")
            prob = sigmoid(sliding_logits(self.model, c.image, self.cfg, self.device))
            scores.append(binary_overlap(prob, label, self.cfg.threshold))
        return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))

    @property
    def parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))


def _new_fit(cfg: SegConfig) -> _Fit:
    """Seeded network, loss and optimiser on the configured device."""
    import torch

    device = resolve_device(cfg.device)
    set_threads(cfg, device)
    torch.manual_seed(cfg.seed)
    configure_backends(device, cfg.deterministic)
    reset_gpu_memory_peak(device)
    rng = np.random.default_rng([cfg.seed, 11])
    model = build_model(cfg).to(device)
    loss_fn = make_loss()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return _Fit(cfg, model, loss_fn, opt, device, rng)


def _fit(
    fit: _Fit,
    train_cases: Sequence[AnyCase],
    val_cases: Sequence[AnyCase],
    iters: int,
    out_dir: Path,
    clock: _Clock,
    log: Log,
) -> tuple[list[dict[str, Any]], int, float, str]:
    """The epochs of one run; keeps the best-IoU weights in ``out_dir``. Returns the
    history rows, the best epoch and IoU, and the stop reason."""
    batches = BatchStream(train_cases, fit.cfg, fit.rng, fit.device)
    try:
        return _epochs(fit, batches, val_cases, iters, out_dir, clock, log)
    finally:
        batches.close()


def _epochs(
    fit: _Fit,
    batches: BatchStream,
    val_cases: Sequence[AnyCase],
    iters: int,
    out_dir: Path,
    clock: _Clock,
    log: Log,
) -> tuple[list[dict[str, Any]], int, float, str]:
    cfg = fit.cfg
    history: list[dict[str, Any]] = []
    best_iou, best_epoch, wait = -1.0, 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        t0 = time.perf_counter()
        losses = fit.epoch(batches, iters, clock)
        val_iou, val_dice = fit.validate(val_cases)
        elapsed = clock.elapsed()
        improved = val_iou > best_iou
        if improved:
            best_iou, best_epoch, wait = val_iou, epoch, 0
            fit.save(out_dir / MODEL_FILE)
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
            return (
                history,
                best_epoch,
                best_iou,
                (f"early stopping (no better validation IoU for {cfg.patience} epochs)"),
            )
        if clock.over_budget():
            return history, best_epoch, best_iou, f"time budget ({cfg.max_minutes:g} min)"
    return history, best_epoch, best_iou, "max epochs"


def _start_model_dir(
    out_dir: Path, cfg: SegConfig, data_root: Path, split: pd.DataFrame, digest: str
) -> None:
    """Clear the finished-run marker; write ``split.csv`` and ``config.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DONE_FILE).unlink(missing_ok=True)
    write_csv_atomic(split, out_dir / SPLIT_FILE)
    saved = {
        "version": SEG_VERSION,
        "config": cfg.to_json(),
        "data_root": str(data_root.resolve()),
        "data_digest": digest,
    }
    write_text_atomic(json.dumps(saved, indent=2) + "\n", out_dir / CONFIG_FILE)


def _quiet(_msg: str) -> None:
    pass


def train(
    data_root: str | Path,
    out_dir: str | Path,
    cfg: SegConfig,
    reuse: bool = False,
    log: Log | None = print,
    case_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on a SPIDER-format folder; write the model folder; return
    ``train.json``'s content. With ``reuse``, a finished run with the same config and the
    same data bytes is loaded instead of trained again.

    The training and validation series are resampled once and kept on disk in ``case_dir``
    (default ``<out_dir>/cases``; models trained on the same series can share one), keyed by
    their bytes (:func:`~disclatent.segmentation.cases.store_case`): memory holds the batch,
    not the cohort, and an interrupted run does not resample again."""
    import torch

    log = log or _quiet
    data_root, out_dir = Path(data_root), Path(out_dir)
    split = make_split(
        site_table(data_root, cfg.modalities), cfg.test_site, cfg.val_fraction, cfg.seed
    )
    digest, keys = split_digest(data_root, split, cfg.network_spacing)
    if reuse and is_trained(out_dir, cfg, digest):
        log(f"{cfg.model}: reusing the trained model in {out_dir}")
        return json.loads((out_dir / DONE_FILE).read_text())
    _start_model_dir(out_dir, cfg, data_root, split, digest)

    clock = _Clock(cfg.max_minutes)
    load_start = _load_avg()
    case_dir = Path(case_dir) if case_dir is not None else out_dir / "cases"
    train_cases, skipped = load_cases(data_root, split, "train", cfg, case_dir, keys)
    val_cases, val_skipped = load_cases(data_root, split, "val", cfg, case_dir, keys)
    skipped += val_skipped
    if skipped:
        log(f"{len(skipped)} series left out: " + "; ".join(r["reason"] for r in skipped))
    for role, cases in (("train", train_cases), ("val", val_cases)):
        if not cases:
            raise DataError(f"{data_root}: no readable {role} series (see the warnings)")
    prep_seconds = clock.elapsed()
    fit = _new_fit(cfg)
    iters = cfg.iters_per_epoch or max(
        1, math.ceil(len(train_cases) * cfg.patches_per_volume / cfg.batch_size)
    )
    log(
        f"{cfg.model}: {fit.parameters:,} parameters, "
        f"{len(train_cases)} train / {len(val_cases)} val series, {iters} iterations per "
        f"epoch, device {fit.device}, {torch.get_num_threads()} threads"
        + (f", {fit.amp} autocast" if fit.amp else "")
    )
    history, best_epoch, best_iou, stop = _fit(
        fit, train_cases, val_cases, iters, out_dir, clock, log
    )
    seconds = clock.elapsed()
    write_csv_atomic(pd.DataFrame(history), out_dir / HISTORY_FILE)
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
        "device": str(fit.device),
        "gpu": torch.cuda.get_device_name(fit.device) if fit.device.type == "cuda" else None,
        "amp": str(fit.amp).replace("torch.", "") if fit.amp else "float32",
        "gpu_memory_peak_gb": gpu_memory_peak_gb(fit.device),
        "threads": torch.get_num_threads(),
        "load_avg_start": load_start,
        "load_avg_end": _load_avg(),
        "n_train_series": len(train_cases),
        "n_val_series": len(val_cases),
        "skipped_series": skipped,
        "parameters": fit.parameters,
    }
    write_text_atomic(json.dumps(result, indent=2) + "\n", out_dir / DONE_FILE)
    log(f"{cfg.model}: {stop}; best epoch {best_epoch} (val IoU {best_iou:.4f}); {seconds:.0f} s")
    return result


# ---------------------------------------------------------------------------------------
# Reading finished runs
# ---------------------------------------------------------------------------------------
def read_split(model_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """The split of the first model folder, checked to be every folder's split (series and
    roles): models compared must have seen the same training, validation and test series."""
    splits = [pd.read_csv(Path(d) / SPLIT_FILE, dtype={"patient": str}) for d in model_dirs]
    if not splits:
        raise ValueError("no model folder given")
    for d, other in zip(model_dirs, splits, strict=True):
        if not other[["series", "role"]].equals(splits[0][["series", "role"]]):
            raise DataError(f"{d}: split differs from {model_dirs[0]}'s; retrain the models")
    return splits[0]


def read_history(model_dir: str | Path) -> pd.DataFrame:
    """``history.csv`` of a model folder: one row per epoch."""
    return pd.read_csv(Path(model_dir) / HISTORY_FILE)


def training_table(runs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model from ``train.json`` contents (:func:`train`'s results), keyed by
    model name: size, epochs, best epoch and IoU, stop reason, time and machine."""
    return pd.DataFrame(
        [
            {
                "model": name,
                "parameters": r["parameters"],
                "epochs": r["epochs"],
                "best epoch": r["best_epoch"],
                "best validation IoU": round(r["best_val_iou"], 4),
                "stopped by": r["stop_reason"],
                "training (min)": round(r["seconds"] / 60, 1),
                "device": r["device"],
                "threads": r["threads"],
                "load average": r["load_avg_start"],
            }
            for name, r in runs.items()
        ]
    )


def settings_table(cfg: SegConfig) -> pd.DataFrame:
    """The training budget and inference settings of ``cfg``, one row per setting (the
    chapter shows it for every model of a profile: they share it)."""
    iterations = cfg.iters_per_epoch or f"one pass ({cfg.patches_per_volume} patches per series)"
    settings = {
        "patch (SI, AP, LR voxels)": " x ".join(map(str, cfg.patch)),
        "batch": cfg.batch_size,
        "optimiser": f"Adam, lr {cfg.lr:g}",
        "loss": "BCE + Dice (equal weights), one sigmoid",
        "max epochs": cfg.max_epochs,
        "iterations per epoch": iterations,
        "early stopping": f"validation IoU, patience {cfg.patience}",
        "wall-clock cap per model": f"{cfg.max_minutes:g} min" if cfg.max_minutes else "none",
        "inference": (
            f"sliding window ({cfg.sw_overlap:g} overlap), probability > {cfg.threshold}"
        ),
    }
    return pd.DataFrame([settings]).T.rename(columns={0: "every model"})
