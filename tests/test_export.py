"""``optforge export``: generated optimizer files against ProgramOptimizer and the references.

Every generated module is written to a temporary directory and imported with
importlib, as a user would. Comparisons run in float64 on the zoo's verification
model (1-D, 2-D and 4-D parameters) or on small hand-made parameter sets.

Tolerance against ProgramOptimizer: 1e-12 on any parameter entry after any step.
The export rearranges the arithmetic (fused kernels such as ``addcdiv_``, scalar
coefficients folded, ``interp`` expanded into ``mul_`` + ``addcmul_``): exact in
real arithmetic, so the two runs differ by rounding only (observed <= 3e-15 over
50 steps on the zoo). Against the literature's reference implementations the
zoo's own tolerance applies (``optforge.zoo.verify.TOLERANCE``).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import itertools
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optforge import zoo
from optforge.export import ExportError, Origin, export, export_source, resolve
from optforge.export.lower import HELPERS
from optforge.lang import ops
from optforge.lang.ir import Program
from optforge.lang.symbolic import formula
from optforge.optim import ProgramOptimizer
from optforge.zoo import verify

ROOT = Path(__file__).resolve().parents[1]
STEPS = 50
TOLERANCE = 1e-12
_modules = itertools.count()


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exported")


def load(folder: Path, text: str, stem: str = "exported"):
    """Write ``text`` to a file and import it as a module."""
    path = folder / f"{stem}_{next(_modules)}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_zoo_cache: dict[str, object] = {}


def zoo_class(folder: Path, name: str):
    """The exported class of zoo optimizer ``name`` (exported once per test session)."""
    if name not in _zoo_cache:
        program, origin = resolve(name)
        _zoo_cache[name] = load(folder, export_source(program, "Exported", origin=origin),
                                name).Exported
    return _zoo_cache[name]


def moved(trajectory) -> float:
    init = verify.init_params()
    return max((trajectory[-1][k] - init[k]).abs().max().item() for k in init)


# ------------------------------------------------------------------ the op table


def test_every_op_has_print_forms_that_compute_it():
    """Each op's print forms (``Op.each`` on tensors, ``Op.py`` on floats), evaluated as
    the exported file evaluates them, give what the op's torch and float forms give."""
    from optforge.export.lower import dims
    from optforge.lang import helpers
    from optforge.lang.pyform import Py

    gen = torch.Generator().manual_seed(0)
    names = {"torch": torch, "math": math, **vars(helpers)}
    for name, op in ops.REGISTRY.items():
        assert op.each, name
        assert (op.py is None) == (op.scalar is None), name
        args = [torch.rand(1, 3, 4, generator=gen) + 0.5 for _ in range(op.arity)]
        if name == "matmul":
            args[1] = args[1].mT
        keys = "abc"[:op.arity]
        env = {**names, **dict(zip(keys, [a[0] for a in args], strict=False))}  # 2-D views
        if op.family == "global":
            text = op.each.format(a="[a]", x="t", **dims(True))
            torch.testing.assert_close(eval(text, env), op.fn([args[0]])[0], msg=name)
        else:
            text = op.each.format(**{k: k for k in keys}, **dims(True))
            torch.testing.assert_close(eval(text, env), op.fn(*args)[0], msg=name)
        if op.py is not None:
            values = [float(x.flatten()[0]) for x in args]
            text = op.py(*(Py(k) for k in keys)).text
            got = eval(text, {**names, **dict(zip(keys, values, strict=False))})
            assert got == op.scalar(*values), name


# ------------------------------------------------------------- the zoo, 50 steps


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_program_matches_program_optimizer(folder, name):
    cls = zoo_class(folder, name)
    program = zoo.load(name)
    for setting in zoo.entry(name).settings:
        hyper = {k: v for k, v in setting.items() if k != "lr"}
        extra = zoo.options(name, **hyper)
        lr = setting["lr"]
        ours = verify.trajectory(lambda ps, h=hyper, lr=lr: cls(ps, lr=lr, **h), STEPS,
                                 hessian=bool(extra))
        ref = verify.trajectory(lambda ps, h=hyper, e=extra, lr=lr: ProgramOptimizer(
            ps, program, lr=lr, **e, **h), STEPS, hessian=bool(extra))
        assert moved(ref) > 1e-3, f"{name} {setting}: the run does not move"
        assert verify.deviation(ours, ref) <= TOLERANCE, (name, setting)


