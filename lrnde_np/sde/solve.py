"""``solve_sde``: adaptive SRI / fixed-step Euler–Maruyama for Itô SDEs with diagonal or scalar noise.

    dX = f(t, X; θ) dt + g(t, X; θ) ⊙ dW

``f`` and ``g`` have the RHS signature ``f(t, x, p, out)`` (``g`` writes the diagonal of the diffusion, one
entry per state component).  ``noise="diagonal"``: one independent Wiener process per component;
``noise="scalar"``: one Wiener process shared by all components.

The whole adaptive loop is one compiled function (:func:`sde_loop`) taking the addresses of f and g.  Steps
are clipped to the save times and the end of the span, so every saved point is the end of an accepted
step (no SDE interpolation is needed, and the discrete adjoint is exact).  The noise comes from RSwM3
(:mod:`lrnde_np.sde.brownian`); the accepted steps' (t, dt, ΔW, ΔZ) can be recorded and replayed exactly
with ``path=sol.path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .._jit import check_interrupt
from .._types import rhs_from
from ..ode.control import DT0, DTMAX, DTMIN, N_CONTROL, QOLDINIT, pi_defaults, pi_propose
from ..ode.loop import (
    DT_MIN,
    MAX_STEPS,
    NONFINITE,
    SIGNAL_CHECK_EVERY,
    STATUS_MESSAGES,
    STEP_STUCK,
    SUCCESS,
    _all_finite,
    _grow1,
    _grow2,
)
from ..ode.rhs import as_compiled, check_user_function
from ..ode.solve import (
    as_real,
    check_array,
    check_controller,
    check_max_steps,
    check_positive,
    check_tolerances,
    validate_saveat,
    validate_span,
)
from .brownian import SDEPath, grid_indices, rng_state, rswm_init, rswm_reject, rswm_setup
from .step import pack_tableau, sde_initial_step, sri_step, sri_workspace
from .tableaus import SRITableau, get_sde_tableau

NOISE_TYPES = ("diagonal", "scalar")


def sde_controller_defaults(order: float = 1.5) -> dict:
    """StochasticDiffEq's PI controller for SDEs (§4.8): β1 = 7/(10·order), β2 = 2/(5·order) (7/15, 4/15 for
    order 3/2), γ = 9/10, qmin = 1/5, qmax = 9/8, qoldinit = 1e-4."""
    return dict(pi_defaults(order), qmax=9.0 / 8.0)  # the ODE gains, with StochasticDiffEq's smaller qmax


@dataclass
class SDEStepRecords:
    """Per accepted step j: start time t[j], step dt[j], E_est[j] (0 for fixed-step Euler–Maruyama), the
    state x[j] at its start (x[-1] = final state), and its noise increments dW[j], dZ[j] (m each)."""

    t: np.ndarray
    dt: np.ndarray
    error_estimate: np.ndarray
    x: np.ndarray
    dW: np.ndarray
    dZ: np.ndarray

    def __len__(self):
        return self.dt.size

    @property
    def t_end(self) -> np.ndarray:
        return self.t + self.dt


@dataclass
class SDESolution:
    t: np.ndarray
    x: np.ndarray  # (len(t), n)
    status: int
    message: str
    stats: dict  # nfe (f calls), nge (g calls), accepted, rejected
    method: SRITableau
    t_span: tuple
    noise: str
    steps: SDEStepRecords | None = None
    save_step: np.ndarray | None = None  # index of the accepted step ending at each saved point (-1: x0)
    t_end: float = 0.0  # time reached (t1 on success)
    p: np.ndarray | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict, repr=False)

    @property
    def success(self) -> bool:
        return self.status == SUCCESS

    @property
    def nfe(self) -> int:
        return self.stats["nfe"]

    @property
    def path(self) -> SDEPath:
        """The accepted steps' grid and increments, to replay with ``solve_sde(..., path=sol.path)``."""
        if self.steps is None:
            raise ValueError("path: the steps were not recorded; solve with record_steps=True")
        grid = np.append(self.steps.t, self.t_end) if len(self.steps) else np.array([self.t_span[0]])
        return SDEPath(t=grid, dW=self.steps.dW, dZ=self.steps.dZ)

    def W(self) -> np.ndarray:
        """W at the end of every accepted step, W(t0) = 0 first ((n_steps+1, m); needs record_steps)."""
        return self.path.W()


