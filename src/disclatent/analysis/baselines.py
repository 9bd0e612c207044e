"""Do the latent features beat trivial baselines? Every feature set against the best one.

(``book/method.md``, *Prediction*.) Narrowing and bulging prevalence depend strongly on the
spinal level, and disc height is the textbook reading of narrowing, so a feature set earns
its place only by beating what the level and the height already give. From the rows and
cross-validation results of :func:`disclatent.analysis.prediction.prediction_grid`:

* :func:`best_baselines`: per (mask source, target), the baseline without latent features
  (:data:`REFERENCE_BASELINES`) with the highest mean AUC;
* :func:`baseline_comparisons`: every other feature set (the paper's three and the other
  baselines) against it, paired on the same discs and folds
  (:func:`~disclatent.analysis.validation.compare`: a patient bootstrap of the difference
  and the corrected repeated-CV t-test);
* :func:`baseline_table`: one row per (source, target, feature set) with its AUC and F1
  and its difference from the best baseline (``prediction_baselines.csv``);
* :func:`baseline_verdict`: what that table says, in words decided by the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from disclatent.analysis.estimators import BASELINE_SETS, feature_columns, feature_role
from disclatent.analysis.validation import CVResult, compare
from disclatent.data.spider import GRADING_TARGETS
from disclatent.formatting import format_ci

#: a feature set's AUC against the best baseline: difference (set - baseline), CI, p-values
DELTA_COLUMNS = ["delta_auc", "delta_auc_lo", "delta_auc_hi", "p_bootstrap", "p_corrected_t"]
#: the columns of :func:`baseline_table`, in order
BASELINE_COLUMNS = [
    *("source", "target", "features", "role"),
    *("auc", "auc_lo", "auc_hi", "f1", "f1_lo", "f1_hi"),
    "best_baseline",
    *DELTA_COLUMNS,
]
#: the baselines a feature set is measured against: those without latent columns (level,
#: height, height + level, geometric + level). "latent + level" is compared with the best of
#: them like the paper's sets; as the reference it would ask whether the level adds to the
#: latent features, not whether the latent features beat what needs no autoencoder.
REFERENCE_BASELINES = tuple(
    fs for fs in BASELINE_SETS if not any(c.startswith("latent_") for c in feature_columns(fs, 1))
)
#: the feature sets :func:`baseline_verdict` speaks about by default
VERDICT_SETS = ("latent", "geometric + latent")
SOURCE_PHRASES = {"gt": "ground-truth masks", "pred": "predicted masks"}


def best_baselines(
    main: pd.DataFrame, metric: str = "auc", candidates: Sequence[str] = REFERENCE_BASELINES
) -> dict[tuple[str, str], str]:
    """Per (source, target) of ``main`` (rows as :func:`prediction_grid` makes them), the
    set of ``candidates`` with the highest ``metric`` (the first in table order on a tie);
    pairs without a candidate row are left out."""
    rows = main[main["features"].isin(list(candidates))]
    best = {}
    for (source, target), group in rows.groupby(["source", "target"], sort=False):
        best[(source, target)] = str(group.loc[group[metric].idxmax(), "features"])
    return best


def baseline_comparisons(
    main: pd.DataFrame,
    results: Mapping[tuple[str, str, str], CVResult],
    metric: str = "auc",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every feature set against the best baseline of its (source, target).

    The best baseline is one of :data:`REFERENCE_BASELINES` (:func:`best_baselines`). One row
    per (source, target, feature set) other than the best baseline itself:
    ``best_baseline``, ``difference`` (set minus best baseline, positive when the set is
    better), its paired patient-bootstrap 95 % CI ``diff_lo, diff_hi`` and ``p_bootstrap``,
    and ``p_corrected_t`` (:func:`~disclatent.analysis.validation.compare`).

    The best baseline is chosen on the same cross-validated predictions it is then compared
    on, so its estimate is the maximum of several noisy ones and biased upward: the
    comparison favours the baseline, which makes it conservative for the latent features.
    """
    best = best_baselines(main, metric)
    rows = []
    for (source, target, fs), result in results.items():
        base = best.get((source, target))
        if base is None or fs == base:
            continue
        c = compare(results[(source, target, base)], result, metric, n_boot=n_boot, seed=seed)
        rows.append(
            {"source": source, "target": target, "features": fs, "best_baseline": base, **c}
        )
    return pd.DataFrame(rows)


