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
# # A 3D CNN autoencoder of disc shape
#
# The paper compresses each isolated disc mask into a handful of numbers with a
# convolutional autoencoder and reads those numbers as "latent geometry". This chapter trains
# that autoencoder for the paper's bottleneck sizes k = 64, 8, 4 and 3, and asks three
# questions the paper's own evaluation leaves open:
#
# 1. **Does it converge, measured honestly?** The criterion is the paper's (mean IoU between
#    input and thresholded output at least 0.995), but computed after every epoch on *all*
#    training discs with the model in eval mode, not on one batch in train mode.
# 2. **How much geometry do k numbers really hold?** With about 200 discs and a decoder of
#    hundreds of thousands to millions of parameters, a high training IoU can be memorisation.
#    Discs of patients kept out of training are encoded and decoded too (held-out IoU).
# 3. **Is a deep model needed?** The classical statistical shape model is linear: PCA of the
#    flattened masks with the same k, reconstruction thresholded at 0.5.

# %% tags=["parameters"]
profile = "default"  # quick | default | paper
data_dir = ""  # a SPIDER folder; empty: the phantom cohort
build_dir = "_build"  # where every output goes (relative to the project root)

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from disclatent.autoencoder import core as ae_mod
from disclatent.data.cohort import cohort_root
from disclatent.discs.isolation import DiscWarning
from disclatent.paths import resolve_build_dir
from disclatent.profiles import get_profile
from disclatent.report.tables import save_table

cfg_profile = get_profile(profile)
build = resolve_build_dir(build_dir)
root = cohort_root(profile, data_dir, build_dir)
base = ae_mod.AEConfig.from_profile(cfg_profile)
models_dir = build / "models" / "autoencoder" / profile
device = ae_mod.default_device()
if device.type == "cpu" and base.cpu_threads > 0:
    torch.set_num_threads(base.cpu_threads)  # as in training (profile, DISCLATENT_CPU_THREADS)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", DiscWarning)
    discs = ae_mod.load_discs(root, base, build / "data" / f"ae-discs-{profile}.npz")
for w in caught[:5]:
    print("note:", w.message)
train_idx, held_idx = ae_mod.patient_split(
    discs.table["patient"], cfg_profile.ae_heldout_fraction, seed=base.seed
)
train, held = discs.cubes[train_idx], discs.cubes[held_idx]
n_pat = discs.table["patient"].nunique()
display(
    Markdown(
        f"Cohort `{root.name}`: {len(discs.cubes)} discs of {n_pat} patients (T1 masks). "
        f"{int(train_idx.sum())} discs of {discs.table.loc[train_idx, 'patient'].nunique()} "
        f"patients train the models; {int(held_idx.sum())} discs of "
        f"{discs.table.loc[held_idx, 'patient'].nunique()} patients are held out. "
        f"Device: `{device}`."
    )
)

# %% [markdown]
# ## The model, and where this profile departs from the paper
#
# Encoder: stride-2 3-D convolutions (kernel 3) with batch normalisation and ReLU; a linear
# bottleneck of k numbers; decoder: a linear layer back to the coarsest grid and stride-2
# 3-D transposed convolutions with batch normalisation; logits out; no skip connections.
# The `paper` profile uses the published input (64^3 voxels at 1.5 x 1.2 x 1.4 mm, SI x AP x
# LR) and depth (five stages, 32 to 512 channels), binary cross-entropy, Adam at a constant
# 10^-3, batch 4 and a 1000-epoch budget.

# %%
paper_cfg = ae_mod.AEConfig.from_profile("paper")
paper_params = ae_mod.count_parameters(ae_mod.build_model(paper_cfg))
ours_params = ae_mod.count_parameters(ae_mod.build_model(base))
settings = pd.DataFrame(
    {
        "paper profile": ae_mod.describe_config(paper_cfg, paper_params),
        f"this run ({profile})": ae_mod.describe_config(base, ours_params),
    }
)
save_table(settings, "autoencoder_settings", build, index=True)
settings

