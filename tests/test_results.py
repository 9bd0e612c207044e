import json

import numpy as np
import pandas as pd
import pytest

from disclatent.report import results
from disclatent.stats import correlation_table


def test_missing_tables_give_none_not_numbers(tmp_path):
    numbers = results.headline_numbers(tmp_path)
    assert numbers["seg_dsc"] is None and numbers["ae_k4_iou"] is None
    assert numbers["pred_gt_narrowing_latent_auc"] is None
    table = results.comparison_table(numbers)
    assert (table["this study"] == "n/a").all()
    assert table.loc[0, "paper"] == "0.90"


def test_numbers_are_read_from_the_tables(tmp_path):
    pd.DataFrame(
        {
            "model": ["UNet", "SegResNet", "SwinUNETR-V2 (paper)"],
            "DSC": [0.91, 0.88, 0.90],
            "DSC low": [0.9, 0.87, 0.89],
            "DSC high": [0.92, 0.89, 0.91],
            "IoU": [0.84, 0.8, 0.82],
            "training (min)": [5.0, 6.0, None],
            "inference (s/series)": [2.0, 3.0, None],
        }
    ).to_csv(tmp_path / "supplementary_table_1_segmentation.csv", index=False)
    pd.DataFrame(
        {
            "latent_dim": [8, 4],
            "converged": [True, False],
            "epochs_to_converge": [40, np.nan],
            "epochs_run": [40, 100],
            "train_iou": [0.996, 0.993],
            "heldout_iou": [0.97, 0.96],
            "pca_heldout_iou": [0.9, 0.88],
        }
    ).to_csv(tmp_path / "autoencoder_sweep_raw.csv", index=False)
    pd.DataFrame(
        {
            "source": ["gt"],
            "target": ["disc_narrowing"],
            "features": ["latent"],
            "protocol": ["grouped"],
            "auc": [0.71],
            "f1": [0.6],
        }
    ).to_csv(tmp_path / "prediction_results.csv", index=False)
    rng = np.random.default_rng(0)
    z = pd.DataFrame(rng.normal(size=(50, 2)), columns=["latent_0", "latent_1"])
    g = pd.DataFrame({"ap_width_mm": -z["latent_1"] + 0.1 * rng.normal(size=50)})
    correlation_table(z, g).to_csv(tmp_path / "latent_geometry_correlation.csv", index=False)
    correlation_table(z, z).to_csv(tmp_path / "latent_latent_correlation.csv", index=False)
    n = results.headline_numbers(tmp_path)
    assert (n["seg_model"], n["seg_dsc"], n["seg_minutes"]) == ("UNet", 0.91, 5.0)
    assert n["ae_k4_iou"] == 0.993 and n["ae_k4_converged"] == "no" and n["ae_k4_epochs"] == 100
    assert n["pred_gt_narrowing_latent_auc"] == 0.71
    assert n["pred_gt_narrowing_geometric_auc"] is None
    assert n["interp_max_pair"] == "latent_1 and ap_width_mm" and n["interp_max_abs_r"] > 0.99
    assert n["latent_latent_max_r"] == pytest.approx(abs(np.corrcoef(z.latent_0, z.latent_1)[0, 1]))


def test_the_baseline_verdict_is_read_from_the_baselines_table(tmp_path):
    from disclatent.analysis import baselines as bl

    assert results.headline_numbers(tmp_path)["pred_gt_baseline_verdict"] is None
    row = {"source": "gt", "target": "disc_narrowing", "best_baseline": "height + level"}
    nan = dict.fromkeys(bl.DELTA_COLUMNS, np.nan)
    ci = {"f1": 0.5, "f1_lo": 0.4, "f1_hi": 0.6}
    pd.DataFrame(
        [
            {**row, **ci, **nan, "features": "height + level", "role": "baseline",
             "auc": 0.83, "auc_lo": 0.78, "auc_hi": 0.88},
            {**row, **ci, "features": "latent", "role": "paper set", "auc": 0.69,
             "auc_lo": 0.62, "auc_hi": 0.76, "delta_auc": -0.145, "delta_auc_lo": -0.213,
             "delta_auc_hi": -0.072, "p_bootstrap": 0.001, "p_corrected_t": 0.0004},
            {**row, **ci, **nan, "source": "pred", "features": "latent", "auc": 0.9},
        ]
    ).reindex(columns=bl.BASELINE_COLUMNS).to_csv(
        tmp_path / "prediction_baselines.csv", index=False
    )  # fmt: skip
    n = results.headline_numbers(tmp_path)
    assert (n["pred_gt_narrowing_baseline"], n["pred_gt_narrowing_baseline_auc"]) == (
        "height + level", 0.83
    )  # fmt: skip
    assert n["pred_gt_baseline_verdict"] == (
        "From ground-truth masks. Narrowing: the best baseline is height + level, AUC 0.83 "
        "(0.78-0.88). Against it, latent, AUC 0.69 (0.62-0.76), is worse than it (difference "
        "-0.145 (95 % CI -0.213 to -0.072); p = 0.001 by the patient bootstrap, p < 0.001 by "
        "the corrected t-test)."
    )
    table = results.comparison_table(n).set_index("quantity")["this study"]
    assert table["narrowing AUC, best baseline without latent features (GT masks)"] == (
        "0.83 (height + level)"
    )


