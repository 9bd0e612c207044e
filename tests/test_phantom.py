import numpy as np
import pandas as pd
import pytest

from disclatent.conventions import GEOMETRY_FEATURES
from disclatent.data import labels as lab
from disclatent.data import phantom as ph
from disclatent.data import spider
from disclatent.data import volume as io
from disclatent.data.phantom import anatomy, writer
from disclatent.data.survey import inspect_path


def test_layout_and_columns(phantom_dir):
    names = sorted(p.name for p in (phantom_dir / "masks").iterdir())
    assert names == sorted(f"{i}_{m}.mha" for i in range(1, 5) for m in ("t1", "t2"))
    assert sorted(p.name for p in (phantom_dir / "images").iterdir()) == names
    overview = pd.read_csv(phantom_dir / "overview.csv")
    assert set(spider.OVERVIEW_COLUMNS) <= set(overview.columns)
    gradings = pd.read_csv(phantom_dir / "radiological_gradings.csv")
    assert list(gradings.columns) == spider.GRADING_COLUMNS
    assert (gradings["IVD label"] == 0).sum() == 1  # SPIDER's quirk, reproduced
    truth = pd.read_csv(phantom_dir / "phantom_truth.csv")
    for col in [
        "series",
        "patient",
        "ivd_label",
        "level",
        *GEOMETRY_FEATURES,
        "narrowing_factor",
        "bulge_mm",
    ]:
        assert col in truth
    assert set(ph.GENERATING_FACTORS) <= set(truth.columns)
    assert ph.GENERATING_FACTORS[: len(GEOMETRY_FEATURES)] == GEOMETRY_FEATURES
    assert sorted(overview["institution"].unique()) == ["A", "B", "C", "D"]


def test_headers_like_spider(phantom_dir):
    overview = pd.read_csv(phantom_dir / "overview.csv").set_index("new_file_name")
    for report in inspect_path(phantom_dir):
        assert report["orientation"] == "LPS"  # identity direction, as SPIDER's files
        sx, sy, sz = report["spacing_mm"]
        assert 3.0 <= sx <= 4.6  # thick left-right slices
        assert 0.5 <= sy <= 0.9 and 0.5 <= sz <= 0.9
        assert 5 <= report["n_discs"] <= 7
        assert [d["ivd_label"] for d in report["discs"]] == list(range(1, report["n_discs"] + 1))
        row = overview.loc[report["series"]]
        assert row["num_discs"] == report["n_discs"]
        assert row["SliceThickness"] == pytest.approx(sx)
        assert "spinal canal" in report["structures"]


def test_same_seed_same_bytes(tmp_path):
    a = ph.write_phantom(tmp_path / "a", n_patients=2, seed=3, workers=1)
    b = ph.write_phantom(tmp_path / "b", n_patients=2, seed=3, workers=2)
    c = ph.write_phantom(tmp_path / "c", n_patients=2, seed=4, workers=1)
    assert ph.tree_digest(a) == ph.tree_digest(b)
    assert ph.tree_digest(a) != ph.tree_digest(c)
    assert ph.phantom_is_current(a, 2, 3) and not ph.phantom_is_current(a, 2, 4)


