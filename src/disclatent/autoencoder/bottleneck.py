"""The bottleneck sweep: an autoencoder and a PCA baseline per ``k``, and what the chapter
says about it (``book/method.md``, *Autoencoder*).

* :func:`patient_split` holds whole patients out of training; :func:`split_table` names the
  discs on either side (written to every model folder as ``discs.csv``);
* :func:`sweep` trains (or reuses) a model per ``k`` and measures it and its PCA baseline on
  training and held-out discs; :func:`sweep_table` sets the result beside the paper's
  figures (:mod:`disclatent.published`);
* :func:`settings_table`, :func:`timing_table`, :func:`metrics_table`, :func:`split_text` and :func:`summary_text`
  are the chapter's smaller tables and its sentences built from the numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from disclatent import published
from disclatent.autoencoder import ensemble, evaluation, training
from disclatent.autoencoder.baseline import PCABaseline
from disclatent.autoencoder.checkpoint import SPLIT_FILE
from disclatent.autoencoder.config import AEConfig, describe_config
from disclatent.autoencoder.cubes import fit_cubes
from disclatent.autoencoder.network import build_model, count_parameters
from disclatent.autoencoder.objective import iou_summary
from disclatent.autoencoder.training import DiscAE
from disclatent.data.volume import write_csv_atomic
from disclatent.formatting import format_ci

#: the bottleneck the later chapters use, when the sweep has it
MAIN_LATENT_DIM = published.CHOSEN_LATENT_DIM


# ---------------------------------------------------------------------------------------
# Held-out patients
# ---------------------------------------------------------------------------------------
def patient_split(
    patients: Sequence, heldout_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, heldout) over discs; whole patients are held out."""
    names = np.asarray([str(p) for p in patients])
    uniq = np.unique(names)
    n_out = int(round(heldout_fraction * len(uniq)))
    if heldout_fraction > 0 and len(uniq) >= 2:
        n_out = min(max(n_out, 1), len(uniq) - 1)
    else:
        n_out = 0
    rng = np.random.default_rng(seed)
    out = set(rng.choice(uniq, size=n_out, replace=False).tolist()) if n_out else set()
    heldout = np.array([p in out for p in names])
    return ~heldout, heldout


def split_table(table: pd.DataFrame, heldout: np.ndarray) -> pd.DataFrame:
    """The discs' names (patient, series, IVD label, level) and ``split``: train | heldout."""
    cols = [c for c in ("patient", "series", "ivd_label", "level") if c in table]
    names = table[cols].reset_index(drop=True)
    return names.assign(split=np.where(heldout, "heldout", "train"))


def write_split(split: pd.DataFrame, folder: str | os.PathLike) -> Path:
    """Write a :func:`split_table` to ``<folder>/discs.csv`` (atomically)."""
    path = Path(folder) / SPLIT_FILE
    return write_csv_atomic(split, path)


def split_labels(folder: str | os.PathLike, table: pd.DataFrame) -> pd.Series:
    """For each row of ``table`` (with ``series`` and ``ivd_label``), the ``split`` a model
    folder's ``discs.csv`` (:func:`write_split`) gives it: "train", "heldout", or NaN for a
    disc the model never saw (e.g. one too large for its cube); ``table``'s index."""
    path = Path(folder) / SPLIT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the model folder does not name its discs")
    split = pd.read_csv(path, dtype={"series": str})
    keys = ["series", "ivd_label"]
    left = table[keys].astype({"series": str, "ivd_label": int}).reset_index(drop=True)
    right = split[[*keys, "split"]].astype({"ivd_label": int})
    joined = left.merge(right, on=keys, how="left", validate="one_to_one")
    return pd.Series(joined["split"].to_numpy(), index=table.index, name="split")


