"""``run_bench``: tune every optimizer on every task with one budget, rerun, compare.

For each task, the baseline (AdamW) goes first:

1. **Tune** each optimizer with ``trials`` Optuna trials (:mod:`.tune`) on
   the tuning seed.
2. **Final runs**: the best configuration on seeds ``0 .. S-1``, as ``S``
   replicas of one batched run.
3. **Baseline budget curve**: the tuned baseline is also trained (same
   configuration, same schedule shape) with budgets ``f * T`` for ``f`` in
   ``scaling`` (default 1/8, 1/4, 1/2, 1, 2); its mean final validation loss
   against the budget is fitted with ``L(s) = E + A s^-alpha``
   (:func:`~.stats.fit_power_law`). A candidate whose final loss is ``L`` after
   ``T`` steps has the data-equivalent speedup ``L^{-1}(L) / T``: how many
   times more steps the baseline needs for the same loss (clipped beyond
   ``max_extrapolation`` times the largest budget; see :class:`~.stats.Speedup`).
4. **Statistics** per optimizer and task: final validation metric (mean and
   95% CI over the seeds that did not diverge), steps for the seed-mean
   validation loss curve to reach the baseline's final mean loss, Welch's
   t-test of the final metric against the baseline; and across tasks the
   AlgoPerf performance-profile score of those steps-to-target (``tau`` up to
   ``tau_max``; failures count as never reaching the target).

An optimizer that errors, or diverges in every trial or on every seed, is
recorded as failed with the reason, and the benchmark goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import tasks as task_registry
from ..store import STORE_ERRORS, ReplayError
from ..train import OK as RUN_OK
from ..train.amortise import compiles
from . import stats
from .backend import RunSpec
from .candidates import Candidate, resolve_all
from .config import BenchConfig
from .results import ALPHA, FAILED, OK, BaselineFit, BenchResult, Entry
from .tune import MAX_ROUNDS, TUNE_SEED, round_trials, tune
from .units import Units

Progress = Callable[[float, float, str], None]
"""``progress(done, total, description)``, in training steps of batched runs."""

@dataclass
class Plan:
    """A checked benchmark: its settings, optimizers (baseline first), tasks and budgets."""

    settings: dict  # BenchConfig.as_dict()
    candidates: list[Candidate]
    tasks: list
    budgets: dict[str, int]  # task -> step budget T

    @property
    def units(self) -> int:
        """Batched training runs at most: per task and optimizer the tuning batches (every
        widening round spent) and the final runs, per task the baseline's extra budgets."""
        s = self.settings
        per_cand = _tuning_batches(s["trials"], s["batch"], MAX_ROUNDS) + 1
        return sum(len(self.candidates) * per_cand + len(_extra_budgets(T, s["scaling"]))
                   for T in self.budgets.values())

    @property
    def base_units(self) -> int:
        """Batched training runs when no range widens."""
        s = self.settings
        per_cand = _tuning_batches(s["trials"], s["batch"], 0) + 1
        return sum(len(self.candidates) * per_cand + len(_extra_budgets(T, s["scaling"]))
                   for T in self.budgets.values())


def plan_bench(config: BenchConfig, candidates: Sequence[dict] | None = None) -> Plan:
    """Check what ``config`` names (ValueError/KeyError naming the bad one: device, tasks,
    optimizers) and resolve the optimizers, or take them from ``candidates``
    (``Candidate.as_dict()``s, as a run store keeps them)."""
    from ..train.device import check_device

    check_device(config.device)
    cands = ([Candidate.from_dict(c) for c in candidates] if candidates
             else resolve_all(list(config.optimizers), config.baseline))
    task_list = _tasks(config.tasks)
    steps = config.steps
    budgets = {t.name: (steps if steps is not None else t.spec(config.tier).steps)
               for t in task_list}
    for name, b in budgets.items():
        if b < 1:
            raise ValueError(f"steps must be positive, got {b} for task {name!r}")
    return Plan(config.as_dict(), cands, task_list, budgets)


