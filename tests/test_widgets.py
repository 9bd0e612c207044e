import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from disclatent.data import spider  # noqa: E402
from disclatent.data import volume as io  # noqa: E402
from disclatent.report import widgets  # noqa: E402


def ball_decoder(codes):
    out = np.zeros((len(codes), 16, 16, 16), np.float32)
    grid = np.indices((16, 16, 16)) - 7.5
    for n, c in enumerate(codes):
        out[n] = (np.sqrt((grid**2).sum(0)) < 3 + c[0]).astype(np.float32)
    return out


def test_latent_explorer_decodes_what_the_sliders_say():
    seen = []

    def decode(codes):
        seen.append(np.array(codes))
        return ball_decoder(codes)

    z = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    box = widgets.latent_explorer(
        z, decode, lambda cube: {"voxels": float(cube.sum())}, (1.0, 1.0, 1.0)
    )
    sliders = box.children[0].children
    assert [s.value for s in sliders] == [2.0, 3.0]  # start at the mean
    assert (sliders[0].min, sliders[0].max) == (0.0, 4.0)
    numbers = box.children[1]
    assert numbers.value == f"decoded disc: voxels: {ball_decoder([[2.0]]).sum():.1f}"
    sliders[0].value = 4.0
    np.testing.assert_allclose(seen[-1], [[4.0, 3.0]])
    assert numbers.value == f"decoded disc: voxels: {ball_decoder([[4.0]]).sum():.1f}"
    assert widgets.geometry_text({"height_mm": 9.04, "volume_mm3": np.nan}) == "height (mm): 9.0"
    assert widgets.geometry_text({"volume_mm3": np.nan}) == "empty disc: nothing to measure"
    fig = widgets.render_decoded(np.array([1.0, 0.0]), ball_decoder, None, (1.0, 1.0, 1.0))
    assert len(fig.axes) == 3


def test_latent_explorer_flags_an_implausible_decode():
    """With a judge, the numbers line says whether the decoded disc is plausible, and an
    implausible one (here: a ball decoded too large) in red with the reason."""
    from disclatent.analysis import plausibility as pl
    from disclatent.discs.geometry import measure_cubes

    spacing = (1.0, 1.0, 1.0)
    z = np.array([[1.0], [2.0], [3.0]])
    cohort = np.stack([ball_decoder([[r]])[0] for r in (1.5, 2.0, 2.5)])
    check = pl.PlausibilityCheck(quantiles=(0.0, 1.0)).fit(measure_cubes(cohort, spacing))

    def judge(cube):
        return pl.verdict_text(check.judge(cube[None], spacing).iloc[0])

    box = widgets.latent_explorer(z, ball_decoder, None, spacing, judge=judge)
    numbers, slider = box.children[1], box.children[0].children[0]
    assert "plausible</b>" in numbers.value and "#1a7f37" in numbers.value  # the mean, r = 2
    slider.value = 3.0  # a ball larger than any of the cohort's
    assert "implausible: volume_mm3 out of range" in numbers.value and "#c62828" in numbers.value


def test_cohort_browser_lists_levels_of_the_chosen_series(phantom_dir):
    folder = spider.SpiderFolder(phantom_dir)
    truth = pd.read_csv(phantom_dir / "phantom_truth.csv", dtype={"patient": str})
    box = widgets.cohort_browser(folder, truth[["series", "level", "height_mm"]])
    s_dd, l_dd = box.children[0].children
    s_dd.value = "2_t1"
    assert list(l_dd.options) == truth.loc[truth.series == "2_t1", "level"].tolist()
    image, mask = io.read_pair(folder.image_path("2_t1"), folder.mask_path("2_t1"))
    fig = widgets.render_series(image, mask, truth[truth.series == "2_t1"], "L4/L5", "2_t1")
    assert "L4/L5" in fig.axes[1].texts[0].get_text()
