import numpy as np
import pandas as pd
import pytest

from disclatent.analysis import interpretation as it
from disclatent.discs.isolation import central_slices


def test_sweep_holds_the_others_at_their_mean():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 4)) * [1, 2, 3, 4] + [0, 1, 2, 3]
    codes, values = it.sweep_codes(z, n_steps=6)
    assert codes.shape == (4, 6, 4) and values.shape == (4, 6)
    for j in range(4):
        np.testing.assert_allclose(codes[j, :, j], np.linspace(z[:, j].min(), z[:, j].max(), 6))
        others = [i for i in range(4) if i != j]
        np.testing.assert_allclose(codes[j][:, others], np.tile(z.mean(axis=0)[others], (6, 1)))
    # min, 1/5, 2/5, 3/5, 4/5, max
    np.testing.assert_allclose(
        np.diff(values, axis=1), np.diff(values, axis=1)[:, :1] * np.ones((1, 5))
    )


def box_decoder(codes):
    """A decoder whose box grows along the second axis with code 0, along the first with 1."""
    out = np.zeros((len(codes), 16, 16, 16), np.uint8)
    for n, c in enumerate(codes):
        half_ap = int(np.clip(3 + c[0], 1, 7))
        half_si = int(np.clip(2 + c[1], 1, 7))
        out[n, 8 - half_si : 8 + half_si, 8 - half_ap : 8 + half_ap, 4:12] = 1
    return out


def test_latent_sweep_measures_decoded_masks():
    rng = np.random.default_rng(1)
    z = rng.uniform(-2, 2, size=(40, 2))

    def measure(cubes):
        return pd.DataFrame(
            {
                "ap_extent": (cubes.any(axis=(1, 3))).sum(axis=1),
                "si_extent": (cubes.any(axis=(2, 3))).sum(axis=1),
            }
        )

    masks, table = it.latent_sweep(z, box_decoder, measure, n_steps=6)
    assert masks.shape == (2, 6, 16, 16, 16)
    z0 = table[table.feature == "latent_0"]
    assert (
        z0["ap_extent"].is_monotonic_increasing
        and z0["ap_extent"].iloc[-1] > z0["ap_extent"].iloc[0]
    )
    assert z0["si_extent"].nunique() == 1  # the other code is held fixed
    slopes = it.sweep_slopes(table, ["ap_extent", "si_extent"])
    assert slopes.loc["latent_0", "ap_extent"] > 4
    assert slopes.loc["latent_0", "si_extent"] == pytest.approx(0, abs=1e-9)
    assert slopes.loc["latent_1", "si_extent"] > 4


def test_correlation_matrix_and_level_test():
    rng = np.random.default_rng(2)
    levels = np.repeat(["L5/S1", "L4/L5", "L3/L4"], 60)
    z = pd.DataFrame(
        {
            "latent_0": rng.normal(size=180) + np.repeat([0, 1, 2], 60),
            "latent_1": rng.normal(size=180),
        }
    )
    geo = pd.DataFrame({"height_mm": z["latent_0"] * -0.9 + rng.normal(0, 0.3, 180)})
    r, p, q = it.correlation_matrix(z, geo)
    assert r.shape == (2, 1) and r.loc["latent_0", "height_mm"] < -0.9
    assert q.loc["latent_0", "height_mm"] < 0.001 and it.stars(q.loc["latent_0", "height_mm"])
    lv = it.level_differences(z, levels)
    assert lv.loc["latent_0", "q"] < 1e-6 and lv.loc["latent_1", "q"] > 0.05


def test_central_slices_orientation():
    cube = np.zeros((8, 10, 12))
    slices = central_slices(cube)
    assert slices["sagittal"].shape == (8, 10)  # SI x AP
    assert slices["coronal"].shape == (8, 12)  # SI x LR
    assert slices["transverse"].shape == (10, 12)  # AP x LR
    with pytest.raises(ValueError):
        it.sweep_codes(np.zeros((1, 4)))
