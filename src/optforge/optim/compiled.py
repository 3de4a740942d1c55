"""The compiled step of ``ProgramOptimizer(..., compile=True)``.

The program's plan becomes one C function (:mod:`optforge.lang.ccode`), built
with the system C compiler into a shared library and called through
:mod:`ctypes` on the data pointers of a bucket's parameters, gradients and
state tensors (see ``docs/COMPILE.md``).

Building: ``$CC`` (default ``gcc``) ``-O3 -march=native -fopenmp
-ffp-contract=off -shared -fPIC``, well under a second. Libraries are cached on
disk by the SHA-256 of source, flags and compiler version, under
``$OPTFORGE_KERNEL_CACHE`` (default ``$XDG_CACHE_HOME/optforge/kernels``, i.e.
``~/.cache/optforge/kernels``), so every evaluation of the same program in a
search (and every later run) loads the library instead of building it; the
source depends only on the program's structure and the dtype, never on the
parameters' shapes or count.

Eager fallback (the ordinary step, same results up to rounding): programs the
C code does not express (matrix ops, reduced slots; a warning at construction),
no working compiler (a warning), and per bucket anything but dense, contiguous
float32/float64 tensors on the CPU (sparse gradients then raise the eager
step's error).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
import weakref
from functools import cache
from pathlib import Path

import torch

from ..lang.ccode import CCode, Unsupported

FLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
         "-shared", "-fPIC", "-std=c11")
_CTYPE = {torch.float32: "float", torch.float64: "double"}


class CompileError(RuntimeError):
    """The C compiler is missing or failed (its message)."""


def cache_dir() -> Path:
    """Where built kernels are kept: ``$OPTFORGE_KERNEL_CACHE`` or the user's cache."""
    env = os.environ.get("OPTFORGE_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optforge" / "kernels"


@cache
def _compiler() -> tuple[str, str]:
    """The compiler command and its version line; CompileError when there is none."""
    cc = os.environ.get("CC", "gcc")
    path = shutil.which(cc)
    if path is None:
        raise CompileError(f"no C compiler {cc!r} on PATH")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path, out.stdout.splitlines()[0] if out.stdout else ""


@cache
def _cpu() -> str:
    """This CPU's instruction-set flags: part of a kernel's cache key, since ``-march=native``
    builds for them (a cache shared with another CPU must not load them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next(line for line in text.splitlines()
                    if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        import platform

        return f"{platform.machine()} {platform.processor()} {platform.node()}"


_LOADED: dict[str, ctypes._CFuncPtr] = {}


def build(source: str) -> ctypes._CFuncPtr:
    """The step function of a C source: loaded from the disk cache, or built there."""
    cc, version = _compiler()
    key = hashlib.sha256("\0".join([source, *FLAGS, version, _cpu()]).encode()).hexdigest()[:32]
    fn = _LOADED.get(key)
    if fn is not None:
        return fn
    where = cache_dir()
    lib = where / f"step_{key}.so"
    if not lib.exists():
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            src = Path(tmp) / "step.c"
            src.write_text(source)
            out = Path(tmp) / "step.so"
            done = subprocess.run([cc, *FLAGS, "-o", str(out), str(src), "-lm"],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise CompileError(f"{cc} failed: {done.stderr.strip()[:2000]}")
            os.replace(out, lib)  # atomic: concurrent builders of one key agree
    fn = ctypes.CDLL(str(lib)).optforge_step
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_int]
    _LOADED[key] = fn
    return fn


class _Layout:
    """A bucket's call arguments that last between steps (state pointers, sizes)."""

    def __init__(self, fn, n: int, arrays: list[str]):
        self.fn = fn
        self.ptrs = (ctypes.c_void_p * (len(arrays) * n))()
        self.numel = (ctypes.c_int64 * n)()
        self.n = n


class CompiledStep:
    """Runs a plan's step as compiled C on the buckets it can (see the module docstring).

    Raises :class:`~optforge.lang.ccode.Unsupported` for a program the C code
    does not express; :meth:`run` returns False where a bucket must run eagerly.
    """

    def __init__(self, plan, replicas: int | None):
        self.code = CCode(plan)
        self.plan = plan
        self.replicas = replicas
        self.k = replicas or 1
        self._layouts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        slot = {name: j for j, name in enumerate(self.code.arrays)}
        self._slot_arrays = [(slot[s], s) for s in plan.slots]
        self._g = slot["g"]
        self._h = slot.get("h") if plan.program.reads_hessian else None  # else never read
        self._fns: dict[torch.dtype, ctypes._CFuncPtr] = {}
        self._host_regs = [(plan.input_regs.get("lr"), "lr"),
                           *((r, k) for k, r in plan.hyper_regs.items())]

    def kernel(self, dtype: torch.dtype):
        """The built step for ``dtype`` (builds or loads it; CompileError without a compiler)."""
        fn = self._fns.get(dtype)
        if fn is None:
            fn = self._fns[dtype] = build(self.code.source(_CTYPE[dtype]))
        return fn

    def _layout(self, b) -> _Layout | None:
        lay = self._layouts.get(b)
        if lay is not None:
            return lay
        p0 = b.params[0]
        if p0.device.type != "cpu" or p0.dtype not in _CTYPE:
            return None
        n = len(b.params)
        lay = _Layout(self.kernel(p0.dtype), n, self.code.arrays)
        for i, (p, st) in enumerate(zip(b.params, b.states, strict=True)):
            lay.numel[i] = p.numel()
            for a, name in self._slot_arrays:
                t = st[name]
                if not t.is_contiguous():
                    return None
                lay.ptrs[a * n + i] = t.data_ptr()
            if self._h is not None:
                lay.ptrs[self._h * n + i] = st["h"].data_ptr()
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
        host = (ctypes.c_double * (self.k * max(len(self.code.host), 1)))()
        host[0:self.k * len(self.code.host)] = self._host(group, step)
        rc = lay.fn(n, self.k, lay.numel, lay.ptrs, host, torch.get_num_threads())
        if rc != 0:
            raise MemoryError("compiled step: out of memory for its scratch arrays")
        return True

    def _host(self, group: dict, step: int) -> list[float]:
        """Host values, replica after replica."""
        plan = self.plan
        env: dict[int, object] = {}
        if "step" in plan.input_regs:
            env[plan.input_regs["step"]] = float(step)
        for r, name in self._host_regs:
            if r is not None:
                v = group[name]
                env[r] = float(v) if isinstance(v, int | float) else \
                    torch.as_tensor(v, dtype=torch.float64).flatten().tolist()
        if all(isinstance(v, float) for v in env.values()):  # the same for every replica
            return self.code.host_values(env) * self.k
        out: list[float] = []
        for k in range(self.k):
            out += self.code.host_values(
                {r: v if isinstance(v, float) else v[k] for r, v in env.items()})
        return out


def compiled_step(plan, replicas: int | None, name: str) -> CompiledStep | None:
    """A :class:`CompiledStep` for the plan, or None with a warning saying why not."""
    try:
        step = CompiledStep(plan, replicas)
        step.kernel(torch.float32)  # build now: a failing compiler shows at construction
    except (Unsupported, CompileError, OSError) as exc:  # OSError: an unwritable cache
        warnings.warn(f"compile=True: program {name!r} runs eagerly ({exc})", stacklevel=3)
        return None
    return step
