"""Interactive explorers for Jupyter (ipywidgets), with a static fallback for the book.

* :func:`latent_explorer`: one slider per latent feature; the decoded disc's central
  sagittal, coronal and transverse slices and its measured geometry update live.
* :func:`cohort_browser`: pick a series and a level; the mid-sagittal slice with the mask
  overlay and that disc's features.

Both return the widget. When a notebook is executed (papermill stores the widget state),
the first rendering is kept with it, so the static book shows the controls in their starting
state and that figure (the widget scripts are served from the book itself); moving them needs
a live kernel. :func:`render_decoded` and :func:`render_series` draw the same figures
without widgets.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from disclatent.conventions import FEATURE_LABELS
from disclatent.discs.isolation import central_slices, slice_aspects
from disclatent.formatting import natural_key


def _draw_decoded(
    fig: plt.Figure,
    cube: np.ndarray,
    spacing_mm: Sequence[float],
    features: dict[str, float] | None,
) -> None:
    fig.clear()
    aspect = slice_aspects(spacing_mm)
    axes = fig.subplots(1, 3)
    for ax, (plane, sl) in zip(axes, central_slices(cube).items(), strict=True):
        ax.imshow(
            sl,
            cmap="gray_r",
            origin="lower",
            vmin=0,
            vmax=1,
            aspect=aspect[plane],
            interpolation="nearest",
        )
        ax.set_title(plane, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if features:
        fig.suptitle(geometry_text(features), fontsize=7.5)
    fig.tight_layout()


def geometry_text(features: dict[str, float] | None, sep: str = "   ") -> str:
    """``height (mm): 9.1   AP width (mm): 35.2 ...`` (NaN left out; none: a dash)."""
    if not features:
        return "-"
    text = sep.join(
        f"{FEATURE_LABELS.get(k, k)}: {v:.1f}" for k, v in features.items() if np.isfinite(v)
    )
    return text or "empty disc: nothing to measure"


def render_decoded(
    z: np.ndarray,
    decode: Callable[[np.ndarray], np.ndarray],
    measure: Callable[[np.ndarray], dict] | None,
    spacing_mm: Sequence[float],
) -> plt.Figure:
    """The latent explorer's figure for one code (the static version of the widget)."""
    cube = np.asarray(decode(np.asarray(z, float)[None]))[0]
    fig = plt.figure(figsize=(9, 3.2))
    _draw_decoded(fig, cube, spacing_mm, measure(cube) if measure else None)
    return fig


def latent_explorer(
    z_cohort: np.ndarray,
    decode: Callable[[np.ndarray], np.ndarray],
    measure: Callable[[np.ndarray], dict] | None,
    spacing_mm: Sequence[float],
    judge: Callable[[np.ndarray], str] | None = None,
):
    """Sliders (cohort min to max, starting at the mean) driving the decoder live; the
    decoded disc's geometry and, with ``judge`` (cube -> "plausible" or "implausible:
    <reasons>"), whether it could be a real disc (an implausible one in red)."""
    import ipywidgets as W

    z_cohort = np.asarray(z_cohort, float)
    lo, hi, mean = z_cohort.min(axis=0), z_cohort.max(axis=0), z_cohort.mean(axis=0)
    sliders = {
        f"z{j}": W.FloatSlider(
            value=float(mean[j]),
            min=float(lo[j]),
            max=float(hi[j]),
            step=float(hi[j] - lo[j]) / 50 or 0.01,
            description=f"latent {j}",
            continuous_update=False,
            readout_format=".2f",
        )
        for j in range(z_cohort.shape[1])
    }

    numbers = W.HTML()
    numbers.add_class("explorer-numbers")

    def show(**values: float) -> None:
        code = np.array([values[f"z{j}"] for j in range(len(values))], float)
        cube = np.asarray(decode(code[None]))[0]
        features = measure(cube) if measure else None
        numbers.value = "decoded disc: " + geometry_text(features, " &nbsp; ")
        if judge is not None:
            verdict = html.escape(judge(cube))
            color = "#1a7f37" if verdict == "plausible" else "#c62828"
            numbers.value += f'<br><b class="plausibility" style="color:{color}">{verdict}</b>'

        fig = plt.figure(figsize=(9, 3.2))
        _draw_decoded(fig, cube, spacing_mm, None)
        plt.show()

    out = W.interactive_output(show, sliders)
    controls = W.HBox(list(sliders.values()), layout=W.Layout(flex_flow="row wrap"))
    return W.VBox([controls, numbers, out])


def render_series(
    image, mask, features: pd.DataFrame | None = None, level: str | None = None, title: str = ""
) -> plt.Figure:
    """The cohort browser's figure: mid-sagittal slice with discs, one disc's features."""
    from disclatent.report.plots import show_sagittal

    fig, axes = plt.subplots(1, 2, figsize=(9, 5), gridspec_kw={"width_ratios": [1, 1.2]})
    from disclatent.report.plots import level_colors

    show_sagittal(axes[0], image, mask, title=title)
    axes[1].axis("off")
    if features is not None and level is not None:
        row = features[features["level"] == level]
        if len(row):
            r = row.iloc[0]
            values = [
                (FEATURE_LABELS.get(c, c), r[c])
                for c in features.columns
                if c not in ("series", "patient", "ivd_label", "level")
                and isinstance(r[c], int | float | np.floating)
            ]
            width = max((len(name) for name, _ in values), default=0)
            axes[1].text(
                0,
                1,
                f"disc {level}",
                va="top",
                fontsize=12,
                weight="bold",
                color=level_colors().get(level, "k"),
            )
            axes[1].text(
                0,
                0.93,
                "\n".join(f"{name:<{width}}  {v:9.2f}" for name, v in values),
                va="top",
                family="monospace",
                fontsize=10,
            )
    fig.tight_layout()
    return fig


def cohort_browser(folder, features: pd.DataFrame):
    """Dropdowns for series and level; mid-sagittal overlay and the disc's features."""
    import ipywidgets as W

    from disclatent.data import volume as io

    series = sorted(features["series"].unique(), key=natural_key)
    s_dd = W.Dropdown(options=series, description="series")
    l_dd = W.Dropdown(
        options=features.loc[features["series"] == series[0], "level"].tolist(), description="level"
    )

    def on_series(change) -> None:
        l_dd.options = features.loc[features["series"] == change["new"], "level"].tolist()

    s_dd.observe(on_series, names="value")

    def show(series: str, level: str | None) -> None:
        try:
            image, mask = io.read_pair(folder.image_path(series), folder.mask_path(series))
        except io.DataError as exc:  # a series the data chapter's report names
            print(f"{series} cannot be shown: {exc}")
            return
        render_series(image, mask, features[features["series"] == series], level, series)
        plt.show()

    out = W.interactive_output(show, {"series": s_dd, "level": l_dd})
    return W.VBox([W.HBox([s_dd, l_dd]), out])
