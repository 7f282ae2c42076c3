"""Continuous adjoints ("optimize-then-discretize"): backsolve, interpolating and quadrature.

All three integrate the adjoint equations of Chen et al. (2018) backwards in time with the same compiled
solve loop as the forward problem; only the augmented right-hand side differs.  For a loss on the states at
save times t_k, with a(t) = dL/dz(t)::

    da/dt   = -a^T ∂f/∂z(t, z(t), θ)         a jumps by dL/dz(t_k) at every save time
    da_p/dt = -a^T ∂f/∂θ                      a_p(t_end) = 0,   dL/dθ = a_p(t0),   dL/dz0 = a(t0)

* **backsolve** (Chen et al., Algorithm 1): the augmented state [z, a, a_p] — z is re-solved backwards
  alongside the adjoint.  O(1) memory in the number of forward steps; z drifts from the forward
  trajectory when the backward problem is unstable (``checkpoints=True`` resets z to the saved forward
  value at every save time).
* **interpolating**: state [a, a_p]; z(t) is read from the forward solve's dense output (so the forward
  solve must record its states and stages).  No backward re-solve of z.
* **quadrature**: first a alone (state [a], z interpolated, a recorded with its own dense output), then
  dL/dθ = Σ ∫ a^T ∂f/∂θ dt by Gauss–Legendre quadrature over every backward step.  The step-size control
  then sees only the n adjoint channels — the cheapest when θ is large.

The augmented right-hand sides are ordinary ``f(t, y, ctx, out)`` functions whose ``ctx`` vector carries the
inner functions' addresses (``handle_as_floats``) and the data they need, so the one cached solve loop serves
them all.  ``seminorm=True`` leaves the parameter channels a_p out of the step-size norm (Kidger et al. 2021):
their error is not controlled, which is safe because nothing feeds back from a_p.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._jit import FunctionHandle
from .._types import RHS_SIG, handle_as_floats, rhs_at, value_vjp_at, vjp_at, vjp_from
from ..ode.loop import STATUS_MESSAGES, SUCCESS, solve_loop
from ..ode.rhs import as_compiled, check_user_function
from ..ode.rk import dense_eval
from ..ode.solve import check_max_steps, check_positive, control_array
from ..tableaus import get_tableau
from .discrete import AdjointResult, _cotangent_rows, checked_vjp, require_recorded


class AdjointSolveFailed(RuntimeError):
    """The backward (adjoint) solve stopped before reaching t0; the message says why."""


# ---------------------------------------------------------------------------------------------------------
# Augmented right-hand sides.  ctx layouts are documented at the packing functions below.


@njit(cache=True)
def backsolve_rhs(t, Y, ctx, out):
    """[z, a, a_p]' = [f, -a^T f_z, -a^T f_θ];  ctx = [f (2), f_vjp (2), n, n_p, θ...]."""
    f = rhs_at(ctx, 0)
    f_vjp = vjp_at(ctx, 2)
    n = int(ctx[4])
    p = ctx[6:]
    z = Y[:n]
    f(t, z, p, out[:n])
    f_vjp(t, z, p, Y[n : 2 * n], out[n : 2 * n], out[2 * n :])
    for m in range(n, out.size):
        out[m] = -out[m]


@njit(cache=True)
def backsolve_fused_rhs(t, Y, ctx, out):
    """As :func:`backsolve_rhs` with one fused value-and-VJP call; ctx = [f_value_vjp (2), 0, 0, n, n_p, θ...]."""
    f_value_vjp = value_vjp_at(ctx, 0)
    n = int(ctx[4])
    p = ctx[6:]
    f_value_vjp(t, Y[:n], p, Y[n : 2 * n], out[:n], out[n : 2 * n], out[2 * n :])
    for m in range(n, out.size):
        out[m] = -out[m]


@njit(cache=True)
def _locate(step_t, tdir, t):
    """Index of the forward step covering t: the last j with tdir·step_t[j] ≤ tdir·t (clamped)."""
    lo = 0
    hi = step_t.size - 1
    if tdir * t <= tdir * step_t[0]:
        return 0
    if tdir * t >= tdir * step_t[hi]:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tdir * step_t[mid] <= tdir * t:
            lo = mid
        else:
            hi = mid
    return lo


