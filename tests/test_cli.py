import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from disclatent.cli import main
from disclatent.data import volume as io


def spider_like_real_mask() -> io.Volume:
    """A mask with the geometry of a real SPIDER T1 series (``book/method.md``, *Data*).

    size (x, y, z) = 50 x 448 x 578, spacing 3.32 x 0.625 x 0.5 mm, identity direction;
    numpy order (z, y, x). Discs 201..205 stacked along z (superior-inferior).
    """
    arr = np.zeros((578, 448, 50), np.uint8)
    for k in range(1, 6):
        z0 = 60 + (k - 1) * 100  # L5/S1 lowest: z index grows superior
        arr[z0 : z0 + 12, 150:210, 18:31] = 200 + k
        arr[z0 + 14 : z0 + 80, 150:212, 17:32] = k  # vertebra k above disc k
    arr[:, 230:250, 22:28] = 100
    return io.Volume(arr, (3.32, 0.625, 0.5), (-80.0, -120.0, -150.0))


def test_inspect_reads_levels_of_a_spider_geometry_mask(tmp_path, capsys):
    io.write_image(spider_like_real_mask(), tmp_path / "1_t1.mha")
    assert main(["inspect", str(tmp_path / "1_t1.mha"), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["size"] == [50, 448, 578]
    assert report["spacing_mm"] == [3.32, 0.625, 0.5]
    assert report["orientation"] == "LPS"
    assert [d["level"] for d in report["discs"]] == ["L5/S1", "L4/L5", "L3/L4", "L2/L3", "L1/L2"]
    voxels = 12 * 60 * 13
    assert all(d["voxels"] == voxels for d in report["discs"])
    assert report["discs"][0]["volume_mm3"] == pytest.approx(voxels * 3.32 * 0.625 * 0.5, abs=0.1)
    assert "spinal canal" in report["structures"] and "vertebra L5" in report["structures"]


def test_inspect_folder_text_and_spider_root(phantom_dir, capsys):
    assert main(["inspect", str(phantom_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("orientation LPS") == 8  # 4 patients x (t1, t2)
    assert "L5/S1" in out and "mm3" in out


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "absent.mha")]) == 2
    assert "absent.mha" in capsys.readouterr().err
    (tmp_path / "bad.mha").write_bytes(b"ObjectType = Image\nNDims = 3\n")
    assert main(["inspect", str(tmp_path / "bad.mha")]) == 2
    err = capsys.readouterr().err
    assert "bad.mha" in err and "cannot read" in err
    (tmp_path / "empty").mkdir()
    assert main(["inspect", str(tmp_path / "empty")]) == 2
    assert "no mask files" in capsys.readouterr().err


def test_phantom_command_as_a_module(tmp_path):
    out = tmp_path / "ph"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "disclatent",
            "phantom",
            "--out",
            str(out),
            "--patients",
            "1",
            "--seed",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["1_t1.mha", "1_t2.mha"]
    assert (out / "phantom_truth.csv").read_text().count("\n") > 5


def test_geometry_command_reports_a_bad_series_and_resumes(
    phantom_dir, tmp_path, capsys, monkeypatch
):
    """A truncated mask in the middle of a cohort: named at the end (exit 1), the other
    series measured; a rerun reuses the per-series results; --scheduler reaches the steps."""
    import shutil

    from disclatent.parallel import SCHEDULER_ENV

    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("1_t1", "2_t1", "3_t1"):
        shutil.copy(phantom_dir / "masks" / f"{name}.mha", masks / f"{name}.mha")
    (masks / "2_t1.mha").write_bytes((masks / "2_t1.mha").read_bytes()[:3000])
    out = tmp_path / "geometry.csv"
    monkeypatch.setenv(SCHEDULER_ENV, "local")
    argv = ["--scheduler", "serial", "geometry", "--masks", str(masks), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 1
    assert sys.modules["os"].environ[SCHEDULER_ENV] == "serial"
    err = capsys.readouterr().err
    assert "1 series left out" in err and "2_t1.mha" in err
    table = pd.read_csv(out)
    assert sorted(table["series"].unique()) == ["1_t1", "3_t1"]
    cache = tmp_path / "geometry.csv.series"
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(stamps) == 3  # the bad one too: its error, under its bytes' key
    assert main([*argv, "--quiet"]) == 1
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
