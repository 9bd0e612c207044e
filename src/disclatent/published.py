"""Every number the published study reports, in one place.

The paper (2025, disc narrowing) and the conference abstract (2024, disc bulging) by the same
group; see ``book/method.md`` for the method in this project's words. Nothing else in the
package types a published figure: chapters, tables and the results page read them from here.
``None`` means "not reported".
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# --- the method's settings ---------------------------------------------------------------
#: resampling grid of segmentation and disc isolation, mm, per anatomical axis
SPACING_MM = {"si": 1.5, "ap": 1.2, "lr": 1.4}
#: edge of the autoencoder's input cube, voxels
CUBE_SIZE = 64
#: convergence criterion of the autoencoder: mean IoU between input and output masks
TARGET_IOU = 0.995
#: share of patients in the segmentation test cohort (one whole institution)
TEST_FRACTION = 0.2
#: XGBoost as reported (the public code used the library defaults)
XGB_SETTINGS = {"max_depth": 3, "n_estimators": 200, "learning_rate": 0.1}
#: wall time and hardware of the whole published pipeline
PIPELINE_HOURS = 2.0
PIPELINE_GPU = "one RTX A5000"


@dataclass(frozen=True)
class Training:
    """A training run as reported: batch, Adam's learning rate, epoch budget and early
    stopping after ``patience`` epochs without a better validation score (0: none)."""

    batch_size: int
    lr: float
    max_epochs: int
    patience: int = 0


#: the training budget of the autoencoder in epochs (k = 3 did not converge within it)
AUTOENCODER_EPOCH_BUDGET = 1000
SEGMENTATION_TRAINING = Training(batch_size=4, lr=1e-3, max_epochs=200, patience=15)
AUTOENCODER_TRAINING = Training(batch_size=4, lr=1e-3, max_epochs=AUTOENCODER_EPOCH_BUDGET)

# --- step 1: segmentation (Supplementary Table 1; test site) ----------------------------
SEGMENTATION = {
    "model": "SwinUNETR-V2 (paper)",
    "IoU": 0.82,
    "IoU low": 0.80,
    "IoU high": 0.84,
    "DSC": 0.90,
    "DSC low": 0.89,
    "DSC high": 0.91,
}
SEGMENTATION_ABSTRACT = {"model": "SwinUNETR-V2 (abstract)", "IoU": 0.74, "DSC": 0.85}

# --- step 2: autoencoder bottleneck sweep (training IoU, epochs to converge) --------------
AUTOENCODER_SWEEP = pd.DataFrame(
    [
        (64, 0.9981, None, None, 190, True, None),
        (8, 0.9983, None, None, 199, True, None),
        (4, 0.9984, 0.9979, 0.9989, 350, True, None),
        (3, None, None, None, None, False, "0.6-0.8, oscillating"),
    ],
    columns=["latent_dim", "iou", "iou_lo", "iou_hi", "epochs", "converged", "note"],
)
#: the bottleneck the paper chose for prediction and interpretation
CHOSEN_LATENT_DIM = 4

# --- step 4: prediction (paper Tables 1 and 2: narrowing; abstract: bulging) --------------
PREDICTION = pd.DataFrame(
    [
        ("gt", "disc_narrowing", "latent", 0.81, 0.77, 0.85, 0.75, 0.71, 0.79),
        ("gt", "disc_narrowing", "geometric", 0.79, 0.77, 0.81, 0.66, 0.63, 0.69),
        ("gt", "disc_narrowing", "geometric + latent", 0.81, 0.79, 0.83, 0.76, 0.73, 0.78),
        ("pred", "disc_narrowing", "latent", 0.77, 0.75, 0.78, 0.58, None, None),
        ("pred", "disc_narrowing", "geometric", 0.79, 0.77, 0.81, 0.66, 0.63, 0.69),
        ("pred", "disc_narrowing", "geometric + latent", 0.79, 0.77, 0.81, 0.69, 0.63, 0.73),
        ("gt", "disc_bulging", "latent", 0.65, None, None, 0.71, None, None),
        ("gt", "disc_bulging", "geometric", 0.71, None, None, 0.77, None, None),
        ("gt", "disc_bulging", "geometric + latent", 0.74, None, None, 0.80, None, None),
        ("pred", "disc_bulging", "latent", 0.67, None, None, 0.71, None, None),
        ("pred", "disc_bulging", "geometric", 0.64, None, None, 0.69, None, None),
        ("pred", "disc_bulging", "geometric + latent", 0.70, None, None, 0.73, None, None),
    ],
    columns=["source", "target", "features", "f1", "f1_lo", "f1_hi", "auc", "auc_lo", "auc_hi"],
)
#: the literature rows the paper quotes beside Table 1 (disc narrowing)
LITERATURE = pd.DataFrame(
    [
        ("Lin et al. 2024", "disc_narrowing", 0.78, None),
        ("Hung et al. 2021", "disc_narrowing", None, 0.75),
    ],
    columns=["study", "target", "f1", "auc"],
)

# --- step 5: interpretation (Fig. 5A) ----------------------------------------------------
#: strongest latent-geometry correlation (feature 2 vs AP width, r = -0.80)
INTERPRETATION_MAX_ABS_R = 0.80
#: latent features mutually uncorrelated: |r| below this
LATENT_LATENT_MAX_R = 0.05
#: the paper's statements about single latent axes: (latent index, geometric feature, r)
LATENT_CLAIMS = ((2, "ap_width_mm", -0.80), (0, "sagittal_angle_deg", -0.75))


def prediction(source: str, target: str, features: str) -> pd.Series | None:
    """One row of :data:`PREDICTION`, or ``None`` when the paper has none."""
    p = PREDICTION
    hit = p[(p.source == source) & (p.target == target) & (p.features == features)]
    return hit.iloc[0] if len(hit) else None


def sweep_row(latent_dim: int) -> pd.Series | None:
    """The published sweep's row for bottleneck ``latent_dim``, or ``None``."""
    hit = AUTOENCODER_SWEEP[AUTOENCODER_SWEEP.latent_dim == latent_dim]
    return hit.iloc[0] if len(hit) else None
