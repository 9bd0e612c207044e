"""Run profiles: one parameter that sets every size and budget of the study.

* ``quick``: tests and CI; the whole book in a few minutes, numbers not meaningful.
* ``default``: a laptop CPU (2 cores); the whole book in about twenty minutes.
* ``paper``: the published settings (64^3 crops, SwinUNETR-V2, 200/1000-epoch budgets),
  meant for a GPU.

Later pipeline steps add their own fields here, so that a notebook needs only the profile
name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    n_patients: int  # phantom cohort size (T1 + T2 series per patient, 5-7 discs each)
    phantom_seed: int = 0
    # disc isolation (disclatent.isolation): cube edge in voxels and spacing in the cube's
    # numpy order (SI, AP, LR); the paper's 64^3 at LR 1.4 x AP 1.2 x SI 1.5 mm. Every
    # profile covers the same ~96 x 77 x 90 mm around the disc.
    disc_cube_size: int = 64
    disc_spacing_mm: tuple[float, float, float] = (1.5, 1.2, 1.4)
    # segmentation (disclatent.segmentation): the model whose masks feed later chapters, the
    # models compared under one budget, patch in numpy order (SI, AP, LR) on the 1.5 x 1.2 x
    # 1.4 mm grid, batch, epochs (0 iterations: one pass), patience, optional minutes cap
    seg_model: str = "UNet"
    seg_models: tuple[str, ...] = ("UNet", "SegResNet", "SwinUNETR")
    seg_patch: tuple[int, int, int] = (64, 64, 32)
    seg_batch: int = 4
    seg_max_epochs: int = 200
    seg_iters_per_epoch: int = 0
    seg_patience: int = 15
    seg_max_minutes: float | None = None
    seg_unet_channels: tuple[int, ...] = (16, 32, 64, 128)
    seg_segresnet_filters: int = 8
    seg_swin_feature_size: int = 24


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", "tests and CI: tiny cohort and models", n_patients=8,
                     disc_cube_size=32, disc_spacing_mm=(3.0, 2.4, 2.8)),
    "default": Profile("default", "a 2-core laptop CPU, about 20 minutes", n_patients=36,
                       disc_cube_size=48, disc_spacing_mm=(2.0, 1.6, 1.9)),
    "paper": Profile("paper", "the published settings, for a GPU", n_patients=60),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
