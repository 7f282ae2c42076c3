"""The compiled adaptive solve loop (one loop for every tableau and every right-hand side)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._jit import check_interrupt
from .._types import rhs_from
from .control import DT0, DTMAX, DTMIN, QOLDINIT, error_estimate, initial_step, pi_propose
from .rk import dense_eval, error_vector, rk_stages, stiffness_estimate

# Status codes (``Solution.status``).
# (4 is ode.events.TERMINATED, a terminal event; 6 the ensembles' STACK_FULL.)
SUCCESS, MAX_STEPS, DT_MIN, NONFINITE, STEP_STUCK = 0, 1, 2, 3, 5
STATUS_MESSAGES = {
    SUCCESS: "The solver successfully reached the end of the integration interval.",
    MAX_STEPS: "Stopped: the maximum number of steps (max_steps, accepted and rejected attempts together) was "
    "reached before the end of the span.",
    DT_MIN: "Stopped: the step size fell below the minimum (dtmin) while the error estimate stayed above tolerance.",
    NONFINITE: "Stopped: the state or its derivative became non-finite (NaN or Inf).",
    STEP_STUCK: "Stopped: a rejected step could not be made smaller (the controller's qmin/gamma give a shrink "
    "factor of 1 or more), so retrying it would loop forever.",
}

#: Step attempts between two checks for Ctrl-C (``_jit.check_interrupt``: it raises KeyboardInterrupt).
SIGNAL_CHECK_EVERY = 64

# Bits of the ``record`` argument.
RECORD_STEPS = 1  # t, dt, E_est, stiffness estimate of every accepted step
RECORD_STATES = 2  # the state at the start of every accepted step (plus the final state)
RECORD_STAGES = 4  # the stage values K of every accepted step (dense output, discrete adjoint)


@njit(cache=True)
def _grow1(a, cap):
    out = np.empty(cap, a.dtype)
    out[: a.size] = a
    return out


@njit(cache=True)
def _grow2(a, cap):
    out = np.empty((cap, a.shape[1]))
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def _grow3(a, cap):
    out = np.empty((cap, a.shape[1], a.shape[2]))
    out[: a.shape[0]] = a
    return out


@njit(cache=True, inline="always")
def _all_finite(x):
    for v in x:
        if not math.isfinite(v):
            return False
    return True


@njit(cache=True)
def solve_loop(
    f_addr,
    A,
    c,
    btilde,
    P,
    order,
    stiff_i,
    stiff_j,
    t0,
    t1,
    y0,
    p,
    rtol,
    atol,
    saveat,
    save_every_step,
    ctrl,
    adaptive,
    max_steps,
    record,
):
    """Integrate y' = f(t, y, p) from t0 to t1; ``f_addr`` is a ``FunctionHandle.addresses`` pair.

    Output is saved at the sorted times ``saveat`` (dense output inside the step that covers them) and, if
    ``save_every_step``, at t0 and every accepted step.  Returns a tuple

        (status, t_save, y_save, save_step, save_theta, nfe, accepted, rejected,
         step_t, step_dt, step_E, step_S, step_y, step_K, n_steps)

    ``save_step[k]`` is the index of the accepted step whose dense output gave save point k and
    ``save_theta[k]`` its θ (``save_step = -1`` means y0 itself); the adjoints use them.
    ``saveat`` and ``save_every_step`` are exclusive (the caller checks).
    """
    f = rhs_from(f_addr[0], f_addr[1])
    s = A.shape[0]
    n = y0.size
    tdir = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)

    n_saveat = saveat.size
    cap_save = 64 if save_every_step else n_saveat
    t_save = np.empty(cap_save)
    y_save = np.empty((cap_save, n))
    save_step = np.empty(cap_save, np.int64)
    save_theta = np.empty(cap_save)
    n_save = 0
    i_save = 0  # next saveat index

    rec_steps = (record & 1) != 0
    rec_states = (record & 2) != 0
    rec_stages = (record & 4) != 0
    cap = 64
    step_t = np.empty(cap if rec_steps else 0)
    step_dt = np.empty(cap if rec_steps else 0)
    step_E = np.empty(cap if rec_steps else 0)
    step_S = np.empty(cap if rec_steps else 0)
    step_y = np.empty((cap + 1 if rec_states else 0, n))
    step_K = np.empty((cap if rec_stages else 0, s, n))

    y = y0.copy()
    y_new = np.empty(n)
    K = np.empty((s, n))
    err = np.empty(n)
    work_a = np.empty(n)
    work_b = np.empty(n)
    w = np.empty(s)

    t = t0
    nfe = 0
    accepted = 0
    rejected = 0
    status = SUCCESS

    # Save points at t0 come straight from y0.
    if save_every_step:
        t_save[0] = t0
        y_save[0] = y0
        save_step[0] = -1
        save_theta[0] = 0.0
        n_save = 1
    while i_save < n_saveat and saveat[i_save] == t0:
        t_save[n_save] = t0
        y_save[n_save] = y0
        save_step[n_save] = -1
        save_theta[n_save] = 0.0
        n_save += 1
        i_save += 1

    f(t, y, p, K[0])
    nfe += 1
    if not _all_finite(K[0]):
        status = NONFINITE
        span = 0.0

    dtmin = ctrl[DTMIN]
    dtmax = min(ctrl[DTMAX], span)
    if ctrl[DT0] > 0.0:
        h = tdir * min(ctrl[DT0], dtmax)
    elif span > 0.0:
        h, extra = initial_step(f, t0, y0, p, K[0], tdir, order, rtol, atol, dtmin, dtmax, work_a, work_b)
        nfe += extra
    else:
        h = 0.0
    errold = ctrl[QOLDINIT]
    last_nonfinite = False
    n_steps = 0

    while status == SUCCESS and (t1 - t) * tdir > 0.0:
        # Every attempt counts toward max_steps, rejected ones too: no controller setting can loop forever.
        if n_steps + rejected >= max_steps:
            status = MAX_STEPS
            break
        if (n_steps + rejected) % SIGNAL_CHECK_EVERY == SIGNAL_CHECK_EVERY - 1:
            check_interrupt()  # Ctrl-C: KeyboardInterrupt within milliseconds (see _jit.check_interrupt)
        # Clip to the end of the span.  A remainder shorter than 1e-6 of the step (round-off in a sum of
        # fixed steps, say) is absorbed by stretching this step rather than taking a sliver of a step.
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
            E = error_estimate(err, y, y_new, rtol, atol) if finite else np.nan
            ok, h_next, errold = pi_propose(E, h, errold, ctrl)
            h_next = tdir * min(abs(h_next), dtmax)
        else:
            E = 0.0
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
            if not abs(h_retry) < abs(h):
                # The controller cannot shrink the step (qmin = 1, say): the same attempt would repeat forever.
                status = STEP_STUCK
                break
            h = h_retry
            continue
        last_nonfinite = False
        t_new = t1 if final else t + h

        # Record the step before the state moves on.
        if rec_steps:
            if n_steps == step_t.size:
                step_t = _grow1(step_t, 2 * n_steps)
                step_dt = _grow1(step_dt, 2 * n_steps)
                step_E = _grow1(step_E, 2 * n_steps)
                step_S = _grow1(step_S, 2 * n_steps)
            step_t[n_steps] = t
            step_dt[n_steps] = h
            step_E[n_steps] = E
            step_S[n_steps] = stiffness_estimate(A, stiff_i, stiff_j, h, y, K, work_a, work_b)
        if rec_states:
            if n_steps + 1 >= step_y.shape[0]:
                step_y = _grow2(step_y, 2 * step_y.shape[0])
            step_y[n_steps] = y
        if rec_stages:
            if n_steps == step_K.shape[0]:
                step_K = _grow3(step_K, 2 * n_steps)
            step_K[n_steps] = K

        # Save points inside (t, t_new].
        while i_save < n_saveat and (saveat[i_save] - t_new) * tdir <= 0.0:
            ts = saveat[i_save]
            if ts == t_new:
                theta = 1.0
                y_save[n_save] = y_new
            else:
                theta = (ts - t) / h
                dense_eval(P, theta, h, y, K, w, work_a)
                y_save[n_save] = work_a
            t_save[n_save] = ts
            save_step[n_save] = n_steps
            save_theta[n_save] = theta
            n_save += 1
            i_save += 1
        if save_every_step:
            if n_save == t_save.size:
                t_save = _grow1(t_save, 2 * n_save)
                y_save = _grow2(y_save, 2 * n_save)
                save_step = _grow1(save_step, 2 * n_save)
                save_theta = _grow1(save_theta, 2 * n_save)
            t_save[n_save] = t_new
            y_save[n_save] = y_new
            save_step[n_save] = n_steps
            save_theta[n_save] = 1.0
            n_save += 1

        # FSAL: the last stage value is f(t_new, y_new), the next k_1.
        for m in range(n):
            y[m] = y_new[m]
            K[0, m] = K[s - 1, m]
        t = t_new
        accepted += 1
        n_steps += 1
        h = h_next

    if rec_states:
        step_y[n_steps] = y
        step_y = step_y[: n_steps + 1]
    if rec_steps:
        step_t = step_t[:n_steps]
        step_dt = step_dt[:n_steps]
        step_E = step_E[:n_steps]
        step_S = step_S[:n_steps]
    if rec_stages:
        step_K = step_K[:n_steps]
    return (
        status,
        t_save[:n_save],
        y_save[:n_save],
        save_step[:n_save],
        save_theta[:n_save],
        nfe,
        accepted,
        rejected,
        step_t,
        step_dt,
        step_E,
        step_S,
        step_y,
        step_K,
        n_steps,
    )
