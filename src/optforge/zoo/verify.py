"""Verify every zoo program against a reference implementation, in float64.

For each zoo optimizer and each hyperparameter setting listed in its catalog
entry, the program runs inside :class:`~optforge.optim.ProgramOptimizer` and
the reference optimizer (``torch.optim`` or ``pytorch_optimizer``, configured
to the program's formulation) runs beside it on the same small network:

* a 4x2x3x3 convolution kernel and its bias, an 8x36 and a 10x8 weight
  matrix (one wide, one tall) and their biases, tanh activations and a
  10-class cross-entropy loss, so that 1-D, 2-D and 4-D parameters all occur;
* the same initial weights and the same ``steps`` batches of fixed random data;
* float64 throughout (``torch.set_default_dtype(torch.float64)`` while the
  references run, so that their scalar state such as NAdam's ``mu_product``
  is float64 too);
* for programs that read the Hessian estimate ``h``: gradients built with
  ``create_graph=True``, the global generator seeded identically before both
  runs, and ProgramOptimizer given the reference's Hutchinson law and period,
  so that both draw the same probes ``z``.

After every step the largest absolute difference between the two models'
parameters is recorded; a row passes when its maximum over the trajectory is
within the optimizer's tolerance (1e-10 unless its :class:`Reference` gives a
looser one with a reason). Run it as::

    python -m optforge.zoo.verify                                # print the table
    python -m optforge.zoo.verify --markdown docs/VERIFICATION.md  # write the docs page
    python -m optforge.zoo.verify --device cuda                  # both on a GPU
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from unittest import mock

import torch
import torch.nn.functional as F

from ..lang.ir import Program
from . import entry, load, names, options

TOLERANCE = 1e-10
"""Default absolute tolerance on any parameter entry, in float64."""
STEPS = 20
SEED = 0
HESSIAN_SEED = 1234

# ------------------------------------------------------------------ the model

SHAPES: dict[str, tuple[int, ...]] = {
    "conv": (4, 2, 3, 3),
    "conv_bias": (4,),
    "w1": (8, 36),
    "b1": (8,),
    "w2": (10, 8),
    "b2": (10,),
}
BATCH = 16


def init_params(seed: int = SEED) -> dict[str, torch.Tensor]:
    """Initial weights: N(0, 1/fan_in) matrices and kernel, N(0, 0.1^2) biases."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in SHAPES.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 100
        out[name] = torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)
    return out


