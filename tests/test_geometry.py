"""Geometric features: analytic shapes with known answers, the phantom's truth, regionprops."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import oblique_direction
from disclatent.data import phantom as ph
from disclatent.data.spider import read_gradings
from disclatent.data.volume import DataError, Volume, read_mask, write_image
from disclatent.discs import geometry as g
from disclatent.discs import isolation as iso

# ---------------------------------------------------------------------------------------
# analytic shapes on arbitrary grids
# ---------------------------------------------------------------------------------------


def render(
    inside_fn, centre, rotation, spacing, direction=None, half_extent_mm=35.0, value=201
) -> Volume:
    """Rasterise a solid given in its own frame (u, v, n) = columns of ``rotation``, by the
    voxel-centre test, on a grid with ``spacing``/``direction`` that covers it."""
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    spacing = np.asarray(spacing, float)
    centre = np.asarray(centre, float)
    corners = centre + half_extent_mm * np.array(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    )
    idx = (corners @ direction) / spacing  # index coordinates with a zero origin
    lo, hi = np.floor(idx.min(0)) - 2, np.ceil(idx.max(0)) + 2
    size = (hi - lo + 1).astype(int)
    origin = direction @ (spacing * lo)
    kk, jj, ii = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).astype(float)
    world = ijk @ (direction * spacing[None, :]).T + origin
    local = (world - centre) @ rotation
    arr = np.where(inside_fn(local), value, 0).astype(np.int16)
    return Volume(arr, tuple(spacing), tuple(origin), direction)


def ellipsoid(a, b, c):
    return lambda p: (p[..., 0] / a) ** 2 + (p[..., 1] / b) ** 2 + (p[..., 2] / c) ** 2 <= 1


def box(a, b, c):
    return lambda p: (np.abs(p[..., 0]) <= a) & (np.abs(p[..., 1]) <= b) & (np.abs(p[..., 2]) <= c)


def measure_one(vol: Volume) -> g.DiscGeometry:
    disc = iso.find_discs(vol, warn=False)[0]
    return g.measure_disc(vol, disc)


CENTRE = (3.3, -12.1, -95.7)


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (-32, 4, -5), (12, -6, 7)])
def test_angle_definition_matches_phantom(angles):
    """Our closed forms give the phantom's plane angles for the same rotation."""
    rot = ph.rotation_matrix(*angles)
    ours = g.angles_from_frame(rot)
    truth = ph.plane_angles(rot)
    for key, value in truth.items():
        assert ours[key] == pytest.approx(value, abs=1e-9)
    # single-axis tilts read back exactly as built
    if angles[1] == angles[2] == 0:
        assert ours["sagittal_angle_deg"] == pytest.approx(angles[0])


def test_random_rotations_frame_recovered():
    rng = np.random.default_rng(3)
    for _ in range(20):
        sag, cor, tra = rng.uniform(-40, 40), rng.uniform(-10, 10), rng.uniform(-10, 10)
        rot = ph.rotation_matrix(sag, cor, tra)
        lam = np.array([90.0, 50.0, 3.0])
        cov = rot @ np.diag(lam) @ rot.T
        frame, variances = g.disc_frame(cov)
        np.testing.assert_allclose(frame, rot, atol=1e-9)
        np.testing.assert_allclose(variances, lam, rtol=1e-9)


def test_ellipsoid_isotropic_fine_grid_exact():
    a, b, c = 21.0, 15.0, 4.5
    rot = ph.rotation_matrix(-28.0, 3.0, -4.0)
    vol = render(ellipsoid(a, b, c), CENTRE, rot, (0.4, 0.4, 0.4))
    f = measure_one(vol).features
    assert f["volume_mm3"] == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.01)
    assert f["height_mm"] == pytest.approx(4 * c / 3, abs=0.1)  # mean thickness of an ellipsoid
    assert f["ap_width_mm"] == pytest.approx(2 * b, abs=0.5)
    assert f["lateral_width_mm"] == pytest.approx(2 * a, abs=0.5)
    for key, value in ph.plane_angles(rot).items():
        assert f[key] == pytest.approx(value, abs=0.3), key


