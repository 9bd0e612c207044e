"""Predicting disc pathology with XGBoost under honest cross-validation: the experiments.

(``book/method.md``, *Prediction*.) The model and its pipeline are in
:mod:`disclatent.analysis.estimators`, the cross-validation and its metrics in
:mod:`disclatent.analysis.validation` (both re-exported here). This module builds the
chapter's tables from them:

* :func:`disc_features`: one row per disc with its geometry (read from the geometry chapter's
  table for ground-truth discs, measured here for predicted masks), latent code and gradings;
* :func:`run_experiment`: one (target, feature set, protocol) cross-validated, as a table row;
* :func:`prediction_grid` (Tables 1 and 2: the paper's three feature sets and the trivial
  baselines; :mod:`disclatent.analysis.baselines` compares them), :func:`paired_comparisons`
  and :func:`class_weight_table` (Supplementary Table 2); the same experiment under the
  paper's protocol and with an autoencoder trained in each fold is in
  :mod:`disclatent.analysis.leakage`;
* :func:`side_by_side`: our numbers beside the paper's (:data:`disclatent.published.PREDICTION`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from disclatent import published
from disclatent.analysis.estimators import (
    ALL_FEATURE_SETS,
    BASELINE_SETS,
    FEATURE_SETS,
    AppendLatent,
    ColumnSelector,
    DiscXGBClassifier,
    LatentCache,
    feature_columns,
    feature_role,
    make_pipeline,
)
from disclatent.analysis.validation import (
    CVResult,
    auc_score,
    compare,
    cross_validate,
    f1_positive,
    fold_splits,
)
from disclatent.conventions import GEOMETRY_FEATURES, ID_COLUMNS, latent_columns
from disclatent.data.spider import GRADING_TARGETS
from disclatent.formatting import format_ci, format_number

__all__ = [
    "ALL_FEATURE_SETS",
    "BASELINE_SETS",
    "FEATURE_SETS",
    "AppendLatent",
    "CVResult",
    "ColumnSelector",
    "DiscXGBClassifier",
    "LatentCache",
    "PROTOCOLS",
    "auc_score",
    "class_weight_table",
    "class_weighted_rows",
    "cohort_counts",
    "compare",
    "cross_validate",
    "cv_problem",
    "disc_features",
    "f1_positive",
    "feasible_tables",
    "feature_columns",
    "feature_role",
    "fold_splits",
    "literature_table",
    "make_pipeline",
    "paired_comparisons",
    "paper_set_rows",
    "prediction_grid",
    "run_experiment",
    "side_by_side",
    "small_cohort_notes",
    "store_geometry",
]

PROTOCOLS = {
    "paper": "folds not grouped by patient; autoencoder fitted once, outside the folds",
    "grouped": "patient-grouped stratified folds; autoencoder fitted once, outside the folds",
    "grouped, AE in fold": "patient-grouped stratified folds; autoencoder fitted on the "
    "training folds only",
}
SOURCE_NAMES = {"gt": "ground truth", "pred": "predicted"}
NO_PAPER_VALUE = "\u2014"  # an em dash: the paper has no baselines
COHORT_NAMES = {"gt": "ground-truth masks (all sites)", "pred": "predicted masks (test site)"}


# --- the feature table ---------------------------------------------------------------------
def store_geometry(store, geometry: pd.DataFrame) -> pd.DataFrame:
    """The identity columns of ``store``'s discs (its row order) with their features taken
    from ``geometry`` (a table of :data:`~disclatent.conventions.GEOMETRY_FEATURES`, e.g. the
    geometry chapter's), joined on (series, IVD label); a disc missing there is an error."""
    keys = ["series", "ivd_label"]
    discs = store.table.reset_index(drop=True)
    left = discs[keys].astype({"series": str, "ivd_label": int})
    right = geometry[[*keys, *GEOMETRY_FEATURES]].astype({"series": str, "ivd_label": int})
    joined = left.merge(right, on=keys, how="left", validate="one_to_one", indicator=True)
    absent = joined[joined["_merge"] == "left_only"]
    if len(absent):
        shown = ", ".join(f"{s} disc {k}" for s, k in absent[keys].head(5).itertuples(index=False))
        raise ValueError(
            f"{len(absent)} disc(s) of the store are not in the geometry table: {shown}"
        )
    ids = [c for c in ID_COLUMNS if c in discs]
    return pd.concat([discs[ids], joined[GEOMETRY_FEATURES].astype(float)], axis=1)


def disc_features(
    store, gradings, latent: np.ndarray | None = None, geometry: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per disc of a :class:`~disclatent.discs.store.DiscStore` with its gradings.

    Geometric features come from ``geometry`` (:func:`store_geometry`) when given, else they
    are measured on each disc in its original mask (millimetres, no resampling:
    :class:`~disclatent.discs.features.GeometryFeatures` with ``space="mask"``). ``latent``
    (n x k, same row order as the store) adds ``latent_0..``; ``cube_index`` points back into
    ``store.cubes``. Gradings are joined on (patient, IVD label); mismatches are reported by
    :func:`disclatent.discs.features.join_gradings`.
    """
    from disclatent.discs.features import GeometryFeatures, join_gradings

    if geometry is not None:
        table = store_geometry(store, geometry)
    else:
        table = GeometryFeatures(space="mask").transform(store)
    table["cube_index"] = np.arange(len(table))
    for col in ("source", "mask_path"):
        if col in store.table:
            table[col] = store.table[col].to_numpy()
    if latent is not None:
        latent = np.asarray(latent, float)
        if len(latent) != len(table):
            raise ValueError(f"{len(latent)} latent vectors for {len(table)} discs")
        for i, col in enumerate(latent_columns(latent.shape[1])):
            table[col] = latent[:, i]
    return join_gradings(table, gradings, how="inner").reset_index(drop=True)


def cv_problem(table: pd.DataFrame, target: str, n_splits: int = 5) -> str | None:
    """Why patient-grouped stratified ``n_splits``-fold CV cannot run on ``table``, or None."""
    if len(table) == 0:
        return "no discs"
    patients = table["patient"].nunique()
    if patients < n_splits:
        return f"{patients} patient(s), fewer than {n_splits} folds"
    counts = table[target].value_counts()
    if len(counts) < 2 or counts.min() < n_splits:
        return f"too few discs of one class ({counts.to_dict()}) for {n_splits} folds"
    return None


def feasible_tables(
    tables: Mapping[str, pd.DataFrame], targets: Sequence[str] = GRADING_TARGETS
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The feature tables (by mask source) every target can be cross-validated on, and a
    note for each one left out; ground-truth features that cannot be are an error."""
    kept, notes = {}, []
    for source, table in tables.items():
        problems = {t: p for t in targets if (p := cv_problem(table, t))}
        if not problems:
            kept[source] = table
            continue
        note = f"Features from {source} masks are left out of the tables: " + "; ".join(
            f"{t}: {p}" for t, p in problems.items()
        )
        if source == "gt":
            raise RuntimeError(f"the ground-truth cohort is too small for 5-fold CV. {note}")
        notes.append(note)
    return kept, notes


def cohort_counts(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Discs, patients and the share (%) of each grading per feature table."""
    counts = pd.DataFrame(
        [
            {
                "discs": len(t),
                "patients": t["patient"].nunique(),
                "narrowing (%)": round(100 * t["disc_narrowing"].mean(), 1),
                "bulging (%)": round(100 * t["disc_bulging"].mean(), 1),
            }
            for t in tables.values()
        ],
        index=list(tables),
    )
    counts.index = counts.index.map(COHORT_NAMES)
    return counts


def small_cohort_notes(tables: Mapping[str, pd.DataFrame], min_patients: int = 20) -> list[str]:
    """A caution for each feature table with fewer than ``min_patients`` patients, whose
    patient-bootstrap intervals and p-values are optimistic."""
    return [
        f"Only {n} patients behind the `{source}` rows: a bootstrap over so few "
        "spines resamples the same handful again and again and understates the "
        "uncertainty, so its intervals and p-values there are optimistic; the corrected "
        "t-test is the more cautious reading."
        for source, t in tables.items()
        if (n := t["patient"].nunique()) < min_patients
    ]


# --- one experiment ------------------------------------------------------------------------
def run_experiment(
    table: pd.DataFrame,
    target: str,
    feature_set: str,
    latent_dim: int,
    protocol: str = "grouped",
    class_weighted: bool = False,
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    cubes: np.ndarray | None = None,
    latent_factory: Callable[[int], object] | None = None,
    latent_cache: LatentCache | None = None,
    max_folds: int | None = None,
) -> tuple[CVResult, dict]:
    """Cross-validate one (target, feature set, protocol); returns the result and a table row.

    For ``"grouped, AE in fold"`` the latent columns of ``table`` are ignored: an extractor
    from ``latent_factory(fold_seed)`` is fitted on each training fold's ``cubes`` (once per
    fold across calls that share ``latent_cache``). ``max_folds``: only the first folds of
    each 5-fold split are run (:func:`~disclatent.analysis.validation.cross_validate`); the
    row's ``discs`` counts the discs tested.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    columns = feature_columns(feature_set, latent_dim)
    y = table[target].to_numpy(int)
    groups = table["patient"].astype(str).to_numpy()
    in_fold = protocol == "grouped, AE in fold" and feature_set != "geometric"
    if in_fold:
        if cubes is None or latent_factory is None:
            raise ValueError("the AE-in-fold protocol needs cubes and a latent_factory")
        factory = latent_factory
        X = table.drop(columns=[c for c in table if c.startswith("latent_")])  # noqa: N806

        def estimator(fold_seed: int) -> Pipeline:
            step = AppendLatent(cubes, factory(fold_seed), cache=latent_cache)
            return make_pipeline(columns, class_weighted, fold_seed, steps=[("latent", step)])
    else:
        X = table  # noqa: N806

        def estimator(fold_seed: int) -> Pipeline:
            return make_pipeline(columns, class_weighted, fold_seed)

    result = cross_validate(
        estimator,
        X,
        y,
        groups,
        n_repeats=n_repeats,
        seed=seed,
        grouped=protocol != "paper",
        max_folds=max_folds,
    )
    row = {
        "target": target,
        "features": feature_set,
        "protocol": protocol,
        "class_weighted": class_weighted,
        "discs": len(result.y),
        "patients": len(set(result.groups)),
        "positive_rate": float(result.y.mean()),
        "repeats": n_repeats,
        **result.summary(n_boot=n_boot, seed=seed),
    }
    return result, row


# --- the chapter's tables ------------------------------------------------------------------
def prediction_grid(
    tables: Mapping[str, pd.DataFrame],
    latent_dim: int,
    targets: Sequence[str] = GRADING_TARGETS,
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    feature_sets: Sequence[str] = ALL_FEATURE_SETS,
) -> tuple[pd.DataFrame, dict[tuple[str, str, str], CVResult]]:
    """Tables 1 and 2: every (mask source, target, feature set) with grouped folds; one row
    each (with ``source`` and ``role``, :func:`feature_role`) and the results, keyed
    ``(source, target, feature set)``. By default the paper's three sets, then the
    baselines (:data:`ALL_FEATURE_SETS`)."""
    rows, results = [], {}
    for source, table in tables.items():
        for target in targets:
            for fs in feature_sets:
                res, row = run_experiment(
                    table, target, fs, latent_dim, "grouped", False, n_repeats, n_boot, seed
                )
                results[(source, target, fs)] = res
                rows.append({"source": source, "role": feature_role(fs), **row})
    return pd.DataFrame(rows), results


def paper_set_rows(main: pd.DataFrame, source: str = "gt") -> pd.DataFrame:
    """The rows of :func:`prediction_grid`'s table for ``source`` and the paper's three
    feature sets (no baselines): what Supplementary Table 2 and the protocols compare."""
    return main[(main["source"] == source) & main["features"].isin(list(FEATURE_SETS))]


def paired_comparisons(
    results: Mapping[tuple[str, str, str], CVResult],
    metric: str = "auc",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """*geometric* against *geometric + latent* (:func:`compare`) for every (source, target)
    of :func:`prediction_grid`'s results, one row each (``masks``, ``target``, ...)."""
    rows = []
    for source, target in dict.fromkeys((s, t) for s, t, _ in results):
        c = compare(
            results[(source, target, "geometric")],
            results[(source, target, "geometric + latent")],
            metric,
            n_boot=n_boot,
            seed=seed,
        )
        rows.append({"masks": source, "target": target, **c})
    return pd.DataFrame(rows)


def class_weight_table(unweighted: pd.DataFrame, weighted: pd.DataFrame) -> pd.DataFrame:
    """Supplementary Table 2: F1 and AUC (3 decimals) per (target, feature set), without and
    with class weights; rows as :func:`run_experiment` makes them."""
    both = pd.concat([unweighted, weighted])
    table = both.pivot_table(
        index=["target", "features"], columns="class_weighted", values=["f1", "auc"]
    ).round(3)
    table.columns = [f"{m} ({'weighted' if w else 'unweighted'})" for m, w in table.columns]
    return table


def class_weighted_rows(
    table: pd.DataFrame,
    latent_dim: int,
    targets: Sequence[str] = GRADING_TARGETS,
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every (target, feature set) of ``table`` with grouped folds and class weights."""
    rows = []
    for target in targets:
        for fs in FEATURE_SETS:
            _, row = run_experiment(
                table, target, fs, latent_dim, "grouped", True, n_repeats, n_boot, seed
            )
            rows.append({"source": "gt", **row})
    return pd.DataFrame(rows)


# --- beside the paper ----------------------------------------------------------------------
def _ci(m, lo, hi) -> str:
    return format_ci(m, lo, hi, digits=2, missing="-")


def side_by_side(ours: pd.DataFrame, paper: pd.DataFrame = published.PREDICTION) -> pd.DataFrame:
    """Our F1/AUC with CIs beside the paper's, one row per (source, target, feature set);
    ``role`` says whether the set is one of the paper's or a baseline (no paper value: an
    em dash)."""
    rows = []
    for _, r in ours.iterrows():
        p = paper[
            (paper.source == r["source"])
            & (paper.target == r["target"])
            & (paper.features == r["features"])
        ]
        hit = p.iloc[0] if len(p) else None
        baseline = r["features"] in BASELINE_SETS
        none = NO_PAPER_VALUE if baseline else "-"
        rows.append(
            {
                "masks": SOURCE_NAMES[r["source"]],
                "target": r["target"].replace("_", " "),
                "features": r["features"],
                "role": "baseline" if baseline else "paper set",
                "F1 (ours)": _ci(r["f1"], r["f1_lo"], r["f1_hi"]),
                "AUC (ours)": _ci(r["auc"], r["auc_lo"], r["auc_hi"]),
                "F1 (paper)": none if hit is None else _ci(hit["f1"], hit["f1_lo"], hit["f1_hi"]),
                "AUC (paper)": none
                if hit is None
                else _ci(hit["auc"], hit["auc_lo"], hit["auc_hi"]),
            }
        )
    return pd.DataFrame(rows)


def literature_table(literature: pd.DataFrame = published.LITERATURE) -> pd.DataFrame:
    """The literature rows the paper quotes, F1 and AUC as text ("-" where not reported)."""

    def fmt(v) -> str:
        return "-" if pd.isna(v) else format_number(float(v))

    return literature.assign(f1=literature.f1.map(fmt), auc=literature.auc.map(fmt))
