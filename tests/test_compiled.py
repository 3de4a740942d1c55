"""The compiled step (``ProgramOptimizer(compile=True)``) against the eager step.

Reference: the eager runtime, itself tested against torch.optim, pytorch-optimizer
and an op-by-op evaluation (test_program_optimizer, test_zoo). Both trajectories
train the same noisy quadratic from the same start, each on its own gradients, for
100 steps; they may differ by rounding only: at most ``100 eps`` relative to the
parameters' scale (eps of the dtype).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from test_program_optimizer import FUSION

from optforge import zoo
from optforge.lang.ir import Program
from optforge.optim import ProgramOptimizer, ckernel

SHAPES = [(4, 2, 3, 3), (4,), (5, 7), (7, 5), (), (40, 1000)]  # 40000: two chunks
EAGER = {"adafactor", "lars", "muon"}  # matrix ops or reduced slots: eager by design
STEPS = 100


@pytest.fixture(autouse=True)
def _kernel_cache(tmp_path_factory, monkeypatch):
    """Kernels built by the tests go to one temporary cache (never the user's)."""
    monkeypatch.setenv("OPTFORGE_KERNEL_CACHE", str(tmp_path_factory.getbasetemp() / "kernels"))


def problem(dtype, k=None, seed=0):
    """Parameters, and a noisy quadratic loss of them for step t (curvature a > 0)."""
    gen = torch.Generator().manual_seed(seed)
    lead = () if k is None else (k,)
    params = [torch.randn(lead + s, generator=gen, dtype=torch.float64).to(dtype)
              for s in SHAPES]
    curv = [torch.rand(p.shape, generator=gen, dtype=torch.float64).to(dtype) + 0.5
            for p in params]
    target = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype)
              for p in params]

    def loss(ws, t):
        g = torch.Generator().manual_seed(1000 + t)
        noise = [torch.randn(w.shape, generator=g, dtype=torch.float64).to(dtype) for w in ws]
        return sum((0.5 * a * (w - c) ** 2 + 0.3 * z * w).sum()
                   for w, a, c, z in zip(ws, curv, target, noise, strict=True))

    return params, loss


def trajectories(program: Program, dtype, hyper: dict, options: dict, k=None,
                 steps: int = STEPS, eager: bool = False):
    """Compiled and eager runs; ``eager``: the compiled one is expected to warn and
    fall back (any other warning is an error)."""
    params, loss = problem(dtype, k)
    runs = []
    for compile in (True, False):
        ws = [p.clone().requires_grad_() for p in params]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if eager else "error")
            opt = ProgramOptimizer(ws, program, replicas=k, compile=compile, **options,
                                   **hyper)
        for t in range(steps):
            opt.zero_grad()
            loss(ws, t).backward(create_graph=program.reads_hessian)
            torch.manual_seed(t)  # the same Hutchinson probes for both
            opt.step()
        runs.append((opt, ws))
    return runs


def assert_rounding_close(a: torch.Tensor, b: torch.Tensor, steps: int = STEPS) -> None:
    """Equal up to ``steps eps`` of the largest finite magnitude; equal NaN positions."""
    a, b = a.detach(), b.detach()
    finite = b[torch.isfinite(b)]
    scale = finite.abs().max().item() if finite.numel() else 1.0
    tol = steps * torch.finfo(a.dtype).eps * max(scale, 1.0)
    torch.testing.assert_close(a, b, rtol=0, atol=tol, equal_nan=True)


def check(runs, program: Program, steps: int = STEPS, close=assert_rounding_close) -> None:
    (c_opt, c_ws), (e_opt, e_ws) = runs
    for a, b in zip(c_ws, e_ws, strict=True):
        close(a, b, steps)
    for a, b in zip(c_ws, e_ws, strict=True):
        for s in program.slots:
            close(c_opt.state[a][s], e_opt.state[b][s], steps)
        assert c_opt.state[a]["step"] == e_opt.state[b]["step"] == steps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", zoo.names())
