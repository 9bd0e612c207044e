"""Every path under the build folder, in one place.

A chapter never spells a path by hand: it asks :class:`BuildPaths` where an output goes, and
:meth:`BuildPaths.require` for an input an earlier chapter wrote, which fails with a message
naming the chapter to run when it is missing. Layout (``<build>`` is ``_build`` by default)::

    <build>/site/notebooks/NN_name.ipynb   executed chapters
    <build>/html/                          the rendered book
    <build>/tables/<name>.csv              every table the book shows
    <build>/data/phantom-<profile>/        the phantom cohort (SPIDER layout)
    <build>/data/discs-<source>-<profile>.npz   isolated disc cubes (02_geometry)
    <build>/data/pred-<profile>/masks/     predicted masks of the test site (01_segmentation)
    <build>/models/seg-<profile>/<model>/  segmentation models (01_segmentation)
    <build>/models/autoencoder/<profile>/k<K>/  autoencoders of the sweep (03_autoencoder)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUILD_DIR = "_build"
SOURCES = ("gt", "pred")


class Table:
    """Names of the tables that a later step reads back (``<build>/tables/<name>.csv``): the
    chapter that writes one and the code that reads it both use these constants."""

    DATA_PROBLEMS = "data_problems"  # 00_data: every series with a problem, and its effect
    SEGMENTATION = "supplementary_table_1_segmentation"  # 01_segmentation
    GEOMETRY = "geometry_features"  # 02_geometry: every disc, measured in its mask
    GEOMETRY_ERRORS = "geometry_errors_vs_truth"  # 02_geometry (phantom only)
    AUTOENCODER_SWEEP = "autoencoder_sweep_raw"  # 03_autoencoder
    PREDICTION = "prediction_results"  # 04_prediction
    PREDICTION_BASELINES = "prediction_baselines"  # 04_prediction
    LEAKAGE = "leakage_protocols"  # 04_prediction
    LATENT_GEOMETRY = "latent_geometry_correlation"  # 05_interpretation
    LATENT_LATENT = "latent_latent_correlation"  # 05_interpretation
    LATENT_STABILITY = "latent_stability"  # 06_stability: CKA, Procrustes R^2 per seed pair
    LATENT_GEOMETRY_CCA = "latent_geometry_cca"  # 06_stability
    LATENT_GEOMETRY_BY_SEED = "latent_geometry_by_seed"  # 06_stability
    LATENT_CLAIMS = "latent_claims_by_seed"  # 06_stability
    LATENT_BASIS = "latent_basis_prediction"  # 06_stability
    LATENT_PLAUSIBILITY = "latent_plausibility"  # 06_stability
    INTENSITY_PREDICTION = "intensity_prediction"  # 07_composition
    INTENSITY_PAIRED = "intensity_paired_differences"  # 07_composition
    INTENSITY_AE = "intensity_autoencoder"  # 07_composition: held-out error per bottleneck
    COMPOSITION_TRUTH = "composition_truth_recovery"  # 07_composition (phantom only)


class MissingOutputError(FileNotFoundError):
    """An output of an earlier chapter is missing; the message names the chapter to run."""


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the nearest folder upward holding ``_toc.yml`` and ``notebooks``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(f"no disclatent project (with _toc.yml and notebooks/) above {here}")


#: measured results of the benchmark scripts, committed beside them (small JSON files)
BENCHMARK_RESULTS = Path("benchmarks") / "results"


def benchmark_result(name: str, root: str | os.PathLike | None = None) -> Path:
    """``benchmarks/results/<name>.json`` of the project (``root``: its root folder)."""
    return Path(root or project_root()) / BENCHMARK_RESULTS / f"{name}.json"


def read_benchmark(path: str | os.PathLike, required: set[str], what: str) -> dict | None:
    """A recorded benchmark (JSON), or ``None`` when it has not been run; ``ValueError``
    naming the file when it lacks a ``required`` key (``what`` names the record)."""
    path = Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    missing = required - set(record)
    if missing:
        raise ValueError(f"{path}: not {what} (missing {', '.join(sorted(missing))})")
    return dict(record)


def resolve_build_dir(build_dir: str | os.PathLike = DEFAULT_BUILD_DIR) -> Path:
    """Absolute build folder; a relative path is taken from the project root."""
    path = Path(build_dir)
    return path if path.is_absolute() else project_root() / path


def table_slug(name: str) -> str:
    """The file stem of a table: lower case, runs of other characters as ``_``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise ValueError(f"table name {name!r} has no usable characters")
    return slug


