"""Discrete adjoint ("discretize-then-optimize"): the exact gradient of the computed solution.

The forward solve (``record_states=True``) keeps, for every accepted step j, its start time t_j, step h_j,
state y_j and stage values K_j.  With the step sequence held fixed, the computed solution is a composition
of explicit RK steps, and its gradient is a reverse sweep over the steps, each pulled back through every
stage by the one step VJP of :func:`lrnde_np.ode.rk.rk_step_vjp`.  Per step j, going backwards:

* ``Ȳ_s  = ā_{j+1}``                                   (y_{j+1} = Y_s in FSAL form)
* save points produced by step j at θ:  ``K̄_i += h b_i(θ) ḡ``, ``ȳ_j += ḡ``   (θ = 1: ``Ȳ_s += ḡ``)
* ``Ē_j`` (global error regularizer):  err = h Σ btilde_i k_i  ⇒  ``K̄_i += h btilde_i ērr`` (+ the
  dependence of the error scale on y_j and y_{j+1})
* ``S̄_j`` (global stiffness regularizer):  through the two equal-node stages
* then ``ā_j = ȳ_j`` and ``p̄ +=`` from the stage VJPs.

The result is exact to round-off for the solution the solver actually computed — what the finite-difference
tests with a replayed step sequence check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .._types import vjp_from
from ..ode.control import error_estimate_vjp
from ..ode.rhs import as_compiled, check_user_function
from ..ode.rk import dense_weights, error_vector, rk_step_vjp, stiffness_estimate_vjp


@dataclass
class AdjointResult:
    """dL/dy0, dL/dp and the cost of the backward pass.

    ``nfe_backward`` counts the evaluations made by the backward pass: VJP calls for the discrete adjoint;
    for the continuous adjoints, evaluations of the augmented right-hand side (each one RHS and/or one VJP
    call), as reported by the backward solves.
    """

    grad_y0: np.ndarray
    grad_p: np.ndarray
    nfe_backward: int
    method: str
    stats: dict

    @property
    def grad(self):
        return self.grad_y0, self.grad_p


@njit(cache=True)
def discrete_sweep(
    vjp_addr,
    A,
    c,
    btilde,
    P,
    si,
    sj,
    step_t,
    step_dt,
    step_y,
    step_K,
    p,
    rtol,
    atol,
    save_step,
    save_theta,
    save_order,
    grad_y,
    grad_E,
    grad_S,
    use_E,
    use_S,
):
    """Reverse sweep over the recorded steps; returns (grad_y0, grad_p, n_vjp)."""
    f_vjp = vjp_from(vjp_addr[0], vjp_addr[1])
    n_steps = step_dt.size
    s = A.shape[0]
    n = step_y.shape[1]
    a = np.zeros(n)  # cotangent of y_{j+1} on entry to step j
    y_bar = np.zeros(n)
    p_bar = np.zeros(p.size)
    K_bar = np.zeros((s, n))
    Y_bar = np.zeros((s, n))
    w = np.empty(s)
    err = np.empty(n)
    err_bar = np.empty(n)
    ynew_bar = np.empty(n)
    work_y = np.empty(n)
    work_a = np.empty(n)
    work_gy = np.empty(n)
    work_gp = np.empty(p.size)
    work_i = np.empty(n)
    work_j = np.empty(n)
    n_vjp = 0
    k = save_order.size - 1  # walks the save points from the last step backwards
    for j in range(n_steps - 1, -1, -1):
        h = step_dt[j]
        t = step_t[j]
        y = step_y[j]
        y_new = step_y[j + 1]
        K = step_K[j]
        K_bar[:, :] = 0.0
        Y_bar[:, :] = 0.0
        y_bar[:] = 0.0
        for m in range(n):
            Y_bar[s - 1, m] = a[m]
        # Save points produced by this step's dense output.
        while k >= 0 and save_step[save_order[k]] == j:
            r = save_order[k]
            theta = save_theta[r]
            if theta == 1.0:
                for m in range(n):
                    Y_bar[s - 1, m] += grad_y[r, m]
            else:
                dense_weights(P, theta, w)
                for m in range(n):
                    g = grad_y[r, m]
                    y_bar[m] += g
                    for i in range(s):
                        K_bar[i, m] += h * w[i] * g
            k -= 1
        if use_E and grad_E[j] != 0.0:
            error_vector(btilde, h, K, err)
            sq = 0.0
            for m in range(n):
                sc = atol[m] + rtol * max(abs(y[m]), abs(y_new[m]))
                sq += (err[m] / sc) ** 2
            E = np.sqrt(sq / n)
            err_bar[:] = 0.0
            ynew_bar[:] = 0.0
            error_estimate_vjp(grad_E[j], E, err, y, y_new, rtol, atol, err_bar, y_bar, ynew_bar)
            for m in range(n):
                Y_bar[s - 1, m] += ynew_bar[m]
                for i in range(s):
                    K_bar[i, m] += h * btilde[i] * err_bar[m]
        if use_S and grad_S[j] != 0.0:
            stiffness_estimate_vjp(grad_S[j], A, si, sj, h, y, K, work_i, work_j, K_bar, Y_bar)
        rk_step_vjp(f_vjp, A, c, t, h, y, p, K, K_bar, Y_bar, y_bar, p_bar, True, work_y, work_a, work_gy, work_gp)
        n_vjp += s
        for m in range(n):
            a[m] = y_bar[m]
    # Save points taken straight from y0.
    while k >= 0:
        r = save_order[k]
        for m in range(n):
            a[m] += grad_y[r, m]
        k -= 1
    return a, p_bar, n_vjp


def _cotangent_rows(sol, grad_y):
    n = sol.y.shape[1] if sol.y.ndim == 2 and sol.y.shape[0] else sol.steps.y.shape[1]
    if grad_y is None:
        return np.zeros((sol.t.size, n))
    try:
        g = np.ascontiguousarray(grad_y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"grad_y must be an array of real numbers shaped like sol.y {sol.y.shape}, got {type(grad_y).__name__}"
        ) from exc
    if g.shape != sol.y.shape:
        raise ValueError(
            f"grad_y must have the shape of sol.y {sol.y.shape} (one cotangent row per saved point), got {g.shape}"
        )
    if not np.all(np.isfinite(g)):
        raise ValueError("grad_y contains non-finite values")
    return g


def _per_step(name, g, n_steps):
    if g is None:  # an empty placeholder (never indexed: the sweep tests the flag first), not O(n_steps) zeros
        return np.zeros(0), False
    arr = np.ascontiguousarray(g, dtype=np.float64)
    if arr.shape != (n_steps,):
        raise ValueError(f"{name} must have one entry per accepted step ({n_steps}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr, bool(np.any(arr != 0.0))


def checked_vjp(f_vjp, sol):
    """``f_vjp`` as a FunctionHandle, after its checked first call (``ode.rhs.check_user_function``) at the solve's
    start time on a state of the solve: every adjoint guards the user's VJP the same way."""
    vjp = as_compiled(f_vjp, "vjp", "f_vjp")
    y = sol.y[0] if sol.y.ndim == 2 and sol.y.shape[0] else sol.steps.y[0]
    check_user_function(vjp, "vjp", "f_vjp", sol.t_span[0], y, sol.p)
    return vjp


