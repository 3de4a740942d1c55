"""The report's figures, drawn with matplotlib's Agg backend (no display needed).

Each function returns a :class:`matplotlib.figure.Figure` or ``None`` when the
run holds nothing to draw; :func:`save` writes it as a PNG and returns the bytes.

* :func:`fitness` -- every evolution evaluation's fitness (hollow: stopped at a
  hurdle; triangles at the bottom: diverged or failed, or below the axis), the
  best complete fitness so far, and the population's median and 25-75% band
  after each result.
* :func:`cache` -- what became of the children generated: rejected (invalid),
  structural duplicate, behavioural duplicate, evaluated.
* :func:`funnel` -- per tier: candidates evaluated there and those beating the
  baseline (promoted on, or surviving the last tier).
* :func:`pareto` -- fitness against length for every distinct behaviour, the
  Pareto front joined.
* :func:`curves` -- validation loss against step on each held-out task: each
  winner (solid) and the tuned baseline (dashed).
* :func:`bench` -- mean validation loss over seeds per optimizer and task of an
  ``optforge bench`` result (``results.json``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .data import RunData  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def save(fig: Figure, path: Path) -> bytes:
    """Write ``fig`` as a PNG to ``path`` and return its bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def _finite(xs) -> list[float]:
    return [x for x in xs if x is not None and math.isfinite(x)]


def fitness(run: RunData) -> Figure | None:
    rows = run.evolution()
    if not rows:
        return None
    x = np.arange(1, len(rows) + 1)
    f = np.array([r.fitness for r in rows], dtype=float)
    complete = np.array([r.complete for r in rows])
    finite = np.isfinite(f)
    best, running = [], -math.inf
    for fi, ci in zip(f, complete, strict=True):
        if ci and fi > running:
            running = fi
        best.append(running if math.isfinite(running) else np.nan)
    pop_x, med, lo, hi = [], [], [], []
    for n, ids in run.population:
        vals = _finite(run.individuals[i].fitness for i in ids if i in run.individuals)
        if vals:
            pop_x.append(n)
            q25, q50, q75 = np.percentile(vals, [25, 50, 75])
            med.append(q50)
            lo.append(q25)
            hi.append(q75)
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    values = f[finite]
    bottom = top = 0.0
    if len(values):
        top = float(np.max(values))
        bottom = float(min(np.percentile(values, 5), np.min(med) if med else top))
        span = max(top - bottom, 1e-3)
        bottom, top = bottom - 0.08 * span, top + 0.08 * span
    below = ~finite | (f < bottom)
    ok = finite & ~below
    ax.scatter(x[ok & complete], f[ok & complete], s=14, color=COLORS[0], alpha=0.7,
               label="evaluated (complete)")
    if np.any(ok & ~complete):
        ax.scatter(x[ok & ~complete], f[ok & ~complete], s=14, facecolors="none",
                   edgecolors=COLORS[0], alpha=0.7, label="stopped at a hurdle")
    if np.any(below):
        ax.scatter(x[below], np.full(int(below.sum()), bottom), marker="v", s=16,
                   color="0.55", label=f"diverged, failed or below the axis ({int(below.sum())})")
    if pop_x:
        ax.fill_between(pop_x, lo, hi, color=COLORS[2], alpha=0.18, step="post",
                        label="population 25-75%")
        ax.step(pop_x, med, where="post", color=COLORS[2], lw=1.4, label="population median")
    ax.step(x, best, where="post", color=COLORS[1], lw=2.2, label="best so far")
    ax.axhline(0.0, color="0.3", lw=0.8, ls=":", label="tuned baseline (0)")
    ax.set_ylim(bottom, top)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("fitness  ln(baseline loss / loss)")
    ax.set_title(f"fitness over evaluations ({run.stage_spec('tier0')})")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


CACHE_PARTS = (("invalid", "rejected draws"), ("structural", "structural duplicates"),
               ("behavioural", "behavioural duplicates"), ("evaluated", "evaluated"))


def cache(counters: dict) -> Figure | None:
    total = counters.get("generated", 0)
    if not total:
        return None
    fig, ax = plt.subplots(figsize=(8, 2.3), layout="constrained")
    left = 0
    for (key, label), color in zip(CACHE_PARTS, ("0.6", COLORS[3], COLORS[4], COLORS[0]),
                                   strict=True):
        n = counters.get(key, 0)
        ax.barh([0], [n], left=left, color=color, label=f"{label}: {n} ({n / total:.0%})")
        left += n
    ax.set_xlim(0, total)
    ax.set_yticks([])
    ax.set_xlabel(f"children generated ({total})")
    fig.legend(fontsize=8, ncol=2, loc="outside lower center", frameon=False)
    return fig


