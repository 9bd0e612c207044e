"""The study's headline numbers, read back from the CSV tables each chapter writes.

The results chapter glues these numbers into its prose (myst-nb ``glue``, as
:class:`GlueText` from :func:`headline_texts`), so no number in the text is typed by hand;
the paper's come from :mod:`disclatent.published` (:data:`PAPER`). A table that a chapter
has not written (e.g. no predicted masks) gives ``None`` for its numbers, shown as "n/a",
never a made-up value. (``book/method.md`` describes each step.)
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent import published
from disclatent.analysis.baselines import baseline_verdict
from disclatent.analysis.interpretation import max_off_diagonal
from disclatent.analysis.robustness import claims_verdict
from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data.spider import GRADING_TARGETS
from disclatent.formatting import format_number
from disclatent.paths import Table, table_slug
from disclatent.report.composition import composition_numbers


def _reported(row: pd.Series | None, column: str) -> float:
    if row is None or pd.isna(row[column]):
        raise KeyError(f"the paper reports no {column} here")
    return float(row[column])


def _number(value: object) -> float:
    if not isinstance(value, int | float):
        raise TypeError(f"expected a published number, got {value!r}")
    return float(value)


def _paper_auc(target: str, features: str) -> float:
    return _reported(published.prediction("gt", target, features), "auc")


#: the published figures the results page quotes, keyed like :func:`headline_numbers`
PAPER: dict[str, float | int | str] = {
    "seg_dsc": _number(published.SEGMENTATION["DSC"]),
    "seg_iou": _number(published.SEGMENTATION["IoU"]),
    "ae_k4_iou": _reported(published.sweep_row(published.CHOSEN_LATENT_DIM), "iou"),
    "ae_k4_epochs": int(_reported(published.sweep_row(published.CHOSEN_LATENT_DIM), "epochs")),
    "pred_gt_narrowing_latent_auc": _paper_auc("disc_narrowing", "latent"),
    "pred_gt_narrowing_geometric_auc": _paper_auc("disc_narrowing", "geometric"),
    "pred_gt_narrowing_combined_auc": _paper_auc("disc_narrowing", "geometric + latent"),
    "interp_max_abs_r": published.INTERPRETATION_MAX_ABS_R,
    "latent_latent_max_r": published.LATENT_LATENT_MAX_R,
    "hours": published.PIPELINE_HOURS,
    "gpu": published.PIPELINE_GPU,
}


class GlueText:
    """Text glued for ``{glue:text}`` in prose (myst-nb).

    Its repr is a quoted Python string: myst-nb reads glued text with ``literal_eval``, which
    would turn an unquoted "1.50" into the number 1.5; a quoted one comes back exactly as
    written.
    """

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


#: decimals of each quoted number that does not have the default two
TEXT_DIGITS = {
    "stab_seeds": 0,
    "plaus_plain_heldout_iou": 3,
    "plaus_noise_heldout_iou": 3,
    "ae_k4_iou": 4,
    "ae_k4_heldout_iou": 4,
    "ae_k4_pca_heldout_iou": 4,
    "ae_k4_epochs": 0,
    "seg_minutes": 1,
    "seg_inference_s": 1,
}


def text_digits(key: str) -> int:
    """Decimals shown for the headline number ``key`` (geometry errors: 3)."""
    return 3 if key.startswith("geo_err") else TEXT_DIGITS.get(key, 2)


def headline_texts(
    numbers: Mapping[str, float | str | None], paper: Mapping[str, float | int | str] = PAPER
) -> dict[str, GlueText]:
    """Every headline number as glue text (:func:`text_digits` decimals, "n/a" when
    missing), and the paper's figures as ``paper_<key>``."""
    texts = {key: GlueText(format_number(v, text_digits(key))) for key, v in numbers.items()}
    for key, value in paper.items():
        texts[f"paper_{key}"] = GlueText(format_number(value, text_digits(key)))
    return texts


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    path = tables / f"{table_slug(name)}.csv"  # as BuildPaths.table names it
    return pd.read_csv(path) if path.exists() else None