@njit(cache=True)
def _interpolated_state(t, ctx, out):
    """z(t) from the forward dense output stored in ctx (see ``_interp_context``)."""
    n = int(ctx[4])
    n_p = int(ctx[5])
    n_steps = int(ctx[6])
    s = int(ctx[7])
    deg = int(ctx[8])
    tdir = ctx[9]
    o = 16 + n_p
    step_t = ctx[o : o + n_steps]
    o += n_steps
    step_dt = ctx[o : o + n_steps]
    o += n_steps
    step_y = ctx[o : o + n_steps * n].reshape((n_steps, n))
    o += n_steps * n
    step_K = ctx[o : o + n_steps * s * n].reshape((n_steps, s, n))
    o += n_steps * s * n
    P = ctx[o : o + s * deg].reshape((s, deg))
    o += s * deg
    w = ctx[o : o + s]
    j = _locate(step_t, tdir, t)
    h = step_dt[j]
    theta = (t - step_t[j]) / h
    dense_eval(P, theta, h, step_y[j], step_K[j], w, out)


@njit(cache=True)
def interpolating_rhs(t, Y, ctx, out):
    """[a, a_p]' = [-a^T f_z, -a^T f_θ] at z(t) interpolated; with ctx[10] == 0 the state is [a] only."""
    f_vjp = vjp_at(ctx, 2)
    n = int(ctx[4])
    n_p = int(ctx[5])
    with_params = ctx[10] != 0.0
    p = ctx[16 : 16 + n_p]
    z = ctx[ctx.size - n - n_p : ctx.size - n_p]
    _interpolated_state(t, ctx, z)
    if with_params:
        f_vjp(t, z, p, Y[:n], out[:n], out[n:])
    else:
        f_vjp(t, z, p, Y[:n], out[:n], ctx[ctx.size - n_p :])
    for m in range(out.size):
        out[m] = -out[m]


@njit(cache=True)
def quadrature_sweep(vjp_addr, ctx, P_adj, a_t, a_dt, a_y, a_K, nodes, weights, n_p):
    """Σ over the backward steps of -h Σ_g w_g a(t_g)^T ∂f/∂θ(t_g, z(t_g)) (Gauss–Legendre on [0, 1]).

    The backward steps run from t to t + h with h of the backward direction, so ∫_{t+h}^{t} = -h ∫_0^1.
    """
    f_vjp = vjp_from(vjp_addr[0], vjp_addr[1])
    n = a_y.shape[1]
    s = a_K.shape[1]
    p = ctx[16 : 16 + n_p]
    z = np.empty(n)
    a = np.empty(n)
    w = np.empty(s)
    gy = np.empty(n)
    gp = np.empty(n_p)
    total = np.zeros(n_p)
    n_vjp = 0
    for j in range(a_dt.size):
        h = a_dt[j]
        for g in range(nodes.size):
            tg = a_t[j] + nodes[g] * h
            dense_eval(P_adj, nodes[g], h, a_y[j], a_K[j], w, a)
            _interpolated_state(tg, ctx, z)
            f_vjp(tg, z, p, a, gy, gp)
            n_vjp += 1
            for m in range(n_p):
                total[m] -= h * weights[g] * gp[m]
    return total, n_vjp


_HANDLES = {}


def _handle(name):
    """The augmented RHS as a FunctionHandle (compiled once per process; machine code from the disk cache)."""
    if name not in _HANDLES:
        fn = {"backsolve": backsolve_rhs, "backsolve_fused": backsolve_fused_rhs, "interpolating": interpolating_rhs}[
            name
        ]
        fn.compile(RHS_SIG.args)
        _HANDLES[name] = FunctionHandle(fn, RHS_SIG)
    return _HANDLES[name]


# ---------------------------------------------------------------------------------------------------------
# Context vectors


def _backsolve_context(f, f_vjp, n, p):
    return np.concatenate([handle_as_floats(f), handle_as_floats(f_vjp), [n, p.size], p])