def test_compiled_zoo_program_equals_eager(name, dtype):
    """Every zoo program: compiled and eager agree to rounding over 100 steps; the
    programs with matrix ops or reduced slots (and only they) run eagerly."""
    program = zoo.load(name)
    setting = dict(zoo.entry(name).settings[0])
    runs = trajectories(program, dtype, setting, zoo.options(name, **setting),
                        eager=name in EAGER)
    assert (runs[0][0]._compiled is None) == (name in EAGER)
    check(runs, program)


@pytest.mark.parametrize("name", sorted(FUSION))
def test_compiled_stress_program_equals_eager(name):
    """Aliasing outputs, swapped and uniform slots, 1 x 1 slots, global reductions.
    These programs are ill-conditioned on purpose (``a <- a^2 + g`` doubles relative
    errors every step), so 4 steps and test_program_optimizer's tolerance for them."""
    program = Program.parse(FUSION[name])
    eager = name in ("row_plus_col", "transposed_slot", "matmul")
    runs = trajectories(program, torch.float64, {"lr": 0.05}, {}, steps=4, eager=eager)
    assert (runs[0][0]._compiled is None) == eager

    def close(a, b, steps):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-11, atol=1e-13,
                                   equal_nan=True)

    check(runs, program, steps=4, close=close)


@pytest.mark.parametrize("name", ["lamb", "adamw", "lion"])
def test_compiled_replicas_equal_eager(name):
    """Per-replica hyperparameters and per-replica reductions."""
    program = zoo.load(name)
    runs = trajectories(program, torch.float64, {"lr": [0.01, 0.002]}, {}, k=2)
    assert runs[0][0]._compiled is not None
    check(runs, program)


def test_std_and_max_abs_reductions_equal_eager():
    program = Program.parse(
        "def f(w, g, m, lr):\n    m = interp(m, g, 0.1)\n"
        "    return lr * (m - mean(m)) / (std(m) + max_abs(g) + rms(w) + 1e-8), m\n")
    runs = trajectories(program, torch.float64, {"lr": 0.05}, {})
    assert runs[0][0]._compiled is not None
    check(runs, program)