def batches(steps: int = STEPS, seed: int = SEED) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` batches of 2x5x5 inputs with labels from a fixed random teacher."""
    gen = torch.Generator().manual_seed(seed + 1)
    teacher = torch.randn(50, 10, generator=gen, dtype=torch.float64)
    out = []
    for _ in range(steps):
        x = torch.randn(BATCH, 2, 5, 5, generator=gen, dtype=torch.float64)
        y = (x.flatten(1) @ teacher).argmax(1)
        out.append((x, y))
    return out


def loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Conv (no padding) -> tanh -> linear -> tanh -> linear -> cross-entropy."""
    conv = params["conv"].reshape(SHAPES["conv"])
    h = torch.tanh(F.conv2d(x, conv, params["conv_bias"]))
    h = torch.tanh(h.flatten(1) @ params["w1"].T + params["b1"])
    return F.cross_entropy(h @ params["w2"].T + params["b2"], y)


# ------------------------------------------------------------- the references


@dataclass(frozen=True)
class Reference:
    """How to verify one zoo optimizer.

    ``build(params, setting)`` returns the configured reference optimizer (the
    catalog entry's ``reference`` names it; its ``hessian`` table gives the
    Hutchinson law and period for programs that read ``h``). ``kernel_as_matrix``
    hands the reference the conv kernel stored as its ``d0 x (d1 d2 d3)`` matrix
    (reshaped in the forward pass, so the model is unchanged), which is the 2-D
    view our runtime sees. ``patch`` is a context in which the reference runs
    (e.g. its Newton-Schulz precision raised to float64).
    """

    build: Callable[[list[torch.Tensor], dict[str, float]], torch.optim.Optimizer]
    tolerance: float = TOLERANCE
    reason: str = ""
    kernel_as_matrix: bool = False
    patch: Callable[[], AbstractContextManager] = nullcontext


def _po():
    import pytorch_optimizer

    return pytorch_optimizer


def _b(s: dict[str, float], *keys: str) -> tuple[float, ...]:
    return tuple(s[k] for k in keys)


@contextmanager
def _newton_schulz_float64() -> Iterator[None]:
    """pytorch_optimizer's Muon runs Newton-Schulz in bfloat16 (a hard-wired
    default); compare its algorithm in float64 instead."""
    from pytorch_optimizer.optimizer.muon import base
    from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5

    ns = functools.partial(zero_power_via_newton_schulz_5, dtype=torch.float64)
    with mock.patch.object(base, "zero_power_via_newton_schulz_5", ns):
        yield


def _lamb(ps, s):
    opt = _po().Lamb(ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"],
                     weight_decouple=False, eps=s["eps"])
    opt.clamp = s["clamp"]  # the trust ratio's cap on ||w|| is a class attribute
    return opt


def _torch(cls, **fixed):
    return lambda ps, s: cls(ps, **fixed, **_torch_kw(s))


def _torch_kw(s: dict[str, float]) -> dict:
    kw = {"lr": s["lr"], "weight_decay": s.get("wd", 0.0), "foreach": False}
    if "beta1" in s:
        kw["betas"] = _b(s, "beta1", "beta2")
    if "eps" in s:
        kw["eps"] = s["eps"]
    return kw


REFERENCES: dict[str, Reference] = {
    "sgd": Reference(_torch(torch.optim.SGD)),
    "momentum": Reference(lambda ps, s: torch.optim.SGD(
        ps, momentum=s["momentum"], dampening=s["dampening"], **_torch_kw(s))),
    "nesterov": Reference(lambda ps, s: torch.optim.SGD(
        ps, momentum=s["momentum"], nesterov=True, **_torch_kw(s))),
    "adam": Reference(_torch(torch.optim.Adam)),
    "adamw": Reference(_torch(torch.optim.AdamW)),
    "amsgrad": Reference(_torch(torch.optim.Adam, amsgrad=True)),
    "nadam": Reference(lambda ps, s: torch.optim.NAdam(
        ps, momentum_decay=s["momentum_decay"], **_torch_kw(s))),
    "radam": Reference(_torch(torch.optim.RAdam)),
    "adafactor": Reference(lambda ps, s: torch.optim.Adafactor(
        ps, lr=s["lr"], beta2_decay=s["decay"], eps=(s["eps1"], s["eps2"]), d=s["d"],
        weight_decay=s["wd"], foreach=False), kernel_as_matrix=True),
    "adabelief": Reference(lambda ps, s: _po().AdaBelief(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"],
        weight_decouple=True, eps=s["eps"])),
    "adabound": Reference(lambda ps, s: _po().AdaBound(
        ps, lr=s["lr"], final_lr=s["final_lr"], betas=_b(s, "beta1", "beta2"), gamma=s["gamma"],
        weight_decay=s["wd"], weight_decouple=False, eps=s["eps"])),
    "adamod": Reference(lambda ps, s: _po().AdaMod(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2", "beta3"), weight_decay=s["wd"],
        weight_decouple=False, eps=s["eps"])),
    "laprop": Reference(lambda ps, s: _po().LaProp(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"], eps=s["eps"],
        foreach=False)),  # its foreach path rounds the step sizes to float32
    "adopt": Reference(lambda ps, s: _po().ADOPT(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"],
        weight_decouple=False, eps=s["eps"])),
    "lion": Reference(lambda ps, s: _po().Lion(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"])),
    "cautious_lion": Reference(lambda ps, s: _po().Lion(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"], cautious=True)),
    "signsgd": Reference(lambda ps, s: _po().SignSGD(
        ps, lr=s["lr"], momentum=0.0, weight_decay=s["wd"])),
    "signum": Reference(lambda ps, s: _po().SignSGD(
        ps, lr=s["lr"], momentum=s["momentum"], weight_decay=s["wd"])),
    "lamb": Reference(_lamb),
    "lars": Reference(lambda ps, s: _po().LARS(
        ps, lr=s["lr"], weight_decay=s["wd"], momentum=s["momentum"], dampening=s["dampening"],
        trust_coefficient=s["eta"])),
    "sophiah": Reference(lambda ps, s: _po().SophiaH(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"], p=s["rho"],
        update_period=int(s["k"]), hessian_distribution="gaussian", eps=s["eps"])),
    "adahessian": Reference(lambda ps, s: _po().AdaHessian(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"],
        hessian_power=s["power"], update_period=int(s["k"]), hessian_distribution="rademacher",
        eps=s["eps"])),
    "mars_adamw": Reference(lambda ps, s: _po().MARS(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), gamma=s["gamma"], mars_type="adamw",
        optimize_1d=True, weight_decay=s["wd"], eps=s["eps"])),
    "cautious_adamw": Reference(lambda ps, s: _po().AdEMAMix(
        ps, lr=s["lr"], betas=(s["beta1"], s["beta2"], 0.9999), alpha=0.0, weight_decay=s["wd"],
        weight_decouple=True, eps=s["eps"], cautious=True)),
    "exadam": Reference(lambda ps, s: _po().EXAdam(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2"), weight_decay=s["wd"], eps=s["eps"])),
    "muon": Reference(lambda ps, s: _po().Muon(
        [{"params": ps, "use_muon": True}], lr=s["lr"], momentum=s["momentum"],
        weight_decay=s["wd"], nesterov=bool(s["nesterov"]), ns_steps=5),
        patch=_newton_schulz_float64),
    "ademamix": Reference(lambda ps, s: _po().AdEMAMix(
        ps, lr=s["lr"], betas=_b(s, "beta1", "beta2", "beta3"), alpha=s["alpha"],
        t_alpha_beta3=s["t_warmup"] or None, weight_decay=s["wd"], weight_decouple=True,
        eps=s["eps"])),
}


# ------------------------------------------------------------------ running


@contextmanager
def _float64() -> Iterator[None]:
    """float64 default dtype and one intra-op thread (tiny tensors: threads only contend)."""
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
        torch.set_num_threads(threads)


def trajectory(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], steps: int = STEPS,
               *, hessian: bool = False, kernel_as_matrix: bool = False, nudge: bool = False,
               device: str = "cpu") -> list[dict[str, torch.Tensor]]:
    """Parameters (on the CPU) after each of ``steps`` optimizer steps on the verification
    model, run on ``device`` (with ``nudge``, from initial weights moved by one part in
    2^52)."""
    init = init_params()
    if nudge:
        init = {k: v * (1 + 2.0**-52) for k, v in init.items()}
    if kernel_as_matrix:
        init["conv"] = init["conv"].reshape(SHAPES["conv"][0], -1)
    params = {k: v.to(device, copy=True).requires_grad_(True) for k, v in init.items()}
    leaves = list(params.values())
    opt = make(leaves)
    torch.manual_seed(HESSIAN_SEED)  # seeds every device's generator
    out = []
    for x, y in batches(steps):
        x, y = x.to(device), y.to(device)
        grads = torch.autograd.grad(loss(params, x, y), leaves, create_graph=hessian)
        for p, g in zip(leaves, grads, strict=True):
            p.grad = g
        opt.step()
        out.append({k: p.detach().reshape(SHAPES[k]).to("cpu", copy=True)
                    for k, p in params.items()})
    for p in leaves:
        p.grad = None
    return out


def deviation(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    """Largest absolute parameter difference over a pair of trajectories (NaN counts as inf)."""
    worst = 0.0
    for sa, sb in zip(a, b, strict=True):
        for k in sa:
            d = (sa[k] - sb[k]).abs().max().item()
            worst = max(worst, d if d == d else math.inf)
    return worst


@dataclass(frozen=True)
class Row:
    name: str
    reference: str
    setting: dict[str, float]
    deviation: float
    tolerance: float
    moved: float = 0.0  # largest parameter change: the run is a real trajectory
    floor: float = 0.0  # the reference against itself from nudged weights: its conditioning

    @property
    def passed(self) -> bool:
        return self.deviation <= self.tolerance


def check(name: str, setting: dict[str, float], steps: int = STEPS,
          program: Program | None = None, device: str = "cpu") -> Row:
    """Run zoo optimizer ``name`` (or ``program`` in its place) and its reference at
    ``setting``, both on ``device`` (the same probes ``z`` for programs that read ``h``
    need the same generator); one table row."""
    from ..optim import ProgramOptimizer

    ref = REFERENCES[name]
    program = program or load(name)
    hyper = {k: v for k, v in setting.items() if k != "lr"}
    extra = options(name, **hyper)
    hessian = bool(extra)
    with _float64():
        ours = trajectory(lambda ps: ProgramOptimizer(ps, program, lr=setting["lr"], **extra,
                                                      **hyper), steps, hessian=hessian,
                          device=device)
        with ref.patch():
            theirs, nudged = (
                trajectory(lambda ps: ref.build(ps, setting), steps, hessian=hessian,
                           kernel_as_matrix=ref.kernel_as_matrix, nudge=nudge, device=device)
                for nudge in (False, True))
    init = init_params()
    moved = max((theirs[-1][k] - init[k]).abs().max().item() for k in init)
    return Row(name, entry(name).reference, dict(setting), deviation(ours, theirs),
               ref.tolerance, moved, deviation(theirs, nudged))


def verify(only: list[str] | None = None, steps: int = STEPS, device: str = "cpu") -> list[Row]:
    """Every (optimizer, setting) pair of the catalog, or of the optimizers in ``only``."""
    return [check(n, s, steps, device=device) for n in (only or names())
            for s in entry(n).settings]


# ------------------------------------------------------------------ reports


def _fmt_setting(setting: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in setting.items())


def text_table(rows: list[Row]) -> str:
    head = ("optimizer", "reference", "setting", "max |dev|", "tolerance", "floor", "moved",
            "pass")
    body = [(r.name, r.reference, _fmt_setting(r.setting), f"{r.deviation:.2e}",
             f"{r.tolerance:.0e}", f"{r.floor:.0e}", f"{r.moved:.2f}",
             "yes" if r.passed else "NO") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
             for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row], steps: int = STEPS) -> str:
    """The docs page: method, table, and per-optimizer formulation notes."""
    doc = __doc__.split("Run it as::")[0].strip()
    doc = re.sub(r":\w+:`~?([\w.]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", doc)
    doc = doc.replace("``", "`")
    out = [
        "# Verification of the zoo",
        "",
        "Generated by `python -m optforge.zoo.verify --markdown docs/VERIFICATION.md`;"
        " do not edit by hand.",
        "",
        doc,
        "",
        f"{steps} steps per run. *max |dev|* is the largest absolute difference of any parameter"
        " entry after any step. *floor* is the same measure between the reference and itself"
        " started from initial weights moved by one part in 2^52: how far the trajectory"
        " amplifies rounding, so a floor far below the tolerance shows the row can tell a"
        " formula difference from rounding (settings whose dynamics amplify rounding towards"
        " the tolerance are not used). *moved* is the largest change of any parameter entry"
        " over the run: the runs are real trajectories, not stalled ones.",
        "",
        "| optimizer | reference | setting | max \\|dev\\| | tolerance | floor | moved | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| `{r.name}` | `{r.reference}` | {_fmt_setting(r.setting)} | "
                   f"{r.deviation:.2e} | {r.tolerance:.0e} | {r.floor:.0e} | {r.moved:.2f} | "
                   f"{'yes' if r.passed else '**NO**'} |")
    out += ["", "## Formulation notes", ""]
    for n in dict.fromkeys(r.name for r in rows):
        e, ref = entry(n), REFERENCES[n]
        out.append(f"- **{e.title}** (`{n}`, {e.reference}): {e.notes}".rstrip())
        if ref.reason:
            out.append(f"  Tolerance {ref.tolerance:.0e}: {ref.reason}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optforge.zoo.verify",
                                     description="Verify the zoo against reference optimizers.")
    parser.add_argument("names", nargs="*", help="zoo optimizers to check (default: all)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument("--device", default="cpu", help="run both optimizers on it (cuda)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names()]
    if unknown:
        parser.error(f"unknown zoo optimizer(s) {unknown}; known: {', '.join(names())}")
    rows = verify(args.names or None, args.steps, args.device)
    print(text_table(rows))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(rows, args.steps))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} within tolerance")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
