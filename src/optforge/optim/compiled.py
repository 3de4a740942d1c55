"""The compiled step of ``ProgramOptimizer(..., compile=True)``.

The program's plan becomes one C function (:mod:`optforge.lang.ccode`), built
with the system C compiler into a shared library and called through
:mod:`ctypes` on the data pointers of a bucket's parameters, gradients and
state tensors (see ``docs/COMPILE.md``).

Building, the disk cache and the call are :mod:`optforge.optim.ckernel` (shared
with exported optimizer files); every evaluation of the same program in a search
(and every later run) loads the cached library instead of building it: the source
depends only on the program's structure and the dtype, never on the parameters'
shapes or count.

Eager fallback (the ordinary step, same results up to rounding): programs the
C code does not express (matrix ops, reduced slots; a warning at construction),
no working compiler (a warning), and per bucket anything but dense, contiguous
float32/float64 tensors on the CPU (sparse gradients then raise the eager
step's error).
"""

from __future__ import annotations

import ctypes
import warnings
import weakref

import torch

from ..lang.ccode import CCode, Unsupported
from .ckernel import KERNEL_CTYPES, KernelCompileError, build_kernel, call_kernel


class _Layout:
    """A bucket's call arguments that last between steps (state pointers, sizes)."""

    def __init__(self, fn, n: int, arrays: list[str]):
        self.fn = fn
        self.ptrs = (ctypes.c_void_p * (len(arrays) * n))()
        self.numel = (ctypes.c_int64 * n)()
        self.n = n
        self.written: list = []  # the tensors the C writes (their autograd versions bumped)


class CompiledStep:
    """Runs a plan's step as compiled C on the buckets it can (see the module docstring).

    Raises :class:`~optforge.lang.ccode.Unsupported` for a program the C code
    does not express; :meth:`run` returns False where a bucket must run eagerly.
    """

    def __init__(self, plan, replicas: int | None):
        self.code = CCode(plan)
        self.k = replicas or 1
        self._layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        slot = {name: j for j, name in enumerate(self.code.arrays)}
        self._slot_arrays = [(slot[s], s) for s in plan.slots]
        self._g = slot["g"]
        self._h = slot.get("h") if plan.program.reads_hessian else None  # else never read
        self._fns: dict[torch.dtype, ctypes._CFuncPtr] = {}

    def kernel(self, dtype: torch.dtype):
        """The built step for ``dtype`` (builds or loads it; KernelCompileError without
        a compiler)."""
        fn = self._fns.get(dtype)
        if fn is None:
            fn = self._fns[dtype] = build_kernel(self.code.source(KERNEL_CTYPES[dtype]))
        return fn

    def _layout(self, b) -> _Layout | None:
        lay = self._layouts.get(b)
        if lay is not None:
            return lay
        p0 = b.params[0]
        if p0.device.type != "cpu" or p0.dtype not in KERNEL_CTYPES:
            return None
        if self._fns.get(p0.dtype, 0) is None:
            return None
        try:
            fn = self.kernel(p0.dtype)
        except (KernelCompileError, OSError) as exc:  # OSError: an unusable cache
            self._fns[p0.dtype] = None  # warned once; this dtype steps eagerly
            warnings.warn(f"compile=True: {p0.dtype} tensors step eagerly ({exc})",
                          stacklevel=5)
            return None
        n = len(b.params)
        lay = _Layout(fn, n, self.code.arrays)
        for i, (p, st) in enumerate(zip(b.params, b.states, strict=True)):
            lay.numel[i] = p.numel()
            for a, name in self._slot_arrays:
                t = st[name]
                if not t.is_contiguous():
                    return None
                lay.ptrs[a * n + i] = t.data_ptr()
            if self._h is not None:
                lay.ptrs[self._h * n + i] = st["h"].data_ptr()
        lay.written = [*b.params, *(st[s] for st in b.states for _, s in self._slot_arrays)]
        self._layouts[b] = lay
        return lay

    def forget(self, b) -> None:
        """Drop a bucket's cached pointers (its state tensors were replaced)."""
        self._layouts.pop(b, None)

    def run(self, b, group: dict, step: int) -> bool:
        """One step of bucket ``b``; False (nothing done) where it must run eagerly."""
        params = b.params
        try:  # checked first: a bucket that must run eagerly costs no layout
            ws = [p.data_ptr() for p in params if p.is_contiguous()]
            gs = [p.grad.data_ptr() for p in params if p.grad.is_contiguous()]
        except RuntimeError:  # sparse gradients have no data pointer
            return False
        if len(ws) != len(params) or len(gs) != len(params):
            return False
        lay = self._layout(b)
        if lay is None:
            return False
        n = lay.n
        lay.ptrs[0:n] = ws
        lay.ptrs[self._g * n:(self._g + 1) * n] = gs
        call_kernel(lay.fn, n, self.k, lay.numel, lay.ptrs, self._inputs(group, step))
        # the C wrote the parameters and state: autograd must see it (saved tensors)
        torch.autograd.graph.increment_version(lay.written)
        return True

    def _inputs(self, group: dict, step: int) -> list[float]:
        """The kernel's inputs (lr, step, hyperparameters), replica after replica."""
        values = [float(step) if name == "step" else group[name] for name in self.code.inputs]
        if all(isinstance(v, int | float) for v in values):  # the same for every replica
            return [float(v) for v in values] * self.k
        per = [torch.as_tensor(v, dtype=torch.float64).flatten().expand(self.k).tolist()
               if torch.as_tensor(v).numel() == 1 else
               torch.as_tensor(v, dtype=torch.float64).flatten().tolist() for v in values]
        return [per[j][k] for k in range(self.k) for j in range(len(values))]


def compiled_step(plan, replicas: int | None, name: str) -> CompiledStep | None:
    """A :class:`CompiledStep` for the plan, or None with a warning saying why not."""
    try:
        step = CompiledStep(plan, replicas)
        step.kernel(torch.float32)  # build now: a failing compiler shows at construction
    except (Unsupported, KernelCompileError, OSError) as exc:  # OSError: an unwritable cache
        warnings.warn(f"compile=True: program {name!r} runs eagerly ({exc})", stacklevel=3)
        return None
    return step