def test_truth_matches_the_masks(phantom_dir):
    """Voxel volume and centre of each disc agree with its generating truth."""
    truth = pd.read_csv(phantom_dir / "phantom_truth.csv")
    errors, offsets = [], []
    for series, rows in truth.groupby("series"):
        mask = io.read_mask(phantom_dir / "masks" / f"{series}.mha")
        for _, r in rows.iterrows():
            idx = np.argwhere(mask.array == lab.disc_mask_label(int(r.ivd_label)))
            volume = len(idx) * mask.voxel_volume_mm3
            errors.append(volume / r.volume_mm3 - 1)
            centre = mask.index_to_world(idx[:, ::-1].mean(axis=0))
            offsets.append(
                np.linalg.norm(
                    centre - r[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
                )
            )
    errors = np.abs(errors)
    assert np.median(errors) < 0.01 and errors.max() < 0.05
    assert np.median(offsets) < 0.3 and max(offsets) < 1.0


def test_truth_is_physiological(phantom_dir):
    t = pd.read_csv(phantom_dir / "phantom_truth.csv")
    # real healthy discs: 5-8 cm3; narrowed discs are smaller, bulging ones larger
    lo, med, hi = t["volume_mm3"].quantile([0.05, 0.5, 0.95])
    assert 3000 < lo and 5000 < med < 8000 and hi < 11000
    assert t["ap_width_mm"].between(22, 44).all()  # 29-33 mm typical, plus bulges
    # real SPIDER medians 44-52 mm per level; plus bulges and irregular outlines
    assert t["lateral_width_mm"].between(32, 58).all()
    assert t["height_mm"].between(3, 10).all()
    # lordosis: L5/S1 tilts forward much more than L1/L2
    by_level = t.groupby("ivd_label")["sagittal_angle_deg"].mean()
    assert by_level[1] - by_level[5] < -25


def test_per_level_prevalence_resembles_spider():
    """Grading prevalence per level from 300 simulated patients (no images needed)."""
    rows = []
    for i in range(300):
        spec = ph.make_patient(11, i, 300)
        rows += [
            {
                "k": g["IVD label"],
                "n": g["Disc narrowing"],
                "b": g["Disc bulging"],
                "pf": g["Pfirrman grade"],
            }
            for g in writer._gradings(spec, 11, i)
        ]
    df = pd.DataFrame(rows).groupby("k").mean()
    for k in range(1, 6):
        assert df.loc[k, "n"] == pytest.approx(anatomy.NARROWING_PREVALENCE[k - 1], abs=0.08)
        assert df.loc[k, "b"] == pytest.approx(anatomy.BULGING_PREVALENCE[k - 1], abs=0.08)
    assert df.loc[1, "pf"] > df.loc[5, "pf"] + 0.5


def _flat_disc(**kw) -> ph.DiscSpec:
    base = dict(
        patient="1",
        ivd_label=1,
        center=np.zeros(3),
        rotation=np.eye(3),
        sagittal_deg=0,
        coronal_deg=0,
        transverse_deg=0,
        a_lat=20.0,
        a_ant=16.0,
        a_post=16.0,
        notch_halfwidth=6.0,
        notch_depth=2.0,
        convexity=0.0,
        wedge=0.0,
        h0=8.0,
        narrowing_factor=1.0,
        bulge_mm=0.0,
        narrowing_severity=0.0,
        bulge_severity=0.0,
        pfirrmann=2,
    )
    base.update(kw)
    return ph.DiscSpec(**base)


def test_truth_of_analytic_discs():
    d = _flat_disc()
    t = d.truth(step_mm=0.02)
    assert t["height_mm"] == pytest.approx(8.0, rel=1e-6)  # flat, no wedge: thickness h0
    assert t["ap_width_mm"] == pytest.approx(30.0, abs=0.02)
    # on the line through the centroid, which the notch moves about 0.2 mm anteriorly
    v_c = t["centroid_y_mm"]
    assert -0.3 < v_c < -0.1
    assert t["lateral_width_mm"] == pytest.approx(40.0 * np.sqrt(1 - (v_c / 16) ** 2), abs=0.02)
    notch = np.pi * 6.0 * (0.6 * 6.0 + 2.0)  # full notch ellipse area
    lens = t["footprint_area_mm2"] - (np.pi * 20 * 16 - notch)
    assert 0 < lens < notch  # only part of the notch ellipse lies inside the disc
    assert t["volume_mm3"] == pytest.approx(8.0 * t["footprint_area_mm2"], rel=1e-6)
    # convex endplates: mean thickness over an ellipse of h0 (1 - c r^2) is h0 (1 - c/2)
    e = _flat_disc(convexity=0.3, notch_depth=0.0, notch_halfwidth=1e-6)
    assert e.truth(step_mm=0.02)["height_mm"] == pytest.approx(8.0 * 0.85, rel=2e-3)
    # wedge: anterior (v < 0) taller than posterior
    w = _flat_disc(wedge=0.3)
    assert w.thickness(0.0, -10.0) > w.thickness(0.0, 10.0)


def test_truth_of_an_irregular_outline_and_wavy_endplates():
    """Harmonic 4 of the outline, r = 1 + c cos(4 theta) in the ellipse's own angle: the area
    is pi a_lat a (1 + c^2 / 2) and both widths grow by the factor 1 + c; a plane-wave bump
    multiplies the thickness where it is evaluated."""
    c = 0.06
    d = _flat_disc(
        notch_depth=0.0, notch_halfwidth=1e-6, outline=np.array([[0, 0], [0, 0], [c, 0]])
    )
    t = d.truth(step_mm=0.02)
    assert t["footprint_area_mm2"] == pytest.approx(np.pi * 20 * 16 * (1 + c**2 / 2), rel=2e-3)
    assert t["lateral_width_mm"] == pytest.approx(40.0 * (1 + c), abs=0.03)
    assert t["ap_width_mm"] == pytest.approx(32.0 * (1 + c), abs=0.03)
    assert t["height_mm"] == pytest.approx(8.0, rel=1e-9)  # the outline leaves the endplates
    bump = np.array([[0.1, 0.0, 0.0, 0.2]])  # 10 mm waves along u, 20 % of the thickness
    b = _flat_disc(bumps=bump)
    np.testing.assert_allclose(b.thickness(np.array([0.0, 5.0]), np.array([0.0, 0.0])), [9.6, 6.4])
    assert b.half_extent()[2] == pytest.approx(8.0 * 1.5 * 1.2 + 1.0)


def test_truth_angles_follow_the_solids_principal_axes():
    """Harmonic 2 with a sine term turns the footprint's principal axes away from the
    generating ``u``: the true transverse angle is that of the solid's own lateral axis,
    as scikit-image's ``regionprops`` orientation of the footprint finds it (rows along u),
    not the generating rotation's 0 degrees; the tilt of the normal is untouched."""
    from skimage.measure import regionprops

    d = _flat_disc(notch_depth=0.0, notch_halfwidth=1e-6, outline=np.array([[0.0, 0.08]]))
    t = d.truth(step_mm=0.02)
    step = 0.02
    uu, vv = np.meshgrid(
        np.arange(-25, 25, step) + step / 2, np.arange(-20, 20, step) + step / 2, indexing="ij"
    )
    footprint = d.footprint(uu, vv).astype(np.uint8)
    orientation = np.degrees(regionprops(footprint)[0].orientation)
    assert abs(orientation) > 10  # a real turn, which the generating angle (0) misses
    assert t["transverse_angle_deg"] == pytest.approx(orientation, abs=0.05)
    assert t["sagittal_angle_deg"] == pytest.approx(0.0, abs=1e-9)
    assert t["coronal_angle_deg"] == pytest.approx(0.0, abs=1e-9)
    # a symmetric footprint keeps the generating axes (the round case included)
    assert _flat_disc().truth(step_mm=0.05)["transverse_angle_deg"] == pytest.approx(0, abs=1e-6)


def test_irregularity_is_seeded_and_bounded():
    rng = np.random.default_rng(3)
    outline, bumps = anatomy.irregularity(rng)
    again = anatomy.irregularity(np.random.default_rng(3))
    np.testing.assert_array_equal(outline, again[0])
    np.testing.assert_array_equal(bumps, again[1])
    assert outline.shape == (anatomy.OUTLINE_HARMONICS, 2) and bumps.shape == (anatomy.BUMPS, 4)
    assert np.abs(outline).sum() <= anatomy.OUTLINE_MAX + 1e-12
    wavelength = 1 / np.hypot(bumps[:, 0], bumps[:, 1])
    lo, hi = anatomy.BUMP_WAVELENGTH_MM
    assert ((wavelength >= lo) & (wavelength <= hi)).all()


@pytest.mark.parametrize(
    ("angles", "expected"),
    [
        ((10, 0, 0), (10, 0, 0)),
        ((0, -7, 0), (0, -7, 0)),
        ((0, 0, 5), (0, 0, 5)),
        ((-30, 0, 0), (-30, 0, 0)),
    ],
)
def test_angle_conventions(angles, expected):
    r = ph.rotation_matrix(*angles)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    got = ph.plane_angles(r)
    np.testing.assert_allclose(
        [got["sagittal_angle_deg"], got["coronal_angle_deg"], got["transverse_angle_deg"]],
        expected,
        atol=1e-9,
    )
    # positive sagittal angle: the anterior edge (-v) is superior
    if angles[0] > 0:
        assert (-r[:, 1])[2] > 0


def test_sites_cover_the_cohort():
    assert [anatomy._site_for(i, 4).name for i in range(4)] == ["A", "B", "C", "D"]
    counts = pd.Series([anatomy._site_for(i, 40).name for i in range(40)]).value_counts()
    assert counts.to_dict() == {"A": 12, "B": 10, "C": 10, "D": 8}


def test_read_truth_types_and_has_truth(phantom_dir, tmp_path):
    assert ph.has_truth(phantom_dir) and not ph.has_truth(tmp_path)
    from_folder = ph.read_truth(phantom_dir)
    from_file = ph.read_truth(phantom_dir / ph.TRUTH_FILE)
    pd.testing.assert_frame_equal(from_folder, from_file)
    assert from_folder["patient"].map(type).eq(str).all()
    assert from_folder["series"].map(type).eq(str).all()
    raw = pd.read_csv(phantom_dir / ph.TRUTH_FILE)
    np.testing.assert_array_equal(from_folder["volume_mm3"], raw["volume_mm3"])
    assert from_folder.loc[0, "patient"] == "1" and from_folder.loc[0, "series"] == "1_t1"


def test_truth_centroid_is_the_centre_of_mass_of_the_solid():
    """The truth's centroid columns: a wedge shifts the centre of mass anteriorly (v < 0)."""
    flat = _flat_disc(notch_depth=0.0, notch_halfwidth=1e-6).truth(step_mm=0.02)
    for axis in "xyz":
        assert flat[f"centroid_{axis}_mm"] == pytest.approx(0.0, abs=1e-3)
    wedged = _flat_disc(wedge=0.3, notch_depth=0.0, notch_halfwidth=1e-6).truth(step_mm=0.02)
    # thickness h0 (1 - w v / a) over an ellipse of AP semi-axis a: mean v = -w a / 4
    assert wedged["centroid_y_mm"] == pytest.approx(-0.3 * 16.0 / 4, rel=1e-3)  # v is +y
    assert wedged["centroid_x_mm"] == pytest.approx(0.0, abs=1e-3)


def test_pfirrmann_grade_is_a_noisy_reading_of_the_degeneration_state():
    """A continuous state drives composition; the grade reads it with noise, so that even a
    reader who knew the state exactly agrees with the grades at the published inter-rater
    level (quadratic-weighted kappa 0.7-0.85), not perfectly; and the narrowing severity
    (which drives disc height) and the state are related, as in real degeneration."""
    from sklearn.metrics import cohen_kappa_score

    discs = [d for i in range(120) for d in anatomy.make_patient(0, i, 120).discs]
    state = np.array([d.degeneration for d in discs])
    grade = np.array([d.pfirrmann for d in discs])
    assert state.min() >= 1 and state.max() <= 5 and state.std() > 0.6
    best = np.clip(np.rint(state), 1, 5).astype(int)
    kappa = cohen_kappa_score(best, grade, weights="quadratic")
    assert 0.7 < kappa < 0.85
    assert (best != grade).mean() > 0.25  # the grader disagrees with the truth on many discs
    r = np.corrcoef(state, [d.narrowing_severity for d in discs])[0, 1]
    assert 0.5 < r < 0.95
    # the composition it drives: hydration 1 at grade 1, 0.2 less per grade; nucleus shrinks
    assert anatomy.hydration(1.0) == 1.0 and anatomy.hydration(4.0) == pytest.approx(0.4)
    assert anatomy.nucleus_extent(1.0) == 0.65 and anatomy.nucleus_extent(5.0) == 0.33


def test_nucleus_signal_follows_the_degeneration_state_not_the_grade():
    """The rasterised nucleus weight peaks at hydration(state) in each disc's centre; a disc
    given a drier state at the same grade gets a weaker, smaller nucleus and the same mask."""
    import dataclasses

    from disclatent.data.phantom import raster

    spec = anatomy.make_patient(0, 0, 1)
    grid = raster.series_grid(spec, spec.site, np.random.default_rng(0))
    labels, (_, nucleus) = raster.rasterise(spec, grid)
    for d in spec.discs:
        peak = nucleus[labels == lab.disc_mask_label(d.ivd_label)].max()
        assert peak == pytest.approx(anatomy.hydration(d.degeneration), abs=0.05)
    d0 = spec.discs[0]
    drier = dataclasses.replace(d0, degeneration=min(5.0, d0.degeneration + 1.5))
    labels2, (_, nucleus2) = raster.rasterise(
        dataclasses.replace(spec, discs=[drier, *spec.discs[1:]]), grid
    )
    np.testing.assert_array_equal(labels2, labels)  # composition leaves the shape alone
    disc = labels == lab.disc_mask_label(d0.ivd_label)
    assert nucleus2[disc].max() < nucleus[disc].max() - 0.2
    assert (nucleus2[disc] > 0.05).sum() < (nucleus[disc] > 0.05).sum()
