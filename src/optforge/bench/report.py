"""A benchmark's results as tables (data, printed as plain text here and with Rich by the
command), JSON and CSV (plots: :mod:`.plots`)."""

from __future__ import annotations

import csv
import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

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


# ------------------------------------------------------------------ the tables


@dataclass(frozen=True)
class Column:
    header: str  # may hold a line break
    right: bool = False  # right-justified (numbers)
    min_width: int = 0


@dataclass
class TextTable:
    """A table as data: plain-text cells (never markup), rows in sections. Written here as
    plain text (``results.txt``); the command prints it with Rich (:mod:`optforge.cli.tables`)."""

    title: str
    columns: list[Column]
    sections: list[list[list[str]]] = field(default_factory=list)
    caption: str = ""


def results_data(result: BenchResult) -> TextTable:
    """One row per (task, optimizer), a section per task."""
    st = result.settings
    baseline = st["baseline"]
    title = (f"optforge bench: {st['trials']} tuning trials per optimizer and task, "
             f"{st['seeds']} seeds, tier {st['tier']}")
    caption = (f"final metric and val loss: mean ± 95% CI half-width over seeds; "
               f"target: {baseline}'s final val loss; speedup: data-equivalent, "
               f"against {baseline}'s loss-vs-budget fit; p: Welch t-tests of the "
               f"final val loss and metric against {baseline}, Holm-adjusted over "
               f"the table's comparisons; verdict: decided by the val loss p < "
               f"{ALPHA:g} (tie: equal constants; clipped: a tuned value at the edge "
               f"of its final range); widened: ranges widened at an edge (↑ top, "
               f"↓ bottom)")
    columns = [Column("task", min_width=max(len(t) for t in st["tasks"])),
               Column("optimizer", min_width=max(len(o) for o in result.optimizers))]
    columns += [Column(c, right=True) for c in (
        "final metric", "val loss", "steps to\ntarget", "speedup", "p loss", "p metric",
        "verdict", "trials\nok/pr/div", "widened")]
    columns.append(Column("status"))
    table = TextTable(title, columns, caption=caption)
    for task in st["tasks"]:
        info = result.tasks[task]
        rows = []
        for i, e in enumerate(e for e in result.entries if e.task == task):
            t = e.tuning
            trials = (f"{t.count('complete')}/{t.count('pruned')}/{t.count('diverged')}"
                      if t is not None else "-")
            metric = f"{info['metric']} {'↑' if info['higher_is_better'] else '↓'}"
            rows.append([
                f"{task}\n{metric}" if i == 0 else "", e.optimizer, fmt_summary(e.final_metric),
                fmt_summary(e.final_loss), fmt_steps(e.steps_to_target),
                str(e.speedup) if e.speedup else "-", fmt_p(e, baseline, "loss"),
                fmt_p(e, baseline, "metric"),
                "-" if e.optimizer == baseline else (e.verdict or "-"), trials, fmt_edges(e),
                fmt_status(e)])
        table.sections.append(rows)
    return table


def scores_data(result: BenchResult) -> TextTable:
    """AlgoPerf performance-profile score of each optimizer across the tasks."""
    tau = result.settings["tau_max"]
    table = TextTable(f"performance profile (steps to the {result.settings['baseline']} final "
                      f"loss, tau up to {tau:g})",
                      [Column("optimizer"), Column("score", right=True),
                       Column("tasks within tau", right=True), Column("failed", right=True)])
    rows = []
    for o in sorted(result.optimizers, key=lambda o: -_nan_low(result.scores.get(o))):
        ratios = result.ratios.get(o, {})
        within = sum(r <= tau for r in ratios.values())
        failed = sum(e.status != OK for e in result.entries if e.optimizer == o)
        rows.append([o, _num(result.scores.get(o), 3), f"{within}/{len(ratios)}", str(failed)])
    table.sections.append(rows)
    return table


def _nan_low(x: float | None) -> float:
    return -math.inf if x is None or math.isnan(x) else x


def text(table: TextTable, width: int = 120) -> str:
    """``table`` as plain text: every column at its natural width (nothing is cut), a rule
    under the header and between sections, the caption wrapped at ``width``."""
    cells = [[c.header.split("\n") for c in table.columns]]
    cells += [[v.split("\n") for v in row] for section in table.sections for row in section]
    widths = [max(c.min_width, *(len(line) for row in cells for line in row[j]))
              for j, c in enumerate(table.columns)]

    def lines(row: list[list[str]]) -> list[str]:
        out = []
        for k in range(max(len(v) for v in row)):
            parts = [(v[k] if k < len(v) else "") for v in row]
            cells = zip(parts, widths, table.columns, strict=True)
            out.append(" | ".join(p.rjust(w) if c.right else p.ljust(w)
                                  for p, w, c in cells).rstrip())
        return out

    rule = "-+-".join("-" * w for w in widths)
    out = [table.title, *lines(cells[0]), rule]
    n = 1
    for i, section in enumerate(table.sections):
        if i:
            out.append(rule)
        for _ in section:
            out += lines(cells[n])
            n += 1
    if table.caption:
        out += textwrap.wrap(table.caption, max(width, len(rule)))
    return "\n".join(out) + "\n"


def render(result: BenchResult, width: int = 120) -> str:
    """The tables as plain text (``results.txt``): every column whole."""
    return text(results_data(result), width) + "\n" + text(scores_data(result), width)


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