def _interp_context(f_vjp, sol, with_params):
    """[f_vjp at 2..3, n, n_p, n_steps, s, deg, tdir, with_params, 0 ×5, θ, step_t, step_dt, step_y,
    step_K, P, w (s), z (n), scratch (n_p)] — the last three are work space the RHS writes into."""
    steps = sol.steps
    n = steps.y.shape[1]
    n_steps = len(steps)
    tab = sol.method
    s, deg = tab.P.shape
    t0, t1 = sol.t_span
    head = np.zeros(16)
    head[2:4] = handle_as_floats(f_vjp)
    head[4:11] = [n, sol.p.size, n_steps, s, deg, 1.0 if t1 >= t0 else -1.0, 1.0 if with_params else 0.0]
    return np.concatenate(
        [
            head,
            sol.p,
            steps.t,
            steps.dt,
            steps.y[:n_steps].ravel(),
            steps.K.ravel(),
            tab.P.ravel(),
            np.zeros(s),
            np.zeros(n),
            np.zeros(sol.p.size),
        ]
    )


# ---------------------------------------------------------------------------------------------------------
# The backward sweep over save times


def _tolerances(rtol, atol, n_controlled, n_total, seminorm):
    """Per-channel atol and a scalar rtol; with the seminorm, the uncontrolled channels get atol = inf and
    the controlled ones are rescaled by sqrt(n_controlled/n_total) so that the RMS over all channels equals
    the RMS over the controlled ones (exactly the seminorm, with no change to the compiled norm)."""
    rtol = check_positive("rtol", rtol)
    atol = check_positive("atol", atol)
    atol_arr = np.full(n_total, atol)
    if seminorm and n_controlled < n_total:
        scale = np.sqrt(n_controlled / n_total)
        atol_arr[:n_controlled] *= scale
        atol_arr[n_controlled:] = np.inf
        rtol *= scale
    return rtol, atol_arr


@njit(cache=True)
def backward_sweep(
    addr,
    A,
    c,
    btilde,
    P,
    order,
    si,
    sj,
    ctrl,
    times,
    rows,
    resets,
    a_off,
    reset_states,
    t_end,
    Y0,
    ctx,
    rtol,
    atol,
    max_steps,
    quad_addr,
    nodes,
    weights,
    n_p,
):
    """All the backward solves of one adjoint in compiled code: integrate between consecutive distinct save
    times (``times`` in the order the sweep meets them, last first), add each cotangent row ``rows[k]`` to
    the adjoint channels ``Y[a_off:a_off+n]``, optionally reset ``Y[:n]`` to ``resets[k]`` (backsolve's
    checkpoints), and finish at ``t_end``.  With ``quad_addr`` non-empty (quadrature adjoint) every segment
    is recorded and its parameter integral accumulated at once.  Each segment after the first starts from
    qmax times the largest step accepted in the one before (the mean one where the steps are not recorded:
    every adjoint but quadrature, so that their memory stays O(1) in the number of steps) — about the
    largest step the PI controller itself could have proposed next (clipped to the segment) — rather than
    the automatic initial-step rule, whose first guess is cautious; the segments' final steps are clipped to
    the save times, so the controller's own proposals would otherwise never grow past the spacing of the
    save points.

    Returns (Y, grad_p_quadrature, status, t_failed, nfe, accepted, rejected, n_quadrature_vjp).
    """
    n = rows.shape[1]
    quad = quad_addr.size > 0
    # Only the quadrature adjoint records its backward steps (it integrates over them).  Recording the step
    # sizes of the others just to find their largest step would make their memory grow with the number of
    # backward steps — backsolve's O(1) memory is the reason to use it.
    record = 7 if quad else 0
    Y = Y0.copy()
    grad_q = np.zeros(n_p)
    nfe = 0
    accepted = 0
    rejected = 0
    n_quad = 0
    status = 0
    current = times[0] if times.size > 0 else t_end
    end_mark = np.empty(1)
    h_prev = 0.0  # 0: automatic initial step
    for k in range(times.size + 1):
        target = times[k] if k < times.size else t_end
        if target != current:
            ctrl[6] = 16 * 2.220446049250313e-16 * max(abs(current), abs(target), 1.0)
            ctrl[7] = abs(target - current)
            ctrl[8] = h_prev * ctrl[4]
            end_mark[0] = target
            out = solve_loop(
                addr,
                A,
                c,
                btilde,
                P,
                order,
                si,
                sj,
                current,
                target,
                Y,
                ctx,
                rtol,
                atol,
                end_mark,
                False,
                ctrl,
                True,
                max_steps,
                record,
            )
            status = out[0]
            nfe += out[5]
            accepted += out[6]
            rejected += out[7]
            if status != 0:
                return Y, grad_q, status, current, nfe, accepted, rejected, n_quad
            Y[:] = out[2][out[2].shape[0] - 1]
            if out[9].size > 0:
                h_prev = 0.0
                for j in range(out[9].size):
                    h_prev = max(h_prev, abs(out[9][j]))
            elif out[6] > 0:
                # Steps not recorded: the mean accepted step, a lower bound on the largest one.
                h_prev = abs(target - current) / out[6]
            if quad and out[9].size > 0:
                part, cnt = quadrature_sweep(quad_addr, ctx, P, out[8], out[9], out[12], out[13], nodes, weights, n_p)
                for m in range(n_p):
                    grad_q[m] += part[m]
                n_quad += cnt
            current = target
        if k < times.size:
            for m in range(n):
                Y[a_off + m] += rows[k, m]
            if reset_states:
                for m in range(n):
                    Y[m] = resets[k, m]
    return Y, grad_q, status, current, nfe, accepted, rejected, n_quad


