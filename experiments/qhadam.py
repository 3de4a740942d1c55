"""The transfer run's program against quasi-hyperbolic Adam (docs/EXPERIMENTS.md §3).

    python experiments/qhadam.py

In steady state ``experiments/results/transfer/found.py`` is QHAdam (Ma and Yarats,
2019) with ``nu = 2.212 / 3.212`` and the step ``3.212 / sqrt(288)`` times ``lr`` (its
``s1`` settles at the sigmoid's fixed point 0.659, its ``mu_prod`` decays to 0, its ``v``
accumulates 288 times Adam's). Both rules run in ``ProgramOptimizer`` on the same random
float64 gradients; printed: the relative difference of their updates at some steps.
"""

from pathlib import Path

import torch

from optforge.lang.ir import Program
from optforge.optim import ProgramOptimizer

FOUND = Path(__file__).resolve().parent / "results" / "transfer" / "found.py"
NU, SCALE = 2.212 / 3.212, 3.212 / 288**0.5
QHADAM = f"""def qhadam(w, g, m, v, lr, step, beta1=0.9, beta2=0.999, eps=5.406e-09, wd=0):
    d = g + wd * w
    m = interp(m, d, 1 - beta1)
    v = interp(v, d * d, 1 - beta2)
    mix = (1 - {NU:.6f}) * d + {NU:.6f} * m / (1 - beta1 ** step)
    update = {SCALE:.6f} * lr * mix / (sqrt(v / (1 - beta2 ** step)) + eps / {288**0.5:.4f})
    return update, m, v
"""


def updates(program: Program, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    p = torch.zeros_like(grads[0], requires_grad=True)
    opt = ProgramOptimizer([p], program, lr=1e-3)
    out = []
    for g in grads:
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        out.append(p.detach() - before)
    return out


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(1000, generator=gen, dtype=torch.float64)
             * (1 + 0.5 * torch.rand(1000, generator=gen, dtype=torch.float64))
             for _ in range(200)]
    found = updates(Program.parse(FOUND.read_text()), grads)
    qh = updates(Program.parse(QHADAM), grads)
    print(f"QHAdam with nu = {NU:.4f}, step x {SCALE:.4f}: |found - qhadam| / |qhadam|")
    for t in (1, 10, 30, 50, 100, 200):
        print(f"  step {t:3d}: {float((found[t - 1] - qh[t - 1]).norm() / qh[t - 1].norm()):.1e}")


if __name__ == "__main__":
    main()