@pytest.mark.parametrize("oblique", [False, True])
def test_tilted_ellipsoid_anisotropic_spacing(oblique):
    """SPIDER-like thick sagittal slices, with identity and with an oblique header."""
    a, b, c = 22.0, 16.0, 4.0
    rot = ph.rotation_matrix(-20.0, 5.0, 6.0)
    direction = oblique_direction(20.0) if oblique else np.eye(3)
    spacing = (3.3, 0.62, 0.55)
    vol = render(ellipsoid(a, b, c), CENTRE, rot, spacing, direction)
    geo = measure_one(vol)
    f = geo.features
    assert f["volume_mm3"] == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.03)
    assert f["height_mm"] == pytest.approx(4 * c / 3, abs=0.3)
    assert f["ap_width_mm"] == pytest.approx(2 * b, abs=1.5)
    assert f["lateral_width_mm"] == pytest.approx(2 * a, abs=3.3 + 0.5)
    for key, value in ph.plane_angles(rot).items():
        assert f[key] == pytest.approx(value, abs=1.5), key
    np.testing.assert_allclose(geo.centroid_mm, CENTRE, atol=0.3)


def test_tilted_box_with_permuted_and_flipped_header():
    """A box stored with a permuted, flipped index order gives the same features."""
    a, b, c = 20.0, 14.0, 3.0
    rot = ph.rotation_matrix(15.0, -4.0, 3.0)
    ref = render(box(a, b, c), CENTRE, rot, (0.5, 0.5, 0.5))
    # index axis i -> superior, j -> anterior (flipped), k -> left
    perm = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float)
    other = render(box(a, b, c), CENTRE, rot, (0.6, 0.45, 0.55), perm)
    assert other.orientation == "SAL"
    fa, fb = measure_one(ref).features, measure_one(other).features
    expected = {
        "height_mm": 2 * c,
        "ap_width_mm": 2 * b,
        "lateral_width_mm": 2 * a,
        "volume_mm3": 8 * a * b * c,
        **ph.plane_angles(rot),
    }
    for f in (fa, fb):
        for key, value in expected.items():
            tol = 0.02 * value if key == "volume_mm3" else (0.6 if key.endswith("mm") else 0.5)
            assert f[key] == pytest.approx(value, abs=tol), key


def test_slice_pca_angles_paper_method():
    """The paper's middle-slice angles: right for sagittal/coronal, not for transverse."""
    rot = ph.rotation_matrix(-25.0, 4.0, 3.0)
    vol = render(ellipsoid(21.0, 15.0, 4.0), CENTRE, rot, (3.3, 0.62, 0.55))
    disc = iso.find_discs(vol, warn=False)[0]
    angles = g.slice_pca_angles(vol, disc)
    truth = ph.plane_angles(rot)
    assert angles["sagittal_angle_deg"] == pytest.approx(truth["sagittal_angle_deg"], abs=1.0)
    assert angles["coronal_angle_deg"] == pytest.approx(truth["coronal_angle_deg"], abs=1.0)
    # the transverse slice of a tilted disc is a strip along the mid-plane's cut
    cut = np.cross(rot[:, 2], [0, 0, 1.0])
    cut = cut if cut[0] > 0 else -cut
    expected = np.degrees(np.arctan2(cut[1], cut[0]))
    assert angles["transverse_angle_deg"] == pytest.approx(expected, abs=1.5)
    assert abs(expected - truth["transverse_angle_deg"]) > 5
    oblique = render(
        ellipsoid(21.0, 15.0, 4.0), CENTRE, rot, (3.3, 0.62, 0.55), oblique_direction(20)
    )
    with pytest.raises(DataError, match="axis-aligned"):
        g.slice_pca_angles(oblique, iso.find_discs(oblique, warn=False)[0])


def test_measure_cube_axis_order_and_units():
    """A cube's numpy axes are (SI, AP, LR): a flat disc gives height along axis 0."""
    sp = (1.5, 1.2, 1.4)
    k, j, i = np.mgrid[:64, :64, :64]
    # 6 voxels tall (9 mm), 25 AP (30 mm), 32 LR (44.8 mm)
    cube = ((k >= 29) & (k < 35) & (j >= 20) & (j < 45) & (i >= 16) & (i < 48)).astype(np.uint8)
    f = g.measure_cube(cube, sp)
    assert f["height_mm"] == pytest.approx(9.0, abs=0.05)
    assert f["ap_width_mm"] == pytest.approx(30.0, abs=0.25)
    assert f["lateral_width_mm"] == pytest.approx(44.8, abs=0.25)
    assert f["volume_mm3"] == pytest.approx(6 * 25 * 32 * np.prod(sp))
    for key in ("sagittal_angle_deg", "coronal_angle_deg", "transverse_angle_deg"):
        assert f[key] == pytest.approx(0.0, abs=1e-6)
    # tilt it: anterior edge up -> positive sagittal angle (anterior = low AP index)
    tilted = np.zeros_like(cube)
    for jj in range(20, 45):
        shift = int(round((32 - jj) * np.tan(np.radians(20)) * 1.2 / 1.5))
        tilted[29 + shift : 35 + shift, jj, 16:48] = 1
    assert g.measure_cube(tilted, sp)["sagittal_angle_deg"] == pytest.approx(20, abs=1.0)


