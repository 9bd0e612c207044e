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
# # The data: a SPIDER-format cohort
#
# Every later chapter reads one folder in the layout of the public SPIDER dataset
# {cite}`vandergraaf2024spider`. By default that folder is the **phantom cohort**, written
# here; point `data_dir` at a real SPIDER copy to run the study on it instead.

# %% tags=["parameters"]
profile = "default"  # quick | default | paper
data_dir = ""  # a SPIDER folder; empty: generate the phantom cohort
build_dir = "_build"  # where every output goes (relative to the project root)
seed = 0  # phantom seed

# %%
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import spider
from disclatent.data import volume as io
from disclatent.data.cohort import cohort_root
from disclatent.data.survey import inspect_path
from disclatent.paths import resolve_build_dir
from disclatent.report.plots import level_boxplots, show_sagittal
from disclatent.report.tables import save_table

build = resolve_build_dir(build_dir)
root = cohort_root(profile, data_dir, build_dir, seed)
is_phantom = (root / "phantom_truth.csv").exists()
folder = spider.SpiderFolder(root)
folder.check()
display(
    Markdown(
        f"Cohort folder: `{root}` ({'phantom' if is_phantom else 'real data'}, "
        f"profile `{profile}`)."
    )
)

# %% [markdown]
# ## The cohort
#
# One row per disc of every T1 series, with the radiological gradings joined on
# (patient, IVD label). Rows of the gradings file with IVD label 0 name no disc and are
# dropped with a warning (SPIDER has two).

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    discs = spider.disc_table(root, modalities=("t1",))
for w in caught:
    print("note:", w.message)
overview = spider.read_overview(folder.overview_csv)
site_col = "institution" if "institution" in discs else "Manufacturer"
summary = spider.cohort_summary(discs, by=site_col)
save_table(summary, "cohort_by_site", build, index=True)
summary

# %% [markdown]
# Grading prevalence rises towards the lower lumbar levels, as in SPIDER
# (narrowing 58 % at L5/S1 to 13 % at T12/L1; bulging 69 % to 17 %).

# %%
by_level = spider.prevalence_by_level(discs)
save_table(by_level, "prevalence_by_level", build, index=True)
by_level

# %% [markdown]
# ## Acquisition geometry, read from the headers
#
# `inspect` reads every mask's header: spacing in millimetres along the image axes (i, j, k),
# the orientation code of those axes, and the discs it holds. Sagittal series have thick
# left-right slices and fine in-plane pixels.

# %%
reports = inspect_path(folder.masks_dir)
geometry = pd.DataFrame(
    [
        {
            "series": r["series"],
            "orientation": r["orientation"],
            "spacing i (mm)": r["spacing_mm"][0],
            "spacing j (mm)": r["spacing_mm"][1],
            "spacing k (mm)": r["spacing_mm"][2],
            "discs": r["n_discs"],
        }
        for r in reports
    ]
)
geometry = geometry.merge(overview[["series", "modality", site_col]], on="series", how="left")
acq = (
    geometry.groupby([site_col, "modality"])
    .agg(
        series=("series", "count"),
        orientation=("orientation", "first"),
        slice_mm=("spacing i (mm)", "mean"),
        ap_pixel_mm=("spacing j (mm)", "mean"),
        si_pixel_mm=("spacing k (mm)", "mean"),
        discs_min=("discs", "min"),
        discs_max=("discs", "max"),
    )
    .round(3)
)
save_table(acq, "acquisition_geometry", build, index=True)
acq

# %% [markdown]
# ## What the images look like
#
# Mid-sagittal slices of one T1 and one T2 series per site, with the disc outlines of the
# mask coloured by level. Slices are chosen and oriented from the headers (anterior left,
# superior up).

# %%
sites = overview[overview["series"].isin(discs["series"])].groupby(site_col)["patient"].first()
sites = sites.iloc[:4]
fig, axes = plt.subplots(2, len(sites), figsize=(3.1 * len(sites), 9.5), squeeze=False)
for col, (site, patient) in enumerate(sites.items()):
    for row, modality in enumerate(("t1", "t2")):
        series = f"{patient}_{modality}"
        ax = axes[row, col]
        if series not in set(overview["series"]):
            ax.axis("off")
            continue
        image, mask = io.read_pair(folder.image_path(series), folder.mask_path(series))
        show_sagittal(ax, image, mask, title=f"{series} (site {site})")
        ax.label_outer()
fig.tight_layout()

# %% [markdown]
# ## The true geometry of the phantom discs
#
# For the phantom, `phantom_truth.csv` holds each disc's generating geometry: mean height
# along the disc's own axis, antero-posterior width on the middle sagittal slice, lateral
# width, the three inclination angles and the volume. These are the values the geometry
# chapter's measurements are checked against. Heights and tilt follow real lumbar discs:
# the tallest discs at L4/L5, a sagittal tilt that changes by about 40 degrees from L1/L2 to
# L5/S1 (lordosis).

# %%
if is_phantom:
    truth = pd.read_csv(root / "phantom_truth.csv", dtype={"patient": str})
    truth = truth[truth["series"].str.endswith("_t1")]
    names = {
        "height_mm": "height (mm)",
        "ap_width_mm": "AP width (mm)",
        "lateral_width_mm": "lateral width (mm)",
        "sagittal_angle_deg": "sagittal angle (deg)",
        "coronal_angle_deg": "coronal angle (deg)",
        "transverse_angle_deg": "transverse angle (deg)",
        "volume_mm3": "volume (mm³)",
        "bulge_mm": "bulge (mm)",
    }
    level_boxplots(truth, GEOMETRY_FEATURES + ["bulge_mm"], names)
    truth_by_level = truth.groupby("level", sort=False)[GEOMETRY_FEATURES].mean().round(1)
    save_table(truth_by_level, "phantom_truth_by_level", build, index=True)
    display(truth_by_level)
else:
    print("Real data: no generating truth; the geometry chapter reports measurements only.")
