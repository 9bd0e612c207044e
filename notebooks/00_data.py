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

from IPython.display import Markdown, display

from disclatent.conventions import FEATURE_LABELS, GEOMETRY_FEATURES
from disclatent.data import phantom, spider
from disclatent.data.cohort import cohort_root
from disclatent.data.survey import acquisition_summary
from disclatent.discs.audit import audit_cohort
from disclatent.paths import BuildPaths, Table
from disclatent.report.geometry_plots import plot_site_examples
from disclatent.report.plots import level_boxplots
from disclatent.report.tables import save_table

# %%
paths = BuildPaths.resolve(build_dir, profile)
build = paths.root
root = cohort_root(profile, data_dir, build_dir, seed)
is_phantom = phantom.has_truth(root)
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
site_col = spider.site_column(discs)
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
# ## Every series checked once
#
# Before any step runs, every series is read once: its mask (a readable file, SPIDER's
# integer labels, at least one disc, disc labels that rise from inferior to superior as
# the headers place them) and its image (readable, on the mask's voxel grid). A series
# with a problem is named here with what the study does with it; the rest of the cohort
# goes on. `disclatent book` prints the same table at the end of its run.

# %%
audit = audit_cohort(root, paths.audit_cache)
save_table(audit.problems, Table.DATA_PROBLEMS, build)
if len(audit.problems):
    display(audit.problems[["series", "problem", "effect", "detail"]])
else:
    display(Markdown(f"No problem found in the {audit.n_series} series."))

# %% [markdown]
# ## Acquisition geometry, read from the headers
#
# The check above read every mask's header: spacing in millimetres along the image axes
# (i, j, k), the orientation code of those axes, and the discs it holds. Sagittal series
# have thick left-right slices and fine in-plane pixels.

# %%
acq = acquisition_summary(audit.reports, overview, site_col)
save_table(acq, "acquisition_geometry", build, index=True)
acq

# %% [markdown]
# ## What the images look like
#
# Mid-sagittal slices of one T1 and one T2 series per site, with the disc outlines of the
# mask coloured by level. Slices are chosen and oriented from the headers (anterior left,
# superior up).

# %%
fig = plot_site_examples(folder, overview, discs["series"], site_col, exclude=audit.unusable)

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
    truth = spider.t1_rows(phantom.read_truth(root))
    labels = {**FEATURE_LABELS, "bulge_mm": "bulge (mm)"}
    level_boxplots(truth, GEOMETRY_FEATURES + ["bulge_mm"], labels)
    truth_by_level = truth.groupby("level", sort=False)[GEOMETRY_FEATURES].mean().round(1)
    save_table(truth_by_level, "phantom_truth_by_level", build, index=True)
    display(truth_by_level)
else:
    print("Real data: no generating truth; the geometry chapter reports measurements only.")
