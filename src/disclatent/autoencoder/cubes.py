"""The disc cubes the model reads: from masks, from a disc store, at the model's size.

A cube is ``(S, S, S)`` uint8 in the order (SI, AP, LR), centred on the disc's centre of mass
(:mod:`disclatent.discs.isolation`). Cubes larger than the model's (e.g. the geometry
chapter's 48^3 store for a 32^3 model on the same grid) are cropped about their centre and
smaller ones zero-padded (:func:`fit_cubes`); disc voxels cut by a crop are reported with a
:class:`CropWarning`. :func:`discs_from_store` leaves such discs out instead, as isolating
them at the model's size would (:func:`load_discs`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from disclatent.autoencoder.config import AEConfig
from disclatent.discs.isolation import DiscWarning
from disclatent.discs.store import (
    DiscStore,
    build_disc_store,
    cached_disc_store,
    load_disc_store,
)


class CropWarning(UserWarning):
    """Disc voxels fell outside the model's central crop of a larger cube."""


def _as_cube_array(cubes: np.ndarray) -> np.ndarray:
    """``(n, S, S, S)`` from cubes or flattened cubes ``(n, S**3)``."""
    x = np.asarray(cubes)
    if x.ndim == 2:
        side = round(x.shape[1] ** (1 / 3)) if x.shape[1] else 0
        if side**3 != x.shape[1]:
            raise ValueError(f"expected cubes (n, S, S, S) or flattened (n, S^3); got {x.shape}")
        x = x.reshape(-1, side, side, side)
    if x.ndim != 4 or len(set(x.shape[1:])) != 1:
        raise ValueError(f"expected cubes of shape (n, S, S, S), got {x.shape}")
    return x


def voxels_outside_crop(cubes: np.ndarray, size: int) -> np.ndarray:
    """Per cube, the foreground voxels outside its central ``size``^3 crop (0 if smaller)."""
    x = _as_cube_array(cubes)
    side = x.shape[1]
    if side <= size:
        return np.zeros(len(x), np.int64)
    m = (side - size) // 2
    inner = x[:, m : m + size, m : m + size, m : m + size]
    return x.reshape(len(x), -1).sum(1) - inner.reshape(len(x), -1).sum(1)


def fit_cubes(cubes: np.ndarray, size: int) -> np.ndarray:
    """Cubes ``(n, S, S, S)`` (or flattened ``(n, S**3)``) brought to the model's ``size``.

    Disc cubes are centred on the disc's centre of mass, so a larger cube on the same grid
    (e.g. the isolation chapter's 48^3 store for a 32^3 model) is cropped about its centre
    and a smaller one zero-padded about its centre; ``S - size`` must be even. Disc voxels
    that fall outside a crop are reported with a :class:`CropWarning`, never dropped
    silently.
    """
    x = _as_cube_array(cubes)
    side = x.shape[1]
    if side == size:
        return x
    if len(x) == 0:
        return np.zeros((0, size, size, size), x.dtype)
    if (side - size) % 2:
        raise ValueError(
            f"cubes of {side}^3 cannot be centred in the model's {size}^3 "
            "(the difference must be even)"
        )
    m = abs(side - size) // 2
    if side > size:
        lost = voxels_outside_crop(x, size)
        if lost.any():
            warnings.warn(
                f"{int((lost > 0).sum())} of {len(x)} discs have voxels outside the "
                f"central {size}^3 crop of their {side}^3 cube (up to "
                f"{int(lost.max())} voxels each); they are cut",
                CropWarning,
                stacklevel=3,
            )
        return x[:, m : m + size, m : m + size, m : m + size]
    out = np.zeros((len(x), size, size, size), x.dtype)
    out[:, m : m + side, m : m + side, m : m + side] = x
    return out


@dataclass(frozen=True, eq=False)
class Discs:
    """Cubes ``(n, S, S, S)`` (SI, AP, LR) and their table (patient, series, IVD label ...)."""

    cubes: np.ndarray
    table: pd.DataFrame
    skipped: pd.DataFrame


def discs_from_store(store: DiscStore, config: AEConfig) -> Discs:
    """The discs of a disc store (e.g. the geometry chapter's) as the model's cubes.

    The store must be on the model's grid (``config.spacing_mm``); its cubes are cropped or
    padded about their centre to ``config.size`` (:func:`fit_cubes`). A disc with voxels
    outside the crop is left out with a :class:`~disclatent.discs.isolation.DiscWarning` and
    listed in ``skipped`` (never truncated), as :func:`load_discs` would leave it out.
    """
    if not np.allclose(store.spacing_mm, config.spacing_mm, rtol=0, atol=1e-9):
        raise ValueError(
            f"the disc store is on a {store.spacing_mm} mm grid, the model on "
            f"{config.spacing_mm} mm (SI, AP, LR): isolate the discs on the model's grid"
        )
    lost = voxels_outside_crop(store.cubes, config.size)
    keep = lost == 0
    table = store.table.reset_index(drop=True)
    skipped = store.skipped
    if not keep.all():
        cut = table.loc[~keep, ["series", "ivd_label"]].assign(
            reason=[
                f"does not fit the model's {config.size}^3 cube ({int(n)} voxels outside)"
                for n in lost[~keep]
            ]
        )
        for row in cut.itertuples(index=False):
            warnings.warn(
                f"skipped: {row.series} disc {row.ivd_label}: {row.reason}",
                DiscWarning,
                stacklevel=2,
            )
        skipped = pd.concat([skipped, cut], ignore_index=True) if len(skipped) else cut
    cubes = fit_cubes(store.cubes[keep], config.size)
    return Discs(cubes, table[keep].reset_index(drop=True), skipped.reset_index(drop=True))


def load_discs(
    masks: str | os.PathLike,
    config: AEConfig,
    store: str | os.PathLike | None = None,
    modalities: Sequence[str] | None = ("t1",),
    progress: bool = False,
) -> Discs:
    """Isolate the discs of ``masks`` (SPIDER folder, folder of masks or one file) into cubes
    of the model's size and spacing (:func:`disclatent.discs.store.build_disc_store`).

    The cube is the model's: ``config.size`` voxels at ``config.spacing_mm``, centred on the
    disc's centre of mass. A disc that does not fit is left out with a warning and listed in
    ``skipped`` (never truncated). With ``store`` the cubes are written there and reused
    while the masks and settings are unchanged.
    """
    if store is not None:
        ds = cached_disc_store(
            masks,
            store,
            spacing_mm=config.spacing_mm,
            size=config.size,
            progress=progress,
            modalities=modalities,
        )
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ds = load_disc_store(
                build_disc_store(
                    masks,
                    Path(tmp) / "discs.npz",
                    spacing_mm=config.spacing_mm,
                    size=config.size,
                    progress=progress,
                    modalities=modalities,
                    skip_errors=True,
                )
            )
    if len(ds.cubes) == 0:
        raise ValueError(
            f"{masks}: no disc could be isolated into a {config.size}^3 cube at "
            f"{config.spacing_mm} mm"
        )
    return Discs(ds.cubes, ds.table.reset_index(drop=True), ds.skipped)
