"""Hostile input (issue 15): one row per case, each a precise clean error or the stated
behaviour, and nothing lost; then two real processes on one run directory.

The run directories are real: a tiny finished benchmark (AdamW, Lion and a program file
``my rule [v2].py`` on the quadratic task, every training run the real trainer's) and
copies of it, corrupted, locked or cut short as each row needs.
"""

import contextlib
import copy
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_bench_resume import results
from typer.testing import CliRunner

from optforge import zoo
from optforge.bench.config import BenchConfig
from optforge.bench.stored import create_run
from optforge.export import export
from optforge.lang import Program
from optforge.lang.symbolic import MAX_TERMS, formula, latex, written_size
from optforge.optim import ProgramOptimizer
from optforge.search.config import SearchConfig
from optforge.store import FILE, RunStore

RULE = "def rule(w, g, m, lr, mu=0.9):\n    m = mu * m + g\n    return lr * m, m\n"
BENCH = dict(optimizers=["adamw", "lion", "my rule [v2].py"], tasks=["quadratic"], trials=2,
             batch=2, seeds=1, steps=30, evals=2)
CHILD = "import sys, torch\ntorch.set_num_threads(1)\nfrom optforge.cli import app\n" \
        "app(sys.argv[1:])\n"


def mix(k: int) -> str:
    """The issue's blow-up: ``y = x * x; x = tanh(y) + y``, k times."""
    return ("def mix(w, g, lr):\n    x = g\n" + "    y = x * x\n    x = tanh(y) + y\n" * k
            + "    return lr * x\n")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """A finished benchmark run (a few seconds of real training)."""
    from optforge.bench.run import run_bench

    tmp = tmp_path_factory.mktemp("ref")
    (tmp / "my rule [v2].py").write_text(RULE)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with create_run(tmp / "run", BenchConfig(**BENCH)) as store:
            run_bench(BenchConfig.from_dict(store.config), store=store, out_dir=store.path,
                      plots=False)
    finally:
        os.chdir(cwd)
    return tmp / "run"


def units(path: Path) -> list:
    with RunStore.open(path, readonly=True) as s:
        rows = s.rows("SELECT seq, unit, optimizer, request, status, result FROM units "
                      "ORDER BY seq")
        return [(*r[:5], {k: v for k, v in json.loads(r[5]).items()
                          if k not in ("wall_time", "extra")})
                for r in rows]


def cut(ref: Path, to: Path, keep: int) -> Path:
    """A copy of ``ref`` as if killed after its first ``keep`` training runs."""
    shutil.copytree(ref, to)
    (to / "results.json").unlink()
    db = sqlite3.connect(to / FILE)
    with db:
        db.execute("DELETE FROM units WHERE seq >= ?", (keep,))
        db.execute("UPDATE meta SET value='running' WHERE key='status'")
    db.close()
    return to


def corrupt(path: Path) -> None:
    """The issue's corruption: 8 KiB of random bytes from the middle of run.sqlite (on a
    page boundary, so that they land on b-tree pages, as they would from a bad sector)."""
    file = path / FILE
    size = file.stat().st_size
    with file.open("r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(bytes(torch.randint(0, 256, (8192,), generator=torch.Generator().manual_seed(
            0), dtype=torch.uint8).tolist()))


# ------------------------------------------------------------------ the command line

def _corrupt_copy(tmp, ref):
    corrupt(shutil.copytree(ref, tmp / "C"))
    return tmp / "C"


def _search_run(tmp, ref):
    RunStore.create(tmp / "S", "search", SearchConfig().as_dict()).close()
    return tmp / "S"


def _with_failing_store(tmp, ref):
    """A cut run whose store refuses the next training run (a real SQLite error, as from a
    full disk or a second writer)."""
    path = cut(ref, tmp / "F", keep=3)
    db = sqlite3.connect(path / FILE)
    with db:
        db.execute("CREATE TRIGGER full BEFORE INSERT ON units WHEN NEW.seq = 3 "
                   "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END")
    db.close()
    return path


