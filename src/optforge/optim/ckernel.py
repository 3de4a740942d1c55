"""Build, cache and call a generated C optimizer step: the compiled step's runtime.

Shared by ``ProgramOptimizer(compile=True)`` (:mod:`optforge.optim.compiled`) and the
files written by ``optforge export``, which carry this module's code verbatim (all
of it after the imports; the imports join the file's own), so it imports only the
standard library and torch.

Building: ``$CC`` (default ``gcc``) with :data:`KERNEL_FLAGS`, well under a second.
Libraries are cached on disk by the SHA-256 of source, flags, compiler version and
CPU flags, under ``$OPTFORGE_KERNEL_CACHE`` (default
``$XDG_CACHE_HOME/optforge/kernels``, i.e. ``~/.cache/optforge/kernels``); writes are
atomic, so concurrent builders of one kernel agree.

The kernel's C signature (see :mod:`optforge.lang.ccode`)::

    int optforge_step(int n, int K, const int64_t *numel, void *const *ptrs,
                      const double *inputs, int threads)

``ptrs[j * n + i]``: array ``j`` (``w``, ``g``, ``h``, the slots) of tensor ``i``;
``inputs[k * m + j]``: input ``j`` (``lr``, ``step``, hyperparameters) of replica
``k``. It returns 0, or -1 when its scratch memory could not be allocated.
``ProgramOptimizer`` lays out its own buckets (replicas included); :class:`KernelStep`
is the exported class's bucket step.
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
import weakref
from functools import cache
from pathlib import Path

import torch

KERNEL_FLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
                "-shared", "-fPIC", "-std=c11")
KERNEL_CTYPES = {torch.float32: "float", torch.float64: "double"}


class KernelCompileError(RuntimeError):
    """The C compiler is missing or failed (its message)."""


def kernel_cache_dir():
    """Where built kernels are kept: ``$OPTFORGE_KERNEL_CACHE`` or the user's cache."""
    env = os.environ.get("OPTFORGE_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optforge" / "kernels"


@cache
def _kernel_compiler():
    """The compiler command and its version line; KernelCompileError when there is none."""
    cc = os.environ.get("CC", "gcc")
    path = shutil.which(cc)
    if path is None:
        raise KernelCompileError(f"no C compiler {cc!r} on PATH")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path, out.stdout.splitlines()[0] if out.stdout else ""


@cache
def _kernel_cpu():
    """This CPU's instruction-set flags: part of a kernel's cache key, since
    ``-march=native`` builds for them (a cache shared with another CPU must not load them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next(line for line in text.splitlines()
                    if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return f"{platform.machine()} {platform.processor()} {platform.node()}"


_KERNELS = {}  # cache key -> loaded step function, for this process


def build_kernel(source):
    """The step function of a C source: loaded from the disk cache, or built there.

    Raises KernelCompileError (no compiler, or it failed) or OSError (an unusable cache).
    """
    cc, version = _kernel_compiler()
    text = "\0".join([source, *KERNEL_FLAGS, version, _kernel_cpu()])
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    fn = _KERNELS.get(key)
    if fn is not None:
        return fn
    where = kernel_cache_dir()
    lib = where / f"step_{key}.so"
    if not lib.exists():
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            src = Path(tmp) / "step.c"
            src.write_text(source)
            out = Path(tmp) / "step.so"
            done = subprocess.run([cc, *KERNEL_FLAGS, "-o", str(out), str(src), "-lm"],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KernelCompileError(f"{cc} failed: {done.stderr.strip()[:2000]}")
            os.replace(out, lib)  # atomic: concurrent builders of one key agree
    fn = ctypes.CDLL(str(lib)).optforge_step
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_int]
    _KERNELS[key] = fn
    return fn


def call_kernel(fn, n, replicas, numel, ptrs, inputs):
    """Run a built step on ``n`` tensors (``numel``, ``ptrs``: ctypes arrays) with the
    inputs of each replica (a flat list of floats), on torch's number of threads."""
    values = (ctypes.c_double * max(len(inputs), 1))(*inputs)
    if fn(n, replicas, numel, ptrs, values, torch.get_num_threads()) != 0:
        raise MemoryError("compiled step: out of memory for its scratch arrays")


class KernelStep:
    """A program's compiled step over lists of tensors, one replica each.

    ``source(ctype)`` is the C source for entries of ``"float"`` or ``"double"``;
    ``scalar[j]`` says whether state array ``j`` holds 1 x 1 tensors (else one entry
    per parameter entry). :meth:`run` steps the kernel's arrays (``w``, ``g``, ``h``,
    the slots: lists of one tensor per parameter) given as ``fresh`` (the parameters
    and gradients, whose pointers are read every step) and ``state`` (the rest, kept
    between steps while the same state tensors come back). It returns False, doing
    nothing, where the tensors are not all dense, contiguous, on the CPU, of one
    float32/float64 dtype and of the sizes the arrays need, or where the dtype's kernel
    cannot be built (a warning, once; the caller then steps eagerly).
    """

    def __init__(self, source, scalar=()):
        self.source = source
        self.scalar = tuple(scalar)
        self._fns = {}
        self._layouts = {}

    def kernel(self, dtype):
        """The built step for ``dtype`` (built or loaded once)."""
        fn = self._fns.get(dtype)
        if fn is None:
            fn = self._fns[dtype] = build_kernel(self.source(KERNEL_CTYPES[dtype]))
        return fn

    def _kernel_or_none(self, dtype):
        """The built step, or None (warning once) where it cannot be built."""
        if self._fns.get(dtype, 0) is None:
            return None
        try:
            return self.kernel(dtype)
        except (KernelCompileError, OSError) as exc:  # OSError: an unusable cache
            self._fns[dtype] = None
            warnings.warn(f"compile=True: {dtype} tensors step eagerly ({exc})", stacklevel=4)
            return None

    def run(self, fresh, state, inputs):
        """One step; False where the tensors must be stepped eagerly (see the class)."""
        dtype = fresh[0][0].dtype
        if dtype not in KERNEL_CTYPES:
            return False
        try:  # sparse tensors have no data pointer
            now = [t.data_ptr() for a in fresh for t in a
                   if t.is_cpu and t.dtype is dtype and t.is_contiguous()]
        except RuntimeError:
            return False
        n = len(fresh[0])
        if len(now) != n * len(fresh):
            return False
        kept = [t for a in state for t in a]
        key = (dtype, *(t.numel() for t in fresh[0]), *map(id, kept))
        layout = self._layouts.get(key)
        if layout is not None and not all(  # an id reused by a new tensor
                r() is t for r, t in zip(layout[3], kept, strict=True)):
            layout = None
        if layout is None:
            sizes = [[1 if one else p.numel() for p in fresh[0]]
                     for one in self.scalar or [False] * len(state)]
            if not all(t.is_cpu and t.dtype is dtype and t.is_contiguous() and t.numel() == m
                       for a, ms in zip(state, sizes, strict=True)
                       for t, m in zip(a, ms, strict=True)):
                return False
            fn = self._kernel_or_none(dtype)
            if fn is None:
                return False
            self._layouts = {k: v for k, v in self._layouts.items()  # drop replaced state's
                             if all(r() is not None for r in v[3])}
            ptrs = (ctypes.c_void_p * ((len(fresh) + len(state)) * n))()
            ptrs[len(fresh) * n:] = [t.data_ptr() for t in kept]
            numel = (ctypes.c_int64 * n)(*(t.numel() for t in fresh[0]))
            layout = self._layouts[key] = (fn, ptrs, numel, [weakref.ref(t) for t in kept])
        fn, ptrs, numel, _ = layout
        ptrs[:len(now)] = now
        call_kernel(fn, n, 1, numel, ptrs, inputs)
        # the C wrote the parameters and state: autograd must see it (saved tensors)
        torch.autograd.graph.increment_version([*fresh[0], *kept])
        return True
