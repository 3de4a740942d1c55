"""The benchmark's statistics against scipy and hand-computed answers."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from optforge.bench import stats

RNG = np.random.default_rng(12345)
SAMPLES = [
    (RNG.normal(0, 1, 5), RNG.normal(0.5, 2, 7)),
    (RNG.normal(3, 0.1, 2), RNG.normal(3.2, 0.3, 2)),
    (RNG.normal(-1, 5, 30), RNG.normal(-1, 1, 3)),
    (np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 4.0])),  # one sample without spread
]


# ------------------------------------------------------------------ mean and CI


def test_mean_ci_hand_computed():
    # mean 2.5, s = sqrt(5/3), t_{0.975,3} = 3.182446305284263
    s = stats.mean_ci([1, 2, 3, 4])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert s.mean == 2.5 and s.n == 4
    assert s.low == pytest.approx(2.5 - half, rel=1e-12)
    assert s.high == pytest.approx(2.5 + half, rel=1e-12)
    assert s.std == pytest.approx(math.sqrt(5 / 3), rel=1e-12)


@pytest.mark.parametrize("x", [a for a, _ in SAMPLES] + [b for _, b in SAMPLES])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_matches_scipy(x, confidence):
    s = stats.mean_ci(x, confidence)
    if np.std(x) == 0:
        assert s.low == s.high == s.mean
        return
    low, high = sps.t.interval(confidence, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (s.low, s.high) == pytest.approx((low, high), rel=1e-10, abs=1e-12)


def test_mean_ci_degenerate():
    one = stats.mean_ci([3.0])
    assert one.mean == 3.0 and math.isnan(one.low) and math.isnan(one.high)
    flat = stats.mean_ci([2.0, 2.0, 2.0])
    assert (flat.low, flat.mean, flat.high) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        stats.mean_ci([1.0, math.nan])
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_ci([1.0, 2.0], confidence=1.5)


# ------------------------------------------------------------------ Welch


def test_welch_published_example():
    # Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 25.0, p = 0.021
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    t = stats.welch(a1, a2)
    assert round(t.statistic, 2) == -2.46
    assert round(t.df, 1) == 25.0
    assert round(t.pvalue, 3) == 0.021


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
@pytest.mark.parametrize(("a", "b"), SAMPLES)
def test_welch_matches_scipy(a, b):
    ours = stats.welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    # Welch-Satterthwaite degrees of freedom, written out
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert ours.df == pytest.approx(df, rel=1e-10)


@pytest.mark.parametrize(
    ("a", "b", "statistic", "pvalue", "note"),
    [
        ([1.0], [1.0, 2.0, 3.0], math.nan, math.nan, "n < 2"),  # no variance estimate
        ([1.0, 2.0], [5.0], math.nan, math.nan, "n < 2"),
        ([2.0, 2.0, 2.0], [2.0, 2.0], 0.0, math.nan, "no spread"),  # a tie
        ([1.0, 1.0], [3.0, 3.0, 3.0], -math.inf, math.nan, "no spread"),  # scipy: p = 0
        ([3.0, 3.0], [1.0, 1.0], math.inf, math.nan, "no spread"),
        ([0.97, 0.97, 0.97], [0.96, 0.96, 0.96], math.inf, math.nan, "no spread"),  # issue #11
    ],
)
def test_welch_degenerate(a, b, statistic, pvalue, note):
    t = stats.welch(a, b)
    for got, want in ((t.statistic, statistic), (t.pvalue, pvalue)):
        assert (math.isnan(got) and math.isnan(want)) or got == want
    assert t.note == note and t.tie == (statistic == 0)
    assert not t.pvalue < 1  # no p-value below any threshold


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([1.0, 2.0], [1.5, 2.5]),  # n = 2 on both sides (df = 2)
        ([1.0, 2.0], [2.0, 2.0]),  # n = 2, one constant sample (df = 1)
        ([1.0, 1.0, 2.0, 2.0], [1.0, 2.0, 2.0, 2.0, 3.0]),  # ties
        ([0.5, 0.5, 0.5, 0.75], [0.5, 0.5, 0.5]),  # ties, the other constant
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),  # identical samples: t = 0, p = 1
    ],
)
def test_welch_matches_scipy_in_edge_cases(a, b):
    ours = stats.welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert ours.note is None
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12, abs=1e-15)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert ours.df == pytest.approx(ref.df, rel=1e-12)


@pytest.mark.parametrize(
    "pvalues",
    [
        [0.01, 0.04, 0.03, 0.005],
        [0.2, 0.001, 0.5, 0.02, 0.02, 0.9],  # ties
        [0.3],
        list(RNG.uniform(0, 0.1, 12)),
        [0.6, 0.7, 0.8],  # adjusted values capped at 1
    ],
)
def test_holm_matches_statsmodels(pvalues):
    from statsmodels.stats.multitest import multipletests

    _, ref, _, _ = multipletests(pvalues, method="holm")
    assert stats.holm(pvalues) == pytest.approx(list(ref), rel=1e-12)


def test_holm_hand_computed_and_undefined_members():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(1 x 0.04, 0.06)
    got = stats.holm([0.01, math.nan, 0.04, 0.03, 0.005])
    assert got[1] != got[1]  # nan: not a member of the family (m = 4)
    assert [got[i] for i in (0, 2, 3, 4)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([]) == [] and all(math.isnan(p) for p in stats.holm([math.nan]))
    with pytest.raises(ValueError, match="p-values"):
        stats.holm([1.5])


# ------------------------------------------------------------------ steps to target


@pytest.mark.parametrize(
    ("values", "target", "higher", "want"),
    [
        ([4.0, 3.0, 1.0, 0.5], 2.0, False, 15.0),  # crosses between 10 (3.0) and 20 (1.0)
        ([4.0, 3.0, 1.0, 0.5], 3.0, False, 10.0),  # reached exactly at an evaluation
        ([1.0, 0.9, 0.8, 0.7], 2.0, False, 0.0),  # already there at the first evaluation
        ([4.0, 3.0, 2.5, 2.1], 2.0, False, math.inf),  # never
        ([4.0, math.nan, 1.0, 0.5], 2.0, False, 20.0),  # no interpolation across a nan
        ([4.0, math.inf, math.nan, math.nan], 2.0, False, math.inf),  # diverged
        ([0.1, 0.5, 0.7, 0.9], 0.6, True, 15.0),  # accuracy: higher is better
        ([0.1, 0.2, 0.3, 0.3], 0.6, True, math.inf),
    ],
)
def test_steps_to_target(values, target, higher, want):
    got = stats.steps_to_target([0, 10, 20, 30], values, target, higher_is_better=higher)
    assert got == pytest.approx(want)


def test_steps_to_target_bad_input():
    with pytest.raises(ValueError, match="one length"):
        stats.steps_to_target([0, 1], [1.0], 0.5)
    with pytest.raises(ValueError, match="increasing"):
        stats.steps_to_target([0, 2, 1], [1.0, 0.5, 0.2], 0.5)


# ------------------------------------------------------------------ power-law fit and speedup

STEPS = np.array([10, 20, 50, 100, 200, 300, 500, 700, 1000], dtype=float)


@pytest.mark.parametrize(("E", "A", "alpha"), [(0.5, 3.0, 0.7), (0.0, 10.0, 1.0),
                                                (2.3, 1.5, 0.3), (-1.0, 4.0, 0.5)])
def test_power_law_recovers_exact_curve(E, A, alpha):
    fit = stats.fit_power_law(STEPS, E + A * STEPS**-alpha)
    assert (fit.E, fit.A, fit.alpha) == pytest.approx((E, A, alpha), rel=1e-5, abs=1e-6)
    assert (fit.s_min, fit.s_max) == (10.0, 1000.0)
    assert fit.rel_rmse < 1e-6


def test_power_law_noisy_curve_and_inverse():
    rng = np.random.default_rng(0)
    clean = 0.5 + 3.0 * STEPS**-0.7
    fit = stats.fit_power_law(STEPS, clean * (1 + 0.01 * rng.standard_normal(STEPS.size)))
    assert fit.alpha == pytest.approx(0.7, rel=0.05)
    assert abs(fit.E - 0.5) <= 0.05 * 0.5
    assert 0.002 < fit.rel_rmse < 0.02  # the 1% noise
    for s in (15.0, 400.0, 3000.0):
        assert fit.inverse(float(fit(s))) == pytest.approx(s, rel=1e-9)
    assert fit.inverse(fit.E) == math.inf


def test_power_law_ignores_step_zero_and_nonfinite():
    s = np.concatenate([[0.0], STEPS])
    y = np.concatenate([[99.0], 0.5 + 3.0 * STEPS**-0.7])
    y[3] = math.nan
    fit = stats.fit_power_law(s, y)
    assert fit.alpha == pytest.approx(0.7, rel=1e-5)
    with pytest.raises(ValueError, match="at least 3"):
        stats.fit_power_law([0, 10, 20], [1.0, 0.5, 0.4])


def test_data_equivalent_speedup():
    fit = stats.PowerLaw(E=0.5, A=3.0, alpha=0.7, s_min=10.0, s_max=1000.0)
    # the candidate reaches in 1000 steps what the baseline reaches at 2000: 2x
    sp = stats.data_equivalent_speedup(fit, float(fit(2000.0)), 1000.0)
    assert sp.value == pytest.approx(2.0) and sp.clipped is None and str(sp) == "2.00x"
    # worse than the baseline: 0.5x
    sp = stats.data_equivalent_speedup(fit, float(fit(500.0)), 1000.0)
    assert sp.value == pytest.approx(0.5) and sp.clipped is None
    # beyond 4 x s_max: reported as the lower bound 4000 / 1000
    sp = stats.data_equivalent_speedup(fit, float(fit(10_000.0)), 1000.0)
    assert sp.value == pytest.approx(4.0) and sp.clipped == "above" and str(sp) == ">4.00x"
    assert sp.baseline_steps == pytest.approx(10_000.0)
    # below the asymptote: never reached by the baseline
    sp = stats.data_equivalent_speedup(fit, 0.4, 1000.0)
    assert sp.clipped == "above" and sp.baseline_steps == math.inf
    # worse than the baseline's first fitted evaluation: upper bound s_min / steps
    sp = stats.data_equivalent_speedup(fit, float(fit(5.0)), 1000.0)
    assert sp.value == pytest.approx(0.01) and sp.clipped == "below" and str(sp) == "<0.01x"


def test_speedup_follows_the_measured_baseline_inside_its_range():
    # measured baseline: loss halves with every doubling of the budget
    measured = ([100, 200, 400], [1.0, 0.5, 0.25])
    # a fit that disagrees with the measurements (it would call 0.6 at 200 steps a speedup)
    bad_fit = stats.PowerLaw(E=0.0, A=1e4, alpha=1.5, s_min=100.0, s_max=400.0)
    assert bad_fit.inverse(0.6) > 200
    # worse than the baseline at the same budget: below 1, interpolated in log-log space
    sp = stats.data_equivalent_speedup(bad_fit, 0.6, 200.0, 4.0, measured)
    assert sp.value == pytest.approx(100 * 2 ** (math.log(1 / 0.6) / math.log(2)) / 200)
    assert sp.value < 1 and sp.clipped is None
    # between the 200 and 400 budgets: 0.5 / sqrt(2) is reached at 200 * sqrt(2)
    sp = stats.data_equivalent_speedup(bad_fit, 0.5 / math.sqrt(2), 200.0, 4.0, measured)
    assert sp.value == pytest.approx(math.sqrt(2))
    # exactly the baseline's loss at the same budget: 1
    assert stats.data_equivalent_speedup(bad_fit, 0.5, 200.0, 4.0, measured).value == 1.0
    # a budget that did worse than a smaller one counts as the smaller one's loss
    sp = stats.data_equivalent_speedup(bad_fit, 0.45, 200.0, 4.0, ([100, 200, 400], [1, 0.4, 0.5]))
    assert 100 < sp.baseline_steps < 200
    # beyond the measured range the fit extrapolates, never back inside the range
    good_fit = stats.PowerLaw(E=0.0, A=100.0, alpha=1.0, s_min=100.0, s_max=400.0)
    sp = stats.data_equivalent_speedup(good_fit, 0.2, 200.0, 4.0, measured)
    assert sp.baseline_steps == pytest.approx(500.0) and sp.clipped is None
    # worse than the smallest budget's loss: before the smallest budget, not after the
    # largest (a loss worse than everything measured is no speedup)
    sp = stats.data_equivalent_speedup(good_fit, 1.1, 200.0, 4.0, measured)
    assert sp.baseline_steps == pytest.approx(100 / 1.1) and sp.clipped == "below"
    assert str(sp) == "<0.50x"
    # ... also where the fit, read alone, puts it after the smallest budget
    flat = stats.PowerLaw(E=0.0, A=2.0, alpha=0.1, s_min=100.0, s_max=400.0)
    assert flat.inverse(1.1) > 100
    sp = stats.data_equivalent_speedup(flat, 1.1, 200.0, 4.0, measured)
    assert sp.clipped == "below" and str(sp) == "<0.50x"


# ------------------------------------------------------------------ performance profiles

TIMES = {
    "a": {"t1": 100.0, "t2": 300.0},
    "b": {"t1": 200.0, "t2": 100.0},
    "c": {"t1": math.inf, "t2": 500.0},
}


def test_performance_ratios_and_scores_hand_computed():
    r = stats.performance_ratios(TIMES)
    assert r == {"a": {"t1": 1.0, "t2": 3.0}, "b": {"t1": 2.0, "t2": 1.0},
                 "c": {"t1": math.inf, "t2": 5.0}}
    # score = mean over tasks of (4 - r)_+ / 3
    scores = stats.profile_scores(TIMES)
    assert scores["a"] == pytest.approx((3 + 1) / 2 / 3)
    assert scores["b"] == pytest.approx((2 + 3) / 2 / 3)
    assert scores["c"] == 0.0
    rho = stats.performance_profile(r["a"], [1.0, 2.0, 2.999, 3.0, 4.0])
    assert rho.tolist() == [0.5, 0.5, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("tau_max", [2.0, 4.0])
def test_profile_score_is_the_normalised_area(tau_max):
    ratios = {"t1": 1.0, "t2": 1.7, "t3": 3.2, "t4": math.inf}
    tau = np.linspace(1, tau_max, 300_001)
    area = np.trapezoid(stats.performance_profile(ratios, tau), tau) / (tau_max - 1)
    assert stats.profile_score(ratios, tau_max) == pytest.approx(area, abs=1e-4)


def test_performance_ratios_edge_cases():
    nobody = stats.performance_ratios({"a": {"t": math.inf}, "b": {"t": math.inf}})
    assert nobody == {"a": {"t": math.inf}, "b": {"t": math.inf}}
    missing = stats.performance_ratios({"a": {"t": 10.0}, "b": {}})
    assert missing == {"a": {"t": 1.0}, "b": {"t": math.inf}}
    with pytest.raises(ValueError, match="at least 1"):
        stats.profile_score({"t": 0.5})
    with pytest.raises(ValueError, match="non-negative"):
        stats.performance_ratios({"a": {"t": -1.0}})