@njit(cache=True)
def sde_loop(
    f_addr,
    g_addr,
    M,
    V,
    delta,
    error_terms,
    order,
    t0,
    t1,
    x0,
    p,
    rtol,
    atol,
    saveat,
    stops,
    ctrl,
    adaptive,
    max_steps,
    record,
    stride,
    m,
    rng,
    path_t,
    path_W,
    path_Z,
    use_path,
):
    """Integrate the SDE from t0 to t1 (t1 > t0).

    ``stops``: the sorted times > t0 every step is clipped to (the save times and t1); they are also the
    RSwM3 anchors.  ``saveat``: save times (empty: save x0 and every accepted step).  With ``use_path`` the
    steps and increments are read from ``path_t`` (N+1), ``path_W``, ``path_Z`` (N, m) instead.
    Returns (status, t_save, x_save, save_step, nfe, nge, accepted, rejected, t_end,
             step_t, step_dt, step_E, step_x, step_dW, step_dZ, n_steps).
    """
    f = rhs_from(f_addr[0], f_addr[1])
    g = rhs_from(g_addr[0], g_addr[1])
    s = V.shape[1]
    n = x0.size
    save_every = saveat.size == 0

    cap_save = 64 if save_every else saveat.size
    t_save = np.empty(cap_save)
    x_save = np.empty((cap_save, n))
    save_step = np.empty(cap_save, np.int64)
    n_save = 0
    i_save = 0
    cap = 64 if record else 0
    step_t = np.empty(cap)
    step_dt = np.empty(cap)
    step_E = np.empty(cap)
    step_x = np.empty((cap + 1 if record else 0, n))
    step_dW = np.empty((cap, m))
    step_dZ = np.empty((cap, m))

    x = x0.copy()
    H0, H1, F, G, x_new, err = sri_workspace(s, n)
    wa = np.empty(n)
    wb = np.empty(n)
    wc = np.empty(n)
    wd = np.empty(n)
    we = np.empty(n)
    dW = np.empty(m)
    dZ = np.empty(m)

    if save_every:
        t_save[0] = t0
        x_save[0] = x0
        save_step[0] = -1
        n_save = 1
    while i_save < saveat.size and saveat[i_save] <= t0:
        t_save[n_save] = t0
        x_save[n_save] = x0
        save_step[n_save] = -1
        n_save += 1
        i_save += 1

    status = SUCCESS
    nfe = 0
    nge = 0
    accepted = 0
    rejected = 0
    n_steps = 0
    span = t1 - t0
    dtmin = ctrl[DTMIN]
    dtmax = min(ctrl[DTMAX], span)
    if use_path:
        S1, S2, cnt, cur = rswm_init(stops[:0], t0, m, rng)
        h = 0.0
    else:
        S1, S2, cnt, cur = rswm_init(stops, t0, m, rng)
        if ctrl[DT0] > 0.0:
            h = min(ctrl[DT0], dtmax)
        elif span > 0.0:
            h, ef, eg = sde_initial_step(f, g, t0, x0, p, order, rtol, atol, dtmin, dtmax, wa, wb, wc, wd, we)
            nfe += ef
            nge += eg
        else:
            h = 0.0
    h_fixed = ctrl[DT0]
    errold = ctrl[QOLDINIT]
    i_stop = 0
    retry = False
    last_nonfinite = False
    t = t0
    t_new = t0
    n_path = path_t.size - 1 if use_path else 0

    while status == SUCCESS and t < t1:
        if (n_steps + rejected) % SIGNAL_CHECK_EVERY == SIGNAL_CHECK_EVERY - 1:
            check_interrupt()  # Ctrl-C: KeyboardInterrupt within milliseconds (see _jit.check_interrupt)
        if use_path:
            if n_steps >= n_path:
                break
            t_new = path_t[n_steps + 1]
            h = t_new - t
            for k in range(m):
                dW[k] = path_W[n_steps, k]
                dZ[k] = path_Z[n_steps, k]
        elif n_steps + rejected >= max_steps:  # rejected attempts count too: no setting loops forever
            status = MAX_STEPS
            break
        elif not retry:
            while i_stop < stops.size - 1 and stops[i_stop] <= t:
                i_stop += 1
            stop = stops[i_stop]
            # Clip to the next stop; a remainder shorter than 1e-6 of the step (or than dtmin) is absorbed.
            if t + h >= stop - 1e-6 * h or stop - (t + h) < dtmin:
                t_new = stop
            else:
                t_new = t + h
            h = t_new - t
            if h < dtmin and t_new != stop:
                status = DT_MIN
                break
            S1, S2 = rswm_setup(S1, S2, cnt, t, t_new, rng, cur)
            for k in range(m):
                dW[k] = cur[2 + k]
                dZ[k] = cur[2 + m + k]
        E, ef, eg = sri_step(
            f, g, M, V, delta, error_terms, t, h, x, p, dW, dZ, stride, rtol, atol, H0, H1, F, G, x_new, err
        )
        nfe += ef
        nge += eg
        finite = _all_finite(x_new)
        h_next = h_fixed
        if adaptive and not use_path:
            if not finite:
                E = np.nan
            ok, h_next, errold = pi_propose(E, h, errold, ctrl)
            h_next = min(h_next, dtmax)
            if not ok:
                rejected += 1
                last_nonfinite = not finite
                if h <= dtmin:
                    status = NONFINITE if last_nonfinite else DT_MIN
                    break
                t_new = t + max(h_next, dtmin)
                if not t_new - t < h:
                    # The controller cannot shrink the step (qmin = 1, say): the attempt would repeat forever.
                    status = STEP_STUCK
                    break
                h = t_new - t
                S1, S2 = rswm_reject(S1, S2, cnt, t_new, rng, cur)
                for k in range(m):
                    dW[k] = cur[2 + k]
                    dZ[k] = cur[2 + m + k]
                retry = True
                continue
        elif not finite:
            status = NONFINITE
            break
        retry = False
        last_nonfinite = False

        if record:
            if n_steps == step_t.size:
                c2 = 2 * n_steps
                step_t = _grow1(step_t, c2)
                step_dt = _grow1(step_dt, c2)
                step_E = _grow1(step_E, c2)
                step_dW = _grow2(step_dW, c2)
                step_dZ = _grow2(step_dZ, c2)
                step_x = _grow2(step_x, c2 + 1)
            step_t[n_steps] = t
            step_dt[n_steps] = h
            step_E[n_steps] = E
            step_x[n_steps] = x
            step_dW[n_steps] = dW
            step_dZ[n_steps] = dZ

        if save_every:
            if n_save == t_save.size:
                t_save = _grow1(t_save, 2 * n_save)
                x_save = _grow2(x_save, 2 * n_save)
                save_step = _grow1(save_step, 2 * n_save)
            t_save[n_save] = t_new
            x_save[n_save] = x_new
            save_step[n_save] = n_steps
            n_save += 1
        while i_save < saveat.size and saveat[i_save] <= t_new:
            t_save[n_save] = saveat[i_save]
            x_save[n_save] = x_new
            save_step[n_save] = n_steps
            n_save += 1
            i_save += 1

        for k in range(n):
            x[k] = x_new[k]
        t = t_new
        accepted += 1
        n_steps += 1
        h = h_next

    if record:
        step_x[n_steps] = x
        step_x = step_x[: n_steps + 1]
        step_t = step_t[:n_steps]
        step_dt = step_dt[:n_steps]
        step_E = step_E[:n_steps]
        step_dW = step_dW[:n_steps]
        step_dZ = step_dZ[:n_steps]
    return (
        status,
        t_save[:n_save],
        x_save[:n_save],
        save_step[:n_save],
        nfe,
        nge,
        accepted,
        rejected,
        t,
        step_t,
        step_dt,
        step_E,
        step_x,
        step_dW,
        step_dZ,
        n_steps,
    )


