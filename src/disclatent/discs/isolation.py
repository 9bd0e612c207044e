"""Disc isolation: one binary cube per disc, in one canonical anatomical orientation.

Every disc label of a mask becomes an :class:`IsolatedDisc`: a binary cube holding only that
disc (its neighbours and the vertebrae are removed), centred on the disc's centre of mass and
zero-padded to ``size`` voxels along each axis, resampled with **nearest neighbour** (label
maps are never interpolated linearly: that dilates them).

Axis order and spacing of the cube
----------------------------------
The cube is sampled on a grid aligned with the patient (LPS world axes), whatever the input
file's header says, so numpy axes are always::

    cube[si, ap, lr]   index growing towards Superior, Posterior, Left

(the same as :func:`disclatent.data.volume.to_canonical` gives, and as ``SimpleITK`` returns an image
with identity direction). ``spacing_mm`` is given **in this numpy order, (SI, AP, LR)**.
The paper resamples to "1.4 x 1.2 x 1.5 mm"; read in SPIDER's image-axis order (x = left-right,
y = anterior-posterior, z = superior-inferior) that is LR 1.4 mm, AP 1.2 mm, SI 1.5 mm, hence
the default ``spacing_mm=(1.5, 1.2, 1.4)``. A 64-voxel cube then spans 96 mm (SI) x 76.8 mm
(AP) x 89.6 mm (LR).

Anatomical directions come from the header's direction cosines, never from array position:
the disc voxels are mapped to LPS millimetres and the cube is a world-space resampling, so a
flipped, permuted or oblique (non-axis-aligned) header gives the same cube as an LPS one.
An oblique header is therefore handled, not refused; it is reported with an
:class:`ObliqueHeaderWarning` because the thick-slice axis then does not lie along an
anatomical axis.

Explicit choices on bad input
-----------------------------
* A disc that does not fit in the cube raises :class:`DiscDoesNotFitError` (never silent
  truncation). :func:`build_disc_store` can instead skip such discs with ``skip_errors=True``;
  it then warns and lists them in the store's ``skipped`` table.
* A disc with fewer than ``MIN_VOXELS`` voxels cannot be measured: :class:`EmptyDiscError`
  from the measuring functions; when a whole mask is processed it is skipped with an
  :class:`EmptyDiscWarning`. A mask in which no voxel carries any of the disc label values
  (wrong ``labels``/``label_offset``?) is also reported with an :class:`EmptyDiscWarning`.
  ``labels`` says which values are discs; a disc absent from one mask is not an error here
  (:func:`disclatent.discs.geometry.join_gradings` reports graded discs missing from the masks).
* A disc touching the border of the image volume is probably cut by the field of view: it is
  kept, reported with a :class:`DiscTouchesBorderWarning` and flagged in the
  ``touches_border`` column.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from disclatent import published
from disclatent.conventions import PAPER_SPACING
from disclatent.data import labels as lab
from disclatent.data.volume import (
    DataError,
    Volume,
    atomic_path,
    list_images,
    read_mask,
    series_name,
)
from disclatent.paths import SOURCES

PAPER_SPACING_MM = PAPER_SPACING  # (SI, AP, LR), the published grid
PAPER_CUBE_SIZE = published.CUBE_SIZE
MIN_VOXELS = 8
STORE_VERSION = 1


STORE_COLUMNS = [
    "patient",
    "series",
    "ivd_label",
    "level",
    "source",
    "spacing_si_mm",
    "spacing_ap_mm",
    "spacing_lr_mm",
    "centre_x_mm",
    "centre_y_mm",
    "centre_z_mm",
    "n_voxels",
    "volume_mm3",
    "touches_border",
    "mask_path",
]


class DiscDoesNotFitError(DataError):
    """A disc is larger than the cube it should be isolated into."""


class EmptyDiscError(DataError):
    """A disc has too few voxels to be isolated or measured."""


class DiscWarning(UserWarning):
    """Base class of the warnings about individual discs or mask headers."""


class EmptyDiscWarning(DiscWarning):
    pass


class DiscTouchesBorderWarning(DiscWarning):
    pass


class ObliqueHeaderWarning(DiscWarning):
    pass


# ---------------------------------------------------------------------------------------
# Finding the discs of a mask
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DiscVoxels:
    """The voxels of one disc label in its mask (index order (i, j, k), as in ``Volume``)."""

    value: int  # mask value, e.g. 203
    ivd_label: int  # 3
    level: str  # "L3/L4"
    ijk: np.ndarray  # (n, 3) int index coordinates
    touches_border: bool

    @property
    def n_voxels(self) -> int:
        return int(len(self.ijk))


def label_map(
    labels: Iterable[int] | Mapping[int, int] | None = None, offset: int = lab.DISC_LABEL_OFFSET
) -> dict[int, int] | None:
    """``{mask value: IVD label}``; ``None`` means every SPIDER disc label (201-225).

    ``labels`` may be a mapping (explicit IVD labels) or mask values, whose IVD label is
    ``value - offset`` (SPIDER: offset 200, 201 = L5/S1).
    """
    if labels is None:
        return None
    if isinstance(labels, Mapping):
        out = {int(v): int(k) for v, k in labels.items()}
    else:
        out = {int(v): int(v) - offset for v in labels}
    for value, ivd in out.items():
        if not 1 <= ivd <= lab.MAX_INDEX:
            raise ValueError(
                f"mask value {value} gives IVD label {ivd}, outside 1..{lab.MAX_INDEX}"
                f" (label offset {offset})"
            )
    return out


def parse_label_spec(text: str) -> list[int]:
    """ "201-207,210" -> [201, ..., 207, 210] (for the command line)."""
    values: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            if hi < lo:
                raise ValueError(f"empty label range {part!r}")
            values.extend(range(lo, hi + 1))
        else:
            values.append(int(part))
    if not values:
        raise ValueError(f"no label values in {text!r}")
    return values


def _ranges(values: list[int]) -> str:
    """[201, 202, 203, 207] -> "201-203, 207"."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def _check_header(mask: Volume) -> None:
    if not mask.is_axis_aligned():
        dev = np.degrees(np.arccos(np.clip(np.max(np.abs(mask.direction), axis=0), -1, 1))).max()
        warnings.warn(
            f"{mask.where}: direction is not axis-aligned (oblique by up to {dev:.1f} deg, "
            f"closest orientation {mask.orientation}); discs are measured in world (LPS) "
            "millimetres and cubes are resampled onto an LPS-aligned grid",
            ObliqueHeaderWarning,
            stacklevel=3,
        )