def test_timings_and_hardware(tmp_path, monkeypatch):
    import os

    import torch

    nb = {
        "metadata": {"disclatent": {"seconds": 12.5}},
        "cells": [],
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "00_data.ipynb").write_text(json.dumps(nb))
    (tmp_path / "01_x.ipynb").write_text(json.dumps({**nb, "metadata": {}}))
    t = results.notebook_timings(tmp_path)
    assert t.to_dict("records")[0] == {"notebook": "00_data", "seconds": 12.5}
    assert t["notebook"].tolist() == ["00_data", "01_x"] and pd.isna(t.loc[1, "seconds"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    hw = results.hardware()
    assert hw["cores"] == str(os.cpu_count()) and hw["gpu"] == "none"
    assert hw["torch"] == torch.__version__ and hw["python"].count(".") == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Test GPU 9000")
    assert results.hardware()["gpu"] == "Test GPU 9000"


def test_glue_texts_keep_their_digits():
    import ast

    text = results.GlueText("0.90")
    assert ast.literal_eval(repr(text)) == "0.90"  # myst-nb reads it back as written
    numbers = {
        "seg_dsc": 0.9012,
        "seg_minutes": 5.04,
        "ae_k4_iou": 0.99871,
        "ae_k4_epochs": 40.0,
        "ae_k4_converged": "yes",
        "geo_err_height_mm": 0.12345,
        "pred_gt_narrowing_latent_auc": None,
    }
    texts = {k: v.text for k, v in results.headline_texts(numbers, paper={}).items()}
    assert texts == {
        "seg_dsc": "0.90",
        "seg_minutes": "5.0",
        "ae_k4_iou": "0.9987",
        "ae_k4_epochs": "40",
        "ae_k4_converged": "yes",
        "geo_err_height_mm": "0.123",
        "pred_gt_narrowing_latent_auc": "n/a",
    }
    paper = {k: v.text for k, v in results.headline_texts({}).items()}
    assert set(paper) == {f"paper_{k}" for k in results.PAPER}
    assert paper["paper_ae_k4_iou"] == f"{results.PAPER['ae_k4_iou']:.4f}"
    assert paper["paper_ae_k4_epochs"] == str(results.PAPER["ae_k4_epochs"])
    assert paper["paper_pred_gt_narrowing_latent_auc"] == "0.75"
    assert paper["paper_gpu"] == results.PAPER["gpu"]


def test_geometry_and_protocol_numbers(tmp_path):
    pd.DataFrame({"feature": ["height_mm", "volume_mm3"], "median_abs_error": [0.2, 3.5]}).to_csv(
        tmp_path / "geometry_errors_vs_truth.csv", index=False
    )
    pd.DataFrame(
        {
            "target": ["disc_narrowing"] * 3 + ["disc_bulging"],
            "features": ["latent"] * 4,
            "protocol": ["paper", "grouped", "grouped, AE in fold", "paper"],
            "auc": [0.9, 0.7, 0.6, 0.1],
        }
    ).to_csv(tmp_path / "leakage_protocols.csv", index=False)
    n = results.headline_numbers(tmp_path)
    assert (n["geo_err_height_mm"], n["geo_err_volume_mm3"], n["geo_err_ap_width_mm"]) == (
        0.2,
        3.5,
        None,
    )
    assert (n["leak_latent_auc_paper"], n["leak_latent_auc_grouped"]) == (0.9, 0.7)
    assert n["leak_latent_auc_infold"] == 0.6
    assert n["seg_model"] is None and n["interp_max_pair"] is None


def test_stability_and_plausibility_numbers_are_read_from_their_tables(tmp_path):
    pd.DataFrame(
        {
            "seed_a": [0, 0, 1],
            "seed_b": [1, 2, 2],
            "cka": [0.9, 0.5, 0.7],
            "procrustes_r2": [0.8, 0.4, 0.6],
        }
    ).to_csv(tmp_path / "latent_stability.csv", index=False)
    pd.DataFrame(
        {
            "seed": [0, 0, 1, 1, 2, 2],
            "component": [1, 2] * 3,
            "canonical_r": [0.95, 0.5, 0.9, 0.4, 0.97, 0.3],
            "null_r_95": [0.3, 0.2] * 3,
            "above_null": [True, True] * 3,
        }
    ).to_csv(tmp_path / "latent_geometry_cca.csv", index=False)
    claim = "latent 2 ~ ap_width_mm (paper r = -0.80)"
    pd.DataFrame(
        {
            "seed": [0, 1, 2],
            "claim": [claim] * 3,
            "value": [-0.8, 0.1, -0.6],
            "holds": [True, False, True],
        }
    ).to_csv(tmp_path / "latent_claims_by_seed.csv", index=False)
    rows = [
        ("k4-seed0", "plain", 0, "sweep grid", 0.5, 0.70),
        ("k4-seed1", "plain", 1, "sweep grid", 0.7, 0.72),
        ("k4-seed0", "plain", 0, "cohort distribution", 0.8, 0.70),
        ("k4-seed1", "plain", 1, "cohort distribution", 0.2, 0.72),
        ("k4-noise-seed0", "latent noise", 0, "sweep grid", 0.9, 0.75),
        ("k4-noise-seed0", "latent noise", 0, "cohort distribution", 1.0, 0.75),
    ]
    cols = ["model", "kind", "seed", "sample", "plausible_share", "heldout_iou"]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "latent_plausibility.csv", index=False)
    n = results.headline_numbers(tmp_path)
    assert n["stab_seeds"] == 3 and n["stab_cka_median"] == 0.7 and n["stab_cka_min"] == 0.5
    assert n["stab_r2_median"] == 0.6 and (n["stab_cca1_min"], n["stab_cca1_max"]) == (0.9, 0.97)
    assert n["stab_claims"] == f"{claim}: 2 of 3 seeds"
    assert "hold in some seeds only: " + claim in n["stab_verdict"]
    assert "above it in 3 of 3 seeds" in n["stab_verdict"]
    # the plain decoder of the noise model's seed (0), not the mean over all plain seeds
    assert n["plaus_plain_sweep"] == 0.5 and n["plaus_plain_cohort"] == 0.8
    assert n["plaus_plain_heldout_iou"] == 0.70
    assert n["plaus_noise_sweep"] == 0.9 and n["plaus_noise_heldout_iou"] == 0.75
    table = results.comparison_table(n).set_index("quantity")["this study"]
    assert table["CKA of retrained latent spaces, median (min)"] == "0.70 (0.50)"


def test_scaling_record_is_shown_or_its_absence_said(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from disclatent.report.scaling import (
        projection_table,
        read_scale_run,
        scale_figure,
        scale_table,
        scale_text,
    )

    assert read_scale_run(tmp_path / "none.json") is None
    assert "has not been recorded yet" in scale_text(None)

    def run(step, scheduler, workers, rate):
        rss = {"process": 600, "largest_worker": 0 if scheduler == "serial" else 300}
        return {"step": step, "scheduler": scheduler, "workers": workers, "series": 40,
                "discs": 280, "wall_s": 40 / rate, "series_per_s": rate,
                "discs_per_s": 7 * rate, "peak_rss_mb": rss}  # fmt: skip

    record = {
        "machine": "x86_64, 2 cores",
        "cohort": "rehearsal, 20 patients",
        "command": "python benchmarks/bench_scale.py --patients 20 --workers 1 2",
        "runs": [
            run("geometry", "serial", 1, 4.0),
            run("geometry", "local", 1, 3.0),
            run("geometry", "local", 2, 6.0),
        ],  # fmt: skip
        "projected_hours_30000_spines": {
            "total": {"2": 1.39, "16": 0.17},
            "geometry": {"2": 1.39, "16": 0.17},
        },
    }
    path = tmp_path / "scale.json"
    path.write_text(json.dumps(record))
    got = read_scale_run(path)
    table = scale_table(got)
    assert table["run"].tolist() == ["serial", "1 worker(s)", "2 worker(s)"]
    assert table["vs serial"].tolist() == [1.0, 0.75, 1.5]  # 3/4 and 6/4, by hand
    assert table["peak MB (largest worker)"].tolist()[1:] == [300, 300]
    proj = projection_table(got)
    assert proj.loc["geometry", "16 workers (h)"] == 0.17
    assert "0.2 h on 16 workers" in scale_text(got) and "1.4 h on 2" in scale_text(got)
    assert len(scale_figure(got).axes[0].patches) == 3
    path.write_text(json.dumps({"machine": "x"}))
    with pytest.raises(ValueError, match="missing cohort, projected_hours_30000_spines, runs"):
        read_scale_run(path)


def test_book_cost_record_is_shown_per_cohort_with_resumed_chapters_marked(tmp_path):
    import sys

    from disclatent.paths import project_root
    from disclatent.report.scaling import book_cost_table, book_cost_text, read_book_runs

    sys.path.insert(0, str(project_root() / "benchmarks"))
    from bench_book import parse_chapters, unfinished_chapter

    assert read_book_runs(tmp_path / "none.json") is None
    assert "has not been recorded yet" in book_cost_text(None)
    lines = ["00_data: up to date", "01_segmentation: executed in 225.8 s", "noise", "book: x"]
    seconds, reused = parse_chapters(lines)
    assert seconds == {"01_segmentation": 225.8} and reused == ["00_data"]
    assert unfinished_chapter(lines) is None
    stopped = [*lines, "02_geometry: executing (default profile) ...", "[kernel] noise"]
    assert unfinished_chapter(stopped) == "02_geometry"

    def run(patients, series, wall, chapters, reused=(), rc=0):
        return {"profile": "default", "patients": patients, "series": series, "discs": 7 * series,
                "returncode": rc, "complete": rc == 0 and not reused, "wall_s": wall,
                "chapters_s": chapters, "reused_chapters": list(reused),
                "peak_tree_rss_mb": 512 * patients / 10, "peak_largest_process_rss_mb": 1024,
                "machine": "x86_64, 2 cores"}  # fmt: skip

    record = {
        "runs": [
            run(40, 80, 600.0, {"00_data": 10.0, "01_segmentation": 590.0}),
            run(200, 400, 2400.0, {"01_segmentation": 2390.0}, reused=["00_data"]),
        ]
    }
    path = tmp_path / "book_cohorts.json"
    path.write_text(json.dumps(record))
    table = book_cost_table(read_book_runs(path))
    assert list(table.columns) == [
        "40 patients (80 series, 560 discs)",
        "200 patients (400 series, 2800 discs)",
    ]
    assert table.loc["00_data"].tolist() == [10.0, "reused"]
    assert table.loc["whole book (min)"].tolist() == [10.0, 40.0]
    assert table.loc["peak memory, all processes (GB)"].tolist() == [2.0, 10.0]  # 2048/1024
    text = book_cost_text(read_book_runs(path))
    assert "2.0 GB at 40 patients, 10.0 GB at 200 patients" in text
    assert "grew" not in text  # the resumed run is not a whole one: no growth claimed
    record["runs"][1] = run(200, 400, 2400.0, {"00_data": 30.0, "01_segmentation": 2370.0})
    path.write_text(json.dumps(record))
    assert "wall time grew 4.0-fold for 5.0 times the series" in book_cost_text(
        read_book_runs(path)
    )
    assert book_cost_table(read_book_runs(path), "paper").empty
    # a run stopped in its third chapter: the chapters it finished grow, the rest are marked
    record["runs"][1] = run(200, 400, 2400.0, {"00_data": 30.0, "01_segmentation": 1770.0})
    record["runs"][1] |= {"unfinished_chapter": "02_geometry", "returncode": -15}
    record["runs"][1]["complete"] = False
    path.write_text(json.dumps(record))
    table = book_cost_table(read_book_runs(path))
    assert table.loc["02_geometry"].tolist() == ["-", "stopped"]
    assert table.loc["finished"].tolist() == ["yes", "no (exit -15)"]
    text = book_cost_text(read_book_runs(path))
    assert "grew" not in text and "stopped while executing 02_geometry" in text
    assert "3.0 times as long (00_data), 3.0 times as long (01_segmentation)" in text
