"""A benchmark's results as a terminal table, JSON and CSV (plots: :mod:`.plots`)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..cliout import table_width
from .results import ALPHA, OK, BenchResult, Entry

CSV_FIELDS = [
    "task", "optimizer", "status", "reason", "metric", "higher_is_better",
    "final_metric_mean", "final_metric_ci_low", "final_metric_ci_high", "final_metric_std",
    "final_loss_mean", "final_loss_ci_low", "final_loss_ci_high", "seeds", "diverged_seeds",
    "target_loss", "steps_to_target", "speedup", "speedup_clipped", "t_statistic", "p_value",
    "p_value_holm", "loss_t_statistic", "loss_p_value", "loss_p_value_holm", "verdict",
    "profile_score", "trials", "pruned_trials", "diverged_trials", "widening_rounds", "edges",
    "config", "space", "wall_time_s",
]


# ------------------------------------------------------------------ formatting


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}g}"


def fmt_summary(s, digits: int = 4) -> str:
    """``mean ± half-width of the 95% CI`` (just the mean when n = 1)."""
    if s is None:
        return "-"
    if s.n < 2:
        return f"{_num(s.mean, digits)} (n=1)"
    return f"{_num(s.mean, digits)} ± {_num(s.half_width, 2)}"


def fmt_steps(x: float | None) -> str:
    if x is None:
        return "-"
    return "never" if math.isinf(x) else f"{x:.0f}"


def fmt_p(e: Entry, baseline: str, which: str = "loss") -> str:
    """The Holm-adjusted p-value of the ``loss`` or ``metric`` test against the baseline;
    ``tie`` (both constant and equal), ``n/a`` (undefined: no spread, fewer than 2 seeds)."""
    if e.optimizer == baseline:
        return "(baseline)"
    t = e.ttest_loss if which == "loss" else e.ttest
    if t is None:
        return "-"
    if t.tie:
        return "tie"
    p = e.p_holm.get(which, t.pvalue) if e.p_holm else t.pvalue
    if p is None or math.isnan(p):
        return f"n/a ({t.note})" if t.note else "n/a"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def fmt_edges(e: Entry) -> str:
    """Widened ranges: ``lr↑↑`` (lr's top widened twice); ``lr↑ CLIPPED``: still at an edge
    when no widening was left (the hard limit)."""
    t = e.tuning
    if t is None or not t.edges:
        return "-"
    marks: dict[str, str] = {}
    for edge in t.edges:  # an arrow per widening; an edge met at the hard limit has none
        marks.setdefault(edge.name, "")
        if edge.widened_to is not None:
            marks[edge.name] += "↑" if edge.side == "high" else "↓"
    clipped = {edge.name for edge in t.clipped}
    return ", ".join(f"{n}{m}{' CLIPPED' if n in clipped else ''}" for n, m in marks.items())


def fmt_status(e: Entry) -> str:
    if e.status != OK:
        return f"FAILED: {e.reason}"
    return f"ok ({e.reason})" if e.reason else "ok"


# ------------------------------------------------------------------ the table


def results_table(result: BenchResult, width: int = 120) -> Table:
    """One row per (task, optimizer); numbers wrap only on terminals narrower than 120."""
    st = result.settings
    baseline = st["baseline"]
    shown = escape(baseline)  # labels are text, not Rich markup
    table = Table(title=f"optforge bench: {st['trials']} tuning trials per optimizer and task, "
                        f"{st['seeds']} seeds, tier {st['tier']}",
                  caption=f"final metric and val loss: mean ± 95% CI half-width over seeds; "
                          f"target: {shown}'s final val loss; speedup: data-equivalent, "
                          f"against {shown}'s loss-vs-budget fit; p: Welch t-tests of the "
                          f"final val loss and metric against {shown}, Holm-adjusted over "
                          f"the table's comparisons; verdict: decided by the val loss p < "
                          f"{ALPHA:g} (tie: equal constants; clipped: a tuned value at the edge "
                          f"of its final range); widened: ranges widened at an edge (↑ top, "
                          f"↓ bottom)", caption_justify="left")
    name_width = max(len(t) for t in st["tasks"])
    table.add_column("task", overflow="fold", min_width=name_width)
    table.add_column("optimizer", overflow="fold",
                     min_width=max(len(o) for o in result.optimizers))
    for col in ("final metric", "val loss", "steps to\ntarget", "speedup", "p loss",
                "p metric", "verdict", "trials\nok/pr/div", "widened"):
        table.add_column(col, justify="right", no_wrap=width >= 120, overflow="fold")
    table.add_column("status", overflow="fold")
    for task in st["tasks"]:
        info = result.tasks[task]
        rows = [e for e in result.entries if e.task == task]
        for i, e in enumerate(rows):
            t = e.tuning
            trials = (f"{t.count('complete')}/{t.count('pruned')}/{t.count('diverged')}"
                      if t is not None else "-")
            metric = f"{info['metric']} {'↑' if info['higher_is_better'] else '↓'}"
            label = f"{task}\n{metric}" if i == 0 else ""
            table.add_row(
                label, escape(e.optimizer), fmt_summary(e.final_metric), fmt_summary(e.final_loss),
                fmt_steps(e.steps_to_target), str(e.speedup) if e.speedup else "-",
                fmt_p(e, baseline, "loss"), fmt_p(e, baseline, "metric"),
                "-" if e.optimizer == baseline else (e.verdict or "-"), trials, fmt_edges(e),
                escape(fmt_status(e)), end_section=i == len(rows) - 1)
    return table


def scores_table(result: BenchResult) -> Table:
    """AlgoPerf performance-profile score of each optimizer across the tasks."""
    tau = result.settings["tau_max"]
    base = escape(result.settings["baseline"])
    table = Table(title=f"performance profile (steps to the {base} final loss, tau up to "
                        f"{tau:g})")
    table.add_column("optimizer")
    table.add_column("score", justify="right")
    table.add_column("tasks within tau", justify="right")
    table.add_column("failed", justify="right")
    order = sorted(result.optimizers, key=lambda o: -_nan_low(result.scores.get(o)))
    for o in order:
        ratios = result.ratios.get(o, {})
        within = sum(r <= tau for r in ratios.values())
        failed = sum(e.status != OK for e in result.entries if e.optimizer == o)
        table.add_row(escape(o), _num(result.scores.get(o), 3), f"{within}/{len(ratios)}",
                      str(failed))
    return table


def _nan_low(x: float | None) -> float:
    return -math.inf if x is None or math.isnan(x) else x


def render(result: BenchResult, width: int = 120) -> str:
    """The tables as plain text (for files and READMEs), at least ``width`` wide and as
    wide as they need to keep every column whole."""
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    tables = (results_table(result, width), scores_table(result))
    console.width = max(width, table_width(console, *tables))
    for t in tables:
        console.print(t)
    return console.export_text()


# ------------------------------------------------------------------ files


def csv_rows(result: BenchResult) -> list[dict]:
    rows = []
    for e in result.entries:
        info = result.tasks[e.task]
        fm, fl, t = e.final_metric, e.final_loss, e.tuning
        rows.append({
            "task": e.task, "optimizer": e.optimizer, "status": e.status,
            "reason": e.reason or "", "metric": info["metric"],
            "higher_is_better": info["higher_is_better"],
            "final_metric_mean": fm.mean if fm else None,
            "final_metric_ci_low": fm.low if fm else None,
            "final_metric_ci_high": fm.high if fm else None,
            "final_metric_std": fm.std if fm else None,
            "final_loss_mean": fl.mean if fl else None,
            "final_loss_ci_low": fl.low if fl else None,
            "final_loss_ci_high": fl.high if fl else None,
            "seeds": len(e.seeds), "diverged_seeds": e.diverged_seeds,
            "target_loss": info["target"], "steps_to_target": e.steps_to_target,
            "speedup": e.speedup.value if e.speedup else None,
            "speedup_clipped": (e.speedup.clipped or "") if e.speedup else "",
            "t_statistic": e.ttest.statistic if e.ttest else None,
            "p_value": e.ttest.pvalue if e.ttest else None,
            "p_value_holm": e.p_holm["metric"] if e.p_holm else None,
            "loss_t_statistic": e.ttest_loss.statistic if e.ttest_loss else None,
            "loss_p_value": e.ttest_loss.pvalue if e.ttest_loss else None,
            "loss_p_value_holm": e.p_holm["loss"] if e.p_holm else None,
            "verdict": e.verdict or "",
            "profile_score": result.scores.get(e.optimizer),
            "trials": len(t.trials) if t else 0,
            "pruned_trials": t.count("pruned") if t else 0,
            "diverged_trials": t.count("diverged") if t else 0,
            "widening_rounds": t.rounds if t else 0,
            "edges": "; ".join(str(x) for x in t.edges) if t else "",
            "config": json.dumps(e.config, sort_keys=True) if e.config else "",
            "space": json.dumps(t.space) if t and t.space else "",
            "wall_time_s": round(e.wall_time, 3),
        })
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return "inf" if math.isinf(v) and v > 0 else repr(v)
    return str(v)


def write_outputs(result: BenchResult, out: Path, plots: bool = True) -> dict[str, str]:
    """Write ``results.json``, ``results.csv``, ``results.txt`` and (``plots``) PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "csv": out / "results.csv", "table": out / "results.txt"}
    if plots:
        from .plots import write_plots

        files.update(write_plots(result, out))
    result.files = {k: str(v) for k, v in files.items()}
    files["json"].write_text(json.dumps(result.as_dict(), indent=1, allow_nan=False) + "\n")
    with files["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in csv_rows(result):
            writer.writerow({k: _cell(v) for k, v in row.items()})
    files["table"].write_text(render(result))
    return result.files
