"""Reading and writing images and masks with their full geometry.

Conventions (the same as SimpleITK / ITK):

* ``Volume.array`` is in numpy order ``(k, j, i)``: the *last* numpy axis is the image's
  first index axis ``i``. This is what ``SimpleITK.GetArrayFromImage`` returns.
* ``spacing`` and ``size`` are in index order ``(i, j, k)``, spacing in millimetres.
* World coordinates are LPS (x towards the patient's Left, y towards Posterior, z towards
  Superior), in millimetres, as in DICOM and ITK. NIfTI files (RAS) are converted on read and
  back on write.
* ``direction`` is a 3 x 3 matrix whose *columns* are the world directions of the index axes
  i, j, k; a voxel ``(i, j, k)`` sits at ``origin + direction @ (spacing * (i, j, k))``.

Anatomical meaning never comes from array position: use :meth:`Volume.anatomical_axes`.
Every write goes to a temporary file in the target folder and is renamed into place, so an
interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from disclatent.data import labels as lab
from disclatent.formatting import natural_key

IMAGE_SUFFIXES = (".mha", ".mhd", ".nii.gz", ".nii", ".nrrd")
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


class DataError(ValueError):
    """A problem with an input file; the message always names the file."""


class MissingFileError(DataError, FileNotFoundError):
    """An expected input file does not exist."""


def image_suffix(path: str | os.PathLike) -> str:
    """The image-format suffix of ``path`` (``.nii.gz`` counts as one suffix)."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def series_name(path: str | os.PathLike) -> str:
    """File name without its image suffix ("masks/1_t1.mha" -> "1_t1")."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else Path(name).stem


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix so format-sniffing writers still work.
    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=image_suffix(target) or "".join(target.suffixes[-1:]),
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, target: str | os.PathLike) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_csv_atomic(
    df: pd.DataFrame,
    target: str | os.PathLike,
    index: bool = False,
    float_format: str | None = None,
) -> Path:
    """Write ``df`` as CSV (``\\n`` line ends) to ``target`` atomically; returns the path."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=index, float_format=float_format, lineterminator="\n")
    return Path(target)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image or label map with its physical geometry (see the module docstring)."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise DataError(f"{self.where}: expected a 3-D volume, got shape {self.array.shape}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, float).reshape(3, 3))
        if min(self.spacing) <= 0:
            raise DataError(f"{self.where}: spacing must be positive, got {self.spacing}")
        if not np.allclose(self.direction.T @ self.direction, np.eye(3), atol=1e-4):
            raise DataError(f"{self.where}: direction matrix is not orthonormal")

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "<in-memory volume>"

    @property
    def size(self) -> tuple[int, int, int]:
        """Number of voxels along index axes (i, j, k)."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def affine(self) -> np.ndarray:
        """4 x 4 matrix from index (i, j, k, 1) to LPS world millimetres."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Index coordinates ``(..., 3)`` in (i, j, k) order to LPS millimetres."""
        ijk = np.asarray(ijk, float)
        return ijk @ (self.direction * np.asarray(self.spacing)[None, :]).T + np.asarray(
            self.origin
        )

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """LPS millimetres ``(..., 3)`` to continuous index coordinates (i, j, k)."""
        xyz = np.asarray(xyz, float) - np.asarray(self.origin)
        return (xyz @ self.direction) / np.asarray(self.spacing)

    @property
    def orientation(self) -> str:
        """Three-letter DICOM orientation code of the index axes, e.g. "LPS".

        Each letter names the direction in which that index axis increases (closest
        anatomical direction for oblique headers).
        """
        return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
            self.direction.flatten(order="C").tolist()
        )

    def anatomical_axes(self) -> dict[str, tuple[int, int]]:
        """For "LR", "AP" and "SI": ``(numpy axis, sign)`` of the closest array axis.

        ``sign`` is +1 when the array index grows towards Left, Posterior, Superior
        respectively (the LPS convention). Taken from the direction cosines only.
        """
        out: dict[str, tuple[int, int]] = {}
        for world_axis, name in enumerate(("LR", "AP", "SI")):
            column = int(np.argmax(np.abs(self.direction[world_axis, :])))
            sign = int(np.sign(self.direction[world_axis, column]))
            out[name] = (2 - column, sign)  # index axis i is numpy axis 2
        return out

    def is_axis_aligned(self, tol: float = 1e-3) -> bool:
        return bool(np.all((np.abs(self.direction) < tol) | (np.abs(self.direction) > 1 - tol)))

    def same_grid(self, other: Volume, tol: float = 1e-3) -> bool:
        return (
            self.size == other.size
            and np.allclose(self.spacing, other.spacing, rtol=tol, atol=tol)
            and np.allclose(self.origin, other.origin, atol=max(tol, 1e-2))
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def with_array(self, array: np.ndarray) -> Volume:
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from {self.array.shape}")
        return replace(self, array=array)

    def to_sitk(self) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction.flatten(order="C").tolist())
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image, path: Path | None = None) -> Volume:
        if img.GetDimension() != 3:
            raise DataError(f"{path}: expected a 3-D image, got {img.GetDimension()}-D")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise DataError(f"{path}: expected one component per voxel")
        return cls(
            array=sitk.GetArrayFromImage(img),
            spacing=img.GetSpacing(),
            origin=img.GetOrigin(),
            direction=np.array(img.GetDirection()).reshape(3, 3),
            path=path,
        )


