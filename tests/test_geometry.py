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

from conftest import oblique_direction, small_mask
from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import phantom as ph
from disclatent.data.spider import read_gradings, read_overview
from disclatent.data.volume import DataError, Volume, read_mask, write_image
from disclatent.discs import features as feat
from disclatent.discs import geometry as g
from disclatent.discs import isolation as iso
from disclatent.discs import store as st
from disclatent.discs import validation as val

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
    assert set(nan) == set(GEOMETRY_FEATURES) and all(np.isnan(v) for v in nan.values())
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
    lengths = val.inertia_axis_lengths(props.inertia_tensor_eigvals)
    assert lengths[0] == pytest.approx(props.axis_major_length, rel=1e-6)
    assert lengths[2] == pytest.approx(props.axis_minor_length, rel=1e-6)
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
        measured = feat.measure_masks(phantom_dir, modalities=None, progress=False)
    return measured


def test_phantom_errors_within_bounds(phantom_dir, phantom_measured):
    compared = val.compare_with_truth(phantom_measured, phantom_dir / "phantom_truth.csv")
    assert len(compared) == len(pd.read_csv(phantom_dir / "phantom_truth.csv"))
    table = val.error_table(compared)
    print("\n" + table.round(3).to_string())
    for feature, bound in val.VALIDATION_BOUNDS.items():
        assert table.loc[feature, "median_abs_error"] <= bound, feature
    assert table["within_bound"].all()
    # no gross failure on any disc either
    assert (compared["height_mm_error"].abs() < 0.5).all()
    assert (compared["volume_mm3_error"].abs() < 5).all()
    assert (compared["sagittal_angle_deg_error"].abs() < 2).all()


def test_phantom_columns_and_identity(phantom_measured):
    assert list(phantom_measured.columns[: len(feat.COLUMNS)]) == feat.COLUMNS
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
        path = st.build_disc_store(
            phantom_dir, tmp_path / "discs.npz", progress=False, spacing_mm=(1.5, 1.2, 1.4), size=64
        )
    store = st.load_disc_store(path)
    tf = feat.GeometryFeatures(space="mask")
    by_mask = tf.fit_transform(store)
    assert list(by_mask.columns) == feat.COLUMNS
    ref = phantom_measured.set_index(["series", "ivd_label"])
    got = by_mask.set_index(["series", "ivd_label"])
    pd.testing.assert_frame_equal(
        got[GEOMETRY_FEATURES], ref.loc[got.index, GEOMETRY_FEATURES], check_dtype=False
    )
    by_cube = feat.GeometryFeatures(space="cube").fit_transform(store)
    diff = (by_cube[GEOMETRY_FEATURES] - by_mask[GEOMETRY_FEATURES]).abs().median()
    assert diff["height_mm"] < 0.5 and diff["sagittal_angle_deg"] < 2  # resampled, close
    # path input, numeric-only output inside a pipeline, clone-able
    pipe = make_pipeline(clone(feat.GeometryFeatures(ids=False)), StandardScaler())
    z = pipe.fit_transform(path)
    assert z.shape == (len(store), len(GEOMETRY_FEATURES))
    assert list(feat.GeometryFeatures().fit(store).get_feature_names_out()) == GEOMETRY_FEATURES
    # a raw stack of cubes needs its spacing
    raw = feat.GeometryFeatures(ids=False, spacing_mm=store.spacing_mm).transform(store.cubes[:2])
    np.testing.assert_allclose(raw.to_numpy(), by_cube[GEOMETRY_FEATURES].to_numpy()[:2])
    with pytest.raises(ValueError, match="mask_path"):
        feat.GeometryFeatures(space="mask").transform(store.table.drop(columns="mask_path"))