def file_kernels(text: str, function: str) -> list[str]:
    """The multi-tensor kernels the exported file's ``function`` calls, in order, read
    from its syntax tree (``add`` with ``alpha=`` is ``add_alpha``)."""
    tree = ast.parse(text)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    out = []
    for node in fn.body:
        call = getattr(node, "value", None)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                and call.func.attr.startswith("_foreach_"):
            name = call.func.attr.removeprefix("_foreach_")
            if any(kw.arg == "alpha" for kw in call.keywords):
                name = name.replace("add", "add_alpha")
            out.append(name)
    return out


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_file_runs_the_optimizers_kernels(name):
    """One plan: the kernel list ProgramOptimizer ran is the one the export printed, and
    the exported file calls its multi-tensor kernels, in the same order."""
    from optforge.export.lower import lower
    from optforge.lang.kernels import OWN_CALLS

    program = zoo.load(name)
    setting = zoo.entry(name).settings[0]
    hyper = {k: v for k, v in setting.items() if k != "lr"}
    extra = zoo.options(name, **hyper)
    opts = []
    verify.trajectory(lambda ps: opts.append(ProgramOptimizer(
        ps, program, lr=setting["lr"], **extra, **hyper)) or opts[-1], 2, hessian=bool(extra))
    ran = list(opts[0]._plan._traces.values())
    assert len(ran) == 1  # one trace, replayed every step
    lowered = lower(program)
    assert [k.key() for k in lowered.trace.kernels] == [k.key() for k in ran[0].kernels]
    assert lowered.trace.slots == ran[0].slots
    text = export_source(program, "Exported")
    foreach = [k.call for k in ran[0].kernels if k.call not in OWN_CALLS]
    assert foreach and file_kernels(text, lowered.kernels) == foreach


@pytest.mark.parametrize("name", ["adamw", "lion"])
def test_exported_matches_reference_implementation(folder, name):
    """Exported AdamW against torch.optim.AdamW, Lion against pytorch_optimizer.Lion,
    configured as the zoo's verification configures them."""
    cls = zoo_class(folder, name)
    ref = verify.REFERENCES[name]
    for setting in zoo.entry(name).settings:
        hyper = {k: v for k, v in setting.items() if k != "lr"}
        ours = verify.trajectory(lambda ps, h=hyper, s=setting: cls(ps, lr=s["lr"], **h), STEPS)
        theirs = verify.trajectory(lambda ps, s=setting: ref.build(ps, s), STEPS)
        assert moved(theirs) > 1e-3
        assert verify.deviation(ours, theirs) <= verify.TOLERANCE, (name, setting)


def test_a_changed_rule_is_caught(folder):
    """The comparison can fail: AdamW exported with eps inside the square root differs."""
    text = str(zoo.load("adamw")).replace("sqrt(v_hat) + eps", "sqrt(v_hat + eps)")
    cls = load(folder, export_source(text, "Changed")).Changed
    setting = zoo.entry("adamw").settings[2]
    hyper = {k: v for k, v in setting.items() if k != "lr"}
    ours = verify.trajectory(lambda ps: cls(ps, lr=setting["lr"], **hyper), 10)
    ref = verify.trajectory(lambda ps: ProgramOptimizer(ps, zoo.load("adamw"), lr=setting["lr"],
                                                        **hyper), 10)
    assert verify.deviation(ours, ref) > 1e-6


# ------------------------------------------------------- every op, every operand kind

SIGNED = {"L": ["g", "m - 0.3 * g", "w"], "F": ["a", "b", "c"],
          "T": ["global_mean(g)", "global_norm(m)", "global_norm(g)"]}
POSITIVE = {"L": ["abs(g) + 0.5", "abs(m) + 0.25", "abs(w) + 0.1"], "F": ["a", "b", "c"],
            "T": ["global_norm(g)", "global_norm(m) + 0.5", "global_norm(w)"]}
DOMAIN = {"sqrt", "rsqrt", "log", "log1p", "pow", "div", "reciprocal", "mod"}
KINDS = {1: ["L", "F", "T"], 2: ["LL", "LF", "FL", "FF", "TL", "LT"],
         3: ["LLL", "LLF", "LFF", "FLF", "FFL", "FFF", "TLF", "LLT"]}