def funnel(rows: list[dict]) -> Figure | None:
    """``rows``: per tier ``{"stage", "spec", "evaluated", "passed"}``."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    x = np.arange(len(rows))
    ev = [r["evaluated"] for r in rows]
    ok = [r["passed"] for r in rows]
    ax.bar(x - 0.2, ev, 0.4, color=COLORS[0], label="candidates evaluated")
    ax.bar(x + 0.2, ok, 0.4, color=COLORS[2], label="passed (fitness > threshold)")
    for xi, a, b in zip(x, ev, ok, strict=True):
        ax.text(xi - 0.2, a, str(a), ha="center", va="bottom", fontsize=8)
        ax.text(xi + 0.2, b, str(b), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [f"{r['stage']}\n{r['spec']}" for r in rows], fontsize=8)
    ax.set_ylabel("candidates")
    ax.set_ylim(0, max(ev + [1]) * 1.2)
    ax.set_title("funnel: hall of fame (tier0) and promotions through the tiers")
    ax.legend(fontsize=8)
    return fig


def pareto(run: RunData) -> Figure | None:
    everyone = run.distinct
    if not everyone:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    fx = np.array([c.fitness for c in everyone])
    lx = np.array([c.length for c in everyone])
    ax.scatter(lx, fx, s=12, color="0.6", label="distinct behaviours (complete)")
    front = sorted(run.pareto, key=lambda c: c.length)
    ax.plot([c.length for c in front], [c.fitness for c in front], "o-", color=COLORS[1],
            ms=5, label="Pareto front (fitness up; length, slots down)")
    lo = float(np.percentile(fx, 5))
    span = max(float(fx.max()) - lo, 1e-3)
    ax.set_ylim(lo - 0.1 * span, float(fx.max()) + 0.1 * span)
    ax.set_xlabel("length (op calls)")
    ax.set_ylabel("fitness")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def curves(series: list[tuple[str, dict[str, dict]]]) -> Figure | None:
    """``series``: ``(label, Evaluation.curves)`` per winner; one panel per task."""
    tasks = sorted({t for _, c in series for t in c})
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 0.8, 3.6),
                             layout="constrained", squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        baseline_drawn = False
        for k, (label, c) in enumerate(series):
            if task not in c:
                continue
            cur = c[task]
            ax.plot(cur["steps"], cur["loss"], color=COLORS[k % len(COLORS)], lw=1.8,
                    label=label)
            if "baseline" in cur and not baseline_drawn:
                ax.plot(cur["steps"], cur["baseline"], color="0.2", ls="--", lw=1.5,
                        label="tuned baseline")
                baseline_drawn = True
        _curve_axes(ax, task, "validation loss")
    return fig


def bench(result: dict) -> Figure | None:
    """Mean validation loss over the seeds that did not diverge, per optimizer and task."""
    entries = [e for e in result.get("entries", []) if e.get("loss_curves")]
    tasks = list(dict.fromkeys(e["task"] for e in entries))
    if not tasks:
        return None
    optimizers = list(dict.fromkeys(e["optimizer"] for e in entries))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 0.8, 3.6),
                             layout="constrained", squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for e in entries:
            if e["task"] != task:
                continue
            ok = [c for c, s in zip(e["loss_curves"], e.get("seed_status", []), strict=False)
                  if s == "ok"]
            if not ok:
                continue
            mean = np.nanmean(np.array([[np.nan if v is None else v for v in c] for c in ok],
                                       dtype=float), axis=0)
            k = optimizers.index(e["optimizer"])
            ax.plot(e["eval_steps"], mean, color=COLORS[k % len(COLORS)], lw=1.8,
                    label=f"{e['optimizer']} ({len(ok)} seeds)")
        _curve_axes(ax, task, "validation loss (mean over seeds)")
    return fig


def _curve_axes(ax, task: str, ylabel: str) -> None:
    """Loss curves' axes: log scale when every value is positive, title, labels, legend."""
    _log_if_positive(ax)
    ax.set_title(task)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _log_if_positive(ax) -> None:
    ys = [y for line in ax.get_lines() for y in line.get_ydata()]
    ys = [float(y) for y in ys if y is not None and np.isfinite(y)]
    if ys and min(ys) > 0 and max(ys) / min(ys) > 20:
        ax.set_yscale("log")
