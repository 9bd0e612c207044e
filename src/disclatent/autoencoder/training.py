"""A trained autoencoder (:class:`DiscAE`) and its honest training (``book/method.md``,
*Autoencoder*).

**Training** (:meth:`DiscAE.fit`, :func:`fit`): BCE on the logits (optionally plus soft
Dice), Adam, seeded, CUDA when present; joint (the paper) or decoder first
(:mod:`disclatent.autoencoder.stages`); the output bias starts at the log-odds of the discs'
foreground share. After *every* epoch, in eval mode, the IoU of the thresholded output
(logit > 0) with the input is computed for *every* training disc; the model has converged
when their mean reaches the target (0.995), not when one train-mode batch does. Before each
evaluation the batch-norm statistics are re-estimated over all training discs
(``precise_bn``), so the eval-mode model is a fixed function of the weights; from
``freeze_bn_epoch`` on, batch norm keeps them fixed, so the network is trained as exactly the
function that is evaluated. The per-epoch history is kept; an interrupted run resumes from
its checkpoint (:mod:`disclatent.autoencoder.checkpoint`), bit for bit.

**Use**: :meth:`DiscAE.load` reads a model folder (weights, configuration with the cube's
size and spacing, metrics, history); :meth:`DiscAE.encode` maps cubes to latent vectors,
:meth:`DiscAE.decode` latent vectors to binary cubes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from disclatent.accel import (
    amp_dtype,
    autocast,
    configure_backends,
    gpu_memory_peak_gb,
    reset_gpu_memory_peak,
    seed_everything,
)
from disclatent.autoencoder.checkpoint import (
    CHECKPOINT_FILE,
    TRAINING_VERSION,
    Checkpoint,
    data_digest,
    read_model_folder,
    resume_checkpoint,
    write_checkpoint,
    write_model_folder,
)
from disclatent.autoencoder.config import AEConfig
from disclatent.autoencoder.cubes import fit_cubes
from disclatent.autoencoder.network import (
    DiscAutoencoder,
    batch_norms,
    build_model,
    count_parameters,
    default_device,
    recalibrate_batch_norm,
    to_channels_last,
)
from disclatent.autoencoder.objective import (
    criterion_iou,
    epoch_order,
    iou_per_disc,
    learning_rate,
    throughput,
)
from disclatent.autoencoder.stages import (
    CODES_KEY,
    decoder_iou,
    initial_codes,
    stage_loss,
    stage_optimizer,
    stage_schedule,
)
from disclatent.stats import bootstrap_mean_ci


@dataclass
class _Run:
    """The state of one call of :meth:`DiscAE.fit`."""

    opt: torch.optim.Optimizer
    cubes: np.ndarray  # the training discs, at the model's size
    data: torch.Tensor  # the same as uint8 on the CPU (pinned for CUDA); batches move
    pin: bool  # data is in pinned memory: copy batches to the device without blocking
    digest: str
    state: Checkpoint  # epochs done, seconds spent, history
    ckpt: Path | None
    checkpoint_seconds: float
    callback: Callable[[dict], None] | None
    bar: Any
    codes: nn.Embedding | None = None  # decoder-first training: one free code per disc
    # decoder stage: each disc's IoU from the forward pass that trained it this epoch
    step_ious: np.ndarray | None = None
    converged: bool = False
    last_save: float = field(default_factory=time.perf_counter)

    @property
    def n(self) -> int:
        return len(self.cubes)


class DiscAE:
    """A disc autoencoder with its configuration, history and metrics.

    ``fit`` trains it; ``encode`` maps cubes to latent vectors; ``decode`` maps latent vectors
    to binary cubes; ``save`` / ``load`` use a folder of safetensors and JSON files.
    """

    def __init__(
        self,
        config: AEConfig,
        model: DiscAutoencoder | None = None,
        device: str | torch.device | None = None,
        history: pd.DataFrame | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.model = build_model(config) if model is None else model
        self.device = torch.device(device) if device else default_device()
        self.history = pd.DataFrame() if history is None else history
        self.metrics: dict[str, Any] = {} if metrics is None else metrics
        self._place_model()

    def __repr__(self) -> str:
        return f"DiscAE(k={self.config.latent_dim}, size={self.config.size}, device={self.device})"

    def _place_model(self) -> None:
        self.model.to(self.device)
        if self.config.channels_last:
            to_channels_last(self.model)

    # -- inference ------------------------------------------------------------------------
    def _batches(self, cubes: np.ndarray | torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
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
        """Latent vectors (n, k) -> logits (n, S, S, S) float32."""
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
        self.config = self.config.for_discs(len(cubes))  # the epoch budgets for these discs
        out, digest = (Path(out_dir) if out_dir is not None else None), data_digest(cubes)
        opt, codes = self._start_training(cubes)
        ckpt = out / CHECKPOINT_FILE if out is not None else None
        resumed = self._resume(ckpt, codes, digest) if resume else None
        first = "joint" if self.config.strategy == "joint" else "decoder"
        state, opt = resumed or (Checkpoint(epoch=0, seconds=0.0, history=[], stage=first), opt)
        run = _Run(
            opt=opt,
            cubes=cubes,
            data=self._training_tensor(cubes),
            pin=self.device.type == "cuda",
            digest=digest,
            state=state,
            ckpt=ckpt,
            checkpoint_seconds=checkpoint_seconds,
            callback=callback,
            bar=None,
            codes=codes,
            # the decoder stage's IoU from its training passes unless they decode noisy codes
            # or run under autocast: then from a float32 eval pass (see stages)
            step_ious=np.zeros(len(cubes)) if self._step_ious_exact else None,
        )
        done = run.state.history  # a resumed run may have converged already
        run.converged = bool(done) and criterion_iou(done[-1]) >= self.config.target_iou
        run.bar = _progress(self.config.epoch_budget, run.state.epoch, progress, self.config)
        try:
            while not self._finished(run):
                self._epoch(run)
        finally:
            run.bar.close()
        self._final_metrics(run)
        if out is not None and ckpt is not None:
            self.save(out)
            ckpt.unlink(missing_ok=True)  # the finished model replaces the checkpoint
        return self

    @property
    def amp(self) -> torch.dtype | None:
        """The training steps' autocast dtype on this device (``None``: float32)."""
        return amp_dtype(self.config.amp, self.device)

    @property
    def _step_ious_exact(self) -> bool:
        return self.config.code_noise == 0 and self.amp is None

    def _start_training(
        self, cubes: np.ndarray
    ) -> tuple[torch.optim.Optimizer, nn.Embedding | None]:
        """Seed, build the initial network (same seed -> same weights), the decoder-first
        codes (``None`` for joint training) and the first stage's optimiser."""
        seed_everything(self.config.seed)
        configure_backends(self.device, self.config.deterministic)
        reset_gpu_memory_peak(self.device)
        self.model = build_model(self.config)
        # start from the prior: output bias = log-odds of the foreground share of the discs
        # (otherwise every voxel starts at p = 0.5 and the first epochs only learn "empty")
        share = float(np.clip(cubes.mean(), 1e-4, 0.5))
        bias = self.model.output_layer.bias
        assert bias is not None
        with torch.no_grad():
            bias.fill_(math.log(share / (1 - share)))
        self._place_model()
        if self.config.strategy == "joint":
            return stage_optimizer(self.model, None, "joint", self.config), None
        cfg = self.config
        codes = initial_codes(cubes, cfg.latent_dim, cfg.seed, cfg.code_init)
        codes.to(self.device)
        return stage_optimizer(self.model, codes, "decoder", self.config), codes

    def _resume(
        self, ckpt: Path | None, codes: nn.Embedding | None, digest: str
    ) -> tuple[Checkpoint, torch.optim.Optimizer] | None:
        if ckpt is None or not ckpt.exists():
            return None
        extra = {CODES_KEY: codes.weight} if codes is not None else None
        return resume_checkpoint(
            ckpt,
            self.model,
            lambda stage: stage_optimizer(self.model, codes, stage, self.config),
            self.config,
            digest,
            self.device,
            extra,
        )

    def _training_tensor(self, cubes: np.ndarray) -> torch.Tensor:
        data = torch.as_tensor(cubes, dtype=torch.uint8)  # stays on the CPU; batches move
        return data.pin_memory() if self.device.type == "cuda" else data

    def _finished(self, run: _Run) -> bool:
        cfg, st = self.config, run.state
        if st.stage == "decoder":
            return False  # the encoder stage always follows
        if st.stage == "encoder":
            budget_spent = st.epoch - st.decoder_epochs >= cfg.encoder_epochs
        else:
            budget_spent = st.epoch >= cfg.max_epochs
        return budget_spent or (run.converged and cfg.stop_at_target)

    def _epoch(self, run: _Run) -> None:
        """Train one epoch of the current stage, then record the IoU of every training disc:
        the autoencoder's in eval mode, or in the decoder stage the decoded codes' (see
        :mod:`~disclatent.autoencoder.stages`)."""
        t0 = time.perf_counter()
        stage = run.state.stage
        frozen = self._enter_train_mode(run)
        loss_sum = self._train_batches(run)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        if self.config.precise_bn and not frozen and batch_norms(self.model):
            self._recalibrate_bn(run.data, self.config.batch_size)
        if stage == "decoder":
            assert run.codes is not None
            # from the epoch's own forward passes (see stages); with latent noise, whose
            # passes decoded perturbed codes, from an eval pass of the codes
            name, own = "decoder_iou", run.step_ious
            ious = own.copy() if own is not None else decoder_iou(self.model, run.codes, run.data)
        else:
            ious, name = self.iou(run.cubes), "train_iou"  # every training disc, eval mode
        run.state.epoch += 1
        seconds = time.perf_counter() - t0
        run.state.seconds += seconds
        row = {
            "epoch": run.state.epoch,
            "stage": stage,
            "loss": loss_sum / run.n,
            name: float(ious.mean()),
            f"{name}_min": float(ious.min()),
            "lr": run.opt.param_groups[0]["lr"],
            "seconds": seconds,
            "eval_seconds": time.perf_counter() - t1,
        }
        if stage == "decoder":
            self._maybe_start_encoder(run, row[name])
        self._record(run, row)

    def _maybe_start_encoder(self, run: _Run, iou: float) -> None:
        """End the decoder stage at its budget or, with ``stop_at_target``, once the decoded
        codes reach the criterion plus ``decoder_margin``; the encoder stage starts with a
        fresh optimiser."""
        cfg, st = self.config, run.state
        reached = iou >= cfg.target_iou + cfg.decoder_margin
        if st.epoch >= cfg.max_epochs or (cfg.stop_at_target and reached):
            st.stage, st.decoder_epochs = "encoder", st.epoch
            run.opt = stage_optimizer(self.model, run.codes, "encoder", cfg)

    def _enter_train_mode(self, run: _Run) -> bool:
        """Train mode; batch norm in eval mode (fixed statistics) from ``freeze_bn_epoch``."""
        cfg, epoch = self.config, run.state.epoch
        self.model.train()
        frozen = 0 < cfg.freeze_bn_epoch <= epoch and bool(batch_norms(self.model))
        if frozen:  # train exactly the function that is evaluated
            if cfg.freeze_bn_epoch == epoch and not cfg.precise_bn:
                self._recalibrate_bn(run.data, cfg.batch_size)
                self.model.train()
            for m in batch_norms(self.model):
                m.eval()
        return frozen

    def _train_batches(self, run: _Run) -> float:
        """One pass of the current stage over the training discs in a seeded order; the
        summed loss x batch size. Joint: the reconstruction loss of the autoencoder; decoder
        stage: that of the decoded codes; encoder stage: the squared error to the codes."""
        cfg, st = self.config, run.state
        bs, epoch, epochs, lr, schedule = stage_schedule(cfg, st.stage, st.epoch, st.decoder_epochs)
        steps = math.ceil(run.n / bs)
        perm = epoch_order(run.n, cfg.seed, st.epoch)
        noise = torch.Generator().manual_seed(cfg.seed * 1_000_003 + st.epoch + 7_777_777)
        loss_sum = 0.0
        for b in range(steps):
            rate = learning_rate(cfg, epoch * steps + b, steps * epochs, lr, schedule)
            loss_sum += self._train_step(run, perm[b * bs : (b + 1) * bs], rate, noise)
        return loss_sum

    def _train_step(
        self, run: _Run, idx: torch.Tensor, lr: float, noise: torch.Generator | None = None
    ) -> float:
        cfg = self.config
        x = run.data[idx].to(self.device, non_blocking=run.pin).float().unsqueeze(1)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for group in run.opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        run.opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            loss, logits = stage_loss(self.model, run.codes, run.state.stage, x, idx, cfg, noise)
        if run.state.stage == "decoder" and run.step_ious is not None and logits is not None:
            pred = (logits.detach()[:, 0] > 0).cpu()
            run.step_ious[idx.cpu().numpy()] = iou_per_disc(pred, run.data[idx])
        loss.backward()
        run.opt.step()
        return float(loss.detach()) * len(idx)

    def _record(self, run: _Run, row: dict) -> None:
        """Keep the epoch's row; checkpoint when due; report it."""
        run.state.history.append(row)
        run.converged = criterion_iou(row) >= self.config.target_iou
        run.bar.update(1)
        shown = row.get("train_iou", row.get("decoder_iou", math.nan))
        run.bar.set_postfix(stage=row["stage"], loss=f"{row['loss']:.4f}", iou=f"{shown:.4f}")
        due = time.perf_counter() - run.last_save >= run.checkpoint_seconds
        if run.ckpt is not None and (self._finished(run) or due):
            extra = {CODES_KEY: run.codes.weight} if run.codes is not None else None
            write_checkpoint(
                run.ckpt, self.model, run.opt, self.config, run.digest, run.state, extra
            )
            run.last_save = time.perf_counter()
        if run.callback is not None:
            run.callback(row)

    def _final_metrics(self, run: _Run) -> None:
        cfg, history = self.config, run.state.history
        self.history = pd.DataFrame(history)
        ious = self.iou(run.cubes)
        _, lo, hi = bootstrap_mean_ci(ious)
        first = next((r["epoch"] for r in history if criterion_iou(r) >= cfg.target_iou), None)
        decoder_rows = [r for r in history if r["stage"] == "decoder"]
        self.metrics = {
            "latent_dim": cfg.latent_dim,
            "strategy": cfg.strategy,
            "decoder_epochs": run.state.decoder_epochs,
            "decoder_iou": decoder_rows[-1]["decoder_iou"] if decoder_rows else None,
            "epochs": run.state.epoch,
            "converged": first is not None,
            "epochs_to_converge": first,
            "train_iou": float(ious.mean()),
            "train_iou_ci": [lo, hi],
            "train_iou_min": float(ious.min()),
            "n_train": int(run.n),
            "train_seconds": round(run.state.seconds, 2),
            "volumes_per_second": throughput(history, run.n),
            "parameters": count_parameters(self.model),
            "device": str(self.device),
            "amp": str(self.amp).replace("torch.", "") if self.amp else "float32",
            "gpu_memory_peak_gb": gpu_memory_peak_gb(self.device),
            "data": run.digest,
            "training_version": TRAINING_VERSION,
        }

    def _recalibrate_bn(self, data: torch.Tensor, batch_size: int) -> None:
        """Precise BN over all training discs (:func:`recalibrate_batch_norm`)."""
        recalibrate_batch_norm(self.model, self._batches(data, batch_size))

    # -- persistence ----------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike, metrics: dict | None = None) -> Path:
        """Write the model folder (see :mod:`disclatent.autoencoder.checkpoint`); ``metrics``
        are added to the model's metrics first."""
        if metrics:
            self.metrics.update(metrics)
        return write_model_folder(
            Path(out_dir), self.model.state_dict(), self.config, self.metrics, self.history
        )

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: str | torch.device | None = None) -> DiscAE:
        """Load a model folder written by :meth:`save` (safetensors; no pickle).

        The folder's configuration holds everything needed to encode and decode new discs:
        the cube's size and spacing (``config.size``, ``config.spacing_mm``) and the network.
        """
        cfg, tensors, metrics, history = read_model_folder(Path(model_dir))
        ae = cls(cfg, device=device, history=history, metrics=metrics)
        ae.model.load_state_dict(tensors)
        ae.model.eval()
        return ae


def _progress(total: int, initial: int, enabled: bool, cfg: AEConfig) -> Any:
    from tqdm.auto import tqdm

    desc, off = f"autoencoder k={cfg.latent_dim}", not enabled
    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", leave=False, disable=off)


def fit(
    cubes: np.ndarray,
    config: AEConfig,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> DiscAE:
    """Train a new autoencoder on ``cubes``; see :meth:`DiscAE.fit`.

    On the CPU, torch uses ``config.cpu_threads`` threads (set from the profile and
    ``DISCLATENT_CPU_THREADS`` by :meth:`AEConfig.from_profile`; 0 keeps torch's default).
    """
    ae = DiscAE(config, device=device)
    if ae.device.type == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    return ae.fit(cubes, out_dir=out_dir, **kwargs)