# %% [markdown]
# The published model is far too slow for a laptop CPU, so the CPU profiles depart from it on
# purpose (the table above says exactly how):
#
# * **a smaller input**: the disc grid of the isolation chapter (coarser than the paper's),
#   cropped to a cube centred on the disc's centre of mass; every disc is checked to fit,
#   and one that does not is left out with a warning, never truncated;
# * **a shallower, narrower network**: three stride-2 stages instead of five and fewer
#   channels (in short trials on this cohort, a 4^3 coarsest grid fitted faster than a 2^3
#   one, even with four times fewer parameters);
# * **Dice + binary cross-entropy** (equal weights) instead of binary cross-entropy alone,
#   and a **one-cycle learning-rate schedule** (warm-up to 3 x 10^-3, cosine decay);
# * **batch normalisation with fixed statistics** after the first epochs, so that the network
#   is trained as exactly the function that is evaluated, and the output bias starting at the
#   log-odds of the foreground share (otherwise the first epochs only learn "empty").
#
# Before every evaluation the batch-norm statistics are re-estimated over all training discs
# ("precise BN"), in every profile. None of this changes the criterion: mean IoU over all
# training discs, eval mode, every epoch, at least 0.995.

# %% [markdown]
# ## The bottleneck sweep

# %%
results, models, pcas = ae_mod.sweep(
    train, held, base, cfg_profile.ae_latent_dims, out_dir=models_dir, progress=False, device=device
)
save_table(results, "autoencoder_sweep_raw", build)
table = ae_mod.sweep_table(results)
save_table(table, "autoencoder_sweep", build)
display(
    Markdown(
        "IoU: mean over discs with a 95 % percentile-bootstrap interval (2000 resamples of discs). "
        "Epochs: the first epoch at which the eval-mode mean training IoU reached 0.995. "
        "Paper figures: training IoU only; the paper reports neither held-out nor baseline "
        "figures."
    )
)
table.set_index("k")

# %%
timing = results[
    ["latent_dim", "epochs_run", "train_seconds", "parameters", "n_train", "n_heldout"]
].rename(columns={"latent_dim": "k"})
timing["seconds per epoch"] = (timing["train_seconds"] / timing["epochs_run"]).round(2)
timing.set_index("k")

# %% [markdown]
# ## Training curves
#
# Loss and eval-mode mean training IoU after every epoch; the dashed line is the convergence
# criterion (0.995).

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for k, model in models.items():
    h = model.history
    if h.empty:
        continue
    axes[0].plot(h["epoch"], h["loss"], label=f"k={k}")
    axes[1].plot(h["epoch"], h["train_iou"], label=f"k={k}")
axes[0].set_yscale("log")
axes[0].set_ylabel("training loss")
axes[1].axhline(base.target_iou, ls="--", color="k", lw=1)
axes[1].set_ylabel("mean IoU, all training discs (eval mode)")
axes[1].set_ylim(
    max(
        0.0,
        min(h["train_iou"].min() for h in (m.history for m in models.values()) if not h.empty)
        - 0.02,
    ),
    1.0,
)
for ax in axes:
    ax.set_xlabel("epoch")
    ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Input and reconstruction
#
# Central slices through three discs (two training discs, one held-out) in the three planes:
# the filled area is the reconstruction, the red outline the input mask. Sagittal: anterior
# left, superior up; coronal: the patient's left on the right, superior up; transverse:
# anterior up, the patient's left on the right. Axes in millimetres.

# %%
rng = np.random.default_rng(0)
picks = [("train", i) for i in rng.choice(len(train), size=min(2, len(train)), replace=False)]
if len(held):
    picks.append(("held out", int(rng.integers(len(held)))))
