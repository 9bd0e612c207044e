"""The cohort's data report (disclatent.discs.audit): every bad series named once, with its
file and what the study does with it; the good series described; a rerun reads nothing new."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from disclatent.data import labels as lab
from disclatent.data.spider import SpiderFolder
from disclatent.data.survey import inspect_mask
from disclatent.data.volume import read_image, read_mask, write_image
from disclatent.discs.audit import PROBLEMS, audit_cohort, format_problems

REVERSED_DISCS = {200 + k: 200 + 25 - k for k in range(1, 8)}
REVERSED_VERTEBRAE = {k: 25 - k for k in range(1, 8)}


def _relabel(vol, mapping):
    arr, out = vol.array, vol.array.copy()
    for old, new in mapping.items():
        out[arr == old] = new
    return vol.with_array(out)


@pytest.fixture
def bad_cohort(phantom_dir, tmp_path):
    """The 4-patient phantom with one series broken in each way the report names."""
    root = tmp_path / "cohort"
    shutil.copytree(phantom_dir, root)
    folder = SpiderFolder(root)
    names = set(folder.series(modalities=None))
    assert {"1_t1", "1_t2", "2_t1", "2_t2", "3_t1", "3_t2", "4_t1", "4_t2"} <= names
    # a truncated mask in the middle of the cohort
    raw = folder.mask_path("2_t1").read_bytes()
    folder.mask_path("2_t1").write_bytes(raw[: len(raw) // 2])
    # a mask whose disc labels are gone
    m = read_mask(folder.mask_path("3_t2"))
    write_image(m.with_array(np.where(lab_is_disc(m.array), 0, m.array)), folder.mask_path("3_t2"))
    # an image written on another grid than its mask
    img = read_image(folder.image_path("4_t1"))
    wider = dataclasses.replace(img, spacing=tuple(s * 1.1 for s in img.spacing))
    write_image(wider, folder.image_path("4_t1"))
    # discs numbered from the other end, confirmed by the vertebrae: kept, renamed
    m = read_mask(folder.mask_path("1_t2"))
    off = lab.PARTIAL_VERTEBRA_OFFSET
    vert = {**REVERSED_VERTEBRAE, **{k + off: v + off for k, v in REVERSED_VERTEBRAE.items()}}
    write_image(_relabel(m, {**REVERSED_DISCS, **vert}), folder.mask_path("1_t2"))
    # discs out of order that nothing confirms: left out
    m = read_mask(folder.mask_path("4_t2"))
    write_image(_relabel(m, {201: 202, 202: 201}), folder.mask_path("4_t2"))
    # an image that is not there
    folder.image_path("3_t1").unlink()
    return root


def lab_is_disc(arr: np.ndarray) -> np.ndarray:
    return (arr > lab.DISC_LABEL_OFFSET) & (arr <= lab.DISC_LABEL_OFFSET + lab.MAX_INDEX)


EXPECTED = [
    ("1_t2", "renumbered"),
    ("2_t1", "mask unreadable"),
    ("3_t1", "image missing"),
    ("3_t2", "no discs"),
    ("4_t1", "grid mismatch"),
    ("4_t2", "disc numbering"),
]


def test_every_bad_series_is_named_with_its_file_and_the_rest_described(bad_cohort, tmp_path):
    audit = audit_cohort(bad_cohort, tmp_path / "cache", scheduler="serial", progress=False)
    folder = SpiderFolder(bad_cohort)
    got = sorted(zip(audit.problems["series"], audit.problems["problem"], strict=True))
    assert got == EXPECTED
    assert audit.n_series == len(folder.series(modalities=None))
    rows = audit.problems.set_index("series")
    assert rows.loc["2_t1", "file"] == str(folder.mask_path("2_t1"))
    assert rows.loc["4_t1", "file"] == str(folder.mask_path("4_t1"))
    assert "image size" in rows.loc["4_t1", "detail"]
    assert "224" in rows.loc["1_t2", "detail"] and "L5/S1" in rows.loc["1_t2", "detail"]
    assert (rows["effect"] == rows["problem"].map(PROBLEMS)).all()
    # every readable mask is described, as inspect_mask describes it; the broken one is not
    described = [r["series"] for r in audit.reports]
    assert "2_t1" not in described and len(described) == audit.n_series - 1
    one = next(r for r in audit.reports if r["series"] == "1_t1")
    assert one == inspect_mask(folder.mask_path("1_t1"))
    assert next(r for r in audit.reports if r["series"] == "3_t2")["n_discs"] == 0
    text = format_problems(audit.problems, audit.n_series)
    assert text.startswith(f"data: 6 of {audit.n_series} series with problems")
    for series, problem in EXPECTED:
        assert f"  {series}: {problem} (" in text
    assert str(folder.mask_path("2_t1")) in text


def test_a_rerun_reads_only_what_changed(bad_cohort, tmp_path):
    cache = tmp_path / "cache"
    first = audit_cohort(bad_cohort, cache, scheduler="serial", progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    folder = SpiderFolder(bad_cohort)
    shutil.copy(folder.image_path("3_t2"), folder.images_dir / "3_t1.mha")  # wrong, but there
    again = audit_cohort(bad_cohort, cache, scheduler="serial", progress=False)
    new = {p.name for p in cache.iterdir()} - set(stamps)
    assert len(new) == 1 and next(iter(new)).startswith("3_t1-")
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in cache.iterdir() if p.name in stamps)
    assert "image missing" not in set(again.problems["problem"])
    assert len(again.problems) == len(first.problems)  # 3_t1: now a grid mismatch


def test_a_clean_cohort_has_no_problem(phantom_dir, tmp_path):
    audit = audit_cohort(phantom_dir, tmp_path / "cache", scheduler="serial", progress=False)
    assert audit.problems.empty and audit.bad_series == []
    assert format_problems(audit.problems, audit.n_series) == (
        f"data: no problem found in the {audit.n_series} series"
    )
