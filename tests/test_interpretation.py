import numpy as np
import pandas as pd
import pytest

from disclatent.analysis import interpretation as it
from disclatent.discs.isolation import central_slices, slice_aspects


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
    # each slice passes through the middle of its own axis, also for a non-cubic volume
    marked = np.zeros((8, 10, 12))
    marked[4, 5, 6] = 1
    assert all(s.sum() == 1 for s in central_slices(marked).values())
    with pytest.raises(ValueError):
        it.sweep_codes(np.zeros((1, 4)))


def test_slice_aspects_follow_the_spacing():
    aspects = slice_aspects((2.0, 1.6, 1.9))  # SI, AP, LR in mm
    assert aspects == pytest.approx(
        {"sagittal": 1.25, "coronal": 2.0 / 1.9, "transverse": 1.6 / 1.9}
    )


def test_max_off_diagonal_ignores_the_diagonal():
    r = pd.DataFrame([[1.0, -0.3, 0.1], [-0.3, 1.0, 0.02], [0.1, 0.02, 1.0]])
    assert it.max_off_diagonal(r) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        it.max_off_diagonal(np.ones((2, 3)))


def test_factor_correlation_against_numpy():
    from disclatent.data.phantom import GENERATING_FACTORS

    rng = np.random.default_rng(3)
    n = 60
    truth = pd.DataFrame({f: rng.normal(size=n) for f in GENERATING_FACTORS})
    truth.insert(0, "series", [f"{i // 6}_t1" for i in range(n)])
    truth.insert(1, "ivd_label", [i % 6 + 1 for i in range(n)])
    table = truth[["series", "ivd_label"]].iloc[::-1].reset_index(drop=True)  # other order
    table["latent_0"] = -2 * table.merge(truth, on=["series", "ivd_label"])["bulge_mm"]
    table.loc[:4, "latent_0"] += 0.5  # not a perfect correlation
    table["latent_1"] = rng.normal(size=n)
    table = table.iloc[:-5]  # discs without a code are left out of the join
    fc = it.factor_correlation(table, truth, ["latent_0", "latent_1"])
    assert len(fc.joined) == n - 5 and list(fc.r.columns) == GENERATING_FACTORS
    j = table.merge(truth, on=["series", "ivd_label"])
    assert fc.r.loc["latent_0", "bulge_mm"] == pytest.approx(
        np.corrcoef(j["latent_0"], j["bulge_mm"])[0, 1]
    )
    assert fc.r.loc["latent_0", "bulge_mm"] < -0.9 and fc.q.loc["latent_0", "bulge_mm"] < 1e-6
    assert len(fc.table) == 2 * len(GENERATING_FACTORS)
    best = fc.strongest()
    assert best.index.name == "latent feature"
    assert best.loc["latent_0", "strongest factor"] == "bulge_mm"
    assert best.loc["latent_0", "r"] == fc.r.loc["latent_0", "bulge_mm"]


def test_figures_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    from disclatent.report import interpretation_plots as iplt

    rng = np.random.default_rng(1)
    z = rng.uniform(-2, 2, size=(40, 2))

    def measure(cubes):
        return pd.DataFrame({"ap_extent": cubes.any(axis=(1, 3)).sum(axis=1).astype(float)})

    masks, table = it.latent_sweep(z, box_decoder, measure, n_steps=6)
    fig = iplt.plot_sweep(masks, table, (1.0, 1.0, 1.0))
    assert len(fig.axes) == 2 * 3 * 6
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["min", "0.2", "0.4", "0.6", "0.8", "max"]
    fig = iplt.sweep_profiles(table, ["ap_extent"], {"ap_extent": "AP extent"})
    ax = fig.axes[0]
    assert ax.get_title() == "AP extent" and len(ax.lines) == 2
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, table.loc[table.feature == "latent_0", "ap_extent"])
    r = pd.DataFrame([[0.5, -0.9]], index=["latent_0"], columns=["a", "b"])
    q = pd.DataFrame([[0.2, 0.0001]], index=r.index, columns=r.columns)
    ax = iplt.correlation_heatmap(r, q, title="t", labels={"a": "A"})
    assert [t.get_text() for t in ax.texts] == ["0.50", "-0.90***"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "b"]


def test_level_boxplots_without_points():
    import matplotlib

    matplotlib.use("Agg")
    from disclatent.report.plots import level_boxplots

    df = pd.DataFrame({"level": ["L5/S1", "L4/L5"] * 10, "latent_0": np.arange(20.0)})
    plain = level_boxplots(df, ["latent_0"], ncols=1, points=False).axes[0]
    dotted = level_boxplots(df, ["latent_0"], ncols=1).axes[0]
    assert [t.get_text() for t in plain.get_xticklabels()] == ["L5/S1", "L4/L5"]
    assert len(dotted.lines) - len(plain.lines) == 2  # one jittered series per level
    assert not [ln for ln in plain.lines if ln.get_marker() == "."]