@dataclass(frozen=True)
class BuildPaths:
    """The outputs of one profile's build; ``root`` is the (absolute) build folder."""

    root: Path
    profile: str = "default"

    @classmethod
    def resolve(
        cls, build_dir: str | os.PathLike = DEFAULT_BUILD_DIR, profile: str = "default"
    ) -> BuildPaths:
        """Paths under ``build_dir`` (relative: from the project root)."""
        return cls(resolve_build_dir(build_dir), profile)

    # --- folders ---------------------------------------------------------------------------
    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def notebooks(self) -> Path:
        return self.site / "notebooks"

    @property
    def html(self) -> Path:
        return self.root / "html"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def models(self) -> Path:
        return self.root / "models"

    # --- outputs of the chapters -----------------------------------------------------------
    @property
    def audit_cache(self) -> Path:
        """Each series' data check, keyed on its files' bytes (00_data)."""
        return self.data / "audit.series"

    @property
    def geometry_cache(self) -> Path:
        """Each series' measured discs, keyed on its mask's bytes (02_geometry)."""
        return self.data / "geometry.series"

    @property
    def segmentation_cases(self) -> Path:
        """Training and validation series on the network grid, kept on disk and shared by
        the segmentation models, keyed on their files' bytes (01_segmentation)."""
        return self.data / "segmentation.cases"

    @property
    def phantom(self) -> Path:
        """The profile's phantom cohort (00_data, written on first use)."""
        return self.data / f"phantom-{self.profile}"

    def disc_store(self, source: str = "gt") -> Path:
        """Disc cubes of ground-truth (``gt``, 02_geometry) or predicted (``pred``) masks."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        return self.data / f"discs-{source}-{self.profile}.npz"

    @property
    def t2_disc_store(self) -> Path:
        """Disc cubes of the ground-truth masks of the T2 series (07_composition)."""
        return self.data / f"discs-t2-gt-{self.profile}.npz"

    @property
    def intensity_store(self) -> Path:
        """The T2 discs' normalised intensity cubes (07_composition), beside their store."""
        return self.data / f"intensity-t2-gt-{self.profile}.npz"

    @property
    def predictions(self) -> Path:
        """The segmentation chapter's predicted cohort (its ``masks/`` in SPIDER layout)."""
        return self.data / f"pred-{self.profile}"

    @property
    def predicted_masks(self) -> Path:
        return self.predictions / "masks"

    @property
    def segmentation_models(self) -> Path:
        return self.models / f"seg-{self.profile}"

    def segmentation_model(self, name: str) -> Path:
        """One trained segmentation model (``UNet``, ``SegResNet``, ``SwinUNETR``; 01_segmentation)."""
        return self.segmentation_models / name

    @property
    def autoencoder_models(self) -> Path:
        return self.models / "autoencoder" / self.profile

    def autoencoder(self, latent_dim: int) -> Path:
        """The sweep's autoencoder with bottleneck ``latent_dim`` (03_autoencoder)."""
        return self.autoencoder_models / f"k{latent_dim}"

    def autoencoder_variant(self, name: str) -> Path:
        """A further model beside the sweep's (``k4-seed1``, ``k4-noise-seed0``; 06_stability)."""
        return self.autoencoder_models / "variants" / name

    @property
    def prediction_features(self) -> Path:
        """One row per ground-truth disc with its geometry, latent code and gradings, as the
        prediction chapter fitted on them (04_prediction; read by the explorer app)."""
        return self.data / f"features-gt-{self.profile}.csv"

    def table(self, name: str) -> Path:
        """``<build>/tables/<slug>.csv`` for a table called ``name``."""
        return self.tables / f"{table_slug(name)}.csv"

    # --- reading what an earlier chapter wrote ---------------------------------------------
    def make_book_command(self) -> str:
        """The ``make book`` that writes this build: ``BUILD=`` is named when the build is
        not the project's default folder."""
        try:
            default: Path | None = resolve_build_dir(DEFAULT_BUILD_DIR)
        except FileNotFoundError:  # not inside a project checkout
            default = None
        build = "" if self.root == default else f" BUILD={self.root}"
        return f"make book PROFILE={self.profile}{build}"

    def require(self, path: Path, chapter: str) -> Path:
        """``path`` if it exists, else :class:`MissingOutputError` naming ``chapter``."""
        if not Path(path).exists():
            raise MissingOutputError(
                f"{path} is missing: it is written by the chapter {chapter}. Run "
                f"`{self.make_book_command()}` (or that chapter) first."
            )
        return Path(path)