def _noise_state(seed, rng, needed):
    """The kernels' generator state from ``seed`` (int) or ``rng`` (NumPy Generator, consumed)."""
    if rng is not None and seed is not None:
        raise ValueError("seed: give either seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng_state(rng=rng) if needed else _UNUSED_STATE
    if isinstance(seed, np.random.Generator):
        return rng_state(rng=seed) if needed else _UNUSED_STATE
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer (or use rng=Generator), got {seed!r}")
    if not needed:
        return _UNUSED_STATE
    return rng_state(seed=seed)


_UNUSED_STATE = np.zeros(4, dtype=np.uint64)


def _control_array(order, span, dt, dtmin, dtmax, controller, t0, t1):
    c = sde_controller_defaults(order)
    ctrl = np.zeros(N_CONTROL)
    ctrl[:6] = check_controller({} if controller is None else controller, c)
    if dtmin is None:
        ctrl[DTMIN] = 16 * np.finfo(float).eps * max(abs(t0), abs(t1), 1.0)
    else:
        v = as_real("dtmin", dtmin)
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"dtmin must be a non-negative finite number, got {dtmin!r}")
        ctrl[DTMIN] = v
    ctrl[DTMAX] = span if dtmax is None else check_positive("dtmax", dtmax)
    ctrl[DT0] = 0.0 if dt is None else check_positive("dt", dt)
    return ctrl


