"""End to end: Search(config).run() on the real trainer and with a cheap fitness."""

from __future__ import annotations

import json
import math

import pytest

from optforge.cli.display import LiveDisplay, render
from optforge.lang.ir import Program
from optforge.search import FunctionFitness, Search, SearchConfig, TargetFitness
from optforge.search.evolution import Counters, Progress

TINY = dict(evaluations=24, population=8, tournament=3, tiers=["tiny:quadratic@30"],
            heldout="tiny:digits_logreg@20", hurdle_warmup=4, simplify_top=1,
            simplify_evaluations=20, seed=5, promote_threshold=-100.0)
# a permissive threshold: 24 evaluations from AdamW rarely beat tuned AdamW, and the
# survivors must go through simplification and the held-out stage on the real trainer


@pytest.fixture(scope="module")
def tiny():
    return Search(SearchConfig(**TINY)).run()


def test_a_tiny_search_on_the_real_trainer(tiny):
    c = tiny.counters
    assert c["evaluated"] == 24
    assert c["generated"] == c["invalid"] + c["structural"] + c["behavioural"] + c["evaluated"]
    fame = tiny.hall_of_fame
    assert fame and all(a.fitness >= b.fitness for a, b in zip(fame, fame[1:], strict=False))
    assert len({x.fingerprint for x in fame}) == len(fame)
    assert tiny.best.fitness == max(x.fitness for x in fame)
    for x in tiny.pareto:  # nothing in the hall of fame dominates a front member
        assert not any(y.dominates(x) for y in fame)
    assert "quadratic/tiny/30" in tiny.baselines
    assert tiny.history[-1][1] == tiny.best.fitness
    data = json.loads(tiny.to_json())
    assert data["counters"]["evaluated"] == 24 and data["config"]["seed"] == 5
    assert len(tiny.winners) == 1
    for w in tiny.winners:  # survivors pass the threshold; simplification kept the fitness
        assert w.stage_fitness["tier0"] > -100.0 and w.candidate is tiny.best
        assert w.simplified_fitness >= w.candidate.fitness - 0.02
        assert w.heldout is not None and set(w.heldout.scores) == {"digits_logreg"}
        assert Program.parse(w.source) == w.simplified
    assert tiny.summary().startswith("24 evaluations")


def test_same_config_and_seed_give_the_same_search(tiny):
    again = Search(SearchConfig(**{**TINY, "heldout": ""})).run()
    assert again.history == tiny.history
    assert [(x.source, x.fitness) for x in again.hall_of_fame] == [
        (x.source, x.fitness) for x in tiny.hall_of_fame]
    assert again.counters == tiny.counters


def test_the_funnel_and_held_out_stage_with_a_cheap_fitness():
    target = TargetFitness(Program.parse(
        "def t(g, m, lr):\n    m = interp(m, g, 0.1)\n    return lr * sign(m), m\n"))

    def fitness(p, stage):  # positive near the target; the later tiers are stricter
        f = 1 + 10 * target.evaluate(p).fitness
        return {"tier0": f, "tier1": f - 0.2, "heldout": f}[stage]

    fit = FunctionFitness(fitness)
    cfg = SearchConfig(evaluations=40, population=8, tournament=4, init=["lion", "adamw"],
                       tiers=["tiny:a", "tiny:b"], heldout="tiny:c", promote_max=3,
                       simplify_top=2, simplify_evaluations=30)
    r = Search(cfg, fitness=fit).run()
    assert r.counters["promotions"] == 3  # the hall of fame's best three all beat the baseline
    tier1 = [x for x in r.funnel if x["stage"] == "tier1"]
    assert len(tier1) == 3 and all(x["promoted_from"] == "tier0" for x in tier1)
    assert 1 <= len(r.winners) <= 2
    for w in r.winners:
        assert w.stage_fitness["tier1"] > 0 and w.heldout is not None
        assert w.simplified_fitness >= w.stage_fitness["tier0"] - cfg.simplify_tolerance
        assert w.formula and w.latex
    assert r.sources == [w.source for w in r.winners]


def test_progress_is_reported_and_rendered():
    seen: list[Progress] = []
    cfg = SearchConfig(evaluations=10, population=4, tournament=2, tiers=["tiny:a"],
                       simplify_top=0)
    Search(cfg, fitness=FunctionFitness(lambda p, s: -len(str(p))),
           on_progress=seen.append).run()
    evolution = [p for p in seen if p.phase == "evolution"]
    assert [p.counters.evaluated for p in evolution][-1] == 10
    assert seen[-1].phase == "funnel"
    table = render(Progress(Counters(evaluated=3, generated=5), 10, 0.25, 12.0))
    assert table.row_count == 7
    assert Progress(Counters(evaluated=5), 10, 0.0, 10.0).eta == pytest.approx(10.0)
    display = LiveDisplay(enabled=False)
    with display:
        display.update(seen[0])
    assert display.last is seen[0]
    assert math.isinf(Progress(Counters(), 10, -math.inf, 0.0).best)


