"""ProgramOptimizer against references: torch.optim.AdamW, separate runs, a naive
tensor-by-tensor evaluation of the program, and known answers."""

from __future__ import annotations

import copy
import gc
import io
import random

import pytest
import torch

from optforge import zoo
from optforge.lang import ops
from optforge.lang.ir import Call, Const, Program, Var
from optforge.lang.runtime import Plan
from optforge.lang.shapes import view2d
from optforge.optim import ProgramOptimizer
from optforge.search.mutate import MutationConfig, Mutator

D = torch.float64
SHAPES = [(4, 2, 3, 3), (4,), (5, 7), (7, 5), ()]  # 4-D, 1-D, wide, tall, 0-d


def make_params(shapes=SHAPES, seed=0, k=None, dtype=D) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lead = () if k is None else (k,)
    return [torch.randn(lead + s, generator=gen, dtype=D).to(dtype).requires_grad_()
            for s in shapes]


def set_grads(params, step: int, seed: int = 1) -> None:
    """A noisy quadratic: g = 0.5 (w - t) + 0.3 noise, with targets and noise fixed by seed."""
    gen = torch.Generator().manual_seed(seed)
    targets = [torch.randn(p.shape, generator=gen, dtype=D) for p in params]
    gen.manual_seed(1000 * seed + step)
    for p, t in zip(params, targets, strict=True):
        noise = torch.randn(p.shape, generator=gen, dtype=D)
        p.grad = (0.5 * (p.detach().to(D) - t) + 0.3 * noise).to(p.dtype)


def run(opt, params, steps: int, start: int = 0) -> None:
    for t in range(start, start + steps):
        set_grads(params, t)
        opt.step()


def state_tensors(opt) -> list[torch.Tensor]:
    return [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]


# --------------------------------------------------------- against torch.optim.AdamW

def test_param_groups_match_torch_adamw():
    """Two groups with different hyperparameters, lr changed mid-run like a scheduler."""
    ours_p, theirs_p = make_params(), make_params()
    ours = ProgramOptimizer(
        [{"params": ours_p[:2], "lr": 1e-2, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "wd": 0.1},
         {"params": ours_p[2:], "lr": 3e-3, "wd": 0.0}], zoo.load("adamw"))
    theirs = torch.optim.AdamW(
        [{"params": theirs_p[:2], "lr": 1e-2, "betas": (0.8, 0.95), "eps": 1e-6,
          "weight_decay": 0.1},
         {"params": theirs_p[2:], "lr": 3e-3, "weight_decay": 0.0}], foreach=True)
    for t in range(20):
        if t == 10:
            for opt in (ours, theirs):
                for group in opt.param_groups:
                    group["lr"] *= 0.5
        for opt, ps in ((ours, ours_p), (theirs, theirs_p)):
            set_grads(ps, t)
            opt.step()
    for a, b, b0 in zip(ours_p, theirs_p, make_params(), strict=True):
        assert not torch.equal(b, b0)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_fused_kernels_are_those_of_the_references():
    """AdamW runs torch.optim.AdamW(foreach=True)'s 8 multi-tensor kernels, Lion
    pytorch_optimizer's 5 (the plan is compared, not a timing)."""
    for name, kernels in (("adamw", 8), ("lion", 5)):
        plan = Plan(zoo.load(name))
        kinds = {r: "L" for r in (plan.input_regs["w"], plan.input_regs["g"], *plan.slot_regs)}
        kinds |= {r: "f" for k, r in (*plan.input_regs.items(), *plan.hyper_regs.items())
                  if k not in ("w", "g")}
        assert plan.trace(kinds, apply=True).n_kernels == kernels


