import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from disclatent import stats


def test_t_ci_matches_the_textbook_formula():
    x = np.array([0.99, 0.995, 0.998, 0.997, 0.993])
    m, lo, hi = stats.t_ci(x)
    half = 2.7764451051977987 * x.std(ddof=1) / np.sqrt(5)  # t_{0.975, 4}
    assert m == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))


def test_bootstrap_ci_of_a_mean_has_the_known_width():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 400)
    est, lo, hi = stats.bootstrap_ci(lambda i: x[i].mean(), len(x), n_boot=2000, seed=1)
    assert est == pytest.approx(x.mean())
    # standard error 1/sqrt(400) = 0.05 -> 95 % half-width 0.098
    assert (hi - lo) / 2 == pytest.approx(1.96 * x.std(ddof=1) / 20, rel=0.1)
    assert lo < est < hi


def test_bootstrap_ci_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(5)
    hits = 0
    for s in range(200):
        x = rng.exponential(1.0, 60)  # true mean 1
        _, lo, hi = stats.bootstrap_ci(lambda i, x=x: x[i].mean(), 60, n_boot=300, seed=s)
        hits += lo <= 1.0 <= hi
    assert 0.86 <= hits / 200 <= 0.99


def test_group_bootstrap_is_wider_for_clustered_data():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(40), 6)  # 40 patients, 6 discs each
    x = np.repeat(rng.normal(0, 1, 40), 6) + rng.normal(0, 0.2, 240)

    def width(g):
        _, lo, hi = stats.bootstrap_ci(lambda i: x[i].mean(), 240, n_boot=1000, groups=g)
        return hi - lo

    assert width(groups) > 1.8 * width(None)  # ignoring clusters understates uncertainty
    idx = stats.bootstrap_indices(240, 3, seed=0, groups=groups)
    for i in idx:  # whole patients: each drawn patient comes with all 6 discs
        assert np.all(np.bincount(groups[i]) % 6 == 0)


def test_paired_bootstrap_detects_a_real_difference_only():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 300)
    b = a + 0.3 + rng.normal(0, 0.1, 300)
    diff, lo, hi, p = stats.bootstrap_paired_p(
        lambda i: a[i].mean(), lambda i: b[i].mean(), 300, n_boot=1000
    )
    assert diff == pytest.approx(0.3, abs=0.03) and lo > 0 and p <= 0.002
    c = a + rng.normal(0, 0.1, 300)
    _, lo, hi, p = stats.bootstrap_paired_p(
        lambda i: a[i].mean(), lambda i: c[i].mean(), 300, n_boot=1000
    )
    assert lo < 0 < hi and p > 0.05


def test_corrected_ttest_by_hand():
    a = np.array([0.70, 0.72, 0.68, 0.71, 0.69, 0.73, 0.70, 0.72, 0.71, 0.70])
    b = a + np.array([0.02, 0.01, 0.03, 0.02, 0.00, 0.02, 0.01, 0.03, 0.02, 0.01])
    d = b - a
    t_hand = d.mean() / np.sqrt((1 / 10 + 50 / 200) * d.var(ddof=1))
    mean_d, t, p = stats.corrected_repeated_cv_ttest(a, b, n_train=200, n_test=50)
    assert mean_d == pytest.approx(d.mean())
    assert t == pytest.approx(t_hand)
    assert p == pytest.approx(2 * sps.t.sf(t_hand, 9))
    # the correction makes the test more conservative than the naive paired t-test
    assert p > sps.ttest_rel(b, a).pvalue


def test_correlation_table_with_fdr():
    rng = np.random.default_rng(4)
    x = pd.DataFrame({"z0": rng.normal(size=200), "z1": rng.normal(size=200)})
    y = pd.DataFrame(
        {"ap": -0.8 * x["z0"] + 0.6 * rng.normal(size=200), "noise": rng.normal(size=200)}
    )
    t = stats.correlation_table(x, y).set_index(["x", "y"])
    assert t.loc[("z0", "ap"), "r"] == pytest.approx(np.corrcoef(x.z0, y.ap)[0, 1])
    assert t.loc[("z0", "ap"), "q"] < 1e-10
    assert (t["q"] >= t["p"] - 1e-15).all()  # BH never lowers a p-value
    assert t.loc[("z1", "noise"), "q"] > 0.05


def test_bootstrap_mean_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.9, 0.05, 20), rng.normal(0.9, 0.05, 2000)
    m, lo, hi = stats.bootstrap_mean_ci(small)
    assert m == pytest.approx(small.mean()) and lo < m < hi
    _, lo2, hi2 = stats.bootstrap_mean_ci(large)
    assert (hi2 - lo2) < (hi - lo) / 4
    # the vectorised version agrees with the generic bootstrap
    _, glo, ghi = stats.bootstrap_ci(lambda i: large[i].mean(), len(large), n_boot=2000)
    assert (lo2, hi2) == pytest.approx((glo, ghi), abs=5e-4)
    groups = np.repeat(np.arange(10), 2)
    _, glo, ghi = stats.bootstrap_mean_ci(small, groups=groups)
    assert glo < small.mean() < ghi
    assert np.isnan(stats.bootstrap_mean_ci([0.5])[1])