SPECIAL = {  # matrix ops whose result must keep the parameter's R x C shape
    ("transpose", "L"): "transpose(transpose(g + m))",
    ("matmul", "LL"): "matmul(g, matmul(transpose(w), m + g))",
    ("matmul", "FF"): "matmul(a, b)",
    ("matmul", "LF"): "matmul(row_mean(col_mean(g)), a)",  # 1 x 1 lists by a float
    ("matmul", "FL"): "matmul(a, col_mean(g))",
    ("matmul", "TL"): "matmul(global_norm(g), col_mean(g))",
    ("orthogonalize", "L"): "orthogonalize(g + m)",
}


def op_cases():
    for name, op in sorted(ops.REGISTRY.items()):
        if op.family == "matrix":
            kinds = [k for (n, k) in SPECIAL if n == name] or ["L", "F"]
        else:
            kinds = KINDS[op.arity]
        for kind in kinds:
            yield name, kind


def op_program(name: str, kind: str) -> str:
    if (name, kind) in SPECIAL:
        x = SPECIAL[(name, kind)]
    else:
        pool = POSITIVE if name in DOMAIN else SIGNED
        x = f"{name}({', '.join(pool[k][i] for i, k in enumerate(kind))})"
    return (f"def t(w, g, m, lr, a=0.7, b=1.3, c=0.4):\n"
            f"    x = {x}\n"
            f"    m = interp(m, g + x, 0.5)\n"
            f"    update = lr * (m + g)\n"
            f"    return update, m\n")


@pytest.mark.parametrize(("name", "kind"), list(op_cases()))
def test_op_matches_program_optimizer(folder, name, kind):
    """Each op with list (L), float (F) and uniform-tensor (T) operands, 8 steps."""
    program = Program.parse(op_program(name, kind))
    cls = load(folder, export_source(program, "T")).T
    ours = verify.trajectory(lambda ps: cls(ps, lr=0.01), 8)
    ref = verify.trajectory(lambda ps: ProgramOptimizer(ps, program, lr=0.01), 8)
    assert verify.deviation(ours, ref) <= TOLERANCE, op_program(name, kind)


SLOT_PROGRAMS = {
    "transposed slot": """
def t(w, g, s, lr, beta=0.9):
    s = interp(s, transpose(g), 1 - beta)
    update = lr * (transpose(s) + 0.1 * g)
    return update, s
""",
    "R x R slot": """
def t(w, g, s, lr, beta=0.9):
    s = interp(s, matmul(g, transpose(g)), 1 - beta)
    update = lr * matmul(s, g) / (norm(s) + 1)
    return update, s
""",
    "swapped slots": """
def t(w, g, a, b, lr):
    update = lr * (g + a - 0.5 * b)
    return update, b + g, a
""",
    "slot kept, slot from input": """
def t(w, g, a, b, p, lr):
    update = lr * (g + 0.1 * a + 0.1 * p)
    return update, a, g, w
""",
    "uniform slots": """
def t(w, g, s, u, lr, step):
    s = 0.5 * s + step
    u = interp(u, global_norm(g), 0.5)
    update = lr * (g + 0.01 * s * u)
    return update, s, u
""",
    "scalar-valued slot": """
def t(w, g, s, k, lr, step, beta=0.9):
    s = interp(s, norm(g), 1 - beta)
    k = step * 2
    update = lr * g / (s + k)
    return update, s, k
""",
    "update terms share a list": """
def t(w, g, m, lr, beta=0.9):
    m = interp(m, g, 1 - beta)
    d = abs(m) + 0.5
    update = lr * (g / d + 0.01 * d * w)
    return update, m
""",
    "update is uniform": """
def t(w, g, lr):
    update = lr * global_norm(g) + 0 * g
    return update
""",
}


@pytest.mark.parametrize("case", SLOT_PROGRAMS)
def test_slot_shapes_and_aliasing(folder, case):
    """Reduced, transposed and square slots, slots that swap, keep or copy an input;
    slots holding uniform values."""
    program = Program.parse(SLOT_PROGRAMS[case].strip() + "\n")
    cls = load(folder, export_source(program, "T")).T
    ours = verify.trajectory(lambda ps: cls(ps, lr=0.01), 8)
    ref = verify.trajectory(lambda ps: ProgramOptimizer(ps, program, lr=0.01), 8)
    assert verify.deviation(ours, ref) <= TOLERANCE


