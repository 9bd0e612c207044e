"""A synthetic lumbar-spine cohort in SPIDER's exact file format, with known geometry.

Every disc is an analytic solid defined in its own frame ``(u, v, w)`` in millimetres:

* ``u`` lateral (towards the patient's left), ``v`` antero-posterior (towards posterior),
  ``w`` along the disc axis (towards superior).
* Footprint in the ``(u, v)`` plane: two half-ellipses (anterior semi-axis ``a_ant``,
  posterior ``a_post``, lateral ``a_lat``) minus an elliptic notch at the posterior midline
  (the kidney shape's posterior concavity, depth ``notch_depth``).
* Thickness ``t(u, v) = h0 * (1 - convexity * r^2) * (1 - wedge * v / a_mean)`` where ``r`` is
  the normalised elliptic radius: convex endplates (thicker centre) and a wedge (taller
  anteriorly). The disc is ``|w| <= t(u, v) / 2``.

The disc frame is placed in LPS world coordinates by ``R = Rz(transverse) Ry(-coronal)
Rx(-sagittal)``. The true values in ``phantom_truth.csv`` follow the paper's definitions:

* ``height_mm``: mean of ``t`` over the footprint (mean thickness along the disc's own axis).
* ``ap_width_mm``: footprint extent along ``v`` at the midline ``u = 0`` (the middle
  sagittal slice), i.e. ``a_ant + a_post - notch_depth``.
* ``lateral_width_mm``: footprint extent along ``u`` (``2 a_lat``, at ``v = 0``).
* ``volume_mm3``: integral of ``t`` over the footprint; ``centroid_{x,y,z}_mm``: its centre
  of mass in LPS world millimetres.
* Angles, in degrees, of the line where the disc's mid-plane cuts a scanner plane:
  ``sagittal_angle_deg`` (y-z plane) against the anterior horizontal, positive when the
  anterior edge is superior (L5/S1 is negative in lordosis); ``coronal_angle_deg`` (x-z
  plane) against the left-right axis, positive when the left edge is superior;
  ``transverse_angle_deg`` (x-y plane): the disc's lateral axis projected on the transverse
  plane against the left-right axis, positive when the left edge is posterior (the mid-plane
  of a near-horizontal disc does not cut a transverse plane along a line). The paper measures the last two "against the vertical axis": that is
  90 degrees minus these deviations; deviations from neutral are easier to read.

Pathology: each disc has a narrowing severity and a bulge severity, correlated through a
patient-level degeneration factor and more common at lower levels. Narrowing scales the disc
height (``narrowing_factor``); bulging pushes the footprint past the vertebral rim, mostly
posteriorly (``bulge_mm``). The gradings are drawn from the same severities with grader noise,
so that no geometric feature predicts them perfectly. Pfirrmann grade follows the
degeneration and sets the T2 signal of the nucleus.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import norm

from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import labels as lab
from disclatent.data.volume import Volume, atomic_path, write_image, write_text_atomic

PHANTOM_VERSION = 1

# ---------------------------------------------------------------------------------------
# Per-level calibration (index = IVD label - 1: L5/S1, L4/L5, L3/L4, L2/L3, L1/L2, T12/L1,
# T11/T12). Sizes follow STUDY.md section 3 (healthy adults, disc tissue only).
# ---------------------------------------------------------------------------------------
AP_DEPTH_MM = np.array([31.5, 33.0, 32.5, 31.0, 30.0, 29.0, 28.0])
LATERAL_WIDTH_MM = np.array([44.0, 45.0, 44.0, 42.5, 41.0, 39.0, 37.0])
HEIGHT_MM = np.array([5.7, 6.6, 6.4, 5.9, 5.4, 4.9, 4.5])
SAGITTAL_DEG = np.array([-30.0, -16.0, -5.0, 3.0, 8.0, 11.0, 12.0])
WEDGE = np.array([0.34, 0.24, 0.14, 0.08, 0.04, 0.02, 0.0])
VERTEBRA_HEIGHT_MM = np.array([27.0, 27.5, 27.5, 27.0, 26.5, 25.0, 24.0])  # vertebra above
# SPIDER's per-level prevalence (STUDY.md section 3); T11/T12 extrapolated
NARROWING_PREVALENCE = np.array([0.58, 0.59, 0.45, 0.36, 0.23, 0.13, 0.10])
BULGING_PREVALENCE = np.array([0.69, 0.75, 0.69, 0.60, 0.38, 0.17, 0.12])
PFIRRMANN_MEAN = np.array([3.4, 3.3, 3.0, 2.8, 2.6, 2.3, 2.2])
GRADER_NOISE = 0.7  # sd of the grader's error on the unit-variance severity scale


@dataclass(frozen=True)
class Site:
    """An imaging site: scanner, sequence geometry and image quality."""

    name: str
    manufacturer: str
    field_strength: float
    slice_thickness_mm: float  # left-right spacing of the sagittal slices
    inplane_mm: tuple[float, float]  # (anterior-posterior, superior-inferior) pixel spacing
    noise: float  # Rician noise sd relative to the signal scale
    bias: float  # amplitude of the smooth multiplicative bias field
    gamma: float  # contrast curve
    gain: float  # signal scale (stored as int16)
    share: float  # fraction of patients


SITES: tuple[Site, ...] = (
    Site("A", "SIEMENS", 1.5, 3.3, (0.625, 0.625), 0.035, 0.12, 1.0, 900.0, 0.30),
    Site("B", "SIEMENS", 3.0, 4.0, (0.75, 0.70), 0.025, 0.25, 0.85, 1400.0, 0.25),
    Site("C", "Philips Medical Systems", 1.5, 3.6, (0.55, 0.55), 0.045, 0.18, 1.15, 700.0, 0.25),
    Site("D", "Philips Medical Systems", 3.0, 4.4, (0.85, 0.80), 0.030, 0.30, 0.95, 1800.0, 0.20),
)

# Tissue signal (T1, T2) on a 0-1 scale before site contrast
_TISSUE = {
    "background": (0.32, 0.28),
    "vertebra": (0.78, 0.46),
    "sacrum": (0.72, 0.42),
    "annulus": (0.40, 0.24),
    "canal": (0.14, 0.92),
    "posterior": (0.50, 0.34),
}


@dataclass
class DiscSpec:
    """One disc's generating parameters (mm, degrees) and pathology."""

    patient: str
    ivd_label: int
    center: np.ndarray  # LPS mm
    rotation: np.ndarray  # columns: u (left), v (posterior), w (superior) in LPS
    sagittal_deg: float
    coronal_deg: float
    transverse_deg: float
    a_lat: float
    a_ant: float
    a_post: float
    notch_halfwidth: float
    notch_depth: float
    convexity: float
    wedge: float
    h0: float  # central thickness before convexity/wedge
    narrowing_factor: float
    bulge_mm: float
    narrowing_severity: float
    bulge_severity: float
    pfirrmann: int
    # healthy footprint, used for the vertebral rim
    rim_a_lat: float = 0.0
    rim_a_ant: float = 0.0
    rim_a_post: float = 0.0

    @property
    def level(self) -> str:
        return lab.level_name(self.ivd_label)

    @property
    def notch_offset(self) -> float:
        return 0.6 * self.notch_halfwidth

    # -- the analytic solid ------------------------------------------------------------
    def footprint(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a_v = np.where(v < 0, self.a_ant, self.a_post)
        inside = (u / self.a_lat) ** 2 + (v / a_v) ** 2 <= 1.0
        c = self.a_post + self.notch_offset
        notch = (u / self.notch_halfwidth) ** 2 + (
            (v - c) / (self.notch_offset + self.notch_depth)
        ) ** 2 < 1.0
        return inside & ~notch

    def thickness(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        a_v = np.where(v < 0, self.a_ant, self.a_post)
        r2 = np.minimum((u / self.a_lat) ** 2 + (v / a_v) ** 2, 1.0)
        a_mean = 0.5 * (self.a_ant + self.a_post)
        return self.h0 * (1.0 - self.convexity * r2) * (1.0 - self.wedge * v / a_mean)

    def contains(self, local: np.ndarray) -> np.ndarray:
        u, v, w = local[..., 0], local[..., 1], local[..., 2]
        return self.footprint(u, v) & (np.abs(w) <= 0.5 * self.thickness(u, v))

    def half_extent(self) -> np.ndarray:
        return np.array([self.a_lat, max(self.a_ant, self.a_post), self.h0 * 1.5]) + 1.0

    # -- truth ---------------------------------------------------------------------------
    def truth(self, step_mm: float = 0.05) -> dict[str, float]:
        """Exact-by-quadrature geometry of the solid (midpoint rule on a fine grid)."""
        us = np.arange(-self.a_lat, self.a_lat, step_mm) + step_mm / 2
        vs = np.arange(-self.a_ant, self.a_post, step_mm) + step_mm / 2
        uu, vv = np.meshgrid(us, vs, indexing="ij")
        inside = self.footprint(uu, vv)
        t = self.thickness(uu, vv)
        area = inside.sum() * step_mm**2
        volume = (t * inside).sum() * step_mm**2
        angles = plane_angles(self.rotation)
        weight = t * inside
        centroid_local = np.array([(uu * weight).sum(), (vv * weight).sum(), 0.0]) / weight.sum()
        centroid = self.center + self.rotation @ centroid_local
        return {
            "height_mm": volume / area,
            "ap_width_mm": self.a_ant + self.a_post - self.notch_depth,
            "lateral_width_mm": 2.0 * self.a_lat,
            **angles,
            "volume_mm3": volume,
            "footprint_area_mm2": area,
            "centroid_mm": centroid,
        }


def rotation_matrix(sagittal_deg: float, coronal_deg: float, transverse_deg: float) -> np.ndarray:
    """Disc frame (columns u, v, w) in LPS for the three tilts (see module docstring)."""
    a, b, g = np.deg2rad([sagittal_deg, coronal_deg, transverse_deg])

    def rx(t: float) -> np.ndarray:
        c, s = math.cos(t), math.sin(t)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(t: float) -> np.ndarray:
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rz(t: float) -> np.ndarray:
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    return rz(g) @ ry(-b) @ rx(-a)


def plane_angles(rotation: np.ndarray) -> dict[str, float]:
    """Disc tilt in the sagittal, coronal and transverse scanner planes (degrees).

    Sagittal and coronal: the line where the disc's mid-plane cuts that plane. Transverse:
    the disc's lateral axis projected on the plane. Signs as in the module docstring.
    """
    n = rotation[:, 2]
    ex, ey, ez = np.eye(3)

    def angle(d: np.ndarray, ref: np.ndarray, up: np.ndarray) -> float:
        if np.dot(d, ref) < 0:
            d = -d
        return float(np.degrees(np.arctan2(np.dot(d, up), np.dot(d, ref))))

    return {
        # sagittal plane (y-z): the line lies along ex x n; reference anterior = -y
        "sagittal_angle_deg": angle(np.cross(ex, n), -ey, ez),
        # coronal plane (x-z): line along ey x n; reference left = +x, up = +z
        "coronal_angle_deg": angle(np.cross(ey, n), ex, ez),
        # transverse plane (x-y): a transverse slice shows the whole footprint, whose long
        # axis is the lateral axis u projected on x-y; reference left = +x, "up" = posterior
        "transverse_angle_deg": angle(rotation[:, 0] * np.array([1.0, 1.0, 0.0]), ex, ey),
    }


@dataclass
class PatientSpec:
    patient: str
    site: Site
    sex: str
    discs: list[DiscSpec]
    canal_points: np.ndarray  # (n, 3) LPS centre line of the spinal canal
    vertebra_height: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# Anatomy
# ---------------------------------------------------------------------------------------
def _site_for(index: int, n_patients: int) -> Site:
    """Deterministic site assignment with the sites' shares (every site used if n >= 4)."""
    shares = np.array([s.share for s in SITES])
    bounds = np.cumsum(shares) * n_patients
    position = index + 0.5
    return SITES[int(np.searchsorted(bounds, position))]


def make_patient(seed: int, index: int, n_patients: int) -> PatientSpec:
    """Anatomy and pathology of patient number ``index + 1``; depends on (seed, index) only."""
    rng = np.random.default_rng([seed, index, 1])
    patient = str(index + 1)
    site = _site_for(index, n_patients)
    n_discs = int(rng.choice([5, 6, 7], p=[0.3, 0.5, 0.2]))
    sex = str(rng.choice(["F", "M"]))
    size = float(np.clip(rng.normal(1.0, 0.06) * (1.04 if sex == "M" else 0.97), 0.85, 1.15))
    height_scale = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15))
    lordosis = float(np.clip(rng.normal(1.0, 0.18), 0.5, 1.5))
    pose = rng.normal(0.0, 4.0)  # pelvic tilt on the table, degrees
    scoliosis = rng.normal(0.0, 1.5)
    axial = rng.normal(0.0, 1.5)
    degeneration = rng.normal()
    s_grader = math.sqrt(1 + GRADER_NOISE**2)

    discs: list[DiscSpec] = []
    for k in range(1, n_discs + 1):
        i = k - 1
        # severities: unit variance, level-dependent mean so that graded prevalence matches
        mu_n = s_grader * norm.ppf(NARROWING_PREVALENCE[i])
        mu_b = s_grader * norm.ppf(BULGING_PREVALENCE[i])
        e_disc = rng.normal()
        sev_n = mu_n + 0.55 * degeneration + 0.835 * e_disc
        sev_b = mu_b + 0.45 * degeneration + 0.45 * e_disc + 0.77 * rng.normal()
        narrowing = 1.0 - 0.32 * norm.cdf(1.4 * (sev_n - 0.3))
        bulge = 3.5 * norm.cdf(1.6 * (sev_b - 0.4))
        grade = int(
            np.clip(
                np.rint(PFIRRMANN_MEAN[i] + 0.55 * sev_n - 0.55 * mu_n + 0.5 * rng.normal()), 1, 5
            )
        )

        a_lat0 = 0.5 * LATERAL_WIDTH_MM[i] * size * rng.normal(1.0, 0.04)
        ap = AP_DEPTH_MM[i] * size * rng.normal(1.0, 0.04)
        ant_frac = rng.uniform(0.50, 0.56)
        a_ant0, a_post0 = ap * ant_frac, ap * (1 - ant_frac)
        notch_depth0 = ap * rng.uniform(0.07, 0.14)
        notch_hw = a_lat0 * rng.uniform(0.28, 0.40)
        # bulge: mostly posterior, some lateral and anterior
        a_lat = a_lat0 + 0.35 * bulge
        a_ant = a_ant0 + 0.25 * bulge
        a_post = a_post0 + notch_depth0 + bulge  # notch is cut back out below
        convexity = rng.uniform(0.12, 0.32)
        wedge = float(np.clip(WEDGE[i] + rng.normal(0, 0.04), -0.05, 0.45))
        target_h = HEIGHT_MM[i] * height_scale * rng.normal(1.0, 0.07) * narrowing
        sag = lordosis * SAGITTAL_DEG[i] + pose + rng.normal(0, 2.0)
        cor = scoliosis + rng.normal(0, 2.0)
        tra = axial + rng.normal(0, 2.0)
        spec = DiscSpec(
            patient=patient,
            ivd_label=k,
            center=np.zeros(3),
            rotation=rotation_matrix(sag, cor, tra),
            sagittal_deg=sag,
            coronal_deg=cor,
            transverse_deg=tra,
            a_lat=a_lat,
            a_ant=a_ant,
            a_post=a_post,
            notch_halfwidth=notch_hw,
            notch_depth=notch_depth0,
            convexity=convexity,
            wedge=wedge,
            h0=1.0,
            narrowing_factor=narrowing,
            bulge_mm=bulge,
            narrowing_severity=sev_n,
            bulge_severity=sev_b,
            pfirrmann=grade,
            rim_a_lat=a_lat0 + 0.8,
            rim_a_ant=a_ant0 + 0.8,
            rim_a_post=a_post0 + notch_depth0 + 0.8,
        )
        # scale h0 so that the mean thickness equals the target height
        spec.h0 = target_h / spec.truth(step_mm=0.25)["height_mm"]
        discs.append(spec)

    # stack the discs upward from L5/S1 along the lordotic curve
    x0 = rng.normal(0.0, 3.0)
    center = np.array([x0, rng.normal(-10.0, 4.0), rng.normal(-120.0, 6.0)])
    vert_heights = []
    for j, d in enumerate(discs):
        if j == 0:
            d.center = center
            continue
        below = discs[j - 1]
        hv = VERTEBRA_HEIGHT_MM[j - 1] * size * rng.normal(1.0, 0.03)
        vert_heights.append(hv)
        axis = below.rotation[:, 2] + d.rotation[:, 2]
        axis /= np.linalg.norm(axis)
        t_below = below.thickness(0.0, 0.0) / 2
        t_here = d.thickness(0.0, 0.0) / 2
        d.center = (
            below.center + below.rotation[:, 2] * t_below + axis * hv + d.rotation[:, 2] * t_here
        )
    vert_heights.append(VERTEBRA_HEIGHT_MM[len(discs) - 1] * size)  # vertebra above the top disc

    # spinal canal centre line: behind the vertebral rim, following the discs
    canal = []
    for d in discs:
        canal.append(d.center + d.rotation[:, 1] * (d.rim_a_post + 3.0 + 7.0))
    canal = np.array(canal)
    return PatientSpec(patient, site, sex, discs, canal, vert_heights)


