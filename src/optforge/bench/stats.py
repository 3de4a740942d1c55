"""The benchmark's statistics (pure numpy/scipy, no torch).

* :func:`mean_ci` -- mean and Student-t confidence interval,
  ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)``.
* :func:`welch` -- Welch's unequal-variance t-test (two-sided), with the
  degenerate cases (``n < 2``, zero variance) given defined answers.
* :func:`steps_to_target` -- first step at which a curve reaches a target,
  linearly interpolated between the bracketing evaluations.
* :func:`fit_power_law` / :func:`data_equivalent_speedup` -- fit the
  baseline's validation loss against steps with ``L(s) = E + A * s**-alpha``
  and invert it, as in "Fantastic Pretraining Optimizers and Where to Find
  Them" (Wen et al., 2025).
* :func:`performance_profile` / :func:`profile_scores` -- AlgoPerf
  performance profiles (Dahl et al., 2023) and their normalised area.

Undefined quantities are ``nan`` (``inf`` where "never" is the meaning); the
JSON writer turns non-finite numbers into ``null``/strings.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

# ------------------------------------------------------------------ mean and CI


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` values and its two-sided confidence interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    std: float
    n: int
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict:
        return asdict(self)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean and Student-t confidence interval of ``values``.

    ``std`` is the sample standard deviation (``ddof=1``). With one value the
    interval is undefined (``nan`` bounds); with zero spread it is the point
    ``[mean, mean]``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float).ravel()
    n = x.size
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci needs finite values, got {x.tolist()}")
    mean = float(x.mean())
    if n == 1:
        return Summary(mean, math.nan, math.nan, math.nan, 1, confidence)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, mean - half, mean + half, std, n, confidence)


# ------------------------------------------------------------------ Welch t-test


@dataclass(frozen=True)
class TTest:
    """Welch's t-test of ``mean(a) - mean(b)``: statistic, degrees of freedom, p-value.

    ``note`` says why ``pvalue`` is undefined (``nan``): ``"n < 2"`` or ``"no spread"``."""

    statistic: float
    df: float
    pvalue: float
    note: str | None = None

    @property
    def tie(self) -> bool:
        """Both samples constant and equal: nothing to test."""
        return self.note == NO_SPREAD and self.statistic == 0

    def as_dict(self) -> dict:
        return asdict(self)


NO_SPREAD, TOO_FEW = "no spread", "n < 2"


def welch(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Two-sided Welch t-test (``scipy.stats.ttest_ind(a, b, equal_var=False)``).

    ``t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b)`` with
    Welch-Satterthwaite degrees of freedom. Degenerate cases, where scipy
    returns ``nan`` (or, for constant samples with different means, ``p = 0``):

    * either sample has fewer than 2 values: no variance estimate, so
      ``statistic = df = pvalue = nan``, note ``"n < 2"`` (reported "n/a");
    * both samples have zero variance: the test is not defined, so
      ``pvalue = df = nan``, note ``"no spread"``; the statistic is ``0`` for
      equal means (reported "tie") and ``+-inf`` otherwise (reported "n/a").
      Never ``p = 0``: three seeds that agree to the last digit (a metric
      such as accuracy on a small validation set often does) are no evidence
      of a difference that would hold on other seeds.
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("welch needs finite values")
    if x.size < 2 or y.size < 2:
        return TTest(math.nan, math.nan, math.nan, TOO_FEW)
    # compared, not var() == 0: the variance of equal floats can round to 1e-34 (t ~ 1e14)
    if np.all(x == x[0]) and np.all(y == y[0]):
        diff = float(x.mean() - y.mean())
        return TTest(0.0 if diff == 0 else math.copysign(math.inf, diff), math.nan, math.nan,
                     NO_SPREAD)
    with warnings.catch_warnings():  # scipy warns when one sample is constant
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(x, y, equal_var=False)
    return TTest(float(res.statistic), float(res.df), float(res.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (``nan``: not a member).

    With the ``m`` defined p-values sorted, ``p_(1) <= ... <= p_(m)``, the
    adjusted ``p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``; rejecting
    where ``p~ < alpha`` bounds the family-wise error rate by ``alpha``
    (Holm, "A simple sequentially rejective multiple test procedure", 1979).
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if idx.size == 0:
        return out.tolist()
    if np.any((p[idx] < 0) | (p[idx] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[idx].tolist()}")
    order = idx[np.argsort(p[idx], kind="stable")]
    m = idx.size
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out.tolist()


# ------------------------------------------------------------------ steps to target


def steps_to_target(steps: Sequence[float], values: Sequence[float], target: float,
                    higher_is_better: bool = False) -> float:
    """First step at which the curve reaches ``target`` (``inf`` if it never does).

    ``values[i]`` is the curve at ``steps[i]`` (increasing). If the first
    evaluation already reaches the target, its step is the answer; otherwise
    the crossing is interpolated linearly between the last evaluation that
    misses the target and the first that reaches it. Non-finite values
    (a diverged run) never reach it.
    """
    s = np.asarray(steps, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    if s.size != v.size or s.size == 0:
        raise ValueError(f"steps and values must be non-empty and of one length, got "
                         f"{s.size} and {v.size}")
    if np.any(np.diff(s) <= 0):
        raise ValueError("steps must be strictly increasing")
    sign = -1.0 if higher_is_better else 1.0
    v, target = sign * v, sign * target  # now lower is better
    hit = np.isfinite(v) & (v <= target)
    if not hit.any():
        return math.inf
    i = int(np.argmax(hit))
    if i == 0 or not np.isfinite(v[i - 1]):
        return float(s[i])
    frac = (v[i - 1] - target) / (v[i - 1] - v[i])
    return float(s[i - 1] + frac * (s[i] - s[i - 1]))


# ------------------------------------------------------------------ data-equivalent speedup


@dataclass(frozen=True)
class PowerLaw:
    """``L(s) = E + A * s**-alpha``, fitted on steps ``[s_min, s_max]`` with root-mean-square
    relative error ``rel_rmse`` (``sqrt(mean(((L(s) - loss) / loss)^2))``)."""

    E: float
    A: float
    alpha: float
    s_min: float
    s_max: float
    rel_rmse: float = math.nan

    def __call__(self, s):
        return self.E + self.A * np.power(np.asarray(s, dtype=float), -self.alpha)

    def inverse(self, loss: float) -> float:
        """Steps at which the fitted curve reaches ``loss`` (``inf`` at or below ``E``)."""
        if loss <= self.E:
            return math.inf
        return float((self.A / (loss - self.E)) ** (1.0 / self.alpha))

    def as_dict(self) -> dict:
        return asdict(self)


def fit_power_law(steps: Sequence[float], losses: Sequence[float]) -> PowerLaw:
    """Least-squares fit of ``L(s) = E + A * s**-alpha`` to a loss curve.

    Only evaluations at ``s > 0`` with finite loss are used (at least 3).
    When every loss is positive the residuals are taken in log space,
    ``log L(s) - log loss``, so that a curve spanning decades is fitted
    evenly (with ``E >= 0``); otherwise in linear space. Bounds: ``A > 0``,
    ``0 < alpha <= 10``, ``E <= min(loss)``.
    """
    s = np.asarray(steps, dtype=float).ravel()
    y = np.asarray(losses, dtype=float).ravel()
    keep = (s > 0) & np.isfinite(y)
    s, y = s[keep], y[keep]
    if s.size < 3:
        raise ValueError(f"need at least 3 finite evaluations at s > 0 to fit, got {s.size}")
    positive = bool(np.all(y > 0))
    y_min, y_max = float(y.min()), float(y.max())
    span = max(y_max - y_min, 1e-12 * max(abs(y_max), 1.0))
    e_low = 0.0 if positive else -np.inf
    e_high = y_min * (1 - 1e-9) if positive else y_min
    # Starting point: the asymptote a little below the best loss, then A and
    # alpha from the first and last evaluations.
    e0 = max(y_min - 0.1 * span, e_low) if positive else y_min - 0.1 * span
    e0 = min(e0, e_high - 1e-12 * abs(e_high))
    lo_gap, hi_gap = max(y[-1] - e0, 1e-300), max(y[0] - e0, 1e-300)
    alpha0 = 0.5
    if s[-1] > s[0] and hi_gap > lo_gap:
        alpha0 = float(np.clip(math.log(hi_gap / lo_gap) / math.log(s[-1] / s[0]), 1e-3, 5.0))
    a0 = hi_gap * s[0] ** alpha0

    def model(x, e, log_a, alpha):
        return e + np.exp(log_a - alpha * np.log(x))

    if positive:
        def f(x, e, log_a, alpha):
            return np.log(np.maximum(model(x, e, log_a, alpha), 1e-300))
        target = np.log(y)
    else:
        f, target = model, y
    lower = [e_low, -np.inf, 1e-6]
    upper = [e_high, np.inf, 10.0]
    p0 = [float(np.clip(e0, lower[0], upper[0])), math.log(a0), alpha0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        (e, log_a, alpha), _ = optimize.curve_fit(
            f, s, target, p0=p0, bounds=(lower, upper), method="trf", maxfev=20_000)
    rel = (model(s, e, log_a, alpha) - y) / np.where(y == 0, 1.0, np.abs(y))
    return PowerLaw(float(e), float(math.exp(log_a)), float(alpha), float(s[0]), float(s[-1]),
                    float(np.sqrt(np.mean(rel**2))))


@dataclass(frozen=True)
class Speedup:
    """Data-equivalent speedup of a candidate over the baseline.

    ``baseline_steps`` is how many steps the fitted baseline curve needs to
    reach the candidate's final loss; ``value = baseline_steps / steps``.
    ``clipped`` is ``"above"`` when the inverse lies beyond
    ``max_extrapolation * s_max`` (or below the fitted asymptote): ``value`` is
    then the lower bound ``max_extrapolation * s_max / steps``, printed as
    ``>x``; ``"below"`` when it lies before the first fitted evaluation:
    ``value`` is the upper bound ``s_min / steps``, printed as ``<x``.
    """

    value: float
    baseline_steps: float
    clipped: str | None = None

    def __str__(self) -> str:
        prefix = {"above": ">", "below": "<", None: ""}[self.clipped]
        return f"{prefix}{self.value:.2f}x"

    def as_dict(self) -> dict:
        return asdict(self)


def data_equivalent_speedup(fit: PowerLaw, loss: float, steps: float,
                            max_extrapolation: float = 4.0,
                            measured: tuple[Sequence[float], Sequence[float]] | None = None
                            ) -> Speedup:
    """Speedup of a run that reached ``loss`` in ``steps`` steps, against the baseline.

    ``measured`` gives the baseline's measured ``(budgets, final losses)``. Inside
    their range the baseline steps come from those points (their running minimum,
    so more budget never looks worse, interpolated linearly in log-log space):
    the speedup then agrees with the measurements, whatever the quality of the
    fit; in particular a candidate that ends above the baseline's loss at the same
    budget has a speedup below 1. The power law ``fit`` only extrapolates beyond
    the measured budgets (and is used alone when ``measured`` is None).
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    if max_extrapolation < 1:
        raise ValueError(f"max_extrapolation must be >= 1, got {max_extrapolation}")
    if not math.isfinite(loss):
        return Speedup(0.0, math.inf, None)
    s_star = _measured_inverse(measured, loss) if measured is not None else None
    if s_star is None:
        s_star = fit.inverse(loss)
        pts = _monotone(measured) if measured is not None else []
        if pts:  # beyond the measured range: never back inside it
            if loss < pts[-1][1]:  # better than the largest budget's loss
                s_star = max(s_star, pts[-1][0])
            elif loss > pts[0][1]:  # worse than the smallest budget's loss: reached before
                s_star = min(s_star, pts[0][0])
                if s_star >= fit.s_min:
                    return Speedup(fit.s_min / steps, s_star, "below")
    ceiling = max_extrapolation * fit.s_max
    if s_star > ceiling:
        return Speedup(ceiling / steps, s_star, "above")
    if s_star < fit.s_min:
        return Speedup(fit.s_min / steps, s_star, "below")
    return Speedup(s_star / steps, s_star, None)


