"""Run profiles: one parameter that sets every size and budget of the study.

* ``quick``: tests and CI; the whole book in a few minutes, numbers not meaningful.
* ``default``: a laptop CPU (2 cores); target: the whole book in under thirty minutes (29.5
  measured at 577b76e, peak memory 1.3 GB; chapter 06 takes 9.9 of them, 04 6.5).
* ``paper``: the published settings (64^3 crops, SwinUNETR-V2, 200/1000-epoch budgets),
  meant for a GPU.

Later pipeline steps add their own fields here, so that a notebook needs only the profile
name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from disclatent import published
from disclatent.conventions import PAPER_SPACING, Spacing


@dataclass(frozen=True)
class Profile:
    """Every size and budget of one run of the study; the comments below say which step
    reads each group of fields."""

    name: str
    description: str
    n_patients: int  # phantom cohort size (T1 + T2 series per patient, 5-7 discs each)
    phantom_seed: int = 0
    # torch CPU threads for training and inference (0: torch's default, one per core). On
    # this 2-core machine, idle, 2 threads ran an autoencoder epoch in 3.0 s against 5.4 s
    # for 1; with more busy processes than cores 2 threads spun waiting for each other (up
    # to 18 times slower), so `quick` (tests, CI, often beside other jobs) uses 1. The
    # environment variable DISCLATENT_CPU_THREADS overrides every profile.
    cpu_threads: int = 2
    # book execution: seconds one notebook cell may run before the notebook is executed once
    # more (None: no limit). A cell that shows a widget can hang the executing client for
    # good (jupyter/nbclient#312; seen once here in the quick book of the tests), so the
    # quick profile, whose cells take seconds, retries instead of hanging CI
    cell_timeout_s: float | None = None
    # GPU switches (disclatent.accel), read by segmentation and the autoencoder: mixed
    # precision of the training steps ("off", "auto" = bfloat16 on a CUDA device that
    # supports it, float32 elsewhere; evaluation and inference always float32), and on CUDA
    # deterministic algorithms (True) or cuDNN autotuning (False, faster, not bit-exact;
    # DISCLATENT_DETERMINISTIC=1 overrides). The CPU profiles are unaffected.
    amp: str = "off"
    deterministic: bool = True
    # disc isolation (disclatent.discs.isolation): cube edge in voxels and spacing in the cube's
    # numpy order (SI, AP, LR); the paper's cube and grid (disclatent.published). Every
    # profile covers the same ~96 x 77 x 90 mm around the disc.
    disc_cube_size: int = published.CUBE_SIZE
    disc_spacing_mm: Spacing = PAPER_SPACING
    # segmentation (disclatent.segmentation.config); defaults = the `default` profile (2-core CPU):
    # the model whose masks feed later chapters, the models compared under one budget, patch
    # in numpy order (SI, AP, LR) on the 1.5 x 1.2 x 1.4 mm grid, batch, epochs (iterations
    # per epoch, 0: one pass of 4 patches per training series), early-stopping patience, a
    # wall-clock cap per model (None: none; checked per iteration, then one last validation),
    # and the network sizes. SwinUNETR-V2 is far slower on a CPU (about 2 s per 64x64x32
    # window here), so `quick` leaves it out; `paper` is meant for a GPU.
    seg_model: str = "UNet"
    seg_models: tuple[str, ...] = ("UNet", "SegResNet")
    seg_patch: tuple[int, int, int] = (64, 64, 32)
    seg_batch: int = published.SEGMENTATION_TRAINING.batch_size
    seg_max_epochs: int = 40
    seg_iters_per_epoch: int = 0
    seg_patience: int = published.SEGMENTATION_TRAINING.patience
    seg_max_minutes: float | None = 1.5
    seg_unet_channels: tuple[int, ...] = (8, 16, 32, 64)
    seg_segresnet_filters: int = 8
    seg_swin_feature_size: int = 12
    # prediction (disclatent.analysis.prediction): repeats of 5-fold CV, patient-bootstrap resamples
    # per interval, and the autoencoder-inside-each-fold protocol: whether it runs (the
    # chapter says when it does not) and its repeats; each fold's autoencoder trains like the
    # autoencoder chapter's k = 4 model (the ae_* settings below), so the protocols differ only in
    # which discs it sees
    pred_repeats: int = 5
    pred_boot: int = 1000
    pred_ae_in_fold: bool = True
    pred_fold_repeats: int = 1
    # folds of each 5-fold split the AE-in-fold protocol runs (5: all; fewer: only those
    # folds' discs are tested, each fold still trains on 4/5 of them). On this 2-core machine
    # one fold autoencoder takes about 3.5 min beside another, so the default runs 3 of 5.
    pred_fold_max_folds: int = 3
    # autoencoder (disclatent.autoencoder.config); defaults = the `default` profile (2-core CPU):
    # cube edge (the disc grid above, centred on the disc; every disc must fit), encoder
    # channels per stride-2 stage (decoder mirrored), epoch budget, batch, Adam learning rate
    # and schedule, loss and the extra weight of wrongly reconstructed voxels, normalisation,
    # decoder kernel, epoch from which batch norm uses fixed statistics (0: never), the
    # bottleneck sweep and the share of patients held out of training. The laptop settings
    # (GroupNorm, kernel-4 decoder, batch 2, wide coarse stage, wrong voxels x 6, cosine
    # schedule) are what benchmarks/bench_autoencoder.py measured fastest to the criterion
    # (``book/method.md``, *Autoencoder*).
    ae_size: int = 32
    ae_channels: tuple[int, ...] = (8, 32, 256)
    ae_max_epochs: int = 200
    ae_batch_size: int = 2
    ae_lr: float = 3e-3
    ae_schedule: str = "cosine"
    ae_loss: str = "dice_bce"
    ae_hard_weight: float = 5.0
    ae_norm: str = "group"
    ae_decoder_kernel: int = 4
    ae_freeze_bn_epoch: int = 0
    # training strategy (disclatent.autoencoder.stages): "decoder_first" trains the
    # decoder with a free code per disc for up to ae_max_epochs, then the encoder regresses
    # the codes for up to ae_encoder_epochs; "joint" (the paper) trains both together
    ae_strategy: str = "decoder_first"
    ae_encoder_epochs: int = 80
    ae_latent_dims: tuple[int, ...] = tuple(int(k) for k in published.AUTOENCODER_SWEEP.latent_dim)
    ae_heldout_fraction: float = 0.2
    ae_channels_last: bool = False
    # the epoch budgets above (and comp_epochs) are for up to this many training discs:
    # beyond, a model gets the same optimiser steps, not the same epochs (a 1090-disc
    # cohort: decoder 45, encoder 18 epochs), so the laptop's cost does not grow with the
    # cohort; the phantom's 169 discs, and the budgets' measurement
    # (benchmarks/results/autoencoder_default_300_epochs.json), are below it. None: epochs
    # are epochs (disclatent.autoencoder.config.epochs_for_discs)
    ae_budget_discs: int | None = 250
    # stability and plausibility (06_stability; disclatent.analysis.stability, .plausibility):
    # how many seeds of the chosen k (seed 0 is the autoencoder chapter's model; the others
    # are trained on the same discs with the same settings), the seeds of the variant
    # trained with latent noise (ae_code_noise x the codes' SD, a plausibility regulariser),
    # and how many latent vectors are drawn from the cohort's latent distribution
    stab_seeds: int = 5
    stab_noise_seeds: int = 1
    ae_code_noise: float = 0.3
    plaus_samples: int = 400
    # autoencoders trained at once by the sweep (03) and the stability chapter (06), each
    # with cpu_threads // ae_workers threads: on this 2-core machine two one-thread runs
    # train 1.24x the epochs per second of one two-thread run (disclatent.autoencoder.ensemble)
    ae_workers: int = 2
    # composition (07_composition; disclatent.autoencoder.composition): the intensity-aware
    # autoencoder's bottlenecks and fixed epoch budget (Adam at ae_lr, batch ae_batch_size,
    # the shape model's cube and channels), and the repeats of its prediction CV. The
    # default trains k = 4 only to fit the laptop budget (a k = 8 model took 48 s more; the
    # book measured 30:18 with it at 230c97f); the paper profile sweeps 4 and 8
    comp_latent_dims: tuple[int, ...] = (4,)
    comp_epochs: int = 40
    comp_repeats: int = 3


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        "tests and CI: tiny cohort and models",
        n_patients=8,
        cpu_threads=1,
        cell_timeout_s=600.0,
        disc_cube_size=32,
        disc_spacing_mm=Spacing(si=3.0, ap=2.4, lr=2.8),
        seg_models=("UNet", "SegResNet"),
        seg_batch=2,
        seg_max_epochs=2,
        seg_iters_per_epoch=2,
        seg_max_minutes=None,
        seg_unet_channels=(8, 16, 32),
        pred_repeats=2,
        pred_boot=200,
        pred_ae_in_fold=False,
        ae_channels=(8, 16, 64),
        ae_max_epochs=12,
        ae_encoder_epochs=6,
        stab_seeds=3,
        stab_noise_seeds=1,
        ae_workers=1,
        plaus_samples=60,
        comp_latent_dims=(4,),
        comp_epochs=4,
        comp_repeats=1,
    ),
    "default": Profile(
        "default",
        "a 2-core laptop CPU, 30-minute target (29.5 measured)",
        n_patients=36,
        disc_cube_size=48,
        disc_spacing_mm=Spacing(si=2.0, ap=1.6, lr=1.9),
    ),
    "paper": Profile(
        "paper",
        "the published settings, for a GPU",
        n_patients=60,
        cpu_threads=0,
        amp="auto",
        deterministic=False,
        seg_models=("UNet", "SegResNet", "SwinUNETR"),
        seg_model="SwinUNETR",
        seg_patch=(96, 96, 64),
        seg_max_epochs=published.SEGMENTATION_TRAINING.max_epochs,
        seg_max_minutes=None,
        seg_unet_channels=(16, 32, 64, 128, 256),
        seg_segresnet_filters=16,
        seg_swin_feature_size=48,
        pred_repeats=10,
        pred_boot=2000,
        pred_fold_repeats=2,
        pred_fold_max_folds=5,
        ae_size=published.CUBE_SIZE,
        ae_channels=(32, 64, 128, 256, 512),
        ae_max_epochs=published.AUTOENCODER_EPOCH_BUDGET,
        ae_batch_size=published.AUTOENCODER_TRAINING.batch_size,
        ae_lr=published.AUTOENCODER_TRAINING.lr,
        ae_schedule="constant",
        ae_loss="bce",
        ae_hard_weight=0.0,
        ae_norm="batch",
        ae_decoder_kernel=3,
        ae_strategy="joint",
        ae_budget_discs=None,
        comp_latent_dims=(4, 8),
        comp_epochs=200,
        comp_repeats=10,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``quick``, ``default`` or ``paper``)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def cpu_threads(profile: str | Profile) -> int:
    """Torch CPU threads for a profile: ``DISCLATENT_CPU_THREADS`` if set, else the profile's
    ``cpu_threads`` (0: torch's default)."""
    env = os.environ.get("DISCLATENT_CPU_THREADS", "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"DISCLATENT_CPU_THREADS must be an integer, got {env!r}") from None
    p = get_profile(profile) if isinstance(profile, str) else profile
    return p.cpu_threads
