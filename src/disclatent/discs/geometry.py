"""Geometric features of intervertebral discs, in millimetres and degrees.

Everything is computed in physical (LPS world) millimetres from the header's spacing and
direction cosines, so the array order and the anisotropic voxels of the source file do not
matter. The definitions follow the paper, made precise (they are the definitions of the
phantom's truth, :mod:`disclatent.data.phantom`):

**Disc frame (PCA).** The covariance of the disc's voxel centres, plus the covariance of one
voxel box (``D diag(s^2/12) D^T``, which removes the bias of thick slices), gives three
principal axes: the smallest-variance axis is the disc **normal** ``n`` (oriented towards
superior); of the other two, the one closer to the left-right axis is the **lateral axis**
``u`` (oriented towards the left), and ``v = n x u`` is the **antero-posterior axis**
(towards posterior). The disc's **mid-plane** passes through the centroid, spanned by
``u`` and ``v``.

**Angles** (degrees) of the principal axes seen in the scanner planes:

* ``sagittal_angle_deg``: the line where the mid-plane cuts the sagittal (y-z) plane, against
  the anterior horizontal; positive when the anterior edge is superior (L5/S1 is negative in
  lordosis): ``atan2(n_y, n_z)``.
* ``coronal_angle_deg``: the line where the mid-plane cuts the coronal (x-z) plane, against
  the left-right axis; positive when the left edge is superior: ``atan2(-n_x, n_z)``.
* ``transverse_angle_deg``: the lateral axis ``u`` projected on the transverse (x-y) plane,
  against the left-right axis; positive when the left edge is posterior: ``atan2(u_y, u_x)``.

The paper measures the coronal and transverse angles "against the vertical axis" of the
image; that is 90 degrees minus these deviations from neutral, which are easier to read and
centred on zero. Unlike the paper (2-D PCA of single middle slices, kept for comparison in
:func:`slice_pca_angles`), the frame comes from a 3-D PCA of all disc voxels: it uses every
voxel, not one slice of them, and the transverse slice of a tilted disc is a strip whose long
axis is where the mid-plane cuts that slice, not the disc's lateral axis (on the phantom
the slice-wise transverse angle is off by up to 20 degrees and more).

**Sizes** on the disc's mid-plane section, sampled (nearest neighbour) every ``step_mm``:

* ``height_mm``: mean thickness along ``n`` over the disc's footprint, i.e. volume divided by
  the area of the mid-plane section (the footprint of a disc whose two endplates lie on
  either side of its mid-plane).
* ``ap_width_mm``: edge to edge along ``v`` on the line through the centroid (the middle
  sagittal slice of the aligned disc).
* ``lateral_width_mm``: edge to edge along ``u`` on the line through the centroid (the middle
  transverse slice of the aligned disc).
* ``volume_mm3``: number of voxels times the voxel volume.

The thick slices of sagittal series (3-4.4 mm left-right) limit the lateral width most:
each lateral edge is known to within half a slice.

Method: ``book/method.md``, *Geometry*. This module measures one disc (or cube);
:mod:`disclatent.discs.features` measures cohorts into the geometry table, and
:mod:`disclatent.discs.validation` checks the measurements against the phantom's truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from disclatent.conventions import GEOMETRY_FEATURES, PAPER_SPACING
from disclatent.data.volume import DataError, Volume
from disclatent.discs.isolation import MIN_VOXELS, DiscVoxels, EmptyDiscError, voxel_centres_mm

DEFAULT_STEP_MM = 0.25


# ---------------------------------------------------------------------------------------
# The measurement
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _Grid:
    """A binary array ``(k, j, i)`` placed in LPS millimetres, for nearest-neighbour lookups."""

    inside: np.ndarray
    spacing: np.ndarray  # (i, j, k)
    origin: np.ndarray
    direction: np.ndarray

    def lookup_plane(
        self, centre: np.ndarray, u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray
    ) -> np.ndarray:
        """Nearest-neighbour values at ``centre + a[i] u + b[j] v`` (False outside the grid):
        an ``(len(a), len(b))`` array, computed axis by axis (separable, so fast)."""
        to_index = self.direction / self.spacing[None, :]
        base = (np.asarray(centre) - self.origin) @ to_index
        du, dv = u @ to_index, v @ to_index
        nk, nj, ni = self.inside.shape
        ok = np.ones((len(a), len(b)), bool)
        flat = np.zeros((len(a), len(b)), np.int64)
        a, b = a[:, None], b[None, :]
        for axis, (n, stride) in enumerate(((ni, 1), (nj, ni), (nk, ni * nj))):
            idx = np.rint(base[axis] + a * du[axis] + b * dv[axis]).astype(np.int64)
            ok &= (idx >= 0) & (idx < n)
            flat += idx * stride
        flat[~ok] = 0
        return self.inside.ravel()[flat] & ok


@dataclass(frozen=True, eq=False)
class DiscGeometry:
    """The features of one disc and what they were measured from (LPS millimetres)."""

    features: dict[str, float]
    centroid_mm: np.ndarray
    frame: np.ndarray  # columns u (lateral, to left), v (AP, to posterior), n (to superior)
    axis_lengths_mm: np.ndarray  # equivalent-ellipsoid full lengths, largest first
    ap_segment_mm: np.ndarray  # (2, 3) anterior and posterior edge points
    lateral_segment_mm: np.ndarray  # (2, 3) right and left edge points
    section_area_mm2: float
    n_voxels: int
    extra: dict = field(default_factory=dict)


def angles_from_frame(frame: np.ndarray) -> dict[str, float]:
    """Sagittal, coronal and transverse angles (degrees) of a disc frame (columns u, v, n)."""
    u, n = frame[:, 0], frame[:, 2]
    if n[2] < 0:
        n = -n
    if u[0] < 0:
        u = -u
    return {
        "sagittal_angle_deg": float(np.degrees(np.arctan2(n[1], n[2]))),
        "coronal_angle_deg": float(np.degrees(np.arctan2(-n[0], n[2]))),
        "transverse_angle_deg": float(np.degrees(np.arctan2(u[1], u[0]))),
    }


def disc_frame(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disc frame (columns u, v, n; a rotation) and eigenvalues (u, v, n) of a covariance."""
    evals, evecs = np.linalg.eigh(cov)  # ascending
    n = evecs[:, 0]
    a, b = evecs[:, 1], evecs[:, 2]
    u, lam_u, lam_v = (a, evals[1], evals[2]) if abs(a[0]) > abs(b[0]) else (b, evals[2], evals[1])
    n = n if n[2] >= 0 else -n
    u = u if u[0] >= 0 else -u
    u = u - n * (u @ n)
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    return np.column_stack([u, v, n]), np.array([lam_u, lam_v, evals[0]])


