"""PNG plots of a benchmark (matplotlib, Agg backend).

* ``curves_<task>.png``: validation loss against steps, per optimizer the
  mean over the seeds that did not diverge, with a band from the lowest to
  the highest seed; the baseline's final loss (the target) dashed, and the
  baseline's fitted final-loss-vs-budget curve dotted.
* ``profile.png``: the performance profile ``rho(tau)`` of each optimizer.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .results import OK, BenchResult
from .stats import PowerLaw, performance_profile


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def curves_plot(result: BenchResult, task: str, path: Path) -> Path:
    plt = _plt()
    info = result.tasks[task]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    positive = True
    for e in (x for x in result.entries if x.task == task):
        ok = [c for c, s in zip(e.loss_curves, e.seed_status, strict=True) if s == "ok"]
        if e.status != OK or not ok:
            ax.plot([], [], label=f"{e.optimizer} (failed)", linestyle="none")
            continue
        steps = np.asarray(e.eval_steps, dtype=float)
        curves = np.asarray(ok, dtype=float)
        positive &= bool(np.all(curves > 0))
        (line,) = ax.plot(steps, curves.mean(axis=0), label=e.optimizer, lw=1.6)
        ax.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=line.get_color(),
                        alpha=0.2, lw=0)
    baseline = result.settings["baseline"]
    if info["target"] is not None:
        ax.axhline(info["target"], color="k", ls="--", lw=0.8,
                   label=f"{baseline} final loss (target)")
    bfit = info.get("baseline_fit")
    if bfit is not None and bfit.fit:
        fit = PowerLaw(**bfit.fit)
        s = np.geomspace(fit.s_min, fit.s_max, 100)
        ax.plot(s, fit(s), color="grey", ls=":", lw=1.2,
                label=f"{baseline} final loss vs budget (fit)")
        ax.plot(bfit.budgets, bfit.losses, "o", color="grey", ms=3)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{task} ({result.settings['tier']}): mean and range over "
                 f"{result.settings['seeds']} seeds")
    return _finish(plt, fig, ax, path)


def profile_plot(result: BenchResult, path: Path) -> Path:
    plt = _plt()
    tau_max = result.settings["tau_max"]
    tau = np.linspace(1.0, tau_max, 601)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    styles = ["-", "--", "-.", ":"]
    for i, o in enumerate(result.optimizers):
        ratios = result.ratios.get(o, {})
        if not ratios:
            continue
        score = result.scores.get(o, math.nan)
        # coinciding profiles stay visible: line styles cycle, widths shrink
        ax.step(tau, performance_profile(ratios, tau), where="post", ls=styles[i % 4],
                lw=max(3.0 - 0.5 * i, 1.0), label=f"{o} (score {score:.3f})")
    ax.set_xlim(1.0, tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (steps to target / best steps to target)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title("performance profile")
    return _finish(plt, fig, ax, path)


def write_plots(result: BenchResult, out: Path) -> dict[str, Path]:
    files = {f"curves_{t}": curves_plot(result, t, out / f"curves_{_safe(t)}.png")
             for t in result.settings["tasks"]}
    if any(result.ratios.values()):
        files["profile"] = profile_plot(result, out / "profile.png")
    return files


def _finish(plt, fig, ax, path: Path) -> Path:
    """Grid, legend, layout; write the PNG and free the figure."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
