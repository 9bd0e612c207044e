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

(the same as :func:`disclatent.data.volume.to_canonical` gives, and as ``SimpleITK`` returns
an image with identity direction). ``spacing_mm`` is given **in this numpy order, (SI, AP,
LR)**. The paper's grid is reported in SPIDER's image-axis order (x = left-right, y =
anterior-posterior, z = superior-inferior); :data:`disclatent.conventions.PAPER_SPACING` holds
it in this order and is the default, with the paper's cube edge
:data:`disclatent.published.CUBE_SIZE`.

Anatomical directions come from the header's direction cosines, never from array position:
the disc voxels are mapped to LPS millimetres and the cube is a world-space resampling, so a
flipped, permuted or oblique (non-axis-aligned) header gives the same cube as an LPS one.
An oblique header is therefore handled, not refused; it is reported with an
:class:`ObliqueHeaderWarning` because the thick-slice axis then does not lie along an
anatomical axis.

Explicit choices on bad input
-----------------------------
* A disc that does not fit in the cube raises :class:`DiscDoesNotFitError` (never silent
  truncation). :func:`disclatent.discs.store.build_disc_store` can instead skip such discs
  with ``skip_errors=True``; it then warns and lists them in the store's ``skipped`` table.
* A disc with fewer than ``MIN_VOXELS`` voxels cannot be measured: :class:`EmptyDiscError`
  from the measuring functions; when a whole mask is processed it is skipped with an
  :class:`EmptyDiscWarning`. A mask in which no voxel carries any of the disc label values
  (wrong ``labels``/``label_offset``?) is also reported with an :class:`EmptyDiscWarning`.
  ``labels`` says which values are discs; a disc absent from one mask is not an error here
  (:func:`disclatent.discs.features.join_gradings` reports graded discs missing from the masks).
* A disc touching the border of the image volume is probably cut by the field of view: it is
  kept, reported with a :class:`DiscTouchesBorderWarning` and flagged in the
  ``touches_border`` column.

Method: ``book/method.md``, *Geometry* (isolating a disc); the cohort's cubes in one file:
:mod:`disclatent.discs.store`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from disclatent import published
from disclatent.conventions import PAPER_SPACING
from disclatent.data import labels as lab
from disclatent.data.volume import DataError, Volume, series_name
from disclatent.discs.numbering import NumberingError as NumberingError
from disclatent.discs.numbering import check_numbering, superior_mm

MIN_VOXELS = 8


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


class RenumberedWarning(DiscWarning):
    """A series' disc labels were read in another numbering than SPIDER's upward one (a
    reversal or an offset that its vertebra labels confirm; :mod:`disclatent.discs.numbering`)."""


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


def _warn_no_disc(mask: Volume, mapping: dict[int, int] | None) -> None:
    wanted = (
        "SPIDER's disc labels 201-225"
        if mapping is None
        else f"disc label values {_ranges(sorted(mapping))}"
    )
    warnings.warn(
        f"{mask.where}: no voxel carries {wanted}; no disc found (wrong label values?)",
        EmptyDiscWarning,
        stacklevel=3,
    )


def _checked(
    mask: Volume, ijk: dict[int, np.ndarray], mapping: dict[int, int], spider: bool, warn: bool
) -> dict[int, int]:
    """``mapping`` after :func:`~disclatent.discs.numbering.check_numbering` of the discs
    ``{value: voxel indices}``; a renumbering is reported as a :class:`RenumberedWarning`."""
    if not ijk:
        return mapping
    heights = {v: superior_mm(mask, idx) for v, idx in ijk.items()}
    numbering = check_numbering(mask, heights, mapping, spider_labels=spider)
    if numbering.note and warn:
        warnings.warn(numbering.note, RenumberedWarning, stacklevel=3)
    return {**mapping, **numbering.mapping}


