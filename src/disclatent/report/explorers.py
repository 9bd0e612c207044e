"""The prediction explorer (ipywidgets): XGBoost settings in, cross-validated answers out.

Controls: target, feature set (the paper's three and the level-aware baselines), XGBoost's
depth, trees and learning rate, class weighting and the decision threshold. The figure: the
ROC curve of the patient-grouped CV's out-of-fold probabilities (the threshold's point
marked) and the feature importances of the model fitted on all discs; above it, AUC and F1
at the threshold with patient-bootstrap 95 % CIs. Computation:
:class:`disclatent.analysis.explorer.PredictionExplorer` (cached per setting). The latent
explorer and the cohort browser are in :mod:`disclatent.report.widgets`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from disclatent.analysis.estimators import BASELINE_SETS, FEATURE_SETS
from disclatent.analysis.explorer import PAPER_XGB, Evaluation, PredictionExplorer, Setting
from disclatent.conventions import FEATURE_LABELS
from disclatent.formatting import format_ci

TARGET_NAMES = {"disc_narrowing": "disc narrowing", "disc_bulging": "disc bulging"}


def render_evaluation(ev: Evaluation, threshold: float) -> Figure:
    """ROC curve (the threshold's operating point marked) and feature importances."""
    fig, (roc_ax, imp_ax) = plt.subplots(
        1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    fpr, tpr = ev.roc()
    roc_ax.plot(fpr, tpr, color="C0", lw=1.5)
    roc_ax.plot([0, 1], [0, 1], ls=":", color="0.5", lw=1)
    y, p = ev.result.y, ev.probability
    pos = p >= threshold
    op_tpr = float(pos[y == 1].mean()) if (y == 1).any() else np.nan
    op_fpr = float(pos[y == 0].mean()) if (y == 0).any() else np.nan
    roc_ax.plot([op_fpr], [op_tpr], "o", color="C3", label=f"threshold {threshold:.2f}")
    roc_ax.set_xlabel("false-positive rate")
    roc_ax.set_ylabel("true-positive rate")
    roc_ax.set_title(f"ROC, out-of-fold (AUC {ev.auc:.3f})", fontsize=9)
    roc_ax.legend(loc="lower right", fontsize=8)
    roc_ax.set_aspect("equal")
    imp = ev.importances.sort_values()
    names = {**FEATURE_LABELS, "ivd_label": "level"}
    labels = [names.get(c, c.replace("latent_", "latent ")) for c in imp.index]
    imp_ax.barh(labels, imp.to_numpy(), color="C0")
    imp_ax.set_xlabel("importance (gain share), fitted on all discs")
    imp_ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def summary_text(ev: Evaluation, threshold: float, seconds: float, cached: bool) -> str:
    """The numbers above the figure, as one line of HTML."""
    f1, lo, hi = ev.f1(threshold)
    n, patients = len(ev.result.y), len(set(ev.result.groups))
    return (
        f"<b>AUC {format_ci(ev.auc, ev.auc_lo, ev.auc_hi, digits=3)}</b> &nbsp; "
        f"<b>F1 at {threshold:.2f}: {format_ci(f1, lo, hi, digits=3)}</b> &nbsp; "
        f"({n} discs, {patients} patients, positive rate {ev.result.y.mean():.2f}; "
        f"{'cached' if cached else f'cross-validated in {seconds:.1f} s'})"
    )


def prediction_explorer(explorer: PredictionExplorer, targets: Sequence[str] = tuple(TARGET_NAMES)):
    """The widget: controls, a line of numbers and the figure, updated on every change."""
    import ipywidgets as W
    from IPython.display import display

    style = {"description_width": "110px"}
    controls = {
        "target": W.Dropdown(
            options=[(TARGET_NAMES.get(t, t), t) for t in targets if t in explorer.table],
            description="target",
            style=style,
        ),
        "features": W.Dropdown(
            options=[*FEATURE_SETS, *BASELINE_SETS],
            value="geometric + latent",
            description="features",
            style=style,
        ),
        "max_depth": W.IntSlider(
            value=int(PAPER_XGB["max_depth"]), min=1, max=8, description="tree depth",
            continuous_update=False, style=style,
        ),
        "n_estimators": W.IntSlider(
            value=int(PAPER_XGB["n_estimators"]), min=10, max=500, step=10,
            description="trees", continuous_update=False, style=style,
        ),
        "learning_rate": W.FloatLogSlider(
            value=float(PAPER_XGB["learning_rate"]), base=10, min=-2.5, max=-0.3, step=0.1,
            description="learning rate", continuous_update=False, readout_format=".3f",
            style=style,
        ),
        "class_weighted": W.Checkbox(value=False, description="class weighting", style=style),
        "threshold": W.FloatSlider(
            value=0.5, min=0.05, max=0.95, step=0.05, description="threshold",
            continuous_update=False, style=style,
        ),
    }  # fmt: skip
    numbers = W.HTML(layout=W.Layout(min_height="2.5em"))
    numbers.add_class("explorer-numbers")

    def show(threshold: float, **choice) -> None:
        setting = Setting(**choice)
        cached = explorer.cached(setting)
        start = time.perf_counter()
        ev = explorer.evaluate(setting)
        numbers.value = summary_text(ev, threshold, time.perf_counter() - start, cached)
        fig = render_evaluation(ev, threshold)
        display(fig)
        plt.close(fig)

    out = W.interactive_output(show, controls)
    left = W.VBox([controls[k] for k in ("target", "features", "class_weighted", "threshold")])
    right = W.VBox([controls[k] for k in ("max_depth", "n_estimators", "learning_rate")])
    return W.VBox([W.HBox([left, right]), numbers, out])
