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
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from disclatent.conventions import GEOMETRY_FEATURES as FEATURES
from disclatent.conventions import ID_COLUMNS
from disclatent.conventions import PAPER_SPACING as PAPER_SPACING_MM
from disclatent.data import labels as lab
from disclatent.data.volume import DataError, Volume, read_mask, series_name
from disclatent.discs.isolation import (
    MIN_VOXELS,
    DiscStore,
    DiscVoxels,
    DiscWarning,
    EmptyDiscError,
    find_discs,
    load_disc_store,
    mask_files,
)

COLUMNS = ID_COLUMNS + FEATURES
DEFAULT_STEP_MM = 0.25


class GradingMismatchWarning(DiscWarning):
    """Discs without gradings, or gradings without a disc in the masks."""


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
    from disclatent.discs.isolation import voxel_centres_mm

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
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    step_mm: float = DEFAULT_STEP_MM,
) -> DiscGeometry:
    """:func:`measure_cube` with everything it measured (frame, centroid, edge points).

    Positions are in millimetres from the centre of voxel ``cube[0, 0, 0]``, along LPS axes.
    """
    grid, ijk = _cube_grid(cube, spacing_mm)
    return _measure(grid, ijk, step_mm)


def measure_cube(
    cube: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    step_mm: float = DEFAULT_STEP_MM,
    allow_empty: bool = False,
) -> dict[str, float]:
    """The features (:data:`FEATURES`) of one binary cube in canonical orientation.

    ``cube[si, ap, lr]`` with index growing to superior, posterior, left (as written by
    :mod:`disclatent.discs.isolation`); ``spacing_mm`` in the same order. Float cubes (decoder
    outputs) are thresholded at 0.5. An empty cube raises :class:`EmptyDiscError`, or gives
    NaN features with ``allow_empty``.
    """
    try:
        return dict(measure_cube_geometry(cube, spacing_mm, step_mm).features)
    except EmptyDiscError:
        if allow_empty:
            return dict.fromkeys(FEATURES, float("nan"))
        raise


