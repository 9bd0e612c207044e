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

from IPython.display import Markdown, display

from disclatent import published
from disclatent.conventions import FEATURE_LABELS, GEOMETRY_FEATURES, PAPER_SPACING
from disclatent.data import phantom, spider
from disclatent.data.cohort import cohort_root
from disclatent.data.volume import read_mask

# %%
from disclatent.discs import features as feat
from disclatent.discs import isolation as iso
from disclatent.discs import store as st
from disclatent.discs import validation as val
from disclatent.discs.audit import load_problems, usable_masks
from disclatent.paths import BuildPaths, Table
from disclatent.profiles import get_profile
from disclatent.report.geometry_plots import plot_agreement, plot_disc_geometry
from disclatent.report.plots import level_boxplots
from disclatent.report.tables import save_table

# %%
notebook_start = time.perf_counter()
cfg = get_profile(profile)
paths = BuildPaths.resolve(build_dir, profile)
build = paths.root
root = cohort_root(profile, data_dir, build_dir)
is_phantom = phantom.has_truth(root)
t1_masks = usable_masks(root, load_problems(paths))  # less those the data chapter left out
display(
    Markdown(f"Cohort: `{root}` ({'phantom' if is_phantom else 'real data'}, profile `{profile}`).")
)

# %% [markdown]
# ## Every disc, measured in its mask's own space
#
# All series are measured (T1 and T2 of a patient are two independent acquisitions of the
# same spine, so they give two measurements of each disc). Problems with a mask (a disc
# touching the edge of the field of view, a disc of a few voxels, an oblique header) are
# reported below, never silently dropped; a series that cannot be read or numbered (named
# in the data chapter's report) is left out with a note, and the others are measured.

# %%
start = time.perf_counter()
features, notes = feat.measure_cohort(root, cache_dir=paths.geometry_cache)
measure_seconds = time.perf_counter() - start
for note in notes:
    print(note)
save_table(features, Table.GEOMETRY, build)
site_col = spider.site_column(features)

# %%
display(
    Markdown(
        f"{len(features)} discs of {features['series'].nunique()} series measured in "
        f"{measure_seconds:.1f} s, reading the files included "
        f"({len(features) / measure_seconds:.0f} discs per second); {len(notes)} warning(s)."
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
    truth = phantom.read_truth(root)
    compared = val.compare_with_truth(features, truth)
    errors = val.error_table(compared)
    save_table(errors.round(4), Table.GEOMETRY_ERRORS, build, index=True)
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
    fig = plot_agreement(compared, site_col)

# %% [markdown]
# The lateral width is the least precise feature: the sagittal series are cut in 3-4.4 mm
# thick left-right slices, so each lateral edge is only known to within half a slice. Its
# error grows with the slice thickness of the site; the in-plane features (height, AP width,
# sagittal angle) hardly depend on it.

# %%
if compared is not None:
    by_site = val.errors_by_site(compared, site_col)
    save_table(by_site.round(3), "geometry_errors_by_site", build, index=True)
    display(by_site.round(2))

# %% [markdown]
# ### Angles: 3-D PCA or the paper's single middle slices?
#
# The paper takes each angle from a 2-D PCA of the disc pixels in one middle slice. Done
# literally on the acquisition's middle sagittal, coronal and transverse slices
# (`disclatent.discs.geometry.slice_pca_angles`), the sagittal and coronal angles come out close to the
# truth, but less precise than from all voxels; the transverse angle fails: the transverse
# slice through a tilted disc is a strip whose long axis is where the disc's mid-plane cuts
# that slice, not the disc's lateral axis.

# %%
if compared is not None:
    slice_angles = val.slice_pca_table(t1_masks)
    methods = val.angle_methods(compared, slice_angles)
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
# same field of view with fewer, larger voxels. A disc that does not fit is left out and
# listed below; none is silently cut.

# %%
store_file = paths.disc_store("gt")
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", iso.DiscWarning)  # reported above, or listed below
    st.build_disc_store(
        t1_masks, store_file, spacing_mm=cfg.disc_spacing_mm, size=cfg.disc_cube_size,
        progress=True, skip_errors=True,
    )  # fmt: skip
store_seconds = time.perf_counter() - start
store = st.load_disc_store(store_file)
for row in store.skipped.itertuples():
    print(f"left out: {row.series} disc {row.ivd_label}: {row.reason}")

# %%
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
t1 = spider.t1_rows(features)
spaces = {"original mask": t1.reset_index(drop=True)}
spaces[f"cube {store.size}³ (profile)"] = feat.GeometryFeatures(space="cube").fit_transform(store)
if (store.size, tuple(store.spacing_mm)) != (published.CUBE_SIZE, PAPER_SPACING):
    spaces[f"cube {published.CUBE_SIZE}³ (paper grid)"] = val.measure_on_grid(store.table)
if is_phantom:
    space_errors = val.errors_by_space(spaces, truth)
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
check = val.regionprops_check(t1_masks, store)
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
disc0 = iso.isolate_level(read_mask(store.table["mask_path"].iloc[0]), "L4/L5")
grid0 = " x ".join(f"{s:g}" for s in disc0.spacing_mm)
title = f"series {disc0.series}, disc {disc0.level} ({disc0.size}³ cube at {grid0} mm)"
fig = plot_disc_geometry(disc0.cube, disc0.spacing_mm, title=title)
val.disc_summary(features, disc0, truth if is_phantom else None).round(2)

# %% [markdown]
# ## Joining the radiological gradings
#
# Gradings are joined on (patient, IVD label), never on position. Discs present in a mask
# but not graded, and graded discs missing from the masks, are listed (SPIDER's gradings
# also hold two rows with IVD label 0, dropped with a warning when read).

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gradings = spider.read_gradings(spider.SpiderFolder(root).gradings_csv)
    mismatches = feat.grading_mismatches(t1, gradings)
    joined = feat.join_gradings(t1, gradings)
for w in caught:
    print("note:", w.message)
save_table(mismatches, "geometry_grading_mismatches", build)
display(Markdown(f"{len(joined)} T1 discs have gradings; {len(mismatches)} mismatch(es)."))
mismatches.head(10)

# %% [markdown]
# ## Browse the cohort
#
# Pick a series and a level: the mid-sagittal slice with every disc outlined, and that disc's
# measured features. On this static page no kernel is running: below is the first series
# and level.
#
# **`make explore` to use it live** (the explorers of your last `make book`, in the browser).

# %%
from disclatent.report.widgets import cohort_browser  # noqa: E402

cohort_browser(spider.SpiderFolder(root), features[["series", "level", *GEOMETRY_FEATURES]])

# %%
display(Markdown(f"This chapter ran in {time.perf_counter() - notebook_start:.0f} s."))
