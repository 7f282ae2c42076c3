"""Turning what the user passes as a right-hand side into a first-class Numba function value."""
from __future__ import annotations

import warnings
import weakref

from numba import njit, objmode
from numba.core.registry import CPUDispatcher

from .._jit import FunctionHandle
from .._types import JVP_SIG, RHS_SIG, VALUE_VJP_SIG, VJP_SIG


class PythonRHSWarning(UserWarning):
    """A plain Python callable was given where a Numba-compiled function runs much faster."""


_converted: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _objmode_wrapper(func, signature, n_args):
    # Numba cannot call an arbitrary Python object from compiled code except inside an object-mode block.
    if n_args == 4:
        def call(t, y, p, out):
            with objmode():
                func(t, y, p, out)
    elif n_args == 5:
        def call(t, y, p, v, out):
            with objmode():
                func(t, y, p, v, out)
    elif n_args == 6:
        def call(t, y, p, a, out_y, out_p):
            with objmode():
                func(t, y, p, a, out_y, out_p)
    else:
        def call(t, y, p, a, out_f, out_y, out_p):
            with objmode():
                func(t, y, p, a, out_f, out_y, out_p)
    return njit(signature)(call)


def as_compiled(func, kind="rhs", argname="f"):
    """Return a :class:`FunctionHandle` of ``func`` compiled for the fixed signature of ``kind``
    ("rhs", "vjp", "jvp" or "value_vjp"); a handle is passed through.

    * a Numba dispatcher is compiled (once) for the signature — lazily ``@njit``-ed functions work as is;
    * a plain Python callable is wrapped in an object-mode trampoline, with a :class:`PythonRHSWarning`
      (expect it to run 100x or more slower than ``@njit``).
    """
    signature, n_args = {"rhs": (RHS_SIG, 4), "jvp": (JVP_SIG, 5), "vjp": (VJP_SIG, 6),
                         "value_vjp": (VALUE_VJP_SIG, 7)}[kind]
    if isinstance(func, FunctionHandle):
        if func.signature != signature:
            raise TypeError(f"{argname} is a compiled {func.signature} function, expected {signature}")
        return func
    if not callable(func):
        raise TypeError(f"{argname} must be callable {kind} function, got {type(func).__name__}")
    try:
        cached = _converted.get(func)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None and kind in cached:
        return cached[kind]
    if isinstance(func, CPUDispatcher):
        if signature.args in [tuple(s) for s in func.signatures] or func._can_compile:
            compiled = func
            if func._can_compile:
                func.compile(signature.args)
        else:  # compiled for other signatures only: recompile the Python source for ours
            compiled = njit(signature)(func.py_func)
    else:
        warnings.warn(
            f"{argname} is a plain Python function; it will be called through Numba's object mode, which is "
            f"typically 100x slower than decorating it with @numba.njit (signature f(t, y, p, out) writing "
            f"into out).", PythonRHSWarning, stacklevel=3)
        compiled = _objmode_wrapper(func, signature, n_args)
    compiled = FunctionHandle(compiled, signature)
    try:
        _converted.setdefault(func, {})[kind] = compiled
    except TypeError:
        pass
    return compiled
