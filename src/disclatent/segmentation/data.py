"""Segmentation data: the network grid, intensity normalisation, the site split, patches.

**Network grid.** Every image is first put in the canonical LPS orientation from its header
(:func:`disclatent.data.volume.to_canonical`: index axes i, j, k towards Left, Posterior, Superior;
numpy order (SI, AP, LR)), then resampled to the study's spacing
(:data:`disclatent.conventions.PAPER_SPACING`; a :class:`~disclatent.conventions.Spacing`
names its axes) with this axis mapping::

    left-right (SPIDER x, index i)            1.4 mm
    anterior-posterior (SPIDER y, index j)    1.2 mm
    superior-inferior (SPIDER z, index k)     1.5 mm

Images are resampled with linear interpolation, label maps with nearest neighbour (linear
interpolation of label values dilates thin discs). The resampled grid covers the same field
of view as the input (voxel corners aligned), so nothing is cropped.

**Intensity normalisation** uses the image alone, never its mask: the 0.5th and 99.5th
percentiles of the resampled image are mapped to 0 and 1 and values are clipped to [0, 1].
The same function runs on training, validation and test scans; no scan is cropped with its
ground truth.

**Split.** The test cohort is every patient of one site; training and validation patients come
from the other sites, drawn per patient (all series of a patient share one role), seeded.
See ``book/method.md``, *Segmentation*.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm.auto import tqdm

from disclatent import published
from disclatent.conventions import PAPER_SPACING, Spacing
from disclatent.data import labels as lab
from disclatent.data.spider import SpiderFolder, read_overview
from disclatent.data.volume import (
    DataError,
    Volume,
    list_images,
    read_image,
    read_mask,
    series_name,
    to_canonical,
)
from disclatent.formatting import natural_key

if TYPE_CHECKING:
    from disclatent.segmentation.cases import AnyCase
    from disclatent.segmentation.config import SegConfig


# ---------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------
def spacing_table(spacing: Spacing = PAPER_SPACING) -> pd.DataFrame:
    """The network grid per canonical axis, in ITK (x, y, z) = (i, j, k) order."""
    axes = ["LR (x, index i)", "AP (y, index j)", "SI (z, index k)"]
    return pd.DataFrame({"axis": axes, "spacing (mm)": spacing.xyz})


def _check_spacing(spacing: Spacing) -> Spacing:
    if not isinstance(spacing, Spacing):  # a bare tuple: which order? never guess
        raise TypeError(
            f"spacing must be a disclatent.conventions.Spacing(si, ap, lr), got {spacing!r}"
        )
    return spacing


def resample_to_spacing(
    volume: Volume, spacing: Spacing = PAPER_SPACING, label: bool = False
) -> Volume:
    """``volume`` in canonical LPS orientation, resampled to ``spacing``.

    The canonical index axes (i, j, k) run left-right, anterior-posterior and
    superior-inferior, so the grid's ITK spacing is ``spacing.xyz``. ``label=True`` uses
    nearest-neighbour interpolation and keeps the integer type; otherwise linear
    interpolation to float32.
    """
    canon = to_canonical(volume)
    sp_in = np.asarray(canon.spacing, float)
    sp_out = np.asarray(_check_spacing(spacing).xyz, float)
    size_in = np.asarray(canon.size, float)
    size_out = np.maximum(np.round(size_in * sp_in / sp_out).astype(int), 1)
    # align the outer voxel corners of both grids
    origin = np.asarray(canon.origin) + canon.direction @ ((sp_out - sp_in) / 2.0)
    img, interp, pixel = _for_resampling(canon.to_sitk(), label)
    out = sitk.Resample(
        img,
        [int(n) for n in size_out],
        sitk.Transform(),
        interp,
        origin.tolist(),
        sp_out.tolist(),
        canon.direction.flatten(order="C").tolist(),
        0.0,
        pixel,
    )
    # (ITK treats the image as extending half a voxel beyond its outer voxel centres, so
    # the corner-aligned rim is interpolated from the edge voxels, not from the default 0)
    return Volume.from_sitk(out, volume.path)


def _for_resampling(img: sitk.Image, label: bool) -> tuple[sitk.Image, int, int]:
    """Image, interpolator and output pixel type: nearest neighbour keeping the label type
    for label maps (never linear: it dilates masks), linear in float32 for intensities."""
    if label:
        return img, sitk.sitkNearestNeighbor, img.GetPixelID()
    return sitk.Cast(img, sitk.sitkFloat32), sitk.sitkLinear, sitk.sitkFloat32


def resample_like(volume: Volume, reference: Volume, label: bool = False) -> Volume:
    """``volume`` resampled onto the voxel grid of ``reference`` (physical space)."""
    img, interp, pixel = _for_resampling(volume.to_sitk(), label)
    ref = sitk.Image([int(n) for n in reference.size], sitk.sitkUInt8)
    ref.SetSpacing(reference.spacing)
    ref.SetOrigin(reference.origin)
    ref.SetDirection(reference.direction.flatten(order="C").tolist())
    out = sitk.Resample(img, ref, sitk.Transform(), interp, 0.0, pixel)
    return Volume.from_sitk(out, reference.path)


def normalise_intensity(array: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """Map the ``lower``/``upper`` percentiles of the whole image to 0/1, clip to [0, 1].

    Uses the image only (no mask), so it runs identically on test scans.
    """
    arr = np.asarray(array, np.float32)
    lo, hi = np.percentile(arr, [lower, upper])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-6 * max(abs(hi), 1.0):
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def disc_foreground(mask: np.ndarray) -> np.ndarray:
    """All disc labels (201-225) as one binary foreground (uint8)."""
    return (
        (mask > lab.DISC_LABEL_OFFSET) & (mask <= lab.DISC_LABEL_OFFSET + lab.MAX_INDEX)
    ).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Sites and the split
# ---------------------------------------------------------------------------------------
def site_table(root: str | Path, modalities: tuple[str, ...] | None = ("t1",)) -> pd.DataFrame:
    """One row per usable series (image and mask present): series, patient, modality, site.

    The site is the overview's ``institution`` column (the phantom has it). Real SPIDER has
    no such column; there the site is approximated by manufacturer and field strength,
    and ``site_source`` says so.
    """
    folder = SpiderFolder(Path(root))
    overview = read_overview(folder.overview_csv)
    masks = set(folder.series(modalities=None))
    images = set()
    if folder.images_dir.is_dir():
        images = {series_name(p) for p in list_images(folder.images_dir)}
    df = overview[overview["series"].isin(masks & images)].copy()
    if modalities is not None:
        wanted = {m.lower() for m in modalities}
        df = df[df["modality"].str.lower().isin(wanted)]
    if df.empty:
        raise DataError(
            f"{folder.root}: no series with both an image and a mask"
            f"{'' if modalities is None else f' of modality {modalities}'}"
        )
    if "institution" in df:
        df["site"] = df["institution"].astype(str)
        df["site_source"] = "institution"
    elif {"Manufacturer", "MagneticFieldStrength"} <= set(df.columns):
        df["site"] = (
            df["Manufacturer"].astype(str).str.split().str[0]
            + " "
            + df["MagneticFieldStrength"].astype(str)
            + " T"
        )
        df["site_source"] = "manufacturer + field strength"
    else:
        raise DataError(
            f"{folder.overview_csv}: no 'institution' column, nor 'Manufacturer' and "
            "'MagneticFieldStrength' to approximate the imaging site"
        )
    df["patient"] = df["patient"].astype(str)
    out = df[["series", "patient", "modality", "site", "site_source"]]
    return out.sort_values("series", key=lambda c: c.map(natural_key)).reset_index(drop=True)


def choose_test_site(sites: pd.DataFrame, target_fraction: float = published.TEST_FRACTION) -> str:
    """The site whose share of patients is closest to ``target_fraction`` (the paper held
    out 20 %); ties go to the last site name in sorted order."""
    per = sites.groupby("site")["patient"].nunique()
    share = per / per.sum()
    gap = (share - target_fraction).abs().round(9)
    best = gap[gap == gap.min()].index
    return sorted(best)[-1]


def make_split(
    sites: pd.DataFrame, test_site: str = "auto", val_fraction: float = 0.2, seed: int = 0
) -> pd.DataFrame:
    """Assign every series a role: ``test`` (all patients of ``test_site``), ``val`` or
    ``train`` (patients of the other sites, seeded; validation patients are spread over the
    sites). Adds the ``role`` column; all series of a patient share a role."""
    if test_site == "auto":
        test_site = choose_test_site(sites)
    if test_site not in set(sites["site"]):
        raise ValueError(
            f"test site {test_site!r} not in the cohort (sites: "
            f"{', '.join(sorted(sites['site'].unique()))})"
        )
    patient_site = sites.groupby("patient")["site"].agg(lambda s: sorted(set(s)))
    multi = patient_site[patient_site.map(len) > 1]
    if len(multi):
        raise DataError(f"patients scanned at several sites: {list(multi.index[:5])}")
    patient_site = patient_site.map(lambda s: s[0])
    rng = np.random.default_rng(seed)
    queues = []
    for site in sorted(set(patient_site) - {test_site}):
        pats = sorted(patient_site[patient_site == site].index, key=natural_key)
        queues.append([pats[i] for i in rng.permutation(len(pats))])
    # round-robin over the sites so that validation patients come from every site
    order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    if len(order) < 2:
        raise DataError(
            f"need at least 2 patients outside the test site {test_site!r} "
            f"(one to train, one to validate); found {len(order)}"
        )
    n_val = min(max(1, int(round(val_fraction * len(order)))), len(order) - 1)
    val = set(order[:n_val])
    role = {
        p: ("test" if patient_site[p] == test_site else "val" if p in val else "train")
        for p in patient_site.index
    }
    out = sites.copy()
    out["role"] = out["patient"].map(role)
    return out


def held_out_site(split: pd.DataFrame) -> str:
    """The test site of a split (:func:`make_split`)."""
    sites = sorted(set(split.loc[split["role"] == "test", "site"]))
    if len(sites) != 1:
        raise DataError(f"a split holds out exactly one site; its test series have {sites}")
    return str(sites[0])


def split_counts(split: pd.DataFrame) -> pd.DataFrame:
    """Patients per site (rows) and role (columns) of a split."""
    return split.pivot_table(
        index="site", columns="role", values="patient", aggfunc="nunique", fill_value=0
    )


# ---------------------------------------------------------------------------------------
# Cases and patches
# ---------------------------------------------------------------------------------------
@dataclass
class Case:
    """One series on the network grid: normalised image (SI, AP, LR) and disc foreground."""

    series: str
    image: np.ndarray  # float32 in [0, 1]
    label: np.ndarray | None  # uint8
    grid: Volume  # geometry of the network grid (array: the label or image)
    foreground: np.ndarray | None = None  # flat indices of foreground voxels


def load_case(
    image_path: str | Path,
    mask_path: str | Path | None = None,
    spacing: Spacing = PAPER_SPACING,
) -> Case:
    """Read, resample and normalise one series (mask optional)."""
    image = read_image(image_path)
    net = resample_to_spacing(image, spacing, label=False)
    arr = normalise_intensity(net.array)
    label = fg = None
    if mask_path is not None:
        mask = read_mask(mask_path, require_discs=True)
        if not image.same_grid(mask):
            raise DataError(f"{mask.path}: mask grid does not match image {image.path}")
        net_mask = resample_to_spacing(mask, spacing, label=True)
        label = disc_foreground(net_mask.array)
        if label.shape != arr.shape:
            raise DataError(
                f"{mask.path}: resampled mask shape {label.shape} differs from image {arr.shape}"
            )
        fg = np.flatnonzero(label)
    return Case(series_name(image_path), arr, label, net.with_array(arr), fg)


class SeriesSkippedWarning(UserWarning):
    """A series left out of training or validation (unreadable, or its mask's grid is not
    its image's); the warning names the file and the problem."""


def load_cases(
    data_root: Path,
    split: pd.DataFrame,
    role: str,
    cfg: SegConfig,
    case_dir: str | Path | None = None,
    keys: Mapping[str, str] | None = None,
) -> tuple[list[AnyCase], list[dict[str, str]]]:
    """The ``role`` series of ``split`` on the network grid, and the series left out: a
    :class:`DataError` (corrupt or truncated file, a mask whose grid differs from its image,
    unknown labels, no disc label at all) costs that series only, with a warning naming it.

    With ``case_dir``, each case is kept on disk there
    (:func:`~disclatent.segmentation.cases.store_case`) and only its
    foreground indices stay in memory; without it, every case is held in memory. ``keys``:
    the series' case keys if already computed (:func:`~disclatent.segmentation.cases.case_key`)."""
    from disclatent.segmentation.cases import store_case

    folder = SpiderFolder(data_root)
    cases: list[AnyCase] = []
    skipped = []
    series = list(split.loc[split["role"] == role, "series"])
    for s in tqdm(series, desc=f"{role} series", unit="series", disable=len(series) < 2):
        try:
            image, mask, spacing = folder.image_path(s), folder.mask_path(s), cfg.network_spacing
            cases.append(
                load_case(image, mask, spacing)
                if case_dir is None
                else store_case(image, mask, case_dir, spacing, (keys or {}).get(s))
            )
        except DataError as exc:
            skipped.append({"series": str(s), "role": role, "reason": str(exc)})
            warnings.warn(f"{role} series {s} left out: {exc}", SeriesSkippedWarning, stacklevel=3)
    return cases, skipped


def _crop(arr: np.ndarray, start: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    sl = tuple(slice(int(s), int(s) + p) for s, p in zip(start, patch, strict=True))
    out = arr[sl]
    pad = [(0, p - n) for p, n in zip(patch, out.shape, strict=True)]
    if any(b for _, b in pad):
        out = np.pad(out, pad)
    return out


def sample_patch(
    case: AnyCase,
    patch: tuple[int, int, int],
    rng: np.random.Generator,
    pos_fraction: float = 2 / 3,
) -> tuple[np.ndarray, np.ndarray]:
    """A random patch, centred on a disc voxel with probability ``pos_fraction``."""
    image, label = case.image, case.label  # a StoredCase maps its files here, once
    if label is None:
        raise DataError(f"{case.series}: a training series needs its mask")
    shape = np.array(image.shape)
    p = np.array(patch)
    if case.foreground is not None and len(case.foreground) and rng.random() < pos_fraction:
        centre = np.array(
            np.unravel_index(case.foreground[rng.integers(len(case.foreground))], image.shape)
        )
    else:
        centre = np.array([rng.integers(n) for n in shape])
    start = np.clip(centre - p // 2, 0, np.maximum(shape - p, 0))
    return _crop(image, start, patch), _crop(label, start, patch)


def augment(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Light augmentation of one patch: left-right flip, smooth bias field, gamma, contrast,
    noise. The site differences of MRI (contrast, bias field, noise) are what a held-out
    site changes; geometry (spacing) is already removed by resampling."""
    img = image
    if rng.random() < 0.5:  # sagittal images are nearly symmetric left-right
        img, label = img[:, :, ::-1], label[:, :, ::-1]
    if rng.random() < 0.5:
        grids = np.meshgrid(
            *(np.linspace(-1, 1, n, dtype=np.float32) for n in img.shape),
            indexing="ij",
            sparse=True,
        )
        c = rng.normal(0.0, 0.15, 6)
        field_ = (
            c[0] * grids[0]
            + c[1] * grids[1]
            + c[2] * grids[2]
            + c[3] * grids[0] * grids[1]
            + c[4] * grids[0] ** 2
            + c[5] * grids[1] ** 2
        )
        img = img * np.exp(field_).astype(np.float32)
    if rng.random() < 0.5:
        img = np.clip(img, 0, None) ** np.float32(math.exp(rng.uniform(-0.35, 0.35)))
    if rng.random() < 0.5:
        img = img * np.float32(rng.uniform(0.85, 1.15)) + np.float32(rng.uniform(-0.1, 0.1))
    if rng.random() < 0.3:
        img = img + rng.normal(0.0, rng.uniform(0.0, 0.05), img.shape).astype(np.float32)
    return np.ascontiguousarray(img, np.float32), np.ascontiguousarray(label)


def make_batch(
    cases: Sequence[AnyCase],
    batch_size: int,
    patch: tuple[int, int, int],
    rng: np.random.Generator,
    pos_fraction: float = 2 / 3,
    augmentation: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(batch, 1, *patch)`` image and label arrays from randomly chosen training cases."""
    xs, ys = [], []
    for _ in range(batch_size):
        case = cases[int(rng.integers(len(cases)))]
        x, y = sample_patch(case, patch, rng, pos_fraction)
        if augmentation:
            x, y = augment(x, y, rng)
        xs.append(x)
        ys.append(y)
    return (np.stack(xs)[:, None].astype(np.float32), np.stack(ys)[:, None].astype(np.float32))
