"""``ProgramOptimizer``: a real ``torch.optim.Optimizer`` that runs any program.

Each step, for every parameter group: gather the parameters that have a
gradient, view each as ``(K, R, C)`` (``K`` replicas, 1 unless ``replicas``
is given), run the compiled program over all of them at once
(:mod:`optforge.optim.runtime`), apply ``w <- w - update`` and store the new
state slots. Hyperparameters live in the param groups, so they can differ per
group and be changed between steps like ``lr``; with ``replicas=K`` any of
them may be a sequence of K values, one per replica.

Programs that read ``h`` get a Hutchinson estimate of the Hessian diagonal,
``h = z * (H z)`` with Rademacher ``z``, refreshed every ``hessian_every``
steps; the gradients must then be built with ``loss.backward(create_graph=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

from ..lang.ir import Program
from ..lang.shapes import view2d
from ..lang.runtime import Plan, run

_RESERVED = {"lr", "params"}


class ProgramOptimizer(torch.optim.Optimizer):
    """Run ``program`` as an optimizer.

    Args:
        params: parameters or param-group dicts, as for any torch optimizer.
        program: a :class:`~optforge.lang.ir.Program` or its source text.
        lr: learning rate (the program's ``lr`` input), a float or, with
            ``replicas``, a sequence of one per replica.
        replicas: ``K`` when every parameter carries a leading replica axis of
            size K (K independent models trained in one batched pass):
            reductions are then taken per replica.
        hessian_every: refresh period of the Hessian-diagonal estimate ``h``.
        hessian_distribution: ``"rademacher"`` or ``"gaussian"``, the law of the
            Hutchinson probe ``z`` (see :meth:`_refresh_hessian`).
        **hyperparameters: values for the program's hyperparameters
            (defaults are those in the program's signature).
    """

    def __init__(
        self,
        params: Iterable,
        program: Program | str,
        lr: float | Sequence[float] = 1e-3,
        *,
        replicas: int | None = None,
        hessian_every: int = 1,
        hessian_distribution: str = "rademacher",
        **hyperparameters,
    ):
        if isinstance(program, str):
            program = Program.parse(program)
        unknown = set(hyperparameters) - set(program.hyperparameters)
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {sorted(unknown)} for program {program.name!r}; "
                f"it takes {sorted(program.hyperparameters) or 'none'}"
            )
        if replicas is not None and (not isinstance(replicas, int) or replicas < 1):
            raise ValueError(f"replicas must be a positive int, got {replicas!r}")
        if not isinstance(hessian_every, int) or hessian_every < 1:
            raise ValueError(f"hessian_every must be a positive int, got {hessian_every!r}")
        if hessian_distribution not in ("rademacher", "gaussian"):
            raise ValueError("hessian_distribution must be 'rademacher' or 'gaussian', got "
                             f"{hessian_distribution!r}")
        defaults = {"lr": lr, **program.hyperparameters, **hyperparameters}
        for name, value in defaults.items():
            _check_value(name, value, replicas)
        self.program = program
        self.replicas = replicas
        self.hessian_every = hessian_every
        self.hessian_distribution = hessian_distribution
        self._plan = Plan(program)
        self._reads_h = program.reads_hessian
        super().__init__(params, defaults)
        for group in self.param_groups:
            for name in defaults:
                _check_value(name, group[name], replicas)
            if replicas is not None:
                for p in group["params"]:
                    if p.dim() == 0 or p.shape[0] != replicas:
                        raise ValueError(
                            f"with replicas={replicas} every parameter needs a leading axis of "
                            f"that size; got shape {tuple(p.shape)}"
                        )

    # ------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._reads_h:
            self._refresh_hessian()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            by_step: dict[int, list[torch.Tensor]] = {}
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("ProgramOptimizer does not support sparse gradients")
                state = self.state[p]
                if not state:
                    self._init_state(p, state)
                by_step.setdefault(state["step"], []).append(p)
            for step, bucket in by_step.items():
                self._step_bucket(group, bucket, step + 1)
        return loss

    def _step_bucket(self, group: dict, params: list[torch.Tensor], step: int) -> None:
        plan = self._plan
        like = params[0]
        views = [self._view(p) for p in params]
        ws = [v for v, _ in views]
        inputs = {
            "w": ws,
            "g": [self._view(p.grad)[0] for p in params],
            "lr": self._hyper(group["lr"], like),
            "step": float(step),
        }
        if "h" in plan.input_regs:
            inputs["h"] = [self.state[p]["h"] for p in params]
        slots = [[self.state[p][s] for p in params] for s in plan.slots]
        hyper = {k: self._hyper(group[k], like) for k in plan.hyper}
        update, *new_slots = run(plan, inputs, slots, hyper, like)
        _subtract(ws, update)
        for (w, copied), p in zip(views, params, strict=True):
            if copied:
                p.copy_(w.view_as(p))
        for i, (s, value) in enumerate(zip(plan.slots, new_slots, strict=True)):
            tensors = self._as_slot(value, params, i)
            for p, t in zip(params, tensors, strict=True):
                self.state[p][s] = t
        for p in params:
            self.state[p]["step"] = step

    # ------------------------------------------------------------ helpers
    def _view(self, t: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``(K, R, C)`` view of a parameter or gradient (a copy if not contiguous)."""
        k = self.replicas or 1
        shape = t.shape[1:] if self.replicas else t.shape
        r, c = view2d(tuple(shape))
        if t.is_contiguous():
            return t.view(k, r, c), False
        return t.contiguous().view(k, r, c), True

    def _init_state(self, p: torch.Tensor, state: dict) -> None:
        k = self.replicas or 1
        r, c = view2d(tuple(p.shape[1:] if self.replicas else p.shape))
        size = {"R": r, "C": c, 1: 1}
        state["step"] = 0
        for s, (dr, dc) in self._plan.slot_shapes.items():
            state[s] = torch.zeros((k, size[dr], size[dc]), dtype=p.dtype, device=p.device)
        if self._reads_h:
            state["h"] = torch.zeros((k, r, c), dtype=p.dtype, device=p.device)

    def _hyper(self, value, like: torch.Tensor):
        """A group value as a register value: float, or a (K, 1, 1) tensor per replica."""
        if isinstance(value, int | float):
            return float(value)
        t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
        return t.reshape(-1, 1, 1)

    def _as_slot(self, value, params: list[torch.Tensor], index: int) -> list[torch.Tensor]:
        """Register value -> one tensor per parameter, never aliasing another slot or input."""
        k = self.replicas or 1
        if isinstance(value, float):
            return [torch.full((k, 1, 1), value, dtype=p.dtype, device=p.device) for p in params]
        if isinstance(value, torch.Tensor):
            return [value.to(p.dtype).expand(k, 1, 1).clone() for p in params]
        if self._plan.clone_slot[index]:
            return [t.clone() for t in value]
        return value

    def _refresh_hessian(self) -> None:
        """``h = z * (H z)`` for every parameter with a gradient (Hutchinson, one sample).

        The estimate is refreshed before steps 1, 1 + k, 1 + 2k, ... (``k =
        hessian_every``; the stored step count is a multiple of k) and held in
        between. ``z`` is drawn from the global torch generator, one draw per
        parameter in param-group order, Rademacher ``randint_like(p, 0, 2) * 2 - 1``
        or Gaussian ``randn_like(p)``: the schedule, law and order of
        pytorch_optimizer's ``compute_hutchinson_hessian`` (SophiaH, AdaHessian), so
        with the same seed both see the same ``z``. No spatial averaging.
        """
        params = [
            p for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not params:
            return
        for p in params:
            if not self.state[p]:
                self._init_state(p, self.state[p])
        step = self.state[params[0]]["step"]
        if step % self.hessian_every != 0:
            return
        if any(p.grad.grad_fn is None for p in params):
            raise RuntimeError(
                f"program {self.program.name!r} reads the Hessian estimate 'h': call "
                "loss.backward(create_graph=True) before step()"
            )
        if self.hessian_distribution == "gaussian":
            zs = [torch.randn_like(p) for p in params]
        else:
            zs = [torch.randint_like(p, 0, 2) * 2.0 - 1.0 for p in params]
        with torch.enable_grad():
            hzs = torch.autograd.grad([p.grad for p in params], params, grad_outputs=zs)
        for p, z, hz in zip(params, zs, hzs, strict=True):
            self.state[p]["h"].copy_(self._view(z * hz)[0])

    # ------------------------------------------------------------ state dict
    def state_dict(self):
        sd = super().state_dict()
        sd["program"] = str(self.program)
        return sd

    def load_state_dict(self, state_dict):
        source = state_dict.get("program")
        if source is not None and Program.parse(source).hash != self.program.hash:
            raise ValueError("state_dict was saved by an optimizer running a different program")
        state_dict = {k: v for k, v in state_dict.items() if k != "program"}
        super().load_state_dict(state_dict)


def _subtract(ws: list[torch.Tensor], update) -> None:
    """``w <- w - update`` for every view."""
    if isinstance(update, list):
        torch._foreach_sub_(ws, update)
    elif isinstance(update, float):
        torch._foreach_add_(ws, -update)
    else:
        torch._foreach_sub_(ws, [update] * len(ws))


def _check_value(name: str, value, replicas: int | None) -> None:
    """Hyperparameters are finite numbers, or one per replica."""
    if isinstance(value, bool):
        raise ValueError(f"hyperparameter {name!r} must be a number, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"hyperparameter {name!r} must be finite, got {value!r}")
        if name == "lr" and value < 0:
            raise ValueError(f"invalid learning rate: {value}")
        return
    try:
        values = torch.as_tensor(value, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"hyperparameter {name!r} must be a number, got {value!r}") from None
    if replicas is None:
        raise ValueError(f"hyperparameter {name!r} is a sequence; pass replicas=K to use one "
                         "value per replica")
    if values.numel() != replicas:
        raise ValueError(f"hyperparameter {name!r} has {values.numel()} values for "
                         f"{replicas} replicas")
    if not torch.isfinite(values).all() or (name == "lr" and (values < 0).any()):
        raise ValueError(f"hyperparameter {name!r} has invalid values {values.tolist()}")
