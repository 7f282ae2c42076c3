"""``solve_ivp``: ``scipy.integrate.solve_ivp``'s signature and result, on the project's compiled solvers.

A SciPy-style ``fun(t, y, *args)`` returning dy/dt is compiled with Numba (the user's function and a small
generated wrapper that copies its result into the solver's ``out`` array; ``args`` travel packed in the
parameter vector, so new argument *values* need no recompilation).  When Numba cannot compile it, a
:class:`IVPCompileWarning` says why and the function is called as plain Python from the compiled loop
(through Numba's object mode) — correct, but typically 100x slower.

Differences from SciPy worth knowing:

* the step-size controller is OrdinaryDiffEq's PI controller, not SciPy's, so the accepted steps (and
  ``t`` when ``t_eval`` is None) differ from SciPy's at the same tolerances; the accuracy is comparable;
* events are located after the solve, on the recorded steps' dense output (same detection, same
  ``brentq`` root finding as SciPy); a terminal event cuts the solution there, but the solver has already
  integrated past it to ``t_span[1]`` (or until it failed) — harmless except for cost;
* Numba freezes global variables into the compiled code when ``fun`` is first compiled: pass anything that
  changes between calls through ``args``.
"""

from __future__ import annotations

import math
import warnings
import weakref

import numpy as np
from numba import njit
from numba.core.registry import CPUDispatcher
from scipy.integrate import DenseOutput, OdeSolution
from scipy.optimize import OptimizeResult

from .ode.events import TERMINATED, TERMINATED_MESSAGE, locate_events, step_ends
from .ode.rhs import PythonRHSWarning, as_compiled
from .ode.solve import check_array, solve_ode
from .tableaus import ERKTableau, get_tableau

__all__ = ["METHODS", "IVPCompileWarning", "IVPSolution", "OdeResult", "solve_ivp"]

#: SciPy-style method names → the project's tableaus.
METHODS = {"Tsit5": "tsit5", "DP5": "dp5", "RK45": "dp5", "BS3": "bs3", "RK23": "bs3"}
_METHODS_LOWER = {k.lower(): v for k, v in METHODS.items()}
_SCIPY_ONLY = ("DOP853", "Radau", "BDF", "LSODA")
# Options SciPy accepts for its implicit/LSODA solvers and ignores (with a warning) for the explicit ones.
_SCIPY_IGNORED = ("jac", "jac_sparsity", "lband", "uband", "min_step")
# The project's own extras.
_EXTRA = ("max_steps", "dtmin", "controller", "jit")

_SCIPY_MESSAGES = {0: "The solver successfully reached the end of the integration interval.", 1: TERMINATED_MESSAGE}


class IVPCompileWarning(PythonRHSWarning):
    """``fun`` (or its ``args``) could not be compiled with Numba; the slower plain-Python path is used."""


class OdeResult(OptimizeResult):
    """SciPy's ``solve_ivp`` result: ``t, y, sol, t_events, y_events, nfev, njev, nlu, status, message,
    success`` (attribute and dict access)."""


# ---------------------------------------------------------------------------------------------------------
# Dense output with SciPy's OdeSolution interface


@njit(cache=True)
def _dense_many(P, starts, hs, ys, Ks, bounds, tq, out):
    """out[:, k] = y(tq[k]) from the step covering it (the first or last step extrapolates, as SciPy)."""
    n_seg = hs.size
    ascending = bounds[n_seg] >= bounds[0]
    s = Ks.shape[1]
    w = np.empty(s)
    col = np.empty(ys.shape[1])
    for k in range(tq.size):
        t = tq[k]
        # SciPy: ascending → first segment whose end is >= t ("left"); descending → mirror ("right").
        if ascending:
            j = np.searchsorted(bounds, t, side="left") - 1
        else:
            j = np.searchsorted(-bounds, -t, side="left") - 1
        if j < 0:
            j = 0
        elif j > n_seg - 1:
            j = n_seg - 1
        h = hs[j]
        theta = (t - starts[j]) / h
        # y + h Σ b_i(θ) k_i
        deg = P.shape[1]
        for i in range(s):
            acc = 0.0
            pw = theta
            for m in range(deg):
                acc += P[i, m] * pw
                pw *= theta
            w[i] = acc
        for m in range(col.size):
            acc = 0.0
            for i in range(s):
                acc += w[i] * Ks[j, i, m]
            out[m, k] = ys[j, m] + h * acc