def baseline_table(main: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """``prediction_baselines``: one row per (source, target, feature set) of ``main`` with
    its ``role``, AUC and F1 (95 % CIs), ``best_baseline`` and the AUC difference from it
    (``delta_auc, delta_auc_lo, delta_auc_hi, p_bootstrap, p_corrected_t``; NaN on the best
    baseline's own row). ``comparisons`` is :func:`baseline_comparisons`'s AUC table."""
    keys = ["source", "target", "features"]
    names = {"difference": "delta_auc", "diff_lo": "delta_auc_lo", "diff_hi": "delta_auc_hi"}
    delta = comparisons.rename(columns=names).reindex(columns=[*keys, *DELTA_COLUMNS])
    table = main.drop(columns=[*DELTA_COLUMNS, "role", "best_baseline"], errors="ignore")
    table = table.merge(delta, on=keys, how="left", validate="one_to_one")
    table["role"] = table["features"].map(feature_role)
    best = best_baselines(main)
    pairs = zip(table["source"], table["target"], strict=True)
    table["best_baseline"] = [best.get(pair, np.nan) for pair in pairs]
    return table.reindex(columns=BASELINE_COLUMNS)


def difference_word(lo: float, hi: float) -> str:
    """How a feature set compares with a baseline, from the 95 % CI of (set - baseline):
    ``"beats"`` when it lies above zero, ``"is worse than"`` below zero, else
    ``"is no better than"`` (the interval holds zero, or cannot be computed)."""
    if np.isfinite(lo) and lo > 0:
        return "beats"
    if np.isfinite(hi) and hi < 0:
        return "is worse than"
    return "is no better than"


def format_p(p: float) -> str:
    """``"p = 0.012"``, ``"p < 0.001"``; ``"p n/a"`` when missing."""
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_difference(d: float, lo: float, hi: float) -> str:
    """``"+0.020 (95 % CI -0.030 to +0.070)"``: a signed difference and its interval."""
    if not np.isfinite(d):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{d:+.3f}"
    return f"{d:+.3f} (95 % CI {lo:+.3f} to {hi:+.3f})"


def _auc(row: pd.Series) -> str:
    return format_ci(row["auc"], row["auc_lo"], row["auc_hi"])


def _set_sentence(row: pd.Series) -> str:
    """One feature set against the best baseline, with its numbers."""
    d = format_difference(row["delta_auc"], row["delta_auc_lo"], row["delta_auc_hi"])
    word = difference_word(row["delta_auc_lo"], row["delta_auc_hi"])
    return (
        f"{row['features']}, AUC {_auc(row)}, {word} it (difference {d}; "
        f"{format_p(row['p_bootstrap'])} by the patient bootstrap, "
        f"{format_p(row['p_corrected_t'])} by the corrected t-test)"
    )


def _target_verdict(rows: pd.DataFrame, target: str, features: Sequence[str]) -> str | None:
    """The sentence for one target of one source's rows, or None without a baseline."""
    rows = rows[rows["target"] == target]
    if not len(rows) or rows["best_baseline"].isna().all():
        return None
    base = rows.iloc[0]["best_baseline"]
    base_row = rows[rows["features"] == base].iloc[0]
    sets = [rows[rows["features"] == fs].iloc[0] for fs in features if fs in set(rows.features)]
    said = "; ".join(_set_sentence(r) for r in sets)
    name = target.replace("disc_", "").capitalize()
    return f"{name}: the best baseline is {base}, AUC {_auc(base_row)}. Against it, {said}."


def baseline_verdict(
    table: pd.DataFrame,
    source: str = "gt",
    targets: Sequence[str] = GRADING_TARGETS,
    features: Sequence[str] = VERDICT_SETS,
) -> str:
    """Plain text, with numbers, on whether ``features`` beat the best baseline, per target.

    ``table`` is :func:`baseline_table`'s. The words follow the 95 % CI of the AUC
    difference (:func:`difference_word`), never the point estimate alone.
    """
    rows = table[table["source"] == source]
    said = [s for t in targets if (s := _target_verdict(rows, t, features))]
    phrase = SOURCE_PHRASES.get(source, f"{source} masks")
    if not said:
        return f"No baseline comparison for the {phrase}."
    return f"From {phrase}. " + " ".join(said)
