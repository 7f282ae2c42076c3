"""One trajectory of an ensemble: the solver loops as allocation-free functions that both backends compile.

Each function here integrates *one* trajectory with every work array handed in, calls only the library's own
step, controller and noise kernels (``ode/rk.py``, ``ode/control.py``, ``sde/step.py``, ``sde/brownian.py``)
and allocates nothing, so that the same source is compiled twice:

* by ``@njit`` for the CPU ensemble (:mod:`lrnde_np.ensemble`, a ``prange`` over trajectories, the right-hand
  side a first-class function value rebuilt from its addresses), and
* by ``numba.cuda`` as device functions (:mod:`lrnde_np.cuda.kernels`, one trajectory per GPU thread, the work
  arrays in ``cuda.local.array``; numba-cuda recompiles any ``@njit`` function a kernel calls for the device,
  with the user's ``@cuda.jit(device=True)`` right-hand side passed in as an argument).

What is shared and what is not.  The arithmetic of a step — stages, error vector and norm, PI controller,
initial-step rule, dense output, the step VJP, the SRI stages, the xoshiro256** generator and the Brownian
bridge — is the library's, called, never copied.  What this module adds is the *control flow* of two loops:
``ode/loop.py::solve_loop`` (saving at given times; no step records; no Ctrl-C checks, which a GPU thread
cannot make — every trajectory's work is bounded by ``max_steps`` attempts) and ``sde/solve.py::sde_loop`` (no
path replay, no records), and RSwM3's stack pushes on fixed-size stacks: the CPU loops grow their arrays with
``np.empty``, which has no device equivalent.  ``tests/test_ensemble.py`` pins every trajectory to
``solve_ode``/``solve_sde``/``local_regularizer`` (values, step counts, statuses), so any change to those
loops that is not mirrored here fails a test.

This module imports ``numba`` only, never ``numba.cuda``.
"""

from __future__ import annotations

import math

from numba import njit

from ..ode.control import DT0, DTMAX, DTMIN, QOLDINIT, error_estimate, error_estimate_vjp, initial_step, pi_propose
from ..ode.loop import DT_MIN, MAX_STEPS, NONFINITE, STATUS_MESSAGES, STEP_STUCK, SUCCESS, _all_finite
from ..ode.rk import dense_eval, error_vector, rk_stages, rk_step_vjp, stiffness_estimate, stiffness_estimate_vjp
from ..sde.brownian import _split, next_normal
from ..sde.step import sde_initial_step, sri_step

#: Status of an SDE path whose RSwM3 stack (fixed size per trajectory) overflowed; the path stops there.
#: (The one-trajectory solvers' codes are ``ode.loop.STATUS_MESSAGES``; this one is the ensembles' own.)
STACK_FULL = 6
assert STACK_FULL not in STATUS_MESSAGES, "ensemble status code STACK_FULL collides with a solver status"
STACK_FULL_MESSAGE = (
    "Stopped: the RSwM3 stack of future Brownian increments (fixed size per trajectory in an "
    "ensemble) is full; pass a larger stack_size."
)

_EPS = 2.220446049250313e-16


# ----------------------------------------------------------------------------------------------------------
# ODE