def _monotone(measured: tuple[Sequence[float], Sequence[float]]) -> list[tuple[float, float]]:
    """Finite measured points by budget, losses replaced by their running minimum."""
    pts = sorted((float(b), float(v)) for b, v in zip(*measured, strict=True)
                 if b > 0 and math.isfinite(v))
    best = math.inf
    out = []
    for b, v in pts:
        best = min(best, v)
        out.append((b, best))
    return out


def _measured_inverse(measured, loss: float) -> float | None:
    """Budget at which the measured baseline reaches ``loss``; None outside their range."""
    pts = _monotone(measured)
    if len(pts) < 2 or loss > pts[0][1] or loss < pts[-1][1]:
        return None
    for (b0, v0), (b1, v1) in itertools.pairwise(pts):
        if v1 <= loss <= v0:
            if loss in (v0, v1):  # a measured point: its budget exactly (the earliest one)
                return b0 if loss == v0 else b1
            if v1 > 0 and loss > 0:
                t = math.log(v0 / loss) / math.log(v0 / v1)
                return math.exp(math.log(b0) + t * math.log(b1 / b0))
            return b0 + (v0 - loss) / (v0 - v1) * (b1 - b0)
    return pts[0][0]


# ------------------------------------------------------------------ performance profiles


def performance_ratios(times: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``r[o][t] = times[o][t] / min_o' times[o'][t]`` (``inf`` where ``o`` failed or never
    reached the target; ``inf`` for all on a task where nobody reached it).

    ``times[o][t]`` is optimizer ``o``'s time (steps) to reach task ``t``'s
    target; missing entries count as ``inf``.
    """
    tasks = sorted({t for row in times.values() for t in row})
    out: dict[str, dict[str, float]] = {o: {} for o in times}
    for t in tasks:
        col = {o: float(times[o].get(t, math.inf)) for o in times}
        if any(v < 0 or math.isnan(v) for v in col.values()):
            raise ValueError(f"times on task {t!r} must be non-negative numbers: {col}")
        best = min(col.values())
        for o, v in col.items():
            if not math.isfinite(best) or not math.isfinite(v):
                out[o][t] = math.inf
            elif best == 0:
                out[o][t] = 1.0 if v == 0 else math.inf
            else:
                out[o][t] = v / best
    return out


def performance_profile(ratios: Mapping[str, float], taus: Sequence[float]) -> np.ndarray:
    """``rho(tau)``: fraction of tasks whose ratio is at most ``tau``, for each ``tau``."""
    r = np.asarray(list(ratios.values()), dtype=float)
    if r.size == 0:
        raise ValueError("a performance profile needs at least one task")
    tau = np.asarray(taus, dtype=float)
    return (r[None, :] <= tau[:, None]).mean(axis=1)


def profile_score(ratios: Mapping[str, float], tau_max: float = 4.0) -> float:
    """AlgoPerf score: ``1/(tau_max - 1) * integral_1^tau_max rho(tau) dtau``.

    ``rho`` is a step function, so the integral is exact: each task with ratio
    ``r <= tau_max`` contributes ``(tau_max - r) / (tau_max - 1)`` divided by
    the number of tasks. 1 means best on every task; 0 means never within
    ``tau_max`` of the best.
    """
    if tau_max <= 1:
        raise ValueError(f"tau_max must exceed 1, got {tau_max}")
    r = np.asarray(list(ratios.values()), dtype=float)
    if r.size == 0:
        raise ValueError("a performance profile needs at least one task")
    if np.any(r < 1):
        raise ValueError(f"performance ratios are at least 1, got {r.tolist()}")
    area = np.where(r <= tau_max, tau_max - r, 0.0)
    return float(area.mean() / (tau_max - 1))


def profile_scores(times: Mapping[str, Mapping[str, float]],
                   tau_max: float = 4.0) -> dict[str, float]:
    """AlgoPerf score of every optimizer from its times-to-target on every task."""
    ratios = performance_ratios(times)
    return {o: profile_score(r, tau_max) if r else math.nan for o, r in ratios.items()}
