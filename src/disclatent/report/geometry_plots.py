"""Figures of the data and geometry chapters (``00_data``, ``02_geometry``).

* :func:`plot_site_examples`: mid-sagittal slices of one T1 and one T2 series per site.
* :func:`plot_agreement`: each feature against its truth and as a Bland-Altman plot.
* :func:`plot_disc_geometry`: one disc's slices with its measurements (the paper's Fig. 3).

The numbers drawn come from :mod:`disclatent.discs.validation` and
:mod:`disclatent.discs.geometry`; these functions only draw them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from disclatent.conventions import FEATURE_LABELS, GEOMETRY_FEATURES, PAPER_SPACING
from disclatent.data import volume
from disclatent.data.spider import SpiderFolder
from disclatent.discs.geometry import DEFAULT_STEP_MM, measure_cube_geometry
from disclatent.discs.validation import bland_altman
from disclatent.report.plots import show_sagittal


def plot_site_examples(
    folder: SpiderFolder,
    overview: pd.DataFrame,
    series: Sequence[str],
    site_col: str,
    max_sites: int = 4,
    modalities: Sequence[str] = ("t1", "t2"),
    exclude: Collection[str] = (),
):
    """Mid-sagittal slices of the first patient of each site (up to ``max_sites``) among
    ``series``, one row per modality, with the disc outlines of the mask; returns the figure.
    Series in ``exclude`` (unreadable, off their image's grid) are not shown."""
    available = set(overview["series"]) - set(exclude)
    shown = overview[overview["series"].isin(set(series) & available)]
    sites = shown.groupby(site_col)["patient"].first().iloc[:max_sites]
    fig, axes = plt.subplots(
        len(modalities),
        len(sites),
        figsize=(3.1 * len(sites), 4.75 * len(modalities)),
        squeeze=False,
    )
    for col, (site, patient) in enumerate(sites.items()):
        for row, modality in enumerate(modalities):
            name, ax = f"{patient}_{modality}", axes[row, col]
            if name not in available:
                ax.axis("off")
                continue
            image, mask = volume.read_pair(folder.image_path(name), folder.mask_path(name))
            show_sagittal(ax, image, mask, title=f"{name} (site {site})")
            ax.label_outer()
    fig.tight_layout()
    return fig


def _identity_panel(ax, compared: pd.DataFrame, f: str, groups, colours) -> None:
    name = FEATURE_LABELS[f]
    for s, sel in groups:
        ax.plot(sel[f"{f}_true"], sel[f], ".", ms=4, color=colours[s], label=f"site {s}")
    lo, hi = compared[[f, f"{f}_true"]].min().min(), compared[[f, f"{f}_true"]].max().max()
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.set_xlabel(f"true {name}", fontsize=8)
    ax.set_ylabel(f"measured {name}", fontsize=8)


def _bland_altman_panel(ax, f: str, stats: pd.Series, groups, colours) -> None:
    for s, sel in groups:
        mean = (sel[f] + sel[f"{f}_true"]) / 2
        ax.plot(mean, sel[f"{f}_error"], ".", ms=4, color=colours[s])
    for y, style in ((stats["bias"], "-"), (stats["lower"], "--"), (stats["upper"], "--")):
        ax.axhline(y, color="k", ls=style, lw=0.8)
    ax.set_xlabel(f"mean of measured and true {FEATURE_LABELS[f]}", fontsize=8)
    ax.set_ylabel("measured - true" + (" (%)" if f == "volume_mm3" else ""), fontsize=8)
    ax.set_title(f"bias {stats['bias']:+.3g}, limits ±{stats['half_width']:.2g}", fontsize=8)


def plot_agreement(
    compared: pd.DataFrame,
    site_col: str | None = None,
    features: Sequence[str] = GEOMETRY_FEATURES,
):
    """Each feature against its truth (the line is identity) and as a Bland-Altman plot
    (difference against mean, with the bias and its 95 % limits of agreement from
    :func:`~disclatent.discs.validation.bland_altman`; volume in percent), coloured by site.

    ``compared``: :func:`~disclatent.discs.validation.compare_with_truth`. Returns the figure.
    """
    if site_col in compared:
        groups = list(compared.groupby(site_col))
    else:
        groups = [("all", compared)]
    colours = {s: f"C{i}" for i, (s, _) in enumerate(groups)}
    stats = bland_altman(compared, features)
    n_rows = (2 * len(features) + 3) // 4
    fig, axes = plt.subplots(n_rows, 4, figsize=(14, 13 * n_rows / 4), squeeze=False)
    pairs = list(zip(axes.flat[0::2], axes.flat[1::2], strict=True))
    for (ax_s, ax_b), f in zip(pairs, features, strict=False):
        _identity_panel(ax_s, compared, f, groups, colours)
        _bland_altman_panel(ax_b, f, stats.loc[f], groups, colours)
    axes.flat[0].legend(fontsize=7)
    for ax in axes.flat[2 * len(features) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_disc_geometry(
    cube: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING,
    title: str = "",
    step_mm: float = DEFAULT_STEP_MM,
):
    """Middle sagittal, coronal and transverse slices of one cube, with the measurements.

    Drawn at physical aspect ratio, as radiologists read them (sagittal: anterior left;
    coronal: patient's right on the left; transverse: anterior up): the AP and lateral widths
    (edge to edge through the centroid), the height (mean thickness, drawn along the normal
    through the centroid) and the three principal axes (half the equivalent-ellipsoid
    lengths). Returns the figure.
    """
    geo = measure_cube_geometry(cube, spacing_mm, step_mm)
    cube = np.asarray(cube) != 0
    sp_xyz = np.asarray(spacing_mm, float)[::-1]  # world axis w (x=LR, y=AP, z=SI) spacing
    c = geo.centroid_mm  # mm from the centre of voxel cube[0, 0, 0], LPS axes
    ci, cj, ck = np.clip(np.rint(c / sp_xyz).astype(int), 0, np.array(cube.shape[::-1]) - 1)
    u, v, n = geo.frame.T
    f = geo.features
    height_seg = np.array([c - 0.5 * f["height_mm"] * n, c + 0.5 * f["height_mm"] * n])
    lat = (geo.lateral_segment_mm, f"lateral width {f['lateral_width_mm']:.1f} mm", "C3")
    ap = (geo.ap_segment_mm, f"AP width {f['ap_width_mm']:.1f} mm", "C4")
    hgt = (height_seg, f"height {f['height_mm']:.1f} mm", "C5")
    # (image rows x cols, horizontal world axis, vertical world axis, segments, angle, labels)
    views = [
        (
            cube[:, :, ci],
            1,
            2,
            [ap, hgt],
            "sagittal",
            "anterior → posterior (mm)",
            "inferior → superior (mm)",
        ),
        (
            cube[:, cj, :],
            0,
            2,
            [lat, hgt],
            "coronal",
            "right → left (mm)",
            "inferior → superior (mm)",
        ),
        (
            cube[ck, :, :],
            0,
            1,
            [lat],
            "transverse",
            "right → left (mm)",
            "posterior → anterior (mm)",
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    half = 0.5 * geo.axis_lengths_mm[0] + 6
    for ax, (img, hx, vy, segments, plane, xlabel, ylabel) in zip(axes[:3], views, strict=True):
        sh, sv = sp_xyz[hx], sp_xyz[vy]
        ax.imshow(
            img,
            cmap="Greys",
            vmin=0,
            vmax=2.5,
            origin="lower",
            interpolation="nearest",
            extent=(-0.5 * sh, (img.shape[1] - 0.5) * sh, -0.5 * sv, (img.shape[0] - 0.5) * sv),
        )
        for points, label, colour in segments:
            ax.plot(points[:, hx], points[:, vy], "-", color=colour, lw=2.2, label=label)
        for vec, length, colour, name in (
            (u, geo.axis_lengths_mm[0], "C0", "lateral axis u"),
            (v, geo.axis_lengths_mm[1], "C1", "AP axis v"),
            (n, geo.axis_lengths_mm[2], "C2", "normal n"),
        ):
            tip = c + 0.5 * length * vec
            ax.annotate(
                "",
                xy=(tip[hx], tip[vy]),
                xytext=(c[hx], c[vy]),
                arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.4},
            )
            ax.plot([], [], color=colour, label=name)
        ax.plot(c[hx], c[vy], "k+", ms=8)
        ax.set_xlim(c[hx] - half, c[hx] + half)
        ax.set_ylim(c[vy] - half, c[vy] + half)
        if plane == "transverse":
            ax.invert_yaxis()  # anterior up
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(
            f"middle {plane} slice: {plane} angle {f[f'{plane}_angle_deg']:.1f}°", fontsize=9
        )
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    # the disc in its own frame: the mid-plane section (its footprint), u across, v up
    ax = axes[3]
    a, b = geo.extra["section_u_mm"], geo.extra["section_v_mm"]
    ax.imshow(
        geo.extra["section"].T,
        cmap="Greys",
        vmin=0,
        vmax=2.5,
        origin="lower",
        interpolation="nearest",
        extent=(a[0] - step_mm / 2, a[-1] + step_mm / 2, b[0] - step_mm / 2, b[-1] + step_mm / 2),
    )
    for points, label, colour in (lat, ap):
        local = (points - c) @ geo.frame
        ax.plot(local[:, 0], local[:, 1], "-", color=colour, lw=2.2, label=label)
    ax.plot(0, 0, "k+", ms=8)
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.invert_yaxis()  # anterior up, as the transverse slice
    ax.set_aspect("equal")
    ax.set_xlabel("lateral axis u: right → left (mm)")
    ax.set_ylabel("AP axis v: posterior → anterior (mm)")
    ax.set_title(
        f"mid-plane section (disc frame): {geo.section_area_mm2:.0f} mm²;\n"
        f"height = volume / area = {f['height_mm']:.2f} mm",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