_NO_QUAD = np.zeros(0, dtype=np.int64)


def _run_backward(
    handle, tab, sol, grad_y, Y0, ctx, rtol, atol_arr, max_steps, a_off, checkpoints=False, quad_handle=None
):
    """Order the save points for the sweep, run :func:`backward_sweep`, raise if a backward solve failed."""
    rows = _cotangent_rows(sol, grad_y)[::-1].copy()
    times = np.ascontiguousarray(sol.t[::-1])
    resets = np.ascontiguousarray(sol.y[::-1])
    si, sj = tab.stiffness_pair if tab.stiffness_pair else (-1, -1)
    t0 = sol.t_span[0]
    ctrl = control_array(tab, t0, sol.t_span[1], None, None, None, None)
    quad_addr = _NO_QUAD if quad_handle is None else np.array(quad_handle.addresses, dtype=np.int64)
    Y, grad_q, status, t_fail, nfe, acc, rej, n_quad = backward_sweep(
        handle.addresses,
        tab.A,
        tab.c,
        tab.btilde,
        tab.P,
        tab.order,
        si,
        sj,
        ctrl,
        times,
        rows,
        resets,
        a_off,
        bool(checkpoints),
        t0,
        Y0,
        ctx,
        rtol,
        atol_arr,
        int(max_steps),
        quad_addr,
        GL_NODES,
        GL_WEIGHTS,
        sol.p.size,
    )
    if status != SUCCESS:
        raise AdjointSolveFailed(
            f"the backward solve from t={t_fail:.6g} towards t0={t0:.6g} failed: {STATUS_MESSAGES[status]}"
        )
    stats = dict(nfe=int(nfe), accepted=int(acc), rejected=int(rej))
    if quad_handle is not None:
        stats["quadrature_vjp"] = int(n_quad)
    return Y, grad_q, stats


def _check_ready(sol):
    if not sol.success:
        raise ValueError(f"sol: the forward solve did not succeed ({sol.message})")
    if sol.t.size == 0:
        raise ValueError("sol: the forward solve saved no points")


# Gauss–Legendre nodes/weights on [0, 1]: 4 points, exact for polynomials of degree 7 — well beyond the
# order of the interpolants the integrand is built from.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(4)
GL_NODES = np.ascontiguousarray(0.5 * (_GL_X + 1.0))
GL_WEIGHTS = np.ascontiguousarray(0.5 * _GL_W)