def find_discs(
    mask: Volume,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    min_voxels: int = MIN_VOXELS,
    warn: bool = True,
) -> list[DiscVoxels]:
    """The discs of ``mask`` (ordered by IVD label), with their voxels.

    Disc identity comes from the label value only (SPIDER: ``200 + k``, ``k = 1`` for
    L5/S1), never from position or connected components. ``labels``: ``None`` for values
    ``label_offset + 1 .. label_offset + 25`` (SPIDER's 201-225 by default), else mask values
    (IVD label ``value - label_offset``) or a ``{value: ivd_label}`` mapping. Discs with fewer than
    ``min_voxels`` voxels are skipped with an :class:`EmptyDiscWarning`; discs touching the
    volume border are kept and flagged.
    """
    if labels is None and label_offset != lab.DISC_LABEL_OFFSET:
        labels = range(label_offset + 1, label_offset + lab.MAX_INDEX + 1)
    mapping = label_map(labels, label_offset)
    arr = mask.array
    if mapping is None:
        candidates = (arr > lab.DISC_LABEL_OFFSET) & (arr <= lab.DISC_LABEL_OFFSET + lab.MAX_INDEX)
    else:
        candidates = np.isin(arr, np.fromiter(mapping, int))
    kk, jj, ii = np.nonzero(candidates)
    values = arr[kk, jj, ii].astype(np.int64)
    order = np.argsort(values, kind="stable")
    values = values[order]
    ijk_all = np.stack([ii[order], jj[order], kk[order]], axis=1)
    present, starts, counts = np.unique(values, return_index=True, return_counts=True)
    if mapping is None:
        mapping_used = {int(v): int(v) - lab.DISC_LABEL_OFFSET for v in present}
    else:
        mapping_used = mapping
    if warn and not len(present):
        wanted = (
            "SPIDER's disc labels 201-225"
            if mapping is None
            else f"disc label values {_ranges(sorted(mapping))}"
        )
        warnings.warn(
            f"{mask.where}: no voxel carries {wanted}; no disc found (wrong label values?)",
            EmptyDiscWarning,
            stacklevel=2,
        )
    if warn and len(present):
        _check_header(mask)
    size = np.array(mask.size)
    out: list[DiscVoxels] = []
    for value, start, count in zip(present, starts, counts, strict=True):
        ivd = mapping_used[int(value)]
        level = lab.level_name(ivd)
        if count < min_voxels:
            if warn:
                warnings.warn(
                    f"{mask.where}: disc label {value} ({level}) has only {count} "
                    f"voxel(s), fewer than {min_voxels}: too small to isolate or "
                    "measure; skipped",
                    EmptyDiscWarning,
                    stacklevel=2,
                )
            continue
        ijk = ijk_all[start : start + count]
        border = bool((ijk.min(axis=0) == 0).any() or (ijk.max(axis=0) == size - 1).any())
        if border and warn:
            warnings.warn(
                f"{mask.where}: disc label {value} ({level}) touches the border of "
                "the image volume and may be cut by the field of view; kept and "
                "flagged touches_border",
                DiscTouchesBorderWarning,
                stacklevel=2,
            )
        out.append(DiscVoxels(int(value), ivd, level, ijk, border))
    return sorted(out, key=lambda d: d.ivd_label)