CLI_CASES = [
    # (id, setup(tmp, ref) -> dir or None, args ({d}: that dir), exit code, text in output)
    ("corrupt store: search --resume", _corrupt_copy, ["search", "--resume", "{d}"], 2,
     "is corrupt"),
    ("corrupt store: bench --resume", _corrupt_copy, ["bench", "--resume", "{d}"], 2,
     "is corrupt"),
    ("corrupt store: runs show", _corrupt_copy, ["runs", "show", "{d}"], 2, "is corrupt"),
    ("corrupt store: report", _corrupt_copy, ["report", "{d}", "--out", "{d}/../rep"], 2,
     "is corrupt"),
    ("corrupt store: export", _corrupt_copy, ["export", "{d}", "--out", "{d}/../x.py"], 2,
     "is corrupt"),
    ("search --resume of a bench run", None, ["search", "--resume", "{ref}"], 2,
     "is a bench run, not a search run"),
    ("bench --seed -5", None, ["bench", "-o", "adamw", "-t", "quadratic", "--seed", "-5",
                               "--out", "{tmp}/new"], 2, "seed must be an integer"),
    ("bench --device foo", None, ["bench", "-o", "adamw", "-t", "quadratic", "--device", "foo",
                                  "--out", "{tmp}/new"], 2, "unknown device 'foo'"),
    ("bench --device cuda:99", None, ["bench", "-o", "adamw", "-t", "quadratic", "--device",
                                      "cuda:99", "--out", "{tmp}/new"], 2, "'cuda:99'"),
    ("search --device foo", None, ["search", "--device", "foo", "--out", "{tmp}/new"], 2,
     "unknown device 'foo'"),
    ("a store failing mid-run stops the bench (not a candidate's failure)",
     _with_failing_store, ["bench", "--resume", "{d}", "--no-plots"], 2,
     "the run store failed: simulated disk failure"),
    ("brackets in a path are printed as they are", None,
     ["bench", "--resume", "{ref}/../done [v2]", "--no-plots"], 0, "done [v2]/results.json"),
]


@pytest.mark.parametrize("setup, args, code, text", [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_case(tmp_path, ref, setup, args, code, text):
    from optforge.cli import app

    if "done [v2]" in " ".join(args) and not (ref.parent / "done [v2]").exists():
        shutil.copytree(ref, ref.parent / "done [v2]")
    d = setup(tmp_path, ref) if setup else None
    stores = [ref / FILE] + ([d / FILE] if d is not None else [])
    before = {f: digest(f) for f in stores}
    args = [a.format(d=d, ref=ref, tmp=tmp_path) for a in args]
    done = CliRunner(env={"COLUMNS": "300"}).invoke(app, args)
    out = " ".join(done.output.split())
    assert done.exit_code == code, done.output
    assert text in out, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert not (tmp_path / "new").exists()  # bad settings create no run directory
    if setup is _corrupt_copy or setup is None:
        assert {f: digest(f) for f in stores} == before  # byte-for-byte untouched
    if setup is _with_failing_store:
        assert not (d / "results.json").exists()
        with RunStore.open(d, readonly=True) as s:
            assert s.count("units") == 3 and s.meta("status") == "running"


def test_runs_list_goes_on_past_an_unreadable_run(tmp_path, ref, monkeypatch):
    from rich.console import Console

    from optforge.cli import app
    from optforge.cli import runs as cli

    monkeypatch.setattr(cli, "console", Console(width=400))  # no line breaks
    shutil.copytree(ref, tmp_path / "good")
    corrupt(shutil.copytree(ref, tmp_path / "bad"))
    done = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["runs", "list", str(tmp_path)])
    assert done.exit_code == 0, done.output
    rows = {Path(line.split("│")[1].strip()).name: line for line in done.output.splitlines()
            if line.count("│") > 3}
    assert "unreadable: " in rows.get("bad", ""), done.output
    assert "is corrupt" in rows["bad"]
    assert "finished" in rows["good"]


def test_a_writer_is_refused_while_another_holds_the_run(tmp_path, ref):
    from optforge.cli import app

    path = shutil.copytree(ref, tmp_path / "run")
    search = _search_run(tmp_path, ref)
    runner = CliRunner(env={"COLUMNS": "300"})
    for held, args in ((path, ["bench", "--resume", str(path)]),
                       (search, ["search", "--resume", str(search)])):
        before = digest(held / FILE)
        with RunStore.open(held):  # this process writes the run
            done = runner.invoke(app, args)
        assert done.exit_code == 2
        assert f"is in use by process {os.getpid()}" in " ".join(done.output.split())
        assert digest(held / FILE) == before
    with RunStore.open(path) as store:  # released on close: the next writer gets it
        assert store.lock is not None


def test_the_label_with_brackets_survives_in_results_txt(ref):
    table = (ref / "results.txt").read_text()
    assert "my rule [v2]" in table


def test_a_new_search_stores_its_jobs_in_flight_at_creation(tmp_path):
    """So that a kill during start-up resumes with the same ones (not those of the resuming
    command's defaults)."""
    from optforge.cli.search import _open_run, planned_in_flight

    assert planned_in_flight("process", 3, 1) == 4
    assert planned_in_flight("process", 3, None) == 12  # a queue of three per worker
    assert planned_in_flight("inline", None, None) == 1
    assert planned_in_flight("ray", None, None) is None  # known once the cluster is joined
    _, store = _open_run(None, tmp_path / "s", None, {"evaluations": 4}, in_flight=4)
    store.close()
    with RunStore.open(tmp_path / "s", readonly=True) as s:
        assert s.meta("in_flight") == 4


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(
    ["unshare", "-rm", "true"], capture_output=True).returncode != 0,
    reason="needs user namespaces (unshare -rm) for a read-only mount")
