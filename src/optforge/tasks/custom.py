"""A user's own task: ``ModelTask``, and task references ``FILE.py:NAME`` / ``module:NAME``.

The protocol (docs/TASKS.md, "Your own task"): a task is a
:class:`~optforge.tasks.base.Task`. The simple way to write one is
:class:`ModelTask`: a ``torch.nn.Module`` factory, the data as tensors, a loss
and optionally a validation metric::

    my_task = ModelTask("my_task", model=lambda: nn.Sequential(...), data=make_data,
                        loss=F.cross_entropy, metric="accuracy", metric_fn=accuracy,
                        higher_is_better=True, steps=300, batch=32)

Replicas: built-in tasks stack ``K`` replicas' weights and train them in one
batched pass. A ``ModelTask`` needs no such code: optforge builds ``K`` copies
of the module (replica ``k`` under ``torch.manual_seed`` of its seed's init
stream) and stacks their parameters for the optimizer. The training loss of
all replicas is one ``torch.func.vmap`` of ``functional_call`` over the
stacked parameters where the model allows it; where it does not (a model that
updates buffers in training, as BatchNorm does), the fallback runs the
replicas one at a time, each copy with its own buffers (``replicas="auto"``,
the default; ``"vmap"`` or ``"loop"`` force one). Every trainer feature
(per-replica hyperparameters, tuning batches, divergence isolation) works
either way. A ``Task`` subclass written like the built-ins
(``tasks.base.Init``, batched kernels) remains the fastest.

References: ``path/to/file.py:NAME`` (the file is imported as a module, once
per process) or ``package.module:NAME``; ``NAME`` is a ``Task`` or a callable
returning one. The resolved task is named by the reference itself, so that
every process (the search's workers, a resumed bench run) resolves the same
task from the same string; a relative path is taken from the working directory.

Errors: whatever the user's code raises while building, training or
evaluating is re-raised as :class:`TaskError` (a ``RuntimeError``: the trainer
turns it into a failed run, the benchmark into a failed row) whose message
holds the traceback of the user's frames. A reference that cannot be resolved
(missing file, import error, no such name) is a ``KeyError`` with the same
traceback, raised before anything runs.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from .base import INIT, TIERS, Batches, Spec, Task, TaskInstance, mix

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# frames left out of a user's traceback: optforge's, torch's, the import machinery's
_SKIP = tuple({str(d) for d in (Path(__file__).parents[1], Path(torch.__file__).parent)
               for d in (d, d.resolve())}) + ("<frozen",)


class TaskError(RuntimeError):
    """An exception raised by a user's task code; the message carries its traceback."""


def user_traceback(err: BaseException) -> str:
    """The exception with its traceback, frames of optforge and torch left out."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith(_SKIP)]
    lines = traceback.format_list(frames) if frames else []
    head = "".join(traceback.format_exception_only(err)).strip()
    return head + ("\nTraceback (most recent call last):\n" + "".join(lines).rstrip()
                   if lines else "")


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of rows of logits ``out`` whose arg-max is the label ``y``."""
    return (out.argmax(-1) == y).float().mean()