def _check_exists(path: Path, what: str = "image") -> None:
    if not path.exists():
        raise MissingFileError(f"{path}: {what} file not found")
    if path.is_dir():
        raise DataError(f"{path}: expected an {what} file, found a folder")


def read_image(path: str | os.PathLike) -> Volume:
    """Read a 3-D ``.mha``/``.mhd``/``.nrrd`` (SimpleITK) or ``.nii[.gz]`` (nibabel) file."""
    path = Path(path)
    _check_exists(path)
    suffix = image_suffix(path)
    if suffix in (".nii", ".nii.gz"):
        return _read_nifti(path)
    if not suffix:
        raise DataError(f"{path}: unknown image format (expected one of {IMAGE_SUFFIXES})")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "unreadable"
        raise DataError(f"{path}: cannot read image (corrupt or truncated?): {detail}") from exc
    return Volume.from_sitk(img, path)


def _read_nifti(path: Path) -> Volume:
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    try:
        img = nib.load(str(path))
        if not isinstance(img, SpatialImage):
            raise TypeError(f"not a spatial image but {type(img).__name__}")
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise DataError(f"{path}: cannot read NIfTI image: {exc}") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D NIfTI image, got shape {data.shape}")
    lps = _LPS_FROM_RAS @ img.affine[:3, :4]
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing[None, :]
    # nibabel's array is (i, j, k); ours is (k, j, i)
    return Volume(
        array=np.ascontiguousarray(np.transpose(data, (2, 1, 0))),
        spacing=tuple(spacing),
        origin=tuple(lps[:3, 3]),
        direction=direction,
        path=path,
    )


def write_image(volume: Volume, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``volume`` atomically; format chosen by suffix (``.mha``, ``.nii.gz``, ...)."""
    path = Path(path)
    suffix = image_suffix(path)
    if not suffix:
        raise ValueError(f"{path}: unknown image format (expected one of {IMAGE_SUFFIXES})")
    with atomic_path(path) as tmp:
        if suffix in (".nii", ".nii.gz"):
            import nibabel as nib

            ras = np.eye(4)
            ras[:3, :4] = _LPS_FROM_RAS @ volume.affine[:3, :4]
            nib.save(nib.Nifti1Image(np.transpose(volume.array, (2, 1, 0)), ras), str(tmp))
        else:
            sitk.WriteImage(volume.to_sitk(), str(tmp), useCompression=compress)
    return path


def read_mask(
    path: str | os.PathLike, allow_unknown_labels: bool = False, require_discs: bool = False
) -> Volume:
    """Read a SPIDER-style label map; checks integer values and known SPIDER labels.

    With ``require_discs`` a mask holding no disc label (201-225) is an error.
    """
    vol = read_image(path)
    arr = vol.array
    if not np.issubdtype(arr.dtype, np.integer):
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            raise DataError(
                f"{vol.path}: mask has non-integer values (was it resampled with linear "
                "interpolation? label maps need nearest neighbour)"
            )
        arr = rounded.astype(np.int32)
    values = np.unique(arr)
    if values.min() < 0:
        raise DataError(f"{vol.path}: mask has negative label values")
    if not allow_unknown_labels:
        unknown = [int(v) for v in values if not lab.is_known_label(int(v))]
        if unknown:
            shown = ", ".join(map(str, unknown[:10]))
            raise DataError(
                f"{vol.path}: unknown label values {shown} (SPIDER uses 0, 1-25 vertebrae, "
                "100 canal, 101-125 partial vertebrae, 201-225 discs)"
            )
    if require_discs and not any(lab.is_disc_label(int(v)) for v in values):
        raise DataError(
            f"{vol.path}: mask holds no disc labels (201-225); values found: "
            f"{', '.join(str(int(v)) for v in values[:12])}"
        )
    return vol.with_array(arr.astype(np.int16, copy=False))


def read_pair(image_path: str | os.PathLike, mask_path: str | os.PathLike) -> tuple[Volume, Volume]:
    """Read an image and its mask and check that they share one voxel grid."""
    image = read_image(image_path)
    mask = read_mask(mask_path)
    if not image.same_grid(mask):
        raise DataError(
            f"{mask.path}: mask grid (size {mask.size}, spacing "
            f"{tuple(round(s, 3) for s in mask.spacing)}) does not match image {image.path} "
            f"(size {image.size}, spacing {tuple(round(s, 3) for s in image.spacing)})"
        )
    return image, mask


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted naturally ("2_t1" before "10_t1")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder}: folder not found")
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and image_suffix(p) and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: natural_key(series_name(p)))


CANONICAL_ORIENTATION = "LPS"


def to_canonical(volume: Volume, orientation: str = CANONICAL_ORIENTATION) -> Volume:
    """Permute/flip the array so that index axes (i, j, k) point to Left, Posterior, Superior.

    Only axis permutations and flips (no resampling), chosen from the direction cosines, so
    numpy order becomes (SI, AP, LR) with index growing towards S, P and L. For an oblique
    header the closest orientation is used and the residual rotation stays in ``direction``.
    """
    if volume.orientation == orientation:
        return volume
    img = sitk.DICOMOrient(volume.to_sitk(), orientation)
    out = Volume.from_sitk(img, volume.path)
    return replace(out, array=out.array.astype(volume.array.dtype, copy=False))
