# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python (disclatent)
#     language: python
#     name: disclatent
# ---

# %% [markdown]
# # Disc geometry in millimetres and degrees
#
# The paper describes every disc by a few geometric features {cite}`disclatent_paper2025`:
# its height, its antero-posterior (AP) and lateral widths, and three inclination angles.
# This chapter measures them on every disc of the cohort, checks each one against the
# phantom's known truth, and isolates every disc into the cube that the autoencoder chapter
# learns from.
#
# **Definitions** (module `disclatent.discs.geometry`; the same as the phantom's truth):
#
# * A PCA of the disc's voxels, in millimetres, gives its frame: the smallest-variance axis is
#   the disc **normal** (towards superior), the in-plane axis closer to left-right is the
#   **lateral axis** (towards the left), the third the **AP axis** (towards posterior).
# * **Sagittal angle**: the disc's mid-plane seen in the sagittal plane, against the anterior
#   horizontal, positive when the anterior edge is superior (L5/S1 is negative in lordosis).
#   **Coronal angle**: the mid-plane in the coronal plane, against left-right, positive when
#   the left edge is superior. **Transverse angle**: the lateral axis in the transverse plane,
#   against left-right, positive when the left edge is posterior. The paper reads the last
#   two against the image's vertical axis, i.e. 90° minus these deviations.
# * **Height**: mean thickness along the normal over the disc's footprint (volume divided by
#   the area of the mid-plane section). **AP width** and **lateral width**: edge to edge
#   through the centroid, along the AP and lateral axes of the aligned disc (its middle
#   sagittal and transverse slices). **Volume**: voxels times voxel volume.
#
# **Where this differs from the paper's description and from a public implementation, on
# purpose:** anatomical axes come from each file's direction cosines, never from array
# position (the public code measured left-right depth as "height"); every feature is in mm or
# degrees, not voxels of an anisotropic grid; measurements are made in the mask's own physical
# space, before any resampling; label maps are resampled with nearest neighbour only (linear
# interpolation and clipping dilated the discs); a disc is named by its label value
# (`200 + k`, `k = 1` for L5/S1), not by the order of connected components; and the angles
# come from a 3-D PCA of all disc voxels rather than a 2-D PCA of single middle slices (the
# comparison of the two is below).

# %% tags=["parameters"]
profile = "default"  # quick | default | paper
data_dir = ""  # a SPIDER folder; empty: the phantom cohort
build_dir = "_build"  # where every output goes (relative to the project root)

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from skimage.measure import regionprops

from disclatent.conventions import FEATURE_LABELS, GEOMETRY_FEATURES
from disclatent.data import spider
from disclatent.data import volume as io
from disclatent.data.cohort import cohort_root
from disclatent.discs import geometry as geo
from disclatent.discs import isolation as iso
from disclatent.paths import BuildPaths, resolve_build_dir
from disclatent.profiles import get_profile
from disclatent.report.plots import level_boxplots
from disclatent.report.tables import save_table

notebook_start = time.perf_counter()
cfg = get_profile(profile)
build = resolve_build_dir(build_dir)
root = cohort_root(profile, data_dir, build_dir)
is_phantom = (root / "phantom_truth.csv").exists()
overview = spider.read_overview(root / "overview.csv")
site_col = "institution" if "institution" in overview else "Manufacturer"
display(
    Markdown(f"Cohort: `{root}` ({'phantom' if is_phantom else 'real data'}, profile `{profile}`).")
)

# %% [markdown]
# ## Every disc, measured in its mask's own space
#
# All series are measured (T1 and T2 of a patient are two independent acquisitions of the
# same spine, so they give two measurements of each disc). Problems with a mask (a disc
# touching the edge of the field of view, a disc of a few voxels, an oblique header) are
# reported below, never silently dropped.

# %%
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", iso.DiscWarning)
    features = geo.measure_masks(root, modalities=None, progress=False)
measure_seconds = time.perf_counter() - start
for w in caught:
    print(f"note ({type(w.message).__name__}): {w.message}")
