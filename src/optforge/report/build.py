"""``make_report(RUN_DIR)``: the run read back (:mod:`.data`), drawn (:mod:`.figures`) and
written as one HTML page (:mod:`.html`) with its PNG figures beside it.

Sections: the run and its status (an unfinished run says so and shows what it
holds); fitness over evaluations; cache statistics; the funnel; the winners;
the lineage of the winner (or of the fittest program) with the diff of every
mutation; the hall of fame and the Pareto front with formulas; the winners'
validation curves against the tuned baseline on the held-out tasks; and, when
given an ``optforge bench`` output directory, its curves and final metrics.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..lang.ir import Program
from ..search.filters import rejections
from ..search.results import Candidate
from . import figures
from . import html as h
from .data import RunData, best_learning_rates, load_run
from .lineage import lineage


@dataclass
class Report:
    """What :func:`make_report` wrote."""

    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    finished: bool = True
    notes: list[str] = field(default_factory=list)


def make_report(run_dir: str | Path, out: str | Path | None = None,
                bench: str | Path | None = None) -> Report:
    """Write ``report.html`` and its PNGs to ``out`` (default ``RUN_DIR/report``).

    ``bench``: an ``optforge bench`` output directory (its ``results.json``) to add.
    Raises :class:`~optforge.store.db.StoreError` if ``run_dir`` is not a search run,
    ``FileNotFoundError``/``ValueError`` for an unusable ``bench``.
    """
    run = load_run(run_dir)
    bench_result = _bench(Path(bench)) if bench is not None else None
    out = Path(out) if out is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out)
    report = Report(out / "report.html", finished=run.finished_ok)
    parts = [_header(run), _fitness(run, writer), _cache(run, writer), _funnel(run, writer),
             _winners(run), _lineage(run), _hall_of_fame(run), _pareto(run, writer),
             _heldout(run, writer)]
    if bench_result is not None:
        parts.append(_bench_section(bench_result, Path(bench), writer))
    parts.append(_footer(run, out))
    report.html.write_text(h.page(f"optforge search report: {run.path.name}", "\n".join(parts)))
    report.figures = dict(writer.files)
    return report


class _Writer:
    """Saves figures as PNG files and returns their HTML (embedded as data URIs)."""

    def __init__(self, out: Path):
        self.out = out
        self.files: dict[str, Path] = {}

    def __call__(self, name: str, fig, alt: str, caption: str) -> str:
        if fig is None:
            return ""
        path = self.out / f"{name}.png"
        png = figures.save(fig, path)
        self.files[name] = path
        return h.figure(png, alt, caption, path.name)


_FORMULAS: dict[str, tuple[str, str]] = {}


def formulas(program: Program) -> tuple[str, str]:
    """Plain-text formula and LaTeX of a program (cached by structural hash)."""
    from ..lang.symbolic import formula, latex

    key = program.hash
    if key not in _FORMULAS:
        try:
            _FORMULAS[key] = (formula(program), latex(program))
        except Exception as err:  # noqa: BLE001 - a formula is a nicety; say why it is missing
            _FORMULAS[key] = (f"(no formula: {type(err).__name__}: {err})", "")
    return _FORMULAS[key]


# ------------------------------------------------------------------ sections


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "?"


def _header(run: RunData) -> str:
    cfg = run.config
    evo = run.evolution()
    out = [f"<h1>optforge search report</h1><p class=\"muted\">run directory "
           f"<code>{h.esc(run.path)}</code>, created {h.esc(_when(run.created))}</p>"]
    if run.finished_ok:
        secs = next((d.get("seconds") for t, k, d in reversed(run.events) if k == "finish"),
                    None)
        took = f" in {secs:.0f} s" if isinstance(secs, int | float) else ""
        out.append(f'<div class="banner ok">Finished {h.esc(_when(run.finished))}{took}: '
                   f"{len(evo)} evolution evaluations, {len(run.evaluations)} in all.</div>")
    else:
        budget = cfg.get("evaluations", "?")
        out.append(
            '<div class="banner warn"><strong>Unfinished run.</strong> The store says '
            f"<code>{h.esc(run.status)}</code>: the search is still running, or it was "
            f"stopped before the end (resume it with <code>optforge search --resume "
            f"{h.esc(run.path)}</code>). Shown: what it holds so far, {len(evo)} of {budget} "
            "evolution evaluations; the funnel, the winners and the held-out curves may be "
            "missing or partial.</div>")
    rows = [("warm start", ", ".join(map(str, cfg.get("init", [])))),
            ("evaluations (budget)", cfg.get("evaluations", "?")),
            ("population / tournament", f"{cfg.get('population', '?')} / "
                                        f"{cfg.get('tournament', '?')}"),
            ("tiers", "; ".join(f"{s}: {run.stage_spec(s)}" for s in run.tiers)),
            ("selection suite", cfg.get("selection") or "(none)"),
            ("held-out stage", cfg.get("heldout") or "(none)"),
            ("baseline", f"{cfg.get('baseline', '?')}, tuned over "
                         f"{len(cfg.get('baseline_lr_grid') or cfg.get('lr_grid', []))} "
                         "learning rates" + (" (multiples of each task's AdamW recipe rate)"
                                             if cfg.get("lr_grid_relative") else "")),
            ("seed", cfg.get("seed", "?"))]
    out.append(h.table(["setting", "value"], [(h.esc(k), h.esc(v)) for k, v in rows]))
    if run.hall_of_fame:
        best = run.hall_of_fame[0]
        out.append(f"<p>Best complete fitness: <strong>{h.num(best.fitness)}</strong> "
                   f"(program #{best.id}, length {best.length}, {best.slots} slots). Fitness is "
                   f"ln(baseline loss / loss), {AGGREGATES.get(cfg.get('aggregate'), 'averaged')}"
                   " over the tasks: 0 = as good as the tuned baseline, 0.1 = about 10% lower "
                   "loss.</p>")
    else:
        out.append("<p>No complete evaluation yet.</p>")
    return "\n".join(out)


AGGREGATES = {"mean": "averaged", "min": "the worst (minimum)"}


def _fitness(run: RunData, fig) -> str:
    return ("<h2>Fitness over evaluations</h2>" + (fig(
        "fitness", figures.fitness(run), "fitness of every evaluation, best so far and the "
        "population", "Each dot is one evaluated child; the line is the best complete "
        "fitness so far; the band is the population's 25-75% range after each result")
        or "<p>No evaluation recorded yet.</p>"))


def _cache(run: RunData, fig) -> str:
    c = run.counters
    if not c:
        return "<h2>Cache statistics</h2><p>No counters recorded yet.</p>"
    gen = c.get("generated", 0)
    valid = c.get("structural", 0) + c.get("behavioural", 0) + c.get("evaluated", 0)

    def frac(n: int, d: int) -> str:
        return f"{n / d:.1%}" if d else "-"

    rows = [("generated", gen, "", "every mutation drawn")]
    for key, label in figures.CACHE_PARTS:
        n = c.get(key, 0)
        rows.append((label, n, frac(n, gen), {
            "invalid": "rejected by inference, the limits, an unchanged hash or the filters",
            "structural": "same canonical hash as a program seen before: skipped",
            "behavioural": "same fingerprint as an evaluated program: its fitness reused",
            "evaluated": "trained on the first tier"}[key]))
    filtered = c.get("filtered", 0)
    if filtered:
        rows.append(("filtered", filtered, frac(filtered, gen),
                     "of the invalid: rejected by the invariance filters before training"))
        # by filter (absent in a run stored before the split)
        rows += [(f"filter {name}", n, frac(n, filtered), f"of the filtered: rejected by {name}")
                 for name, n in rejections(c.get("filtered_by", {}))]
    rows.append(("skip rate", c.get("structural", 0) + c.get("behavioural", 0),
                 frac(c.get("structural", 0) + c.get("behavioural", 0), valid),
                 "of the valid children, the share that cost no training"))
    for key, what in (("hurdle_stopped", "stopped early at a hurdle"),
                      ("diverged", "diverged at every learning rate"),
                      ("errors", "failed to run"), ("restarts", "population restarts")):
        rows.append((key.replace("_", " "), c.get(key, 0), frac(c.get(key, 0),
                     c.get("evaluated", 0)) if key != "restarts" else "", what))
    body = h.table(["", "count", "share", "meaning"],
                   [(h.esc(a), str(b), h.esc(s), h.esc(m)) for a, b, s, m in rows], (1, 2))
    return ("<h2>Cache statistics</h2>" + fig(
        "cache", figures.cache(c), "what became of the children generated",
        "Children generated, by outcome") + body)


def funnel_rows(run: RunData) -> list[dict]:
    """Per funnel stage (the tiers, then the selection suite): candidates evaluated there
    and those that beat the baseline."""
    threshold = float(run.config.get("promote_threshold", 0.0))
    fame = run.hall_of_fame

    def beats(f: float, complete: bool) -> bool:
        return complete and math.isfinite(f) and f > threshold

    rows = [{"stage": "tier0", "spec": run.stage_spec("tier0"), "evaluated": len(fame),
             "passed": sum(beats(c.fitness, c.evaluation.complete) for c in fame)}]
    for stage in run.funnel[1:]:
        evs = {e.key: e for e in run.evaluations if e.stage == stage and e.key >= 0}
        rows.append({"stage": stage, "spec": run.stage_spec(stage), "evaluated": len(evs),
                     "passed": sum(beats(e.fitness, e.complete) for e in evs.values())})
    return rows


def _funnel(run: RunData, fig) -> str:
    rows = funnel_rows(run)
    threshold = float(run.config.get("promote_threshold", 0.0))
    sel = " and then the selection suite" if "selection" in run.funnel else ""
    out = ["<h2>Funnel</h2>",
           f"<p>The hall of fame (evaluated on tier0) climbs the tiers{sel}: a candidate whose "
           f"complete fitness exceeds the promotion threshold {threshold:g} (0: the tuned "
           "baseline's) is promoted, at "
           f"most {h.esc(run.config.get('promote_max', '?'))} per stage; those that beat it on "
           "the last stage survive and are simplified.</p>"]
    out.append(fig("funnel", figures.funnel(rows), "candidates per funnel tier",
                   "Candidates evaluated and beating the baseline per tier"))
    out.append(h.table(["tier", "stage", "candidates", "passed", "promoted on"],
                       [(h.esc(r["stage"]), h.esc(r["spec"]), str(r["evaluated"]),
                         str(r["passed"]), str(rows[i + 1]["evaluated"]) if i + 1 < len(rows)
                         else "(survivors)") for i, r in enumerate(rows)], (2, 3, 4)))
    stages = run.funnel
    promoted = sorted({e.key for e in run.evaluations if e.stage in stages[1:] and e.key >= 0})
    if promoted:
        fit = {(e.key, e.stage): e.fitness for e in run.evaluations if e.key >= 0}
        out.append(h.table(["program", *stages],
                           [(f"#{k}", *(h.num(fit.get((k, s))) if (k, s) in fit else "-"
                                        for s in stages)) for k in promoted],
                           range(1, len(stages) + 1)))
    elif len(rows) > 1 and run.finished_ok:
        out.append("<p>No candidate beat the baseline on tier0, so none was promoted.</p>")
    return "\n".join(out)


def _winners(run: RunData) -> str:
    out = ["<h2>Winners</h2>"]
    winners = run.winners()
    if not run.finished_ok:
        out.append("<p>The run has not finished: winners are chosen after the funnel.</p>")
        return "\n".join(out)
    if not winners:
        out.append("<p>No candidate beat the baseline through the funnel, so there is no "
                   "winner. The hall of fame below still ranks everything evaluated.</p>")
        return "\n".join(out)
    for i, w in enumerate(winners, 1):
        cand = w.get("candidate", {})
        stages = ", ".join(f"{k} {h.num(v)}" for k, v in w.get("stage_fitness", {}).items())
        held = w.get("heldout")
        held_txt = "" if not held else f"; held-out {h.num(held.get('fitness'))}"
        out.append(f"<h3>Winner {i}</h3><p>from program #{h.esc(cand.get('id'))}: fitness "
                   f"{h.esc(stages)}; simplified {h.num(w.get('simplified_fitness'))}"
                   f"{held_txt}</p>")
        out.append(h.pre(w.get("source", "")))
        out.append(h.pre(w.get("formula", ""), "formula"))
        if w.get("latex"):
            out.append(f"<details><summary>LaTeX</summary>{h.pre(w['latex'])}</details>")
        edits = w.get("edits") or []
        if edits:
            out.append(f"<p class=\"muted\">simplification: {h.esc('; '.join(edits))}</p>")
    return "\n".join(out)


def lineage_targets(run: RunData) -> list[tuple[str, int, str | None, float | None]]:
    """``(what, individual id, simplified source, its fitness)``: every winner, then the
    hall of fame's rank 1 if it is not one of them."""
    out = []
    for i, w in enumerate(run.winners(), 1):
        ident = w["candidate"]["id"]
        out.append((f"winner {i} (program #{ident})", ident, w.get("source"),
                    w.get("simplified_fitness")))
    if run.hall_of_fame and all(t[1] != run.hall_of_fame[0].id for t in out):
        ident = run.hall_of_fame[0].id
        out.append((f"the fittest program (#{ident}, rank 1 of the hall of fame)", ident, None,
                    None))
    return out