def _validate_path(path, t0, t1, m, needs_dz):
    if isinstance(path, SDEPath):
        pt, pW, pZ = path.t, path.dW, path.dZ
    elif isinstance(path, dict):
        pt, pW, pZ = path.get("t"), path.get("dW"), path.get("dZ")
    elif isinstance(path, (tuple, list)) and len(path) in (2, 3):
        pt, pW, pZ = (tuple(path) + (None,))[:3]
    else:
        raise TypeError(f"path must be an SDEPath, a dict or a tuple (t, dW[, dZ]), got {type(path).__name__}")
    if pt is None or pW is None:
        raise ValueError("path must give the grid t and the increments dW")
    pt = check_array("path.t", pt)
    if pt.size < 2:
        raise ValueError("path.t must hold at least two grid times")
    if np.any(np.diff(pt) <= 0):
        raise ValueError("path.t must be strictly increasing")
    if pt[0] != t0 or abs(pt[-1] - t1) > 1e-12 * max(1.0, abs(t1)):
        raise ValueError(f"path.t must run from t_span[0] = {t0} to t_span[1] = {t1}, got [{pt[0]}, {pt[-1]}]")
    N = pt.size - 1

    def as_inc(name, a):
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 1 and m == 1:
            a = a.reshape(-1, 1)
        a = check_array(name, a, 2)
        if a.shape != (N, m):
            raise ValueError(f"{name} must have shape (len(path.t) - 1, {m}) = {(N, m)}, got {a.shape}")
        return a

    pW = as_inc("path.dW", pW)
    if pZ is None:
        if needs_dz:
            raise ValueError("path.dZ: SRI methods need the increments dZ of the second Wiener process")
        pZ = np.zeros((N, m))
    else:
        pZ = as_inc("path.dZ", pZ)
    return pt, pW, pZ