def central_slices(cube: np.ndarray) -> dict[str, np.ndarray]:
    """Central sagittal (SI x AP), coronal (SI x LR) and transverse (AP x LR) slices of a
    volume in (SI, AP, LR) order, each through the middle of its own axis (non-cubic input
    too); shown with ``origin="lower"``: superior up, anterior left, the patient's left right."""
    s, a, lr = (n // 2 for n in cube.shape)
    return {"sagittal": cube[:, :, lr], "coronal": cube[:, a, :], "transverse": cube[s, :, :]}


def voxel_centres_mm(mask: Volume, ijk: np.ndarray) -> np.ndarray:
    """LPS world millimetres of index coordinates ``(n, 3)`` of ``mask``."""
    m = mask.direction * np.asarray(mask.spacing)[None, :]
    return np.asarray(ijk, float) @ m.T + np.asarray(mask.origin)


# ---------------------------------------------------------------------------------------
# Isolating one disc into a cube
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class IsolatedDisc:
    """One disc as a binary cube ``cube[si, ap, lr]`` (uint8, 0/1) centred on its centroid.

    ``spacing_mm`` is in the cube's numpy order (SI, AP, LR); ``centre_mm`` is the disc's
    centre of mass (mean of its voxel centres in the source mask) in LPS world millimetres,
    which is also the centre of the cube (between voxels ``size/2 - 1`` and ``size/2``).
    """

    ivd_label: int
    level: str
    cube: np.ndarray
    spacing_mm: tuple[float, float, float]
    centre_mm: np.ndarray
    source_path: Path | None
    mask_value: int
    n_voxels: int  # voxels of the disc in the source mask
    volume_mm3: float  # volume in the source mask (voxels x voxel volume)
    touches_border: bool

    @property
    def size(self) -> int:
        return int(self.cube.shape[0])

    @property
    def series(self) -> str:
        return series_name(self.source_path) if self.source_path is not None else ""

    def cube_origin_mm(self) -> np.ndarray:
        """LPS position of voxel ``cube[0, 0, 0]``."""
        return cube_origin(self.centre_mm, self.size, self.spacing_mm)

    def cube_index_to_world(self, sal: np.ndarray) -> np.ndarray:
        """Cube numpy indices ``(..., 3)`` in (si, ap, lr) order to LPS millimetres."""
        sal = np.asarray(sal, float)
        xyz = sal[..., ::-1] * np.asarray(self.spacing_mm)[::-1]
        return xyz + self.cube_origin_mm()


def cube_origin(centre_mm: np.ndarray, size: int, spacing_mm: Sequence[float]) -> np.ndarray:
    """LPS position of the first voxel of a cube centred on ``centre_mm``."""
    sp_xyz = np.asarray(spacing_mm, float)[::-1]  # (LR, AP, SI) = LPS x, y, z
    return np.asarray(centre_mm, float) - (size - 1) / 2.0 * sp_xyz


def _check_spacing(spacing_mm: Sequence[float], size: int) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing_mm)
    if len(sp) != 3 or min(sp) <= 0:
        raise ValueError(
            f"spacing_mm must be three positive numbers (SI, AP, LR), got {spacing_mm}"
        )
    if int(size) != size or size < 4:
        raise ValueError(f"cube size must be an integer >= 4, got {size}")
    return sp  # type: ignore[return-value]


