"""Disc isolation: canonical cubes from any header, explicit errors, the disc store."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from test_geometry import CENTRE, box, ellipsoid, render

from conftest import oblique_direction, small_mask
from disclatent.conventions import PAPER_SPACING
from disclatent.data import phantom as ph
from disclatent.data.volume import DataError, Volume, read_mask, write_image
from disclatent.discs import features as feat
from disclatent.discs import geometry as g
from disclatent.discs import isolation as iso
from disclatent.discs import store as st


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / (a | b).sum())


def test_paper_spacing_is_lr14_ap12_si15():
    assert PAPER_SPACING == (1.5, 1.2, 1.4)  # (SI, AP, LR) numpy order
    # a box 44.8 mm left-right, 30 mm antero-posterior, 9 mm superior-inferior
    vol = render(box(22.4, 15.0, 4.5), CENTRE, np.eye(3), (0.5, 0.4, 0.3), half_extent_mm=24)
    (disc,) = iso.isolate_discs(vol)
    occupied = [
        np.flatnonzero(disc.cube.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)
    ]
    n_si, n_ap, n_lr = (len(o) for o in occupied)
    assert n_lr == pytest.approx(44.8 / 1.4, abs=1)
    assert n_ap == pytest.approx(30 / 1.2, abs=1)
    assert n_si == pytest.approx(9 / 1.5, abs=1)


def test_cubes_of_phantom_mask(phantom_dir):
    mask = read_mask(phantom_dir / "masks" / "1_t1.mha")
    truth = pd.read_csv(phantom_dir / "phantom_truth.csv", dtype={"patient": str})
    truth = truth[truth["series"] == "1_t1"].set_index("ivd_label")
    discs = iso.isolate_discs(mask)
    assert [d.ivd_label for d in discs] == sorted(truth.index)
    for d in discs:
        assert d.cube.shape == (64, 64, 64) and d.cube.dtype == np.uint8
        assert set(np.unique(d.cube)) == {0, 1}
        assert d.level == truth.loc[d.ivd_label, "level"]
        assert d.series == "1_t1" and d.source_path == mask.path
        # one connected disc, no neighbour or vertebra in the cube
        assert ndimage.label(d.cube)[1] == 1
        # centred on its centre of mass (cube centre is between voxels 31 and 32)
        com = np.array(ndimage.center_of_mass(d.cube))
        np.testing.assert_allclose(com, 31.5, atol=1.0)
        true_c = truth.loc[d.ivd_label, ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]]
        np.testing.assert_allclose(d.centre_mm, true_c.to_numpy(float), atol=0.5)
        # cube index -> world agrees with the centre
        np.testing.assert_allclose(d.cube_index_to_world(np.full(3, 31.5)), d.centre_mm)
        # nearest neighbour: no dilation (linear interpolation + clipping grew discs ~46 %)
        vol = d.cube.sum() * np.prod(d.spacing_mm)
        assert vol == pytest.approx(truth.loc[d.ivd_label, "volume_mm3"], rel=0.12)


def _asymmetric(p):
    """An ellipsoid disc with a knob towards left, posterior and superior."""
    knob = ((p[..., 0] - 12) ** 2 + (p[..., 1] - 8) ** 2 + (p[..., 2] - 4) ** 2) <= 16
    return ellipsoid(20, 15, 4)(p) | knob


def test_cube_orientation_from_header_not_array_position():
    rot = ph.rotation_matrix(10.0, 0.0, 0.0)
    ref = render(_asymmetric, CENTRE, rot, (0.5, 0.45, 0.4), half_extent_mm=24)
    # the same voxels stored in another array order (index axes i, j, k -> S, A, R)
    same = Volume.from_sitk(sitk.DICOMOrient(ref.to_sitk(), "SAR"))
    assert same.orientation == "SAR" and same.array.shape == ref.array.shape[::-1]
    # an independent rasterisation on a permuted, flipped grid
    perm = np.array([[0, 0, -1], [0, -1, 0], [1, 0, 0]], float)
    other = render(_asymmetric, CENTRE, rot, (0.5, 0.45, 0.4), perm, half_extent_mm=24)
    assert other.orientation == "SAR"
    (a,) = iso.isolate_discs(ref)
    (s,) = iso.isolate_discs(same)
    (b,) = iso.isolate_discs(other)
    np.testing.assert_allclose(s.centre_mm, a.centre_mm, atol=1e-9)
    assert iou(a.cube, s.cube) > 0.999
    np.testing.assert_allclose(a.centre_mm, b.centre_mm, atol=0.1)  # two samplings
    assert iou(a.cube, b.cube) > 0.9
    for key, value in g.measure_cube(a.cube, a.spacing_mm).items():
        assert g.measure_cube(b.cube, b.spacing_mm)[key] == pytest.approx(
            value, rel=0.03, abs=0.5
        ), key
    # the knob is superior, posterior and left of the centre: high index on all three axes
    for cube in (a.cube, b.cube):
        lr_hi = cube[:, :, 32 + 9 :]  # more than 12 mm to the left
        assert lr_hi.sum() > 0
        si, ap, _ = np.nonzero(lr_hi)
        assert ap.mean() > 31.5 and si.mean() > 31.5


def test_oblique_header_is_resampled_and_reported():
    rot = ph.rotation_matrix(-15.0, 3.0, 2.0)
    straight = render(ellipsoid(20, 15, 4), CENTRE, rot, (3.3, 0.6, 0.55))
    oblique = render(ellipsoid(20, 15, 4), CENTRE, rot, (3.3, 0.6, 0.55), oblique_direction(25))
    with pytest.warns(iso.ObliqueHeaderWarning, match="not axis-aligned"):
        (b,) = iso.isolate_discs(oblique)
    with warnings.catch_warnings():
        warnings.simplefilter("error", iso.ObliqueHeaderWarning)
        (a,) = iso.isolate_discs(straight)
    assert iou(a.cube, b.cube) > 0.8  # different thick-slice sampling of the same solid
    fa, fb = g.measure_cube(a.cube, a.spacing_mm), g.measure_cube(b.cube, b.spacing_mm)
    for key, value in ph.plane_angles(rot).items():
        assert fb[key] == pytest.approx(value, abs=2.0), key
    assert fb["volume_mm3"] == pytest.approx(fa["volume_mm3"], rel=0.06)


def test_disc_that_does_not_fit_is_an_error(tmp_path):
    vol = render(ellipsoid(20, 15, 4), CENTRE, np.eye(3), (1.0, 1.0, 1.0))
    with pytest.raises(iso.DiscDoesNotFitError, match=r"does not fit in a 24\^3 cube"):
        iso.isolate_discs(vol, size=24)
    (ok,) = iso.isolate_discs(vol, size=24, spacing_mm=(2.0, 2.0, 2.0))
    assert ok.cube.sum() > 0
    # in a store: an error, or with skip_errors a warning and a row in `skipped`
    path = tmp_path / "m" / "7_t1.mha"
    write_image(vol, path)
    out = tmp_path / "store.npz"
    with pytest.raises(iso.DiscDoesNotFitError):
        st.build_disc_store([path], out, size=24, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".store*"))  # nothing half-written
    with pytest.warns(iso.DiscWarning, match="does not fit"):
        st.build_disc_store([path], out, size=24, progress=False, skip_errors=True)
    store = st.load_disc_store(out)
    assert len(store) == 0 and store.cubes.shape == (0, 24, 24, 24)
    assert store.skipped["ivd_label"].tolist() == [1]


def test_empty_tiny_and_missing_discs():
    mask = small_mask()
    arr = mask.array.copy()
    arr[1, 1, 1] = 205  # a 1-voxel "disc"
    with pytest.warns(iso.EmptyDiscWarning, match=r"205 \(L1/L2\) has only 1 voxel"):
        found = iso.find_discs(mask.with_array(arr))
    assert [d.value for d in found] == [201, 202]
    none = mask.with_array(np.where(arr > 200, 0, arr).astype(np.int16))
    with pytest.warns(iso.EmptyDiscWarning, match="no disc found"):
        assert iso.isolate_discs(none) == []
    with pytest.warns(iso.EmptyDiscWarning, match="disc label values 211-215"):
        assert iso.find_discs(mask, labels=range(211, 216)) == []
    with pytest.raises(iso.EmptyDiscError):
        g.measure_cube(np.zeros((8, 8, 8), np.uint8))


def test_disc_touching_the_border_is_flagged(tmp_path):
    vol = small_mask()  # disc 201 spans index k 5-7 of 20; make it reach the last j index
    arr = vol.array.copy()
    arr[5:8, 4:, 2:6] = 201
    cut = vol.with_array(arr)
    with pytest.warns(iso.DiscTouchesBorderWarning, match=r"201 \(L5/S1\) touches the border"):
        found = iso.find_discs(cut)
    assert [d.touches_border for d in found] == [True, False]
    with pytest.warns(iso.DiscTouchesBorderWarning):
        table = feat.measure_mask(cut)
    assert table["touches_border"].tolist() == [True, False]
    path = write_image(cut, tmp_path / "masks" / "9_t1.mha")
    with pytest.warns(iso.DiscTouchesBorderWarning):
        store = st.load_disc_store(
            st.build_disc_store(
                tmp_path, tmp_path / "s.npz", spacing_mm=(0.5, 0.5, 0.5), size=64, progress=False
            )
        )
    assert store.table["touches_border"].tolist() == [True, False]
    assert store.table["mask_path"].tolist() == [str(path)] * 2


def test_label_values_are_configurable():
    mask = small_mask()
    arr = np.where(mask.array > 200, mask.array - 190, 0).astype(np.int16)  # discs 11, 12
    other = mask.with_array(arr)
    a = iso.find_discs(other, labels=[11, 12], label_offset=10)
    b = iso.find_discs(other, labels={11: 1, 12: 2})
    assert [(d.value, d.ivd_label, d.level) for d in a] == [(11, 1, "L5/S1"), (12, 2, "L4/L5")]
    assert [(d.value, d.ivd_label) for d in b] == [(11, 1), (12, 2)]
    for x, y in zip(a, iso.find_discs(mask), strict=True):
        np.testing.assert_array_equal(x.ijk, y.ijk)
    assert iso.parse_label_spec("201-203, 210") == [201, 202, 203, 210]
    with pytest.raises(ValueError, match="outside"):
        iso.label_map([11], offset=200)


def test_disc_store_roundtrip(phantom_dir, tmp_path):
    out = tmp_path / "stores" / "gt.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error", iso.DiscWarning)
        path = st.build_disc_store(
            phantom_dir, out, source="gt", spacing_mm=(3.0, 2.4, 2.8), size=32, progress=False
        )
    assert path == out and sorted(p.name for p in out.parent.iterdir()) == ["gt.npz", "gt.series"]
    store = st.load_disc_store(out)
    truth = pd.read_csv(phantom_dir / "phantom_truth.csv", dtype={"patient": str})
    t1 = truth[truth["series"].str.endswith("_t1")]  # modalities=("t1",) by default
    # one finished result per series beside the store, nothing temporary
    series = sorted(p.name.rsplit("-", 1)[0] for p in (out.parent / "gt.series").iterdir())
    assert series == sorted(t1["series"].unique())
    assert len(store) == len(t1) and store.cubes.shape == (len(t1), 32, 32, 32)
    assert store.cubes.dtype == np.uint8 and store.spacing_mm == (3.0, 2.4, 2.8)
    assert list(store.table.columns) == st.STORE_COLUMNS
    assert store.table["patient"].map(type).eq(str).all()
    assert store.table["source"].eq("gt").all()
    assert (
        store.table[["spacing_si_mm", "spacing_ap_mm", "spacing_lr_mm"]].to_numpy()
        == [3.0, 2.4, 2.8]
    ).all()
    merged = store.table.merge(t1, on=["series", "ivd_label"], suffixes=("", "_t"))
    assert len(merged) == len(t1) and (merged["level"] == merged["level_t"]).all()
    np.testing.assert_allclose(
        merged[["centre_x_mm", "centre_y_mm", "centre_z_mm"]],
        merged[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]],
        atol=0.5,
    )
    # same cubes as isolating directly, in table order
    row = store.table.iloc[3]
    direct = {
        d.ivd_label: d for d in iso.isolate_discs(read_mask(row["mask_path"]), (3.0, 2.4, 2.8), 32)
    }
    np.testing.assert_array_equal(store.cubes[3], direct[row["ivd_label"]].cube)
    # compact: packed bits, compressed
    assert out.stat().st_size < 2000 * len(store)
    with pytest.raises(ValueError, match="source"):
        st.build_disc_store(phantom_dir, tmp_path / "x.npz", source="truth")
    with pytest.raises(DataError, match="not found"):
        st.load_disc_store(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable disc store"):
        st.load_disc_store(tmp_path / "junk.npz")


def test_store_inputs_and_modalities(phantom_dir, tmp_path):
    files = st.mask_files(phantom_dir, modalities=None)
    assert len(files) == 8
    assert [f.name for f in st.mask_files(phantom_dir / "masks", ("t2",))] == [
        f"{i}_t2.mha" for i in range(1, 5)
    ]
    out = st.build_disc_store(
        files[:2],
        tmp_path / "p.npz",
        source="pred",
        size=32,
        spacing_mm=(3.0, 2.4, 2.8),
        progress=False,
    )
    store = st.load_disc_store(out)
    assert set(store.table["series"]) == {"1_t1", "1_t2"}
    assert store.table["source"].eq("pred").all()
    with pytest.raises(DataError, match="not found"):
        st.mask_files(tmp_path / "nothing")
    with pytest.raises(ValueError, match="binary"):
        st.write_disc_store(
            np.full((1, 4, 4, 4), 2, np.uint8),
            pd.DataFrame({"a": [1]}),
            tmp_path / "b.npz",
            (1, 1, 1),
        )
    blank = Volume(np.zeros((4, 4, 4), np.int16), (1, 1, 1))
    assert iso.find_discs(blank, warn=False) == []


def _copy_masks(src, dst, names):
    dst.mkdir(parents=True)
    for n in names:
        shutil.copy(src / "masks" / f"{n}.mha", dst / f"{n}.mha")
    return dst


def test_store_resumes_from_per_series_results(phantom_dir, tmp_path):
    """A rerun reuses every finished series; a changed mask is isolated again; a corrupt
    mask is named in ``skipped`` and the rest of the cohort is stored."""
    masks = _copy_masks(phantom_dir, tmp_path / "m", ["1_t1", "2_t1", "3_t1"])
    kw = dict(spacing_mm=(3.0, 2.4, 2.8), size=32, progress=False, skip_errors=True)
    first = st.load_disc_store(st.build_disc_store(masks, tmp_path / "s.npz", **kw))
    cache = tmp_path / "s.series"
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    again = st.load_disc_store(st.build_disc_store(masks, tmp_path / "s.npz", **kw))
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps  # all reused
    np.testing.assert_array_equal(first.cubes, again.cubes)
    pd.testing.assert_frame_equal(first.table, again.table)
    (masks / "2_t1.mha").write_bytes((masks / "2_t1.mha").read_bytes()[:4000])  # truncated
    with pytest.warns(iso.DiscWarning, match="2_t1"):
        cut = st.load_disc_store(st.build_disc_store(masks, tmp_path / "s.npz", **kw))
    assert set(cut.table["series"]) == {"1_t1", "3_t1"}
    assert cut.skipped["series"].tolist() == ["2_t1"]
    assert "2_t1.mha" in cut.skipped["reason"].iloc[0]
    keep = first.table["series"] != "2_t1"
    np.testing.assert_array_equal(cut.cubes, first.cubes[keep.to_numpy()])
    with pytest.raises(DataError, match="2_t1"):
        st.build_disc_store(masks, tmp_path / "t.npz", **{**kw, "skip_errors": False})


@pytest.mark.slow
def test_store_on_a_local_cluster_equals_the_serial_store(phantom_dir, tmp_path):
    kw = dict(spacing_mm=(3.0, 2.4, 2.8), size=32, progress=False, modalities=None)
    with warnings.catch_warnings(record=True) as serial_said:
        warnings.simplefilter("always")
        serial = st.load_disc_store(
            st.build_disc_store(phantom_dir, tmp_path / "a.npz", scheduler="serial", **kw)
        )
    with warnings.catch_warnings(record=True) as local_said:
        warnings.simplefilter("always")
        local = st.load_disc_store(
            st.build_disc_store(phantom_dir, tmp_path / "b.npz", scheduler="local", workers=2, **kw)
        )
    assert len(serial) == len(local) > 0
    np.testing.assert_array_equal(serial.cubes, local.cubes)
    pd.testing.assert_frame_equal(serial.table, local.table)
    assert [str(w.message) for w in serial_said] == [str(w.message) for w in local_said]
    names = sorted(p.name for p in (tmp_path / "a.series").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b.series").iterdir())  # same keys
