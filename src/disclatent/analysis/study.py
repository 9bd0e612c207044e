"""The inputs the prediction and interpretation chapters share, prepared in one call.

:func:`load_study` finds the cohort (a SPIDER folder or the profile's phantom), reads its
gradings, loads the ground-truth disc store written by the geometry chapter (or builds it)
and trains, or loads from the build folder, the k = 4 autoencoder fitted on all
ground-truth discs, as the paper did. The chapters then only ask for feature tables.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from disclatent import autoencoder as ae
from disclatent.data import spider
from disclatent.data.cohort import cohort_root
from disclatent.discs import isolation as iso
from disclatent.paths import BuildPaths, resolve_build_dir
from disclatent.profiles import Profile, get_profile

LATENT_DIM = 4  # the paper's bottleneck for prediction and interpretation


@dataclass
class Study:
    """A cohort, its gradings, its ground-truth discs and the autoencoder fitted on them."""

    profile: Profile
    root: Path  # the SPIDER-format folder read
    build: Path  # the build folder (stores, models, tables)
    gradings: pd.DataFrame
    gt: iso.DiscStore
    model: ae.DiscAE
    latent_dim: int = LATENT_DIM
    seed: int = 0

    def disc_store(self, source: str, masks: str | os.PathLike) -> iso.DiscStore:
        """The T1 discs of ``masks`` in the profile's cubes, cached under the build folder
        while the mask files are unchanged (``source``: "gt" or "pred")."""
        return iso.cached_disc_store(
            masks,
            BuildPaths(self.build, self.profile.name).disc_store(source),
            source=source,
            spacing_mm=self.profile.disc_spacing_mm,
            size=self.profile.disc_cube_size,
        )

    def features(self, store: iso.DiscStore) -> pd.DataFrame:
        """One row per disc: geometry (mm, degrees), ``latent_0..`` and the gradings."""
        from disclatent.analysis.prediction import disc_features

        return disc_features(store, self.gradings, self.model.encode(store.cubes))

    @property
    def latent_columns(self) -> list[str]:
        return [f"latent_{i}" for i in range(self.latent_dim)]


def load_study(
    profile: str = "default",
    data_dir: str | os.PathLike = "",
    build_dir: str | os.PathLike = "_build",
    seed: int = 0,
    latent_dim: int = LATENT_DIM,
    progress: bool = False,
) -> Study:
    """Prepare a :class:`Study`; the autoencoder is trained once per profile, seed and data
    and reused from ``<build>/models/ae-all-<profile>-k<latent_dim>`` afterwards.

    Grading rows that do not match a disc (and the reverse) are reported by
    :func:`disclatent.discs.geometry.join_gradings` when feature tables are made; the IVD label 0
    rows of SPIDER's gradings file are reported by the data chapter and silenced here.
    """
    cfg = get_profile(profile)
    build = resolve_build_dir(build_dir)
    root = cohort_root(profile, data_dir, build_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradings = spider.read_gradings(spider.SpiderFolder(root).gradings_csv)
    gt = iso.cached_disc_store(
        root,
        BuildPaths(build, cfg.name).disc_store("gt"),
        source="gt",
        spacing_mm=cfg.disc_spacing_mm,
        size=cfg.disc_cube_size,
    )
    config = ae.AEConfig.from_profile(cfg, latent_dim, seed=seed)
    model_dir = build / "models" / f"ae-all-{cfg.name}-k{latent_dim}"
    model, _ = ae.train_or_load(gt.cubes, config, model_dir, progress=progress)
    return Study(cfg, root, build, gradings, gt, model, latent_dim, seed)