def test_a_finished_run_on_a_read_only_filesystem_is_shown_reported_exported(tmp_path, ref):
    """A read-only bind mount: SQLite cannot create the WAL index there."""
    d = shutil.copytree(ref, tmp_path / "ro")
    script = ("from optforge.store.summary import summarize\n"
              f"print(summarize({str(d)!r}).status)\n")
    mount = (f"mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && "
             f"(touch '{d}/x' 2>/dev/null && echo writable || true) && "
             f"{sys.executable} -c \"$SCRIPT\"")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True,
                          text=True, env={**os.environ, "SCRIPT": script}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["finished"]


# ------------------------------------------------------------------ the library

def adamw_trajectory(make, steps=6, copy_at=None, how=None):
    """Parameters after ``steps`` AdamW steps on fixed gradients; with ``copy_at``, the
    optimizer is copied (``how``) after that step and the copy goes on."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = make([p])
    grads = [torch.randn(4, 3) for _ in range(steps)]
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        if copy_at == t:
            opt = how(opt)
            p = opt.param_groups[0]["params"][0]
    return p.detach()


def _deepcopy(opt):
    return copy.deepcopy(opt)


def _pickle(opt):
    return pickle.loads(pickle.dumps(opt))


def _torch_save(opt):
    buf = io.BytesIO()
    torch.save(opt, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The zoo's AdamW, exported, imported as a module (pickle needs it importable)."""
    folder = tmp_path_factory.mktemp("exported")
    export("adamw", folder / "hostile_adamw.py", "HostileAdamW")
    sys.path.insert(0, str(folder))
    import hostile_adamw

    yield hostile_adamw.HostileAdamW
    sys.path.remove(str(folder))


@pytest.mark.parametrize("how", [_deepcopy, _pickle, _torch_save])
@pytest.mark.parametrize("kind", ["exported", "program"])
def test_a_copied_optimizer_goes_on_like_torch_adamw(exported, kind, how):
    hyper = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    want = adamw_trajectory(lambda ps: torch.optim.AdamW(ps, **hyper))
    make = (lambda ps: exported(ps, lr=0.01, wd=0.01)) if kind == "exported" else \
        (lambda ps: ProgramOptimizer(ps, zoo.load("adamw"), lr=0.01, wd=0.01))
    got = adamw_trajectory(make, copy_at=2, how=how)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["exported", "program"])
def test_a_tensor_learning_rate_is_a_learning_rate(exported, kind):
    want = adamw_trajectory(lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.01))
    make = (lambda ps: exported(ps, lr=torch.tensor(0.1), wd=0.01)) if kind == "exported" \
        else (lambda ps: ProgramOptimizer(ps, zoo.load("adamw"), lr=torch.tensor(0.1),
                                          wd=0.01))
    torch.testing.assert_close(adamw_trajectory(make), want, rtol=1e-6, atol=1e-7)