def run_bench(config: BenchConfig, *, out_dir: str | Path | None = None, plots: bool = True,
              progress: Progress | None = None, store=None,
              on_entry: Callable[[Entry], None] | None = None) -> BenchResult:
    """Benchmark ``config.optimizers`` (zoo names or program files) on ``config.tasks``
    (:class:`~optforge.bench.config.BenchConfig`: budgets, seeds, sampler, baseline, ...).

    Args:
        out_dir: where to write ``results.json``, ``results.csv`` and plots.
        store: a bench run's :class:`~optforge.store.RunStore` (:mod:`.stored`): every
            training run is recorded as it finishes, and those it holds are replayed
            (resume); its stored optimizers are used instead of resolving ``optimizers``.
        on_entry: called with each optimizer's :class:`Entry` on a task as soon as its final
            runs are done (before the comparison with the baseline), for live logs.
    """
    t_start = time.perf_counter()
    plan = plan_bench(config, store.meta("candidates") if store is not None else None)
    trials, seeds, batch, scaling = config.trials, config.seeds, config.batch, config.scaling
    tier, evals, schedule, device = config.tier, config.evals, config.schedule, config.device
    sampler, pruner, seed = config.sampler, config.pruner, config.seed
    max_extrapolation, tau_max = config.max_extrapolation, config.tau_max
    units = Units(store)
    units.begin(plan.settings, plan.candidates, plan.units, plan.base_units)
    cands, task_list, budgets = plan.candidates, plan.tasks, plan.budgets
    baseline = cands[0].label
    per_task_units = {n: _units(len(cands), trials, batch, b, scaling) for n, b in budgets.items()}
    total, done = float(sum(per_task_units.values())), 0.0

    def tick(units: float, what: str) -> None:
        nonlocal done
        done += units
        if progress is not None:
            progress(min(done, total), total, what)

    def grow(units: float) -> None:  # a widening round: more steps planned
        nonlocal total
        total += units

    entries: list[Entry] = []
    task_info: dict[str, dict] = {}
    final_seeds = list(range(seeds))
    for task in task_list:
        T = budgets[task.name]
        # one program trains trials + seeds runs of T steps on a task: the build amortises
        spec = RunSpec(task.name, tier, T, evals, schedule, device,
                       compiles(config.compile, T * (trials + seeds)))
        info = {"metric": task.metric, "higher_is_better": task.higher_is_better,
                "steps": T, "target": None, "baseline_fit": None}
        task_info[task.name] = info
        base_entry: Entry | None = None
        fit: stats.PowerLaw | None = None
        measured = None
        for cand in cands:
            what = f"{task.name}: {cand.label}"
            tick(0, what)
            entry = _bench_one(cand, spec, trials, sampler, pruner, batch, seed, final_seeds,
                               lambda u, w=what: tick(u, w), units, grow)
            entries.append(entry)
            if on_entry is not None:
                on_entry(entry)
            if cand.label == baseline:
                base_entry = entry
                if entry.status == OK:
                    # the seed-mean curve's last point: the baseline reaches it exactly
                    info["target"] = float(entry.mean_loss_curve()[-1])
                    bfit = _baseline_fit(cand, entry, spec, scaling,
                                         lambda u, w=what: tick(u, f"{w} (budget curve)"),
                                         units)
                    info["baseline_fit"] = bfit
                    fit = stats.PowerLaw(**bfit.fit) if bfit.fit else None
                    measured = (bfit.budgets, bfit.losses)
                else:
                    tick(_units(0, 0, 1, T, scaling), what)  # the budget curve is skipped
            _compare(entry, base_entry, baseline, fit, measured, info["target"], T,
                     max_extrapolation)
        tick(0, f"{task.name}: done")
    _verdicts(entries)
    times = {c.label: {} for c in cands}
    for e in entries:
        target = task_info[e.task]["target"]
        if target is not None:
            times[e.optimizer][e.task] = (e.steps_to_target if e.steps_to_target is not None
                                          else math.inf)
    ratios = stats.performance_ratios(times)
    scores = {o: (stats.profile_score(r, tau_max) if r else math.nan) for o, r in ratios.items()}
    result = BenchResult(
        settings={**plan.settings, "tasks": [t.name for t in task_list], "baseline": baseline,
                  "tune_seed": TUNE_SEED, "final_seeds": final_seeds},
        candidates=[c.as_dict() for c in cands], tasks=task_info, entries=entries,
        ratios=ratios, scores=scores, wall_time=time.perf_counter() - t_start + units.credit)
    if out_dir is not None:
        from .report import write_outputs

        write_outputs(result, Path(out_dir), plots=plots)
    units.finish(result)
    return result