@njit(cache=True)
def ode_trajectory(
    f,
    A,
    c,
    btilde,
    P,
    order,
    t0,
    t1,
    y0,
    p,
    rtol,
    atol,
    saveat,
    ctrl,
    adaptive,
    max_steps,
    y,
    y_new,
    K,
    err,
    work_a,
    work_b,
    w,
    y_save,
):
    """Integrate one trajectory as ``solve_loop`` does with ``saveat`` given and nothing recorded.

    Work arrays: ``y``, ``y_new``, ``err``, ``work_a``, ``work_b`` (n), ``K`` (s, n), ``w`` (s).  Output:
    ``y_save`` (len(saveat), n); rows the solve did not reach are NaN.
    Returns (status, nfe, accepted, rejected, t reached).
    """
    s = A.shape[0]
    n = y0.size
    n_saveat = saveat.size
    tdir = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    for m in range(n):
        y[m] = y0[m]
    for k in range(n_saveat):
        for m in range(n):
            y_save[k, m] = math.nan
    i_save = 0
    while i_save < n_saveat and saveat[i_save] == t0:
        for m in range(n):
            y_save[i_save, m] = y0[m]
        i_save += 1

    t = t0
    nfe = 0
    accepted = 0
    rejected = 0
    status = SUCCESS
    f(t, y, p, K[0])
    nfe += 1
    if not _all_finite(K[0]):
        status = NONFINITE
        span = 0.0

    dtmin = ctrl[DTMIN]
    dtmax = min(ctrl[DTMAX], span)
    h = 0.0
    if ctrl[DT0] > 0.0:
        h = tdir * min(ctrl[DT0], dtmax)
    elif span > 0.0:
        h, extra = initial_step(f, t0, y0, p, K[0], tdir, order, rtol, atol, dtmin, dtmax, work_a, work_b)
        nfe += extra
    errold = ctrl[QOLDINIT]
    last_nonfinite = False
    n_steps = 0

    while status == SUCCESS and (t1 - t) * tdir > 0.0:
        if n_steps + rejected >= max_steps:  # every attempt counts, rejected ones too
            status = MAX_STEPS
            break
        final = False
        if (t + h - t1) * tdir >= -1e-6 * abs(h) or abs(t1 - (t + h)) < dtmin:
            h = t1 - t
            final = True
        if abs(h) < dtmin and not final:
            status = NONFINITE if last_nonfinite else DT_MIN
            break
        rk_stages(f, A, c, t, h, y, p, K, y_new)
        nfe += s - 1
        finite = _all_finite(y_new) and _all_finite(K[s - 1])
        if adaptive:
            error_vector(btilde, h, K, err)
            E = error_estimate(err, y, y_new, rtol, atol) if finite else math.nan
            ok, h_next, errold = pi_propose(E, h, errold, ctrl)
            h_next = tdir * min(abs(h_next), dtmax)
        else:
            ok = finite
            h_next = h
            if not finite:
                status = NONFINITE
                break
        if not ok:
            rejected += 1
            last_nonfinite = not finite
            if abs(h) <= dtmin:
                status = NONFINITE if last_nonfinite else DT_MIN
                break
            h_retry = tdir * max(abs(h_next), dtmin) if abs(h_next) > 0.0 else h * 0.2
            if not abs(h_retry) < abs(h):  # the controller cannot shrink the step: it would repeat forever
                status = STEP_STUCK
                break
            h = h_retry
            continue
        last_nonfinite = False
        t_new = t1 if final else t + h

        while i_save < n_saveat and (saveat[i_save] - t_new) * tdir <= 0.0:
            ts = saveat[i_save]
            if ts == t_new:
                for m in range(n):
                    y_save[i_save, m] = y_new[m]
            else:
                dense_eval(P, (ts - t) / h, h, y, K, w, work_a)
                for m in range(n):
                    y_save[i_save, m] = work_a[m]
            i_save += 1

        for m in range(n):
            y[m] = y_new[m]
            K[0, m] = K[s - 1, m]
        t = t_new
        accepted += 1
        n_steps += 1
        h = h_next
    return status, nfe, accepted, rejected, t


# ----------------------------------------------------------------------------------------------------------
# Local regularizer


@njit(cache=True)
def local_reg_trajectory(
    f,
    f_vjp,
    A,
    c,
    btilde,
    si,
    sj,
    order,
    t_reg,
    t1,
    z,
    p,
    rtol,
    atol,
    w_error,
    w_stiff,
    want_grad,
    through_k1,
    K,
    K_bar,
    Y_bar,
    y_new,
    err,
    err_bar,
    y_new_bar,
    work_i,
    work_j,
    work_y,
    work_a,
    work_gy,
    work_gp,
    grad_z,
    grad_p,
):
    """The local regularizer of one trajectory, as ``regularize.local.local_regularizer``.

    k1 = f(t_reg, z), dt from the initial-step rule on (t_reg, t1), one step of the tableau (Tsit5) from z:
    R = w_error·E_est·|dt| + w_stiff·S_est.  With ``want_grad`` the gradient is pulled back by ``rk_step_vjp``
    (``through_k1``: through k1 = f(t_reg, z) too) into ``grad_p`` and ``grad_z`` (overwritten).
    Work arrays: K, K_bar, Y_bar (s, n); y_new, err, err_bar, y_new_bar, work_i, work_j, work_y, work_a,
    work_gy (n); work_gp (len(p)).  Returns (status, R, E_est, S_est, dt, nfe); status NONFINITE (and R = NaN)
    when k1 is not finite (where ``local_regularizer`` raises).
    """
    s = A.shape[0]
    n = z.size
    f(t_reg, z, p, K[0])
    if not _all_finite(K[0]):
        return NONFINITE, math.nan, math.nan, math.nan, 0.0, 1
    tdir = 1.0 if t1 >= t_reg else -1.0
    dtmin = 16.0 * _EPS * max(abs(t_reg), abs(t1), 1.0)
    h, extra = initial_step(f, t_reg, z, p, K[0], tdir, order, rtol, atol, dtmin, abs(t1 - t_reg), work_i, work_j)
    nfe = 1 + extra + s - 1
    rk_stages(f, A, c, t_reg, h, z, p, K, y_new)
    error_vector(btilde, h, K, err)
    E = error_estimate(err, z, y_new, rtol, atol)
    S = stiffness_estimate(A, si, sj, h, z, K, work_i, work_j)
    R = w_error * E * abs(h) + w_stiff * S
    if not want_grad:
        return SUCCESS, R, E, S, h, nfe
    for i in range(s):
        for m in range(n):
            K_bar[i, m] = 0.0
            Y_bar[i, m] = 0.0
    for m in range(n):
        err_bar[m] = 0.0
        y_new_bar[m] = 0.0
        grad_z[m] = 0.0
    for m in range(p.size):
        grad_p[m] = 0.0
    error_estimate_vjp(w_error * abs(h), E, err, z, y_new, rtol, atol, err_bar, grad_z, y_new_bar)
    for i in range(s):
        for m in range(n):
            K_bar[i, m] = h * btilde[i] * err_bar[m]
    for m in range(n):
        Y_bar[s - 1, m] = y_new_bar[m]
    stiffness_estimate_vjp(w_stiff, A, si, sj, h, z, K, work_i, work_j, K_bar, Y_bar)
    rk_step_vjp(
        f_vjp, A, c, t_reg, h, z, p, K, K_bar, Y_bar, grad_z, grad_p, through_k1, work_y, work_a, work_gy, work_gp
    )
    return SUCCESS, R, E, S, h, nfe