def test_join_gradings_reports_mismatches(phantom_dir, phantom_measured):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gradings' IVD label 0 row (SPIDER's quirk)
        gradings = read_gradings(phantom_dir / "radiological_gradings.csv")
    t1 = phantom_measured[phantom_measured["series"].str.endswith("_t1")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        joined = feat.join_gradings(t1, gradings)  # clean: no warning
    assert len(joined) == len(t1) and "disc_narrowing" in joined
    # a disc in the mask that is not graded, and a graded disc that is not in the mask
    gradings2 = gradings[~((gradings["patient"] == "1") & (gradings["ivd_label"] == 2))]
    t1b = t1[~((t1["patient"] == "2") & (t1["ivd_label"] == 1))]
    with pytest.warns(feat.GradingMismatchWarning) as record:
        joined = feat.join_gradings(t1b, gradings2)
    text = " ".join(str(w.message) for w in record)
    assert "in mask, not graded" in text and "patient 1 L4/L5" in text
    assert "graded, not in mask" in text and "patient 2 L5/S1" in text
    assert len(joined) == len(t1b) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        left = feat.join_gradings(t1b, gradings2, how="left")
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
    assert list(df.columns[: len(feat.COLUMNS)]) == feat.COLUMNS
    ref = phantom_measured[phantom_measured["series"].isin(["2_t1", "3_t2"])]
    assert len(df) == len(ref)
    assert sorted(df["series"].unique()) == ["case_2_t1", "case_3_t2"]
    np.testing.assert_allclose(
        df[GEOMETRY_FEATURES].to_numpy(), ref[GEOMETRY_FEATURES].to_numpy(), rtol=1e-4, atol=1e-3
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


# ---------------------------------------------------------------------------------------
# the cohort's geometry table: written once (02_geometry), read by later chapters
# ---------------------------------------------------------------------------------------
def test_measure_cohort_adds_acquisition_columns(phantom_dir, phantom_measured):
    table, notes = feat.measure_cohort(phantom_dir)
    assert notes == []  # the phantom is clean
    assert list(table.columns) == [
        *feat.COLUMNS,
        "touches_border",
        "modality",
        "institution",
        "SliceThickness",
    ]
    pd.testing.assert_frame_equal(table[phantom_measured.columns], phantom_measured)
    overview = read_overview(phantom_dir / "overview.csv").set_index("series")
    one = table.set_index("series").loc["3_t2"].iloc[0]
    assert one["modality"] == "t2" and one["institution"] == overview.loc["3_t2", "institution"]
    assert one["SliceThickness"] == overview.loc["3_t2", "SliceThickness"]


def test_geometry_table_round_trip_equals_the_transformer(phantom_dir, tmp_path):
    """The table 02_geometry writes, read back, holds what GeometryFeatures(space="mask")
    measures on the store's T1 discs, to the last bit (CSV round trip of float64)."""
    from disclatent.paths import BuildPaths, MissingOutputError, Table
    from disclatent.report.tables import save_table

    paths = BuildPaths(tmp_path / "build", "quick")
    with pytest.raises(MissingOutputError, match="02_geometry"):
        feat.load_geometry_table(paths)
    table, _ = feat.measure_cohort(phantom_dir)
    save_table(table, Table.GEOMETRY, paths.root)
    loaded = feat.load_geometry_table(paths)
    assert loaded["patient"].map(type).eq(str).all() and loaded["series"].map(type).eq(str).all()
    assert loaded["ivd_label"].dtype == np.int64 and loaded["touches_border"].dtype == bool
    pd.testing.assert_frame_equal(loaded, table, check_dtype=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iso.DiscWarning)
        store = st.load_disc_store(
            st.build_disc_store(
                phantom_dir, tmp_path / "d.npz", spacing_mm=(3.0, 2.4, 2.8), size=32, progress=False
            )
        )
    measured = feat.GeometryFeatures(space="mask").transform(store)
    rows = loaded.set_index(["series", "ivd_label"]).loc[
        measured.set_index(["series", "ivd_label"]).index
    ]
    assert len(rows) == len(store) == (loaded["modality"] == "t1").sum()
    diff = np.abs(rows[GEOMETRY_FEATURES].to_numpy() - measured[GEOMETRY_FEATURES].to_numpy())
    assert diff.max() == 0.0


# ---------------------------------------------------------------------------------------
# validation: agreement with truth, per site, per space, slice-wise angles, scikit-image
# ---------------------------------------------------------------------------------------
def _compared(errors: dict[str, list[float]], **extra) -> pd.DataFrame:
    n = len(next(iter(errors.values())))
    df = pd.DataFrame({"series": [f"{i}_t1" for i in range(n)], **extra})
    for f in GEOMETRY_FEATURES:
        e = np.asarray(errors.get(f, [0.0] * n), float)
        df[f"{f}_true"] = 10.0
        df[f] = 10.0 + e
        df[f"{f}_error"] = e
    return df


def test_bland_altman_hand_computed():
    compared = _compared({"height_mm": [1.0, 2.0, 3.0, 4.0], "volume_mm3": [-2, 0, 2, np.nan]})
    ba = val.bland_altman(compared)
    assert list(ba.index) == GEOMETRY_FEATURES
    sd = np.sqrt(((1.5**2 + 0.5**2) * 2) / 3)  # sample sd of 1, 2, 3, 4
    h = ba.loc["height_mm"]
    assert h["n"] == 4 and h["bias"] == pytest.approx(2.5) and h["sd"] == pytest.approx(sd)
    assert h["half_width"] == pytest.approx(1.96 * sd)
    assert (h["lower"], h["upper"]) == pytest.approx((2.5 - 1.96 * sd, 2.5 + 1.96 * sd))
    v = ba.loc["volume_mm3"]
    assert v["n"] == 3 and v["bias"] == pytest.approx(0) and v["sd"] == pytest.approx(2.0)
    assert ba.loc["ap_width_mm", "sd"] == 0.0


def test_agreement_plot_draws_the_limits():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from disclatent.report.geometry_plots import plot_agreement

    compared = _compared({"height_mm": [1.0, 2.0, 3.0, 4.0]}, institution=["A", "A", "B", "B"])
    fig = plot_agreement(compared, "institution")
    ax = fig.axes[1]  # the height's Bland-Altman panel
    drawn = sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() != "None")
    ba = val.bland_altman(compared).loc["height_mm"]
    np.testing.assert_allclose(drawn, [ba["lower"], ba["bias"], ba["upper"]])
    assert "bias +2.5" in ax.get_title()
    assert sum(not a.axison for a in fig.axes) == 16 - 2 * len(GEOMETRY_FEATURES)
    plt.close(fig)


def test_errors_by_site_medians_sorted_by_slice_thickness():
    compared = _compared(
        {"lateral_width_mm": [1.0, -3.0, 2.0, 0.5, -0.5]},
        institution=["A", "A", "A", "B", "B"],
        SliceThickness=[4.4, 4.4, 4.2, 3.3, 3.3],
    )
    by_site = val.errors_by_site(compared, "institution")
    assert list(by_site.index) == ["B", "A"]  # thinner slices first
    assert by_site.loc["A", "discs"] == 3 and by_site.loc["B", "discs"] == 2
    assert by_site.loc["A", "slice_mm"] == pytest.approx(13.0 / 3)
    assert by_site.loc["A", "lateral_width_mm |err|"] == 2.0  # median of 1, 3, 2
    assert by_site.loc["B", "lateral_width_mm |err|"] == 0.5
    assert by_site.loc["A", "height_mm |err|"] == 0.0


def test_angle_methods_hand_computed():
    compared = _compared(
        {
            "sagittal_angle_deg": [0.5, -1.0, 0.2],
            "transverse_angle_deg": [2.0, -4.0, 1.0],
        }
    ).assign(ivd_label=1)
    # the slice-wise angles of the first two discs only (the third: an oblique header)
    slices = pd.DataFrame(
        {
            "series": ["0_t1", "1_t1"],
            "ivd_label": [1, 1],
            "sagittal_angle_deg": [10.0 + 1.0, 10.0 - 3.0],
            "coronal_angle_deg": [10.0, 10.0],
            "transverse_angle_deg": [10.0 + 12.0, 10.0 - 20.0],
        }
    )
    table = val.angle_methods(compared, slices)
    assert list(table.index) == val.ANGLE_FEATURES
    sag, tra = table.loc["sagittal_angle_deg"], table.loc["transverse_angle_deg"]
    assert sag["3-D PCA, median |error|"] == pytest.approx(0.5)
    assert sag["3-D PCA, max |error|"] == pytest.approx(1.0)
    assert sag["middle-slice 2-D PCA, median |error|"] == pytest.approx(2.0)
    assert sag["middle-slice 2-D PCA, max |error|"] == pytest.approx(3.0)
    assert tra["middle-slice 2-D PCA, median |error|"] == pytest.approx(16.0)
    assert tra["middle-slice 2-D PCA, max |error|"] == pytest.approx(20.0)
    assert table.loc["coronal_angle_deg"].eq(0).all()


def _write_ellipsoids(folder, oblique: bool = True):
    """Two single-disc masks: an axis-aligned one ("a") and, optionally, an oblique one."""
    rot = ph.rotation_matrix(-25.0, 4.0, 3.0)
    shape = ellipsoid(21.0, 15.0, 4.0)
    vol = render(shape, CENTRE, rot, (3.3, 0.62, 0.55))
    write_image(vol, folder / "a.mha")
    if oblique:
        other = render(shape, CENTRE, rot, (3.3, 0.62, 0.55), oblique_direction(20))
        write_image(other, folder / "b.mha")
    return rot


def test_slice_pca_table_leaves_oblique_masks_out(tmp_path):
    _write_ellipsoids(tmp_path)
    table = val.slice_pca_table(tmp_path)
    assert list(table.columns) == ["series", "ivd_label", *val.ANGLE_FEATURES]
    assert table[["series", "ivd_label"]].values.tolist() == [["a", 1]]
    mask = read_mask(tmp_path / "a.mha")
    expected = g.slice_pca_angles(mask, iso.find_discs(mask, warn=False)[0])
    for a in val.ANGLE_FEATURES:
        assert table.loc[0, a] == expected[a]


def test_inertia_axis_lengths_of_an_ellipsoid():
    a, b, c = 21.0, 15.0, 4.0
    eigvals = [(b * b + c * c) / 5, (a * a + b * b) / 5, (a * a + c * c) / 5]  # any order
    np.testing.assert_allclose(val.inertia_axis_lengths(eigvals), [42.0, 30.0, 8.0], rtol=1e-12)


def test_regionprops_check_of_masks_and_cubes(tmp_path):
    _write_ellipsoids(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iso.DiscWarning)
        store = st.load_disc_store(
            st.build_disc_store(tmp_path, tmp_path / "s.npz", size=48, progress=False)
        )
    check = val.regionprops_check(tmp_path, store, modalities=None)
    assert list(check.index) == ["cube", "original mask"]
    assert list(check.columns) == [
        f"max |relative difference|, {c}" for c in ("volume", "axis 1", "axis 2", "axis 3")
    ]
    assert (check.to_numpy() < 1e-6).all()


def test_measure_on_grid_and_errors_by_space(tmp_path):
    rot = _write_ellipsoids(tmp_path, oblique=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", iso.DiscWarning)
        store = st.load_disc_store(
            st.build_disc_store(
                tmp_path, tmp_path / "s.npz", spacing_mm=(3.0, 2.4, 2.8), size=32, progress=False
            )
        )
    paper = val.measure_on_grid(store.table)
    (disc,) = iso.isolate_discs(read_mask(tmp_path / "a.mha"))
    assert disc.size == 64 and paper[["series", "ivd_label"]].values.tolist() == [["a", 1]]
    assert paper.loc[0, GEOMETRY_FEATURES].to_dict() == g.measure_cube(disc.cube, disc.spacing_mm)
    a, b, c = 21.0, 15.0, 4.0
    truth = pd.DataFrame(
        [
            {
                "series": "a",
                "ivd_label": 1,
                "height_mm": 4 * c / 3,
                "ap_width_mm": 2 * b,
                "lateral_width_mm": 2 * a,
                **ph.plane_angles(rot),
                "volume_mm3": 4 / 3 * np.pi * a * b * c,
            },
            {"series": "z", "ivd_label": 1},  # another series: left out of each comparison
        ]
    )
    spaces = {"cube 64": paper, "cube 32": feat.GeometryFeatures().fit_transform(store)}
    table = val.errors_by_space(spaces, truth)
    assert list(table.columns) == ["cube 64", "cube 32", "bound"]
    assert table["bound"].to_dict() == val.VALIDATION_BOUNDS
    for name, df in spaces.items():
        err = df.loc[0, "lateral_width_mm"] - 2 * a
        assert table.loc["lateral_width_mm", name] == pytest.approx(abs(err))
        vol = 100 * (df.loc[0, "volume_mm3"] / truth.loc[0, "volume_mm3"] - 1)
        assert table.loc["volume_mm3", name] == pytest.approx(abs(vol))


def test_isolate_level_and_disc_summary(tmp_path):
    vol = small_mask()
    write_image(vol, tmp_path / "7_t1.mha")
    mask = read_mask(tmp_path / "7_t1.mha")
    features = feat.measure_mask(mask)
    l4 = iso.isolate_level(mask, "L4/L5", spacing_mm=(1.0, 1.0, 1.0), size=32)
    assert (l4.ivd_label, l4.series, l4.size) == (2, "7_t1", 32)
    lowest = iso.isolate_level(mask, "L1/L2", spacing_mm=(1.0, 1.0, 1.0), size=32)
    assert lowest.ivd_label == 1  # no L1/L2 in the mask: its lowest disc
    truth = features.assign(**{f: features[f] + 1.0 for f in GEOMETRY_FEATURES})
    shown = val.disc_summary(features, l4, truth)
    assert list(shown.columns) == ["original mask", "32³ cube (drawn)", "truth"]
    assert list(shown.index) == GEOMETRY_FEATURES
    row = features.set_index("ivd_label").loc[2, GEOMETRY_FEATURES].astype(float)
    np.testing.assert_array_equal(shown["original mask"], row)
    np.testing.assert_array_equal(shown["truth"], row + 1.0)
    cube = g.measure_cube(l4.cube, l4.spacing_mm)
    np.testing.assert_array_equal(shown["32³ cube (drawn)"], [cube[f] for f in GEOMETRY_FEATURES])
    assert list(val.disc_summary(features, l4).columns) == ["original mask", "32³ cube (drawn)"]