def find_discs(
    mask: Volume,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    min_voxels: int = MIN_VOXELS,
    warn: bool = True,
    check_order: bool = True,
) -> list[DiscVoxels]:
    """The discs of ``mask`` (ordered by IVD label), with their voxels.

    Disc identity comes from the label value only (SPIDER: ``200 + k``, ``k = 1`` for
    L5/S1), never from position or connected components. ``labels``: ``None`` for values
    ``label_offset + 1 .. label_offset + 25`` (SPIDER's 201-225 by default), else mask values
    (IVD label ``value - label_offset``) or a ``{value: ivd_label}`` mapping. Discs with fewer than
    ``min_voxels`` voxels are skipped with an :class:`EmptyDiscWarning`; discs touching the
    volume border are kept and flagged.

    With ``check_order`` (the default) the labels are checked against anatomy
    (:func:`disclatent.discs.numbering.check_numbering`): IVD labels must rise from inferior
    to superior along the header's axis; SPIDER-labelled masks numbered from the other end,
    or offset from their vertebrae, are renumbered when the vertebra labels confirm it
    (:class:`RenumberedWarning`), otherwise :class:`~disclatent.discs.numbering.NumberingError`.
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
    mapping_used = (
        mapping
        if mapping is not None
        else {int(v): int(v) - lab.DISC_LABEL_OFFSET for v in present}
    )
    if warn:
        _check_header(mask) if len(present) else _warn_no_disc(mask, mapping)
    big = [(int(v), s, c) for v, s, c in zip(present, starts, counts, strict=True)]
    if check_order:
        spider = labels is None and mapping is None
        big_ijk = {v: ijk_all[s : s + c] for v, s, c in big if c >= min_voxels}
        mapping_used = _checked(mask, big_ijk, mapping_used, spider, warn)
    size = np.array(mask.size)
    out: list[DiscVoxels] = []
    for value, start, count in big:
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


def slice_aspects(spacing_mm: Sequence[float]) -> dict[str, float]:
    """Pixel aspect (height / width, for ``imshow(aspect=...)``) of each slice of
    :func:`central_slices` for a cube of ``spacing_mm`` (SI, AP, LR)."""
    sp_si, sp_ap, sp_lr = spacing_mm
    return {"sagittal": sp_si / sp_ap, "coronal": sp_si / sp_lr, "transverse": sp_ap / sp_lr}


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


def check_spacing(spacing_mm: Sequence[float], size: int) -> tuple[float, float, float]:
    """``spacing_mm`` as three positive floats (SI, AP, LR); ``ValueError`` for a bad spacing
    or a cube ``size`` that is not an integer of at least 4."""
    sp = tuple(float(s) for s in spacing_mm)
    if len(sp) != 3 or min(sp) <= 0:
        raise ValueError(
            f"spacing_mm must be three positive numbers (SI, AP, LR), got {spacing_mm}"
        )
    if int(size) != size or size < 4:
        raise ValueError(f"cube size must be an integer >= 4, got {size}")
    return sp


def isolate_disc(
    mask: Volume,
    disc: DiscVoxels,
    spacing_mm: Sequence[float] = PAPER_SPACING,
    size: int = published.CUBE_SIZE,
) -> IsolatedDisc:
    """Resample one disc (nearest neighbour) into a cube centred on its centre of mass.

    Only the block of the cube that can hold the disc is resampled (the rest is zero), so
    this is fast; the block is computed without clipping to the cube, so a disc that does
    not fit raises :class:`DiscDoesNotFitError` instead of being truncated.
    """
    spacing_mm = check_spacing(spacing_mm, size)
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
    spacing_mm: Sequence[float] = PAPER_SPACING,
    size: int = published.CUBE_SIZE,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    *,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    discs: list[DiscVoxels] | None = None,
) -> list[IsolatedDisc]:
    """Every disc of ``mask`` as an :class:`IsolatedDisc` (ordered by IVD label).

    ``spacing_mm`` and the cube are in canonical numpy order (SI, AP, LR); the default is the
    paper's grid (:data:`~disclatent.conventions.PAPER_SPACING`). ``labels``:
    ``None`` for every SPIDER disc label present, else mask values (IVD label
    ``value - label_offset``) or a ``{value: ivd_label}`` mapping. ``discs`` lets a caller
    reuse the result of :func:`find_discs`.
    """
    if discs is None:
        discs = find_discs(mask, labels, label_offset)
    return [isolate_disc(mask, d, spacing_mm, size) for d in discs]


def isolate_level(
    mask: Volume,
    level: str,
    spacing_mm: Sequence[float] = PAPER_SPACING,
    size: int = published.CUBE_SIZE,
) -> IsolatedDisc:
    """The disc of ``mask`` at spinal ``level`` (e.g. ``"L4/L5"``) as an :class:`IsolatedDisc`;
    the mask's lowest disc when it has none at that level."""
    discs = {d.level: d for d in find_discs(mask)}
    if not discs:
        raise EmptyDiscError(f"{mask.where}: no disc to isolate")
    return isolate_disc(mask, discs.get(level, next(iter(discs.values()))), spacing_mm, size)