def test_slot_returning_w_keeps_the_old_weights(folder):
    """A slot returned as ``w`` holds the weights before the step (the new state is
    computed from this step's inputs)."""
    program = Program.parse("def t(w, g, p, lr):\n    return lr * g + 0 * p, w\n")
    cls = load(folder, export_source(program, "T")).T
    p = torch.nn.Parameter(torch.arange(3.0))
    opt = cls([p], lr=0.5)
    p.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(opt.state[p]["p"], torch.arange(3.0), rtol=0, atol=0)
    torch.testing.assert_close(p.detach(), torch.arange(3.0) - 0.5, rtol=0, atol=0)


# --------------------------------------------------- scalar forms at edge values

EDGE = [-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, 1e300, -1e300, 1e-310]


def scalar_cases():
    for name, op in sorted(ops.REGISTRY.items()):
        if op.scalar is not None:
            yield name


@pytest.mark.parametrize("name", list(scalar_cases()))
def test_scalar_form_at_edge_values(folder, name):
    """An op on hyperparameters only (a Python float in the generated step), at zeros,
    signed zeros, negatives and huge values: inf and NaN exactly where the runtime has them."""
    arity = ops.REGISTRY[name].arity
    args = ", ".join("abc"[:arity])
    text = (f"def t(w, g, lr, a=0.5, b=0.5, c=0.5):\n"
            f"    return lr * (g + {name}({args}) * g)\n")
    program = Program.parse(text)
    cls = load(folder, export_source(program, "T")).T
    grid = EDGE if arity == 1 else [-2.0, -0.0, 0.0, 0.5, 3.0, 1e300]
    for values in itertools.product(grid, repeat=arity):
        hyper = dict(zip("abc", values, strict=False))
        results = []
        for make in (lambda ps, h=hyper: cls(ps, lr=1.0, **h),
                     lambda ps, h=hyper: ProgramOptimizer(ps, program, lr=1.0, **h)):
            p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
            opt = make([p])
            p.grad = torch.tensor([1.0, -2.0, 0.25])
            opt.step()
            results.append(p.detach().clone())
        torch.testing.assert_close(results[0], results[1], rtol=0, atol=TOLERANCE,
                                   equal_nan=True, msg=f"{name}{values}")


def test_every_helper_is_reachable():
    """Every helper of the table is called by some scalar form (none is dead text)."""
    from optforge.lang.pyform import Py

    used = set()
    for name in scalar_cases():
        op = ops.REGISTRY[name]
        text = op.py(*(Py(x) for x in "abc"[:op.arity])).text
        used |= {h for h in HELPERS if f"{h}(" in text}
    assert used | {"_orthogonalize"} == set(HELPERS)


# ----------------------------------------------- groups, buckets, odd parameters


def odd_params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(3, 4, generator=gen).t().detach().requires_grad_()  # non-contiguous
    assert not a.is_contiguous()
    b = torch.randn(5, generator=gen).requires_grad_()
    c = torch.randn((), generator=gen).requires_grad_()  # a scalar parameter
    d = torch.randn(2, 3, 2, generator=gen).requires_grad_()
    return [a, b, c, d]


def odd_run(make, steps: int = 12) -> list[torch.Tensor]:
    """Two groups with different hyperparameters; ``b`` skips every third step, so the
    step counts differ and the optimizer updates buckets of equal step count."""
    params = odd_params()
    opt = make([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}])
    gen = torch.Generator().manual_seed(4)
    out = []
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = None if (i == 1 and step % 3 == 0) else torch.randn(p.shape, generator=gen)
        opt.step()
        out.append(torch.cat([p.detach().reshape(-1) for p in params]))
    return out


@pytest.mark.parametrize("name", ["adamw", "lamb", "adafactor", "muon", "cautious_adamw",
                                  "nadam", "mars_adamw"])