def test_params_without_grad_are_skipped_like_torch():
    ours_p, theirs_p = make_params(), make_params()
    ours = ProgramOptimizer(ours_p, zoo.load("adamw"), lr=1e-2)
    theirs = torch.optim.AdamW(theirs_p, lr=1e-2, weight_decay=0.01, foreach=True)
    frozen = ours_p[1].detach().clone()
    for t in range(8):
        for opt, ps in ((ours, ours_p), (theirs, theirs_p)):
            set_grads(ps, t)
            if t < 3:
                ps[1].grad = None  # no gradient: skipped, its step count does not advance
            opt.step()
        if t < 3:
            assert torch.equal(ours_p[1], frozen) and ours_p[1] not in ours.state
    assert ours.state[ours_p[1]]["step"] == 5 and ours.state[ours_p[0]]["step"] == 8
    for a, b in zip(ours_p, theirs_p, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


# ------------------------------------------------------------- optimizer protocol

@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor", "lars"])
def test_state_dict_round_trip(name):
    """5 steps, save, load into a fresh optimizer, 5 more: identical to 10 uninterrupted."""
    program = zoo.load(name)
    straight_p = make_params()
    straight = ProgramOptimizer(straight_p, program, lr=1e-2)
    run(straight, straight_p, 10)

    first_p = make_params()
    first = ProgramOptimizer(first_p, program, lr=1e-2)
    run(first, first_p, 5)
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in first_p], "opt": first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    resumed_p = [p.clone().requires_grad_() for p in saved["params"]]
    resumed = ProgramOptimizer(resumed_p, program, lr=1e-2)
    resumed.load_state_dict(saved["opt"])
    run(resumed, resumed_p, 5, start=5)
    for a, b in zip(resumed_p, straight_p, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_optimizer_copies_continue_like_the_original(how):
    params = make_params()
    opt = ProgramOptimizer(params, zoo.load("lion"), lr=1e-2)
    run(opt, params, 3)
    if how == "pickle":
        buf = io.BytesIO()
        torch.save((params, opt), buf)  # what torch.save(model and optimizer) does
        buf.seek(0)
        params2, opt2 = torch.load(buf, weights_only=False)
    else:
        params2, opt2 = copy.deepcopy((params, opt))
    run(opt, params, 3, start=3)
    run(opt2, params2, 3, start=3)
    for a, b in zip(params, params2, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["adamw", "lars"])  # native and (K, R, C) view layouts
def test_swapped_parameter_data_is_followed(name):
    """``vector_to_parameters`` assigns ``p.data``: the next step must update the new data."""
    swapped, copied = make_params(), make_params()
    opts = [ProgramOptimizer(ps, zoo.load(name), lr=1e-2) for ps in (swapped, copied)]
    for opt, ps in zip(opts, (swapped, copied), strict=True):
        run(opt, ps, 2)
    with torch.no_grad():
        vec = torch.nn.utils.parameters_to_vector(swapped) * 0.5
        torch.nn.utils.vector_to_parameters(vec, swapped)
        for p in copied:
            p.mul_(0.5)
    for opt, ps in zip(opts, (swapped, copied), strict=True):
        run(opt, ps, 2, start=2)
    for a, b in zip(swapped, copied, strict=True):
        assert torch.equal(a, b)


def test_state_dict_of_another_program_raises():
    params = make_params()
    adamw = ProgramOptimizer(params, zoo.load("adamw"))
    run(adamw, params, 1)
    with pytest.raises(ValueError, match="different program"):
        ProgramOptimizer(make_params(), zoo.load("nadam")).load_state_dict(adamw.state_dict())


def test_step_closure_returns_the_loss():
    params = make_params()
    opt = ProgramOptimizer(params, zoo.load("adamw"), lr=1e-2)
    before = [p.detach().clone() for p in params]

    def closure():
        opt.zero_grad()
        loss = sum((p * p).sum() for p in params)
        loss.backward()
        return loss

    expected = sum((p * p).sum() for p in before)
    loss = opt.step(closure)
    assert torch.equal(loss.detach(), expected)
    assert all(not torch.equal(p, b) for p, b in zip(params, before, strict=True) if p.numel())


@pytest.mark.parametrize("kwargs, message", [
    ({"beta3": 0.9}, "unknown hyperparameter"),
    ({"lr": -1e-3}, "learning rate"),
    ({"lr": float("nan")}, "finite"),
    ({"lr": True}, "must be a number"),
    ({"lr": "fast"}, "must be a number"),
    ({"lr": [1e-3, 1e-2]}, "replicas=K"),
    ({"replicas": 0}, "replicas"),
    ({"replicas": 2, "lr": [1e-3, 1e-2, 1e-1]}, "3 values for 2 replicas"),
    ({"replicas": 3}, "leading axis"),  # parameters' first axis is not 3
    ({"replicas": 2, "wd": [0.1, float("inf")]}, "invalid values"),
    ({"hessian_every": 0}, "hessian_every"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    k = 2 if kwargs.get("replicas") == 2 else None
    with pytest.raises(ValueError, match=message):
        ProgramOptimizer(make_params(SHAPES[:4], k=k), zoo.load("adamw"), **kwargs)


def test_bad_param_group_raises_value_error():
    opt = ProgramOptimizer(make_params()[:2], zoo.load("adamw"))
    with pytest.raises(ValueError, match="learning rate"):
        opt.add_param_group({"params": make_params()[2:], "lr": -1.0})
    assert len(opt.param_groups) == 1


def test_hessian_program_without_create_graph_raises():
    params = make_params()
    opt = ProgramOptimizer(params, zoo.load("sophiah"), lr=1e-2)
    sum((p * p * p).sum() for p in params).backward()  # no create_graph: no Hessian
    with pytest.raises(RuntimeError, match="create_graph=True"):
        opt.step()


@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True")
@pytest.mark.parametrize("replicas", [None, 2])
def test_hessian_estimate_is_exact_on_a_diagonal_quadratic(replicas):
    """loss = sum(a w^2) / 2 has H = diag(a); Hutchinson with Rademacher z gives
    z (H z) = a z^2 = a exactly, so ``w - lr (g + h)`` is a known answer."""
    program = "def f(w, g, h, lr):\n    return lr * (g + h)\n"
    params = make_params(SHAPES[:4], k=replicas)
    curv = [torch.rand(p.shape, dtype=D) + 0.5 for p in params]
    opt = ProgramOptimizer(params, program, lr=0.1, replicas=replicas, hessian_every=2)
    for _ in range(3):
        before = [p.detach().clone() for p in params]
        opt.zero_grad()
        sum((a * p * p).sum() / 2 for a, p in zip(curv, params, strict=True)).backward(
            create_graph=True)
        opt.step()
        for p, w, a in zip(params, before, curv, strict=True):
            torch.testing.assert_close(p.detach(), w - 0.1 * (a * w + a), rtol=1e-14,
                                       atol=1e-15)
    for p in params:
        p.grad = None  # create_graph made a cycle between the parameter and its gradient


# -------------------------------------------------------------------- replicas

REPLICA_PROGRAMS = ["adamw", "lion", "lars", "adafactor", "muon", "lamb", "nadam",
                    "cautious_lion"]
CLIP = ("def clipsgd(w, g, lr, c=1.0):\n"
        "    return lr * g * minimum(1, c / (global_norm(g) + 1e-6))\n")


@pytest.mark.parametrize("name", [*REPLICA_PROGRAMS, "clip"])
def test_replicas_equal_separate_runs(name):
    """K = 4 replicas in one batched pass, per-replica lr (and a per-replica
    hyperparameter), are bit-identical to 4 single-replica runs; per-tensor and
    global reductions (LARS's trust ratio, Adafactor's row/column moments, the
    clipping norm) are taken per replica. Against replicas=None runs the agreement is
    to rounding (those get Python-float coefficients and fused kernels)."""
    program = Program.parse(CLIP) if name == "clip" else zoo.load(name)
    k, lrs = 4, [1e-2, 2e-2, 5e-3, 3e-2]
    hyper = {}
    if program.hyperparameters:
        h, v = next(iter(program.hyperparameters.items()))
        hyper = {h: [v, 0.9 * v, v, 1.1 * v]}
    shapes = SHAPES[:4]
    batched = make_params(shapes, k=k)
    opt = ProgramOptimizer(batched, program, lr=lrs, replicas=k, **hyper)
    singles, loose = [], []
    for r in range(k):
        mine = {n: v[r] for n, v in hyper.items()}
        ps = [p[r:r + 1].detach().clone().requires_grad_() for p in batched]
        singles.append((ps, ProgramOptimizer(ps, program, lr=lrs[r], replicas=1, **mine)))
        qs = [p[r].detach().clone().requires_grad_() for p in batched]
        loose.append((qs, ProgramOptimizer(qs, program, lr=lrs[r], **mine)))
    for t in range(6):
        set_grads(batched, t)
        grads = [p.grad for p in batched]
        opt.step()
        for r in range(k):
            for (ps, o), squeeze in ((singles[r], False), (loose[r], True)):
                for p, g in zip(ps, grads, strict=True):
                    p.grad = g[r].clone() if squeeze else g[r:r + 1].clone()
                o.step()
    for r in range(k):
        for p, q, b in zip(singles[r][0], loose[r][0], batched, strict=True):
            assert torch.equal(p[0], b[r])
            torch.testing.assert_close(q, b[r], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------- the runtime's fusions

def naive_step(program: Program, ws, gs, slots, lr, step: int, hyper: dict):
    """One step by walking the IR tensor by tensor with each op's own torch function,
    on (K, R, C) views; uniform values are (K or 1, 1, 1) float64 tensors."""

    def uniform(x):
        return torch.as_tensor(x, dtype=D).reshape(-1, 1, 1)

    n = len(ws)
    env = [{"w": ws[i], "g": gs[i], "lr": uniform(lr), "step": uniform(float(step)),
            **{k: uniform(v) for k, v in hyper.items()},
            **{s: slots[j][i] for j, s in enumerate(program.slots)}} for i in range(n)]

    def ev(e, i):
        if isinstance(e, Var):
            return env[i][e.name]
        if isinstance(e, Const):
            return uniform(e.value)
        assert isinstance(e, Call)
        op = ops.REGISTRY[e.op]
        if op.family == "global":
            return op.fn([ev(e.args[0], j) for j in range(n)])
        return op.fn(*(ev(a, i) for a in e.args))

    for stmt in program.body:
        values = [ev(stmt.expr, i) for i in range(n)]
        for i in range(n):
            env[i][stmt.target] = values[i]
    out = [[ev(e, i) for i in range(n)] for e in program.returns]
    new_ws = [w - u for w, u in zip(ws, out[0], strict=True)]
    new_slots = [[v.expand(s.shape).clone() for v, s in zip(vals, old, strict=True)]
                 for vals, old in zip(out[1:], slots, strict=True)]
    return new_ws, new_slots


# programs that stress the lazy algebra, in-place reuse and the settling of outputs
FUSION = {
    "old_slot_read": "def f(w, g, m, lr, b=0.9):\n    u = lr * m\n    m = interp(m, g, 1 - b)\n"
                     "    return u + lr * g, m\n",
    "ema_of_w": "def f(w, g, e, lr, b=0.99):\n    e = interp(e, w, 1 - b)\n"
                "    return lr * (g + 0.1 * (w - e)), e\n",
    "swap": "def f(w, g, a, b, lr):\n    return lr * (g + 0.1 * a - 0.2 * b), b, a + g\n",
    "slot_is_w": "def f(w, g, a, lr):\n    return lr * g * sign(a + 1), w\n",
    "slot_is_g": "def f(w, g, a, lr):\n    return lr * (g + a), g\n",
    "same_twice": "def f(w, g, a, b, lr):\n    a = 0.5 * a + g\n    return lr * a, a, a\n",
    "many_terms": "def f(w, g, a, b, lr):\n    return lr * (g + 0.1 * a + 0.2 * b + 0.3 * w + "
                  "0.4 * g * a + 0.5 * g / (abs(b) + 1)), a + g, b + g * g\n",
    "reads_self": "def f(w, g, a, lr):\n    a = a * a + g\n    return lr * a * a, a\n",
    "w_products": "def f(w, g, m, lr):\n    m = interp(m, g * w, 0.1)\n"
                  "    return lr * w * g + lr * m * w, m\n",
    "row_plus_col": "def f(w, g, r, lr):\n    r = row_mean(g) + col_mean(g)\n"
                    "    return lr * (g + r), row_mean(r)\n",
    "transposed_slot": "def f(w, g, a, lr):\n    a = transpose(transpose(g))\n"
                       "    return lr * a, a\n",
    "uniform_slot": "def f(w, g, s, lr):\n    return lr * g * (s + 1), lr\n",
    "per_tensor_slot": "def f(w, g, t, lr):\n    t = t + 1\n    return lr * g / t, t\n",
    "uniform_update": "def f(w, g, lr):\n    return lr * mean(g) + 0 * g\n",
    "no_w": "def f(g, lr):\n    return lr * g\n",
    "clip_global": CLIP,
    "where_max_clip": "def f(w, g, v, lr):\n    v = maximum(0.9 * v, abs(g))\n"
                      "    return lr * where(g, clip(g / (v + 1e-8), 1), w) + lr * w ** 2, v\n",
    "interp_by_list": "def f(w, g, m, lr):\n    m = interp(m, g, sigmoid(g))\n"
                      "    return lr * m, m\n",
    "scalar_over_list": "def f(w, g, lr):\n    return lr / (1 + abs(g)) * g - (-lr * 0.1) * g\n",
    "square_of_sum": "def f(w, g, m, s, lr):\n    s = square(g - m)\n    m = atan(s)\n"
                     "    return lr * g, m, s\n",
    "global_of_uniform": "def f(w, g, lr, b=0.5):\n"  # b is 1 x 1 in each of the 5 tensors
                         "    return lr * g * global_norm(b) / global_mean(b)\n",
    "matmul": "def f(w, g, lr):\n    gg = matmul(g, transpose(g))\n"
              "    return lr * matmul(gg, g) / (norm(gg) * norm(g) + 1)\n",
}
ZOO = [n for n in zoo.names() if not zoo.load(n).reads_hessian]


def naive_trajectory(program: Program, replicas: int | None, steps: int = 3):
    """ProgramOptimizer and :func:`naive_step` side by side; returns the optimizer,
    its parameters and the naive (K, R, C) weights and slots."""
    lr = 0.05 if replicas is None else [0.05, 0.02]
    params = make_params(k=replicas)
    opt = ProgramOptimizer(params, program, lr=lr, replicas=replicas)
    k = replicas or 1
    views = [p.detach().clone().reshape(k, *view2d(p.shape[1:] if replicas else p.shape))
             for p in params]
    shapes = Plan(program).slot_shapes
    slots = [[torch.zeros(k, v.shape[1] if shapes[s][0] == "R" else 1,
                          v.shape[2] if shapes[s][1] == "C" else 1, dtype=D) for v in views]
             for s in program.slots]
    for t in range(steps):
        set_grads(params, t)
        gs = [p.grad.reshape(v.shape) for p, v in zip(params, views, strict=True)]
        views, slots = naive_step(program, views, gs, slots, lr, t + 1, program.hyperparameters)
        opt.step()
    return opt, params, views, slots


@pytest.mark.parametrize("replicas", [None, 2])
@pytest.mark.parametrize("name", [*ZOO, *FUSION])
def test_runtime_matches_naive_evaluation(name, replicas):
    """Fused, in-place execution equals the program evaluated op by op (float64)."""
    program = zoo.load(name) if name in ZOO else Program.parse(FUSION[name])
    opt, params, views, slots = naive_trajectory(program, replicas, steps=4)
    for p, v in zip(params, views, strict=True):
        torch.testing.assert_close(p.detach().reshape(v.shape), v, rtol=1e-11, atol=1e-13)
    for s, vals in zip(program.slots, slots, strict=True):
        for p, v in zip(params, vals, strict=True):
            got = opt.state[p][s]
            torch.testing.assert_close(got.reshape(v.shape) if got.numel() == v.numel()
                                       else got.expand(v.shape), v, rtol=1e-11, atol=1e-13)


def test_runtime_matches_naive_evaluation_on_mutated_programs():
    """Random valid programs (chains of the search's mutations of zoo programs) agree
    with the op-by-op evaluation. Tolerance 1e-9: mutations make ill-conditioned
    programs. Where an intermediate is infinite, IEEE arithmetic does not distribute
    (``u + 0 (w - u)`` is NaN for ``u = inf``, its rewrite ``(1 - 0) u + 0 w`` is inf),
    so there both results need only be non-finite."""
    rng = random.Random(7)
    mutator = Mutator(MutationConfig(), rng)
    names = [n for n in zoo.names() if not zoo.load(n).reads_hessian]
    checked = 0
    while checked < 24:
        program = zoo.load(rng.choice(names))
        for _ in range(rng.randint(1, 6)):
            program, _ = mutator.mutate(program)
        if program.reads_hessian:
            continue
        _, params, views, _ = naive_trajectory(program, None if checked % 2 else 2)
        for p, v in zip(params, views, strict=True):
            a = p.detach().reshape(v.shape)
            both_inf_or_nan = ~torch.isfinite(a) & ~torch.isfinite(v)
            assert (torch.isclose(a, v, rtol=1e-9, atol=1e-11) | both_inf_or_nan).all(), program
        checked += 1


# ------------------------------------------------------------------ dtypes

@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor"])
def test_bfloat16_stays_bfloat16_and_tracks_float32(name):
    """bf16 keeps 8 significant bits, so every step rounds each weight by up to
    2^-9 |w| (at lr 1e-2 the update itself is about bf16's spacing near |w| = 1);
    over T steps the bf16 run may drift up to T 2^-9 max|w| from the float32 run
    started from the same (bf16-representable) weights, and no further."""
    steps = 20
    init = [p.detach().to(torch.bfloat16) for p in make_params(SHAPES[:4])]
    runs = {}
    for dtype in (torch.bfloat16, torch.float32):
        params = [p.clone().to(dtype).requires_grad_() for p in init]
        opt = ProgramOptimizer(params, zoo.load(name), lr=1e-2)
        run(opt, params, steps)
        runs[dtype] = params
        assert all(p.dtype == dtype for p in params)
        assert all(t.dtype == dtype for t in state_tensors(opt))
    bound = steps * 2.0**-9 * max(p.float().abs().max().item() for p in runs[torch.float32])
    drift = max((a.float() - b).abs().max().item()
                for a, b in zip(runs[torch.bfloat16], runs[torch.float32], strict=True))
    moved = max((b - a.float()).abs().max().item()
                for a, b in zip(init, runs[torch.float32], strict=True))
    assert drift <= bound < moved


def test_bfloat16_replicas_keep_bfloat16_state():
    """Per-replica hyperparameters are float32 (0.999 is 1.0 in bf16); state stays bf16."""
    for name in ("adamw", "lars"):
        params = make_params(SHAPES[:4], k=2, dtype=torch.bfloat16)
        opt = ProgramOptimizer(params, zoo.load(name), lr=[1e-2, 2e-2], replicas=2)
        run(opt, params, 3)
        assert all(t.dtype == torch.bfloat16 for t in [*params, *state_tensors(opt)])
        assert all(torch.isfinite(p).all() for p in params)


# ------------------------------------------------------------------ memory

@pytest.mark.parametrize("name, slots", [("adamw", 2), ("lion", 1), ("sgd", 0),
                                         ("lars", 1), ("momentum", 1)])
def test_state_is_slots_times_parameter_bytes_and_does_not_grow(name, slots):
    params = make_params()
    opt = ProgramOptimizer(params, zoo.load(name), lr=1e-3)
    run(opt, params, 3)
    tensors = state_tensors(opt)
    assert sum(t.nbytes for t in tensors) == slots * sum(p.nbytes for p in params)
    ids = [(id(t), t.data_ptr()) for t in tensors]
    gc.collect()
    live = sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())
    run(opt, params, 20, start=3)
    gc.collect()
    assert sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()) == live
    assert [(id(t), t.data_ptr()) for t in state_tensors(opt)] == ids  # updated in place


def test_a_uniform_slot_value_does_not_alias_a_slot_handed_on_in_the_same_step():
    """``m`` takes ``s1``'s new value (its tensors) while ``s1`` becomes a uniform
    value: the two slots must stay apart (hand-computed: m = 0.01, 0.515, 0.525)."""
    src = ("def p(w, g, m, s1, lr, step):\n    update = lr * (g + m)\n"
           "    s1 = interp(s1, step, 0.01)\n    return update, s1, row_norm(0.5)\n")
    q = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    opt = ProgramOptimizer([q], src, lr=1e-3)
    for want in (0.01, 0.515, 0.525):
        q.grad = torch.ones_like(q)
        opt.step()
        st = opt.state[q]
        assert st["m"].flatten().tolist() == pytest.approx([want])
        assert st["s1"].flatten().tolist() == pytest.approx([0.5])
        assert st["m"].data_ptr() != st["s1"].data_ptr()