def _extent(line: np.ndarray, coords: np.ndarray, step: float) -> tuple[float, float, float]:
    """Edge-to-edge length of the samples set on ``line`` and the two edge coordinates."""
    hit = np.flatnonzero(line)
    if hit.size == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = coords[hit[0]] - step / 2, coords[hit[-1]] + step / 2
    return hi - lo, lo, hi


def _measure(grid: _Grid, ijk: np.ndarray, step_mm: float = DEFAULT_STEP_MM) -> DiscGeometry:
    n_vox = len(ijk)
    if n_vox < MIN_VOXELS:
        raise EmptyDiscError(
            f"disc has {n_vox} voxel(s), fewer than {MIN_VOXELS}: too small to measure"
        )
    m = grid.direction * grid.spacing[None, :]
    pts = np.asarray(ijk, float) @ m.T + grid.origin
    centroid = pts.mean(axis=0)
    x = pts - centroid
    cov_centres = (x.T @ x) / n_vox
    box = (grid.direction * (grid.spacing**2 / 12.0)[None, :]) @ grid.direction.T
    frame, lam = disc_frame(cov_centres + box)
    u, v, n = frame.T
    # mid-plane section, sampled on a (u, v) grid through the centroid
    pad = float(np.max(grid.spacing)) + step_mm
    cu, cv = x @ u, x @ v
    a = np.arange(np.floor((cu.min() - pad) / step_mm), np.ceil((cu.max() + pad) / step_mm) + 1)
    b = np.arange(np.floor((cv.min() - pad) / step_mm), np.ceil((cv.max() + pad) / step_mm) + 1)
    a *= step_mm
    b *= step_mm
    section = grid.lookup_plane(centroid, u, v, a, b)  # (len(a), len(b))
    area = float(section.sum()) * step_mm**2
    volume = n_vox * float(np.prod(grid.spacing))
    ia0 = int(np.argmin(np.abs(a)))
    ib0 = int(np.argmin(np.abs(b)))
    ap, ap_lo, ap_hi = _extent(section[ia0, :], b, step_mm)
    lat, lat_lo, lat_hi = _extent(section[:, ib0], a, step_mm)
    features = {
        "height_mm": volume / area if area > 0 else float("nan"),
        "ap_width_mm": ap,
        "lateral_width_mm": lat,
        **angles_from_frame(frame),
        "volume_mm3": volume,
    }
    evals_centres = np.sort(np.linalg.eigvalsh(cov_centres))[::-1]
    return DiscGeometry(
        features=features,
        centroid_mm=centroid,
        frame=frame,
        axis_lengths_mm=np.sqrt(20.0 * np.clip(evals_centres, 0, None)),
        ap_segment_mm=np.array([centroid + ap_lo * v, centroid + ap_hi * v]),
        lateral_segment_mm=np.array([centroid + lat_lo * u, centroid + lat_hi * u]),
        section_area_mm2=area,
        n_voxels=n_vox,
        extra={"pca_variances_mm2": lam, "section": section, "section_u_mm": a, "section_v_mm": b},
    )