class _StepInterpolant(DenseOutput):
    """One step's interpolant as a SciPy ``DenseOutput`` (``IVPSolution.interpolants``)."""

    def __init__(self, t_old, t, start, h, y, K, P):
        super().__init__(t_old, t)
        self._args = (P, np.array([start]), np.array([h]), y[None, :], K[None], np.array([t_old, t]))

    def _call_impl(self, t):
        t = np.asarray(t, dtype=np.float64)
        tq = np.atleast_1d(t).ravel()
        out = np.empty((self._args[3].shape[1], tq.size))
        _dense_many(*self._args, np.ascontiguousarray(tq), out)
        return out[:, 0] if t.ndim == 0 else out


class IVPSolution(OdeSolution):
    """SciPy's ``OdeSolution`` (``ts``, ``t_min``, ``t_max``, ``n_segments``, ``interpolants``, ``sol(t)``),
    evaluated by one compiled loop over the recorded steps' interpolants.

    ``sol(t)`` for a scalar t gives shape (n,), for a 1-D array of m times (n, m); times outside
    [t_min, t_max] are extrapolated from the first or last step, as in SciPy.
    """

    def __init__(self, ts, starts, hs, ys, Ks, P):
        ts = np.ascontiguousarray(ts, dtype=np.float64)
        self.ts = ts
        self.n_segments = hs.size
        self._data = (
            np.ascontiguousarray(P),
            np.ascontiguousarray(starts),
            np.ascontiguousarray(hs),
            np.ascontiguousarray(ys),
            np.ascontiguousarray(Ks),
            ts,
        )
        if ts[-1] >= ts[0]:
            self.t_min, self.t_max, self.ascending, self.side, self.ts_sorted = ts[0], ts[-1], True, "left", ts
        else:
            self.t_min, self.t_max, self.ascending, self.side, self.ts_sorted = ts[-1], ts[0], False, "right", ts[::-1]
        self._interpolants = None

    @property
    def interpolants(self):
        if self._interpolants is None:
            P, starts, hs, ys, Ks, ts = self._data
            self._interpolants = [
                _StepInterpolant(ts[j], ts[j + 1], starts[j], hs[j], ys[j], Ks[j], P) for j in range(self.n_segments)
            ]
        return self._interpolants

    def _call_single(self, t):
        return self(t)

    def __call__(self, t):
        t = np.asarray(t, dtype=np.float64)
        if t.ndim > 1:
            raise ValueError(f"t must be a scalar or 1-D, got shape {t.shape}")
        tq = np.ascontiguousarray(np.atleast_1d(t))
        out = np.empty((self._data[3].shape[1], tq.size))
        _dense_many(*self._data, tq, out)
        return out[:, 0] if t.ndim == 0 else out


# ---------------------------------------------------------------------------------------------------------
# Turning fun(t, y, *args) into the in-place f(t, y, p, out)


def _arg_layout(args):
    """((kind, offset, size, shape) per argument, total size), or None when an argument cannot be packed into a
    float64 vector (then the Python path is used)."""
    layout = []
    off = 0
    for a in args:
        if isinstance(a, (bool, np.bool_)):
            layout.append(("b", off, 1, ()))
            off += 1
        elif isinstance(a, (int, np.integer)):
            if abs(int(a)) > 2**53:
                return None
            layout.append(("i", off, 1, ()))
            off += 1
        elif isinstance(a, (float, np.floating)):
            layout.append(("f", off, 1, ()))
            off += 1
        elif isinstance(a, np.ndarray) and a.ndim >= 1 and a.dtype.kind in "biuf" and a.size > 0:
            if a.dtype.kind in "iu" and a.size and np.max(np.abs(a.astype(np.float64))) > 2**53:
                return None
            kind = {"b": "ab", "i": "ai", "u": "ai", "f": "af"}[a.dtype.kind]
            layout.append((kind, off, a.size, tuple(a.shape)))
            off += a.size
        else:
            return None
    return tuple(layout), off


def _pack(args, total):
    p = np.empty(total)
    off = 0
    for a in args:
        if isinstance(a, np.ndarray):
            p[off : off + a.size] = a.ravel()
            off += a.size
        else:
            p[off] = float(a)
            off += 1
    return p