ks = list(models)
k_pca = 4 if 4 in pcas else ks[-1]
figs = ae_mod.plot_reconstructions(train, held, picks, models, pcas[k_pca], k_pca, base.spacing_mm)

# %% [markdown]
# ## The linear baseline
#
# PCA of the flattened training masks with the same number of components, reconstruction
# thresholded at 0.5 (PCA cannot have more components than training discs minus one). The
# gap between training and held-out IoU is the part of the autoencoder's fit that does not
# carry over to discs it has not seen.

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
x = np.arange(len(results))
w = 0.2
bars = [
    ("train_iou", "autoencoder, training"),
    ("heldout_iou", "autoencoder, held out"),
    ("pca_train_iou", "PCA, training"),
    ("pca_heldout_iou", "PCA, held out"),
]
for j, (col, label) in enumerate(bars):
    lo, hi = results[col + "_lo"], results[col + "_hi"]
    ax.bar(
        x + (j - 1.5) * w,
        results[col],
        w,
        label=label,
        yerr=[results[col] - lo, hi - results[col]],
        capsize=2,
    )
ax.set_xticks(x, [f"k={k}" for k in results["latent_dim"]])
ax.set_ylabel("mean IoU (95% CI)")
lowest = np.nanmin(results[[c for c, _ in bars]].to_numpy())
ax.set_ylim(max(0.0, lowest - 0.05), 1.0)
ax.axhline(base.target_iou, ls="--", color="k", lw=1)
ax.legend(fontsize=8, loc="lower left")
fig.tight_layout()

# %%
k_main = 4 if 4 in models else ks[-1]
r = results.set_index("latent_dim").loc[k_main]
gap_ae = r.train_iou - r.heldout_iou
lines = [
    f"At k = {k_main}: training IoU {r.train_iou:.4f}, held-out IoU {r.heldout_iou:.4f} "
    f"(a gap of {gap_ae:.4f}); PCA with {int(r.pca_components)} components: training "
    f"{r.pca_train_iou:.4f}, held out {r.pca_heldout_iou:.4f}.",
    f"The autoencoder converged by the paper's criterion after {int(r.epochs_to_converge)} epochs."
    if r.converged
    else f"The autoencoder did **not** reach the paper's criterion (0.995) within the "
    f"`{profile}` budget of {int(r.epochs_run)} epochs.",
]
if np.isfinite(r.heldout_iou) and np.isfinite(r.pca_heldout_iou):
    better = "better" if r.heldout_iou > r.pca_heldout_iou else "no better"
    lines.append(
        f"On discs it has never seen, the autoencoder reconstructs {better} than the "
        f"linear shape model with the same {k_main} numbers "
        f"({r.heldout_iou:.4f} vs {r.pca_heldout_iou:.4f})."
    )
display(Markdown(" ".join(lines)))
metrics = {
    int(k): {key: v for key, v in m.metrics.items() if not isinstance(v, list | dict)}
    for k, m in models.items()
}
pd.DataFrame(metrics).T[
    [
        "epochs",
        "converged",
        "train_iou",
        "train_iou_min",
        "heldout_iou",
        "train_seconds",
        "volumes_per_second",
        "parameters",
        "device",
    ]
]

# %% [markdown]
# ## Speed
#
# The paper needed 350 epochs on a GPU to converge at k = 4. The target here was 100 epochs
# and 8 minutes on a 2-core CPU for the default cohort (about 200 discs);
# `benchmarks/bench_autoencoder.py` measures it (epochs, wall time, training volumes per
# second and the machine's load), and trains past the budget when asked (`--epochs 300`).
# The `default` profile's budget is deliberately short, so that the whole book runs in
# about twenty minutes on such a machine: its models are stopped by the budget, not by the
# criterion, and the table above says so. The per-epoch times include the evaluation of
# every training disc after every epoch, which the criterion requires.
# On the `paper` profile (64^3, 9.4 M parameters) the same code trains on a GPU when one is
# present.