def measure_cubes(
    cubes: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    step_mm: float = DEFAULT_STEP_MM,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """:func:`measure_cube` for a stack ``(n, S, S, S)``; one row per cube."""
    rows = [measure_cube(c, spacing_mm, step_mm, allow_empty) for c in cubes]
    return pd.DataFrame(rows, columns=FEATURES)


# ---------------------------------------------------------------------------------------
# Masks, folders, stores
# ---------------------------------------------------------------------------------------
def _as_mask(mask: Volume | str | os.PathLike, label_offset: int) -> Volume:
    if isinstance(mask, Volume):
        return mask
    return read_mask(mask, allow_unknown_labels=label_offset != lab.DISC_LABEL_OFFSET)


def measure_mask(
    mask: Volume | str | os.PathLike,
    labels: Iterable[int] | Mapping[int, int] | None = None,
    *,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    step_mm: float = DEFAULT_STEP_MM,
    discs: list[DiscVoxels] | None = None,
) -> pd.DataFrame:
    """Every disc of one mask, measured in the mask's own physical space.

    Columns: :data:`COLUMNS` plus ``touches_border`` (the disc reaches the edge of the image
    volume, so it may be cut). ``labels``/``label_offset`` as in
    :func:`disclatent.discs.isolation.find_discs`.
    """
    from disclatent.data.spider import parse_series

    vol = _as_mask(mask, label_offset)
    if discs is None:
        discs = find_discs(vol, labels, label_offset)
    series = series_name(vol.path) if vol.path is not None else ""
    patient = parse_series(series)[0] if series else ""
    rows = []
    for disc in discs:
        geo = measure_disc(vol, disc, step_mm)
        rows.append(
            {
                "series": series,
                "patient": patient,
                "ivd_label": disc.ivd_label,
                "level": disc.level,
                **geo.features,
                "touches_border": disc.touches_border,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS + ["touches_border"])


def measure_masks(
    masks: str | os.PathLike | Sequence[str | os.PathLike],
    labels: Iterable[int] | Mapping[int, int] | None = None,
    *,
    label_offset: int = lab.DISC_LABEL_OFFSET,
    modalities: Sequence[str] | None = ("t1",),
    progress: bool = True,
    step_mm: float = DEFAULT_STEP_MM,
) -> pd.DataFrame:
    """:func:`measure_mask` for a SPIDER folder, a folder of masks, a file or a list."""
    from tqdm.auto import tqdm

    files = mask_files(masks, modalities)
    tables = [
        measure_mask(f, labels, label_offset=label_offset, step_mm=step_mm)
        for f in tqdm(
            files, desc="measuring discs", unit="mask", disable=not progress or len(files) < 2
        )
    ]
    tables = [t for t in tables if len(t)]
    return (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=COLUMNS + ["touches_border"])
    )


class GeometryFeatures(TransformerMixin, BaseEstimator):
    """scikit-learn transformer: discs -> geometric feature table (mm, degrees).

    ``transform`` accepts a :class:`~disclatent.discs.isolation.DiscStore` (or the path of one),
    a disc table with a ``mask_path`` column (rows with ``ivd_label``; as in the store's
    table), or an array of cubes ``(n, S, S, S)``.

    * ``space="cube"`` measures the isolated cubes (what the autoencoder sees and decodes);
      ``space="mask"`` re-reads each disc's source mask and measures it in its original
      physical space (more accurate: no resampling).
    * ``ids=True`` returns :data:`COLUMNS` (identity columns first, when known); ``ids=False``
      only the numeric :data:`FEATURES`, for use inside a pipeline.

    It has nothing to learn: ``fit`` only records the output feature names.
    """

    def __init__(
        self,
        space: str = "cube",
        ids: bool = True,
        spacing_mm: Sequence[float] | None = None,
        step_mm: float = DEFAULT_STEP_MM,
        label_offset: int = lab.DISC_LABEL_OFFSET,
        allow_empty: bool = False,
    ):
        self.space = space
        self.ids = ids
        self.spacing_mm = spacing_mm
        self.step_mm = step_mm
        self.label_offset = label_offset
        self.allow_empty = allow_empty

    def fit(self, X=None, y=None):  # noqa: N803 (scikit-learn's names)
        if self.space not in ("cube", "mask"):
            raise ValueError(f"space must be 'cube' or 'mask', got {self.space!r}")
        self.feature_names_out_ = np.array(FEATURES, dtype=object)
        return self

    def get_feature_names_out(self, input_features=None):
        return np.array(FEATURES, dtype=object)

    def transform(self, X):  # noqa: N803
        if not hasattr(self, "feature_names_out_"):
            self.fit()
        if isinstance(X, str | os.PathLike):
            X = load_disc_store(X)
        if isinstance(X, DiscStore):
            table = X.table.reset_index(drop=True)
            if self.space == "cube":
                spacing = self.spacing_mm or X.spacing_mm
                feats = measure_cubes(X.cubes, spacing, self.step_mm, self.allow_empty)
            else:
                feats = self._from_masks(table)
        elif isinstance(X, pd.DataFrame):
            table = X.reset_index(drop=True)
            if self.space == "cube":
                raise ValueError(
                    "a disc table holds no cubes: use space='mask' (it needs a "
                    "mask_path column) or pass the DiscStore"
                )
            feats = self._from_masks(table)
        else:
            cubes = np.asarray(X)
            if cubes.ndim == 3:
                cubes = cubes[None]
            if cubes.ndim != 4:
                raise ValueError(f"expected cubes (n, S, S, S), got shape {cubes.shape}")
            table = pd.DataFrame(index=range(len(cubes)))
            feats = measure_cubes(
                cubes, self.spacing_mm or PAPER_SPACING_MM, self.step_mm, self.allow_empty
            )
        if not self.ids:
            return feats
        ids = [c for c in ID_COLUMNS if c in table]
        return pd.concat([table[ids], feats], axis=1)

    def _from_masks(self, table: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ("mask_path", "ivd_label") if c not in table]
        if missing:
            raise ValueError(f"disc table lacks column(s) {missing} needed for space='mask'")
        out = pd.DataFrame(index=table.index, columns=FEATURES, dtype=float)
        for path, rows in table.groupby("mask_path", sort=False):
            vol = _as_mask(path, self.label_offset)
            wanted = {int(k) + self.label_offset: int(k) for k in rows["ivd_label"].unique()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DiscWarning)  # reported when isolated
                found = {d.ivd_label: d for d in find_discs(vol, wanted, self.label_offset)}
            for idx, k in rows["ivd_label"].items():
                if int(k) not in found:
                    if self.allow_empty:
                        continue
                    raise EmptyDiscError(f"{path}: disc {lab.level_name(int(k))} not found")
                geo = measure_disc(vol, found[int(k)], self.step_mm)
                out.loc[idx, FEATURES] = [geo.features[f] for f in FEATURES]
        return out.astype(float)


# ---------------------------------------------------------------------------------------
# Joining the radiological gradings
# ---------------------------------------------------------------------------------------
def grading_mismatches(features: pd.DataFrame, gradings: pd.DataFrame) -> pd.DataFrame:
    """Discs measured but not graded, and graded discs absent from the masks.

    ``gradings`` as read by :func:`disclatent.data.spider.read_gradings`. Only patients that have
    at least one measured series are compared (a patient with no mask is not a mismatch of
    its discs). Columns: ``patient, ivd_label, level, problem``.
    """
    f = features[["patient", "ivd_label"]].astype({"patient": str, "ivd_label": int})
    g = gradings[["patient", "ivd_label"]].astype({"patient": str, "ivd_label": int})
    g = g[g["patient"].isin(set(f["patient"]))]
    keys_f = set(map(tuple, f.drop_duplicates().to_numpy()))
    keys_g = set(map(tuple, g.drop_duplicates().to_numpy()))
    rows = [(p, k, "in mask, not graded") for p, k in sorted(keys_f - keys_g)]
    rows += [(p, k, "graded, not in mask") for p, k in sorted(keys_g - keys_f)]
    out = pd.DataFrame(rows, columns=["patient", "ivd_label", "problem"])
    out.insert(2, "level", out["ivd_label"].map(lab.level_name))
    return out


def join_gradings(
    features: pd.DataFrame, gradings: pd.DataFrame | str | os.PathLike, how: str = "inner"
) -> pd.DataFrame:
    """Join gradings to measured discs on (patient, IVD label), never on position.

    Mismatches in either direction are reported with a :class:`GradingMismatchWarning` that
    lists them; ``how="inner"`` (default) keeps only discs that have both, ``"left"`` keeps
    every measured disc (gradings NaN where missing).
    """
    from disclatent.data.spider import read_gradings

    if not isinstance(gradings, pd.DataFrame):
        gradings = read_gradings(gradings)
    if how not in ("inner", "left"):
        raise ValueError(f"how must be 'inner' or 'left', got {how!r}")
    bad = grading_mismatches(features, gradings)
    for problem, rows in bad.groupby("problem"):
        shown = ", ".join(
            f"patient {p} {lv}"
            for p, lv in rows[["patient", "level"]].head(8).itertuples(index=False)
        )
        more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
        action = (
            ("dropped" if how == "inner" else "kept without gradings")
            if problem.startswith("in mask")
            else "ignored"
        )
        warnings.warn(
            f"{len(rows)} disc(s) {problem} ({action}): {shown}{more}",
            GradingMismatchWarning,
            stacklevel=2,
        )
    left = features.astype({"patient": str})
    right = gradings.drop(columns=[c for c in ("level",) if c in gradings and c in left])
    return left.merge(
        right.astype({"patient": str}), on=["patient", "ivd_label"], how=how, validate="many_to_one"
    )


# ---------------------------------------------------------------------------------------
# Validation against the phantom's truth
# ---------------------------------------------------------------------------------------
VALIDATION_BOUNDS = {  # median absolute error allowed (issue 3); volume in percent
    "height_mm": 0.5,
    "ap_width_mm": 1.0,
    "lateral_width_mm": 2.5,
    "sagittal_angle_deg": 2.0,
    "coronal_angle_deg": 3.0,
    "transverse_angle_deg": 3.0,
    "volume_mm3": 2.0,
}


def compare_with_truth(
    measured: pd.DataFrame, truth: pd.DataFrame | str | os.PathLike
) -> pd.DataFrame:
    """Measured and true features side by side, one row per disc (joined on series, IVD label).

    Adds ``<feature>_true`` and ``<feature>_error`` (measured - true; for volume in percent
    of the true volume). Discs missing on either side are an error.
    """
    if not isinstance(truth, pd.DataFrame):
        truth = pd.read_csv(truth, dtype={"patient": str, "series": str})
    t = truth[["series", "ivd_label", *FEATURES]].rename(columns={f: f"{f}_true" for f in FEATURES})
    merged = measured.merge(t, on=["series", "ivd_label"], how="outer", indicator=True)
    if (merged["_merge"] != "both").any():
        odd = merged.loc[merged["_merge"] != "both", ["series", "ivd_label", "_merge"]]
        raise DataError(f"measured discs and truth do not match: {odd.head(8).to_dict('records')}")
    merged = merged.drop(columns="_merge")
    for f in FEATURES:
        err = merged[f] - merged[f"{f}_true"]
        merged[f"{f}_error"] = 100 * err / merged[f"{f}_true"] if f == "volume_mm3" else err
    return merged


def error_table(compared: pd.DataFrame) -> pd.DataFrame:
    """Per feature: bias, median and maximum absolute error, the bound and whether it is met."""
    rows = []
    for f in FEATURES:
        e = compared[f"{f}_error"].astype(float)
        unit = "%" if f == "volume_mm3" else ("deg" if f.endswith("deg") else "mm")
        rows.append(
            {
                "feature": f,
                "unit": unit,
                "n": int(e.notna().sum()),
                "bias": e.mean(),
                "median_abs_error": e.abs().median(),
                "p90_abs_error": e.abs().quantile(0.9),
                "max_abs_error": e.abs().max(),
                "bound": VALIDATION_BOUNDS[f],
                "within_bound": bool(e.abs().median() <= VALIDATION_BOUNDS[f]),
            }
        )
    return pd.DataFrame(rows).set_index("feature")


# ---------------------------------------------------------------------------------------
# A figure in the spirit of the paper's Fig. 3
# ---------------------------------------------------------------------------------------
def plot_disc_geometry(
    cube: np.ndarray,
    spacing_mm: Sequence[float] = PAPER_SPACING_MM,
    title: str = "",
    step_mm: float = DEFAULT_STEP_MM,
):
    """Middle sagittal, coronal and transverse slices of one cube, with the measurements.

    Drawn at physical aspect ratio, as radiologists read them (sagittal: anterior left;
    coronal: patient's right on the left; transverse: anterior up): the AP and lateral widths
    (edge to edge through the centroid), the height (mean thickness, drawn along the normal
    through the centroid) and the three principal axes (half the equivalent-ellipsoid
    lengths). Returns the figure.
    """
    import matplotlib.pyplot as plt

    geo = measure_cube_geometry(cube, spacing_mm, step_mm)
    cube = np.asarray(cube) != 0
    sp_xyz = np.asarray(spacing_mm, float)[::-1]  # world axis w (x=LR, y=AP, z=SI) spacing
    c = geo.centroid_mm  # mm from the centre of voxel cube[0, 0, 0], LPS axes
    ci, cj, ck = np.clip(np.rint(c / sp_xyz).astype(int), 0, np.array(cube.shape[::-1]) - 1)
    u, v, n = geo.frame.T
    f = geo.features
    height_seg = np.array([c - 0.5 * f["height_mm"] * n, c + 0.5 * f["height_mm"] * n])
    lat = (geo.lateral_segment_mm, f"lateral width {f['lateral_width_mm']:.1f} mm", "C3")
    ap = (geo.ap_segment_mm, f"AP width {f['ap_width_mm']:.1f} mm", "C4")
    hgt = (height_seg, f"height {f['height_mm']:.1f} mm", "C5")
    # (image rows x cols, horizontal world axis, vertical world axis, segments, angle, labels)
    views = [
        (
            cube[:, :, ci],
            1,
            2,
            [ap, hgt],
            "sagittal",
            "anterior → posterior (mm)",
            "inferior → superior (mm)",
        ),
        (
            cube[:, cj, :],
            0,
            2,
            [lat, hgt],
            "coronal",
            "right → left (mm)",
            "inferior → superior (mm)",
        ),
        (
            cube[ck, :, :],
            0,
            1,
            [lat],
            "transverse",
            "right → left (mm)",
            "posterior → anterior (mm)",
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    half = 0.5 * geo.axis_lengths_mm[0] + 6
    for ax, (img, hx, vy, segments, plane, xlabel, ylabel) in zip(axes[:3], views, strict=True):
        sh, sv = sp_xyz[hx], sp_xyz[vy]
        ax.imshow(
            img,
            cmap="Greys",
            vmin=0,
            vmax=2.5,
            origin="lower",
            interpolation="nearest",
            extent=(-0.5 * sh, (img.shape[1] - 0.5) * sh, -0.5 * sv, (img.shape[0] - 0.5) * sv),
        )
        for points, label, colour in segments:
            ax.plot(points[:, hx], points[:, vy], "-", color=colour, lw=2.2, label=label)
        for vec, length, colour, name in (
            (u, geo.axis_lengths_mm[0], "C0", "lateral axis u"),
            (v, geo.axis_lengths_mm[1], "C1", "AP axis v"),
            (n, geo.axis_lengths_mm[2], "C2", "normal n"),
        ):
            tip = c + 0.5 * length * vec
            ax.annotate(
                "",
                xy=(tip[hx], tip[vy]),
                xytext=(c[hx], c[vy]),
                arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.4},
            )
            ax.plot([], [], color=colour, label=name)
        ax.plot(c[hx], c[vy], "k+", ms=8)
        ax.set_xlim(c[hx] - half, c[hx] + half)
        ax.set_ylim(c[vy] - half, c[vy] + half)
        if plane == "transverse":
            ax.invert_yaxis()  # anterior up
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(
            f"middle {plane} slice: {plane} angle {f[f'{plane}_angle_deg']:.1f}°", fontsize=9
        )
        ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    # the disc in its own frame: the mid-plane section (its footprint), u across, v up
    ax = axes[3]
    a, b = geo.extra["section_u_mm"], geo.extra["section_v_mm"]
    ax.imshow(
        geo.extra["section"].T,
        cmap="Greys",
        vmin=0,
        vmax=2.5,
        origin="lower",
        interpolation="nearest",
        extent=(a[0] - step_mm / 2, a[-1] + step_mm / 2, b[0] - step_mm / 2, b[-1] + step_mm / 2),
    )
    for points, label, colour in (lat, ap):
        local = (points - c) @ geo.frame
        ax.plot(local[:, 0], local[:, 1], "-", color=colour, lw=2.2, label=label)
    ax.plot(0, 0, "k+", ms=8)
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.invert_yaxis()  # anterior up, as the transverse slice
    ax.set_aspect("equal")
    ax.set_xlabel("lateral axis u: right → left (mm)")
    ax.set_ylabel("AP axis v: posterior → anterior (mm)")
    ax.set_title(
        f"mid-plane section (disc frame): {geo.section_area_mm2:.0f} mm²;\n"
        f"height = volume / area = {f['height_mm']:.2f} mm",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