def require_recorded(sol, what):
    if sol.steps is None or sol.steps.K is None or sol.steps.y is None:
        raise ValueError(
            f"sol: the {what} needs the forward solve's states and stages — solve with "
            "record_states=True (or dense=True)"
        )
    if not sol.success:
        raise ValueError(f"sol: the forward solve did not succeed ({sol.message})")


def discrete_adjoint(sol, f_vjp, grad_y=None, grad_error=None, grad_stiffness=None) -> AdjointResult:
    """Exact gradient of a loss on the computed solution with respect to y0 and p.

    Parameters
    ----------
    sol : a :class:`~lrnde_np.ode.solve.Solution` solved with ``record_states=True`` (or ``dense=True``).
    f_vjp : the VJP of the forward right-hand side, ``f_vjp(t, y, p, a, out_y, out_p)`` (Numba function or
        FunctionHandle).
    grad_y : dL/d(sol.y), one row per saved point (dense-output save points included).
    grad_error, grad_stiffness : dL/dE_j, dL/dS_j per accepted step (the global regularizers' cotangents,
        see :func:`lrnde_np.regularize.global_regularizer`).

    The step sequence (t_j, h_j) is held fixed: this is the derivative of exactly the computed solution.
    """
    require_recorded(sol, "discrete adjoint")
    vjp = checked_vjp(f_vjp, sol)
    steps = sol.steps
    n_steps = len(steps)
    g = _cotangent_rows(sol, grad_y)
    gE, use_E = _per_step("grad_error", grad_error, n_steps)
    gS, use_S = _per_step("grad_stiffness", grad_stiffness, n_steps)
    tab = sol.method
    si, sj = tab.stiffness_pair if tab.stiffness_pair else (-1, -1)
    if use_S and si < 0:
        raise ValueError(f"grad_stiffness: {tab.name} has no stiffness estimate")
    save_step = np.ascontiguousarray(sol.save_step, dtype=np.int64)
    save_order = np.argsort(save_step, kind="stable").astype(np.int64)
    gy0, gp, n_vjp = discrete_sweep(
        vjp.addresses,
        tab.A,
        tab.c,
        tab.btilde,
        tab.P,
        si,
        sj,
        steps.t,
        steps.dt,
        steps.y,
        steps.K,
        sol.p,
        float(sol.options["rtol"]),
        np.ascontiguousarray(sol.options["atol"]),
        save_step,
        np.ascontiguousarray(sol.save_theta),
        save_order,
        g,
        gE,
        gS,
        use_E,
        use_S,
    )
    return AdjointResult(
        grad_y0=gy0, grad_p=gp, nfe_backward=int(n_vjp), method="discrete", stats=dict(n_vjp=int(n_vjp), steps=n_steps)
    )