def test_the_command_maps_every_config_field_to_a_flag(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from optforge.cli.search import RUN_OPTIONS, search_command
    from optforge.search.config import flags

    app = typer.Typer()
    app.command("search")(search_command)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    command = typer.main.get_command(app).commands["search"]
    options = {o for p in command.params for o in p.opts}
    assert {flag for flag, *_ in flags()} | {"--config", "-c", "--out"} | RUN_OPTIONS == options
    cfg = tmp_path / "s.toml"
    cfg.write_text('evaluations = 100\ntiers = ["tiny:quadratic@20"]\nheldout = ""\n')
    out = tmp_path / "out"
    r = runner.invoke(app, ["search", "-c", str(cfg), "--evaluations", "5", "--population", "4",
                            "--tournament", "2", "--init", "adamw", "--init", "lion",
                            "--no-simplify-nodes", "--promote-threshold", "-50",
                            "--simplify-top", "1", "--simplify-evaluations", "2",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "result.json").read_text())
    assert data["counters"]["evaluated"] == 5
    assert data["config"]["init"] == ["adamw", "lion"] and data["config"]["simplify_nodes"] is False
    assert SearchConfig.from_toml(out / "config.toml").evaluations == 5
    assert Program.parse((out / "winner_1.py").read_text()).name in ("adamw", "lion")
    # the cost of every stage was printed first, and runs show gives the stage and the plan
    assert "plan (at most):" in r.output and "simplification: up to 2 evaluation(s)" in r.output
    from rich.console import Console

    from optforge.cli import runs as cli

    monkeypatch.setattr(cli, "console", Console(width=300))
    shown = runner.invoke(cli.runs_app, ["show", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "stage: simplify (done)" in shown.output
    assert "evolution: up to 5 evaluation(s) = 5 training runs" in shown.output
    bad = runner.invoke(app, ["search", "--tournament", "100"])
    assert bad.exit_code == 2 and "tournament" in bad.output


def test_the_time_limit_bounds_the_whole_run():
    import time as clock

    def slow(p, stage):  # 20 ms an evaluation: the limit is spent inside evolution
        clock.sleep(0.02)
        return -len(str(p)) / 100

    cfg = SearchConfig(evaluations=10_000, population=4, tournament=2, tiers=["tiny:a", "tiny:b"],
                       heldout="tiny:c", promote_threshold=-100.0, simplify_top=2,
                       simplify_evaluations=50, time_limit=0.3)
    r = Search(cfg, fitness=FunctionFitness(slow)).run()
    assert 0 < r.counters["evaluated"] < 10_000
    assert r.counters["time_limited"] == ["funnel", "simplify", "heldout"]
    assert all(x["stage"] == "tier0" for x in r.funnel)  # no tier climbed
    assert r.winners and all(w.heldout is None and set(w.edits) <= {"removed dead code"}
                             for w in r.winners)  # no simplification trained
    unlimited = Search(SearchConfig(**{**cfg.as_dict(), "evaluations": 8, "time_limit": 0.0}),
                       fitness=FunctionFitness(slow)).run()
    assert "time_limited" not in unlimited.counters
    assert any(x["stage"] == "tier1" for x in unlimited.funnel)


def test_the_plan_costs_every_stage():
    from optforge.search.plan import costs, describe

    cfg = SearchConfig(evaluations=10, tiers=["tiny:quadratic@30", "small:digits_mlp@40"],
                       heldout="tiny:digits_logreg@20", promote_max=8, simplify_top=3,
                       simplify_evaluations=100)
    seeds = cfg.seeds_per_task  # each rate trains once per task seed, as replicas
    assert seeds >= 2 and not cfg.baseline_lr_grid  # the defaults: the baseline on lr_grid
    k, kb = len(cfg.lr_grid) * seeds, len(cfg.lr_grid) * seeds
    got = {c.stage: (c.evaluations, c.runs, c.replica_steps) for c in costs(cfg)}
    assert got == {"baselines": (3, 3, kb * (30 + 40 + 20)), "evolution": (10, 10, 10 * k * 30),
                   "funnel": (8, 8, 8 * k * 40), "simplification": (300, 300, 300 * k * 30),
                   "held-out": (3, 3, 3 * k * 20)}
    lines = describe(costs(cfg))
    assert lines[-1] == (f"total: up to 324 training runs, "
                         f"{kb * 90 + k * (300 + 320 + 9000 + 60):,} replica-steps")
    assert lines[3].startswith("simplification: up to 300 evaluation(s) = 300 training runs")


def test_plain_progress_lines_off_a_terminal():
    import io

    from rich.console import Console

    from optforge.cli.output import ProgressLines

    now = [0.0]
    out = io.StringIO()
    lines = ProgressLines(Console(file=out, width=40), "search", "evaluations", every=30,
                          clock=lambda: now[0])
    for t, stage, done in [(0, "evolution", 0), (10, "evolution", 5), (40, "evolution", 20),
                           (41, "funnel", 20)]:
        now[0] = t
        lines.update(stage, done, 40 if stage == "evolution" else None)
    assert out.getvalue().splitlines() == [
        "[search] evolution  0/40 evaluations (0%)  elapsed 0:00  eta -",
        "[search] evolution  20/40 evaluations (50%)  elapsed 0:40  eta 0:40",
        "[search] funnel  20 evaluations  elapsed 0:41  eta -"]


def test_tables_keep_every_column_off_a_terminal():
    import io

    from rich.console import Console
    from rich.table import Table

    from optforge.cli.output import print_wide

    table = Table(*[f"column number {i}" for i in range(12)])
    table.add_row(*[f"value {i}" for i in range(12)])
    out = io.StringIO()
    console = Console(file=out, width=80)
    assert not console.is_terminal
    print_wide(console, table)
    text = out.getvalue()
    assert all(f"column number {i}" in text and f"value {i}" in text for i in range(12))
    assert console.width == 80  # restored


def test_the_compile_setting(tmp_path):
    """TOML's true/false or 'auto' (the default); a run stored before the setting existed
    resumes eagerly, as it ran (below)."""
    cfg = tmp_path / "s.toml"
    for text, want in (("compile = true", "true"), ("compile = false", "false"),
                       ('compile = "auto"', "auto"), ("", "auto")):
        cfg.write_text(text + "\n")
        assert SearchConfig.from_toml(cfg).compile == want
    cfg.write_text('compile = "sometimes"\n')
    with pytest.raises(ValueError, match="compile must be"):
        SearchConfig.from_toml(cfg)


@pytest.mark.parametrize("name, stored_before, new_default", [
    ("compile", "false", "auto"), ("fingerprint_steps", [1, 2, 3], [1, 2, 3, 30, 300, 3000])])
def test_a_run_stored_before_a_setting_resumes_as_it_ran(tmp_path, name, stored_before,
                                                         new_default):
    """compile: eagerly; fingerprint_steps: the three-step probe (docs/SEARCH.md); (a run
    stored before lr_grid_relative gets its default, False: absolute rates, as it ran)."""
    from optforge.search.stored import open_run
    from optforge.store import RunStore

    old = SearchConfig().as_dict()
    assert old[name] == new_default  # what a new run gets
    del old[name]
    RunStore.create(tmp_path / "old", "search", old).close()
    resumed, store = open_run(tmp_path / "old")
    store.close()
    assert getattr(resumed, name) == stored_before


@pytest.mark.parametrize("steps", [[], [0, 1], [1, -3]])
def test_fingerprint_steps_must_be_steps(steps):
    with pytest.raises(ValueError, match="fingerprint_steps must be"):
        SearchConfig(fingerprint_steps=steps)


def test_a_compiled_search_is_deterministic_and_close_to_the_eager_one():
    """compile = true: the same seed gives the same search; the initial programs' fitness
    equals the eager search's up to rounding."""
    cfg = {**TINY, "heldout": "", "evaluations": 8, "simplify_top": 0}
    a, b = (Search(SearchConfig(**cfg, compile="true")).run() for _ in range(2))
    assert a.history == b.history and a.counters == b.counters
    assert [(x.source, x.fitness) for x in a.hall_of_fame] == [
        (x.source, x.fitness) for x in b.hall_of_fame]
    eager = Search(SearchConfig(**cfg, compile="false")).run()
    first = {x.source: x.fitness for x in eager.hall_of_fame}
    common = [x for x in a.hall_of_fame if x.source in first]
    assert common  # at least the warm start
    for x in common:
        assert x.fitness == pytest.approx(first[x.source], rel=1e-4, abs=1e-4)
