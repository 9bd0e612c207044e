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


def test_timings_and_hardware(tmp_path):
    nb = {
        "metadata": {"disclatent": {"seconds": 12.5}},
        "cells": [],
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "00_data.ipynb").write_text(json.dumps(nb))
    t = results.notebook_timings(tmp_path)
    assert t.to_dict("records") == [{"notebook": "00_data", "seconds": 12.5}]
    hw = results.hardware()
    assert int(hw["cores"]) >= 1 and hw["gpu"]
