"""End to end: Search(config).run() on the real trainer and with a cheap fitness."""

from __future__ import annotations

import json
import math

import pytest

from optforge.lang.ir import Program
from optforge.search import FunctionFitness, Search, SearchConfig, TargetFitness
from optforge.search.display import LiveDisplay, render
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


def test_the_command_maps_every_config_field_to_a_flag(tmp_path):
    import typer
    from typer.testing import CliRunner

    from optforge.search.command import RUN_OPTIONS, search_command
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
    bad = runner.invoke(app, ["search", "--tournament", "100"])
    assert bad.exit_code == 2 and "tournament" in bad.output