def backsolve_adjoint(
    f,
    f_vjp,
    sol,
    grad_y,
    rtol=1e-6,
    atol=1e-8,
    method=None,
    seminorm=False,
    checkpoints=False,
    max_steps=100_000,
    f_value_vjp=None,
) -> AdjointResult:
    """Chen et al.'s adjoint: re-solve z backwards together with a and a_p (O(1) memory in the steps).

    ``grad_y`` holds dL/d(sol.y) (one row per saved point).  ``checkpoints=True`` resets z to the forward
    solution's saved value at each save time (limits the drift of z on unstable backward problems).
    ``method`` defaults to the forward method; ``rtol``/``atol`` are the backward solve's own tolerances.
    ``f_value_vjp(t, y, p, a, out_f, out_y, out_p)`` (optional, e.g. ``MLP.value_vjp``) computes f and its
    VJP from one forward pass; the augmented dynamics then cost one call instead of two.
    """
    _check_ready(sol)
    max_steps = check_max_steps(max_steps)
    fh = as_compiled(f, "rhs", "f")
    check_user_function(fh, "rhs", "f", sol.t_span[0], sol.y[0], sol.p)
    vh = checked_vjp(f_vjp, sol)
    n = sol.y.shape[1]
    p = sol.p
    tab = get_tableau(method or sol.method)
    if f_value_vjp is not None:
        fused = as_compiled(f_value_vjp, "value_vjp", "f_value_vjp")
        check_user_function(fused, "value_vjp", "f_value_vjp", sol.t_span[0], sol.y[0], sol.p)
        ctx = np.concatenate([handle_as_floats(fused), [0.0, 0.0, n, p.size], p])
        handle = _handle("backsolve_fused")
    else:
        ctx = _backsolve_context(fh, vh, n, p)
        handle = _handle("backsolve")
    rt, at = _tolerances(rtol, atol, 2 * n, 2 * n + p.size, seminorm)
    Y0 = np.concatenate([sol.y[-1], np.zeros(n + p.size)])  # z at the last saved time
    Y, _, stats = _run_backward(handle, tab, sol, grad_y, Y0, ctx, rt, at, max_steps, n, checkpoints=checkpoints)
    return AdjointResult(
        grad_y0=Y[n : 2 * n].copy(),
        grad_p=Y[2 * n :].copy(),
        nfe_backward=stats["nfe"],
        method="backsolve",
        stats=stats,
    )


def interpolating_adjoint(
    f_vjp, sol, grad_y, rtol=1e-6, atol=1e-8, method=None, seminorm=False, max_steps=100_000
) -> AdjointResult:
    """Adjoint with z(t) from the forward dense output (solve forward with ``record_states=True``)."""
    _check_ready(sol)
    require_recorded(sol, "interpolating adjoint")
    max_steps = check_max_steps(max_steps)
    vh = checked_vjp(f_vjp, sol)
    n = sol.y.shape[1]
    p = sol.p
    tab = get_tableau(method or sol.method)
    ctx = _interp_context(vh, sol, True)
    rt, at = _tolerances(rtol, atol, n, n + p.size, seminorm)
    Y, _, stats = _run_backward(
        _handle("interpolating"), tab, sol, grad_y, np.zeros(n + p.size), ctx, rt, at, max_steps, 0
    )
    return AdjointResult(
        grad_y0=Y[:n].copy(), grad_p=Y[n:].copy(), nfe_backward=stats["nfe"], method="interpolating", stats=stats
    )


def quadrature_adjoint(f_vjp, sol, grad_y, rtol=1e-6, atol=1e-8, method=None, max_steps=100_000) -> AdjointResult:
    """Adjoint a(t) alone (z interpolated), then dL/dθ by Gauss–Legendre quadrature over its steps."""
    _check_ready(sol)
    require_recorded(sol, "quadrature adjoint")
    max_steps = check_max_steps(max_steps)
    vh = checked_vjp(f_vjp, sol)
    n = sol.y.shape[1]
    tab = get_tableau(method or sol.method)
    ctx = _interp_context(vh, sol, False)
    rt, at = _tolerances(rtol, atol, n, n, False)
    Y, grad_p, stats = _run_backward(
        _handle("interpolating"), tab, sol, grad_y, np.zeros(n), ctx, rt, at, max_steps, 0, quad_handle=vh
    )
    return AdjointResult(
        grad_y0=Y.copy(),
        grad_p=grad_p,
        nfe_backward=stats["nfe"] + stats["quadrature_vjp"],
        method="quadrature",
        stats=stats,
    )
