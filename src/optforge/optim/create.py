"""``create_optimizer``: a ready optimizer for a model, with no-decay parameter groups.

The convention of timm's ``create_optimizer_v2`` and pytorch-optimizer's
``create_optimizer``: weight decay shrinks the weights that carry the model's
function (linear, convolution, attention matrices), and leaves alone the
parameters whose scale *is* their function: biases, the gains and shifts of
normalisation layers, and embedding tables. So the parameters are split in two
groups::

    decayed:    every trainable parameter not matched below,   wd = weight_decay
    no decay:   biases, norm layers' and embeddings' parameters, wd = 0

The default rule (:func:`default_no_decay`) matches a parameter whose own
name is ``bias``, or that belongs to a normalisation layer (a torch norm
class, or any module whose class name contains ``Norm``, which covers
Hugging Face's ``LlamaRMSNorm`` and the like) or to an ``Embedding``/
``EmbeddingBag``, or that the model lists in its ``no_weight_decay()``
(timm's hook: a set of parameter names). Override it with ``no_decay=``: a
callable ``(name, param, module) -> bool``, or a list of glob patterns matched
against the parameter's full name and its module's class name (``["*.bias",
"LayerNorm"]``, pytorch-optimizer's ``wd_ban_list``); ``no_decay=()`` decays
everything.

``weight_decay`` is written into the program's decay hyperparameter, ``wd``
in every zoo program (``weight_decay`` is accepted too). A program without one
gets a ValueError rather than a silently ignored argument.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..lang.ir import Program
from .program_optimizer import ProgramOptimizer

DECAY_NAMES = ("wd", "weight_decay")
"""Names a program's weight-decay hyperparameter may have, in order of preference."""

NoDecay = Callable[[str, torch.Tensor, torch.nn.Module | None], bool]

_NORMS = (torch.nn.modules.batchnorm._NormBase, torch.nn.LayerNorm, torch.nn.GroupNorm,
          torch.nn.LocalResponseNorm, torch.nn.RMSNorm)
_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)


def default_no_decay(name: str, param: torch.Tensor, module: torch.nn.Module | None) -> bool:
    """True for a bias, a normalisation layer's parameter or an embedding table."""
    if name.rpartition(".")[2] == "bias":
        return True
    if module is None:
        return False
    return (isinstance(module, _NORMS + _EMBEDDINGS) or "norm" in type(module).__name__.lower())


def resolve_program(name_or_program: Program | str | Path) -> tuple[Program, dict]:
    """A program and the extra ``ProgramOptimizer`` options it needs, from a Program, program
    text, or a program file or zoo name (:func:`optforge.zoo.resolve`)."""
    from .. import zoo

    if isinstance(name_or_program, Program):
        return name_or_program, {}
    if isinstance(name_or_program, str) and "def " in name_or_program:
        return Program.parse(name_or_program.strip()), {}
    if not isinstance(name_or_program, str | Path):
        raise ValueError("name_or_program must be a zoo name, a program file or a Program, "
                         f"got {name_or_program!r}")
    found = zoo.resolve(name_or_program)
    return found.program, ({"zoo": found.entry.name} if found.entry is not None else {})


def decay_name(program: Program) -> str | None:
    """The program's weight-decay hyperparameter (see :data:`DECAY_NAMES`), or None."""
    return next((n for n in DECAY_NAMES if n in program.hyperparameters), None)


def param_groups(model_or_params, weight_decay: float, decay: str,
                 no_decay: NoDecay | Sequence[str] | None = None) -> list[dict]:
    """Param groups ``[{"params": decayed, decay: weight_decay}, {"params": rest, decay: 0}]``
    (empty groups left out) of a module's trainable parameters, or of ``(name, param)`` pairs
    (the rule then sees no module)."""
    rule = _rule(no_decay, model_or_params)
    if isinstance(model_or_params, torch.nn.Module):
        named = [(f"{mname}.{pname}" if mname else pname, p, m)
                 for mname, m in model_or_params.named_modules()
                 for pname, p in m.named_parameters(recurse=False)]
    else:
        named = [(n, p, None) for n, p in model_or_params]
    seen: set[int] = set()
    on, off = [], []
    for name, p, module in named:
        if not p.requires_grad or id(p) in seen:  # frozen, or shared (tied embeddings)
            continue
        seen.add(id(p))
        (off if rule(name, p, module) else on).append(p)
    return [g for g in ({"params": on, decay: float(weight_decay)}, {"params": off, decay: 0.0})
            if g["params"]]


