"""Disc label numbering checked against anatomy (disclatent.discs.numbering), on the real
masks of SPIDER patient 1 written both ways, and on broken numberings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from disclatent.data import labels as lab
from disclatent.data.volume import Volume, read_mask, write_image
from disclatent.discs import isolation as iso
from disclatent.discs.numbering import NumberingError
from disclatent.discs.store import build_disc_store, load_disc_store


@pytest.fixture(scope="module")
def real_t1(spider_shared) -> Volume:
    return read_mask(spider_shared / "masks" / "1_t1.mha")


def relabel(mask: Volume, discs: dict[int, int], vertebrae: dict[int, int] | None = None) -> Volume:
    """``mask`` with disc values and vertebra indices (whole and partial) replaced."""
    arr = mask.array
    out = arr.copy()
    for old, new in discs.items():
        out[arr == old] = new
    for old, new in (vertebrae or {}).items():
        out[arr == old] = new
        out[arr == old + lab.PARTIAL_VERTEBRA_OFFSET] = new + lab.PARTIAL_VERTEBRA_OFFSET
    return mask.with_array(out)


REVERSED_DISCS = {200 + k: 200 + 25 - k for k in range(1, 8)}  # 201 -> 224, 207 -> 218
REVERSED_VERTEBRAE = {k: 25 - k for k in range(1, 8)}  # 1 (L5) -> 24, 7 (T11) -> 18


def levels(discs: list[iso.DiscVoxels]) -> dict[str, int]:
    return {d.level: d.n_voxels for d in discs}


def test_real_mask_follows_the_upward_convention(real_t1):
    with warnings.catch_warnings():
        warnings.simplefilter("error", iso.RenumberedWarning)
        found = iso.find_discs(real_t1, warn=False)
    assert [d.ivd_label for d in found] == [1, 2, 3, 4, 5, 6, 7]
    assert [d.value for d in found] == list(range(201, 208))
    assert found[0].level == "L5/S1" and found[-1].level == "T11/T12"


def test_reversed_numbering_confirmed_by_vertebrae_is_mapped(real_t1, tmp_path):
    """Discs 218-224 with 224 at L5/S1 and vertebrae 18-24: read back as SPIDER's levels,
    voxel for voxel, with a warning that names the file."""
    flipped = relabel(real_t1, REVERSED_DISCS, REVERSED_VERTEBRAE)
    path = write_image(flipped, tmp_path / "1_t2_SPACE.mha")
    mask = read_mask(path)
    with pytest.warns(iso.RenumberedWarning, match=r"1_t2_SPACE.*224 = L5/S1.*218 = T11/T12"):
        found = iso.find_discs(mask)
    assert levels(found) == levels(iso.find_discs(real_t1, warn=False))
    assert {d.level: d.value for d in found}["L5/S1"] == 224
    # the disc store, hence the grading join (by IVD label), sees the same discs
    a = load_disc_store(
        build_disc_store(
            [path], tmp_path / "a.npz", size=32, spacing_mm=(2.0, 2.0, 2.0), progress=False
        )
    )
    write_image(real_t1, tmp_path / "1_t1.mha")
    b = load_disc_store(
        build_disc_store(
            [tmp_path / "1_t1.mha"],
            tmp_path / "b.npz",
            size=32,
            spacing_mm=(2.0, 2.0, 2.0),
            progress=False,
        )
    )
    assert a.table["ivd_label"].tolist() == b.table["ivd_label"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(a.cubes, b.cubes)


def test_reversal_the_vertebrae_do_not_confirm_is_refused(real_t1):
    discs_only = relabel(real_t1, REVERSED_DISCS)  # vertebrae still numbered upward
    with pytest.raises(NumberingError, match="fall from inferior to superior.*do not confirm"):
        iso.find_discs(discs_only, warn=False)
    no_vertebrae = relabel(real_t1, REVERSED_DISCS, {k: 0 for k in range(1, 8)})
    with pytest.raises(NumberingError, match="absent, so a reversal cannot be confirmed"):
        iso.find_discs(no_vertebrae, warn=False)


def test_swapped_labels_are_refused_naming_the_discs(real_t1):
    swapped = relabel(real_t1, {203: 204, 204: 203})
    with pytest.raises(NumberingError, match=r"out of anatomical order: 204 .* below 203"):
        iso.find_discs(swapped, warn=False)


def test_offset_confirmed_by_vertebrae_is_mapped(real_t1):
    """Discs 202-208 over vertebrae 1-7: the vertebrae say 202 is L5/S1."""
    shifted = relabel(real_t1, {200 + k: 201 + k for k in range(7, 0, -1)})
    with pytest.warns(iso.RenumberedWarning, match="offset by 1"):
        found = iso.find_discs(shifted)
    assert levels(found) == levels(iso.find_discs(real_t1, warn=False))


def test_anatomy_comes_from_the_header_not_the_array(real_t1):
    """The same mask with its array flipped along SI and the header saying so reads the same;
    the array flipped without the header is refused, not mislabelled."""
    arr = real_t1.array[:, :, ::-1]  # numpy (k, j, i): flip i, the image's first axis
    i_axis = real_t1.direction[:, 0] * real_t1.spacing[0]
    origin = np.asarray(real_t1.origin) + i_axis * (real_t1.size[0] - 1)
    direction = real_t1.direction.copy()
    direction[:, 0] *= -1
    honest = Volume(arr, real_t1.spacing, tuple(origin), direction)
    assert levels(iso.find_discs(honest, warn=False)) == levels(iso.find_discs(real_t1, warn=False))
    # SPIDER's first image axis is the sagittal one (3.3 mm); flip the superior axis instead
    k_axis = int(np.argmax(np.abs(real_t1.direction[2])))
    sl = [slice(None)] * 3
    sl[2 - k_axis] = slice(None, None, -1)
    lying = real_t1.with_array(np.ascontiguousarray(real_t1.array[tuple(sl)]))
    with pytest.raises(NumberingError):
        iso.find_discs(lying, warn=False)


def test_user_labels_are_checked_for_order_only():
    arr = np.zeros((20, 16, 8), np.int16)
    arr[12:14, 3:13, 1:7] = 11  # the first IVD label above the second
    arr[5:8, 4:12, 2:6] = 12
    mask = Volume(arr, (3.5, 0.6, 0.55), (0.0, 0.0, 0.0), np.eye(3))
    with pytest.raises(NumberingError, match="out of anatomical order"):
        iso.find_discs(mask, labels=[11, 12], label_offset=10, warn=False)
    assert [d.ivd_label for d in iso.find_discs(mask, labels={11: 2, 12: 1}, warn=False)] == [1, 2]


def test_store_leaves_a_misnumbered_series_out_and_keeps_the_rest(real_t1, tmp_path):
    good = write_image(real_t1, tmp_path / "1_t1.mha")
    bad = write_image(relabel(real_t1, {203: 204, 204: 203}), tmp_path / "2_t1.mha")
    with pytest.warns(iso.DiscWarning, match="2_t1.*out of anatomical order"):
        store = load_disc_store(
            build_disc_store(
                [good, bad],
                tmp_path / "s.npz",
                size=32,
                spacing_mm=(2.0, 2.0, 2.0),
                progress=False,
                skip_errors=True,
            )
        )
    assert set(store.table["series"]) == {"1_t1"} and len(store) == 7
    assert store.skipped["series"].tolist() == ["2_t1"]
    assert "out of anatomical order" in store.skipped["reason"].iloc[0]
