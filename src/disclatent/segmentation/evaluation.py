"""From a predicted foreground to SPIDER disc instances, and how they compare with the truth.

**Instances.** The thresholded foreground is split into connected components; components
smaller than ``min_volume_mm3`` (and than a tenth of the median component) are dropped as
noise. The rest are numbered 201, 202, ... from the most inferior upward, ordered by the
superior coordinate of their centroid in world (LPS) millimetres, i.e. from the header, never
from array position. As in SPIDER, 201 is then L5/S1 *if* the lowest disc was found and no
spurious component lies below it; :func:`evaluate_series` checks that against the ground truth
and reports every mismatch.

**Metrics.** Per series: IoU and DSC of the binary disc foreground (all discs together) on
the image's own voxel grid. Per ground-truth disc: its predicted instance (one-to-one matching
that maximises overlap, Hungarian), that instance's Dice with the disc, *detected* when that
Dice is at least 0.5, and whether the instance's label names the same level. Confidence
intervals: percentile bootstrap over series.

**Supplementary Table 1** (:func:`supplementary_table_1`) puts every model's test figures
beside the paper's (:data:`disclatent.published.SEGMENTATION` and
:data:`~disclatent.published.SEGMENTATION_ABSTRACT`); see ``book/method.md``, *Segmentation*.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from disclatent import published
from disclatent.data import labels as lab
from disclatent.data.volume import DataError, Volume
from disclatent.formatting import format_ci
from disclatent.segmentation.data import disc_foreground
from disclatent.stats import bootstrap_mean_ci

DETECTION_DICE = 0.5


def label_instances(
    foreground: Volume, min_volume_mm3: float = 500.0, min_fraction_of_median: float = 0.1
) -> tuple[Volume, dict]:
    """Disc instances 201, 202, ... numbered upward by world superior coordinate.

    Returns the int16 label volume (same grid as ``foreground``) and a summary dict:
    ``n_components`` found, ``n_dropped`` (too small), ``n_discs`` kept, ``dropped_mm3``.
    """
    fg = np.asarray(foreground.array) > 0
    comp, n = ndimage.label(fg)
    out = np.zeros(fg.shape, np.int16)
    info = {"n_components": int(n), "n_dropped": 0, "n_discs": 0, "dropped_mm3": 0.0}
    if n == 0:
        return foreground.with_array(out), info
    idx = np.arange(1, n + 1)
    counts = ndimage.sum_labels(fg, comp, idx)
    vol_mm3 = counts * foreground.voxel_volume_mm3
    keep = vol_mm3 >= min_volume_mm3
    if keep.any():
        keep &= vol_mm3 >= min_fraction_of_median * np.median(vol_mm3[keep])
    kept = idx[keep]
    info["n_dropped"] = int((~keep).sum())
    info["dropped_mm3"] = float(vol_mm3[~keep].sum())
    if len(kept) > lab.MAX_INDEX:  # more than SPIDER can name: keep the largest
        kept = kept[np.argsort(-vol_mm3[kept - 1], kind="stable")[: lab.MAX_INDEX]]
        info["n_dropped"] = int(n - lab.MAX_INDEX)
    centroids_kji = np.array(ndimage.center_of_mass(fg, comp, kept)).reshape(-1, 3)
    world = foreground.index_to_world(centroids_kji[:, ::-1])
    order = np.argsort(world[:, 2], kind="stable")  # LPS z grows towards superior
    for rank, c in enumerate(kept[order], start=1):
        out[comp == c] = lab.disc_mask_label(rank)
    info["n_discs"] = int(len(kept))
    return foreground.with_array(out), info


def _overlaps(
    gt: np.ndarray, pred: np.ndarray, gt_labels: list[int], pred_labels: list[int]
) -> np.ndarray:
    both = (gt > 0) & (pred > 0)
    table = pd.crosstab(gt[both], pred[both])
    return table.reindex(index=gt_labels, columns=pred_labels, fill_value=0).to_numpy()


def evaluate_series(pred: Volume, gt: Volume, series: str = "") -> tuple[dict, pd.DataFrame]:
    """Compare a predicted instance mask with a SPIDER ground-truth mask on the same grid.

    Returns a per-series dict (IoU, DSC, counts of detected, missed, extra and mislabelled
    discs) and a per-disc table (one row per ground-truth disc).
    """
    if not pred.same_grid(gt):
        raise DataError(
            f"{series}: prediction and ground truth are on different grids (the prediction "
            "is on the image's grid: is the mask on another grid than its image?)"
        )
    g = np.where(disc_foreground(gt.array) > 0, gt.array, 0).astype(np.int32)
    p = np.where(disc_foreground(pred.array) > 0, pred.array, 0).astype(np.int32)
    gb, pb = g > 0, p > 0
    inter = int((gb & pb).sum())
    union = int((gb | pb).sum())
    total = int(gb.sum() + pb.sum())
    iou = inter / union if union else float("nan")
    dsc = 2 * inter / total if total else float("nan")
    gt_labels = sorted(int(v) for v in np.unique(g) if v)
    pred_labels = sorted(int(v) for v in np.unique(p) if v)
    gt_size = {v: int((g == v).sum()) for v in gt_labels}
    pred_size = {v: int((p == v).sum()) for v in pred_labels}
    ov = _overlaps(g, p, gt_labels, pred_labels)
    match: dict[int, int] = {}
    if ov.size:
        rows, cols = linear_sum_assignment(-ov)
        match = {
            gt_labels[r]: pred_labels[c] for r, c in zip(rows, cols, strict=True) if ov[r, c] > 0
        }
    discs = []
    for i, v in enumerate(gt_labels):
        m = match.get(v)
        inter_d = int(ov[i, pred_labels.index(m)]) if m is not None else 0
        dice = 2 * inter_d / (gt_size[v] + pred_size[m]) if m is not None else 0.0
        k = v - lab.DISC_LABEL_OFFSET
        discs.append(
            {
                "series": series,
                "ivd_label": k,
                "level": lab.level_name(k),
                "pred_label": m if m is not None else pd.NA,
                "pred_level": lab.level_name(m - lab.DISC_LABEL_OFFSET) if m is not None else "",
                "dice": dice,
                "detected": dice >= DETECTION_DICE,
                "label_correct": m == v,
            }
        )
    disc_df = pd.DataFrame(
        discs,
        columns=[
            "series",
            "ivd_label",
            "level",
            "pred_label",
            "pred_level",
            "dice",
            "detected",
            "label_correct",
        ],
    )
    matched_pred = set(match.values())
    row = {
        "series": series,
        "iou": iou,
        "dsc": dsc,
        "gt_discs": len(gt_labels),
        "pred_discs": len(pred_labels),
        "detected": int(disc_df["detected"].sum()),
        "missed": int((~disc_df["detected"]).sum()),
        "extra": int(sum(1 for v in pred_labels if v not in matched_pred)),
        "mislabelled": int((disc_df["detected"] & ~disc_df["label_correct"]).sum()),
    }
    return row, disc_df


def summarise(series_df: pd.DataFrame, by: list[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """Mean IoU and DSC with 95 % bootstrap CIs over series, overall or per group."""
    groups = [((), series_df)] if not by else series_df.groupby(by, sort=True)
    rows = []
    for key, g in groups:
        iou = bootstrap_mean_ci(g["iou"], seed=seed)
        dsc = bootstrap_mean_ci(g["dsc"], seed=seed)
        row = dict(zip(by or [], key if isinstance(key, tuple) else (key,), strict=False))
        row.update(
            {
                "series": len(g),
                "IoU": iou[0],
                "IoU low": iou[1],
                "IoU high": iou[2],
                "DSC": dsc[0],
                "DSC low": dsc[1],
                "DSC high": dsc[2],
                "IoU (95% CI)": format_ci(*iou),
                "DSC (95% CI)": format_ci(*dsc),
            }
        )
        if "gt_discs" in g:
            row.update(
                {
                    "discs": int(g["gt_discs"].sum()),
                    "detected": int(g["detected"].sum()),
                    "extra": int(g["extra"].sum()),
                    "mislabelled": int(g["mislabelled"].sum()),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def per_level(disc_df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per spinal level: discs, mean Dice (95 % CI), detection rate, correct-label rate."""
    rows = []
    for (k, level), g in disc_df.groupby(["ivd_label", "level"], sort=True):
        d = bootstrap_mean_ci(g["dice"], seed=seed)
        rows.append(
            {
                "ivd_label": k,
                "level": level,
                "discs": len(g),
                "Dice": d[0],
                "Dice (95% CI)": format_ci(*d),
                "detection rate": float(g["detected"].mean()),
                "correct level label": float(g["label_correct"].mean()),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------
# The models compared, beside the paper (Supplementary Table 1)
# ---------------------------------------------------------------------------------------
#: the paper's test cohort, as Supplementary Table 1 names it
PAPER_DATA = "SPIDER T1, held-out hospital"
_METRICS = ("IoU", "IoU low", "IoU high", "DSC", "DSC low", "DSC high")


@dataclass(frozen=True)
class ModelEvaluation:
    """One model on the test series: per-series and per-disc tables, inference time."""

    series: pd.DataFrame  # one row per series (evaluate_series)
    discs: pd.DataFrame  # one row per ground-truth disc
    seconds_per_series: float  # mean wall time of segmenting one series


def display_name(model: str) -> str:
    """The name a table gives a model: SwinUNETR is always the V2 variant here."""
    return model + ("-V2" if model == "SwinUNETR" else "")


def paper_ci(entry: Mapping[str, Any] = published.SEGMENTATION) -> tuple[str, str]:
    """IoU and DSC of a published row as ``"est (low-high)"`` (the estimate alone where the
    source gives no interval)."""
    iou, dsc = (
        format_ci(entry[m], entry.get(f"{m} low"), entry.get(f"{m} high")) for m in ("IoU", "DSC")
    )
    return iou, dsc


def _model_row(name: str, ev: ModelEvaluation, training_seconds: float, data: str) -> dict:
    s = summarise(ev.series).iloc[0]
    return {
        "model": display_name(name),
        "data": data,
        "series": int(s["series"]),
        **{m: s[m] for m in _METRICS},
        "IoU (95% CI)": s["IoU (95% CI)"],
        "DSC (95% CI)": s["DSC (95% CI)"],
        "discs detected": f"{s['detected']}/{s['discs']}",
        "extra": s["extra"],
        "mislabelled": s["mislabelled"],
        "training (min)": round(training_seconds / 60, 1),
        "inference (s/series)": round(ev.seconds_per_series, 2),
    }


def _paper_row(entry: Mapping[str, Any]) -> dict:
    iou, dsc = paper_ci(entry)
    return {
        "model": entry["model"],
        "data": PAPER_DATA,
        **{m: entry[m] for m in _METRICS if m in entry},
        "IoU (95% CI)": iou,
        "DSC (95% CI)": dsc,
    }


def supplementary_table_1(
    evaluations: Mapping[str, ModelEvaluation],
    training_seconds: Mapping[str, float],
    data: str,
) -> pd.DataFrame:
    """Test IoU and DSC (95 % bootstrap CI) of every model, keyed by model name, with disc
    counts and times; then the paper's row and the abstract's. ``data`` describes the test
    cohort (e.g. ``"phantom, site D"``)."""
    rows = [_model_row(name, ev, training_seconds[name], data) for name, ev in evaluations.items()]
    rows += [_paper_row(published.SEGMENTATION), _paper_row(published.SEGMENTATION_ABSTRACT)]
    return pd.DataFrame(rows)


#: the columns of Supplementary Table 1 the chapter shows (the CSV has the numbers too)
SHOWN_COLUMNS = [
    "model",
    "data",
    "series",
    "IoU (95% CI)",
    "DSC (95% CI)",
    "discs detected",
    "extra",
    "mislabelled",
    "training (min)",
    "inference (s/series)",
]


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """:data:`SHOWN_COLUMNS` of :func:`supplementary_table_1`, blanks for missing values and
    counts as integers (the paper's rows have none)."""
    shown = table[SHOWN_COLUMNS]
    shown = shown.astype(object).where(shown.notna(), "")
    for col in ("series", "extra", "mislabelled"):
        shown[col] = shown[col].map(lambda v: v if v == "" else int(v))
    return shown


def best_model(evaluations: Mapping[str, ModelEvaluation]) -> str:
    """The model with the highest mean test DSC (the first one on a tie)."""
    return max(evaluations, key=lambda n: summarise(evaluations[n].series).iloc[0]["DSC"])


def series_with_issues(series_df: pd.DataFrame) -> pd.DataFrame:
    """The series with a missed, extra or mislabelled disc (:func:`evaluate_series` rows)."""
    return series_df[(series_df[["missed", "extra", "mislabelled"]] > 0).any(axis=1)]
