"""Discrete adjoint of an SDE solve: the exact gradient of the computed solution for its recorded noise.

With the accepted steps (t_j, h_j) and their increments (ΔW_j, ΔZ_j) held fixed, the computed solution is a
composition of SRI steps x_{j+1} = Φ(t_j, h_j, x_j, ΔW_j, ΔZ_j; θ), so its gradient is a reverse sweep over
the steps, each pulled back through its stages by :func:`lrnde_np.sde.step.sri_step_vjp`:

* save points produced by step j (steps are clipped to the save times, so every saved point is a step end):
  ``ā_{j+1} += ḡ``;
* optional per-step cotangents ``grad_E[j]`` of the error estimates E_est,j (a global error regularizer);
* ``ā_j = x̄_j`` from the step VJP, ``θ̄ +=`` its parameter part.

This is the gradient of the map the solver computed; the finite-difference tests re-solve on the replayed
path (``solve_sde(..., path=sol.path)``), which reproduces the same steps and noise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._types import rhs_from, vjp_from
from ..adjoint.discrete import AdjointResult
from ..ode.rhs import as_compiled
from ..ode.solve import check_array
from .step import pack_tableau, sri_step_vjp


@njit(cache=True)
def sde_discrete_sweep(
    f_addr,
    g_addr,
    fv_addr,
    gv_addr,
    M,
    V,
    delta,
    error_terms,
    step_t,
    step_dt,
    step_x,
    step_dW,
    step_dZ,
    stride,
    p,
    rtol,
    atol,
    save_step,
    grad_x,
    grad_E,
    use_E,
):
    """Reverse sweep over the recorded steps; returns (grad_x0, grad_p, n_vjp)."""
    f = rhs_from(f_addr[0], f_addr[1])
    g = rhs_from(g_addr[0], g_addr[1])
    f_vjp = vjp_from(fv_addr[0], fv_addr[1])
    g_vjp = vjp_from(gv_addr[0], gv_addr[1])
    n_steps = step_dt.size
    n = step_x.shape[1]
    a = np.zeros(n)
    x_bar = np.zeros(n)
    p_bar = np.zeros(p.size)
    n_vjp = 0
    k = save_step.size - 1
    for j in range(n_steps - 1, -1, -1):
        while k >= 0 and save_step[k] == j:
            for m in range(n):
                a[m] += grad_x[k, m]
            k -= 1
        for m in range(n):
            x_bar[m] = 0.0
        Eb = grad_E[j] if use_E else 0.0
        n_vjp += sri_step_vjp(
            f,
            g,
            f_vjp,
            g_vjp,
            M,
            V,
            delta,
            error_terms,
            step_t[j],
            step_dt[j],
            step_x[j],
            p,
            step_dW[j],
            step_dZ[j],
            stride,
            rtol,
            atol,
            a,
            Eb,
            x_bar,
            p_bar,
        )
        for m in range(n):
            a[m] = x_bar[m]
    while k >= 0:  # save points at t0 (x0 itself)
        for m in range(n):
            a[m] += grad_x[k, m]
        k -= 1
    return a, p_bar, n_vjp


def sde_discrete_adjoint(sol, f_vjp, g_vjp, grad_x=None, grad_E=None) -> AdjointResult:
    """dL/dx0 and dL/dp of L(sol.x, E_est) for a solve made with ``record_steps=True``.

    Parameters
    ----------
    sol : :class:`~lrnde_np.sde.solve.SDESolution` with recorded steps.
    f_vjp, g_vjp : VJPs of the drift and diffusion, signature ``(t, x, p, a, out_x, out_p)``.
    grad_x : cotangent of ``sol.x`` (same shape), or None (zero).
    grad_E : cotangent of the accepted steps' error estimates ``sol.steps.error_estimate``, or None.
    """
    if sol.steps is None:
        raise ValueError("sol: the discrete adjoint needs the recorded steps; solve with record_steps=True")
    n = sol.x.shape[1] if sol.x.ndim == 2 and sol.x.shape[0] else sol.steps.x.shape[1]
    if grad_x is None:
        gx = np.zeros(sol.x.shape)
    else:
        gx = check_array("grad_x", grad_x, 2)
        if gx.shape != sol.x.shape:
            raise ValueError(f"grad_x must have the shape of sol.x {sol.x.shape}, got {gx.shape}")
    n_steps = len(sol.steps)
    if grad_E is None:
        gE = np.zeros(n_steps)
        use_E = False
    else:
        gE = check_array("grad_E", grad_E, 1)
        if gE.shape != (n_steps,):
            raise ValueError(f"grad_E must have one entry per accepted step ({n_steps}), got shape {gE.shape}")
        use_E = True
    fv = as_compiled(f_vjp, "vjp", "f_vjp")
    gv = as_compiled(g_vjp, "vjp", "g_vjp")
    M, V, delta, eterms = pack_tableau(sol.method)
    o = sol.options
    st = sol.steps
    gx0, gp, n_vjp = sde_discrete_sweep(
        o["f"].addresses,
        o["g"].addresses,
        fv.addresses,
        gv.addresses,
        M,
        V,
        delta,
        eterms,
        st.t,
        st.dt,
        st.x,
        st.dW,
        st.dZ,
        o["stride"],
        sol.p,
        o["rtol"],
        o["atol"],
        sol.save_step,
        gx,
        gE,
        use_E,
    )
    assert gx0.size == n
    return AdjointResult(
        grad_y0=gx0, grad_p=gp, nfe_backward=int(n_vjp), method="sde_discrete", stats=dict(steps=n_steps)
    )