def create_optimizer(model_or_params, name_or_program: Program | str | Path = "adamw",
                     lr: float = 1e-3, weight_decay: float | None = None,
                     no_decay: NoDecay | Sequence[str] | None = None,
                     **hyperparameters) -> ProgramOptimizer:
    """A :class:`ProgramOptimizer` for ``model_or_params`` running ``name_or_program``.

    Args:
        model_or_params: a ``torch.nn.Module`` (grouped by the no-decay rule), an iterable
            of ``(name, parameter)`` pairs (``model.named_parameters()``: grouped by name
            alone), or parameters / param-group dicts as any torch optimizer takes them
            (used as given; ``weight_decay`` is then the default of every group).
        name_or_program: a zoo name (``"lion"``), a program file or a ``Program``.
        lr: learning rate.
        weight_decay: the decayed group's decay (default: the program's own default).
        no_decay: the no-decay rule, see the module doc; ``()`` puts every parameter in
            the decayed group.
        **hyperparameters: other hyperparameters of the program (``beta1=0.95``).

    Example::

        opt = create_optimizer(model, "lion", lr=1e-4, weight_decay=0.1)
    """
    from .. import zoo

    program, origin = resolve_program(name_or_program)
    decay = decay_name(program)
    if weight_decay is not None:
        if decay is None:
            raise ValueError(f"program {program.name!r} has no weight-decay hyperparameter "
                             f"({' or '.join(DECAY_NAMES)}), so weight_decay={weight_decay} "
                             "cannot be applied; it takes "
                             f"{sorted(program.hyperparameters) or 'none'}")
        if decay in hyperparameters:
            raise ValueError(f"give weight decay once: weight_decay or {decay}, not both")
        hyperparameters[decay] = float(weight_decay)
    extra = zoo.options(origin["zoo"], **hyperparameters) if "zoo" in origin else {}
    params = (model_or_params if isinstance(model_or_params, torch.nn.Module)
              else list(model_or_params))  # a generator is read once
    if decay is not None:
        grouped = _named(params)
        if grouped is not None:
            wd = hyperparameters.pop(decay, program.hyperparameters[decay])
            params = param_groups(grouped, wd, decay, no_decay)
            if not params:
                raise ValueError("the model has no trainable parameters")
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    elif _named(params) is not None:
        params = [p for _, p in params]
    return ProgramOptimizer(params, program, lr=lr, **extra, **hyperparameters)


def _named(model_or_params):
    """The module, or the list of ``(name, param)`` pairs, or None for plain parameters."""
    if isinstance(model_or_params, torch.nn.Module):
        return model_or_params
    items = model_or_params
    if items and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str)
                     for i in items):
        return items
    return None


def _rule(no_decay, model) -> NoDecay:
    listed: set[str] = set()
    hook = getattr(model, "no_weight_decay", None)
    if isinstance(model, torch.nn.Module) and callable(hook):
        listed = set(hook())
    if no_decay is None:
        return lambda n, p, m: n in listed or default_no_decay(n, p, m)
    if callable(no_decay):
        return no_decay
    if isinstance(no_decay, str):
        no_decay = [no_decay]
    patterns = list(no_decay)

    def matches(name: str, param: torch.Tensor, module: torch.nn.Module | None) -> bool:
        cls = type(module).__name__ if module is not None else ""
        return any(fnmatch.fnmatchcase(name, pat) or cls == pat for pat in patterns)

    return matches


class OptimizerFactory:
    """``create_optimizer`` in the form Hugging Face's ``Trainer`` calls an optimizer factory
    (transformers 5: ``optimizer_cls_and_kwargs=(OptimizerFactory, kwargs)`` makes it call
    ``OptimizerFactory()(model, **kwargs)`` once the model is on its device)::

        Trainer(..., optimizer_cls_and_kwargs=(OptimizerFactory, {"name_or_program": "lion",
                                                                  "lr": 3e-3, "weight_decay": 0.1}))
    """

    def __call__(self, model, **kwargs) -> ProgramOptimizer:
        return create_optimizer(model, **kwargs)