def test_empty_and_float_cubes():
    with pytest.raises(iso.EmptyDiscError, match="too small"):
        g.measure_cube(np.zeros((16, 16, 16), np.uint8))
    nan = g.measure_cube(np.zeros((16, 16, 16)), allow_empty=True)
    assert set(nan) == set(g.FEATURES) and all(np.isnan(v) for v in nan.values())
    probs = np.zeros((32, 32, 32), np.float32)
    probs[14:18, 8:24, 6:26] = 0.9
    probs[14:18, 8:24, 26:28] = 0.3  # below 0.5: not disc
    assert g.measure_cube(probs, (1.0, 1.0, 1.0))["lateral_width_mm"] == pytest.approx(20, abs=0.3)
    with pytest.raises(ValueError, match="3-D"):
        g.measure_cube(np.zeros((4, 4)))


def test_regionprops_cross_check():
    """Volume and principal axis lengths agree with scikit-image (an independent library)."""
    rot = ph.rotation_matrix(-25.0, 4.0, -3.0)
    vol = render(ellipsoid(21.0, 15.0, 4.0), CENTRE, rot, (3.3, 0.62, 0.55))
    disc = iso.isolate_discs(vol)[0]
    geo = g.measure_cube_geometry(disc.cube, disc.spacing_mm)
    props = regionprops(disc.cube, spacing=disc.spacing_mm)[0]
    assert geo.features["volume_mm3"] == pytest.approx(props.area, rel=1e-9)
    ev = np.sort(props.inertia_tensor_eigvals)[::-1]
    lengths = np.sqrt(
        10 * np.array([ev[0] + ev[1] - ev[2], ev[0] - ev[1] + ev[2], -ev[0] + ev[1] + ev[2]])
    )
    assert lengths[0] == pytest.approx(props.axis_major_length, rel=1e-6)
    np.testing.assert_allclose(geo.axis_lengths_mm, lengths, rtol=1e-6)
    # and the equivalent ellipsoid is the one we drew (semi-axes 21, 15, 4 mm)
    np.testing.assert_allclose(geo.axis_lengths_mm, [42, 30, 8], rtol=0.06)