def read_split(folder: str | os.PathLike, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, heldout) over the discs of ``table`` from a model folder's
    ``discs.csv``, so that a later chapter uses exactly the discs the model was trained on
    and held out. A disc of ``table`` the file does not name, or the reverse, is an error
    naming the file (the discs changed since the model was trained)."""
    labels = split_labels(folder, table)
    named = len(pd.read_csv(Path(folder) / SPLIT_FILE))
    if labels.isna().any() or named != len(table):
        raise ValueError(
            f"{Path(folder) / SPLIT_FILE} names {named} discs, the table has {len(table)} "
            f"({int(labels.isna().sum())} of them not named): the discs changed since the "
            "model was trained; rebuild its chapter"
        )
    heldout = (labels == "heldout").to_numpy()
    return ~heldout, heldout


# ---------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------
def _sweep_row(
    k: int,
    ae: DiscAE,
    ev: dict[str, Any],
    pca: PCABaseline,
    p_tr: dict[str, float],
    p_ho: dict[str, float],
) -> dict[str, Any]:
    m = ae.metrics
    return {
        "latent_dim": int(k),
        "converged": bool(m["converged"]),
        "epochs_to_converge": m.get("epochs_to_converge"),
        "epochs_run": m["epochs"],
        "train_iou": ev["train_iou"],
        "train_iou_lo": ev["train_iou_ci"][0],
        "train_iou_hi": ev["train_iou_ci"][1],
        "train_iou_min": float(ev["train_ious"].min()),
        "heldout_iou": ev["heldout_iou"],
        "heldout_iou_lo": ev["heldout_iou_ci"][0],
        "heldout_iou_hi": ev["heldout_iou_ci"][1],
        "pca_components": pca.n_components_,
        "pca_train_iou": p_tr["mean"],
        "pca_train_iou_lo": p_tr["lo"],
        "pca_train_iou_hi": p_tr["hi"],
        "pca_heldout_iou": p_ho["mean"],
        "pca_heldout_iou_lo": p_ho["lo"],
        "pca_heldout_iou_hi": p_ho["hi"],
        "n_train": len(ev["train_ious"]),
        "n_heldout": len(ev["heldout_ious"]),
        "train_seconds": m.get("train_seconds"),
        "parameters": m.get("parameters"),
    }


def sweep(
    train: np.ndarray,
    heldout: np.ndarray,
    base: AEConfig,
    latent_dims: Sequence[int] = (64, 8, 4, 3),
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    split: pd.DataFrame | None = None,
    workers: int = 1,
) -> tuple[pd.DataFrame, dict[int, DiscAE], dict[int, PCABaseline]]:
    """The bottleneck sweep: an autoencoder and a PCA baseline per ``k``.

    Returns the result table (one row per k, numbers as floats), the models and the PCA fits.
    Models are saved under ``out_dir/k<K>`` (with ``split``, a :func:`split_table`, as
    ``discs.csv``) and reused when nothing changed. With ``workers`` > 1 (and ``out_dir``)
    the models train that many at a time, each with its share of ``base.cpu_threads``
    (:func:`~disclatent.autoencoder.ensemble.train_many`; smallest k, the longest run, first).
    """
    rows, models, pcas = [], {}, {}
    train, heldout = fit_cubes(train, base.size), fit_cubes(heldout, base.size)
    if workers > 1 and out_dir is not None:
        base = replace(base, cpu_threads=ensemble.threads_per_worker(base, workers))
        jobs = [
            ensemble.Job(f"k{k}", replace(base, latent_dim=int(k)), Path(out_dir) / f"k{k}")
            for k in sorted(latent_dims)
        ]
        ensemble.train_many(train, heldout, jobs, workers, progress, device)
    for k in latent_dims:
        cfg = replace(base, latent_dim=int(k))
        folder = Path(out_dir) / f"k{k}" if out_dir is not None else None
        if folder is not None:
            ae, ev = evaluation.train_or_load(train, cfg, folder, heldout, progress, device)
            if split is not None:
                write_split(split, folder)
        else:
            ae = training.fit(train, cfg, device=device, progress=progress)
            ev = evaluation.evaluate(ae, train, heldout)
        pca = PCABaseline(int(k), seed=base.seed).fit(train)
        p_tr = iou_summary(pca.iou(train))
        p_ho = iou_summary(pca.iou(heldout) if len(heldout) else np.zeros(0))
        rows.append(_sweep_row(int(k), ae, ev, pca, p_tr, p_ho))
        models[int(k)], pcas[int(k)] = ae, pca
    return pd.DataFrame(rows), models, pcas


def main_latent_dim(latent_dims: Iterable[int]) -> int:
    """The bottleneck the chapter discusses: the paper's choice if swept, else the last one."""
    ks = [int(k) for k in latent_dims]
    return MAIN_LATENT_DIM if MAIN_LATENT_DIM in ks else ks[-1]


# ---------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------
def _fmt_ci(mean: float, lo: float, hi: float) -> str:
    return format_ci(mean, lo, hi, digits=4, missing="-")


def _paper_sweep_cells(latent_dim: int) -> tuple[str, str]:
    """The published training IoU and epochs for ``latent_dim``, as table text."""
    p = published.sweep_row(latent_dim)
    if p is None:
        return "-", "-"
    if not p["converged"]:
        return p["note"], f"no convergence in {published.AUTOENCODER_EPOCH_BUDGET}"
    return _fmt_ci(p["iou"], p["iou_lo"], p["iou_hi"]), str(int(p["epochs"]))


def sweep_table(results: pd.DataFrame) -> pd.DataFrame:
    """The sweep beside the paper: one row per k, IoU as 'mean (95 % CI)' strings."""
    rows = []
    for r in results.itertuples(index=False):
        paper_iou, paper_epochs = _paper_sweep_cells(r.latent_dim)
        if r.converged:
            ours_epochs = str(int(r.epochs_to_converge))
        else:
            ours_epochs = f"no convergence in {int(r.epochs_run)}"
        rows.append(
            {
                "k": r.latent_dim,
                "paper: train IoU": paper_iou,
                "paper: epochs": paper_epochs,
                "ours: train IoU (95% CI)": _fmt_ci(r.train_iou, r.train_iou_lo, r.train_iou_hi),
                "ours: epochs": ours_epochs,
                "ours: held-out IoU (95% CI)": _fmt_ci(
                    r.heldout_iou, r.heldout_iou_lo, r.heldout_iou_hi
                ),
                "PCA: components": int(r.pca_components),
                "PCA: train IoU": _fmt_ci(r.pca_train_iou, r.pca_train_iou_lo, r.pca_train_iou_hi),
                "PCA: held-out IoU": _fmt_ci(
                    r.pca_heldout_iou, r.pca_heldout_iou_lo, r.pca_heldout_iou_hi
                ),
            }
        )
    return pd.DataFrame(rows)