def isolate_disc(
    mask: Volume,
    disc: DiscVoxels,
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    size: int = PAPER_CUBE_SIZE,
) -> IsolatedDisc:
    """Resample one disc (nearest neighbour) into a cube centred on its centre of mass.

    Only the block of the cube that can hold the disc is resampled (the rest is zero), so
    this is fast; the block is computed without clipping to the cube, so a disc that does
    not fit raises :class:`DiscDoesNotFitError` instead of being truncated.
    """
    spacing_mm = _check_spacing(spacing_mm, size)
    sp_xyz = np.asarray(spacing_mm)[::-1]
    centres = voxel_centres_mm(mask, disc.ijk)
    centre = centres.mean(axis=0)
    origin = cube_origin(centre, size, spacing_mm)
    # bounding box of the disc's voxel boxes, in continuous cube index (x, y, z) coordinates
    half_box = 0.5 * np.abs(mask.direction) @ np.asarray(mask.spacing)
    lo_mm, hi_mm = centres.min(axis=0) - half_box, centres.max(axis=0) + half_box
    lo = np.floor((lo_mm - origin) / sp_xyz).astype(int) - 1
    hi = np.ceil((hi_mm - origin) / sp_xyz).astype(int) + 1
    # source sub-volume: the disc's bounding box plus a one-voxel margin of zeros
    i0 = disc.ijk.min(axis=0) - 1
    i1 = disc.ijk.max(axis=0) + 2
    sub = np.zeros(tuple((i1 - i0)[::-1]), np.uint8)
    rel = disc.ijk - i0
    sub[rel[:, 2], rel[:, 1], rel[:, 0]] = 1
    img = sitk.GetImageFromArray(sub)
    img.SetSpacing(mask.spacing)
    img.SetOrigin(tuple(mask.index_to_world(i0.astype(float))))
    img.SetDirection(mask.direction.flatten(order="C").tolist())
    block_size = (hi - lo + 1).astype(int)
    block = sitk.Resample(
        img,
        [int(n) for n in block_size],
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        tuple(origin + lo * sp_xyz),
        tuple(float(s) for s in sp_xyz),
        (1, 0, 0, 0, 1, 0, 0, 0, 1),
        0,
        sitk.sitkUInt8,
    )
    barr = sitk.GetArrayViewFromImage(block)  # (z, y, x) = (si, ap, lr)
    nz = np.nonzero(barr)
    if len(nz[0]) == 0:
        raise EmptyDiscError(
            f"{mask.where}: disc {disc.level} vanished when resampled to "
            f"{spacing_mm} mm (only {disc.n_voxels} voxels)"
        )
    lo_sal = lo[::-1]
    first = np.array([n.min() for n in nz]) + lo_sal
    last = np.array([n.max() for n in nz]) + lo_sal
    if (first < 0).any() or (last > size - 1).any():
        extent = (last - first + 1) * np.asarray(spacing_mm)
        raise DiscDoesNotFitError(
            f"{mask.where}: disc {disc.level} (label {disc.value}) does not fit in a {size}^3 "
            f"cube at {spacing_mm} mm (SI, AP, LR): it spans "
            f"{' x '.join(f'{e:.1f}' for e in extent)} mm from its centre of mass, the cube "
            f"{' x '.join(f'{size * s:.1f}' for s in spacing_mm)} mm; use a larger size or "
            "spacing (or skip_errors=True in build_disc_store)"
        )
    cube = np.zeros((size, size, size), np.uint8)
    src = tuple(slice(max(0, -lo_sal[a]), min(barr.shape[a], size - lo_sal[a])) for a in range(3))
    dst = tuple(slice(s.start + lo_sal[a], s.stop + lo_sal[a]) for a, s in enumerate(src))
    cube[dst] = barr[src]
    return IsolatedDisc(
        ivd_label=disc.ivd_label,
        level=disc.level,
        cube=cube,
        spacing_mm=spacing_mm,
        centre_mm=centre,
        source_path=mask.path,
        mask_value=disc.value,
        n_voxels=disc.n_voxels,
        volume_mm3=disc.n_voxels * mask.voxel_volume_mm3,
        touches_border=disc.touches_border,
    )


