"""The rehearsal cohort (phantom --like-spider) and the data layer on SPIDER's real metadata."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pandas as pd
import pytest

from disclatent.cli import main
from disclatent.data import spider
from disclatent.data.phantom import anatomy
from disclatent.data.phantom import rehearsal as rh
from disclatent.data.volume import read_mask
from disclatent.discs.features import measure_masks
from disclatent.discs.isolation import find_discs

OVERVIEW = rh.metadata_path("overview.csv")
GRADINGS = rh.metadata_path("radiological_gradings.csv")


def test_shipped_metadata_are_spiders_own(spider_shared):
    for name in ("overview.csv", "radiological_gradings.csv"):
        assert rh.metadata_path(name).read_bytes() == (spider_shared / name).read_bytes()


def test_every_real_series_is_parsed():
    ov = spider.read_overview(OVERVIEW)
    assert len(ov) == 447 and ov["patient"].nunique() == 218
    assert ov["modality"].value_counts().to_dict() == {"t2": 210, "t1": 196, "t2_SPACE": 41}
    spacing = ov["PixelSpacing"].map(spider.parse_pixel_spacing)
    assert all(0.2 < a <= 1.1 and a == b for a, b in spacing)  # ".46875" too
    assert ov.loc[ov["series"] == "1_t1", "PixelSpacing"].item() == "[0.625, 0.625]"
    assert ov["num_discs"].between(3, 9).all()
    with pytest.raises(spider.DataError, match="PixelSpacing"):
        spider.parse_pixel_spacing("0.625")


def test_real_gradings_and_their_join_to_every_series(tmp_path):
    with pytest.warns(UserWarning, match="dropped 2 grading row"):
        g = spider.read_gradings(GRADINGS)
    assert len(g) == 1518 and g["patient"].nunique() == 218
    assert g["pfirrmann_grade"].between(1, 5).all()
    (tmp_path / "masks").mkdir()
    shutil.copy(OVERVIEW, tmp_path / "overview.csv")
    shutil.copy(GRADINGS, tmp_path / "radiological_gradings.csv")
    with open(OVERVIEW, newline="") as fh:
        series = [row["new_file_name"] for row in csv.DictReader(fh)]
    for s in series:
        (tmp_path / "masks" / f"{s}.mha").touch()
    with pytest.warns(UserWarning, match="IVD label 0"):
        table = spider.disc_table(tmp_path, modalities=None)
    # independently: every series gets every graded disc (label >= 1) of its patient
    with open(GRADINGS, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["IVD label"]) >= 1]
    per_patient = pd.Series([r["Patient"] for r in rows]).value_counts()
    expected = sum(per_patient[s.split("_", 1)[0]] for s in series)
    assert len(table) == expected and table["series"].nunique() == 447
    t2s = table[table["series"] == "1_t2_SPACE"] if "1_t2_SPACE" in series else table.iloc[:0]
    assert t2s.empty or (t2s["modality"] == "t2_SPACE").all()
    assert not table.duplicated(["series", "ivd_label"]).any()


def test_rehearsal_calibration_matches_real_disc_sizes():
    """The generating truth, per level, against the medians measured on real SPIDER masks."""
    levels = rh.rehearsal_levels()
    rows = []
    for index in range(40):
        rng = np.random.default_rng([0, index, 1])
        spec = anatomy.build_patient(rng, 0, index, str(index), anatomy.SITES[0], 5, levels)
        rows += [{"level": d.level, **d.truth(step_mm=0.25)} for d in spec.discs]
    med = pd.DataFrame(rows).groupby("level").median()
    real = rh.REAL_MEDIANS.set_index("level")
    ratio = med.loc[real.index, real.columns] / real
    widths = ratio[["height_mm", "ap_width_mm", "lateral_width_mm"]]
    assert ((widths > 0.94) & (widths < 1.06)).all().all(), ratio
    # volume follows from the widths, the height and the footprint's shape: within 10 %
    assert ratio["volume_mm3"].between(0.9, 1.1).all(), ratio
    # the default phantom is smaller, as the issue measured: the rehearsal changes that
    assert levels.ap_depth_mm[:5].min() > anatomy.AP_DEPTH_MM[:5].max()
    assert len(levels) == 9 and levels.narrowing_prevalence[0] == pytest.approx(0.58, abs=0.01)


def test_rehearsal_given_grades_are_honoured_in_the_generating_chain():
    levels = rh.rehearsal_levels()
    grades = {k: anatomy.Grades(narrowing=1, bulging=0, pfirrmann=4) for k in range(1, 6)}
    healthy = {k: anatomy.Grades(narrowing=0, bulging=1, pfirrmann=2) for k in range(1, 6)}
    sev = {}
    for name, given in (("narrowed", grades), ("healthy", healthy)):
        out = []
        for index in range(30):
            rng = np.random.default_rng([1, index, 1])
            spec = anatomy.build_patient(rng, 1, index, "p", anatomy.SITES[0], 5, levels, given)
            out += [(d.narrowing_severity, d.bulge_severity, d.pfirrmann) for d in spec.discs]
        sev[name] = np.array(out)
    assert (sev["narrowed"][:, 2] == 4).all() and (sev["healthy"][:, 2] == 2).all()
    assert sev["narrowed"][:, 0].mean() > sev["healthy"][:, 0].mean() + 0.4
    assert sev["narrowed"][:, 1].mean() < sev["healthy"][:, 1].mean() - 0.4
    # not perfectly separable: the grader is noisy
    assert sev["narrowed"][:, 0].min() < sev["healthy"][:, 0].max()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal") / "cohort"
    assert main(["phantom", "--like-spider", "--patients", "3", "--out", str(out), "--quiet"]) == 0
    return out


def test_rehearsal_cohort_has_spiders_structure(rehearsal):
    first3 = rh.spider_patients()[:3]
    with open(OVERVIEW, newline="") as fh:
        real = [r for r in csv.reader(fh)]
    mine = list(csv.reader(open(rehearsal / "overview.csv", newline="")))
    assert mine[0] == real[0]  # all of SPIDER's columns
    assert mine[1:] == [r for r in real[1:] if r[0].split("_", 1)[0] in first3]
    masks = sorted(p.stem for p in (rehearsal / "masks").iterdir())
    assert masks == sorted(r[0] for r in mine[1:])
    assert sorted(p.stem for p in (rehearsal / "images").iterdir()) == masks
    ov = spider.read_overview(rehearsal / "overview.csv")
    for row in ov.itertuples():
        mask = read_mask(rehearsal / "masks" / f"{row.series}.mha")
        found = find_discs(mask, warn=False)  # numbering checked against the header
        assert len(found) == row.num_discs
        assert [d.ivd_label for d in found] == list(range(1, row.num_discs + 1))
        sx = (
            row.SpacingBetweenSlices
            if row.SpacingBetweenSlices == row.SpacingBetweenSlices
            else row.SliceThickness
        )
        sy, sz = spider.parse_pixel_spacing(row.PixelSpacing)
        np.testing.assert_allclose(mask.spacing, (sx, sy, sz), rtol=1e-4)
    g = pd.read_csv(rehearsal / "radiological_gradings.csv")
    real_g = pd.read_csv(GRADINGS)
    pd.testing.assert_frame_equal(
        g.reset_index(drop=True),
        real_g[real_g["Patient"].astype(str).isin(first3)].reset_index(drop=True),
    )
    truth = pd.read_csv(rehearsal / "phantom_truth.csv", dtype={"patient": str})
    assert len(truth) == ov["num_discs"].sum()
    # the truth's grades are the real ones
    t = truth.merge(
        g.rename(columns={"Patient": "patient", "IVD label": "ivd_label"}).astype({"patient": str}),
        on=["patient", "ivd_label"],
    )
    assert (t["pfirrmann_grade"] == t["Pfirrman grade"]).all()


def test_rehearsal_discs_measure_like_real_ones(rehearsal):
    measured = measure_masks(rehearsal, modalities=None, progress=False)
    lumbar = measured[measured["level"].isin(rh.REAL_MEDIANS["level"])]
    real = rh.REAL_MEDIANS.set_index("level")
    ratio = lumbar.merge(real, left_on="level", right_index=True, suffixes=("", "_real"))
    for col in ("height_mm", "ap_width_mm", "lateral_width_mm", "volume_mm3"):
        r = np.median(ratio[col] / ratio[f"{col}_real"])
        assert 0.85 < r < 1.15, (col, r)


def test_rehearsal_resumes(rehearsal):
    stamps = {p: p.stat().st_mtime_ns for p in (rehearsal / "masks").iterdir()}
    rh.write_rehearsal(rehearsal, n_patients=3, workers=1)
    assert {p: p.stat().st_mtime_ns for p in (rehearsal / "masks").iterdir()} == stamps