# ---------------------------------------------------------------------------------------
# Rasterisation
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    size: tuple[int, int, int]  # (i, j, k)
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        return ((np.asarray(xyz) - self.origin) @ self.direction) / np.asarray(self.spacing)

    def local_coords(
        self, center: np.ndarray, rotation: np.ndarray, half_extent: np.ndarray
    ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """Voxels of the box around a local frame: numpy slices and local (u, v, w) coords."""
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        corners = center + (signs * half_extent) @ rotation.T
        idx = self.world_to_index(corners)
        lo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 2, np.array(self.size))
        if np.any(hi <= lo):
            return None
        ii, jj, kk = (np.arange(lo[a], hi[a], dtype=np.float32) for a in range(3))
        kg, jg, ig = np.meshgrid(kk, jj, ii, indexing="ij")
        ijk = np.stack([ig, jg, kg], axis=-1) * np.asarray(self.spacing, np.float32)
        m = self.direction.astype(np.float32)
        world = ijk @ m.T + (self.origin - center).astype(np.float32)
        local = world @ rotation.astype(np.float32)
        sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        return sl, local


def _series_grid(spec: PatientSpec, site: Site, rng: np.random.Generator) -> Grid:
    """A sagittal acquisition covering the spine, with identity direction as in SPIDER."""
    sx = site.slice_thickness_mm * rng.uniform(0.97, 1.03)
    sy, sz = (s * rng.uniform(0.97, 1.03) for s in site.inplane_mm)
    centers = np.array([d.center for d in spec.discs])
    lo = centers.min(axis=0) - np.array([40.0, 40.0, 45.0])
    hi = centers.max(axis=0) + np.array([40.0, 45.0, 40.0])
    lo += rng.uniform(-4, 4, 3)
    size = tuple(int(math.ceil((hi[a] - lo[a]) / s)) for a, s in enumerate((sx, sy, sz)))
    # SPIDER stores rounded header values
    spacing = tuple(round(s, 4) for s in (sx, sy, sz))
    return Grid(size=size, spacing=spacing, origin=np.round(lo, 3))