class ModelTask(Task):
    """A task from a ``torch.nn.Module`` factory and data tensors (see the module doc).

    Args:
        name: the task's name (a reference's name replaces it when resolved).
        model: ``() -> nn.Module``, called once per replica under a seeded generator.
        data: ``(x_train, y_train, x_val, y_val)`` tensors, or a callable returning them
            (called once per process). Inputs may be any tensor the model takes.
        loss: ``loss(model(x), y) -> scalar``, the training objective (its mean over the
            batch); also the validation ``loss``.
        metric, metric_fn, higher_is_better: the validation metric's name and
            ``metric_fn(model(x_val), y_val) -> scalar``; default the validation loss.
        steps, batch: default step budget and minibatch size (0: the whole training set).
        target: a documented value of the metric (NaN: none).
        lr: a learning rate known to work (``Spec.adamw``), used as a hint only.
        eval_batch: validation runs in chunks of this many examples.
        replicas: how the training loss of ``K`` replicas is computed: ``"vmap"`` (one
            batched pass, ``torch.func.vmap``; the model must not update buffers in training,
            as BatchNorm does), ``"loop"`` (one replica at a time, each copy with its own
            buffers), or ``"auto"``: vmap, falling back to the loop for good the first time
            vmap fails (the instance's ``mode`` and ``fallback`` say so).
    """

    def __init__(self, name: str, model: Callable[[], torch.nn.Module], data, loss: Fn, *,
                 metric: str = "loss", metric_fn: Fn | None = None,
                 higher_is_better: bool = False, steps: int = 500, batch: int = 64,
                 target: float = math.nan, lr: float = 1e-3, eval_batch: int = 1024,
                 replicas: str = "auto", description: str = ""):
        if metric != "loss" and metric_fn is None:
            raise ValueError(f"task {name!r}: metric {metric!r} needs a metric_fn")
        if replicas not in ("auto", "vmap", "loop"):
            raise ValueError(f"task {name!r}: replicas must be 'auto', 'vmap' or 'loop', got "
                             f"{replicas!r}")
        if not callable(model) or not callable(loss):
            raise ValueError(f"task {name!r}: model and loss must be callables")
        spec = Spec(size={}, steps=int(steps), target=float(target), batch=int(batch),
                    adamw={"lr": float(lr)})
        super().__init__(name, description or f"user task {name}", metric,
                         bool(higher_is_better), {t: spec for t in TIERS})
        self.model, self.data, self.loss_fn = model, data, loss
        self.metric_fn = metric_fn
        self.eval_batch = int(eval_batch)
        self.replicas = replicas

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The four data tensors (the callable's result is kept for the process)."""
        if not hasattr(self, "_data"):
            data = self.data() if callable(self.data) else self.data
            if not (isinstance(data, tuple | list) and len(data) == 4
                    and all(isinstance(t, torch.Tensor) for t in data)):
                raise ValueError(f"task {self.name!r}: data must be (x_train, y_train, x_val, "
                                 "y_val) tensors")
            self._data = tuple(data)
        return self._data

    def build(self, spec: Spec, seeds: list[int], device: torch.device,
              dtype: torch.dtype) -> TaskInstance:
        return Looped(self, spec, seeds, device, dtype)


class Looped(TaskInstance):
    """``K`` copies of a module, their parameters stacked; the training loss of all replicas
    in one ``vmap`` where the model allows it (``mode``), else one replica at a time;
    validation one replica at a time (each copy in eval mode with its own buffers)."""

    def __init__(self, task: ModelTask, spec: Spec, seeds: list[int], device, dtype):
        self.task, self.replicas = task, len(seeds)
        self.modules = []
        for s in seeds:
            with torch.random.fork_rng():
                torch.manual_seed(mix(s, INIT))
                m = task.model()
            if not isinstance(m, torch.nn.Module):
                raise ValueError(f"task {task.name!r}: model() returned {type(m).__name__}, "
                                 "not a torch.nn.Module")
            self.modules.append(m.to(device=device, dtype=dtype).train())
        self.names = [n for n, _ in self.modules[0].named_parameters()]
        self.params = [torch.stack([dict(m.named_parameters())[n].detach() for m in
                                    self.modules]).requires_grad_() for n in self.names]

        def cast(t):
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)

        self.x, self.y, self.vx, self.vy = (cast(t) for t in task.tensors())
        self.batches = Batches(seeds, len(self.y), spec.batch, device) if spec.batch else None
        self.mode, self.fallback = task.replicas, None

    def _run(self, k: int, x: torch.Tensor) -> torch.Tensor:
        weights = {n: p[k] for n, p in zip(self.names, self.params, strict=True)}
        return torch.func.functional_call(self.modules[k], weights, (x,))

    def loss(self, step: int) -> torch.Tensor:
        idx = self.batches(step) if self.batches is not None else None
        if self.mode != "loop":
            try:
                losses = self._vmapped(idx)
                self.mode = "vmap"  # "auto" decides at the first step
                return losses
            except Exception as err:
                if self.mode == "vmap":
                    raise
                self.mode, self.fallback = "loop", f"{type(err).__name__}: {err}"
        out = []
        for k in range(self.replicas):
            x, y = (self.x, self.y) if idx is None else (self.x[idx[k]], self.y[idx[k]])
            out.append(self.task.loss_fn(self._run(k, x), y).reshape(()))
        return torch.stack(out)

    def _vmapped(self, idx: torch.Tensor | None) -> torch.Tensor:
        """All replicas' losses in one ``torch.func.vmap`` over the stacked parameters (the
        first copy's module and buffers; dropout draws differ per replica)."""
        module, loss_fn = self.modules[0], self.task.loss_fn

        def one(weights, x, y):
            return loss_fn(torch.func.functional_call(module, weights, (x,)), y).reshape(())

        weights = dict(zip(self.names, self.params, strict=True))
        if idx is None:
            return torch.func.vmap(one, in_dims=(0, None, None), randomness="different")(
                weights, self.x, self.y)
        return torch.func.vmap(one, randomness="different")(weights, self.x[idx], self.y[idx])

    @torch.no_grad()
    def evaluate(self) -> dict[str, torch.Tensor]:
        t, n, b = self.task, len(self.vy), max(1, self.task.eval_batch)
        losses, metrics = [], []
        for k, m in enumerate(self.modules):
            m.eval()
            outs = [self._run(k, self.vx[i:i + b]) for i in range(0, n, b)]
            m.train()
            out = torch.cat(outs)
            losses.append(torch.as_tensor(t.loss_fn(out, self.vy), dtype=torch.float64))
            if t.metric_fn is not None:
                metrics.append(torch.as_tensor(t.metric_fn(out, self.vy), dtype=torch.float64))
        result = {"loss": torch.stack(losses).reshape(-1)}
        if t.metric != "loss":
            result[t.metric] = torch.stack(metrics).reshape(-1)
        return result


