import numpy as np
import pytest
import SimpleITK as sitk

from conftest import oblique_direction, small_mask
from disclatent.data import volume as io


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz", ".nii"])
@pytest.mark.parametrize("oblique", [False, True])
def test_round_trip_keeps_geometry_and_labels(tmp_path, suffix, oblique):
    vol = small_mask(oblique_direction(20.0) if oblique else None)
    path = io.write_image(vol, tmp_path / f"m{suffix}")
    back = io.read_mask(path)
    assert back.array.shape == vol.array.shape
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    # the same voxel lands at the same world point
    np.testing.assert_allclose(
        back.index_to_world([3, 5, 7]), vol.index_to_world([3, 5, 7]), atol=1e-4
    )


def test_nifti_is_converted_from_ras_to_lps(tmp_path):
    import nibabel as nib

    arr = np.zeros((4, 5, 6), np.int16)  # nibabel order (i, j, k)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])  # RAS: i towards Right
    affine[:3, 3] = (10, 20, 30)
    nib.save(nib.Nifti1Image(arr, affine), tmp_path / "x.nii.gz")
    vol = io.read_image(tmp_path / "x.nii.gz")
    assert vol.size == (4, 5, 6)
    assert vol.array.shape == (6, 5, 4)
    np.testing.assert_allclose(vol.spacing, (2, 3, 4))
    np.testing.assert_allclose(vol.origin, (-10, -20, 30))  # LPS flips x and y
    assert vol.orientation == "RAS"


def test_world_index_inverse_and_orientation():
    vol = small_mask(oblique_direction(30.0))
    pts = np.array([[0, 0, 0], [1.5, 2, 3], [7, 15, 19]], float)
    np.testing.assert_allclose(vol.world_to_index(vol.index_to_world(pts)), pts, atol=1e-9)
    assert small_mask().orientation == "LPS"
    assert not vol.is_axis_aligned()


def test_anatomical_axes_come_from_the_header():
    # Permute the axes: i -> superior, j -> anterior (flipped), k -> left.
    direction = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float)
    vol = io.Volume(np.zeros((4, 5, 6)), (1.0, 2.0, 3.0), direction=direction)
    axes = vol.anatomical_axes()
    assert axes["LR"] == (0, 1)  # index k (numpy axis 0) grows towards Left
    assert axes["AP"] == (1, -1)  # index j grows towards Anterior
    assert axes["SI"] == (2, 1)  # index i (numpy axis 2) grows towards Superior
    canon = io.to_canonical(vol.with_array(np.arange(120.0).reshape(4, 5, 6)))
    assert canon.orientation == "LPS"
    assert canon.array.shape == (6, 5, 4)  # numpy (SI, AP, LR)
    np.testing.assert_allclose(canon.spacing, (3.0, 2.0, 1.0))


def test_to_canonical_keeps_world_positions():
    direction = np.diag([1.0, -1.0, -1.0])  # posterior and superior flipped
    arr = np.zeros((10, 8, 6), np.int16)
    arr[2, 3, 4] = 201
    vol = io.Volume(arr, (3.0, 0.5, 0.7), (5.0, 6.0, 7.0), direction)
    world = vol.index_to_world([4, 3, 2])
    canon = io.to_canonical(vol)
    k, j, i = np.argwhere(canon.array == 201)[0]
    np.testing.assert_allclose(canon.index_to_world([i, j, k]), world, atol=1e-6)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_named(tmp_path):
    with pytest.raises(io.MissingFileError, match="nope.mha"):
        io.read_image(tmp_path / "nope.mha")


def test_corrupt_mha_named(tmp_path):
    path = io.write_image(small_mask(), tmp_path / "c.mha", compress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated: header says more voxels than stored
    with pytest.raises(io.DataError, match="c.mha"):
        io.read_image(path)
    (tmp_path / "junk.mha").write_bytes(b"\x00\x01garbage")
    with pytest.raises(io.DataError, match="junk.mha"):
        io.read_image(tmp_path / "junk.mha")


def test_header_disagreeing_with_array_named(tmp_path):
    path = io.write_image(small_mask(), tmp_path / "h.mha", compress=False)
    text = path.read_bytes()
    bad = text.replace(b"DimSize = 8 16 20", b"DimSize = 8 16 40")
    assert bad != text
    path.write_bytes(bad)
    with pytest.raises(io.DataError, match="h.mha"):
        io.read_image(path)


def test_unknown_labels_and_non_integer_masks_named(tmp_path):
    vol = small_mask()
    arr = vol.array.copy()
    arr[0, 0, 0] = 77
    io.write_image(vol.with_array(arr), tmp_path / "u.mha")
    with pytest.raises(io.DataError, match=r"u\.mha.*77"):
        io.read_mask(tmp_path / "u.mha")
    assert io.read_mask(tmp_path / "u.mha", allow_unknown_labels=True).array[0, 0, 0] == 77
    io.write_image(vol.with_array(vol.array.astype(np.float32) * 0.5), tmp_path / "f.mha")
    with pytest.raises(io.DataError, match=r"f\.mha.*non-integer"):
        io.read_mask(tmp_path / "f.mha")


def test_mask_without_discs_named(tmp_path):
    vol = small_mask()
    io.write_image(vol.with_array(np.where(vol.array > 200, 0, vol.array)), tmp_path / "e.mha")
    assert io.read_mask(tmp_path / "e.mha").array.max() == 1
    with pytest.raises(io.DataError, match=r"e\.mha.*no disc"):
        io.read_mask(tmp_path / "e.mha", require_discs=True)


def test_image_mask_mismatch_named(tmp_path):
    mask = small_mask()
    io.write_image(mask, tmp_path / "m.mha")
    img = sitk.Image(8, 16, 21, sitk.sitkInt16)  # one slice too many
    img.SetSpacing(mask.spacing)
    sitk.WriteImage(img, str(tmp_path / "i.mha"))
    with pytest.raises(io.DataError, match=r"m\.mha.*does not match image .*i\.mha"):
        io.read_pair(tmp_path / "i.mha", tmp_path / "m.mha")


def test_list_images_natural_order(tmp_path):
    for name in ("10_t1.mha", "2_t1.mha", "1_t2.nii.gz", ".hidden.mha", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in io.list_images(tmp_path)] == ["1_t2.nii.gz", "2_t1.mha", "10_t1.mha"]
    assert io.series_name("a/b/1_t2.nii.gz") == "1_t2"