def test_groups_buckets_scalar_and_non_contiguous_parameters(folder, name):
    cls = zoo_class(folder, name)
    program = zoo.load(name)
    ours = odd_run(lambda groups: cls(groups, lr=0.01))
    ref = odd_run(lambda groups: ProgramOptimizer(groups, program, lr=0.01))
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOLERANCE)
    assert (ours[-1] - ref[0]).abs().max() > 1e-3


# ------------------------------------------------------------------ state dicts


def run_steps(opt, params, steps: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


@pytest.mark.parametrize("name", ["adamw", "adafactor", "nadam"])
def test_state_dict_round_trip(folder, name):
    """Stop after 5 steps, save (torch.save), load into a new optimizer, go on: the same
    parameters as an uninterrupted run."""
    cls = zoo_class(folder, name)
    straight = odd_params()
    opt = cls(straight, lr=0.01)
    run_steps(opt, straight, 5, seed=1)
    run_steps(opt, straight, 5, seed=2)
    resumed = odd_params()
    first = cls(resumed, lr=0.01)
    run_steps(first, resumed, 5, seed=1)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = cls(resumed, lr=0.01)
    second.load_state_dict(torch.load(buffer))
    assert second.state[resumed[0]]["step"] == 5
    run_steps(second, resumed, 5, seed=2)
    for a, b in zip(straight, resumed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["adamw", "adafactor", "nadam"])
def test_loads_program_optimizer_state(folder, name):
    """Training started with ProgramOptimizer goes on with the exported optimizer."""
    cls = zoo_class(folder, name)
    program = zoo.load(name)
    ref_params = odd_params()
    ref = ProgramOptimizer(ref_params, program, lr=0.01)
    run_steps(ref, ref_params, 5, seed=1)
    ours_params = [p.detach().clone().requires_grad_() for p in ref_params]
    ours = cls(ours_params, lr=0.01)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # (else they share tensors)
    run_steps(ref, ref_params, 5, seed=2)
    run_steps(ours, ours_params, 5, seed=2)
    for a, b in zip(ours_params, ref_params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=TOLERANCE)


def test_state_is_created_lazily(folder):
    cls = zoo_class(folder, "adamw")
    a, b = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(4))
    opt = cls([a, b])
    assert not opt.state
    a.grad = torch.ones(2, 3)
    opt.step()
    assert set(opt.state) == {a}
    assert opt.state[a]["m"].shape == a.shape and opt.state[a]["step"] == 1
    assert opt.defaults == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.01}


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize("kwargs", [
    {"lr": -1.0}, {"lr": math.nan}, {"lr": "0.1"}, {"beta1": math.inf}, {"wd": True},
    {"eps": None}, {"beta2": [0.9]},
])
def test_bad_arguments_raise_value_error(folder, kwargs):
    cls = zoo_class(folder, "adamw")
    with pytest.raises(ValueError):
        cls([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_bad_group_value_raises_value_error(folder):
    cls = zoo_class(folder, "adamw")
    with pytest.raises(ValueError, match="beta1"):
        cls([{"params": [torch.nn.Parameter(torch.ones(2))], "beta1": math.nan}])
    opt = cls([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="learning rate"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": -0.1})


def test_hessian_options(folder):
    cls = zoo_class(folder, "sophiah")
    p = torch.nn.Parameter(torch.ones(2))
    assert cls([p]).hessian_every == 10  # the program's k
    assert cls([p], k=3).hessian_every == 3
    assert cls([p], hessian_every=2).hessian_every == 2
    assert cls([p]).hessian_distribution == "gaussian"
    for bad in ({"hessian_every": 0}, {"hessian_every": 1.5}, {"hessian_distribution": "x"}):
        with pytest.raises(ValueError):
            cls([p], **bad)
    opt = cls([p])
    p.grad = torch.ones(2)  # no graph: the Hessian estimate needs create_graph=True
    with pytest.raises(RuntimeError, match="create_graph"):
        opt.step()


# ------------------------------------------------------------------ the file


RUNTIME = {"ctypes", "hashlib", "os", "platform", "shutil", "subprocess", "tempfile",
           "functools", "pathlib", "weakref"}


def test_files_pass_ruff_and_import_only_torch(tmp_path):
    """Every zoo export (and the op-table programs) passes ruff with the project's
    configuration and imports nothing but torch and the standard library (math, numbers;
    the compiled step's runtime: optforge.optim.ckernel's imports, and warnings)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    texts = {}
    for name in zoo.names():
        program, origin = resolve(name)
        texts[name] = export_source(program, origin=origin)
    for i, (name, kind) in enumerate(op_cases()):
        texts[f"op_{i}"] = export_source(op_program(name, kind), "T")
    for name, text in texts.items():
        (tmp_path / f"{name}.py").write_text(text)
        imported = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert imported <= {"math", "numbers", "torch", "warnings", *RUNTIME}, name
    done = subprocess.run([ruff, "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                           str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def test_docstring_has_formula_origin_and_hyperparameters():
    program, origin = resolve("adamw")
    text = export_source(program, "MyAdamW", lr=3e-4, hyperparameters={"wd": 0.1},
                         origin=origin, module="my_adamw")
    doc = " ".join(ast.get_docstring(ast.parse(text)).split())
    for line in formula(program.with_hyper(wd=0.1)).splitlines():
        assert " ".join(line.split()) in doc
    assert "zoo optimizer adamw" in doc and "Loshchilov & Hutter" in doc
    assert "lr=0.0003, beta1=0.9, beta2=0.999, eps=1e-08, wd=0.1" in doc
    assert "from my_adamw import MyAdamW" in doc
    assert "def adamw(w, g, m, v, lr, step" in doc
    searched = export_source(program, "Found", origin=Origin(source="a search", run="runs/x",
                                                             rank=3, fitness=0.912345))
    doc = " ".join(ast.get_docstring(ast.parse(searched)).split())
    assert "run runs/x, rank 3 in its hall of fame, fitness 0.912345" in doc


def test_recommended_values_are_the_defaults(folder):
    program, origin = resolve("lion")
    cls = load(folder, export_source(program, "L", lr=3e-4, hyperparameters={"beta2": 0.95},
                                     origin=origin)).L
    opt = cls([torch.nn.Parameter(torch.ones(2))])
    assert opt.defaults == {"lr": 3e-4, "beta1": 0.9, "beta2": 0.95, "wd": 0.0}


def test_export_errors(tmp_path):
    program = zoo.load("adamw")
    with pytest.raises(ExportError, match="identifier"):
        export_source(program, "not a name")
    with pytest.raises(ExportError, match="reserved"):
        export_source(program, "torch")
    with pytest.raises(ExportError, match="unknown hyperparameters"):
        export_source(program, "A", hyperparameters={"nope": 1.0})
    with pytest.raises(ExportError, match="finite"):
        export_source(program, "A", hyperparameters={"wd": math.inf})
    with pytest.raises(ExportError, match="lr"):
        export_source(program, "A", lr=-1)
    clash = "def t(w, g, lr, compile=1.0):\n    return lr * g * compile\n"
    with pytest.raises(ExportError, match="compile"):
        export_source(clash, "A")
    with pytest.raises(ExportError, match="neither a program file nor a zoo optimizer"):
        resolve("no_such_optimizer")
    with pytest.raises(ExportError, match="run directory"):
        resolve(str(tmp_path))
    with pytest.raises(ExportError, match="does not exist"):
        resolve(str(tmp_path / "missing.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("def t(w, g, lr):\n    return lr * nope(g)\n")
    with pytest.raises(ExportError, match="bad.py.*nope"):
        resolve(str(bad))
    out = tmp_path / "x.py"
    export("adamw", out)
    with pytest.raises(ExportError, match="exists"):
        export("adamw", out)
    export("lion", out, overwrite=True)
    assert "class Lion(" in out.read_text()


def test_program_file_source(tmp_path, folder):
    path = tmp_path / "my_rule.py"
    path.write_text("def my_rule(w, g, m, lr, beta=0.9):\n"
                    "    m = interp(m, g, 1 - beta)\n"
                    "    return lr * sign(m), m\n")
    program, origin = resolve(str(path))
    assert origin.source == "program file my_rule.py"
    out = export(str(path), tmp_path / "my_opt.py", "MyOpt")
    cls = load(folder, out.read_text()).MyOpt
    p = torch.nn.Parameter(torch.ones(3))
    opt = cls([p], lr=0.1)
    p.grad = torch.tensor([1.0, -1.0, 0.0])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, 1.1, 1.0]), rtol=0, atol=1e-15)


# compile=True: tests/test_export_compiled.py


# ------------------------------------------------------------------ the command


def cli_app():
    import typer

    from optforge.cli.export import export_command

    app = typer.Typer()
    app.command("export")(export_command)
    app.command("other")(lambda: None)  # (a group, so that "export" is a subcommand)
    return app


def test_cli_writes_a_working_file(tmp_path, folder):
    from typer.testing import CliRunner

    out = tmp_path / "my_optimizer.py"
    done = CliRunner().invoke(cli_app(), ["export", "adamw", "--out", str(out), "--name",
                                          "MyOpt", "--lr", "3e-4", "--set", "wd=0.1"])
    assert done.exit_code == 0, done.output
    assert "class MyOpt" in done.output
    cls = load(folder, out.read_text()).MyOpt
    assert cls([torch.nn.Parameter(torch.ones(2))]).defaults["wd"] == 0.1
    assert "from my_optimizer import MyOpt" in out.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["nope"], "neither a program file nor a zoo optimizer"),
    (["adamw", "--set", "wd"], "NAME=VALUE"),
    (["adamw", "--set", "wd=x"], "not a number"),
    (["adamw", "--set", "wd=inf"], "finite"),
    (["adamw", "--set", "beta9=0.1"], "unknown hyperparameters"),
    (["adamw", "--name", "1x"], "identifier"),
    (["adamw", "--out", "x.txt"], "must end in .py"),
])
def test_cli_errors(tmp_path, args, message, monkeypatch):
    from typer.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli_app(), ["export", *args])
    assert done.exit_code == 2
    assert message in " ".join(done.output.split())


# ------------------------------------------- programs as the search produces them


def mutated_programs(n: int, seed: int) -> list[Program]:
    """Zoo programs (not reading h) after 1-6 random mutations of the search's operators."""
    import random

    from optforge.search.mutate import MutationConfig, Mutator

    rng = random.Random(seed)
    mutator = Mutator(MutationConfig(max_slots=5), rng)
    names = [name for name in zoo.names() if not zoo.entry(name).hessian]
    out: list[Program] = []
    while len(out) < n:
        program = zoo.load(rng.choice(names))
        for _ in range(rng.randint(1, 6)):
            program, _ = mutator.mutate(program)
        out.append(program)
    return out


MUTATED = mutated_programs(40, seed=7)


def relative_gap(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    """Largest ``|x - y| / max(|y|, 1)`` over the finite entries of two trajectories; inf
    where their non-finite entries fall in different places."""
    worst = 0.0
    for sa, sb in zip(a, b, strict=True):
        for key in sa:
            x, y = sa[key], sb[key]
            if not torch.equal(x.isfinite(), y.isfinite()):
                return math.inf
            rel = ((x - y).abs() / y.abs().clamp_min(1))[y.isfinite()]
            worst = max(worst, rel.max().item() if rel.numel() else 0.0)
    return worst


@pytest.mark.parametrize("index", range(len(MUTATED)))
def test_mutated_program_matches_program_optimizer(folder, index):
    """Finite entries agree to 1e-10 relative (these programs are often wild: steps that
    divide by eps, masks, mod); non-finite entries fall in the same places.

    Only where the reference is itself reproducible to that tolerance: its trajectory from
    initial weights moved by one part in 2^52 stays within 1e-10. Past that, two correct
    implementations that round one sum differently (another CPU's vector width) need not
    agree, and the comparison would measure the CPU, not the export (a mutated Adafactor whose
    interpolation weight grows with the step and whose moment mean cancels to ~0 moves by 1e21
    from such a nudge)."""
    program = MUTATED[index]

    def reference(nudge: bool) -> list[dict[str, torch.Tensor]]:
        return verify.trajectory(lambda ps: ProgramOptimizer(ps, program, lr=1e-3), 6,
                                 nudge=nudge)

    ref = reference(nudge=False)
    floor = relative_gap(reference(nudge=True), ref)
    if floor > 1e-10:
        pytest.skip(f"ill-conditioned: a 2^-52 nudge of the weights moves it by {floor:.0e}")
    cls = load(folder, export_source(program, "T")).T
    ours = verify.trajectory(lambda ps: cls(ps, lr=1e-3), 6)
    assert relative_gap(ours, ref) <= 1e-10, str(program)