def _f(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


_SEGMENTATION_KEYS = [
    "seg_model",
    "seg_dsc",
    "seg_dsc_lo",
    "seg_dsc_hi",
    "seg_iou",
    "seg_minutes",
    "seg_inference_s",
]
_AUTOENCODER_KEYS = [
    "ae_k4_iou",
    "ae_k4_heldout_iou",
    "ae_k4_pca_heldout_iou",
    "ae_k4_converged",
    "ae_k4_epochs",
]
_FEATURE_SETS = {"latent": "latent", "geometric": "geometric", "geometric + latent": "combined"}
_PROTOCOLS = {"paper": "paper", "grouped": "grouped", "grouped, AE in fold": "infold"}
_BASELINE_KEYS = [
    "pred_gt_narrowing_baseline",
    "pred_gt_narrowing_baseline_auc",
    "pred_gt_baseline_verdict",
]

Numbers = dict[str, float | str | None]


def _segmentation(t: Path) -> Numbers:
    """The best of our segmentation models (by test Dice) of Supplementary Table 1."""
    seg = _read(t, Table.SEGMENTATION)
    if seg is None:
        return dict.fromkeys(_SEGMENTATION_KEYS)
    ours = seg[~seg["model"].astype(str).str.contains(r"paper|abstract")]
    if not len(ours):
        return dict.fromkeys(_SEGMENTATION_KEYS)
    best = ours.loc[ours["DSC"].astype(float).idxmax()]
    return {
        "seg_model": str(best["model"]),
        "seg_dsc": _f(best["DSC"]),
        "seg_dsc_lo": _f(best["DSC low"]),
        "seg_dsc_hi": _f(best["DSC high"]),
        "seg_iou": _f(best["IoU"]),
        "seg_minutes": _f(best.get("training (min)")),
        "seg_inference_s": _f(best.get("inference (s/series)")),
    }


def _autoencoder(t: Path) -> Numbers:
    """The k = 4 row of the bottleneck sweep (epochs: to converge, else run)."""
    sweep = _read(t, Table.AUTOENCODER_SWEEP)
    row = sweep[sweep["latent_dim"] == published.CHOSEN_LATENT_DIM] if sweep is not None else None
    if row is None or not len(row):
        return dict.fromkeys(_AUTOENCODER_KEYS)
    r = row.iloc[0]
    converged = bool(r["converged"])
    return {
        "ae_k4_iou": _f(r["train_iou"]),
        "ae_k4_heldout_iou": _f(r["heldout_iou"]),
        "ae_k4_pca_heldout_iou": _f(r.get("pca_heldout_iou")),
        "ae_k4_converged": "yes" if converged else "no",
        "ae_k4_epochs": _f(r["epochs_to_converge"] if converged else r["epochs_run"]),
    }


def _first(df: pd.DataFrame | None, column: str, **where: str) -> float | None:
    """``column`` of the first row of ``df`` matching every ``where`` (None if none)."""
    if df is None:
        return None
    hit = df
    for key, value in where.items():
        hit = hit[hit[key] == value]
    return _f(hit[column].iloc[0]) if len(hit) else None


def _geometry(t: Path) -> Numbers:
    geo = _read(t, Table.GEOMETRY_ERRORS)
    return {f"geo_err_{f}": _first(geo, "median_abs_error", feature=f) for f in GEOMETRY_FEATURES}


def _prediction(t: Path) -> Numbers:
    """Grouped-fold AUC and F1 from ground-truth masks, and the latent AUC for narrowing
    under each protocol."""
    pred, leak = _read(t, Table.PREDICTION), _read(t, Table.LEAKAGE)
    out: Numbers = {}
    for target in GRADING_TARGETS:
        for fs, short in _FEATURE_SETS.items():
            for metric in ("auc", "f1"):
                out[f"pred_gt_{target.split('_')[1]}_{short}_{metric}"] = _first(
                    pred, metric, source="gt", target=target, features=fs, protocol="grouped"
                )
    for protocol, short in _PROTOCOLS.items():
        out[f"leak_latent_auc_{short}"] = _first(
            leak, "auc", target="disc_narrowing", features="latent", protocol=protocol
        )
    return out


def _baselines(t: Path) -> Numbers:
    """The best baseline for narrowing (ground-truth masks), its AUC, and the verdict on the
    latent features against the best baseline of each target, in words with numbers."""
    table = _read(t, Table.PREDICTION_BASELINES)
    out: Numbers = dict.fromkeys(_BASELINE_KEYS)
    if table is None or not len(gt := table[table["source"] == "gt"]):
        return out
    best = gt[(gt["target"] == "disc_narrowing") & (gt["features"] == gt["best_baseline"])]
    if len(best):
        out["pred_gt_narrowing_baseline"] = str(best.iloc[0]["features"])
        out["pred_gt_narrowing_baseline_auc"] = _f(best.iloc[0]["auc"])
    out["pred_gt_baseline_verdict"] = baseline_verdict(table, "gt")
    return out


def _interpretation(t: Path) -> Numbers:
    """The strongest latent-geometry |r| (and its pair), the largest latent-latent |r|."""
    out: Numbers = dict.fromkeys(["interp_max_abs_r", "interp_max_pair", "latent_latent_max_r"])
    corr = _read(t, Table.LATENT_GEOMETRY)
    if corr is not None:
        flat = _correlation_r(corr).abs().stack()
        lat, feat = flat.idxmax()
        out.update(interp_max_abs_r=_f(flat.max()), interp_max_pair=f"{lat} and {feat}")
    ll = _read(t, Table.LATENT_LATENT)
    if ll is not None:
        out["latent_latent_max_r"] = _f(max_off_diagonal(_correlation_r(ll)))
    return out


_STABILITY_KEYS = [
    "stab_seeds",
    "stab_cka_median",
    "stab_cka_min",
    "stab_r2_median",
    "stab_r2_min",
    "stab_cca1_min",
    "stab_cca1_max",
    "stab_claims",
    "stab_verdict",
]


def _claims_text(claims: pd.DataFrame) -> str:
    """ "latent 2 ~ ap_width_mm (paper r = -0.80): 1 of 5 seeds; ..." """
    parts = [
        f"{claim}: {int(g['holds'].sum())} of {len(g)} seeds"
        for claim, g in claims.groupby("claim", sort=False)
    ]
    return "; ".join(parts)


def _stability(t: Path) -> Numbers:
    """How similar the retrained latent spaces are (CKA, Procrustes R^2 over pairs of seeds),
    the range of the first canonical correlation with geometry over seeds, and in how many
    seeds each of the paper's single-axis statements holds."""
    out: Numbers = dict.fromkeys(_STABILITY_KEYS)
    pairs = _read(t, Table.LATENT_STABILITY)
    if pairs is not None and len(pairs):
        out["stab_seeds"] = float(len(set(pairs.seed_a) | set(pairs.seed_b)))
        out.update(stab_cka_median=_f(pairs.cka.median()), stab_cka_min=_f(pairs.cka.min()))
        r2 = pairs.procrustes_r2
        out.update(stab_r2_median=_f(r2.median()), stab_r2_min=_f(r2.min()))
    cca = _read(t, Table.LATENT_GEOMETRY_CCA)
    if cca is not None and len(first := cca[cca.component == 1]):
        out.update(
            stab_cca1_min=_f(first.canonical_r.min()), stab_cca1_max=_f(first.canonical_r.max())
        )
    claims = _read(t, Table.LATENT_CLAIMS)
    if claims is not None and len(claims):
        out["stab_claims"] = _claims_text(claims)
        if cca is not None and len(cca):
            out["stab_verdict"] = claims_verdict(claims, cca)
    return out


_PLAUSIBILITY_KEYS = [
    f"plaus_{kind}_{what}"
    for kind in ("plain", "noise")
    for what in ("sweep", "cohort", "heldout_iou")
]


def _plausibility(t: Path) -> Numbers:
    """The plausible share of the latent-noise decoders and of the plain decoders of the same
    seeds (paired), over the sweep grid and the cohort's latent distribution, and their
    held-out IoU (means over those seeds)."""
    out: Numbers = dict.fromkeys(_PLAUSIBILITY_KEYS)
    table = _read(t, Table.LATENT_PLAUSIBILITY)
    if table is None or not len(noisy := table[table["kind"] == "latent noise"]):
        return out
    paired = table[(table["kind"] == "plain") & table["seed"].isin(set(noisy["seed"]))]
    for part, short in ((paired, "plain"), (noisy, "noise")):
        for sample, what in (("sweep grid", "sweep"), ("cohort distribution", "cohort")):
            rows = part[part["sample"] == sample]
            out[f"plaus_{short}_{what}"] = _f(rows.plausible_share.mean()) if len(rows) else None
        iou = part.drop_duplicates("model").heldout_iou
        out[f"plaus_{short}_heldout_iou"] = _f(iou.mean()) if len(iou) else None
    return out


def headline_numbers(tables_dir: str | os.PathLike) -> Numbers:
    """Every number the results chapter quotes; ``None`` where its table is missing."""
    t = Path(tables_dir)
    out: Numbers = {}
    parts = (_segmentation, _autoencoder, _geometry, _prediction, _baselines, _interpretation)
    for part in (*parts, _stability, _plausibility, composition_numbers):
        out.update(part(t))
    return out


def _correlation_r(df: pd.DataFrame) -> pd.DataFrame:
    """The r matrix of a long correlation table (``x, y, r, p, q``; see
    :func:`disclatent.stats.correlation_table`)."""
    return df.pivot(index="x", columns="y", values="r")


def _named(numbers: Mapping, key: str, name_key: str) -> str:
    """``numbers[key]`` formatted, followed by ``numbers[name_key]`` in brackets if any."""
    value, name = format_number(numbers.get(key)), numbers.get(name_key)
    return f"{value} ({name})" if name and numbers.get(key) is not None else value


def _joined(numbers: Mapping, keys: tuple[str, ...], pattern: str) -> str:
    """Several numbers in one cell (``pattern`` with one ``{}`` each); "n/a" when all are
    missing."""
    values = [numbers.get(k) for k in keys]
    if all(v is None for v in values):
        return format_number(None)
    return pattern.format(*(format_number(v) for v in values))


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
            "4 prediction",
            "narrowing AUC, best baseline without latent features (GT masks)",
            "not reported",
            _named(numbers, "pred_gt_narrowing_baseline_auc", "pred_gt_narrowing_baseline"),
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
        (
            "6 stability",
            "CKA of retrained latent spaces, median (min)",
            "not tested",
            _joined(numbers, ("stab_cka_median", "stab_cka_min"), "{} ({})"),
        ),
        (
            "6 stability",
            "plausible decodes, cohort distribution: plain / latent noise",
            "not measured",
            _joined(numbers, ("plaus_plain_cohort", "plaus_noise_cohort"), "{} / {}"),
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