# ----------------------------------------------------------------------------------------------------------
# SDE: RSwM3 on fixed-size stacks


@njit(cache=True, inline="always")
def _push(S, cnt, k, row):
    """Push ``row`` on stack k (0: S1, 1: S2); False (nothing pushed) when the stack is full."""
    if cnt[k] == S.shape[0]:
        return False
    for j in range(row.size):
        S[cnt[k], j] = row[j]
    cnt[k] += 1
    return True


@njit(cache=True)
def rswm_init_fixed(stops, t0, rng, S1, cnt, row):
    """``brownian.rswm_init`` on the given stack: the path at the anchor times ``stops``, drawn forward in time,
    pushed so that the nearest is on top.  Returns False when S1 cannot hold the anchors."""
    w = S1.shape[1]
    n_a = stops.size
    cnt[0] = 0
    cnt[1] = 0
    if n_a > S1.shape[0]:
        return False
    prev = t0
    for a in range(n_a):  # row a goes to S1[n_a - 1 - a]: the same stack as pushing rows n_a-1 … 0
        r = n_a - 1 - a
        S1[r, 0] = prev
        S1[r, 1] = stops[a]
        sd = math.sqrt(max(stops[a] - prev, 0.0))
        for k in range(2, w):
            S1[r, k] = sd * next_normal(rng)
        prev = stops[a]
    for r in range(n_a):  # rswm_init skips empty intervals
        if S1[r, 1] > S1[r, 0]:
            for k in range(w):
                row[k] = S1[r, k]
            _push(S1, cnt, 0, row)
    return True


@njit(cache=True)
def rswm_setup_fixed(S1, S2, cnt, t, t_new, rng, cur, piece, rest):
    """``brownian.rswm_setup`` on fixed stacks (work rows ``piece``, ``rest``); False when S2 overflows."""
    w = cur.size
    cnt[1] = 0
    for k in range(w):
        cur[k] = 0.0
    pos = t
    while cnt[0] > 0 and pos < t_new:
        top = S1[cnt[0] - 1]
        if top[1] <= t_new:
            for k in range(w):
                piece[k] = top[k]
            cnt[0] -= 1
        else:
            _split(top, t_new, rng, piece, rest)
            cnt[0] -= 1
            _push(S1, cnt, 0, rest)  # into the slot just freed
        if not _push(S2, cnt, 1, piece):
            return False
        for k in range(2, w):
            cur[k] += piece[k]
        pos = piece[1]
    if pos < t_new:
        sd = math.sqrt(t_new - pos)
        piece[0] = pos
        piece[1] = t_new
        for k in range(2, w):
            piece[k] = sd * next_normal(rng)
        if not _push(S2, cnt, 1, piece):
            return False
        for k in range(2, w):
            cur[k] += piece[k]
    cur[0] = t
    cur[1] = t_new
    return True


