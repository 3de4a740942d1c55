"""The exported class's ``compile=True``: optforge's C step, embedded in the file.

Reference: ``ProgramOptimizer`` running the eager step (itself tested against
torch.optim, pytorch-optimizer and an op-by-op evaluation). Both train test_compiled's
noisy quadratic from the same start for 100 steps and may differ by rounding only
(test_compiled's tolerance: ``100 eps`` of the parameters' scale).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import itertools
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from test_compiled import STEPS, assert_rounding_close, problem

from optforge import zoo
from optforge.export import ExportError, export_source, resolve
from optforge.lang.ccode import CCode
from optforge.lang.runtime import Plan
from optforge.optim import ProgramOptimizer, ckernel

EAGER = {"adafactor", "lars", "muon"}  # matrix ops or reduced slots: no C step
_modules = itertools.count()


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path_factory, monkeypatch):
    """Kernels built by the tests go to one temporary cache (never the user's)."""
    monkeypatch.setenv("OPTFORGE_KERNEL_CACHE", str(tmp_path_factory.getbasetemp() / "kernels"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exported_c")


_classes: dict[str, type] = {}


def exported(folder: Path, name: str, text: str | None = None):
    """The module of zoo program ``name``'s exported file (or of ``text``), imported."""
    zoo_file = text is None
    if zoo_file and name in _classes:
        return _classes[name]
    if zoo_file:
        program, origin = resolve(name)
        text = export_source(program, "Exported", origin=origin)
    path = folder / f"{name}_{next(_modules)}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # (so that pickle finds the class)
    spec.loader.exec_module(module)
    if zoo_file:
        _classes[name] = module
    return module


def run(make, params, loss, steps: int = STEPS, hessian: bool = False):
    ws = [p.clone().requires_grad_() for p in params]
    opt = make(ws)
    for t in range(steps):
        opt.zero_grad()
        loss(ws, t).backward(create_graph=hessian)
        torch.manual_seed(t)  # the same Hutchinson probes for both
        opt.step()
    return opt, ws


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", zoo.names())
def test_exported_compiled_equals_program_optimizer(folder, name, dtype):
    """Every zoo program, 100 steps: the exported class with compile=True against
    ProgramOptimizer's eager step; programs with matrix ops (and only they) warn and
    run eagerly."""
    cls = exported(folder, name).Exported
    program = zoo.load(name)
    setting = dict(zoo.entry(name).settings[0])
    options = zoo.options(name, **setting)
    params, loss = problem(dtype)
    def make(ps):
        with warnings.catch_warnings():  # the matrix programs' warning, and no other
            warnings.simplefilter("ignore" if name in EAGER else "error")
            return cls(ps, compile=True, **options, **setting)

    ours, ws = run(make, params, loss, hessian=program.reads_hessian)
    assert (ours._c_step is None) == (name in EAGER)
    assert name in EAGER or ours._c_step._layouts  # the C step ran
    ref, rs = run(lambda ps: ProgramOptimizer(ps, program, **options, **setting), params, loss,
                  hessian=program.reads_hessian)
    for a, b in zip(ws, rs, strict=True):
        assert_rounding_close(a, b)
        for s in program.slots:
            assert_rounding_close(ours.state[a][s].reshape(ref.state[b][s].shape),
                                  ref.state[b][s])
        assert ours.state[a]["step"] == STEPS


def test_the_runtime_is_the_module_verbatim(folder):
    """The file carries optforge.optim.ckernel's code after its imports, character for
    character, and its imports; its C sources are ProgramOptimizer's."""
    text = Path(ckernel.__file__).read_text()
    head, sep, body = text.partition("\nimport torch\n")
    assert sep
    program, origin = resolve("lamb")
    exported_text = export_source(program, "Exported", origin=origin)
    begin = exported_text.index("# ---- the compiled step")
    end = exported_text.index("# ---- end of optforge.optim.ckernel ----")
    copied = exported_text[exported_text.index("\n", begin) + 1:end]
    assert copied.strip("\n") == body.strip("\n")
    top = {ast.unparse(n) for n in ast.parse(exported_text).body
           if isinstance(n, ast.Import | ast.ImportFrom)}
    assert {ast.unparse(n) for n in ast.parse(head + sep).body
            if isinstance(n, ast.Import | ast.ImportFrom)} <= top
    module = exported(folder, "lamb_text", exported_text)
    code = CCode(Plan(program))
    assert {c: code.source(c) for c in ("float", "double")} == module._C_SOURCE


def test_a_fresh_process_without_optforge_imports_and_steps(folder, tmp_path):
    """The file with compile=True in a new interpreter where importing optforge fails."""
    program, origin = resolve("adamw")
    (tmp_path / "my_adamw.py").write_text(export_source(program, "MyAdamW", origin=origin))
    script = (
        "import sys\n"
        "sys.modules['optforge'] = None  # any import of optforge fails\n"
        "import json, warnings, torch\n"
        "warnings.simplefilter('error')\n"
        "from my_adamw import MyAdamW\n"
        "w = torch.nn.Parameter(torch.ones(3))\n"
        "opt = MyAdamW([w], lr=0.1, wd=0.0, compile=True)\n"
        "w.grad = torch.tensor([1.0, -2.0, 0.0])\n"
        "opt.step()\n"
        "print(json.dumps([opt._c_step is not None, w.tolist(),"
        " sorted(m for m in sys.modules if m.startswith('optforge'))]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled, w, loaded = json.loads(done.stdout)
    assert compiled and loaded == ["optforge"]  # only the blocking entry
    ref = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([ref], lr=0.1, weight_decay=0.0)
    ref.grad = torch.tensor([1.0, -2.0, 0.0])
    opt.step()
    torch.testing.assert_close(torch.tensor(w), ref.detach().float(), rtol=0, atol=1e-6)


def continue_both(pairs, loss, start: int, steps: int):
    for t in range(start, start + steps):
        for ws, opt in pairs:
            opt.zero_grad()
            loss(ws, t).backward()
            opt.step()


def test_state_dict_round_trip_deepcopy_and_pickle(folder):
    """A compiled optimizer's state dict loaded into a new compiled optimizer, a deep
    copy and a pickled copy all continue exactly like the original."""
    cls = exported(folder, "lamb").Exported
    params, loss = problem(torch.float64)
    opt, ws = run(lambda ps: cls(ps, lr=0.01, compile=True), params, loss, steps=3)
    twin_ws = [w.detach().clone().requires_grad_() for w in ws]
    twin = cls(twin_ws, lr=0.01, compile=True)
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)  # (a state dict shares the optimizer's tensors)
    saved.seek(0)
    twin.load_state_dict(torch.load(saved))
    copy_ws, copied = copy.deepcopy((ws, opt))
    pickled_ws, pickled = pickle.loads(pickle.dumps((ws, opt)))
    runs = [(ws, opt), (twin_ws, twin), (copy_ws, copied), (pickled_ws, pickled)]
    continue_both(runs, loss, 3, 4)
    for ws_, opt_ in runs[1:]:
        assert opt_._c_step._layouts  # the C step ran
        for a, b in zip(ws, ws_, strict=True):
            assert torch.equal(a, b)
            assert opt.state[a]["step"] == opt_.state[b]["step"] == 7


def test_unsupported_tensors_step_eagerly(folder):
    """bfloat16, non-contiguous and mixed-dtype parameters take the eager step (the same
    results as compile=False); sparse gradients raise."""
    cls = exported(folder, "adamw").Exported
    a = torch.randn(6, 4, dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(6, 4).t().requires_grad_()
    assert not b.is_contiguous()
    c = torch.randn(5, requires_grad=True)
    d = torch.randn(3, dtype=torch.float64, requires_grad=True)
    groups = [[a], [b], [c, d]]
    ref = [[p.detach().clone().requires_grad_() for p in g] for g in groups]
    opts = [cls([{"params": g} for g in gs], lr=0.01, compile=flag)
            for gs, flag in ((groups, True), (ref, False))]
    for t in range(5):
        for gs, opt in zip((groups, ref), opts, strict=True):
            gen = torch.Generator().manual_seed(t)
            for p in itertools.chain(*gs):
                p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
            opt.step()
    for p, q in zip(itertools.chain(*groups), itertools.chain(*ref), strict=True):
        assert torch.equal(p, q)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters(), compile=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_no_compiler_warns_and_steps_eagerly(folder, monkeypatch):
    module = exported(folder, "sgd")
    monkeypatch.setenv("CC", "no-such-compiler-optforge")
    module._kernel_compiler.cache_clear()
    module._KERNELS.clear()
    try:
        w = torch.ones(3, requires_grad=True)
        with pytest.warns(UserWarning, match="runs eagerly.*no C compiler"):
            opt = module.Exported([w], lr=0.5, compile=True)
        assert opt._c_step is None
        w.grad = torch.ones(3)
        opt.step()
        torch.testing.assert_close(w.detach(), torch.full((3,), 0.5))
    finally:
        module._kernel_compiler.cache_clear()


def test_a_matrix_program_warns_why(folder):
    cls = exported(folder, "muon").Exported
    with pytest.warns(UserWarning, match="runs eagerly.*matrix op"):
        opt = cls([torch.nn.Parameter(torch.ones(2, 2))], compile=True)
    assert opt._c_step is None


def test_names_of_the_compiled_step_are_reserved():
    """The class cannot shadow what the embedded runtime defines or imports."""
    for name in ("KernelStep", "Path", "ctypes"):
        with pytest.raises(ExportError, match="reserved"):
            export_source(zoo.load("adamw"), name)


DEAD_CODE = {  # a dead state slot d; a dead matrix-op statement q
    "dead_slot": "def deadslot(w, g, m, d, lr, beta1=0.9):\n"
                 "    m = interp(m, g, 1 - beta1)\n"
                 "    d = d + g\n"
                 "    return lr * m, m, d\n",
    "dead_matrix_op": "def deadmatrix(w, g, m, lr, beta1=0.9):\n"
                      "    m = interp(m, g, 1 - beta1)\n"
                      "    q = row_mean(g)\n"
                      "    return lr * m, m\n",
}


@pytest.mark.parametrize("name", DEAD_CODE)
def test_dead_code_takes_the_compiled_step(folder, name):
    """The compiled step is built from the live program, as the update function is."""
    from optforge.lang.parser import parse_program

    program = parse_program(DEAD_CODE[name])
    cls = exported(folder, name, export_source(program, "Exported", lr=0.1)).Exported
    params, loss = problem(torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours, ws = run(lambda ps: cls(ps, compile=True), params, loss, steps=10)
    assert ours._c_step._layouts  # the C step ran
    ref, rs = run(lambda ps: ProgramOptimizer(ps, program, lr=0.1), params, loss, steps=10)
    for a, b in zip(ws, rs, strict=True):
        assert_rounding_close(a, b)
        assert_rounding_close(ours.state[a]["m"], ref.state[b]["m"].reshape(a.shape))


def _backward_after_step(make):
    w = torch.randn(5, requires_grad=True)
    opt = make([w])
    y = (w * w).sum()  # saves w for backward
    w.grad = torch.ones(5)
    opt.step()
    y.backward()


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_backward_through_a_weight_the_step_changed_raises(folder, compile):
    """The compiled step tells autograd it wrote the parameters, as the eager one does."""
    cls = exported(folder, "adamw").Exported
    for make in (lambda ps: cls(ps, compile=compile),
                 lambda ps: ProgramOptimizer(ps, zoo.load("adamw"), compile=compile)):
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            _backward_after_step(make)


def test_a_hyperparameter_named_like_a_builtin(folder):
    text = ("def rule(w, g, m, lr, type=0.9):\n"
            "    m = interp(m, g, 1 - type)\n"
            "    return lr * m, m\n")
    module = exported(folder, "builtin_hyper", export_source(text, "Exported"))
    w = torch.ones(3, requires_grad=True)
    opt = module.Exported([w], lr=0.5, type=0.5, compile=True)
    w.grad = torch.ones(3)
    opt.step()
    assert opt._c_step._layouts
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.75))  # m = 0.5, w = 1 - 0.25
    for name in ("isinstance", "int"):
        with pytest.raises(ExportError, match="clash"):
            export_source(text.replace("type", name), "Exported")


def test_a_kernel_built_late_that_fails_warns_once_and_steps_eagerly(folder, monkeypatch):
    """float64's kernel is built at its first step; a compiler gone by then means eager."""
    module = exported(folder, "adamw")
    opt = module.Exported([w := torch.ones(3, dtype=torch.float64, requires_grad=True)],
                          lr=0.1, compile=True)
    ref = module.Exported([r := w.detach().clone().requires_grad_()], lr=0.1)
    monkeypatch.setenv("CC", "no-such-compiler-optforge")
    module._kernel_compiler.cache_clear()
    module._KERNELS.clear()
    try:
        for t in range(3):
            w.grad = torch.full((3,), t + 1.0, dtype=torch.float64)
            r.grad = w.grad.clone()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                opt.step()
            assert [str(c.message) for c in caught if "no C compiler" in str(c.message)] \
                == ([] if t else [f"compile=True: {torch.float64} tensors step eagerly "
                                  "(no C compiler 'no-such-compiler-optforge' on PATH)"])
            ref.step()
        assert torch.equal(w, r)
    finally:
        module._kernel_compiler.cache_clear()


def test_a_state_tensor_of_the_wrong_size_is_refused():
    """A one-entry tensor where a slot needs one entry per parameter entry: eager, not an
    out-of-bounds read."""
    program = zoo.load("adamw")
    code = CCode(Plan(program))
    step = ckernel.KernelStep(code.source, [False] * (len(code.arrays) - 2))
    w, g = torch.ones(4), torch.ones(4)
    state = [[torch.zeros(4)] for _ in code.arrays[2:]]
    assert step.run([[w], [g]], state, [0.1] * len(code.inputs))
    state[-1] = [torch.zeros(1)]
    assert not step.run([[w], [g]], state, [0.1] * len(code.inputs))
