import shutil

import pandas as pd
import pytest

from disclatent.data import spider
from disclatent.data.volume import DataError, MissingFileError

GRADINGS = """Patient,IVD label,Modic,UP endplate,LOW endplate,Spondylolisthesis,Disc herniation,Disc narrowing,Disc bulging,Pfirrman grade
1,1,0,0,0,0,0,1,1,4
1,0,0,0,0,0,0,0,0,2
1,2,0,0,0,0,0,0,1,3
2,1,1,0,1,0,1,1,1,5
2,6,0,0,0,0,0,0,0,2
"""
OVERVIEW = """new_file_name,num_vertebrae,num_discs,sex,subset,Manufacturer,PixelSpacing,SliceThickness,EchoTime,RepetitionTime,FlipAngle,MagneticFieldStrength
1_t1,6,6,F,training,SIEMENS,"[0.6, 0.6]",3.3,10,600,90,1.5
1_t2,6,6,F,training,SIEMENS,"[0.6, 0.6]",3.3,100,3500,90,1.5
1_t2_SPACE,6,6,F,training,SIEMENS,"[0.9, 0.9]",0.9,100,2000,120,1.5
2_t1,7,7,M,validation,Philips,"[0.5, 0.5]",4,10,600,90,3
"""


@pytest.fixture
def spider_dir(tmp_path):
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    for s in ("1_t1", "1_t2", "1_t2_SPACE", "2_t1"):
        (tmp_path / "masks" / f"{s}.mha").write_bytes(b"")
    (tmp_path / "radiological_gradings.csv").write_text(GRADINGS)
    (tmp_path / "overview.csv").write_text(OVERVIEW)
    return tmp_path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("12_t1", ("12", "t1")),
        ("12_t2", ("12", "t2")),
        ("12_t2_SPACE", ("12", "t2_SPACE")),
        ("12_T2_space", ("12", "t2_SPACE")),
        ("my_disc_mask", ("my_disc_mask", "")),
    ],
)
def test_parse_series(name, expected):
    assert spider.parse_series(name) == expected


def test_gradings_quirks(spider_dir):
    with pytest.warns(UserWarning, match=r"dropped 1 grading row\(s\) with IVD label 0"):
        g = spider.read_gradings(spider_dir / "radiological_gradings.csv")
    assert len(g) == 4
    assert g["ivd_label"].tolist() == [1, 2, 1, 6]
    assert g["level"].tolist() == ["L5/S1", "L4/L5", "L5/S1", "T12/L1"]
    assert g["pfirrmann_grade"].tolist() == [4, 3, 5, 2]  # "Pfirrman" (sic) read
    assert g["patient"].tolist() == ["1", "1", "2", "2"]