# ---------------------------------------------------------------------------------------
# the phantom: every feature against phantom_truth.csv
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_measured(phantom_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", iso.DiscWarning)  # the phantom is clean
        measured = g.measure_masks(phantom_dir, modalities=None, progress=False)
    return measured


def test_phantom_errors_within_bounds(phantom_dir, phantom_measured):
    compared = g.compare_with_truth(phantom_measured, phantom_dir / "phantom_truth.csv")
    assert len(compared) == len(pd.read_csv(phantom_dir / "phantom_truth.csv"))
    table = g.error_table(compared)
    print("\n" + table.round(3).to_string())
    for feature, bound in g.VALIDATION_BOUNDS.items():
        assert table.loc[feature, "median_abs_error"] <= bound, feature
    assert table["within_bound"].all()
    # no gross failure on any disc either
    assert (compared["height_mm_error"].abs() < 0.5).all()
    assert (compared["volume_mm3_error"].abs() < 5).all()
    assert (compared["sagittal_angle_deg_error"].abs() < 2).all()


def test_phantom_columns_and_identity(phantom_measured):
    assert list(phantom_measured.columns[: len(g.COLUMNS)]) == g.COLUMNS
    assert not phantom_measured["touches_border"].any()
    one = phantom_measured[phantom_measured["series"] == "1_t1"]
    assert one["patient"].eq("1").all()
    assert list(one["ivd_label"]) == sorted(one["ivd_label"])
    assert one.set_index("ivd_label").loc[1, "level"] == "L5/S1"
    # lordosis: L5/S1 tilts more negative than L3/L4 in every spine
    sag = phantom_measured.pivot(index="series", columns="ivd_label", values="sagittal_angle_deg")
    assert (sag[1] < sag[3]).all()


def test_transformer_store_and_masks(phantom_dir, phantom_measured, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iso.DiscWarning)
        path = iso.build_disc_store(
            phantom_dir, tmp_path / "discs.npz", progress=False, spacing_mm=(1.5, 1.2, 1.4), size=64
        )
    store = iso.load_disc_store(path)
    tf = g.GeometryFeatures(space="mask")
    by_mask = tf.fit_transform(store)
    assert list(by_mask.columns) == g.COLUMNS
    ref = phantom_measured.set_index(["series", "ivd_label"])
    got = by_mask.set_index(["series", "ivd_label"])
    pd.testing.assert_frame_equal(
        got[g.FEATURES], ref.loc[got.index, g.FEATURES], check_dtype=False
    )
    by_cube = g.GeometryFeatures(space="cube").fit_transform(store)
    diff = (by_cube[g.FEATURES] - by_mask[g.FEATURES]).abs().median()
    assert diff["height_mm"] < 0.5 and diff["sagittal_angle_deg"] < 2  # resampled, close
    # path input, numeric-only output inside a pipeline, clone-able
    pipe = make_pipeline(clone(g.GeometryFeatures(ids=False)), StandardScaler())
    z = pipe.fit_transform(path)
    assert z.shape == (len(store), len(g.FEATURES))
    assert list(g.GeometryFeatures().fit(store).get_feature_names_out()) == g.FEATURES
    # a raw stack of cubes needs its spacing
    raw = g.GeometryFeatures(ids=False, spacing_mm=store.spacing_mm).transform(store.cubes[:2])
    np.testing.assert_allclose(raw.to_numpy(), by_cube[g.FEATURES].to_numpy()[:2])
    with pytest.raises(ValueError, match="mask_path"):
        g.GeometryFeatures(space="mask").transform(store.table.drop(columns="mask_path"))


def test_join_gradings_reports_mismatches(phantom_dir, phantom_measured):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gradings' IVD label 0 row (SPIDER's quirk)
        gradings = read_gradings(phantom_dir / "radiological_gradings.csv")
    t1 = phantom_measured[phantom_measured["series"].str.endswith("_t1")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        joined = g.join_gradings(t1, gradings)  # clean: no warning
    assert len(joined) == len(t1) and "disc_narrowing" in joined
    # a disc in the mask that is not graded, and a graded disc that is not in the mask
    gradings2 = gradings[~((gradings["patient"] == "1") & (gradings["ivd_label"] == 2))]
    t1b = t1[~((t1["patient"] == "2") & (t1["ivd_label"] == 1))]
    with pytest.warns(g.GradingMismatchWarning) as record:
        joined = g.join_gradings(t1b, gradings2)
    text = " ".join(str(w.message) for w in record)
    assert "in mask, not graded" in text and "patient 1 L4/L5" in text
    assert "graded, not in mask" in text and "patient 2 L5/S1" in text
    assert len(joined) == len(t1b) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        left = g.join_gradings(t1b, gradings2, how="left")
    assert len(left) == len(t1b) and left["disc_narrowing"].isna().sum() == 1


def test_cli_geometry_on_unseen_nifti_folder(phantom_dir, phantom_measured, tmp_path, capsys):
    """The command line on a folder of NIfTI masks with non-SPIDER labels and names."""
    from disclatent.cli import main

    folder = tmp_path / "my_masks"
    for series in ("2_t1", "3_t2"):
        vol = read_mask(phantom_dir / "masks" / f"{series}.mha")
        arr = np.where(vol.array > 200, vol.array - 200 + 10, 0).astype(np.int16)  # 11, 12...
        write_image(vol.with_array(arr), folder / f"case_{series}.nii.gz")
    out = tmp_path / "geo.csv"
    assert (
        main(
            [
                "geometry",
                "--masks",
                str(folder),
                "--out",
                str(out),
                "--labels",
                "11-25",
                "--label-offset",
                "10",
                "--quiet",
            ]
        )
        == 0
    )
    df = pd.read_csv(out, dtype={"patient": str})
    assert list(df.columns[: len(g.COLUMNS)]) == g.COLUMNS
    ref = phantom_measured[phantom_measured["series"].isin(["2_t1", "3_t2"])]
    assert len(df) == len(ref)
    assert sorted(df["series"].unique()) == ["case_2_t1", "case_3_t2"]
    np.testing.assert_allclose(
        df[g.FEATURES].to_numpy(), ref[g.FEATURES].to_numpy(), rtol=1e-4, atol=1e-3
    )
    # the offset alone is enough; the wrong offset finds no disc and says so
    out2 = tmp_path / "geo2.csv"
    assert (
        main(
            [
                "geometry",
                "--masks",
                str(folder),
                "--out",
                str(out2),
                "--label-offset",
                "10",
                "--quiet",
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(out2), pd.read_csv(out))
    with pytest.warns(iso.EmptyDiscWarning, match="no disc found"):
        assert (
            main(
                [
                    "geometry",
                    "--masks",
                    str(folder / "case_2_t1.nii.gz"),
                    "--out",
                    str(out2),
                    "--quiet",
                    "--label-offset",
                    "30",
                ]
            )
            == 0
        )
    assert len(pd.read_csv(out2)) == 0
    # an unreadable path is a clear error, not a traceback
    assert main(["geometry", "--masks", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