def _lineage(run: RunData) -> str:
    targets = lineage_targets(run)
    if not targets:
        return "<h2>Lineage</h2><p>No complete evaluation yet.</p>"
    out = ["<h2>Lineage</h2>",
           "<p>The chain of mutations from a warm start to each winner (and to the fittest "
           "program), each step a unified diff of the program text; a winner's last step is "
           "its simplification.</p>"]
    for what, ident, simplified, simplified_fitness in targets:
        steps = lineage(run, ident, simplified, simplified_fitness)
        out.append(f"<h3>{h.esc(what)}: {len(steps) - 1} step(s)</h3>")
        for k, s in enumerate(steps):
            title = (f"#{s.ident} {s.mutation}" if s.ident is not None else "simplification")
            note = " (fitness reused from an equivalent program)" if s.reused else ""
            head = f"<h4>{k}. {h.esc(title)}: fitness {h.num(s.fitness)}{h.esc(note)}</h4>"
            if not s.diff:
                body = h.pre(s.source) if k == 0 else "<p>(no textual change)</p>"
            else:
                body = h.diff(s.diff)
            out.append(f'<div class="step">{head}{body}</div>')
    return "\n".join(out)


def _candidate_rows(cands: list[Candidate]) -> list[tuple]:
    rows = []
    for rank, c in enumerate(cands, 1):
        text, tex = formulas(c.program)
        cell = h.pre(text, "formula")
        if tex:
            cell += f"<details><summary>LaTeX</summary>{h.pre(tex)}</details>"
        cell += f"<details><summary>source</summary>{h.pre(c.source)}</details>"
        rows.append((str(rank), f"#{c.id}", h.num(c.fitness), str(c.length), str(c.slots),
                     h.esc(c.mutation), cell))
    return rows