features = features.merge(
    overview[["series", "modality", site_col, "SliceThickness"]], on="series", how="left"
)
save_table(features, "geometry_features", build)
display(
    Markdown(
        f"{len(features)} discs of {features['series'].nunique()} series measured in "
        f"{measure_seconds:.1f} s, reading the files included "
        f"({len(features) / measure_seconds:.0f} discs per second); {len(caught)} warning(s)."
    )
)
features.head(8).round(2)

# %% [markdown]
# ## Measured against the truth
#
# For the phantom, every feature is compared with its generating value
# (`phantom_truth.csv`). The table gives the bias (mean signed error), the median, 90th
# percentile and maximum absolute error, and the bound set for this study on the median
# (volume in percent of the true volume). The chapter stops with an error if a bound is
# not met.

# %%
if is_phantom:
    truth = pd.read_csv(root / "phantom_truth.csv", dtype={"patient": str, "series": str})
    compared = geo.compare_with_truth(features, truth)
    errors = geo.error_table(compared)
    save_table(errors.round(4), "geometry_errors_vs_truth", build, index=True)
    failed = errors.index[~errors["within_bound"]].tolist()
    assert not failed, f"median absolute error above its bound for {failed}"
    display(errors.round(3))
else:
    compared = None
    print("Real data: there is no generating truth; the measurements are reported as they are.")

# %% [markdown]
# Each feature measured against its truth (left of each pair; the line is identity) and as a
# Bland-Altman plot (difference against mean, with the bias and its 95 % limits of
# agreement; volume in percent), coloured by imaging site.

