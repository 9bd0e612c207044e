"""The cohort a run reads: a SPIDER-format folder given by the user, or the profile's phantom."""

from __future__ import annotations

import os
from pathlib import Path

from disclatent.data.phantom import phantom_is_current, write_phantom
from disclatent.paths import DEFAULT_BUILD_DIR, BuildPaths
from disclatent.profiles import get_profile


def cohort_root(
    profile: str = "default",
    data_dir: str | os.PathLike = "",
    build_dir: str | os.PathLike = DEFAULT_BUILD_DIR,
    seed: int | None = None,
) -> Path:
    """The SPIDER-format folder a chapter reads: ``data_dir`` if given, else the profile's
    phantom cohort (:attr:`disclatent.paths.BuildPaths.phantom`), written first if missing or
    out of date."""
    if data_dir:
        root = Path(data_dir).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: data folder not found")
        return root
    cfg = get_profile(profile)
    seed = cfg.phantom_seed if seed is None else seed
    root = BuildPaths.resolve(build_dir, profile).phantom
    if not phantom_is_current(root, cfg.n_patients, seed):
        write_phantom(root, n_patients=cfg.n_patients, seed=seed)
    return root