def _disc_grid(mask: Volume, disc: DiscVoxels) -> _Grid:
    """The disc's bounding box (plus one empty voxel around it) as a binary grid."""
    i0 = disc.ijk.min(axis=0) - 1
    i1 = disc.ijk.max(axis=0) + 2
    sub = np.zeros(tuple((i1 - i0)[::-1]), bool)
    rel = disc.ijk - i0
    sub[rel[:, 2], rel[:, 1], rel[:, 0]] = True
    return _Grid(
        sub, np.asarray(mask.spacing), mask.index_to_world(i0.astype(float)), mask.direction
    )


def measure_disc(mask: Volume, disc: DiscVoxels, step_mm: float = DEFAULT_STEP_MM) -> DiscGeometry:
    """Measure one disc (from :func:`disclatent.discs.isolation.find_discs`) in its mask's space."""
    grid = _disc_grid(mask, disc)
    i0 = disc.ijk.min(axis=0) - 1
    try:
        return _measure(grid, disc.ijk - i0, step_mm)
    except EmptyDiscError as exc:
        raise EmptyDiscError(f"{mask.where}: disc {disc.level}: {exc}") from None


def slice_pca_angles(mask: Volume, disc: DiscVoxels) -> dict[str, float]:
    """The paper's literal method, for comparison: 2-D PCA in single middle slices.

    Sagittal angle from the major axis of the disc's voxels in the middle sagittal slice of
    the acquisition, coronal and transverse angles from the middle coronal and transverse
    slices (rows/columns of the image grid nearest the centroid); signs and references as in
    :func:`angles_from_frame`. Only for axis-aligned headers (the slices must be scanner
    planes). The features of this module use the 3-D PCA instead (see the module docstring).
    """
    if not mask.is_axis_aligned():
        raise DataError(f"{mask.where}: slice-wise angles need an axis-aligned header")
    pts = voxel_centres_mm(mask, disc.ijk)
    centre_index = mask.world_to_index(pts.mean(axis=0))
    axes = mask.anatomical_axes()

    def middle(name: str) -> np.ndarray:
        col = 2 - axes[name][0]  # index column (i, j, k) of that anatomical axis
        idx = disc.ijk[:, col]
        present = np.unique(idx)
        k = present[np.argmin(np.abs(present - centre_index[col]))]
        return pts[idx == k]

    def major(p2: np.ndarray) -> np.ndarray:
        x = p2 - p2.mean(axis=0)
        return np.linalg.eigh(x.T @ x)[1][:, -1]

    d = major(middle("LR")[:, [1, 2]])  # (y, z) in the sagittal slice
    d = -d if d[0] > 0 else d  # towards anterior (-y)
    sagittal = np.degrees(np.arctan2(d[1], -d[0]))
    d = major(middle("AP")[:, [0, 2]])  # (x, z) in the coronal slice
    d = -d if d[0] < 0 else d  # towards left (+x)
    coronal = np.degrees(np.arctan2(d[1], d[0]))
    d = major(middle("SI")[:, [0, 1]])  # (x, y) in the transverse slice
    d = -d if d[0] < 0 else d
    transverse = np.degrees(np.arctan2(d[1], d[0]))
    return {
        "sagittal_angle_deg": float(sagittal),
        "coronal_angle_deg": float(coronal),
        "transverse_angle_deg": float(transverse),
    }