def isolate_discs(
    mask: Volume,
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    size: int = PAPER_CUBE_SIZE,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    *,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    discs: list[DiscVoxels] | None = None,
) -> list[IsolatedDisc]:
    """Every disc of ``mask`` as an :class:`IsolatedDisc` (ordered by IVD label).

    ``spacing_mm`` and the cube are in canonical numpy order (SI, AP, LR): the default
    (1.5, 1.2, 1.4) is the paper's 1.4 x 1.2 x 1.5 mm read as (LR, AP, SI). ``labels``:
    ``None`` for every SPIDER disc label present, else mask values (IVD label
    ``value - label_offset``) or a ``{value: ivd_label}`` mapping. ``discs`` lets a caller
    reuse the result of :func:`find_discs`.
    """
    if discs is None:
        discs = find_discs(mask, labels, label_offset)
    return [isolate_disc(mask, d, spacing_mm, size) for d in discs]


# ---------------------------------------------------------------------------------------
# A cohort's discs in one file
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DiscStore:
    """Cubes ``(n, S, S, S)`` uint8 in (SI, AP, LR) order and their table (same row order)."""

    cubes: np.ndarray
    table: pd.DataFrame
    spacing_mm: tuple[float, float, float]
    size: int
    skipped: pd.DataFrame
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.cubes.shape[0])


def mask_files(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    modalities: Sequence[str] | None = ("t1",),
) -> list[Path]:
    """Mask files from a SPIDER folder (its ``masks/``), a folder of masks, one file or a list.

    ``modalities`` filters SPIDER-named series (``<patient>_t1`` ...) when a folder is given;
    files whose names do not follow SPIDER's pattern are always kept. ``None``: all.
    """
    from disclatent.data.spider import parse_series

    if isinstance(masks, str | os.PathLike):
        path = Path(masks)
        if path.is_dir():
            folder = path / "masks" if (path / "masks").is_dir() else path
            files = list_images(folder)
            if modalities is not None:
                wanted = {m.lower() for m in modalities}
                files = [
                    f for f in files if parse_series(series_name(f))[1].lower() in wanted | {""}
                ]
            if not files:
                raise DataError(
                    f"{folder}: no mask files (.mha, .nii.gz, ...)"
                    + (f" of modality {', '.join(modalities)}" if modalities else "")
                )
            return files
        if not path.exists():
            raise DataError(f"{path}: mask file or folder not found")
        return [path]
    files = [Path(p) for p in masks]
    if not files:
        raise ValueError("empty list of mask files")
    return files