def _foreign_state():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p])
    p.grad = torch.ones(3)
    opt.step()
    return opt.state_dict()


def _other_program_state():
    p = torch.nn.Parameter(torch.ones(3))
    opt = ProgramOptimizer([p], zoo.load("lion"))
    p.grad = torch.ones(3)
    opt.step()
    return opt.state_dict()


LIBRARY_CASES = [
    # (id, make(exported class, params) -> optimizer or raises, expected error or None)
    ("foreign state dict into the exported class",
     lambda cls, ps: cls(ps).load_state_dict(_foreign_state()), "saved by another optimizer"),
    ("foreign state dict into ProgramOptimizer",
     lambda cls, ps: ProgramOptimizer(ps, zoo.load("adamw")).load_state_dict(
         _foreign_state()), "saved by another optimizer"),
    ("another program's state into the exported class",
     lambda cls, ps: cls(ps).load_state_dict(_other_program_state()),
     "saved by another optimizer"),
    ("another program's state into ProgramOptimizer",
     lambda cls, ps: ProgramOptimizer(ps, zoo.load("adamw")).load_state_dict(
         _other_program_state()), "running a different program"),
    ("complex parameter, exported class",
     lambda cls, ps: cls([torch.nn.Parameter(torch.ones(2, dtype=torch.cfloat))]),
     "does not support complex parameters"),
    ("complex parameter, ProgramOptimizer",
     lambda cls, ps: ProgramOptimizer([torch.nn.Parameter(torch.ones(2, dtype=torch.cfloat))],
                                      zoo.load("adamw")), "does not support complex"),
    ("complex learning rate", lambda cls, ps: ProgramOptimizer(ps, zoo.load("adamw"),
                                                              lr=torch.tensor(1j)),
     "must be real"),
]


@pytest.mark.parametrize("make, error", [c[1:] for c in LIBRARY_CASES],
                         ids=[c[0] for c in LIBRARY_CASES])
def test_library_case(exported, make, error):
    ps = [torch.nn.Parameter(torch.ones(3))]
    with pytest.raises(ValueError, match=error):
        make(exported, ps)


def test_the_state_of_one_program_loads_across_hyperparameter_values(exported):
    """The identity ignores defaults: an export with tuned defaults takes the zoo
    program's ProgramOptimizer state (and goes on like torch's AdamW)."""
    want = adamw_trajectory(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.01))

    def switch(opt):
        ours = exported(opt.param_groups[0]["params"], lr=0.01, wd=0.01)
        ours.load_state_dict(copy.deepcopy(opt.state_dict()))
        return ours

    got = adamw_trajectory(lambda ps: ProgramOptimizer(ps, zoo.load("adamw").with_hyper(
        wd=0.3), lr=0.01, wd=0.01), copy_at=2, how=switch)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["adamw", "adafactor", "muon"])
def test_the_exported_class_steps_on_the_meta_device(tmp_path, name):
    export(name, tmp_path / f"meta_{name}.py", "M")
    ns: dict = {}
    exec(compile((tmp_path / f"meta_{name}.py").read_text(), "meta", "exec"), ns)  # noqa: S102
    ps = [torch.nn.Parameter(torch.ones(4, 3, device="meta")),
          torch.nn.Parameter(torch.ones(5, device="meta"))]
    opt = ns["M"](ps)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert all(t.device.type == "meta" for s in opt.state.values() for t in s.values()
               if isinstance(t, torch.Tensor))


def test_a_slot_named_kernels_exports_and_matches_torch_sgd_momentum(tmp_path):
    source = "def k(w, g, kernels, lr, mu=0.9):\n    kernels = mu * kernels + g\n" \
             "    return lr * kernels, kernels\n"
    (tmp_path / "k.py").write_text(source)
    export(str(tmp_path / "k.py"), tmp_path / "kexp.py", "K")
    ns: dict = {}
    exec(compile((tmp_path / "kexp.py").read_text(), "kexp", "exec"), ns)  # noqa: S102
    want = adamw_trajectory(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9))
    got = adamw_trajectory(lambda ps: ns["K"](ps, lr=0.05))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ formulas

