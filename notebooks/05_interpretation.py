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
# # What the latent features mean
#
# Four numbers reconstruct a disc mask; which aspects of its shape do they hold? Following
# the paper {cite}`disclatent_paper2025` (Fig. 5), each latent feature is swept through the
# decoder while the other three stay at their **mean** over the cohort, the decoded masks
# are measured with the geometry chapter's code, and the latent features are correlated
# with the measured geometry (Pearson r, Benjamini-Hochberg FDR across each table). On the
# phantom we can ask one more question: do the latent features line up with the factors that
# *generated* the discs?

# %% tags=["parameters"]
profile = "default"  # quick | default | paper
data_dir = ""  # a SPIDER folder; empty: the phantom cohort
build_dir = "_build"  # where every output goes (relative to the project root)

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from disclatent import published
from disclatent.analysis import interpretation as it
from disclatent.analysis.study import load_study
from disclatent.conventions import FEATURE_LABELS, GEOMETRY_FEATURES
from disclatent.paths import Table
from disclatent.report import interpretation_plots as iplt
from disclatent.report.plots import level_boxplots
from disclatent.report.tables import save_table
from disclatent.stats import correlation_table

# %%
study = load_study(profile, data_dir, build_dir)  # the autoencoder chapter's k=4 AE
build, gt, model, LATENT_DIM = study.build, study.gt, study.model, study.latent_dim
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # grading mismatches are reported in the prediction chapter
    table = study.features(gt)
z = model.encode(gt.cubes)  # every disc, graded or not
latent_cols = study.latent_columns
size = model.config.size
display(
    Markdown(f"{len(table)} discs, latent codes of the `{profile}` profile's {size}^3 autoencoder.")
)


# %% [markdown]
# ## Sweeping each latent feature through the decoder (Fig. 5B)
#
# Rows: for each latent feature, the central sagittal (superior up, anterior left), coronal
# and transverse slices of the decoded mask. Columns: the feature at its minimum, 1/5, ...,
# 4/5 of its range, and its maximum.


# %%
masks, sweep = it.latent_sweep(z, model.decode, study.measure_decoded, n_steps=6)
save_table(sweep, "latent_sweeps", build)
fig = iplt.plot_sweep(masks, sweep, gt.spacing_mm)

# %% [markdown]
# The decoded masks, measured: how each geometric feature changes as one latent feature
# goes from its minimum to its maximum (the others at their mean).

# %%
fig = iplt.sweep_profiles(sweep, GEOMETRY_FEATURES, FEATURE_LABELS)
slopes = it.sweep_slopes(sweep, GEOMETRY_FEATURES)
save_table(slopes, "sweep_slopes", build, index=True)
display(
    Markdown(
        "Change of each measured feature over the whole sweep of each latent "
        "feature (mm, degrees, mm³):"
    )
)
slopes.round(2)

# %% [markdown]
# ## Latent against geometric features (Fig. 5A)
#
# Pearson r of every latent feature with every geometric feature measured on the
# ground-truth masks; stars mark FDR-corrected significance (* q < 0.05, ** < 0.01,
# *** < 0.001). The paper reports, for example, r = -0.80 between its feature 2 and AP
# width; latent features are not ordered or signed consistently between trainings, so
# compare patterns, not indices.

# %%
lat, geom = table[latent_cols], table[GEOMETRY_FEATURES]
r, p, q = it.correlation_matrix(lat, geom)
rl, _, ql = it.correlation_matrix(lat, lat)
save_table(correlation_table(lat, geom), Table.LATENT_GEOMETRY, build)
save_table(correlation_table(lat, lat), Table.LATENT_LATENT, build)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [2.2, 1]})
iplt.correlation_heatmap(r, q, axes[0], "latent vs geometric features", FEATURE_LABELS)
iplt.correlation_heatmap(rl, ql, axes[1], "latent vs latent")
fig.tight_layout()
largest, paper = it.max_off_diagonal(rl), published.LATENT_LATENT_MAX_R
text = f"Largest |r| between two different latent features: {largest:.2f}"
display(Markdown(f"{text} (the paper reports |r| < {paper})."))

# %% [markdown]
# ## Do the latent features separate spinal levels?
#
# The abstract found that its latent features separate levels. Box plots per level and a
# Kruskal-Wallis test per feature (FDR-corrected over the four features).

# %%
fig = level_boxplots(table, latent_cols, ncols=LATENT_DIM, points=False)
by_level = it.level_differences(table[latent_cols], table["level"].to_numpy())
save_table(by_level, "latent_by_level_tests", build, index=True)
by_level

# %% [markdown]
# ## Does the autoencoder find the generating factors? (phantom only)
#
# Each phantom disc was generated from known factors: its size, height, tilts, wedge and
# endplate convexity, and its pathology (narrowing factor, bulge). Correlating the latent
# features with these factors shows which ones the four numbers encode.

# %%
truth = study.phantom_truth()
if truth is not None:
    factors = it.factor_correlation(table, truth, latent_cols)
    fig, ax = plt.subplots(figsize=(11, 3.2))
    iplt.correlation_heatmap(factors.r, factors.q, ax, "latent features vs true generating factors")
    fig.tight_layout()
    save_table(factors.table, "latent_truth_correlation", build)
    display(factors.strongest().round(2))
else:
    print("Real data: no generating factors to compare with.")

# %% [markdown]
# ## Explore the latent space yourself
#
# One slider per latent feature, from its cohort minimum to its maximum, starting at the
# cohort mean; the decoded disc's central sagittal, coronal and transverse slices, its
# measured geometry and whether it is plausible (one piece, no cavity, volume and sizes within
# the cohort's 1st-99th percentiles; the stability chapter measures how often it is not)
# follow the sliders. On this static page no decoder is running: below is
# the starting state, every latent feature at the cohort mean.
#
# **`make explore` to use it live** (the explorers of your last `make book`, in the browser).

# %%
from disclatent.report.widgets import latent_explorer  # noqa: E402


def measure_one(cube: np.ndarray) -> dict[str, float]:
    return study.measure_decoded(cube[None]).iloc[0][GEOMETRY_FEATURES].to_dict()


check = study.plausibility_check()  # one piece, no cavity, sizes within the cohort's
latent_explorer(
    z, model.decode, measure_one, gt.spacing_mm, lambda c: study.judge_decoded(check, c)
)