def test_gradings_accept_corrected_spelling(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text(GRADINGS.replace("Pfirrman grade", "Pfirrmann grade"))
    with pytest.warns(UserWarning):
        assert "pfirrmann_grade" in spider.read_gradings(path)


def test_gradings_errors_name_the_file(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text(GRADINGS + "1,1,0,0,0,0,0,0,0,1\n")
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"g\.csv.*duplicated"):
        spider.read_gradings(path)
    path.write_text("Patient,Level\n1,2\n")
    with pytest.raises(DataError, match=r"g\.csv.*'IVD label'"):
        spider.read_gradings(path)
    path.write_text("Patient,IVD label\n1,x\n")
    with pytest.raises(DataError, match=r"g\.csv.*integers"):
        spider.read_gradings(path)
    path.write_text("Patient,IVD label\n1,40\n")
    with pytest.raises(DataError, match=r"g\.csv.*40"):
        spider.read_gradings(path)
    with pytest.raises(MissingFileError, match="missing.csv"):
        spider.read_gradings(tmp_path / "missing.csv")


def test_disc_table_joins_every_series_of_a_patient(spider_dir):
    with pytest.warns(UserWarning):
        t1 = spider.disc_table(spider_dir)
    assert list(t1.columns[:4]) == ["patient", "series", "ivd_label", "level"]
    assert t1[["series", "ivd_label"]].values.tolist() == [
        ["1_t1", 1],
        ["1_t1", 2],
        ["2_t1", 1],
        ["2_t1", 6],
    ]
    with pytest.warns(UserWarning):
        every = spider.disc_table(spider_dir, modalities=None)
    # patient 1 has three series x two graded discs; patient 2 one series x two discs
    assert len(every) == 8
    assert set(every.loc[every.patient == "1", "modality"]) == {"t1", "t2", "t2_SPACE"}
    assert every.groupby("series").size().to_dict() == {
        "1_t1": 2,
        "1_t2": 2,
        "1_t2_SPACE": 2,
        "2_t1": 2,
    }


def test_series_without_mask_dropped(spider_dir):
    (spider_dir / "masks" / "2_t1.mha").unlink()
    with pytest.warns(UserWarning):
        t = spider.disc_table(spider_dir)
    assert set(t["series"]) == {"1_t1"}


def test_not_a_spider_folder(tmp_path):
    with pytest.raises(DataError, match="not a SPIDER-format folder"):
        spider.SpiderFolder(tmp_path).series()
    with pytest.raises(MissingFileError):
        spider.SpiderFolder(tmp_path / "nope").check()


def test_summaries(spider_dir):
    with pytest.warns(UserWarning):
        t = spider.disc_table(spider_dir)
    s = spider.cohort_summary(t, by="Manufacturer")
    assert s.loc["all", "discs"] == 4
    assert s.loc["all", "disc_narrowing (%)"] == pytest.approx(50.0)
    p = spider.prevalence_by_level(t)
    assert p.loc["L5/S1", "discs"] == 2
    assert p.loc["L5/S1", "disc_narrowing (%)"] == 100.0


def test_phantom_reads_as_spider(phantom_dir, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(phantom_dir, root)
    with pytest.warns(UserWarning, match="IVD label 0"):
        t = spider.disc_table(root)
    truth = pd.read_csv(root / "phantom_truth.csv", dtype={"patient": str})
    truth_t1 = truth[truth.series.str.endswith("_t1")]
    assert sorted(map(tuple, t[["series", "ivd_label"]].values.tolist())) == sorted(
        map(tuple, truth_t1[["series", "ivd_label"]].values.tolist())
    )


def test_site_column_and_t1_rows(spider_dir):
    overview = spider.read_overview(spider_dir / "overview.csv")
    assert spider.site_column(overview) == "Manufacturer"
    assert spider.site_column(overview.assign(institution="A")) == "institution"
    t1 = spider.t1_rows(overview)
    assert t1["series"].tolist() == ["1_t1", "2_t1"]
    own = pd.DataFrame({"series": ["case_a", "case_b"]})  # not SPIDER names: kept whole
    pd.testing.assert_frame_equal(spider.t1_rows(own), own)


def test_acquisition_summary_per_site_and_modality(spider_dir):
    from disclatent.data.survey import acquisition_summary, header_table

    overview = spider.read_overview(spider_dir / "overview.csv")

    def report(series, spacing, n_discs):
        return {"series": series, "orientation": "LPS", "spacing_mm": spacing, "n_discs": n_discs}

    reports = [
        report("1_t1", [3.3, 0.6, 0.6], 6),
        report("1_t2", [3.3, 0.6, 0.62], 5),
        report("2_t1", [4.0, 0.5, 0.5], 7),
        report("9_t1", [2.0, 0.5, 0.5], 3),  # not in overview.csv: no site, left out
    ]
    assert header_table(reports)["spacing k (mm)"].tolist() == [0.6, 0.62, 0.5, 0.5]
    acq = acquisition_summary(reports, overview, "Manufacturer")
    assert acq.index.tolist() == [("Philips", "t1"), ("SIEMENS", "t1"), ("SIEMENS", "t2")]
    assert acq.loc[("SIEMENS", "t2")].to_dict() == {
        "series": 1,
        "orientation": "LPS",
        "slice_mm": 3.3,
        "ap_pixel_mm": 0.6,
        "si_pixel_mm": 0.62,
        "discs_min": 5,
        "discs_max": 5,
    }
    assert acq.loc[("Philips", "t1"), "slice_mm"] == 4.0