def _progress(items: Sequence, enabled: bool, desc: str):
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="mask")


def build_disc_store(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    source: str = "gt",
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    size: int = PAPER_CUBE_SIZE,
    progress: bool = True,
    *,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    modalities: Sequence[str] | None = ("t1",),
    skip_errors: bool = False,
) -> Path:
    """Isolate every disc of ``masks`` and write them to one compressed ``.npz`` (atomically).

    The file holds the cubes bit-packed, the table (:data:`STORE_COLUMNS`, one row per cube)
    and the settings; read it with :func:`load_disc_store`. ``source`` is ``"gt"`` for
    reference masks and ``"pred"`` for segmentations. With ``skip_errors`` a disc that does
    not fit or cannot be read is left out with a warning (listed in ``DiscStore.skipped``);
    otherwise the first such error is raised.
    """
    from disclatent.data.spider import parse_series

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    spacing_mm = _check_spacing(spacing_mm, size)
    files = mask_files(masks, modalities)
    cubes: list[np.ndarray] = []
    rows: list[dict] = []
    skipped: list[dict] = []
    for path in _progress(files, progress, "isolating discs"):
        series = series_name(path)
        patient = parse_series(series)[0]
        try:
            mask = read_mask(path, allow_unknown_labels=label_offset != lab.DISC_LABEL_OFFSET)
            found = find_discs(mask, labels, label_offset)
        except DataError as exc:
            if not skip_errors:
                raise
            warnings.warn(f"skipped: {exc}", DiscWarning, stacklevel=2)
            skipped.append({"series": series, "ivd_label": np.nan, "reason": str(exc)})
            continue
        for disc in found:
            try:
                iso = isolate_disc(mask, disc, spacing_mm, size)
            except DataError as exc:
                if not skip_errors:
                    raise
                warnings.warn(f"skipped: {exc}", DiscWarning, stacklevel=2)
                skipped.append({"series": series, "ivd_label": disc.ivd_label, "reason": str(exc)})
                continue
            cubes.append(iso.cube)
            rows.append(
                {
                    "patient": patient,
                    "series": series,
                    "ivd_label": iso.ivd_label,
                    "level": iso.level,
                    "source": source,
                    "spacing_si_mm": spacing_mm[0],
                    "spacing_ap_mm": spacing_mm[1],
                    "spacing_lr_mm": spacing_mm[2],
                    "centre_x_mm": iso.centre_mm[0],
                    "centre_y_mm": iso.centre_mm[1],
                    "centre_z_mm": iso.centre_mm[2],
                    "n_voxels": iso.n_voxels,
                    "volume_mm3": iso.volume_mm3,
                    "touches_border": iso.touches_border,
                    "mask_path": str(path),
                }
            )
    table = pd.DataFrame(rows, columns=STORE_COLUMNS)
    stack = np.stack(cubes) if cubes else np.zeros((0, size, size, size), np.uint8)
    return write_disc_store(
        stack,
        table,
        out_path,
        spacing_mm,
        pd.DataFrame(skipped, columns=["series", "ivd_label", "reason"]),
    )