def solve_sde(
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
    rng=None,
    noise="diagonal",
    dt=None,
    adaptive=None,
    max_steps=100_000,
    record_steps=False,
    path=None,
    dtmin=None,
    dtmax=None,
    controller=None,
) -> SDESolution:
    """Solve the Itô SDE dX = f(t, X; p) dt + g(t, X; p) ⊙ dW on ``t_span`` = (t0, t1), t1 > t0.

    Parameters
    ----------
    f, g : Numba-compiled ``f(t, x, p, out)`` (drift) and ``g(t, x, p, out)`` (diagonal of the diffusion),
        or FunctionHandles; plain Python callables work through object mode (slow, with a warning).
    x0, p : initial state and parameters (1-D float arrays; p may be omitted).
    method : "sosri" (default), "sosri2", "sriw1" (adaptive, strong order 1.5) or "euler_maruyama" ("em",
        fixed step, strong order 0.5), or an :class:`~lrnde_np.sde.tableaus.SRITableau`.
    rtol, atol : tolerances of the error estimate (defaults 1e-2 as StochasticDiffEq); atol may be an array.
    saveat : sorted times at which to return the solution; steps are clipped to hit them exactly. Default:
        x0 and every accepted step.
    seed / rng : the noise: an integer seed, or a ``numpy.random.Generator`` (one draw, which advances it,
        seeds the solver's xoshiro256** generator); None: fresh OS entropy (not reproducible). Same seed, same
        anchors: the path at the save times and at t1 does not depend on the tolerance.
    noise : "diagonal" (one Wiener process per component) or "scalar" (one shared).
    dt : initial step (adaptive) or the fixed step (``adaptive=False`` or Euler–Maruyama).
    record_steps : keep t, dt, E_est, state and (ΔW, ΔZ) of every accepted step (``sol.steps``,
        ``sol.path``) — needed by the discrete adjoint and to replay the solve.
    path : replay a recorded :class:`~lrnde_np.sde.brownian.SDEPath` (``sol.path``) or solve on a given grid
        ``(t, dW[, dZ])``: exactly those steps and increments, no step-size control.
    dtmin, dtmax, max_steps, controller : step limits and PI settings (``beta1``, ``beta2``, ``gamma``,
        ``qmin``, ``qmax``, ``qoldinit``; defaults :func:`sde_controller_defaults`; validated as
        :func:`~lrnde_np.ode.solve_ode`'s).  ``max_steps`` counts rejected attempts too; a rejected step the
        controller cannot shrink ends with status ``STEP_STUCK``; Ctrl-C interrupts the compiled loop.

    The first calls of ``f`` and ``g`` for given sizes are checked as in :func:`~lrnde_np.ode.solve_ode`
    (a ``g`` that returns its values instead of writing ``out`` is a TypeError, not a wrong answer).
    """
    tab = get_sde_tableau(method)
    t0, t1 = validate_span(t_span)
    if not t1 > t0:
        raise ValueError(f"t_span: SDEs are integrated forward in time, need t1 > t0, got {t_span!r}")
    x0 = check_array("x0", x0)
    if x0.size == 0:
        raise ValueError("x0 must not be empty")
    p = np.zeros(0) if p is None else check_array("p", p)
    rtol, atol_arr = check_tolerances(rtol, atol, x0.size, "x0")
    if noise not in NOISE_TYPES:
        raise ValueError(f"noise must be one of {NOISE_TYPES}, got {noise!r}")
    m = x0.size if noise == "diagonal" else 1
    stride = 1 if noise == "diagonal" else 0
    ts = validate_saveat(saveat, t0, t1)
    max_steps = check_max_steps(max_steps)
    gen = _noise_state(seed, rng, path is None)

    use_path = path is not None
    if use_path:
        pt, pW, pZ = _validate_path(path, t0, t1, m, tab.stages > 1)
        if adaptive:
            raise ValueError("adaptive: a given path fixes the steps; use adaptive=None/False with path")
        adaptive = False
        if ts is not None:  # snap save times to the grid (they must lie on it)
            ts = np.ascontiguousarray(pt[grid_indices(pt, ts, "saveat")])
    else:
        pt, pW, pZ = np.zeros(1), np.zeros((0, m)), np.zeros((0, m))
        if adaptive is None:
            adaptive = tab.adaptive
        if adaptive and not tab.adaptive:
            raise ValueError(f"method: {tab.name} has no error estimate; use adaptive=False with a fixed dt")
        if not adaptive and dt is None:
            raise ValueError(f"dt: fixed-step integration ({tab.name}) needs a step size dt")
    ctrl = _control_array(tab.controller_order, t1 - t0, dt, dtmin, dtmax, controller, t0, t1)
    rhs_f = as_compiled(f, "rhs", "f")
    rhs_g = as_compiled(g, "rhs", "g")
    check_user_function(rhs_f, "rhs", "f", t0, x0, p)  # once per function and sizes (ode/rhs.py)
    check_user_function(rhs_g, "rhs", "g", t0, x0, p)
    M, V, delta, eterms = pack_tableau(tab)

    save = ts if ts is not None else np.zeros(0)
    inner = save[(save > t0) & (save < t1)] if save.size else save
    stops = np.ascontiguousarray(np.append(np.unique(inner), t1))
    record = bool(record_steps)
    out = sde_loop(
        rhs_f.addresses,
        rhs_g.addresses,
        M,
        V,
        delta,
        eterms,
        tab.order,
        t0,
        t1,
        x0,
        p,
        rtol,
        atol_arr,
        np.ascontiguousarray(save),
        stops,
        ctrl,
        bool(adaptive),
        int(max_steps),
        record,
        stride,
        m,
        gen,
        pt,
        pW,
        pZ,
        use_path,
    )
    (
        status,
        t_save,
        x_save,
        save_step,
        nfe,
        nge,
        accepted,
        rejected,
        t_end,
        step_t,
        step_dt,
        step_E,
        step_x,
        step_dW,
        step_dZ,
        n_steps,
    ) = out
    status = int(status)
    if use_path and status == SUCCESS and t_end < t1:
        status = MAX_STEPS  # cannot happen for a validated path; kept as a guard
    steps = SDEStepRecords(step_t, step_dt, step_E, step_x, step_dW, step_dZ) if record else None
    message = STATUS_MESSAGES[status]
    if status != SUCCESS:
        message += f" (reached t = {t_end:.6g})"
    return SDESolution(
        t=t_save,
        x=x_save,
        status=status,
        message=message,
        stats=dict(nfe=int(nfe), nge=int(nge), accepted=int(accepted), rejected=int(rejected)),
        method=tab,
        t_span=(t0, t1),
        noise=noise,
        steps=steps,
        save_step=save_step,
        t_end=float(t_end),
        p=p,
        options=dict(
            rtol=rtol, atol=atol_arr, adaptive=bool(adaptive), f=rhs_f, g=rhs_g, stride=stride, m=m, use_path=use_path
        ),
    )