def _cube_grid(cube: np.ndarray, spacing_mm: Sequence[float]) -> tuple[_Grid, np.ndarray]:
    cube = np.asarray(cube)
    if cube.ndim != 3:
        raise ValueError(f"expected a 3-D cube (SI, AP, LR), got shape {cube.shape}")
    sp = np.asarray(spacing_mm, float)
    if sp.shape != (3,) or (sp <= 0).any():
        raise ValueError(
            f"spacing_mm must be three positive numbers (SI, AP, LR), got {spacing_mm}"
        )
    inside = cube > 0.5 if cube.dtype.kind == "f" else cube != 0
    kk, jj, ii = np.nonzero(inside)
    return _Grid(inside, sp[::-1].copy(), np.zeros(3), np.eye(3)), np.stack([ii, jj, kk], 1)


def measure_cube_geometry(
    cube: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING,
    step_mm: float = DEFAULT_STEP_MM,
) -> DiscGeometry:
    """:func:`measure_cube` with everything it measured (frame, centroid, edge points).

    Positions are in millimetres from the centre of voxel ``cube[0, 0, 0]``, along LPS axes.
    """
    grid, ijk = _cube_grid(cube, spacing_mm)
    return _measure(grid, ijk, step_mm)


def measure_cube(
    cube: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING,
    step_mm: float = DEFAULT_STEP_MM,
    allow_empty: bool = False,
) -> dict[str, float]:
    """The features (:data:`~disclatent.conventions.GEOMETRY_FEATURES`) of one binary cube in canonical orientation.

    ``cube[si, ap, lr]`` with index growing to superior, posterior, left (as written by
    :mod:`disclatent.discs.isolation`); ``spacing_mm`` in the same order. Float cubes (decoder
    outputs) are thresholded at 0.5. An empty cube raises :class:`EmptyDiscError`, or gives
    NaN features with ``allow_empty``.
    """
    try:
        return dict(measure_cube_geometry(cube, spacing_mm, step_mm).features)
    except EmptyDiscError:
        if allow_empty:
            return dict.fromkeys(GEOMETRY_FEATURES, float("nan"))
        raise


def measure_cubes(
    cubes: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING,
    step_mm: float = DEFAULT_STEP_MM,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """:func:`measure_cube` for a stack ``(n, S, S, S)``; one row per cube."""
    rows = [measure_cube(c, spacing_mm, step_mm, allow_empty) for c in cubes]
    return pd.DataFrame(rows, columns=GEOMETRY_FEATURES)