def _wrapper_source(layout, vectorized):
    lines = ["def rhs(t, y, p, out):"]
    names = []
    for k, (kind, off, size, shape) in enumerate(layout):
        name = f"a{k}"
        names.append(name)
        if kind == "f":
            lines.append(f"    {name} = p[{off}]")
        elif kind == "i":
            lines.append(f"    {name} = np.int64(p[{off}])")
        elif kind == "b":
            lines.append(f"    {name} = p[{off}] != 0.0")
        else:
            src = f"p[{off}:{off + size}]"
            if kind == "ai":
                src = f"{src}.astype(np.int64)"
            elif kind == "ab":
                src = f"({src} != 0.0)"
            else:
                src = f"{src}.copy()"  # a fresh array, so the user cannot write into the solver's parameters
            if len(shape) > 1:
                src = f"{src}.reshape({shape!r})"
            lines.append(f"    {name} = {src}")
    yarg = "y.reshape((y.size, 1))" if vectorized else "y"
    lines.append(f"    r = np.asarray(user({', '.join(['t', yarg] + names)}))")
    lines += [
        "    k = 0",
        "    for v in r.flat:",
        "        if k < out.size:",
        "            out[k] = v",
        "        k += 1",
    ]
    return "\n".join(lines)


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fun -> {key: handle or exception}


def _fun_cache(fun):
    try:
        return _cache.setdefault(fun, {})
    except TypeError:  # not weak-referenceable: no caching
        return {}


def _compiled_rhs(fun, layout, vectorized):
    """A FunctionHandle of the generated wrapper around njit(fun), or the exception that prevented it."""
    cache = _fun_cache(fun)
    key = ("jit", layout, vectorized)
    if key in cache:
        return cache[key]
    try:
        user = fun if isinstance(fun, CPUDispatcher) else njit(fun)
        namespace = {"np": np, "user": user}
        exec(_wrapper_source(layout, vectorized), namespace)  # noqa: S102 (generated from the layout only)
        result = as_compiled(njit(namespace["rhs"]), "rhs", "fun")
    except Exception as exc:  # noqa: BLE001 — numba raises many error types (TypingError, UnsupportedError, ...)
        result = exc
    cache[key] = result
    return result


def _python_rhs(fun, vectorized):
    """(FunctionHandle calling fun as Python through object mode, holder whose [0] is the current args)."""
    cache = _fun_cache(fun)
    key = ("python", vectorized)
    if key not in cache:
        holder = [()]

        def rhs(t, y, p, out):
            r = fun(t, y[:, None] if vectorized else y, *holder[0])
            out[:] = np.asarray(r, dtype=np.float64).ravel()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PythonRHSWarning)
            cache[key] = (as_compiled(rhs, "rhs", "fun"), holder)
    return cache[key]


def _check_output(fun, t0, y0, args, vectorized, cache_key):
    """Call fun once in Python (first use per state size) and check the shape of what it returns."""
    cache = _fun_cache(fun)
    key = ("checked", cache_key, y0.size)
    if cache.get(key):
        return
    y_in = y0[:, None].copy() if vectorized else y0.copy()
    r = np.asarray(fun(t0, y_in, *args))
    if r.size != y0.size or r.ndim > 2 or (r.ndim == 2 and 1 not in r.shape):
        raise ValueError(f"fun must return an array of shape ({y0.size},) like y0, got shape {r.shape}")
    if not np.issubdtype(r.dtype, np.number) or np.iscomplexobj(r):
        raise TypeError(f"fun must return real numbers, got dtype {r.dtype}")
    cache[key] = True


def _method(method):
    if isinstance(method, ERKTableau):
        if not method.adaptive:
            raise ValueError(f"method: {method.name} has no error estimate; solve_ivp needs an adaptive method")
        return method
    if isinstance(method, str):
        if method in _SCIPY_ONLY:
            raise ValueError(
                f"method: {method!r} is a scipy.integrate.solve_ivp method that lrnde_np does not "
                f"implement; use one of {', '.join(METHODS)} or call scipy.integrate.solve_ivp"
            )
        name = _METHODS_LOWER.get(method.lower())
        if name is not None:
            return get_tableau(name)
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(method, type):
        raise TypeError(
            f"method: SciPy OdeSolver classes ({method.__name__}) are not supported; use one of {', '.join(METHODS)}"
        )
    raise TypeError(f"method must be a string ({', '.join(METHODS)}), got {type(method).__name__}")


