"""Rasterising a phantom spine onto an acquisition grid, and synthesising its MR image."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from disclatent.data import labels as lab
from disclatent.data.phantom.anatomy import (
    DiscSpec,
    PatientSpec,
    Site,
    hydration,
    nucleus_extent,
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


def series_grid(
    spec: PatientSpec,
    site: Site,
    rng: np.random.Generator,
    spacing: tuple[float, float, float] | None = None,
    n_discs: int | None = None,
) -> Grid:
    """A sagittal acquisition covering the spine, with identity direction as in SPIDER.

    ``spacing`` (x = left-right slice spacing, y, z; mm) is the site's, jittered, unless
    given; ``n_discs`` limits the field of view to the lowest discs: it ends superiorly
    midway between disc ``n_discs`` and the next, so that exactly that many discs show."""
    if spacing is None:
        sx = site.slice_thickness_mm * rng.uniform(0.97, 1.03)
        sy, sz = (s * rng.uniform(0.97, 1.03) for s in site.inplane_mm)
    else:
        sx, sy, sz = spacing
    centers = np.array([d.center for d in spec.discs])
    lo = centers.min(axis=0) - np.array([40.0, 40.0, 45.0])
    hi = centers.max(axis=0) + np.array([40.0, 45.0, 40.0])
    lo += rng.uniform(-4, 4, 3)
    if n_discs is not None and n_discs < len(centers):
        hi[2] = 0.5 * (centers[n_discs - 1, 2] + centers[n_discs, 2])
    ni, nj, nk = (int(math.ceil((hi[a] - lo[a]) / s)) for a, s in enumerate((sx, sy, sz)))
    # SPIDER stores rounded header values
    spacing = (round(sx, 4), round(sy, 4), round(sz, 4))
    return Grid(size=(ni, nj, nk), spacing=spacing, origin=np.round(lo, 3))


def _disc_surface(d: DiscSpec, local: np.ndarray, upper: bool) -> np.ndarray:
    """Signed distance-like test: True beyond the disc's upper (or lower) surface."""
    half = 0.5 * d.thickness(local[..., 0], local[..., 1])
    return local[..., 2] > half if upper else local[..., 2] < -half


def rasterise(spec: PatientSpec, grid: Grid) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """SPIDER label map on ``grid``, numpy order (k, j, i), and for the image the tissue map
    (labels with the sacrum as -1) and the nucleus' hydration weight of each disc voxel."""
    shape = grid.size[::-1]
    labels = np.zeros(shape, np.int16)
    nucleus = np.zeros(shape, np.float32)  # hydration weight of disc voxels (T2 signal)
    labels[_canal(spec.canal_points, grid)] = lab.SPINAL_CANAL_LABEL
    discs = spec.discs
    # vertebral bodies: between consecutive discs (label k above disc k), the sacrum below
    for j in range(len(discs) + 1):
        below = discs[j - 1] if j > 0 else None
        above = discs[j] if j < len(discs) else None
        _draw_vertebra(labels, grid, below, above, spec.vertebra_height[-1], j)
    # discs last: they are the measured objects and must be complete
    for d in discs:
        _draw_disc(labels, nucleus, grid, d)
    tissue = labels.copy()
    labels[labels < 0] = 0
    return labels, (tissue, nucleus)


def _canal(pts: np.ndarray, grid: Grid) -> np.ndarray:
    """The spinal canal: an elliptic tube around a smooth centre line (cubic in z)."""
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
    return (
        ((xx[None, None, :] - cx[:, None, None]) / 9.0) ** 2
        + ((yy[None, :, None] - cy[:, None, None]) / 7.0) ** 2
    ) <= 1.0


def _vertebra_box(
    below: DiscSpec | None, above: DiscSpec | None, top_height: float
) -> tuple[DiscSpec, np.ndarray, np.ndarray, float]:
    """The disc whose rim shapes a vertebral body, its frame, centre and height (mm)."""
    if below is None:  # sacrum: 35 mm below L5/S1
        assert above is not None
        return above, above.rotation, above.center - above.rotation[:, 2] * 20.0, 40.0
    if above is None:  # top vertebra
        return (
            below,
            below.rotation,
            below.center + below.rotation[:, 2] * (top_height / 2 + 2),
            top_height,
        )
    rot = _mean_rotation(below.rotation, above.rotation)
    height = float(np.linalg.norm(above.center - below.center)) + 4
    return below, rot, 0.5 * (below.center + above.center), height


def _draw_vertebra(
    labels: np.ndarray,
    grid: Grid,
    below: DiscSpec | None,
    above: DiscSpec | None,
    top_height: float,
    value: int,
) -> None:
    """Label the vertebral body between two discs (``value``; the sacrum: -1, image only)."""
    ref, rot, center, height = _vertebra_box(below, above, top_height)
    half = np.array([ref.rim_a_lat, max(ref.rim_a_ant, ref.rim_a_post), height / 2]) + 3
    box = grid.local_coords(center, rot, half)
    if box is None:
        return
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
    region = labels[sl]
    free = inside & (region == 0)
    region[free] = -1 if below is None else value


def _draw_disc(labels: np.ndarray, nucleus: np.ndarray, grid: Grid, d: DiscSpec) -> None:
    """Label one disc and set the hydration weight of its voxels."""
    box = grid.local_coords(d.center, d.rotation, d.half_extent())
    if box is None:
        return
    sl, local = box
    inside = d.contains(local)
    labels[sl][inside] = lab.disc_mask_label(d.ivd_label)
    a_v = np.where(local[..., 1] < 0, d.a_ant, d.a_post)
    r2 = (local[..., 0] / d.a_lat) ** 2 + (local[..., 1] / a_v) ** 2
    nuc = np.clip(1.0 - r2 / nucleus_extent(d.degeneration), 0, 1) * hydration(d.degeneration)
    nucleus[sl][inside] = nuc[inside]


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