# %%
if compared is not None:
    sites = sorted(compared[site_col].dropna().unique()) if site_col in compared else ["all"]
    colours = {s: f"C{i}" for i, s in enumerate(sites)}
    fig, axes = plt.subplots(4, 4, figsize=(14, 13))
    pairs = list(zip(axes.flat[0::2], axes.flat[1::2], strict=True))
    for (ax_s, ax_b), f in zip(pairs, GEOMETRY_FEATURES, strict=False):
        name = FEATURE_LABELS[f]
        for s in sites:
            sel = compared[compared[site_col] == s] if site_col in compared else compared
            ax_s.plot(sel[f"{f}_true"], sel[f], ".", ms=4, color=colours[s], label=f"site {s}")
            mean = (sel[f] + sel[f"{f}_true"]) / 2
            ax_b.plot(mean, sel[f"{f}_error"], ".", ms=4, color=colours[s])
        lo, hi = compared[[f, f"{f}_true"]].min().min(), compared[[f, f"{f}_true"]].max().max()
        ax_s.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax_s.set_xlabel(f"true {name}", fontsize=8)
        ax_s.set_ylabel(f"measured {name}", fontsize=8)
        diff = compared[f"{f}_error"]  # volume: percent of the true volume
        bias, sd = diff.mean(), diff.std()
        for y, style in ((bias, "-"), (bias - 1.96 * sd, "--"), (bias + 1.96 * sd, "--")):
            ax_b.axhline(y, color="k", ls=style, lw=0.8)
        ax_b.set_xlabel(f"mean of measured and true {name}", fontsize=8)
        ax_b.set_ylabel("measured - true" + (" (%)" if f == "volume_mm3" else ""), fontsize=8)
        ax_b.set_title(f"bias {bias:+.3g}, limits ±{1.96 * sd:.2g}", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    for ax in axes.flat[2 * len(GEOMETRY_FEATURES) :]:
        ax.axis("off")
    fig.tight_layout()

# %% [markdown]
# The lateral width is the least precise feature: the sagittal series are cut in 3-4.4 mm
# thick left-right slices, so each lateral edge is only known to within half a slice. Its
# error grows with the slice thickness of the site; the in-plane features (height, AP width,
# sagittal angle) hardly depend on it.

# %%
if compared is not None:
    by_site = compared.groupby(site_col).agg(
        discs=("series", "size"),
        slice_mm=("SliceThickness", "mean"),
        **{f"{f} |err|": (f"{f}_error", lambda e: e.abs().median()) for f in GEOMETRY_FEATURES},
    )
    by_site = by_site.sort_values("slice_mm")
    save_table(by_site.round(3), "geometry_errors_by_site", build, index=True)
    display(by_site.round(2))

# %% [markdown]
# ### Angles: 3-D PCA or the paper's single middle slices?
#
# The paper takes each angle from a 2-D PCA of the disc pixels in one middle slice. Done
# literally on the acquisition's middle sagittal, coronal and transverse slices
# (`geometry.slice_pca_angles`), the sagittal and coronal angles come out close to the
# truth, but less precise than from all voxels; the transverse angle fails: the transverse
# slice through a tilted disc is a strip whose long axis is where the disc's mid-plane cuts
# that slice, not the disc's lateral axis.

# %%
if compared is not None:
    rows = []
    for path in iso.mask_files(root, None):
        mask = io.read_mask(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", iso.DiscWarning)
            discs = iso.find_discs(mask)
        if not mask.is_axis_aligned():
            continue
        rows += [
            {
                "series": io.series_name(path),
                "ivd_label": d.ivd_label,
                **geo.slice_pca_angles(mask, d),
            }
            for d in discs
        ]
    slice_angles = pd.DataFrame(rows).merge(
        compared, on=["series", "ivd_label"], suffixes=("", "_3d")
    )
    angle_cols = ["sagittal_angle_deg", "coronal_angle_deg", "transverse_angle_deg"]
    methods = pd.DataFrame(
        {
            "3-D PCA, median |error|": [compared[f"{a}_error"].abs().median() for a in angle_cols],
            "3-D PCA, max |error|": [compared[f"{a}_error"].abs().max() for a in angle_cols],
            "middle-slice 2-D PCA, median |error|": [
                (slice_angles[a] - slice_angles[f"{a}_true"]).abs().median() for a in angle_cols
            ],
            "middle-slice 2-D PCA, max |error|": [
                (slice_angles[a] - slice_angles[f"{a}_true"]).abs().max() for a in angle_cols
            ],
        },
        index=angle_cols,
    )
    save_table(methods.round(3), "geometry_angle_methods", build, index=True)
    display(methods.round(2))

# %% [markdown]
# ## Isolated discs for the autoencoder
#
# Every T1 disc (the paper's sagittal T1 series) is cut out of its spine: only that disc's
# label is kept, it is resampled with nearest neighbour onto a grid aligned with the patient,
# centred on its centre of mass and zero-padded to a cube. The cube's numpy axes are
# (superior-inferior, antero-posterior, left-right), index growing towards superior,
# posterior and left, whatever the file's header. The paper's 1.4 x 1.2 x 1.5 mm is read in
# SPIDER's image-axis order (x = left-right, y = antero-posterior, z = superior-inferior):
# LR 1.4, AP 1.2, SI 1.5 mm, a 64³ cube of 90 x 77 x 96 mm. The smaller profiles keep the
# same field of view with fewer, larger voxels. A disc that does not fit would stop this
# step with an error naming it; none is silently cut.

# %%
store_file = BuildPaths(build, profile).disc_store("gt")
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", iso.DiscWarning)  # already reported above
    iso.build_disc_store(
        root,
        store_file,
        source="gt",
        spacing_mm=cfg.disc_spacing_mm,
        size=cfg.disc_cube_size,
        progress=False,
        modalities=("t1",),
    )
store_seconds = time.perf_counter() - start
store = iso.load_disc_store(store_file)
display(
    Markdown(
        f"{len(store)} T1 discs isolated into {store.size}³ cubes at "
        f"{' x '.join(f'{s:g}' for s in store.spacing_mm)} mm (SI x AP x LR) in "
        f"{store_seconds:.1f} s; stored in `{store_file.name}` "
        f"({store_file.stat().st_size / 1024:.0f} KiB, bit-packed), read by the later chapters."
    )
)
store.table.drop(columns=["mask_path"]).head(6).round(2)

# %% [markdown]
# ### What resampling costs
#
# The decoded masks of the autoencoder live on the cube grid, so their geometry can only be
# measured there. The same discs measured on the cubes (the profile's grid, and the paper's
# 64³ grid) are compared with the truth below: nearest-neighbour resampling of 3-4 mm
# slices onto 1.4 mm voxels repeats each slice two or three times, which costs a few percent
# of volume and some lateral precision. This is why the features used for prediction are
# measured on the original masks.

# %%
t1 = features[features["series"].str.endswith("_t1")] if is_phantom else features
spaces = {"original mask": t1.reset_index(drop=True)}
spaces[f"cube {store.size}³ (profile)"] = geo.GeometryFeatures(space="cube").fit_transform(store)
if (store.size, tuple(store.spacing_mm)) != (iso.PAPER_CUBE_SIZE, iso.PAPER_SPACING_MM):
    rows = []
    for path, group in store.table.groupby("mask_path", sort=False):
        for disc in iso.isolate_discs(io.read_mask(path)):
            rows.append(
                {
                    "series": group["series"].iloc[0],
                    "ivd_label": disc.ivd_label,
                    **geo.measure_cube(disc.cube, disc.spacing_mm),
                }
            )
    spaces["cube 64³ (paper grid)"] = pd.DataFrame(rows)
if is_phantom:
    space_errors = pd.DataFrame(
        {
            name: geo.error_table(
                geo.compare_with_truth(df, truth[truth["series"].isin(set(df["series"]))])
            )["median_abs_error"]
            for name, df in spaces.items()
        }
    )
    space_errors["bound"] = pd.Series(geo.VALIDATION_BOUNDS)
    save_table(space_errors.round(4), "geometry_errors_by_space", build, index=True)
    display(Markdown("Median absolute error against truth (T1 discs; volume in %):"))
    display(space_errors.round(3))

# %% [markdown]
# ### An independent check: scikit-image
#
# Volume and the principal axis lengths (full lengths of the ellipsoid with the same second
# moments) are recomputed with scikit-image's `regionprops`, which knows nothing of this
# package, on the original masks (with their anisotropic spacing) and on the cubes.

# %%
checks = []
for path in iso.mask_files(root, ("t1",)):
    mask = io.read_mask(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iso.DiscWarning)
        discs = iso.find_discs(mask)
    for disc in discs:
        ours = geo.measure_disc(mask, disc)
        arr = np.zeros(mask.array.shape, np.uint8)
        arr[disc.ijk[:, 2], disc.ijk[:, 1], disc.ijk[:, 0]] = 1
        props = regionprops(arr, spacing=mask.spacing[::-1])[0]
        ev = np.sort(props.inertia_tensor_eigvals)[::-1]
        lengths = np.sqrt(
            10 * np.array([ev[0] + ev[1] - ev[2], ev[0] - ev[1] + ev[2], -ev[0] + ev[1] + ev[2]])
        )
        checks.append(
            {
                "where": "original mask",
                "volume": ours.features["volume_mm3"] / props.area - 1,
                **{f"axis {k + 1}": ours.axis_lengths_mm[k] / lengths[k] - 1 for k in range(3)},
            }
        )
for cube in store.cubes:
    ours = geo.measure_cube_geometry(cube, store.spacing_mm)
    props = regionprops(cube, spacing=store.spacing_mm)[0]
    ev = np.sort(props.inertia_tensor_eigvals)[::-1]
    lengths = np.sqrt(
        10 * np.array([ev[0] + ev[1] - ev[2], ev[0] - ev[1] + ev[2], -ev[0] + ev[1] + ev[2]])
    )
    checks.append(
        {
            "where": "cube",
            "volume": ours.features["volume_mm3"] / props.area - 1,
            **{f"axis {k + 1}": ours.axis_lengths_mm[k] / lengths[k] - 1 for k in range(3)},
        }
    )
check = pd.DataFrame(checks).groupby("where").agg(lambda x: np.abs(x).max())
check.columns = [f"max |relative difference|, {c}" for c in check.columns]
save_table(check, "geometry_regionprops_check", build, index=True)
assert (check.to_numpy() < 1e-6).all(), "disagreement with scikit-image"
check.map(lambda x: f"{x:.1e}")

# %% [markdown]
# ## Geometry per spinal level
#
# T1 discs only (one measurement per disc). In real lumbar spines the sagittal angle changes
# by about 40 degrees from L1/L2 to L5/S1 (lordosis), and L3/L4 and L4/L5 are the largest
# discs; the phantom is built to follow both.

# %%
level_boxplots(t1, GEOMETRY_FEATURES, FEATURE_LABELS)
per_level = t1.groupby(["ivd_label", "level"])[GEOMETRY_FEATURES].agg(["mean", "std"])
per_level = per_level.reset_index(level=0, drop=True)
save_table(per_level.round(2), "geometry_by_level", build, index=True)
per_level.xs("mean", axis=1, level=1).round(1)

# %% [markdown]
# ## One disc, measured (in the spirit of the paper's Fig. 3)
#
# The L4/L5 disc of the first T1 series, isolated on the paper's 64³ grid: its middle
# sagittal, coronal and transverse slices with the principal axes from the PCA, the AP and
# lateral widths (edge to edge through the centroid) and the height (mean thickness, drawn
# along the normal), and, right, the disc in its own frame: the mid-plane section whose area
# divides the volume to give the mean height.

# %%
series0 = store.table["series"].iloc[0]
mask0 = io.read_mask(store.table["mask_path"].iloc[0])
discs0 = {d.level: d for d in iso.isolate_discs(mask0)}
disc0 = discs0.get("L4/L5", next(iter(discs0.values())))
fig = geo.plot_disc_geometry(
    disc0.cube,
    disc0.spacing_mm,
    title=f"series {series0}, disc {disc0.level} (64³ cube at "
    f"{' x '.join(f'{s:g}' for s in disc0.spacing_mm)} mm)",
)
shown = pd.DataFrame(
    {
        "original mask": features.set_index(["series", "ivd_label"]).loc[
            (series0, disc0.ivd_label), GEOMETRY_FEATURES
        ],
        "64³ cube (drawn)": pd.Series(geo.measure_cube(disc0.cube, disc0.spacing_mm)),
    }
)
if is_phantom:
    shown["truth"] = truth.set_index(["series", "ivd_label"]).loc[
        (series0, disc0.ivd_label), GEOMETRY_FEATURES
    ]
shown.astype(float).round(2)

# %% [markdown]
# ## Joining the radiological gradings
#
# Gradings are joined on (patient, IVD label), never on position. Discs present in a mask
# but not graded, and graded discs missing from the masks, are listed (SPIDER's gradings
# also hold two rows with IVD label 0, dropped with a warning when read).

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gradings = spider.read_gradings(root / "radiological_gradings.csv")
    mismatches = geo.grading_mismatches(t1, gradings)
    joined = geo.join_gradings(t1, gradings)
for w in caught:
    print("note:", w.message)
save_table(mismatches, "geometry_grading_mismatches", build)
display(Markdown(f"{len(joined)} T1 discs have gradings; {len(mismatches)} mismatch(es)."))
mismatches.head(10)

# %% [markdown]
# ## Browse the cohort
#
# Pick a series and a level: the mid-sagittal slice with every disc outlined, and that disc's
# measured features. The dropdowns run live in Jupyter: open this chapter with
# `jupyter lab notebooks/02_geometry.py` (jupytext opens the `.py` source as a notebook),
# pick the `Python (disclatent)` kernel and run all cells. On this static page no kernel is
# running: the figure shows the first series and level, rendered when the book was built.

# %%
from disclatent.report.widgets import cohort_browser  # noqa: E402

cohort_browser(spider.SpiderFolder(root), features[["series", "level", *GEOMETRY_FEATURES]])

# %%
display(Markdown(f"This chapter ran in {time.perf_counter() - notebook_start:.0f} s."))