def _hall_of_fame(run: RunData) -> str:
    out = ["<h2>Hall of fame</h2>"]
    if not run.hall_of_fame:
        out.append("<p>No complete evaluation yet.</p>")
        return "\n".join(out)
    order = (" With a selection suite, those it scored come first, fittest there first."
             if "selection" in run.funnel else "")
    out.append("<p>The fittest complete evaluations on tier0, one per behaviour (the shortest "
               f"program of each).{order} Export one with <code>optforge export "
               f"{h.esc(run.path)} --rank N</code>.</p>")
    out.append(h.table(["rank", "program", "fitness", "length", "slots", "last mutation",
                        "update rule"], _candidate_rows(run.hall_of_fame), (0, 2, 3, 4)))
    return "\n".join(out)


def _pareto(run: RunData, fig) -> str:
    out = ["<h2>Pareto front</h2>"]
    if not run.pareto:
        out.append("<p>No complete evaluation yet.</p>")
        return "\n".join(out)
    out.append("<p>Programs no other beats in fitness, length and state slots at once.</p>")
    out.append(fig("pareto", figures.pareto(run), "fitness against length, Pareto front",
                   "Fitness against program length; the front joined"))
    out.append(h.table(["#", "program", "fitness", "length", "slots", "last mutation",
                        "update rule"], _candidate_rows(run.pareto), (0, 2, 3, 4)))
    return "\n".join(out)