def test_a_formula_past_the_budget_is_the_program_text_with_a_note(tmp_path):
    program = Program.parse(mix(8))
    # x_k = tanh(y) + y with y = x_{k-1} * x_{k-1}: s_k = 4 + 4 s_{k-1}, s_0 = 1, so
    # s_8 = (7 * 4^8 - 4) / 3 = 152916, and lr * x_8 two more
    assert written_size(program) == 152918 > MAX_TERMS
    text = formula(program)
    assert text.startswith("(no formula: written out, the formula of 'mix' would have")
    assert text.endswith(str(program).rstrip()) and latex(program) == ""
    (tmp_path / "mix8.py").write_text(mix(8))
    export(str(tmp_path / "mix8.py"), tmp_path / "m8.py", "Mix")
    assert "(no formula: written out" in (tmp_path / "m8.py").read_text()


def test_a_thousand_chained_statements_give_a_note_not_a_recursion_error():
    program = Program.parse("def chain(w, g, lr):\n    x = g\n" + "    x = tanh(x)\n" * 1000
                            + "    return lr * x\n")
    assert formula(program).startswith("(no formula")


def test_mod_by_zero_exports_the_runtime_nan(tmp_path):
    (tmp_path / "modz.py").write_text("def modz(w, g, lr):\n    return lr * mod(g, 0)\n")
    export(str(tmp_path / "modz.py"), tmp_path / "mz.py", "Modz")
    ns: dict = {}
    exec(compile((tmp_path / "mz.py").read_text(), "mz", "exec"), ns)  # noqa: S102
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    ns["Modz"]([p]).step()
    assert torch.remainder(torch.ones(3), 0).isnan().all()  # torch's own answer
    assert p.detach().isnan().all()
    assert "nan" in formula(Program.parse((tmp_path / "modz.py").read_text()))


def test_formulas_do_not_depend_on_the_hash_seed():
    code = ("from optforge import zoo\nfrom optforge.lang import Program\n"
            "from optforge.lang.symbolic import formula, latex\n"
            f"ps = [zoo.load(n) for n in zoo.names()] + [Program.parse({mix(3)!r})]\n"
            "print(repr([formula(p) + latex(p) for p in ps]))\n")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}, timeout=300)
            for seed in (0, 7)]
    assert all(o.returncode == 0 for o in outs), outs[0].stderr
    assert outs[0].stdout == outs[1].stdout and "no formula" not in outs[0].stdout


# ------------------------------------------------------------------ real processes

def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _resumed(path: Path) -> int:
    with RunStore.open(path, readonly=True) as s:
        return next(s.rows("SELECT COUNT(*) FROM events WHERE kind='resume'"))[0]


def _wait_resumed(path: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.time() + 180
    while _resumed(path) < n and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert _resumed(path) == n, proc.communicate()[0] if proc.poll() is not None else ""


def test_two_processes_resume_one_run_one_is_refused_the_other_equals_uninterrupted(
        tmp_path, ref):
    path = cut(ref, tmp_path / "B", keep=4)
    first = _start(["bench", "--resume", str(path), "--no-plots"], tmp_path)
    try:
        _wait_resumed(path, first, 1)  # it holds the run now
        first.send_signal(signal.SIGSTOP)  # and keeps it while the second one starts
        second = _start(["bench", "--resume", str(path), "--no-plots"], tmp_path)
        out2 = second.communicate(timeout=300)[0]
        first.send_signal(signal.SIGCONT)
        out1 = first.communicate(timeout=300)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.send_signal(signal.SIGCONT)
            first.kill()
    assert second.returncode == 2, out2
    assert f"is in use by process {first.pid}" in " ".join(out2.split())
    assert first.returncode == 0, out1
    assert results(path) == results(ref)
    assert units(path) == units(ref)
    assert _resumed(path) == 1  # the refused process wrote nothing


def test_sigterm_stops_a_bench_and_says_how_to_resume(tmp_path, ref):
    path = cut(ref, tmp_path / "T", keep=1)
    proc = _start(["bench", "--resume", str(path), "--no-plots"], tmp_path)
    try:
        _wait_resumed(path, proc, 1)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert f"terminated (SIGTERM); continue with: optforge bench --resume {path}" in \
        " ".join(out.split())
    with RunStore.open(path) as s:  # the lock went with the process
        assert s.meta("status") == "running"