@njit(cache=True)
def rswm_reject_fixed(S1, S2, cnt, t_new, rng, cur, piece, rest):
    """``brownian.rswm_reject`` on fixed stacks; False when S1 overflows."""
    w = cur.size
    while cnt[1] > 0:
        top = S2[cnt[1] - 1]
        if top[0] >= t_new:
            for k in range(w):
                piece[k] = top[k]
            cnt[1] -= 1
            if not _push(S1, cnt, 0, piece):
                return False
        elif top[1] > t_new:
            _split(top, t_new, rng, piece, rest)
            cnt[1] -= 1
            if not _push(S1, cnt, 0, rest):
                return False
            _push(S2, cnt, 1, piece)  # into the slot just freed
            break
        else:
            break
    for k in range(2, w):
        cur[k] = 0.0
    for r in range(cnt[1]):
        for k in range(2, w):
            cur[k] += S2[r, k]
    cur[1] = t_new
    return True


@njit(cache=True)
def sde_trajectory(
    f,
    g,
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
    stride,
    m,
    rng,
    x,
    H0,
    H1,
    F,
    G,
    x_new,
    err,
    wa,
    wb,
    wc,
    wd,
    we,
    dW,
    dZ,
    S1,
    S2,
    cnt,
    cur,
    piece,
    rest,
    x_save,
):
    """One path as ``sde_loop`` integrates it with ``saveat`` given (no records, no path replay).

    ``rng`` is this path's xoshiro256** state (``brownian.rng_state(seed)``), advanced in place; ``stops`` the
    sorted anchors (inner save times and t1).  Work: x, x_new, err, wa … we (n); H0, H1, F, G (s, n); dW, dZ (m);
    S1, S2 (capacity, 2 + 2m); cnt (2, int64); cur, piece, rest (2 + 2m).  Output ``x_save`` (len(saveat), n),
    NaN where not reached.  Returns (status, nfe, nge, accepted, rejected, t reached).
    """
    n = x0.size
    for k in range(n):
        x[k] = x0[k]
    for i in range(saveat.size):
        for k in range(n):
            x_save[i, k] = math.nan
    i_save = 0
    while i_save < saveat.size and saveat[i_save] <= t0:
        for k in range(n):
            x_save[i_save, k] = x0[k]
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
    if not rswm_init_fixed(stops, t0, rng, S1, cnt, piece):
        status = STACK_FULL
    h = 0.0
    if ctrl[DT0] > 0.0:
        h = min(ctrl[DT0], dtmax)
    elif span > 0.0:
        h, ef, eg = sde_initial_step(f, g, t0, x0, p, order, rtol, atol, dtmin, dtmax, wa, wb, wc, wd, we)
        nfe += ef
        nge += eg
    h_fixed = ctrl[DT0]
    errold = ctrl[QOLDINIT]
    i_stop = 0
    retry = False
    last_nonfinite = False
    t = t0
    t_new = t0

    while status == SUCCESS and t < t1:
        if n_steps + rejected >= max_steps:  # every attempt counts, rejected ones too
            status = MAX_STEPS
            break
        elif not retry:
            while i_stop < stops.size - 1 and stops[i_stop] <= t:
                i_stop += 1
            stop = stops[i_stop]
            if t + h >= stop - 1e-6 * h or stop - (t + h) < dtmin:
                t_new = stop
            else:
                t_new = t + h
            h = t_new - t
            if h < dtmin and t_new != stop:
                status = DT_MIN
                break
            if not rswm_setup_fixed(S1, S2, cnt, t, t_new, rng, cur, piece, rest):
                status = STACK_FULL
                break
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
        if adaptive:
            if not finite:
                E = math.nan
            ok, h_next, errold = pi_propose(E, h, errold, ctrl)
            h_next = min(h_next, dtmax)
            if not ok:
                rejected += 1
                last_nonfinite = not finite
                if h <= dtmin:
                    status = NONFINITE if last_nonfinite else DT_MIN
                    break
                t_new = t + max(h_next, dtmin)
                if not t_new - t < h:  # the controller cannot shrink the step: it would repeat forever
                    status = STEP_STUCK
                    break
                h = t_new - t
                if not rswm_reject_fixed(S1, S2, cnt, t_new, rng, cur, piece, rest):
                    status = STACK_FULL
                    break
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
        while i_save < saveat.size and saveat[i_save] <= t_new:
            for k in range(n):
                x_save[i_save, k] = x_new[k]
            i_save += 1
        for k in range(n):
            x[k] = x_new[k]
        t = t_new
        accepted += 1
        n_steps += 1
        h = h_next
    return status, nfe, nge, accepted, rejected, t
