"""Turning what the user passes as a right-hand side into a first-class Numba function value."""

from __future__ import annotations

import inspect
import warnings
import weakref

import numpy as np
from numba import njit, objmode
from numba.core.errors import NumbaError
from numba.core.registry import CPUDispatcher

from .._jit import FunctionHandle
from .._types import JVP_SIG, RHS_SIG, VALUE_VJP_SIG, VJP_SIG


class PythonRHSWarning(UserWarning):
    """A plain Python callable was given where a Numba-compiled function runs much faster."""


_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    signature, n_args = {
        "rhs": (RHS_SIG, 4),
        "jvp": (JVP_SIG, 5),
        "vjp": (VJP_SIG, 6),
        "value_vjp": (VALUE_VJP_SIG, 7),
    }[kind]
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
    source = getattr(func, "py_func", func)
    _check_arity(source, kind, argname)
    if isinstance(func, CPUDispatcher):
        try:
            if signature.args in [tuple(s) for s in func.signatures] or func._can_compile:
                compiled = func
                if func._can_compile:
                    func.compile(signature.args)
            else:  # compiled for other signatures only: recompile the Python source for ours
                compiled = njit(signature)(func.py_func)
            compiled = FunctionHandle(compiled, signature)
        except (NumbaError, TypeError) as exc:
            raise TypeError(_compile_error_message(func, kind, argname, exc)) from None
    else:
        warnings.warn(
            f"{argname} is a plain Python function; it will be called through Numba's object mode, which is "
            f"typically 100x slower than decorating it with @numba.njit (signature f(t, y, p, out) writing "
            f"into out).",
            PythonRHSWarning,
            stacklevel=3,
        )
        compiled = FunctionHandle(_objmode_wrapper(func, signature, n_args), signature)
    compiled.source = source
    try:
        _converted.setdefault(func, {})[kind] = compiled
    except TypeError:
        pass
    return compiled


# ---------------------------------------------------------------------------------------------------------
# Checked first call of user functions.
#
# A compiled user function that indexes past an array's end writes into (or reads) whatever memory follows
# it: a segfault, heap corruption, or a silently wrong answer.  Before a user function first runs inside a
# compiled loop on arrays of given sizes, :func:`check_user_function` evaluates it once under guard, and
# remembers (per function handle and sizes) that it passed, so later calls pay one set lookup:
#
# 1. its Python source (the function itself, or a dispatcher's ``py_func``), in the interpreter, on copies
#    of the real inputs — NumPy bounds-checks every index, so a read or write out of range is an IndexError
#    and becomes a ValueError naming the function; a return value instead of writing ``out`` is a TypeError.
#    (Skipped when the arrays are large — an interpreted run of a compiled kernel can take long — and
#    inconclusive when the source cannot run outside Numba, e.g. it calls intrinsics.)
# 2. the compiled function, on views of padded buffers whose padding holds a canary pattern: a write past an
#    output's end changes the canary (ValueError); run twice with different fills of the outputs, an entry
#    left at its fill both times was never written (ValueError); a changed input is a ValueError too.
#
# Error messages are one line: the function's role (``f``, ``g``, ``f_vjp``), its name, and what is wrong.

#: Argument names of each kind of user function; the outputs are the trailing ``out*`` arguments.
KIND_ARGS = {
    "rhs": ("t", "y", "p", "out"),
    "jvp": ("t", "y", "p", "v", "out"),
    "vjp": ("t", "y", "p", "a", "out_y", "out_p"),
    "value_vjp": ("t", "y", "p", "a", "out_f", "out_y", "out_p"),
}
#: Largest total array size for which step 1 runs the Python source in the interpreter.
PYTHON_RUN_MAX_SIZE = 2048
_PAD = 64
_CANARY = -3.0517578125e-305  # an unusual finite value (2**-1011)
_FILLS = (-7.125e300, 6.0625e-301)  # the outputs' two fills in step 2
_checked_callables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class UserFunctionError(ValueError):
    """A user function failed its checked first call (out-of-range index, unwritten output, ...)."""


def _describe(func):
    name = getattr(getattr(func, "py_func", func), "__qualname__", None) or type(func).__name__
    return name


def _check_arity(source, kind, argname):
    """TypeError unless ``source`` (a Python function) accepts the kind's positional arguments."""
    names = KIND_ARGS[kind]
    try:
        sig = inspect.signature(source)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*names)
    except TypeError:
        raise TypeError(
            f"{argname} ({_describe(source)}{sig}) must take {len(names)} arguments "
            f"({', '.join(names)}) and write into {names[-1] if kind in ('rhs', 'jvp') else 'the outputs'}"
        ) from None


def _compile_error_message(func, kind, argname, exc):
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("During", "File", "\x1b"))]
    names = KIND_ARGS[kind]
    if "mismatch of return type" in text:
        target = names[-1] if kind in ("rhs", "jvp") else "the outputs"
        what = f"returns a value; it must write its result into {target} and return nothing"
    else:
        interesting = [ln for ln in lines if not ln.startswith(("Failed in", "- Resolution", "No implementation"))]
        what = (
            "does not compile for "
            + f"({', '.join(names)}) with t a float and the rest 1-D float64 arrays: "
            + (interesting[0] if interesting else (lines[0] if lines else type(exc).__name__))
        )
    return f"{argname} ({_describe(func)}) {what}"


