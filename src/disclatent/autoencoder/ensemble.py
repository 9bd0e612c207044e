"""Several autoencoders on the same discs, trained side by side (``book/method.md``,
*Stability*).

On a small CPU a batch-2 3-D network does not keep two cores busy: on this 2-core machine one
run with 2 torch threads took 0.97 s per epoch, two runs with one thread each 1.57 s each,
so two at once train 1.24 times as many epochs per second. :func:`train_many` trains a list of
:class:`Job` s (a configuration and a model folder each) in ``workers`` processes, each
with ``config.cpu_threads`` threads, reusing every folder that already holds its finished
model (:func:`~disclatent.autoencoder.evaluation.train_or_load`); an interrupted run resumes
each model from its checkpoint. A job that fails is reported by name after the others finish.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from disclatent.autoencoder import evaluation
from disclatent.autoencoder.config import AEConfig
from disclatent.autoencoder.network import default_device
from disclatent.autoencoder.training import DiscAE
from disclatent.parallel import round_threads


@dataclass(frozen=True)
class Job:
    """One model to train: a name (for messages), its configuration and its folder."""

    name: str
    config: AEConfig
    folder: Path


class TrainingFailed(RuntimeError):
    """One or more jobs of :func:`train_many` failed; ``failures`` maps name to message."""

    def __init__(self, failures: dict[str, str]):
        self.failures = failures
        lines = "; ".join(f"{k}: {v}" for k, v in failures.items())
        super().__init__(f"{len(failures)} autoencoder(s) failed to train: {lines}")


def _train_job(
    train: np.ndarray, heldout: np.ndarray, config: AEConfig, folder: str, device: str
) -> str:
    """Worker: set the job's thread count, train (or reuse) into ``folder``."""
    import torch

    if config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    evaluation.train_or_load(train, config, folder, heldout, progress=False, device=device)
    return folder


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="autoencoders", unit="model", disable=not enabled)


def train_many(
    train: np.ndarray,
    heldout: np.ndarray,
    jobs: Sequence[Job],
    workers: int = 1,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, DiscAE]:
    """Train every job's model on ``train`` (n, S, S, S) binary cubes and evaluate it on
    ``heldout`` (its folder's metrics hold the training and held-out IoU); the trained models
    by job name, in the jobs' order.

    ``workers`` > 1 runs that many CPU processes at once (fresh interpreters, so nothing of
    the caller's torch state leaks in); 1 trains in this process, as does any run on an
    accelerator (``device``, default: CUDA when present). Results do not depend on
    ``workers``, only on each job's configuration (``cpu_threads`` included).
    """
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique, got {names}")
    dev = str(default_device() if device is None else device)
    if dev != "cpu":
        workers = 1  # one accelerator: one model at a time, in this process
    failures: dict[str, str] = {}
    with _bar(len(jobs), progress) as bar:
        if workers <= 1:
            for job in jobs:
                try:
                    _train_job(train, heldout, job.config, str(job.folder), dev)
                except Exception as err:  # noqa: BLE001 (reported below, by name)
                    failures[job.name] = f"{type(err).__name__}: {err}"
                bar.update(1)
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures: dict[Future, Job] = {
                    pool.submit(_train_job, train, heldout, j.config, str(j.folder), dev): j
                    for j in jobs
                }
                for fut in as_completed(futures):
                    exc = fut.exception()
                    if exc is not None:
                        failures[futures[fut].name] = f"{type(exc).__name__}: {exc}"
                    bar.update(1)
    if failures:
        raise TrainingFailed(failures)
    return {j.name: DiscAE.load(j.folder) for j in jobs}


def threads_per_worker(config: AEConfig, workers: int) -> int:
    """Torch threads for each of ``workers`` runs at once: the configuration's threads (0:
    every core) shared out, at least one."""
    total = config.cpu_threads or os.cpu_count() or 1
    return round_threads(max(1, workers), workers, total)[0]


def seed_jobs(
    config: AEConfig,
    folder_for: Callable[[str], Path],
    seeds: Sequence[int],
    code_noise: float = 0.0,
    threads: int | None = None,
) -> list[Job]:
    """Jobs for ``config`` retrained with each of ``seeds`` (named ``k<K>-seed<S>``), or, with
    ``code_noise`` > 0, its latent-noise variant (``k<K>-noise-seed<S>``); ``folder_for(name)``
    gives each folder, ``threads`` (if given) each run's torch threads."""
    kind = "noise-" if code_noise > 0 else ""
    jobs = []
    for seed in seeds:
        name = f"k{config.latent_dim}-{kind}seed{seed}"
        cfg = replace(config, seed=int(seed), code_noise=float(code_noise))
        if threads is not None:
            cfg = replace(cfg, cpu_threads=int(threads))
        jobs.append(Job(name, cfg, folder_for(name)))
    return jobs


def stability_jobs(
    config: AEConfig,
    folder_for: Callable[[str], Path],
    n_seeds: int,
    n_noise_seeds: int,
    code_noise: float,
    workers: int,
    trained_epochs: tuple[int, int] | None = None,
) -> tuple[list[Job], list[str]]:
    """The retraining runs of the stability chapter: ``config`` with the next ``n_seeds - 1``
    seeds (``config.seed`` is the model already trained) and its latent-noise variant with
    the first ``n_noise_seeds`` seeds (paired with the plain runs of the same seeds), the
    longest first; each with :func:`threads_per_worker` threads. Notes say what is left
    out (a jointly trained model has no decoder stage to add latent noise to).

    The noise variant cannot reach the plain model's IoU criterion (its decoder is trained
    on jittered codes), so without a limit it spends the whole epoch budget of both stages.
    ``trained_epochs`` = (decoder-stage epochs, total epochs) of the model already trained
    (its ``metrics.json``: ``decoder_epochs``, ``epochs``) gives the variant exactly that
    training: the same number of epochs in each stage as the plain model it is compared
    with."""
    if n_seeds < 2:
        raise ValueError(f"n_seeds must be at least 2 to compare runs, got {n_seeds}")
    threads = threads_per_worker(config, workers)
    seeds = [config.seed + i for i in range(1, n_seeds)]
    noise = [config.seed + i for i in range(n_noise_seeds)]
    notes = []
    if noise and config.strategy != "decoder_first":
        notes.append("the model is trained jointly: no latent-noise variant")
        noise = []
    noisy = config
    if noise and trained_epochs is not None:
        dec, total = (int(e) for e in trained_epochs)
        if not 0 < dec <= total:
            raise ValueError(f"trained_epochs must be 0 < decoder <= total, got {trained_epochs}")
        enc = max(1, total - dec)
        # the epochs the plain model ran (already resolved for its discs)
        noisy = replace(config, max_epochs=dec, encoder_epochs=enc, budget_discs=None)
        notes.append(
            f"the latent-noise variant trains {dec} decoder-stage and {enc} "
            f"encoder-stage epochs, as many as the plain k = {config.latent_dim} model needed"
        )
    jobs = seed_jobs(noisy, folder_for, noise, code_noise, threads)
    return jobs + seed_jobs(config, folder_for, seeds, threads=threads), notes