def write_disc_store(
    cubes: np.ndarray,
    table: pd.DataFrame,
    out_path: str | os.PathLike,
    spacing_mm: Sequence[float],
    skipped: pd.DataFrame | None = None,
) -> Path:
    """Write cubes ``(n, S, S, S)`` and their table to a compressed ``.npz`` atomically."""
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"{out_path}: a disc store is an .npz file")
    cubes = np.asarray(cubes)
    if cubes.ndim != 4 or len(set(cubes.shape[1:])) != 1:
        raise ValueError(f"cubes must have shape (n, S, S, S), got {cubes.shape}")
    if len(table) != len(cubes):
        raise ValueError(f"table has {len(table)} rows for {len(cubes)} cubes")
    if cubes.dtype != bool and not ((cubes == 0) | (cubes == 1)).all():
        raise ValueError("cubes must be binary (0/1)")
    skipped = (
        skipped if skipped is not None else pd.DataFrame(columns=["series", "ivd_label", "reason"])
    )
    meta = {
        "version": STORE_VERSION,
        "size": int(cubes.shape[1]) if cubes.ndim == 4 else 0,
        "n": int(len(cubes)),
        "spacing_mm": [float(s) for s in spacing_mm],
        "axes": "SI,AP,LR (index grows to superior, posterior, left)",
    }
    import json

    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                cubes=np.packbits(cubes.astype(bool), axis=None),
                table=np.array(table.reset_index(drop=True).to_json(orient="split")),
                skipped=np.array(skipped.to_json(orient="split")),
                meta=np.array(json.dumps(meta)),
            )
    return out_path


def cached_disc_store(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    source: str = "gt",
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    size: int = PAPER_CUBE_SIZE,
    progress: bool = False,
    modalities: Sequence[str] | None = ("t1",),
) -> DiscStore:
    """:func:`build_disc_store` (skipping discs that do not fit, with a warning), reused while
    the mask files (paths, sizes, modification times) and the cube settings are unchanged.

    The key sits beside the store in ``<out_path>.key``; a changed mask, a new segmentation
    or another grid rebuilds the store.
    """
    import hashlib
    import json

    from disclatent.data.volume import write_text_atomic

    files = mask_files(masks, modalities)
    key = hashlib.sha256(
        json.dumps(
            {
                "files": [
                    [str(Path(f).resolve()), Path(f).stat().st_mtime_ns, Path(f).stat().st_size]
                    for f in files
                ],
                "source": source,
                "size": int(size),
                "spacing": [float(s) for s in spacing_mm],
            }
        ).encode()
    ).hexdigest()[:16]
    path = Path(out_path)
    stamp = path.with_suffix(".key")
    if path.exists() and stamp.exists() and stamp.read_text() == key:
        return load_disc_store(path)
    stamp.unlink(missing_ok=True)
    build_disc_store(
        files,
        path,
        source=source,
        spacing_mm=spacing_mm,
        size=size,
        progress=progress,
        modalities=None,
        skip_errors=True,
    )
    write_text_atomic(key, stamp)
    return load_disc_store(path)


def load_disc_store(path: str | os.PathLike) -> DiscStore:
    """Read a file written by :func:`build_disc_store`."""
    import io as _io
    import json

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: disc store not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            packed = z["cubes"]
            table = pd.read_json(
                _io.StringIO(str(z["table"])),
                orient="split",
                dtype={"patient": str, "series": str, "mask_path": str},
            )
            skipped = pd.read_json(_io.StringIO(str(z["skipped"])), orient="split")
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable disc store: {exc}") from exc
    if meta.get("version") != STORE_VERSION:
        raise DataError(
            f"{path}: disc store version {meta.get('version')}, expected "
            f"{STORE_VERSION}; rebuild it"
        )
    n, s = meta["n"], meta["size"]
    cubes = (
        np.unpackbits(packed, count=n * s**3).reshape(n, s, s, s)
        if n
        else np.zeros((0, s, s, s), np.uint8)
    )
    if "patient" in table:
        table["patient"] = table["patient"].astype(str)
    if len(table) != n:
        raise DataError(f"{path}: table has {len(table)} rows for {n} cubes")
    return DiscStore(
        cubes=cubes,
        table=table,
        spacing_mm=tuple(meta["spacing_mm"]),
        size=s,
        skipped=skipped,
        path=path,
    )