def ideas_table(path: str | os.PathLike) -> pd.DataFrame:
    """The ladder of training ideas that ``benchmarks/bench_autoencoder.py --ideas`` measured
    (its JSON file): seconds and epochs to the criterion, or the best IoU within the cap."""
    import json

    runs = json.loads(Path(path).read_text())
    rows = [
        {
            "idea (each adds to the row above)": r["idea"],
            "epoch budget": r.get("epoch_budget"),
            "seconds to 0.995": f"{r['seconds_to_0995']:.0f}" if r["converged"] else "-",
            "epochs to 0.995": str(r["epochs_to_0995"]) if r["converged"] else "-",
            "best train IoU": r["best_train_iou"],
            "held-out IoU": r.get("heldout_iou"),
            "epochs run": r["epochs_run"],
            "seconds per epoch": r["seconds_per_epoch"],
        }
        for r in runs["results"]
    ]
    return pd.DataFrame(rows).set_index("idea (each adds to the row above)")


def settings_table(config: AEConfig, profile: str) -> pd.DataFrame:
    """The paper profile's settings beside this run's (:func:`describe_config`), with the
    parameter count of each network."""
    paper = AEConfig.from_profile("paper")
    return pd.DataFrame(
        {
            "paper profile": describe_config(paper, count_parameters(build_model(paper))),
            f"this run ({profile})": describe_config(config, count_parameters(build_model(config))),
        }
    )


def timing_table(results: pd.DataFrame) -> pd.DataFrame:
    """Epochs, seconds, parameters and disc counts per k, with seconds per epoch."""
    cols = ["latent_dim", "epochs_run", "train_seconds", "parameters", "n_train", "n_heldout"]
    timing = results[cols].rename(columns={"latent_dim": "k"})
    timing["seconds per epoch"] = (timing["train_seconds"] / timing["epochs_run"]).round(2)
    return timing.set_index("k")


METRICS_COLUMNS = [
    "epochs",
    "converged",
    "train_iou",
    "train_iou_min",
    "heldout_iou",
    "train_seconds",
    "volumes_per_second",
    "parameters",
    "device",
]


def metrics_table(models: dict[int, DiscAE]) -> pd.DataFrame:
    """The saved metrics of every model (one row per k; scalar metrics only)."""
    metrics = {
        int(k): {key: v for key, v in m.metrics.items() if not isinstance(v, list | dict)}
        for k, m in models.items()
    }
    return pd.DataFrame(metrics).T[METRICS_COLUMNS]


# ---------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------
def split_text(cohort: str, table: pd.DataFrame, heldout: np.ndarray, device: Any) -> str:
    """One paragraph: discs and patients in the cohort, in training and held out."""
    patients = table["patient"].astype(str)
    train = ~np.asarray(heldout, bool)
    return (
        f"Cohort `{cohort}`: {len(table)} discs of {patients.nunique()} patients (T1 masks). "
        f"{int(train.sum())} discs of {patients[train].nunique()} "
        f"patients train the models; {int((~train).sum())} discs of "
        f"{patients[~train].nunique()} patients are held out. "
        f"Device: `{device}`."
    )


def summary_text(results: pd.DataFrame, profile: str) -> str:
    """What the sweep found at the main bottleneck (:func:`main_latent_dim`), in sentences:
    training and held-out IoU against PCA's, and whether the criterion was reached."""
    k = main_latent_dim(results["latent_dim"])
    r = results.set_index("latent_dim").loc[k]
    gap_ae = r.train_iou - r.heldout_iou
    lines = [
        f"At k = {k}: training IoU {r.train_iou:.4f}, held-out IoU {r.heldout_iou:.4f} "
        f"(a gap of {gap_ae:.4f}); PCA with {int(r.pca_components)} components: training "
        f"{r.pca_train_iou:.4f}, held out {r.pca_heldout_iou:.4f}.",
        f"The autoencoder converged by the paper's criterion after {int(r.epochs_to_converge)} "
        "epochs."
        if r.converged
        else f"The autoencoder did **not** reach the paper's criterion "
        f"({published.TARGET_IOU}) within the `{profile}` budget of {int(r.epochs_run)} epochs.",
    ]
    if math.isfinite(r.heldout_iou) and math.isfinite(r.pca_heldout_iou):
        better = "better" if r.heldout_iou > r.pca_heldout_iou else "no better"
        lines.append(
            f"On discs it has never seen, the autoencoder reconstructs {better} than the "
            f"linear shape model with the same {k} numbers "
            f"({r.heldout_iou:.4f} vs {r.pca_heldout_iou:.4f})."
        )
    return " ".join(lines)