def test_unsupported_buckets_fall_back_to_eager():
    """bfloat16 and non-contiguous parameters run the eager step; sparse gradients
    raise the eager step's error."""
    a = torch.randn(6, 4, dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(6, 4).t().requires_grad_()  # Fortran order
    assert not b.is_contiguous()  # (t().clone().t() would be contiguous again)
    c = torch.randn(5, requires_grad=True)
    params = [a, b, c]
    ref = [p.detach().clone().requires_grad_() for p in params]
    opts = [ProgramOptimizer(ps, zoo.load("adamw"), lr=0.01, compile=c)
            for ps, c in ((params, True), (ref, False))]
    for t in range(5):
        for ps, opt in zip((params, ref), opts, strict=True):
            gen = torch.Generator().manual_seed(t)
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
            opt.step()
    for p, q in zip(params, ref, strict=True):
        assert_rounding_close(p, q, 5)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = ProgramOptimizer(emb.parameters(), zoo.load("adamw"), compile=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_kernels_are_cached_on_disk(tmp_path, monkeypatch):
    """The second optimizer of a program loads the library the first one built."""
    monkeypatch.setenv("OPTFORGE_KERNEL_CACHE", str(tmp_path))
    ckernel._KERNELS.clear()
    ProgramOptimizer([torch.zeros(3, requires_grad=True)], zoo.load("sgd"), compile=True)
    built = list(tmp_path.glob("step_*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    ckernel._KERNELS.clear()
    ProgramOptimizer([torch.zeros(3, requires_grad=True)], zoo.load("sgd"), compile=True)
    assert list(tmp_path.glob("step_*.so")) == built
    assert built[0].stat().st_mtime_ns == stamp


def test_missing_compiler_warns_and_runs_eagerly(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTFORGE_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler-optforge")
    ckernel._kernel_compiler.cache_clear()
    ckernel._KERNELS.clear()
    try:
        w = torch.ones(3, requires_grad=True)
        with pytest.warns(UserWarning, match="runs eagerly.*no C compiler"):
            opt = ProgramOptimizer([w], zoo.load("sgd"), lr=0.5, compile=True)
        w.grad = torch.ones(3)
        opt.step()
        torch.testing.assert_close(w.detach(), torch.full((3,), 0.5))
    finally:
        ckernel._kernel_compiler.cache_clear()


def test_an_unwritable_kernel_cache_warns_and_runs_eagerly(monkeypatch, tmp_path):
    """A cache path that cannot be a directory (here a file) is no crash: eager, warned."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("OPTFORGE_KERNEL_CACHE", str(tmp_path / "file" / "kernels"))
    ckernel._KERNELS.clear()
    w = torch.ones(3, requires_grad=True)
    with pytest.warns(UserWarning, match="runs eagerly"):
        opt = ProgramOptimizer([w], zoo.load("sgd"), lr=0.5, compile=True)
    w.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.5))


def test_an_unused_hessian_input_is_not_needed():
    """``h`` in the signature but never read: no Hessian state, and the compiled step
    equals the eager one."""
    program = Program.parse("def p(w, g, h, m, lr, beta=0.9):\n"
                            "    m = interp(g, m, beta)\n    return lr * m, m\n")
    assert not program.reads_hessian
    check(trajectories(program, torch.float64, {}, {}, steps=5), program, steps=5)


def test_threads_do_not_change_the_result():
    """OpenMP over chunks, partial sums added in a fixed order: 2 threads give the
    very bits of 1 thread (LAMB: two per-tensor norms)."""
    program = zoo.load("lamb")
    params, loss = problem(torch.float32)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        ws = [p.clone().requires_grad_() for p in params]
        opt = ProgramOptimizer(ws, program, lr=0.01, compile=True)
        for t in range(5):
            opt.zero_grad()
            loss(ws, t).backward()
            opt.step()
        results.append(ws)
    torch.set_num_threads(1)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_copies_of_a_compiled_optimizer_continue_like_the_original():
    program = zoo.load("adamw")
    params, loss = problem(torch.float64)
    ws = [p.clone().requires_grad_() for p in params]
    opt = ProgramOptimizer(ws, program, lr=0.01, compile=True)
    for t in range(3):
        opt.zero_grad()
        loss(ws, t).backward()
        opt.step()
    twin_ws, twin = copy.deepcopy((ws, opt))
    assert twin.compile and twin._compiled is not None
    for t in range(3, 6):
        for w_, o in ((ws, opt), (twin_ws, twin)):
            o.zero_grad()
            loss(w_, t).backward()
            o.step()
    for a, b in zip(ws, twin_ws, strict=True):
        assert torch.equal(a, b)


def test_training_with_the_compiled_step_matches_eager():
    """``train(..., compile=True)``: 4 replicas of a real task, the same validation
    curves up to float32 rounding carried through 30 steps of training."""
    from optforge.train import train

    runs = [train("digits_logreg", "adamw", "tiny", seeds=range(4), steps=30, compile=c)
            for c in (True, False)]
    assert runs[0].error is None and runs[1].error is None
    compiled, eager = (torch.as_tensor(r.eval_loss) for r in runs)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-6)


def test_a_kernel_built_late_that_fails_warns_once_and_runs_eagerly(monkeypatch):
    """float64's kernel is built at its first step; a compiler gone by then means eager."""
    program = zoo.load("adamw")
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    r = w.detach().clone().requires_grad_()
    opt = ProgramOptimizer([w], program, lr=0.1, compile=True)
    ref = ProgramOptimizer([r], program, lr=0.1)
    monkeypatch.setenv("CC", "no-such-compiler-optforge")
    ckernel._kernel_compiler.cache_clear()
    ckernel._KERNELS.clear()
    try:
        for t in range(3):
            w.grad = torch.full((3,), t + 1.0, dtype=torch.float64)
            r.grad = w.grad.clone()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                opt.step()
            assert [str(c.message) for c in caught] == ([] if t else [
                f"compile=True: {torch.float64} tensors step eagerly "
                "(no C compiler 'no-such-compiler-optforge' on PATH)"])
            ref.step()
        assert torch.equal(w, r)
    finally:
        ckernel._kernel_compiler.cache_clear()
