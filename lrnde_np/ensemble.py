"""Ensembles: many independent trajectories in one call, on the CPU (Numba ``prange``) or on a GPU (numba.cuda).

    solve_ode_ensemble(f, t_span, y0[N, n], p[N, n_p] or p[n_p], ...)       one adaptive ODE solve per row
    solve_sde_ensemble(f, g, t_span, x0[N, n], p, seed=s or seeds=[...])    one adaptive SDE path per row
    local_regularizer_ensemble(f, f_vjp, t_reg, t1, z[N, n], p, ...)        R and ∂R/∂p per row

Every trajectory is exactly what the one-trajectory entry point computes for that row — ``solve_ode``,
``solve_sde`` (path i drawn from ``seeds[i]``, as ``solve_sde(..., seed=seeds[i])``) and
``local_regularizer`` — with its own adaptive step size: the per-trajectory loops of
:mod:`lrnde_np.cuda.trajectory` call the same step and controller kernels, and the same source is compiled by
``@njit`` for ``backend="cpu"`` and by numba.cuda for ``backend="cuda"`` (one trajectory per GPU thread).

Right-hand sides: ``f(t, y, p, out)`` as everywhere in the library.  On the CPU an ``@njit`` function (or a
``FunctionHandle``); on the GPU a ``@cuda.jit(device=True)`` function or an ``@njit`` one (numba-cuda compiles
it for the device).  A CUDA device function given to ``backend="cpu"`` is compiled from its Python source by
``@njit``, so one definition can serve both backends.

Differences from the one-trajectory calls: output only at ``saveat`` (default: t1 alone), no step records; a
trajectory that stops early has NaN at the save times it did not reach and its status says why; SDE paths
keep RSwM3's future increments on a fixed-size stack per path (``stack_size``), with status 6 (STACK_FULL)
when it overflows.

Nothing here imports ``numba.cuda``: ``backend="cuda"`` imports :mod:`lrnde_np.cuda.kernels` when called and
raises :class:`CUDAUnavailableError` naming what is missing (numba-cuda, or a GPU and driver).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numba.core.registry import CPUDispatcher

from ._jit import FunctionHandle
from ._types import rhs_from, vjp_from
from .cuda import CUDAUnavailableError, cuda_kernels
from .cuda.trajectory import STACK_FULL, STACK_FULL_MESSAGE, local_reg_trajectory, ode_trajectory, sde_trajectory
from .ode import rhs as _rhs
from .ode.loop import STATUS_MESSAGES, SUCCESS
from .ode.rhs import as_compiled
from .ode.solve import check_array, check_tolerances, control_array, validate_saveat, validate_span
from .regularize.local import _heuristic_weights
from .sde.solve import NOISE_TYPES
from .sde.solve import _control_array as _sde_control_array
from .sde.step import pack_tableau
from .sde.tableaus import get_sde_tableau
from .tableaus import TSIT5, get_tableau

__all__ = [
    "BACKENDS",
    "CUDAUnavailableError",
    "EnsembleSolution",
    "LocalRegEnsemble",
    "local_regularizer_ensemble",
    "solve_ode_ensemble",
    "solve_sde_ensemble",
]

BACKENDS = ("cpu", "cuda")


def _checked(handle, kind, argname, t, y, p):
    """Run the one-trajectory solvers' checked first call (bounds, signature, writes to ``out``) on row 0 before
    the compiled ensemble loop: a bad right-hand side is an error naming it, not a crash inside ``prange``."""
    _rhs.check_user_function(handle, kind, argname, t, y, p)
    return handle


ENSEMBLE_STATUS_MESSAGES = {**STATUS_MESSAGES, STACK_FULL: STACK_FULL_MESSAGE}


# ----------------------------------------------------------------------------------------------------------
# Results


@dataclass
class EnsembleSolution:
    """``y[i, k]``: trajectory i at ``t[k]`` (NaN where it stopped before); per trajectory ``status`` (the
    codes of ``solve_ode``/``solve_sde``, plus 6 = STACK_FULL for SDE paths), ``t_end`` (the time reached) and
    ``stats`` (arrays: nfe, accepted, rejected, and nge for SDEs)."""

    t: np.ndarray
    y: np.ndarray
    status: np.ndarray
    t_end: np.ndarray
    stats: dict
    backend: str

    @property
    def success(self) -> np.ndarray:
        return self.status == SUCCESS

    def message(self, i) -> str:
        return ENSEMBLE_STATUS_MESSAGES[int(self.status[i])]

    def __len__(self):
        return self.y.shape[0]


@dataclass
class LocalRegEnsemble:
    """Per trajectory: R, dR/dp (``grad_p``, None without ``compute_grad``), dR/dz (``grad_z``, only with
    ``through_state``), the step dt, E_est, S_est, nfe and a status (NONFINITE where f(t_reg, z) is not
    finite; R is NaN there)."""

    value: np.ndarray
    grad_p: np.ndarray | None
    grad_z: np.ndarray | None
    dt: np.ndarray
    error_estimate: np.ndarray
    stiffness_estimate: np.ndarray
    nfe: np.ndarray
    status: np.ndarray
    backend: str


# ----------------------------------------------------------------------------------------------------------
# CPU twins: a prange over the trajectories, each the shared per-trajectory loop.


@njit(cache=True, parallel=True)
def _ode_ensemble_cpu(
    f_addr,
    A,
    c,
    btilde,
    P,
    order,
    t0,
    t1,
    Y0,
    Pm,
    rtol,
    atol,
    saveat,
    ctrl,
    adaptive,
    max_steps,
    Y_save,
    status,
    stats,
    t_end,
):
    N, n = Y0.shape
    s = A.shape[0]
    for i in prange(N):
        f = rhs_from(f_addr[0], f_addr[1])
        row = np.int64(i) if Pm.shape[0] > 1 else np.int64(0)
        st, nfe, acc, rej, te = ode_trajectory(
            f,
            A,
            c,
            btilde,
            P,
            order,
            t0,
            t1,
            Y0[i],
            Pm[row],
            rtol,
            atol,
            saveat,
            ctrl,
            adaptive,
            max_steps,
            np.empty(n),
            np.empty(n),
            np.empty((s, n)),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(s),
            Y_save[i],
        )
        status[i] = st
        stats[i, 0] = nfe
        stats[i, 1] = acc
        stats[i, 2] = rej
        t_end[i] = te


@njit(cache=True, parallel=True)
def _local_reg_ensemble_cpu(
    f_addr,
    vjp_addr,
    A,
    c,
    btilde,
    si,
    sj,
    order,
    t_reg,
    t1,
    Z,
    Pm,
    rtol,
    atol,
    w_error,
    w_stiff,
    want_grad,
    through_k1,
    grad_z,
    grad_p,
    out,
    nfe,
    status,
):
    N, n = Z.shape
    s = A.shape[0]
    n_p = Pm.shape[1]
    for i in prange(N):
        f = rhs_from(f_addr[0], f_addr[1])
        f_vjp = vjp_from(vjp_addr[0], vjp_addr[1])
        row = np.int64(i) if Pm.shape[0] > 1 else np.int64(0)
        st, R, E, S, h, ne = local_reg_trajectory(
            f,
            f_vjp,
            A,
            c,
            btilde,
            si,
            sj,
            order,
            t_reg[i],
            t1[i],
            Z[i],
            Pm[row],
            rtol,
            atol,
            w_error,
            w_stiff,
            want_grad,
            through_k1,
            np.empty((s, n)),
            np.empty((s, n)),
            np.empty((s, n)),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n_p),
            grad_z[i],
            grad_p[i],
        )
        status[i] = st
        out[i, 0] = R
        out[i, 1] = E
        out[i, 2] = S
        out[i, 3] = h
        nfe[i] = ne


@njit(cache=True, parallel=True)
def _sde_ensemble_cpu(
    f_addr,
    g_addr,
    M,
    V,
    delta,
    error_terms,
    order,
    t0,
    t1,
    X0,
    Pm,
    rtol,
    atol,
    saveat,
    stops,
    ctrl,
    adaptive,
    max_steps,
    stride,
    m,
    rng,
    cap1,
    cap2,
    X_save,
    status,
    stats,
    t_end,
):
    N, n = X0.shape
    s = V.shape[1]
    w = 2 + 2 * m
    for i in prange(N):
        f = rhs_from(f_addr[0], f_addr[1])
        g = rhs_from(g_addr[0], g_addr[1])
        row = np.int64(i) if Pm.shape[0] > 1 else np.int64(0)
        st, nfe, nge, acc, rej, te = sde_trajectory(
            f,
            g,
            M,
            V,
            delta,
            error_terms,
            order,
            t0,
            t1,
            X0[i],
            Pm[row],
            rtol,
            atol,
            saveat,
            stops,
            ctrl,
            adaptive,
            max_steps,
            stride,
            m,
            rng[i],
            np.empty(n),
            np.empty((s, n)),
            np.empty((s, n)),
            np.empty((s, n)),
            np.empty((s, n)),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(n),
            np.empty(m),
            np.empty(m),
            np.empty((cap1, w)),
            np.empty((cap2, w)),
            np.zeros(2, np.int64),
            np.empty(w),
            np.empty(w),
            np.empty(w),
            X_save[i],
        )
        status[i] = st
        stats[i, 0] = nfe
        stats[i, 1] = nge
        stats[i, 2] = acc
        stats[i, 3] = rej
        t_end[i] = te


# ----------------------------------------------------------------------------------------------------------
# Argument handling


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _states(name, x):
    a = check_array(name, x, ndim=2)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must have at least one trajectory and one state component, got shape {a.shape}")
    return a


def _params(p, N):
    """Parameters as (1, n_p) (shared) or (N, n_p) (one row per trajectory)."""
    if p is None:
        return np.zeros((1, 0))
    a = np.asarray(p, dtype=np.float64) if not isinstance(p, np.ndarray) else p
    if a.ndim == 1:
        return check_array("p", a).reshape(1, -1)
    a = check_array("p", a, ndim=2)
    if a.shape[0] not in (1, N):
        raise ValueError(
            f"p must be 1-D (shared by all trajectories) or have one row per trajectory ({N}, n_p), got shape {a.shape}"
        )
    return a


def _saveat(saveat, t0, t1):
    if saveat is None:
        return np.array([t1])
    return validate_saveat(saveat, t0, t1)


def _is_cuda_function(f):
    return type(f).__module__.startswith("numba.cuda") and hasattr(f, "py_func")


def _is_cuda_device_function(f):
    if not _is_cuda_function(f):
        return False
    opts = getattr(f, "targetoptions", None)
    return bool(opts.get("device")) if opts is not None else bool(getattr(f, "_device", False))


_njit_of_device: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cpu_function(f, kind, argname):
    """A FunctionHandle for the CPU twin: an @njit function or handle, or a CUDA device function recompiled
    from its Python source by @njit.  Plain Python callables are refused (object mode inside a prange)."""
    if isinstance(f, (FunctionHandle, CPUDispatcher)):
        return as_compiled(f, kind, argname)
    if _is_cuda_function(f):
        if not _is_cuda_device_function(f):
            raise TypeError(
                f"{argname} is a CUDA kernel; pass a device function (@cuda.jit(device=True)) or an @njit function"
            )
        disp = _njit_of_device.get(f)
        if disp is None:
            disp = _njit_of_device[f] = njit(f.py_func)
        return as_compiled(disp, kind, argname)
    raise TypeError(
        f"{argname} must be an @numba.njit function f(t, y, p, out) (or a CUDA device function) for an "
        f"ensemble; got {type(f).__name__} (plain Python functions are not run in parallel loops)"
    )


def _cuda_function(f, argname):
    """What the CUDA kernels call: a CUDA device function, or an @njit function (compiled for the device)."""
    if isinstance(f, FunctionHandle):
        return f.dispatcher
    if isinstance(f, CPUDispatcher):
        return f
    if _is_cuda_function(f):
        if not _is_cuda_device_function(f):
            raise TypeError(
                f"{argname} is a CUDA kernel (@cuda.jit without device=True); pass a device function "
                f"@cuda.jit(device=True) with the signature f(t, y, p, out)"
            )
        return f
    raise TypeError(
        f"{argname} must be a CUDA device function (@cuda.jit(device=True)) or an @numba.njit function "
        f"for backend='cuda'; got {type(f).__name__}"
    )


# ----------------------------------------------------------------------------------------------------------
# Public API


def solve_ode_ensemble(
    f,
    t_span,
    y0,
    p=None,
    method="tsit5",
    rtol=1e-3,
    atol=1e-6,
    saveat=None,
    dt=None,
    adaptive=None,
    dtmin=None,
    dtmax=None,
    max_steps=100_000,
    controller=None,
    backend="cpu",
) -> EnsembleSolution:
    """Solve y' = f(t, y, p) for every row of ``y0`` (N, n) with its own parameter row (``p`` (N, n_p)) or shared
    parameters (``p`` (n_p,)); trajectory i is ``solve_ode(f, t_span, y0[i], p[i], saveat=saveat, ...)``.

    ``saveat``: sorted output times (default: t1 only).  Other arguments as :func:`~lrnde_np.ode.solve_ode`.
    ``backend``: "cpu" (Numba prange over trajectories) or "cuda" (one trajectory per GPU thread).
    """
    backend = _check_backend(backend)
    tab = get_tableau(method)
    t0, t1 = validate_span(t_span)
    Y0 = _states("y0", y0)
    N, n = Y0.shape
    Pm = _params(p, N)
    rtol, atol_arr = check_tolerances(rtol, atol, n, "y0")
    ts = _saveat(saveat, t0, t1)
    if adaptive is None:
        adaptive = tab.adaptive
    if adaptive and not tab.adaptive:
        raise ValueError(f"method: {tab.name} has no error estimate; use adaptive=False with a fixed dt")
    if not adaptive and dt is None:
        raise ValueError(f"dt: fixed-step integration ({tab.name}) needs a step size dt")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps <= 0:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    ctrl = control_array(tab, t0, t1, dtmin, dtmax, dt, controller)

    Y_save = np.empty((N, ts.size, n))
    status = np.empty(N, np.int64)
    stats = np.empty((N, 3), np.int64)
    t_end = np.empty(N)
    if backend == "cpu":
        rhs = _checked(_cpu_function(f, "rhs", "f"), "rhs", "f", t0, Y0[0], Pm[0])
        _ode_ensemble_cpu(
            rhs.addresses,
            tab.A,
            tab.c,
            tab.btilde,
            tab.P,
            tab.order,
            t0,
            t1,
            Y0,
            Pm,
            rtol,
            atol_arr,
            ts,
            ctrl,
            bool(adaptive),
            int(max_steps),
            Y_save,
            status,
            stats,
            t_end,
        )
    else:
        dev = _cuda_function(f, "f")
        cuda_kernels().ode_ensemble(
            dev,
            tab,
            t0,
            t1,
            Y0,
            Pm,
            rtol,
            atol_arr,
            ts,
            ctrl,
            bool(adaptive),
            int(max_steps),
            Y_save,
            status,
            stats,
            t_end,
        )
    return EnsembleSolution(
        t=ts,
        y=Y_save,
        status=status,
        t_end=t_end,
        stats=dict(nfe=stats[:, 0], accepted=stats[:, 1], rejected=stats[:, 2]),
        backend=backend,
    )


def _rng_states(seed, seeds, N):
    """(N, 4) xoshiro256** states: path i from ``seeds[i]``, or from ``seed + i``; as ``rng_state(seed)``."""
    if (seed is None) == (seeds is None):
        raise ValueError("seed: give exactly one of seed (path i uses seed + i) or seeds (one per path)")
    if seeds is None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        s = np.arange(N, dtype=np.uint64) + np.uint64(seed)
    else:
        arr = np.asarray(seeds)
        if arr.shape != (N,) or arr.dtype.kind not in "iu":
            raise ValueError(
                f"seeds must be {N} non-negative integers (one per path), got shape {arr.shape}, dtype {arr.dtype}"
            )
        if arr.dtype.kind == "i" and np.any(arr < 0):
            raise ValueError("seeds must be non-negative")
        s = arr.astype(np.uint64)
    # splitmix64, vectorised (uint64 arithmetic wraps), exactly brownian.rng_state's expansion.
    out = np.empty((N, 4), np.uint64)
    x = s.copy()
    with np.errstate(over="ignore"):
        for k in range(4):
            x = x + np.uint64(0x9E3779B97F4A7C15)
            z = x.copy()
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            out[:, k] = z ^ (z >> np.uint64(31))
    return out


def solve_sde_ensemble(
    f,
    g,
    t_span,
    x0,
    p=None,
    method="sosri",
    rtol=1e-2,
    atol=1e-2,
    saveat=None,
    seed=None,
    seeds=None,
    noise="diagonal",
    dt=None,
    adaptive=None,
    max_steps=100_000,
    dtmin=None,
    dtmax=None,
    controller=None,
    stack_size=64,
    backend="cpu",
) -> EnsembleSolution:
    """Solve dX = f dt + g ⊙ dW for every row of ``x0`` (N, n); path i is
    ``solve_sde(f, g, t_span, x0[i], p[i], saveat=saveat, seed=seeds[i], ...)`` (``seed=s``: seeds s, s+1, …).

    ``stack_size``: rows of each RSwM3 stack per path (future increments; the anchors need len(saveat) + 1 of
    them); a path that overflows it stops with status 6 (STACK_FULL).  Other arguments as
    :func:`~lrnde_np.sde.solve_sde`; ``saveat`` defaults to t1 only.
    """
    backend = _check_backend(backend)
    tab = get_sde_tableau(method)
    t0, t1 = validate_span(t_span)
    if not t1 > t0:
        raise ValueError(f"t_span: SDEs are integrated forward in time, need t1 > t0, got {t_span!r}")
    X0 = _states("x0", x0)
    N, n = X0.shape
    Pm = _params(p, N)
    rtol, atol_arr = check_tolerances(rtol, atol, n, "x0")
    if noise not in NOISE_TYPES:
        raise ValueError(f"noise must be one of {NOISE_TYPES}, got {noise!r}")
    m = n if noise == "diagonal" else 1
    stride = 1 if noise == "diagonal" else 0
    ts = _saveat(saveat, t0, t1)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps <= 0:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if isinstance(stack_size, bool) or not isinstance(stack_size, (int, np.integer)) or stack_size < 2:
        raise ValueError(f"stack_size must be an integer >= 2, got {stack_size!r}")
    if adaptive is None:
        adaptive = tab.adaptive
    if adaptive and not tab.adaptive:
        raise ValueError(f"method: {tab.name} has no error estimate; use adaptive=False with a fixed dt")
    if not adaptive and dt is None:
        raise ValueError(f"dt: fixed-step integration ({tab.name}) needs a step size dt")
    rng = _rng_states(seed, seeds, N)
    ctrl = _sde_control_array(tab.controller_order, t1 - t0, dt, dtmin, dtmax, controller, t0, t1)
    M, V, delta, eterms = pack_tableau(tab)
    inner = ts[(ts > t0) & (ts < t1)]
    stops = np.ascontiguousarray(np.append(np.unique(inner), t1))
    cap1 = int(stack_size) + stops.size
    cap2 = int(stack_size)

    X_save = np.empty((N, ts.size, n))
    status = np.empty(N, np.int64)
    stats = np.empty((N, 4), np.int64)
    t_end = np.empty(N)
    # The kernel arguments after the two functions: the same for the CPU loop and the CUDA kernel.
    args = (
        M,
        V,
        delta,
        eterms,
        tab.order,
        t0,
        t1,
        X0,
        Pm,
        rtol,
        atol_arr,
        ts,
        stops,
        ctrl,
        bool(adaptive),
        int(max_steps),
        stride,
        m,
        rng,
        cap1,
        cap2,
        X_save,
        status,
        stats,
        t_end,
    )
    if backend == "cpu":
        fh = _checked(_cpu_function(f, "rhs", "f"), "rhs", "f", t0, X0[0], Pm[0])
        gh = _checked(_cpu_function(g, "rhs", "g"), "rhs", "g", t0, X0[0], Pm[0])
        _sde_ensemble_cpu(fh.addresses, gh.addresses, *args)
    else:
        cuda_kernels().sde_ensemble(_cuda_function(f, "f"), _cuda_function(g, "g"), *args)
    return EnsembleSolution(
        t=ts,
        y=X_save,
        status=status,
        t_end=t_end,
        stats=dict(nfe=stats[:, 0], nge=stats[:, 1], accepted=stats[:, 2], rejected=stats[:, 3]),
        backend=backend,
    )


def _times(name, x, N):
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(N, float(a))
    a = check_array(name, a)
    if a.shape != (N,):
        raise ValueError(f"{name} must be a number or have one entry per trajectory ({N},), got shape {a.shape}")
    return a


def local_regularizer_ensemble(
    f,
    f_vjp,
    t_reg,
    t1,
    z_reg,
    p,
    rtol,
    atol,
    heuristic="error",
    stiffness_weight=1.0,
    through_state=False,
    compute_grad=True,
    through_k1=False,
    backend="cpu",
) -> LocalRegEnsemble:
    """The local regularizer of every row of ``z_reg`` (N, n): row i is
    ``local_regularizer(f, f_vjp, t_reg[i], t1[i], z_reg[i], p[i], ...)`` (``t_reg``, ``t1``: numbers or (N,);
    ``p`` shared (n_p,) or (N, n_p)).  ``grad_p`` is (N, n_p) — with shared parameters still one gradient per
    trajectory, sum it for the batch.  ``through_k1`` / ``through_state`` as :func:`local_regularizer`.
    """
    backend = _check_backend(backend)
    Z = _states("z_reg", z_reg)
    N, n = Z.shape
    Pm = _params(p, N)
    t_reg = _times("t_reg", t_reg, N)
    t1 = _times("t1", t1, N)
    if np.any(t_reg == t1):
        raise ValueError("t_reg must differ from t1 (the regularizer's step runs on (t_reg, t1)) for every row")
    rtol, atol_arr = check_tolerances(rtol, atol, n, "z_reg")
    w_error, w_stiff = _heuristic_weights(heuristic, stiffness_weight)
    if compute_grad and f_vjp is None:
        raise ValueError("f_vjp is required to compute the regularizer's gradient (or pass compute_grad=False)")
    n_p = Pm.shape[1]
    si, sj = TSIT5.stiffness_pair
    through = bool(through_state or through_k1)
    grad_z = np.zeros((N, n))
    grad_p = np.zeros((N, n_p))
    out = np.empty((N, 4))
    nfe = np.empty(N, np.int64)
    status = np.empty(N, np.int64)
    if backend == "cpu":
        rhs = _checked(_cpu_function(f, "rhs", "f"), "rhs", "f", t_reg[0], Z[0], Pm[0])
        vjp_addr = (
            _checked(_cpu_function(f_vjp, "vjp", "f_vjp"), "vjp", "f_vjp", t_reg[0], Z[0], Pm[0]).addresses
            if compute_grad
            else (0, 0)
        )
        _local_reg_ensemble_cpu(
            rhs.addresses,
            vjp_addr,
            TSIT5.A,
            TSIT5.c,
            TSIT5.btilde,
            si,
            sj,
            TSIT5.order,
            t_reg,
            t1,
            Z,
            Pm,
            rtol,
            atol_arr,
            w_error,
            w_stiff,
            bool(compute_grad),
            through,
            grad_z,
            grad_p,
            out,
            nfe,
            status,
        )
    else:
        fd = _cuda_function(f, "f")
        vd = _cuda_function(f_vjp, "f_vjp") if compute_grad else None
        cuda_kernels().local_reg_ensemble(
            fd,
            vd,
            TSIT5,
            si,
            sj,
            t_reg,
            t1,
            Z,
            Pm,
            rtol,
            atol_arr,
            w_error,
            w_stiff,
            bool(compute_grad),
            through,
            grad_z,
            grad_p,
            out,
            nfe,
            status,
        )
    return LocalRegEnsemble(
        value=out[:, 0],
        grad_p=grad_p if compute_grad else None,
        grad_z=grad_z if (compute_grad and through_state) else None,
        dt=out[:, 3],
        error_estimate=out[:, 1],
        stiffness_estimate=out[:, 2],
        nfe=nfe,
        status=status,
        backend=backend,
    )
