"""``optforge report``: the page's content against the run store read with plain SQL and
against what the search itself returned (result.json), on real tiny searches."""

from __future__ import annotations

import base64
import difflib
import html
import json
import math
import sqlite3
from dataclasses import replace

import pytest
from searchrun import GUARDED, SELECTION, result_json, tiny_search

from optforge.lang.ir import Program
from optforge.lang.symbolic import formula
from optforge.report import load_run, make_report
from optforge.report.build import funnel_rows
from optforge.search.filters import FILTERS
from optforge.store import RunStore
from optforge.store.db import StoreError

FIGURES = {"fitness", "cache", "funnel", "pareto", "heldout"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_search(tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def page(run, tmp_path_factory):
    report = make_report(run, tmp_path_factory.mktemp("report"))
    return report, report.html.read_text()


def test_figures_are_png_files_embedded_in_the_page(page):
    report, text = page
    assert set(report.figures) == FIGURES
    for name, path in report.figures.items():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert path.parent == report.html.parent
        assert f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' in text
    # self-contained: no script, no external stylesheet, image or font
    assert "<script" not in text and "<link rel=\"stylesheet\"" not in text
    assert 'src="http' not in text and "url(http" not in text and "@import" not in text


def test_lineage_diffs_match_the_store(run, page):
    """Each winner's chain (and the fittest program's) read with plain SQL, every step's
    diff made with difflib, is on the page."""
    _, text = page
    res = result_json(run)
    db = sqlite3.connect(run / "run.sqlite")
    parent = dict(db.execute("SELECT id, parent FROM individuals"))
    mutation = dict(db.execute("SELECT id, mutation FROM individuals"))
    source = {i: str(replace(Program.parse(text), doc=None))  # (warm starts' docstrings off)
              for i, text in db.execute("SELECT i.id, p.source FROM individuals i "
                                        "JOIN programs p ON p.hash = i.hash")}
    targets = [(w["candidate"]["id"], w["source"]) for w in res["winners"]]
    targets.append((res["hall_of_fame"][0]["id"], None))
    changed = 0
    for ident, simplified in targets:
        chain = [ident]
        while parent[chain[-1]] is not None:
            chain.append(parent[chain[-1]])
        chain.reverse()
        assert mutation[chain[0]] == "init"
        steps = [(source[a], source[b]) for a, b in zip(chain, chain[1:], strict=False)]
        if simplified is not None:
            steps.append((source[chain[-1]], simplified))
        for before, after in steps:
            for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                             lineterm=""):
                if line[:1] in "+-" and not line.startswith(("+++", "---")):
                    cls = "add" if line[0] == "+" else "del"
                    assert f'<span class="{cls}">{html.escape(line)}</span>' in text
                    changed += 1
        for i in chain[1:]:
            assert f"#{i} {mutation[i]}" in text
    assert changed > 0


def test_hall_of_fame_and_pareto_with_formulas(run, page):
    """The store rebuilds the search's own hall of fame and front; formulas on the page."""
    _, text = page
    res = result_json(run)
    data = load_run(run)
    assert [c.id for c in data.hall_of_fame] == [c["id"] for c in res["hall_of_fame"]]
    assert [c.fitness for c in data.hall_of_fame] == [c["fitness"] for c in res["hall_of_fame"]]
    assert [c.id for c in data.pareto] == [c["id"] for c in res["pareto"]]
    for c in res["hall_of_fame"] + res["pareto"]:
        assert html.escape(formula(Program.parse(c["source"]))) in text
    for w in res["winners"]:
        assert html.escape(w["formula"]) in text and html.escape(w["latex"]) in text


def test_a_selection_suite_orders_the_hall_of_fame_and_ends_the_funnel(tmp_path):
    """With a selection suite the search ranks its hall of fame by it (result.json) and the
    funnel climbs to it: the report (and export's --rank) follow the search's order."""
    selection = SELECTION
    run = tiny_search(tmp_path, selection=selection)
    res = result_json(run)
    data = load_run(run)
    first_tier = sorted(res["hall_of_fame"], key=lambda c: (-c["fitness"], c["id"]))
    assert [c["id"] for c in res["hall_of_fame"]] != [c["id"] for c in first_tier]
    assert [c.id for c in data.hall_of_fame] == [c["id"] for c in res["hall_of_fame"]]
    db = sqlite3.connect(run / "run.sqlite")
    # the store's selection scores, highest first, lead the hall of fame
    hof = {c.id for c in data.hall_of_fame}
    selected = sorted((-f, k) for k, f in db.execute(
        "SELECT key, fitness FROM evaluations WHERE stage='selection' AND key>=0") if k in hof)
    assert selected and [c.id for c in data.hall_of_fame][:len(selected)] == [
        k for _, k in selected]
    scored = db.execute("SELECT COUNT(*) FROM evaluations WHERE stage='selection' AND key>=0")
    rows = {r["stage"]: r for r in funnel_rows(data)}
    assert list(rows) == ["tier0", "tier1", "selection"]
    assert rows["selection"]["spec"] == selection
    assert rows["selection"]["evaluated"] == scored.fetchone()[0] > 0
    text = make_report(run, tmp_path / "report").html.read_text()
    assert f"<td>selection suite</td><td>{selection}</td>" in text


def test_program_text_is_escaped(page):
    _, text = page
    line = GUARDED.splitlines()[2].strip()  # "update = lr * m * (abs(g) < 1) + ..."
    assert html.escape(line) in text and "&lt;" in html.escape(line)
    assert line not in text


def test_cache_statistics_and_funnel(run, page):
    _, text = page
    res = result_json(run)
    c = res["counters"]
    assert c["generated"] == c["invalid"] + c["structural"] + c["behavioural"] + c["evaluated"]
    for key in ("generated", "invalid", "structural", "behavioural", "evaluated"):
        assert f'<td class="num">{c[key]}</td>' in text
    assert f"{c['skip_rate']:.1%}" in text
    assert sum(c["filtered_by"].values()) == c["filtered"] > 0
    for name, n in c["filtered_by"].items():
        assert f'<td>filter {name}</td><td class="num">{n}</td>' in text
    promoted = sorted({r["id"] for r in res["funnel"] if r["stage"] == "tier1"})
    assert promoted and c["promotions"] == len(promoted)
    for ident in promoted:
        assert f"<td>#{ident}</td>" in text


def test_runs_show_lists_the_rejections_per_filter(run, monkeypatch):
    from rich.console import Console
    from typer.testing import CliRunner

    from optforge.cli import runs as cli

    monkeypatch.setattr(cli, "console", Console(width=300))
    shown = CliRunner().invoke(cli.runs_app, ["show", str(run)])
    assert shown.exit_code == 0, shown.output
    c = result_json(run)["counters"]
    assert f"filtered {c['filtered']}," in shown.output
    split = ", ".join(f"{f} {c['filtered_by'][f]}" for f in FILTERS if f in c["filtered_by"])
    assert split and f"filtered_by ({split})" in shown.output


def test_heldout_curves_are_recorded(run, page):
    """Held-out evaluations keep validation curves whose ends are the scored losses:
    s_t = ln(B_t / L_t) with the last points of the baseline's and the winner's curves."""
    _, text = page
    res = result_json(run)
    held = res["winners"][0]["heldout"]
    curve = held["curves"]["digits_mlp"]
    assert curve["steps"] == list(range(0, 41, 2))
    assert len(curve["loss"]) == len(curve["baseline"]) == 21
    assert curve["loss"][-1] == held["losses"]["digits_mlp"]
    assert held["scores"]["digits_mlp"] == pytest.approx(
        math.log(curve["baseline"][-1] / curve["loss"][-1]), rel=0, abs=1e-12)
    assert "winner 1" in text
    with RunStore.open(run, readonly=True) as store:  # the first tier's, in the store's meta
        curves, rows = store.meta("baseline_curves"), store.meta("baselines")
    for task, size, steps, _lr, final, _at in rows:
        assert curves[f"{task}/{size}/{steps}"][-1] == [steps, final]


def test_unfinished_run(tmp_path):
    run = tiny_search(tmp_path, stop_after=5)
    assert not (run / "result.json").exists()
    report = make_report(run)
    text = report.html.read_text()
    assert report.html == run / "report" / "report.html" and not report.finished
    assert "Unfinished run" in text and f"optforge search --resume {run}" in text
    assert "The run has not finished" in text
    assert {"fitness", "cache"} <= set(report.figures)
    with RunStore.open(run, readonly=True) as store:
        assert store.meta("status") == "running"  # the report wrote nothing to the store
        recorded = store.count("evaluations")
    assert recorded >= 5 and f"{len(load_run(run).evolution())} of 12" in text


def test_not_a_search_run(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        make_report(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not an optforge run directory"):
        make_report(tmp_path)
    RunStore.create(tmp_path / "b", "bench", {}).close()
    with pytest.raises(StoreError, match="bench run, not a search run"):
        make_report(tmp_path / "b")
    assert not (tmp_path / "b" / "report").exists()  # nothing written


def test_cli(run, tmp_path):
    from typer.testing import CliRunner

    from optforge.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "r")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "r" / "report.html").is_file() and "5 figures" in done.output
    done = runner.invoke(app, ["report", str(tmp_path)])
    assert done.exit_code == 2 and "not an optforge run directory" in done.output
    done = runner.invoke(app, ["report", str(run), "--bench", str(tmp_path / "nope")])
    assert done.exit_code == 2 and "no optforge bench results" in done.output


def test_bench_section(run, tmp_path):
    """An optforge bench output directory adds its curves and table (a real small bench)."""
    from optforge.bench import BenchConfig
    from optforge.bench.run import run_bench

    run_bench(BenchConfig(["adamw", "lion"], ["quadratic"], trials=2, seeds=2, steps=30),
              out_dir=tmp_path / "bench", plots=False)
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    report = make_report(run, tmp_path / "r", bench=tmp_path / "bench")
    text = report.html.read_text()
    assert "bench" in report.figures and "<h2>Benchmark</h2>" in text
    for e in saved["entries"]:
        assert f"<td>{e['optimizer']}</td>" in text
        assert f"{e['final_metric']['mean']:.4g}" in text
