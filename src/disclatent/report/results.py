"""The study's headline numbers, read back from the CSV tables each chapter writes.

The results chapter glues these numbers into its prose (myst-nb ``glue``), so no number in
the text is typed by hand. A table that a chapter has not written (e.g. no predicted masks)
gives ``None`` for its numbers, shown as "n/a", never a made-up value.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent import published
from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.formatting import format_number


def _paper_auc(target: str, features: str) -> float:
    return float(published.prediction("gt", target, features)["auc"])


#: the published figures the results page quotes, keyed like :func:`headline_numbers`
PAPER = {
    "seg_dsc": published.SEGMENTATION["DSC"],
    "seg_iou": published.SEGMENTATION["IoU"],
    "ae_k4_iou": float(published.sweep_row(4)["iou"]),
    "ae_k4_epochs": int(published.sweep_row(4)["epochs"]),
    "pred_gt_narrowing_latent_auc": _paper_auc("disc_narrowing", "latent"),
    "pred_gt_narrowing_geometric_auc": _paper_auc("disc_narrowing", "geometric"),
    "pred_gt_narrowing_combined_auc": _paper_auc("disc_narrowing", "geometric + latent"),
    "interp_max_abs_r": published.INTERPRETATION_MAX_ABS_R,
    "latent_latent_max_r": published.LATENT_LATENT_MAX_R,
    "hours": published.PIPELINE_HOURS,
    "gpu": published.PIPELINE_GPU,
}


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    path = tables / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def _f(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def headline_numbers(tables_dir: str | os.PathLike) -> dict[str, float | str | None]:
    """Every number the results chapter quotes; ``None`` where its table is missing."""
    t = Path(tables_dir)
    out: dict[str, float | str | None] = {}

    seg = _read(t, "supplementary_table_1_segmentation")
    ours = (
        seg[~seg["model"].astype(str).str.contains(r"paper|abstract")] if seg is not None else None
    )
    if ours is not None and len(ours):
        best = ours.loc[ours["DSC"].astype(float).idxmax()]
        out.update(
            seg_model=str(best["model"]),
            seg_dsc=_f(best["DSC"]),
            seg_dsc_lo=_f(best["DSC low"]),
            seg_dsc_hi=_f(best["DSC high"]),
            seg_iou=_f(best["IoU"]),
            seg_minutes=_f(best.get("training (min)")),
            seg_inference_s=_f(best.get("inference (s/series)")),
        )
    else:
        out.update(
            dict.fromkeys(
                [
                    "seg_model",
                    "seg_dsc",
                    "seg_dsc_lo",
                    "seg_dsc_hi",
                    "seg_iou",
                    "seg_minutes",
                    "seg_inference_s",
                ]
            )
        )

    sweep = _read(t, "autoencoder_sweep_raw")
    row = sweep[sweep["latent_dim"] == 4] if sweep is not None else None
    if row is not None and len(row):
        r = row.iloc[0]
        out.update(
            ae_k4_iou=_f(r["train_iou"]),
            ae_k4_heldout_iou=_f(r["heldout_iou"]),
            ae_k4_pca_heldout_iou=_f(r.get("pca_heldout_iou")),
            ae_k4_converged="yes" if bool(r["converged"]) else "no",
            ae_k4_epochs=_f(r["epochs_to_converge"])
            if bool(r["converged"])
            else _f(r["epochs_run"]),
        )
    else:
        out.update(
            dict.fromkeys(
                [
                    "ae_k4_iou",
                    "ae_k4_heldout_iou",
                    "ae_k4_pca_heldout_iou",
                    "ae_k4_converged",
                    "ae_k4_epochs",
                ]
            )
        )

    geo = _read(t, "geometry_errors_vs_truth")
    for f in GEOMETRY_FEATURES:
        val = None
        if geo is not None:
            hit = geo[geo["feature"] == f]
            val = _f(hit["median_abs_error"].iloc[0]) if len(hit) else None
        out[f"geo_err_{f}"] = val

    pred = _read(t, "prediction_results")
    names = {"latent": "latent", "geometric": "geometric", "geometric + latent": "combined"}
    for target in ("disc_narrowing", "disc_bulging"):
        for fs, short in names.items():
            for metric in ("auc", "f1"):
                val = None
                if pred is not None:
                    hit = pred[
                        (pred["source"] == "gt")
                        & (pred["target"] == target)
                        & (pred["features"] == fs)
                        & (pred["protocol"] == "grouped")
                    ]
                    val = _f(hit[metric].iloc[0]) if len(hit) else None
                out[f"pred_gt_{target.split('_')[1]}_{short}_{metric}"] = val

    leak = _read(t, "leakage_protocols")
    for protocol, short in (
        ("paper", "paper"),
        ("grouped", "grouped"),
        ("grouped, AE in fold", "infold"),
    ):
        val = None
        if leak is not None:
            hit = leak[
                (leak["target"] == "disc_narrowing")
                & (leak["features"] == "latent")
                & (leak["protocol"] == protocol)
            ]
            val = _f(hit["auc"].iloc[0]) if len(hit) else None
        out[f"leak_latent_auc_{short}"] = val

    corr = _read(t, "latent_geometry_correlation")
    if corr is not None:
        r = _correlation_r(corr)
        flat = r.abs().stack()
        (lat, feat), best = flat.idxmax(), flat.max()
        out.update(interp_max_abs_r=_f(best), interp_max_pair=f"{lat} and {feat}")
    else:
        out.update(interp_max_abs_r=None, interp_max_pair=None)
    ll = _read(t, "latent_latent_correlation")
    if ll is not None:
        r = _correlation_r(ll).to_numpy(float)
        out["latent_latent_max_r"] = _f(np.abs(r[~np.eye(len(r), dtype=bool)]).max())
    else:
        out["latent_latent_max_r"] = None
    return out


def _correlation_r(df: pd.DataFrame) -> pd.DataFrame:
    """The r matrix of a long correlation table (``x, y, r, p, q``; see
    :func:`disclatent.stats.correlation_table`)."""
    return df.pivot(index="x", columns="y", values="r")


def comparison_table(numbers: dict) -> pd.DataFrame:
    """Paper against this study for the five steps, one row per quantity."""

    fmt = format_number

    rows = [
        (
            "1 segmentation",
            "test Dice (held-out site)",
            fmt(PAPER["seg_dsc"]),
            fmt(numbers.get("seg_dsc")),
        ),
        ("1 segmentation", "test IoU", fmt(PAPER["seg_iou"]), fmt(numbers.get("seg_iou"))),
        (
            "2 autoencoder",
            "k = 4 training IoU",
            fmt(PAPER["ae_k4_iou"], 4),
            fmt(numbers.get("ae_k4_iou"), 4),
        ),
        (
            "2 autoencoder",
            "k = 4 held-out IoU",
            "not reported",
            fmt(numbers.get("ae_k4_heldout_iou"), 4),
        ),
        (
            "2 autoencoder",
            "k = 4 PCA baseline, held-out IoU",
            "not reported",
            fmt(numbers.get("ae_k4_pca_heldout_iou"), 4),
        ),
        (
            "3 geometry",
            "median |error| of height vs truth (mm)",
            "not validated",
            fmt(numbers.get("geo_err_height_mm"), 3),
        ),
        (
            "3 geometry",
            "median |error| of AP width vs truth (mm)",
            "not validated",
            fmt(numbers.get("geo_err_ap_width_mm"), 3),
        ),
        (
            "4 prediction",
            "narrowing AUC, latent (GT masks)",
            fmt(PAPER["pred_gt_narrowing_latent_auc"]),
            fmt(numbers.get("pred_gt_narrowing_latent_auc")),
        ),
        (
            "4 prediction",
            "narrowing AUC, geometric (GT masks)",
            fmt(PAPER["pred_gt_narrowing_geometric_auc"]),
            fmt(numbers.get("pred_gt_narrowing_geometric_auc")),
        ),
        (
            "4 prediction",
            "narrowing AUC, geometric + latent (GT masks)",
            fmt(PAPER["pred_gt_narrowing_combined_auc"]),
            fmt(numbers.get("pred_gt_narrowing_combined_auc")),
        ),
        (
            "5 interpretation",
            "strongest |r| latent vs geometric",
            fmt(PAPER["interp_max_abs_r"]),
            fmt(numbers.get("interp_max_abs_r")),
        ),
        (
            "5 interpretation",
            "largest |r| between latent features",
            f"< {PAPER['latent_latent_max_r']}",
            fmt(numbers.get("latent_latent_max_r")),
        ),
    ]
    return pd.DataFrame(rows, columns=["step", "quantity", "paper", "this study"])


def notebook_timings(notebooks_dir: str | os.PathLike) -> pd.DataFrame:
    """Execution time of each executed notebook (recorded by the book builder)."""
    import json

    rows = []
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        meta = json.loads(path.read_text()).get("metadata", {}).get("disclatent", {})
        rows.append({"notebook": path.stem, "seconds": meta.get("seconds")})
    return pd.DataFrame(rows, columns=["notebook", "seconds"])


def hardware() -> dict[str, str]:
    """What this run executed on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