# ------------------------------------------------------------------ guarding user code


class Guarded(Task):
    """A user's task under the name of its reference; its errors become :class:`TaskError`."""

    def __init__(self, ref: str, task: Task):
        super().__init__(ref, task.description, task.metric, task.higher_is_better, task.specs)
        self.inner = task

    def build(self, spec, seeds, device, dtype) -> TaskInstance:
        with _guard(self.name, "building the task"):
            return GuardedInstance(self.name, self.inner.build(spec, seeds, device, dtype))


class GuardedInstance(TaskInstance):
    def __init__(self, ref: str, inner: TaskInstance):
        self.ref, self.inner = ref, inner
        self.replicas, self.params = inner.replicas, inner.params

    def loss(self, step: int) -> torch.Tensor:
        with _guard(self.ref, f"the training loss at step {step}"):
            return self.inner.loss(step)

    def evaluate(self) -> dict[str, torch.Tensor]:
        with _guard(self.ref, "validation"):
            return self.inner.evaluate()


class _guard:
    def __init__(self, ref: str, what: str):
        self.ref, self.what = ref, what

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, TaskError | KeyboardInterrupt):
            return False
        if not isinstance(err, Exception):
            return False
        raise TaskError(f"task {self.ref!r} failed in {self.what}: {user_traceback(err)}") \
            from err


# ------------------------------------------------------------------ references


def is_reference(name: str) -> bool:
    """``FILE.py:NAME`` or ``package.module:NAME``."""
    return ":" in name


def resolve(ref: str) -> Task:
    """The task a reference names (cached per process); KeyError when it cannot be had."""
    where, _, attr = ref.rpartition(":")
    if not where or not attr.isidentifier():
        raise KeyError(f"task reference {ref!r} is not of the form path/to/file.py:NAME or "
                       "package.module:NAME")
    try:
        return _resolve(ref, *_source_key(where), attr)
    except KeyError:
        raise
    except Exception as err:
        raise KeyError(f"task {ref!r}: {user_traceback(err)}") from None


def _source_key(where: str) -> tuple[str, float]:
    """A file reference's absolute path and modification time (a changed file is
    imported again), or the module name."""
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise KeyError(f"task file {where!r} does not exist (from {Path.cwd()})")
        return str(path), path.stat().st_mtime
    return where, 0.0


@functools.cache
def _resolve(ref: str, where: str, stamp: float, attr: str) -> Task:
    module = _import(where)
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise KeyError(f"task {ref!r}: {where} has no {attr!r}; it defines "
                       f"{', '.join(public) or 'nothing'}")
    obj = getattr(module, attr)
    task = obj if isinstance(obj, Task) else obj() if callable(obj) else obj
    if not isinstance(task, Task):
        raise KeyError(f"task {ref!r} is a {type(task).__name__}, not an optforge Task "
                       "(write a tasks.ModelTask, or a Task subclass; see docs/TASKS.md)")
    return Guarded(ref, task)


def _import(where: str):
    if not where.endswith(".py") and "/" not in where and "\\" not in where:
        return importlib.import_module(where)
    name = f"optforge_user_task_{abs(hash(where)):x}"
    spec = importlib.util.spec_from_file_location(name, where)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