def _sizes(kind, n, m):
    """Sizes of the array arguments of a kind of user function for state size n and m parameters."""
    return {"rhs": (n, m, n), "jvp": (n, m, n, n), "vjp": (n, m, n, n, m), "value_vjp": (n, m, n, n, n, m)}[kind]


def check_user_function(func, kind, argname, t, y, p, extra=None):
    """Run the checked first call of ``func`` (a FunctionHandle or callable of ``kind``) at (t, y, p[, extra]);
    a no-op when it already passed for these sizes.  Raises TypeError/ValueError naming ``argname``."""
    n, m = y.size, p.size
    key = (kind, n, m)
    if isinstance(func, FunctionHandle):
        checked = func.checked
    else:
        try:
            checked = _checked_callables.setdefault(func, set())
        except TypeError:
            checked = set()
    if key in checked:
        return
    _guarded_call(func, kind, argname, float(t), y, p, extra)
    checked.add(key)


def _inputs(kind, y, p, extra):
    ins = [np.array(y, dtype=np.float64), np.array(p, dtype=np.float64)]
    if kind != "rhs":
        ins.append(np.array(extra if extra is not None else np.linspace(-1.0, 1.0, y.size), dtype=np.float64))
    return ins


def _guarded_call(func, kind, argname, t, y, p, extra):
    import warnings as _w

    names = KIND_ARGS[kind]
    sizes = _sizes(kind, y.size, p.size)
    n_in = 2 if kind == "rhs" else 3
    source = getattr(func, "source", None) if isinstance(func, FunctionHandle) else getattr(func, "py_func", func)
    compiled = func.dispatcher if isinstance(func, FunctionHandle) else func
    label = f"{argname} ({_describe(source if source is not None else compiled)})"
    shapes = ", ".join(f"{nm} ({sz},)" for nm, sz in zip(names[1:], sizes, strict=True))
    where = f"at its first call with t = {t:g}, {shapes}"

    # 1. The Python source, bounds-checked by NumPy.
    if source is not None and callable(source) and sum(sizes) <= PYTHON_RUN_MAX_SIZE:
        ins = _inputs(kind, y, p, extra)
        outs = [np.full(sz, _FILLS[0]) for sz in sizes[n_in:]]
        try:
            with np.errstate(all="ignore"), _w.catch_warnings():
                _w.simplefilter("ignore")
                ret = source(t, *ins, *outs)
        except IndexError as exc:
            raise UserFunctionError(
                f"{label} indexes out of range {where}: {exc} (do p and y have the sizes it expects?)"
            ) from None
        except Exception:  # noqa: BLE001 - inconclusive: the source may only run under Numba
            ret = None
        if ret is not None:
            raise TypeError(
                f"{label} returns a value ({type(ret).__name__}) {where}; it must write its result "
                f"into {', '.join(names[n_in + 1 :])} and return nothing"
            )

    # 2. The compiled function on canary-padded buffers, twice with different output fills.
    if compiled is None or not callable(compiled):
        return
    results = []
    for fill in _FILLS:
        bufs = []
        for k, sz in enumerate(sizes):
            b = np.full(sz + _PAD, _CANARY)
            b[:sz] = _inputs(kind, y, p, extra)[k] if k < n_in else fill
            bufs.append(b)
        views = [b[:sz] for b, sz in zip(bufs, sizes, strict=True)]
        with np.errstate(all="ignore"):
            ret = compiled(t, *views)
        if ret is not None:
            raise TypeError(
                f"{label} returns a value ({type(ret).__name__}) {where}; it must write its result "
                f"into {', '.join(names[n_in + 1 :])} and return nothing"
            )
        for k, (b, sz) in enumerate(zip(bufs, sizes, strict=True)):
            if np.any(b[sz:].view(np.int64) != np.float64(_CANARY).view(np.int64)):
                raise UserFunctionError(f"{label} writes past the end of {names[k + 1]} ({sz} entries) {where}")
        ref = _inputs(kind, y, p, extra)
        for k in range(n_in):
            if not np.array_equal(views[k], ref[k], equal_nan=True):
                raise UserFunctionError(
                    f"{label} modifies its input {names[k + 1]} {where}; the solvers pass "
                    f"their own work arrays, which must not change"
                )
        results.append([v.copy() for v in views[n_in:]])
    for k, (first, second) in enumerate(zip(*results, strict=True)):
        unwritten = np.flatnonzero((first == _FILLS[0]) & (second == _FILLS[1]))
        if unwritten.size:
            nm = names[n_in + 1 + k]
            raise UserFunctionError(
                f"{label} does not write {nm}[{unwritten[0]}]"
                + (f" (nor {unwritten.size - 1} more entries)" if unwritten.size > 1 else "")
                + f" {where}; it must overwrite every entry of {nm}"
            )
