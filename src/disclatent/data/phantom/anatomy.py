"""The phantom's anatomy: per-level calibration, imaging sites, and each disc's analytic solid.

See :mod:`disclatent.data.phantom` for the disc solid and the definitions of its true
geometry; calibration follows healthy adult lumbar discs and SPIDER's grading prevalence
(``book/method.md``, *Data*).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import labels as lab
from disclatent.data.phantom.frames import plane_angles, principal_turn, rotation_matrix

# ---------------------------------------------------------------------------------------
# Per-level calibration (index = IVD label - 1: L5/S1, L4/L5, L3/L4, L2/L3, L1/L2, T12/L1,
# T11/T12). Sizes of healthy adult discs, disc tissue only (``book/method.md``, *Data*).
# ---------------------------------------------------------------------------------------
AP_DEPTH_MM = np.array([31.5, 33.0, 32.5, 31.0, 30.0, 29.0, 28.0])
LATERAL_WIDTH_MM = np.array([44.0, 45.0, 44.0, 42.5, 41.0, 39.0, 37.0])
HEIGHT_MM = np.array([5.7, 6.6, 6.4, 5.9, 5.4, 4.9, 4.5])
SAGITTAL_DEG = np.array([-30.0, -16.0, -5.0, 3.0, 8.0, 11.0, 12.0])
WEDGE = np.array([0.34, 0.24, 0.14, 0.08, 0.04, 0.02, 0.0])
VERTEBRA_HEIGHT_MM = np.array([27.0, 27.5, 27.5, 27.0, 26.5, 25.0, 24.0])  # vertebra above
# SPIDER's per-level prevalence (``book/method.md``, *Data*); T11/T12 extrapolated
NARROWING_PREVALENCE = np.array([0.58, 0.59, 0.45, 0.36, 0.23, 0.13, 0.10])
BULGING_PREVALENCE = np.array([0.69, 0.75, 0.69, 0.60, 0.38, 0.17, 0.12])
PFIRRMANN_MEAN = np.array([3.4, 3.3, 3.0, 2.8, 2.6, 2.3, 2.2])
# irregularity of real outlines (``book/method.md``, *Data*): the footprint's radius deviates
# by harmonics 2..OUTLINE_HARMONICS+1 (sd OUTLINE_SD / sqrt(m - 1) each, relative; their
# absolute sum at most OUTLINE_MAX, so that a disc grows by at most that share), the
# endplates by BUMPS plane waves of BUMP_WAVELENGTH_MM (sd BUMP_SD each, relative thickness)
OUTLINE_HARMONICS = 7
OUTLINE_SD = 0.035
OUTLINE_MAX = 0.10
BUMPS = 8
BUMP_WAVELENGTH_MM = (6.0, 16.0)
BUMP_SD = 0.07
GRADER_NOISE = 0.7  # sd of the grader's error on the unit-variance severity scale
# disc composition (``book/method.md``, *Data*): a continuous degeneration state on the
# Pfirrmann scale (1-5) drives the nucleus' hydration and extent; the grader reads it with
# noise of sd PFIRRMANN_GRADER_NOISE grades, so that even a reader who knew the state exactly
# would agree with the phantom's grades at quadratic-weighted kappa about 0.77 (simulated:
# 0.3 -> 0.85, 0.5 -> 0.77, 0.7 -> 0.68), the published inter-rater level of 0.7-0.8
PFIRRMANN_GRADER_NOISE = 0.5

#: the factors each disc is generated from, as columns of ``phantom_truth.csv``: its true
#: geometry, endplate shape and pathology (what a latent code may be compared with)
GENERATING_FACTORS = [*GEOMETRY_FEATURES, "wedge", "convexity", "narrowing_factor", "bulge_mm"]
#: the disc's generating composition, also in ``phantom_truth.csv`` (what intensity features
#: may be compared with): the continuous degeneration state and what it drives
COMPOSITION_FACTORS = ["degeneration", "hydration", "nucleus_extent"]


def hydration(degeneration: float) -> float:
    """Relative T2 signal of the nucleus (1: a healthy grade-1 disc) at a continuous
    ``degeneration`` state on the Pfirrmann scale: 0.2 lower per grade, at least 0.05."""
    return float(np.clip(1.0 - 0.2 * (degeneration - 1.0), 0.05, 1.0))


def nucleus_extent(degeneration: float) -> float:
    """Squared relative radius of the nucleus within the footprint (the nucleus-annulus
    boundary; 0.65 for a healthy disc), shrinking by 0.08 per grade, at least 0.25."""
    return float(np.clip(0.65 - 0.08 * (degeneration - 1.0), 0.25, 0.65))


@dataclass(frozen=True)
class Levels:
    """Per-level calibration of the phantom (index = IVD label - 1, from L5/S1 up): disc
    sizes (mm) before pathology, sagittal tilt (deg), wedge, the vertebra above each disc
    (mm), graded prevalences and mean Pfirrmann grade, and the footprint's super-ellipse
    exponent (2: ellipses)."""

    ap_depth_mm: np.ndarray
    lateral_width_mm: np.ndarray
    height_mm: np.ndarray
    sagittal_deg: np.ndarray
    wedge: np.ndarray
    vertebra_height_mm: np.ndarray
    narrowing_prevalence: np.ndarray
    bulging_prevalence: np.ndarray
    pfirrmann_mean: np.ndarray
    squareness: float = 2.0

    def __len__(self) -> int:
        return len(self.ap_depth_mm)


#: the default phantom's calibration: healthy adult discs (``book/method.md``, *Data*)
DEFAULT_LEVELS = Levels(
    AP_DEPTH_MM,
    LATERAL_WIDTH_MM,
    HEIGHT_MM,
    SAGITTAL_DEG,
    WEDGE,
    VERTEBRA_HEIGHT_MM,
    NARROWING_PREVALENCE,
    BULGING_PREVALENCE,
    PFIRRMANN_MEAN,
)


@dataclass(frozen=True)
class Grades:
    """A disc's radiological gradings, given (the rehearsal cohort copies SPIDER's)."""

    narrowing: int
    bulging: int
    pfirrmann: int


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
    # continuous degeneration state on the Pfirrmann scale (the grade is its noisy reading)
    degeneration: float = 1.0
    # healthy footprint, used for the vertebral rim
    rim_a_lat: float = 0.0
    rim_a_ant: float = 0.0
    rim_a_post: float = 0.0
    # irregularity (see :func:`irregularity`): relative radial deviation of the footprint's
    # outline, Fourier coefficients (cos, sin) of harmonics 2, 3, ...; and endplate bumps,
    # plane waves of the thickness, rows (k_u, k_v cycles/mm, phase rad, relative amplitude)
    outline: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    bumps: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    # exponent of the footprint's super-ellipse halves (2: ellipses; larger: squarer, a
    # fuller footprint for the same widths, as real discs have)
    squareness: float = 2.0

    @property
    def level(self) -> str:
        return lab.level_name(self.ivd_label)

    @property
    def outline_growth(self) -> float:
        """The outline's largest relative radius (1 for the ellipses)."""
        return 1.0 + float(np.abs(self.outline).sum())

    @property
    def notch_offset(self) -> float:
        return 0.6 * self.notch_halfwidth

    # -- the analytic solid ------------------------------------------------------------
    def outline_scale(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Relative radius of the outline in the direction of ``(u, v)`` (1: the ellipses)."""
        a_v = np.where(v < 0, self.a_ant, self.a_post)
        theta = np.arctan2(v / a_v, u / self.a_lat)
        scale = np.ones(np.shape(theta))
        for m, (c, s) in enumerate(self.outline, start=2):
            scale = scale + c * np.cos(m * theta) + s * np.sin(m * theta)
        return scale

    def radius2(self, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        """Squared normalised radius of ``(u, v)`` (mm) in the footprint's halves: 1 on the
        regular outline; the super-ellipse norm when :attr:`squareness` is not 2."""
        a_v = np.where(np.asarray(v) < 0, self.a_ant, self.a_post)
        if self.squareness == 2.0:
            return (u / self.a_lat) ** 2 + (v / a_v) ** 2
        p = self.squareness
        return (np.abs(u / self.a_lat) ** p + np.abs(v / a_v) ** p) ** (2.0 / p)

    def footprint(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        r2 = self.radius2(u, v)
        inside = r2 <= self.outline_scale(u, v) ** 2 if len(self.outline) else r2 <= 1.0
        c = self.a_post + self.notch_offset
        notch = (u / self.notch_halfwidth) ** 2 + (
            (v - c) / (self.notch_offset + self.notch_depth)
        ) ** 2 < 1.0
        return inside & ~notch

    def thickness(self, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        r2 = np.minimum(self.radius2(u, v), 1.0)
        a_mean = 0.5 * (self.a_ant + self.a_post)
        t = self.h0 * (1.0 - self.convexity * r2) * (1.0 - self.wedge * v / a_mean)
        for ku, kv, phase, amp in self.bumps:
            t = t * (1.0 + amp * np.cos(2 * np.pi * (ku * u + kv * v) + phase))
        return t

    def contains(self, local: np.ndarray) -> np.ndarray:
        u, v, w = local[..., 0], local[..., 1], local[..., 2]
        return self.footprint(u, v) & (np.abs(w) <= 0.5 * self.thickness(u, v))

    def half_extent(self) -> np.ndarray:
        grow = self.outline_growth
        bump = 1.0 + float(np.abs(self.bumps[:, 3]).sum()) if len(self.bumps) else 1.0
        a = max(self.a_ant, self.a_post)
        return np.array([self.a_lat * grow, a * grow, self.h0 * 1.5 * bump]) + 1.0

    def _edges(self, point: np.ndarray, direction: np.ndarray, step_mm: float) -> float:
        """Edge-to-edge extent of the footprint on the line through ``point`` along
        ``direction`` (both in the ``(u, v)`` plane), to ``step_mm``."""
        reach = float(self.half_extent()[:2].max()) + 1.0
        t = np.arange(-reach, reach, step_mm) + step_mm / 2
        uv = point[None, :] + t[:, None] * direction[None, :]
        hit = t[self.footprint(uv[:, 0], uv[:, 1])]
        return float(hit.max() - hit.min() + step_mm) if len(hit) else 0.0

    # -- truth ---------------------------------------------------------------------------
    def principal_rotation(self, uu: np.ndarray, vv: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """The solid's principal frame in its own ``(u, v, w)`` coordinates, from the
        thickness ``weight`` sampled at ``(uu, vv)`` (mm): see :func:`principal_turn`."""
        return principal_turn(self.rotation, uu, vv, weight)

    def truth(self, step_mm: float = 0.05) -> dict[str, float]:
        """Exact-by-quadrature geometry of the solid (midpoint rule on a fine grid): the
        features of :data:`~disclatent.conventions.GEOMETRY_FEATURES` (angles and widths on
        the solid's principal axes, :meth:`principal_rotation`), the footprint area and
        the centroid ``centroid_{x,y,z}_mm`` (LPS millimetres)."""
        grow = self.outline_growth
        us = np.arange(-self.a_lat * grow, self.a_lat * grow, step_mm) + step_mm / 2
        vs = np.arange(-self.a_ant * grow, self.a_post * grow, step_mm) + step_mm / 2
        uu, vv = np.meshgrid(us, vs, indexing="ij")
        inside = self.footprint(uu, vv)
        t = self.thickness(uu, vv)
        area = inside.sum() * step_mm**2
        volume = (t * inside).sum() * step_mm**2
        weight = t * inside
        centroid_local = np.array([(uu * weight).sum(), (vv * weight).sum(), 0.0]) / weight.sum()
        centroid = self.center + self.rotation @ centroid_local
        turn = self.principal_rotation(uu, vv, weight)  # principal axes, local coordinates
        angles = plane_angles(self.rotation @ turn)
        # widths edge to edge on the lines through the centroid along the principal axes,
        # as measured (for the regular solid about a_ant + a_post - notch_depth and 2 a_lat)
        fine = min(step_mm, 0.01)
        on_line = centroid_local[:2]
        return {
            "height_mm": volume / area,
            "ap_width_mm": self._edges(on_line, turn[:2, 1], fine),
            "lateral_width_mm": self._edges(on_line, turn[:2, 0], fine),
            **angles,
            "volume_mm3": volume,
            "footprint_area_mm2": area,
            **{f"centroid_{a}_mm": float(c) for a, c in zip("xyz", centroid, strict=True)},
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
def irregularity(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A disc's random outline harmonics and endplate bumps (the fields ``outline`` and
    ``bumps`` of :class:`DiscSpec`), as real masks show them: lobes and dents of a few
    millimetres on the footprint, and wavy endplates."""
    m = np.arange(2, OUTLINE_HARMONICS + 2)
    outline = rng.normal(0.0, 1.0, (len(m), 2)) * (OUTLINE_SD / np.sqrt(m - 1))[:, None]
    outline *= min(1.0, OUTLINE_MAX / np.abs(outline).sum())
    wavelength = rng.uniform(*BUMP_WAVELENGTH_MM, BUMPS)
    direction = rng.uniform(0.0, np.pi, BUMPS)
    bumps = np.column_stack(
        [
            np.cos(direction) / wavelength,
            np.sin(direction) / wavelength,
            rng.uniform(0.0, 2 * np.pi, BUMPS),
            rng.normal(0.0, BUMP_SD, BUMPS),
        ]
    )
    return outline, bumps


def _site_for(index: int, n_patients: int) -> Site:
    """Deterministic site assignment with the sites' shares (every site used if n >= 4)."""
    shares = np.array([s.share for s in SITES])
    bounds = np.cumsum(shares) * n_patients
    position = index + 0.5
    return SITES[int(np.searchsorted(bounds, position))]


def make_patient(seed: int, index: int, n_patients: int) -> PatientSpec:
    """Anatomy and pathology of patient number ``index + 1``; depends on (seed, index) only."""
    rng = np.random.default_rng([seed, index, 1])
    site = _site_for(index, n_patients)
    n_discs = int(rng.choice([5, 6, 7], p=[0.3, 0.5, 0.2]))
    return build_patient(rng, seed, index, str(index + 1), site, n_discs)


def _severities(
    rng: np.random.Generator, mu_n: float, mu_b: float, degeneration: float, given: Grades | None
) -> tuple[float, float, float]:
    """(narrowing severity, bulging severity, the disc's own factor) on the unit-variance
    scale; with ``given`` grades, drawn from their posterior: redrawn until a grader with
    the phantom's noise (:data:`GRADER_NOISE`) would grade them so."""
    for _ in range(1000):
        e_disc = rng.normal()
        sev_n = mu_n + 0.55 * degeneration + 0.835 * e_disc
        sev_b = mu_b + 0.45 * degeneration + 0.45 * e_disc + 0.77 * rng.normal()
        if given is None:
            return sev_n, sev_b, e_disc
        seen_n = int(sev_n + GRADER_NOISE * rng.normal() > 0)
        seen_b = int(sev_b + GRADER_NOISE * rng.normal() > 0)
        if (seen_n, seen_b) == (given.narrowing, given.bulging):
            return sev_n, sev_b, e_disc
    raise RuntimeError(f"no severity matches the grades {given}")  # pragma: no cover


def build_patient(
    rng: np.random.Generator,
    seed: int,
    index: int,
    patient: str,
    site: Site,
    n_discs: int,
    levels: Levels = DEFAULT_LEVELS,
    grades: dict[int, Grades] | None = None,
) -> PatientSpec:
    """A patient's discs L5/S1 upward (``n_discs`` of them) from ``levels``, stacked along
    the lordotic curve. ``grades`` (by IVD label) fixes the gradings a disc must be seen
    with: its severities are drawn given them, its Pfirrmann grade is the given one; discs
    without grades are drawn freely. ``rng`` is consumed in a fixed order (same draws, same
    patient); the outline of disc ``k`` has its own stream ``(seed, index, 2, k)``."""
    if n_discs > len(levels):
        raise ValueError(f"{n_discs} discs asked, the calibration has {len(levels)} levels")
    grades = grades or {}
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
        mu_n = s_grader * norm.ppf(levels.narrowing_prevalence[i])
        mu_b = s_grader * norm.ppf(levels.bulging_prevalence[i])
        given = grades.get(k)
        sev_n, sev_b, _ = _severities(rng, mu_n, mu_b, degeneration, given)
        narrowing = 1.0 - 0.32 * norm.cdf(1.4 * (sev_n - 0.3))
        bulge = 3.5 * norm.cdf(1.6 * (sev_b - 0.4))
        # composition: the state, then the grader's reading of it, from their own stream
        state = levels.pfirrmann_mean[i] + 0.55 * sev_n - 0.55 * mu_n + 0.5 * rng.normal()
        grader = np.random.default_rng([seed, index, 3, k]).normal()
        if given is not None:  # the grade is given: a state it could have been read from
            grade = given.pfirrmann
            state = grade - PFIRRMANN_GRADER_NOISE * grader
        else:
            grade = int(np.clip(np.rint(state + PFIRRMANN_GRADER_NOISE * grader), 1, 5))
        state = float(np.clip(state, 1.0, 5.0))

        a_lat0 = 0.5 * levels.lateral_width_mm[i] * size * rng.normal(1.0, 0.04)
        ap = levels.ap_depth_mm[i] * size * rng.normal(1.0, 0.04)
        ant_frac = rng.uniform(0.50, 0.56)
        a_ant0, a_post0 = ap * ant_frac, ap * (1 - ant_frac)
        notch_depth0 = ap * rng.uniform(0.07, 0.14)
        notch_hw = a_lat0 * rng.uniform(0.28, 0.40)
        # bulge: mostly posterior, some lateral and anterior
        a_lat = a_lat0 + 0.35 * bulge
        a_ant = a_ant0 + 0.25 * bulge
        a_post = a_post0 + notch_depth0 + bulge  # notch is cut back out below
        convexity = rng.uniform(0.12, 0.32)
        wedge = float(np.clip(levels.wedge[i] + rng.normal(0, 0.04), -0.05, 0.45))
        target_h = levels.height_mm[i] * height_scale * rng.normal(1.0, 0.07) * narrowing
        sag = lordosis * levels.sagittal_deg[i] + pose + rng.normal(0, 2.0)
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
            degeneration=state,
            rim_a_lat=a_lat0 + 0.8,
            rim_a_ant=a_ant0 + 0.8,
            rim_a_post=a_post0 + notch_depth0 + 0.8,
            squareness=levels.squareness,
        )
        # drawn from their own stream, so the rest of the anatomy does not depend on them
        spec.outline, spec.bumps = irregularity(np.random.default_rng([seed, index, 2, k]))
        # scale h0 so that the mean thickness equals the target height
        spec.h0 = target_h / spec.truth(step_mm=0.25)["height_mm"]
        discs.append(spec)

    canal, vert_heights = stack_spine(discs, size, rng, levels.vertebra_height_mm)
    return PatientSpec(patient, site, sex, discs, canal, vert_heights)


def stack_spine(
    discs: list[DiscSpec], size: float, rng: np.random.Generator, vertebra_mm: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    """Place ``discs`` (L5/S1 first) upward along the lordotic curve, in place: L5/S1 near
    the LPS point (0, -10, -120) mm, each next disc one vertebral body higher along the mean
    of the two disc axes. ``vertebra_mm``: per-level height of the vertebra above each disc
    (mm), scaled by the patient's ``size``. Returns the spinal canal's centre line ((n, 3),
    LPS mm, behind the vertebral rims) and the vertebral heights (mm, the top one last)."""
    x0 = rng.normal(0.0, 3.0)
    center = np.array([x0, rng.normal(-10.0, 4.0), rng.normal(-120.0, 6.0)])
    vert_heights = []
    for j, d in enumerate(discs):
        if j == 0:
            d.center = center
            continue
        below = discs[j - 1]
        hv = vertebra_mm[j - 1] * size * rng.normal(1.0, 0.03)
        vert_heights.append(hv)
        axis = below.rotation[:, 2] + d.rotation[:, 2]
        axis /= np.linalg.norm(axis)
        t_below = below.thickness(0.0, 0.0) / 2
        t_here = d.thickness(0.0, 0.0) / 2
        d.center = (
            below.center + below.rotation[:, 2] * t_below + axis * hv + d.rotation[:, 2] * t_here
        )
    vert_heights.append(vertebra_mm[len(discs) - 1] * size)  # vertebra above the top disc

    # spinal canal centre line: behind the vertebral rim, following the discs
    canal = np.array([d.center + d.rotation[:, 1] * (d.rim_a_post + 3.0 + 7.0) for d in discs])
    return canal, vert_heights