def _disc_surface(d: DiscSpec, local: np.ndarray, upper: bool) -> np.ndarray:
    """Signed distance-like test: True beyond the disc's upper (or lower) surface."""
    half = 0.5 * d.thickness(local[..., 0], local[..., 1])
    return local[..., 2] > half if upper else local[..., 2] < -half


def rasterise(spec: PatientSpec, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """SPIDER label map and a tissue map (for the image) on ``grid``, numpy order (k, j, i)."""
    shape = grid.size[::-1]
    labels = np.zeros(shape, np.int16)
    nucleus = np.zeros(shape, np.float32)  # hydration weight of disc voxels (T2 signal)
    # 1) spinal canal: elliptic tube around a smooth centre line (cubic in z)
    pts = spec.canal_points
    zz = grid.origin[2] + np.arange(grid.size[2]) * grid.spacing[2]
    deg = min(3, len(pts) - 1)
    cx = (
        np.polyval(np.polyfit(pts[:, 2], pts[:, 0], deg), zz)
        if deg
        else np.full_like(zz, pts[0, 0])
    )
    cy = (
        np.polyval(np.polyfit(pts[:, 2], pts[:, 1], deg), zz)
        if deg
        else np.full_like(zz, pts[0, 1])
    )
    xx = grid.origin[0] + np.arange(grid.size[0]) * grid.spacing[0]
    yy = grid.origin[1] + np.arange(grid.size[1]) * grid.spacing[1]
    canal = (
        ((xx[None, None, :] - cx[:, None, None]) / 9.0) ** 2
        + ((yy[None, :, None] - cy[:, None, None]) / 7.0) ** 2
    ) <= 1.0
    labels[canal] = lab.SPINAL_CANAL_LABEL

    discs = spec.discs
    # 2) vertebral bodies: between consecutive discs (label k above disc k), the sacrum below
    for j in range(len(discs) + 1):
        below = discs[j - 1] if j > 0 else None
        above = discs[j] if j < len(discs) else None
        ref = above if below is None else below
        rot = (
            ref.rotation
            if (below is None or above is None)
            else _mean_rotation(below.rotation, above.rotation)
        )
        if below is None:  # sacrum: 35 mm below L5/S1
            center = above.center - above.rotation[:, 2] * 20.0
            height = 40.0
        elif above is None:  # top vertebra
            height = spec.vertebra_height[-1]
            center = below.center + below.rotation[:, 2] * (height / 2 + 2)
        else:
            center = 0.5 * (below.center + above.center)
            height = np.linalg.norm(above.center - below.center) + 4
        half = np.array([ref.rim_a_lat, max(ref.rim_a_ant, ref.rim_a_post), height / 2]) + 3
        box = grid.local_coords(center, rot, half)
        if box is None:
            continue
        sl, local = box
        u, v = local[..., 0], local[..., 1]
        a_v = np.where(v < 0, ref.rim_a_ant, ref.rim_a_post)
        foot = (u / ref.rim_a_lat) ** 2 + (v / a_v) ** 2 <= 1.0
        inside = foot & (np.abs(local[..., 2]) <= height / 2)
        world = local @ rot.T.astype(np.float32) + center.astype(np.float32)
        for d, is_upper in ((below, True), (above, False)):
            if d is not None:  # stop at the neighbouring disc's endplate surface
                dl = (world - d.center.astype(np.float32)) @ d.rotation.astype(np.float32)
                inside &= _disc_surface(d, dl, upper=is_upper)
        value = -1 if below is None else j  # sacrum: image only, no SPIDER label
        region = labels[sl]
        free = inside & (region == 0)
        region[free] = value
    # 3) discs last: they are the measured objects and must be complete
    for d in discs:
        box = grid.local_coords(d.center, d.rotation, d.half_extent())
        if box is None:
            continue
        sl, local = box
        inside = d.contains(local)
        labels[sl][inside] = lab.disc_mask_label(d.ivd_label)
        a_v = np.where(local[..., 1] < 0, d.a_ant, d.a_post)
        r2 = (local[..., 0] / d.a_lat) ** 2 + (local[..., 1] / a_v) ** 2
        hydration = 1.0 - 0.2 * (d.pfirrmann - 1)
        nuc = np.clip(1.0 - r2 / 0.65, 0, 1) * hydration
        nucleus[sl][inside] = nuc[inside]
    tissue = labels.copy()
    labels[labels < 0] = 0
    return labels, (tissue, nucleus)


def _mean_rotation(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(r1 + r2)
    return u @ vt


def synthesise_image(
    tissue: np.ndarray,
    nucleus: np.ndarray,
    grid: Grid,
    site: Site,
    modality: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """MR-like intensities (int16) from the tissue map: contrast, blur, bias field, noise."""
    col = 0 if modality == "t1" else 1
    img = np.full(tissue.shape, _TISSUE["background"][col], np.float32)
    img += (
        0.04
        * ndimage.gaussian_filter(
            rng.standard_normal(tissue.shape).astype(np.float32), sigma=(3, 3, 0.7)
        )
        * 4
    )
    img[(tissue >= 1) & (tissue <= lab.MAX_INDEX)] = _TISSUE["vertebra"][col]
    img[tissue == -1] = _TISSUE["sacrum"][col]
    img[tissue == lab.SPINAL_CANAL_LABEL] = _TISSUE["canal"][col]
    disc = tissue > lab.DISC_LABEL_OFFSET
    base = _TISSUE["annulus"][col]
    if col == 1:  # T2: bright hydrated nucleus
        img[disc] = base + 0.62 * nucleus[disc]
    else:
        img[disc] = base + 0.05 * nucleus[disc]
    # posterior muscles/elements behind the canal: a little structure for the segmenter
    img = ndimage.gaussian_filter(img, sigma=(0.7, 0.7, 0.35))
    img = np.clip(img, 0, None) ** site.gamma
    # smooth multiplicative bias field
    shape = np.array(tissue.shape, float)
    kk, jj, ii = np.meshgrid(
        *(np.linspace(-1, 1, int(n), dtype=np.float32) for n in shape), indexing="ij", sparse=True
    )
    c = rng.normal(0, 1, 6)
    field_ = c[0] * kk + c[1] * jj + c[2] * ii + c[3] * kk * jj + c[4] * kk**2 + c[5] * jj**2
    img *= np.exp(site.bias * field_ / 2.0).astype(np.float32)
    # Rician noise
    sd = site.noise
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * sd
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * sd
    img = np.sqrt((img + n1) ** 2 + n2**2)
    return np.clip(img * site.gain, 0, 32767).astype(np.int16)


# ---------------------------------------------------------------------------------------
# Writing a cohort
# ---------------------------------------------------------------------------------------
_SEQUENCE = {  # (EchoTime, RepetitionTime, FlipAngle) per modality
    "t1": (10.0, 600.0, 90.0),
    "t2": (100.0, 3500.0, 90.0),
}


def _write_patient(args: tuple[int, int, int, str]) -> dict:
    seed, index, n_patients, out = args
    spec = make_patient(seed, index, n_patients)
    out_dir = Path(out)
    rows_overview, rows_truth = [], []
    for m_i, modality in enumerate(("t1", "t2")):
        rng = np.random.default_rng([seed, index, 2 + m_i])
        grid = _series_grid(spec, spec.site, rng)
        labels, (tissue, nucleus) = rasterise(spec, grid)
        image = synthesise_image(tissue, nucleus, grid, spec.site, modality, rng)
        series = f"{spec.patient}_{modality}"
        for arr, folder in ((image, "images"), (labels, "masks")):
            write_image(
                Volume(arr, grid.spacing, tuple(grid.origin), grid.direction),
                out_dir / folder / f"{series}.mha",
            )
        present = np.unique(labels)
        te, tr, fa = _SEQUENCE[modality]
        rows_overview.append(
            {
                "new_file_name": series,
                "patient_id": int(spec.patient),
                "num_vertebrae": int(sum(1 <= v <= lab.MAX_INDEX for v in present)),
                "num_discs": int(sum(lab.is_disc_label(int(v)) for v in present)),
                "sex": spec.sex,
                "subset": "training",
                "Manufacturer": spec.site.manufacturer,
                "PixelSpacing": f"[{grid.spacing[1]:.4f}, {grid.spacing[2]:.4f}]",
                "SliceThickness": grid.spacing[0],
                "EchoTime": te,
                "RepetitionTime": tr,
                "FlipAngle": fa,
                "MagneticFieldStrength": spec.site.field_strength,
                "institution": spec.site.name,
            }
        )
        for d in spec.discs:
            t = d.truth()
            rows_truth.append(
                {
                    "series": series,
                    "patient": spec.patient,
                    "ivd_label": d.ivd_label,
                    "level": d.level,
                    **{k: t[k] for k in GEOMETRY_FEATURES},
                    "narrowing_factor": d.narrowing_factor,
                    "bulge_mm": d.bulge_mm,
                    "narrowing_severity": d.narrowing_severity,
                    "bulge_severity": d.bulge_severity,
                    "pfirrmann_grade": d.pfirrmann,
                    "convexity": d.convexity,
                    "wedge": d.wedge,
                    "centroid_x_mm": t["centroid_mm"][0],
                    "centroid_y_mm": t["centroid_mm"][1],
                    "centroid_z_mm": t["centroid_mm"][2],
                    "institution": spec.site.name,
                }
            )
    return {
        "overview": rows_overview,
        "truth": rows_truth,
        "gradings": _gradings(spec, seed, index),
    }


def _gradings(spec: PatientSpec, seed: int, index: int) -> list[dict]:
    """Radiological gradings drawn from the generating severities with grader noise."""
    rng = np.random.default_rng([seed, index, 9])
    rows = []
    for d in spec.discs:
        narrowing = int(d.narrowing_severity + GRADER_NOISE * rng.normal() > 0)
        bulging = int(d.bulge_severity + GRADER_NOISE * rng.normal() > 0)
        herniation = int(d.bulge_severity + 1.0 * rng.normal() > 1.4)
        modic = int(rng.choice([0, 1, 2], p=[0.86, 0.05, 0.09]))
        rows.append(
            {
                "Patient": int(spec.patient),
                "IVD label": d.ivd_label,
                "Modic": modic,
                "UP endplate": int(rng.random() < 0.15 + 0.1 * narrowing),
                "LOW endplate": int(rng.random() < 0.15 + 0.1 * narrowing),
                "Spondylolisthesis": int(rng.random() < 0.04),
                "Disc herniation": herniation,
                "Disc narrowing": narrowing,
                "Disc bulging": bulging,
                "Pfirrman grade": d.pfirrmann,
            }
        )
    return rows


def _fmt_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g", lineterminator="\n")


def write_phantom(
    out: str | os.PathLike,
    n_patients: int = 40,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a phantom cohort in SPIDER's layout to ``out``; returns ``out``.

    Files: ``images/<id>_t1.mha``, ``images/<id>_t2.mha``, ``masks/`` (same names),
    ``overview.csv``, ``radiological_gradings.csv``, ``phantom_truth.csv`` and
    ``phantom.json`` (how it was made). The same ``seed`` and ``n_patients`` give
    byte-identical files. ``overview.csv`` adds two columns SPIDER lacks: ``patient_id`` and
    ``institution`` (the imaging site, used to hold one site out).
    """
    if n_patients < 1:
        raise ValueError("n_patients must be at least 1")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    jobs = [(seed, i, n_patients, str(out)) for i in range(n_patients)]
    results: list[dict] = []
    if workers > 1 and n_patients > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for n_done, res in enumerate(pool.map(_write_patient, jobs), start=1):
                results.append(res)
                if progress:
                    progress(n_done, n_patients)
    else:
        for n_done, job in enumerate(jobs, start=1):
            results.append(_write_patient(job))
            if progress:
                progress(n_done, n_patients)
    overview = pd.DataFrame([r for res in results for r in res["overview"]])
    truth = pd.DataFrame([r for res in results for r in res["truth"]])
    gradings = pd.DataFrame([r for res in results for r in res["gradings"]])
    # SPIDER's gradings carry two rows with IVD label 0; reproduce the quirk
    if n_patients >= 3:
        quirk = gradings.iloc[[0]].copy()
        quirk["IVD label"] = 0
        gradings = pd.concat([gradings.iloc[:1], quirk, gradings.iloc[1:]], ignore_index=True)
    _fmt_csv(overview, out / "overview.csv")
    _fmt_csv(gradings, out / "radiological_gradings.csv")
    _fmt_csv(truth, out / "phantom_truth.csv")
    manifest = {
        "generator": "disclatent.data.phantom",
        "version": PHANTOM_VERSION,
        "n_patients": n_patients,
        "seed": seed,
        "sites": [asdict(s) for s in SITES],
    }
    write_text_atomic(json.dumps(manifest, indent=2) + "\n", out / "phantom.json")
    return out


def phantom_is_current(out: str | os.PathLike, n_patients: int, seed: int) -> bool:
    """True when ``out`` already holds a complete phantom made with these settings."""
    path = Path(out) / "phantom.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("version") == PHANTOM_VERSION
        and manifest.get("n_patients") == n_patients
        and manifest.get("seed") == seed
        and (Path(out) / "phantom_truth.csv").exists()
    )


def tree_digest(root: str | os.PathLike) -> str:
    """SHA-256 over the relative paths and bytes of every file under ``root``."""
    h = hashlib.sha256()
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()