# ------------------------------------------------------------------ one optimizer, one task


def _bench_one(cand: Candidate, spec: RunSpec, trials: int, sampler: str, pruner: str,
               batch: int, seed: int, final_seeds: list[int],
               tick: Callable[[float], None], units: Units,
               grow: Callable[[float], None]) -> Entry:
    t0 = units.clock()
    entry = Entry(cand.label, spec.task, FAILED, None, None)
    meter = _Meter(tick, -(-trials // batch) * spec.steps + spec.steps)

    def widen(steps: float) -> None:
        meter.expected += steps
        grow(steps)

    try:
        entry.tuning = tune(cand, spec, trials=trials, sampler=sampler, pruner=pruner,
                            batch=batch, seed=seed, progress=meter, units=units, grow=widen)
        if entry.tuning.failure is not None:
            entry.reason = entry.tuning.failure
            return entry
        entry.config = entry.tuning.best
        res = units.train("final", cand.label, spec, cand.program,
                          [entry.config] * len(final_seeds), final_seeds)
        meter(spec.steps)
        _record(entry, res)
    except (ReplayError, *STORE_ERRORS):  # the store's failure, not the candidate's: stop
        raise
    except Exception as err:  # a failing candidate is a row of the table, not a crash
        entry.status, entry.reason = FAILED, f"{type(err).__name__}: {err}"
    finally:
        meter.finish()
        entry.wall_time = units.clock() - t0
    return entry


class _Meter:
    """Forwards progress and tops it up to the expected amount at the end."""

    def __init__(self, tick: Callable[[float], None], expected: float):
        self.tick, self.expected, self.used = tick, expected, 0.0

    def __call__(self, units: float) -> None:
        self.used += units
        self.tick(units)

    def finish(self) -> None:
        if self.used < self.expected:
            self.tick(self.expected - self.used)
            self.used = self.expected


def _record(entry: Entry, res) -> None:
    """Fill ``entry`` from the final runs' :class:`~optforge.train.TrainResult`."""
    entry.seeds = list(res.seeds)
    entry.eval_steps = [int(s) for s in res.eval_steps]
    entry.loss_curves = np.asarray(res.eval_loss, dtype=float).T.tolist()
    entry.metric_curves = np.asarray(res.eval_metric, dtype=float).T.tolist()
    entry.seed_status = list(res.status)
    if res.error is not None:
        entry.reason = f"error in the final runs: {res.error}"
        return
    ok = [k for k, s in enumerate(res.status) if s == RUN_OK and np.isfinite(res.final_loss[k])]
    if not ok:
        steps = [s for s in res.diverged_step if s is not None]
        first = next((r for r in res.reason if r), "diverged")
        where = f" (first at step {min(steps)}: {first})" if steps else ""
        entry.reason = f"diverged on all {len(res.seeds)} seeds{where}"
        return
    entry.status = OK
    if len(ok) < len(res.seeds):
        entry.reason = f"diverged on {len(res.seeds) - len(ok)} of {len(res.seeds)} seeds"
    entry.final_metric = stats.mean_ci(res.final_metric[ok])
    entry.final_loss = stats.mean_ci(res.final_loss[ok])


def _compare(entry: Entry, base: Entry | None, baseline: str, fit: stats.PowerLaw | None,
             measured, target: float | None, T: int, max_extrapolation: float) -> None:
    """Steps to the baseline's final loss, speedup and t-test against the baseline."""
    if entry.status != OK or target is None:
        entry.steps_to_target = math.inf if target is not None else None
        return
    entry.steps_to_target = stats.steps_to_target(entry.eval_steps, entry.mean_loss_curve(),
                                                  target)
    if fit is not None:
        if entry.optimizer == baseline:
            entry.speedup = stats.Speedup(1.0, float(T), None)  # by definition
        else:
            entry.speedup = stats.data_equivalent_speedup(fit, entry.final_loss.mean, T,
                                                          max_extrapolation, measured)
    if entry.optimizer != baseline and base is not None and base.status == OK:
        entry.ttest = stats.welch(_finals(entry), _finals(base))
        entry.ttest_loss = stats.welch(_finals(entry, "loss"), _finals(base, "loss"))


def _finals(e: Entry, which: str = "metric") -> list[float]:
    curves = e.loss_curves if which == "loss" else e.metric_curves
    return [c[-1] for c, s in zip(curves, e.seed_status, strict=True)
            if s == "ok" and math.isfinite(c[-1])]


def _verdicts(entries: list[Entry]) -> None:
    """Holm-adjust each test over every comparison of the table; the loss test decides."""
    clipped = {(e.task, e.optimizer) for e in entries if e.tuning and e.tuning.clipped}
    base = {e.task: e.optimizer for e in entries if e.ttest_loss is None and e.status == OK}
    compared = [e for e in entries if e.ttest_loss is not None]
    adjusted = {k: stats.holm([getattr(e, f).pvalue for e in compared])
                for k, f in (("loss", "ttest_loss"), ("metric", "ttest"))}
    for i, e in enumerate(compared):
        e.p_holm = {k: v[i] for k, v in adjusted.items()}
        t, p = e.ttest_loss, e.p_holm["loss"]
        if {(e.task, e.optimizer), (e.task, base.get(e.task))} & clipped:
            e.verdict = "clipped"  # no verdict from a clipped tuning range
        elif t.tie:
            e.verdict = "tie"
        elif math.isnan(p):
            e.verdict = "n/a"
        elif p < ALPHA:
            e.verdict = "better" if t.statistic < 0 else "worse"  # lower loss is better
        else:
            e.verdict = "no difference"


def _baseline_fit(cand: Candidate, entry: Entry, spec: RunSpec, scaling: Sequence[float],
                  tick: Callable[[float], None], units: Units) -> BaselineFit:
    """Mean final loss of the tuned baseline at each budget, and the power-law fit."""
    T = spec.steps
    budgets = sorted({max(1, round(f * T)) for f in scaling})
    meter = _Meter(tick, sum(b for b in budgets if b != T))
    losses = []
    for b in budgets:
        if b == T:
            losses.append(entry.final_loss.mean)
            continue
        try:
            res = units.train(f"budget/{b}", cand.label, spec.with_steps(b), cand.program,
                              [entry.config] * len(entry.seeds), entry.seeds)
            finals = [v for v, s in zip(res.final_loss, res.status, strict=True)
                      if s == RUN_OK and np.isfinite(v)]
            losses.append(float(np.mean(finals)) if finals else math.nan)
        except (ReplayError, *STORE_ERRORS):
            raise
        except Exception:  # a missing point only weakens the fit
            losses.append(math.nan)
        meter(b)
    meter.finish()
    out = BaselineFit(budgets, losses)
    try:
        out.fit = stats.fit_power_law(budgets, losses).as_dict()
    except (ValueError, RuntimeError) as err:
        out.error = f"{type(err).__name__}: {err}"
    return out


# ------------------------------------------------------------------ helpers


def _tuning_batches(trials: int, batch: int, rounds: int) -> int:
    """Tuning batches of one optimizer on one task with ``rounds`` widening rounds."""
    return -(-trials // batch) + rounds * -(-round_trials(trials) // batch)


def _units(n_cands: int, trials: int, batch: int, T: int, scaling: Sequence[float]) -> float:
    """Training steps (of batched runs) one task costs: tuning, final runs, budget curve."""
    tuning = n_cands * (-(-trials // batch) * T + T) if n_cands else 0
    return float(tuning + sum(_extra_budgets(T, scaling)))


def _extra_budgets(T: int, scaling: Sequence[float]) -> list[int]:
    """The baseline's budgets other than ``T`` itself (each one more training run)."""
    return sorted(b for b in {max(1, round(f * T)) for f in scaling} if b != T)


def _tasks(names: Sequence[str]) -> list:
    if not names:
        raise ValueError("need at least one task")
    out, seen = [], set()
    for n in names:
        t = task_registry.get(n.strip())  # KeyError naming the known tasks
        if t.name not in seen:
            seen.add(t.name)
            out.append(t)
    return out