def solve_ivp(
    fun,
    t_span,
    y0,
    method="Tsit5",
    t_eval=None,
    dense_output=False,
    events=None,
    vectorized=False,
    args=None,
    **options,
):
    """Solve y' = fun(t, y, *args), y(t0) = y0 on ``t_span``, with ``scipy.integrate.solve_ivp``'s interface.

    Parameters
    ----------
    fun : ``fun(t, y, *args)`` returning dy/dt as an array of shape (n,) (with ``vectorized=True`` it receives
        ``y`` of shape (n, 1), as SciPy's explicit solvers pass it).  Compiled with Numba when possible, else
        called as plain Python with an :class:`IVPCompileWarning`.  A ``@numba.njit`` function works as is.
    t_span : (t0, tf); tf < t0 integrates backwards.
    y0 : initial state, shape (n,), real.
    method : "Tsit5" (default), "DP5" or its SciPy name "RK45", "BS3" or "RK23" (case-insensitive), or an
        adaptive :class:`~lrnde_np.tableaus.ERKTableau`.  SciPy's "DOP853", "Radau", "BDF", "LSODA" raise.
    t_eval : times (inside t_span, strictly sorted along the integration) at which to store the solution;
        default: every accepted step.
    dense_output : also return ``sol``, an :class:`IVPSolution` (SciPy's ``OdeSolution`` interface).
    events : a callable ``event(t, y, *args)`` or a list of them, with optional ``terminal`` (bool or count)
        and ``direction`` attributes, as in SciPy.
    args : extra arguments passed to ``fun`` and ``events``.
    **options : ``rtol`` (1e-3), ``atol`` (1e-6; scalar or per component), ``first_step``, ``max_step``
        (default inf) as SciPy; the project's ``max_steps`` (100000), ``dtmin``, ``controller`` (PI gains) and
        ``jit`` (default True; False forces the plain-Python path).  SciPy's implicit-solver options
        (``jac``, ...) are ignored with a warning, as SciPy does for its explicit methods.

    Returns
    -------
    OdeResult with ``t`` (m,), ``y`` (n, m), ``sol``, ``t_events``, ``y_events``, ``nfev``, ``njev`` (0),
    ``nlu`` (0), ``status`` (-1 failure, 0 reached tf, 1 terminal event), ``message``, ``success``.
    """
    tab = _method(method)
    try:
        t0, tf = (float(v) for v in t_span)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"t_span must be a pair of numbers (t0, tf), got {t_span!r}") from exc
    if not (math.isfinite(t0) and math.isfinite(tf)):
        raise ValueError(f"t_span must be finite, got {t_span!r}")
    if np.iscomplexobj(y0):
        raise TypeError("y0: complex states are not supported; split them into real and imaginary parts")
    y0 = check_array("y0", y0)
    if y0.size == 0:
        raise ValueError("y0 must not be empty")
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    if args is None:
        args = ()
    else:
        try:
            args = tuple(args)
        except TypeError as exc:
            raise TypeError(f"args must be a tuple (e.g. args=({args!r},)), got {type(args).__name__}") from exc

    unknown = set(options) - {"rtol", "atol", "first_step", "max_step"} - set(_SCIPY_IGNORED) - set(_EXTRA)
    if unknown:
        raise TypeError(f"solve_ivp got unexpected options {sorted(unknown)}")
    ignored = sorted(set(options) & set(_SCIPY_IGNORED))
    if ignored:
        warnings.warn(
            f"The following arguments have no effect for a chosen solver: {', '.join(ignored)}.", stacklevel=2
        )
    rtol = options.get("rtol", 1e-3)
    atol = options.get("atol", 1e-6)
    first_step = options.get("first_step")
    if first_step is not None:
        first_step = float(first_step)
        if not (first_step > 0):
            raise ValueError("first_step must be positive")
        if first_step > abs(tf - t0):
            raise ValueError("first_step exceeds bounds")
    max_step = options.get("max_step", np.inf)
    try:
        max_step = float(max_step)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"max_step must be a number, got {type(max_step).__name__}") from exc
    if not (max_step > 0):
        raise ValueError("max_step must be positive")
    max_step = None if math.isinf(max_step) else max_step

    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=np.float64)
        if t_eval.ndim != 1:
            raise ValueError("t_eval must be 1-dimensional")
        if np.any(t_eval < min(t0, tf)) or np.any(t_eval > max(t0, tf)):
            raise ValueError("t_eval: values are not within t_span")
        d = np.diff(t_eval)
        if (tf > t0 and np.any(d <= 0)) or (tf < t0 and np.any(d >= 0)):
            raise ValueError("t_eval: values are not properly sorted (strictly along the integration)")
        if not np.all(np.isfinite(t_eval)):
            raise ValueError("t_eval contains non-finite values")

    # The right-hand side.
    use_jit = options.get("jit", True)
    handle = None
    p = np.zeros(0)
    if use_jit:
        packed = _arg_layout(args)
        if packed is None:
            warnings.warn(
                "args: some arguments cannot be passed to Numba-compiled code (only numbers and numeric "
                "arrays can); fun runs as plain Python, typically 100x slower.",
                IVPCompileWarning,
                stacklevel=2,
            )
        else:
            layout, total = packed
            compiled = _compiled_rhs(fun, layout, bool(vectorized))
            if isinstance(compiled, Exception):
                first = str(compiled).strip().splitlines()
                why = first[0] if first else type(compiled).__name__
                warnings.warn(
                    f"fun could not be compiled with Numba ({type(compiled).__name__}: {why}); it runs "
                    f"as plain Python, typically 100x slower. Write it with NumPy operations on arrays "
                    f"and numbers only (no Python objects, dicts or unsupported libraries) to get the "
                    f"compiled path.",
                    IVPCompileWarning,
                    stacklevel=2,
                )
            else:
                handle = compiled
                p = _pack(args, total)
    _check_output(fun, t0, y0, args, bool(vectorized), handle is not None)
    if handle is None:
        handle, holder = _python_rhs(fun, bool(vectorized))
        holder[0] = args

    need_dense = bool(dense_output) or events is not None
    if t0 == tf:  # SciPy returns the single point twice-free: t = [t0]
        result = _empty_result(t0, y0, t_eval, dense_output, events)
        return result
    sol = solve_ode(
        handle,
        (t0, tf),
        y0,
        p,
        method=tab,
        rtol=rtol,
        atol=atol,
        saveat=t_eval,
        dense=need_dense,
        dt=first_step,
        dtmax=max_step,
        dtmin=options.get("dtmin"),
        max_steps=options.get("max_steps", 100_000),
        controller=options.get("controller"),
    )
    status = 0 if sol.success else -1
    message = _SCIPY_MESSAGES[0] if sol.success else sol.message
    t_out, y_out = sol.t, sol.y
    n_seg = len(sol.steps) if sol.steps is not None else 0
    ts_dense = None
    t_events = y_events = None
    if events is not None:
        ev_args = args
        found = locate_events(
            events, tab.P, sol.steps.t, sol.steps.dt, sol.steps.y, sol.steps.K, step_ends(sol), ev_args
        )
        t_events, y_events = found.t_events, found.y_events
        if found.terminated:
            status, message = 1, TERMINATED_MESSAGE
            j, te = found.terminal_step, found.t_terminal
            tdir = 1.0 if tf >= t0 else -1.0
            n_seg = j + 1
            if t_eval is None:
                # t0, the ends of the steps before the event's step, then the event.
                t_out = np.append(sol.t[: j + 1], te)
                y_out = np.vstack([sol.y[: j + 1], found.y_terminal[None, :]])
            else:
                keep = (t_eval - te) * tdir <= 0.0
                t_out, y_out = sol.t[keep], sol.y[keep]
            ts_dense = np.append(np.append(t0, step_ends(sol)[:j]), te)
    dense = None
    if dense_output and n_seg > 0:
        if ts_dense is None:
            ts_dense = np.append(t0, step_ends(sol)[:n_seg])
        st = sol.steps
        dense = IVPSolution(ts_dense, st.t[:n_seg], st.dt[:n_seg], st.y[:n_seg], st.K[:n_seg], tab.P)
    return OdeResult(
        t=np.array(t_out),
        y=np.array(y_out.T),
        sol=dense,
        t_events=t_events,
        y_events=y_events,
        nfev=sol.stats["nfe"],
        njev=0,
        nlu=0,
        status=status,
        message=message,
        success=status >= 0,
    )


def _empty_result(t0, y0, t_eval, dense_output, events):
    """t0 == tf: nothing to integrate."""
    if t_eval is None:
        t, y = np.array([t0]), y0[:, None].copy()
    else:
        t, y = t_eval.copy(), np.repeat(y0[:, None], t_eval.size, axis=1)
    n_ev = 0 if events is None else (1 if callable(events) else len(events))
    t_events = None if events is None else [np.asarray([]) for _ in range(n_ev)]
    y_events = None if events is None else [np.asarray([]) for _ in range(n_ev)]
    return OdeResult(
        t=t,
        y=y,
        sol=None,
        t_events=t_events,
        y_events=y_events,
        nfev=0,
        njev=0,
        nlu=0,
        status=0,
        message=_SCIPY_MESSAGES[0],
        success=True,
    )


_ = TERMINATED  # re-exported for users comparing solve_ode statuses