def heldout_series(run: RunData) -> list[tuple[str, int | None, object]]:
    """``(label, winner number or None, EvalRow)`` per held-out evaluation recorded."""
    names = {}
    for i, w in enumerate(run.winners(), 1):
        try:
            names[Program.parse(w["source"]).hash] = i
        except Exception:  # noqa: BLE001,S112 - a label is a nicety
            continue
    out, seen = [], set()
    for e in run.evaluations:
        if e.stage == "heldout" and e.hash not in seen:  # equal winners are merged
            seen.add(e.hash)
            n = names.get(e.hash)
            out.append((f"winner {n}" if n else f"program {e.hash[:8]}", n, e))
    return out


def _heldout(run: RunData, fig) -> str:
    out = ["<h2>Held-out tasks</h2>"]
    spec = run.config.get("heldout", "")
    if not spec:
        out.append("<p>This search had no held-out stage (<code>heldout = \"\"</code>).</p>")
        return "\n".join(out)
    series = heldout_series(run)
    if not series:
        why = ("no candidate survived the funnel" if run.finished_ok
               else "the run has not reached it")
        out.append(f"<p>No held-out evaluation ({h.esc(spec)}): {why}.</p>")
        return "\n".join(out)
    curves = [(label, e.evaluation.curves) for label, _, e in series if e.evaluation.curves]
    out.append(f"<p>The winners on tasks the search never trained on ({h.esc(spec)}), each at "
               "its best learning rate of the search's grid, against the baseline tuned on "
               "the finer grid.</p>")
    if curves:
        out.append(fig("heldout", figures.curves(curves), "held-out validation curves",
                       "Validation loss on the held-out tasks: winners (solid) and the tuned "
                       "baseline (dashed)"))
    else:
        out.append("<p>This run's store holds no validation curves (recorded by an older "
                   "optforge); the scores follow.</p>")
    rows = []
    for label, _, e in series:
        ev = e.evaluation
        tasks = ", ".join(f"{t} {h.num(s)}" for t, s in ev.scores.items())
        lrs = ", ".join(f"{t} {v:g}" for t, v in ev.best_lr.items())
        rows.append((h.esc(label), h.num(e.fitness), h.esc(tasks), h.esc(lrs),
                     h.esc(ev.error or ("diverged" if ev.diverged else "ok"))))
    out.append(h.table(["program", "held-out fitness", "per task", "best learning rate",
                        "status"], rows, (1,)))
    return "\n".join(out)


