"""The inputs the prediction and interpretation chapters share, read from earlier chapters.

(``book/method.md``, *Prediction* and *Interpretation*.) :func:`load_study` trains and
measures nothing: it finds the cohort (a SPIDER folder or the profile's phantom) and its
gradings, and loads what the earlier chapters wrote, each through
:meth:`disclatent.paths.BuildPaths.require` (a missing one names the chapter to run):

* the ground-truth disc store and the geometric features of every disc (``02_geometry``);
* the k = 4 autoencoder of the bottleneck sweep (``03_autoencoder``), trained on the
  training patients of that chapter's split, so the latent codes of its held-out patients
  are out-of-sample.

Only the discs of the segmentation chapter's predicted masks are isolated and measured
here, the first time anything uses them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent import autoencoder as ae
from disclatent import published
from disclatent.analysis.plausibility import PlausibilityCheck, verdict_text
from disclatent.analysis.prediction import disc_features
from disclatent.conventions import latent_columns
from disclatent.data import phantom, spider
from disclatent.data.cohort import cohort_root
from disclatent.discs import store as ds
from disclatent.discs.composition import COMPOSITION_FEATURES, composition_features
from disclatent.discs.features import load_geometry_table
from disclatent.discs.geometry import measure_cubes
from disclatent.discs.intensity import (
    IntensityStore,
    build_intensity_store,
    load_intensity_store,
)
from disclatent.paths import DEFAULT_BUILD_DIR, BuildPaths
from disclatent.profiles import Profile, get_profile

LATENT_DIM = published.CHOSEN_LATENT_DIM  # the bottleneck of prediction and interpretation


@dataclass
class Study:
    """A cohort, its gradings and what the earlier chapters made of it."""

    profile: Profile
    root: Path  # the SPIDER-format folder read
    paths: BuildPaths  # the build folder (stores, models, tables)
    gradings: pd.DataFrame
    gt: ds.DiscStore  # ground-truth discs (02_geometry)
    geometry: pd.DataFrame  # every disc's geometric features (02_geometry)
    model: ae.DiscAE  # the sweep's k = latent_dim autoencoder (03_autoencoder)
    latent_dim: int = LATENT_DIM

    @property
    def build(self) -> Path:
        return self.paths.root

    @property
    def latent_columns(self) -> list[str]:
        return latent_columns(self.latent_dim)

    def predicted_store(self) -> ds.DiscStore | None:
        """The T1 discs of the segmentation chapter's predicted masks in the profile's cubes
        (cached while the mask files are unchanged); ``None`` when there are none."""
        masks = self.paths.predicted_masks
        if not (masks.is_dir() and any(masks.iterdir())):
            return None
        return ds.cached_disc_store(
            masks,
            self.paths.disc_store("pred"),
            source="pred",
            spacing_mm=self.profile.disc_spacing_mm,
            size=self.profile.disc_cube_size,
        )

    def features(self, store: ds.DiscStore) -> pd.DataFrame:
        """One row per graded disc: geometry (mm, degrees), ``latent_0..`` and the gradings.

        Ground-truth discs take their geometry from the geometry chapter's table; discs of
        predicted masks are measured in their masks. The latent codes are the model's; a
        store cube larger than the model's is cropped about its centre (a disc that does not
        fit loses voxels, with a :class:`~disclatent.autoencoder.CropWarning`, rather than
        being dropped as the autoencoder chapter drops it from training).
        """
        sources = set(store.table["source"]) if "source" in store.table else set()
        geometry = self.geometry if sources == {"gt"} else None
        return disc_features(store, self.gradings, self.model.encode(store.cubes), geometry)

    def feature_tables(self) -> tuple[dict[str, pd.DataFrame], list[str]]:
        """:meth:`features` of the ground-truth discs (``"gt"``) and, when the segmentation
        chapter wrote predicted masks, of theirs (``"pred"``); and a note for every warning
        raised on the way (a disc left out, a grading without a disc) or missing input."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tables = {"gt": self.features(self.gt)}
            pred = self.predicted_store()
            if pred is not None:
                tables["pred"] = self.features(pred)
        notes = [f"note: {w.message}" for w in caught]
        if pred is None:
            notes.append(
                f"No predicted masks in {self.paths.predicted_masks}: run the segmentation "
                "chapter first."
            )
        return tables, notes

    def measure_decoded(self, cubes: np.ndarray) -> pd.DataFrame:
        """Geometry of decoded masks ``(n, S, S, S)`` on the disc grid (an empty one: NaN)."""
        return measure_cubes(cubes, self.gt.spacing_mm, allow_empty=True)

    def plausibility_check(self) -> PlausibilityCheck:
        """A :class:`~disclatent.analysis.plausibility.PlausibilityCheck` fitted on the
        cohort's ground-truth discs, each measured on the model's cube as a decoded disc is
        (the same grid, the same code)."""
        cubes = ae.fit_cubes(self.gt.cubes, self.model.config.size)
        return PlausibilityCheck().fit(self.measure_decoded(cubes))

    def judge_decoded(self, check: PlausibilityCheck, cube: np.ndarray) -> str:
        """ "plausible" or "implausible: <reasons>" for one decoded cube ``(S, S, S)``."""
        return verdict_text(check.judge(cube[None], self.gt.spacing_mm).iloc[0])

    def phantom_truth(self) -> pd.DataFrame | None:
        """The phantom's generating factors per disc (``phantom_truth.csv``); ``None`` for
        real data, which has no such truth."""
        return phantom.read_truth(self.root) if phantom.has_truth(self.root) else None

    # -- composition (07_composition) ---------------------------------------------------
    def t2_store(self) -> ds.DiscStore:
        """The ground-truth discs of the cohort's T2 series in the profile's cubes (cached
        while the masks are unchanged; a disc that does not fit is left out, with a
        warning)."""
        return ds.cached_disc_store(
            spider.SpiderFolder(self.root).masks_dir,
            self.paths.t2_disc_store,
            spacing_mm=self.profile.disc_spacing_mm,
            size=self.profile.disc_cube_size,
            modalities=("t2",),
        )

    def intensity(self, store: ds.DiscStore) -> tuple[IntensityStore, pd.DataFrame]:
        """The normalised intensity cubes of ``store``'s discs (stored beside it, reused per
        series) and the series that failed, by name (their rows NaN)."""
        path, failures = build_intensity_store(store, self.paths.intensity_store)
        return load_intensity_store(path), failures

    def composition_table(self, store: ds.DiscStore, ints: IntensityStore) -> pd.DataFrame:
        """One row per graded disc of ``store``: geometry measured in its mask, the shape
        latent code, the gradings and the hand-crafted composition measures; discs without
        intensities (a failed series) are left out."""
        feats = composition_features(store.cubes, ints.cubes.astype(np.float32))
        table = disc_features(store, self.gradings, self.model.encode(store.cubes))
        table = pd.concat([table, feats.iloc[table["cube_index"]].reset_index(drop=True)], axis=1)
        return table.dropna(subset=list(COMPOSITION_FEATURES)).reset_index(drop=True)

    def fold_autoencoder(self, fold_seed: int) -> ae.LatentFeatures:
        """An untrained k = ``latent_dim`` extractor of the profile's settings (AE in fold)."""
        return ae.LatentFeatures(
            latent_dim=self.latent_dim, profile=self.profile.name, seed=fold_seed
        )


def load_study(
    profile: str = "default",
    data_dir: str | os.PathLike = "",
    build_dir: str | os.PathLike = DEFAULT_BUILD_DIR,
    latent_dim: int = LATENT_DIM,
) -> Study:
    """Prepare a :class:`Study` from the outputs of chapters 02 and 03.

    Grading rows that do not match a disc (and the reverse) are reported by
    :func:`disclatent.discs.features.join_gradings` when feature tables are made; the IVD label 0
    rows of SPIDER's gradings file are reported by the data chapter and silenced here.
    """
    cfg = get_profile(profile)
    paths = BuildPaths.resolve(build_dir, cfg.name)
    root = cohort_root(profile, data_dir, build_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradings = spider.read_gradings(spider.SpiderFolder(root).gradings_csv)
    gt = ds.load_disc_store(paths.require(paths.disc_store("gt"), "02_geometry"))
    geometry = load_geometry_table(paths)
    model = ae.DiscAE.load(paths.require(paths.autoencoder(latent_dim), "03_autoencoder"))
    return Study(cfg, root, paths, gradings, gt, geometry, model, latent_dim)