def _bench(path: Path) -> dict:
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no optforge bench results at {path} (expected {file})")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not a bench results file: {err}") from None
    if not isinstance(data, dict) or "entries" not in data:
        raise ValueError(f"{file} is not an optforge bench results file (no entries)")
    return data


def _bench_section(result: dict, path: Path, fig) -> str:
    out = ["<h2>Benchmark</h2>",
           f"<p>From <code>{h.esc(path)}</code> (<code>optforge bench</code>): every optimizer "
           "tuned with the same budget, then rerun over several seeds.</p>"]
    out.append(fig("bench", figures.bench(result), "benchmark validation curves",
                   "Validation loss, mean over seeds, per task"))
    rows = []
    for e in result.get("entries", []):
        fm, fl = e.get("final_metric") or {}, e.get("final_loss") or {}
        sp = e.get("speedup") or {}
        # the val-loss test, Holm-adjusted, decides (docs/BENCH.md); older files: the metric's
        p = (e.get("p_holm") or {}).get("loss", (e.get("ttest") or {}).get("pvalue"))
        rows.append((h.esc(e.get("task")), h.esc(e.get("optimizer")),
                     _mean_ci(fm), _mean_ci(fl),
                     h.esc(f"{sp['value']:.2f}x") if isinstance(sp.get("value"), int | float)
                     else "-", h.esc(f"{p:.3g}") if isinstance(p, int | float) else "-",
                     h.esc(e.get("verdict") or "-"), h.esc(e.get("status", "?"))))
    baseline = result.get("settings", {}).get("baseline", "adamw")
    out.append(h.table(["task", "optimizer", "final metric", "final validation loss",
                        "speedup", f"p vs {baseline}", "verdict", "status"], rows,
                       (2, 3, 4, 5)))
    return "\n".join(out)


def _mean_ci(s: dict) -> str:
    mean, low, high = s.get("mean"), s.get("low"), s.get("high")
    if not isinstance(mean, int | float):
        return "-"
    if isinstance(low, int | float) and isinstance(high, int | float):
        return h.esc(f"{mean:.4g} ± {(high - low) / 2:.2g}")
    return h.esc(f"{mean:.4g}")


def _footer(run: RunData, out: Path) -> str:
    rank = (f"<code>optforge export {h.esc(run.path)} --rank 1 --out my_optimizer.py</code> "
            "writes the fittest program as a torch optimizer file. ") if run.hall_of_fame else ""
    return (f"<h2>Files</h2><p>{rank}The figures are also PNG files in "
            f"<code>{h.esc(out)}</code>. Generated by <code>optforge report</code> on "
            f"{h.esc(_when(time.time()))}.</p>")


__all__ = ["Report", "best_learning_rates", "formulas", "funnel_rows", "heldout_series",
           "make_report"]
