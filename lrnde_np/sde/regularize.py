"""Local regularization for neural SDEs (Pal, Edelman, Rackauckas 2023; ``local-regularization.md`` §1, "SDE
version"): one SRI step (SOSRI by default) from X(t_reg)::

    dt      = automatic SDE initial step on (t_reg, t1)  (:func:`~lrnde_np.sde.step.sde_initial_step`,
              dtmax = t1 - t_reg, the main solve's tolerances)
    ΔW, ΔZ  ~ N(0, dt) fresh from the given Generator (one per Wiener process)
    E_est   = RMS( (δ E1 + E2) / (atol + rtol·max(|x|, |x_new|)) )   of that step
    R       = E_est · dt

Gradient semantics as in the paper: X(t_reg), dt and the noise are constants; R reaches the parameters
through the step's stages, pulled back by :func:`~lrnde_np.sde.step.sri_step_vjp` seeded with
Ē_est = dt (and x̄_{n+1} = 0).

δ: the tableau's (``solver-facts.md`` §4.3: 1 for SOSRI/SOSRI2, 1/6 for SRIW1).  The official code reads
``integrator.opts.delta``, whose default was 1/6 for every SRI method in older StochasticDiffEq versions
(``local-regularization.md``); pass ``delta=1/6`` to reproduce that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .._types import rhs_from, vjp_from
from ..ode.rhs import as_compiled
from ..ode.solve import check_array, check_tolerances
from ..regularize.local import check_regularization_point
from .step import pack_tableau, sde_initial_step, sri_step, sri_step_vjp, sri_workspace
from .tableaus import get_sde_tableau


@dataclass(frozen=True)
class SDELocalReg:
    """Value R = E_est·dt of the SDE local regularizer, dR/dp (None without ``compute_grad``), the step dt,
    the noise used, E_est, and the drift/diffusion/VJP evaluation counts."""

    value: float
    grad_p: np.ndarray | None
    dt: float
    t_reg: float
    error_estimate: float
    dW: np.ndarray
    dZ: np.ndarray
    nfe: int
    nge: int
    n_vjp: int

    @property
    def nfe_drift(self) -> int:
        """Drift (f) evaluations only — how the official code counts an NSDE's NFE (its "diffusion" column
        repeats the drift counter); ``nfe_total`` is f + g."""
        return self.nfe

    @property
    def nfe_total(self) -> int:
        return self.nfe + self.nge


@njit(cache=True)
def _sde_reg_dt(f_addr, g_addr, t_reg, t1, x, p, order, rtol, atol):
    f = rhs_from(f_addr[0], f_addr[1])
    g = rhs_from(g_addr[0], g_addr[1])
    n = x.size
    dtmin = 16.0 * 2.220446049250313e-16 * max(abs(t_reg), abs(t1), 1.0)
    return sde_initial_step(
        f,
        g,
        t_reg,
        x,
        p,
        order,
        rtol,
        atol,
        dtmin,
        t1 - t_reg,
        np.empty(n),
        np.empty(n),
        np.empty(n),
        np.empty(n),
        np.empty(n),
    )


@njit(cache=True)
def _step_value_and_grad(
    f_addr,
    g_addr,
    fv_addr,
    gv_addr,
    M,
    V,
    delta,
    error_terms,
    t,
    h,
    x,
    p,
    dW,
    dZ,
    stride,
    rtol,
    atol,
    compute_grad,
    grad_p,
):
    """(R, E_est, nf, ng, n_vjp) of one frozen step; dR/dp into grad_p when compute_grad."""
    f = rhs_from(f_addr[0], f_addr[1])
    g = rhs_from(g_addr[0], g_addr[1])
    s = V.shape[1]
    n = x.size
    H0, H1, F, G, x_new, err = sri_workspace(s, n)
    E, nf, ng = sri_step(
        f, g, M, V, delta, error_terms, t, h, x, p, dW, dZ, stride, rtol, atol, H0, H1, F, G, x_new, err
    )
    n_vjp = 0
    if compute_grad:
        f_vjp = vjp_from(fv_addr[0], fv_addr[1])
        g_vjp = vjp_from(gv_addr[0], gv_addr[1])
        grad_p[:] = 0.0
        x_bar = np.zeros(n)
        n_vjp = sri_step_vjp(
            f,
            g,
            f_vjp,
            g_vjp,
            M,
            V,
            delta,
            error_terms,
            t,
            h,
            x,
            p,
            dW,
            dZ,
            stride,
            rtol,
            atol,
            np.zeros(n),
            h,
            x_bar,
            grad_p,
        )
        for i in range(s):  # the VJP recomputes the stages
            nf += int(V[7, i])
            ng += int(V[8, i])
    return E * h, E, nf, ng, n_vjp


def _prepare(method, noise, delta, x, p):
    tab = get_sde_tableau(method)
    if not tab.adaptive:
        raise ValueError(f"method: {tab.name} has no error estimate to regularize")
    if noise not in ("diagonal", "scalar"):
        raise ValueError(f"noise must be 'diagonal' or 'scalar', got {noise!r}")
    M, V, d, et = pack_tableau(tab)
    if delta is not None:
        d = float(delta)
        if not math.isfinite(d):
            raise ValueError(f"delta must be finite, got {delta!r}")
    m = x.size if noise == "diagonal" else 1
    return tab, M, V, d, et, m, (1 if noise == "diagonal" else 0)


def _vjp_addresses(f_vjp, g_vjp, needed):
    if not needed:
        return (0, 0), (0, 0)  # never called
    if f_vjp is None or g_vjp is None:
        raise ValueError("f_vjp and g_vjp are required for the regularizer's gradient (or compute_grad=False)")
    return as_compiled(f_vjp, "vjp", "f_vjp").addresses, as_compiled(g_vjp, "vjp", "g_vjp").addresses


def sde_frozen_step_regularizer(
    f,
    g,
    f_vjp,
    g_vjp,
    t_reg,
    dt,
    x_reg,
    p,
    dW,
    dZ,
    rtol=1e-2,
    atol=1e-2,
    method="sosri",
    noise="diagonal",
    delta=None,
    compute_grad=True,
):
    """R = E_est·dt of one step with the given dt and noise (ΔW, ΔZ), and dR/dp with x_reg held constant.

    The differentiable part of :func:`sde_local_regularizer`. Returns ``(R, grad_p or None, E_est)``.
    """
    x = check_array("x_reg", x_reg)
    if x.size == 0:
        raise ValueError("x_reg must not be empty")
    p = np.zeros(0) if p is None else check_array("p", p)
    rtol, atol_arr = check_tolerances(rtol, atol, x.size, "x_reg")
    tab, M, V, d, et, m, stride = _prepare(method, noise, delta, x, p)
    dW = check_array("dW", np.atleast_1d(dW))
    dZ = check_array("dZ", np.atleast_1d(dZ))
    if dW.shape != (m,) or dZ.shape != (m,):
        raise ValueError(f"dW and dZ must have shape ({m},) for {noise} noise, got {dW.shape}, {dZ.shape}")
    t_reg, dt = float(t_reg), float(dt)
    if not (math.isfinite(t_reg) and math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"dt must be a positive finite step (and t_reg finite), got t_reg={t_reg!r}, dt={dt!r}")
    fa = as_compiled(f, "rhs", "f").addresses
    ga = as_compiled(g, "rhs", "g").addresses
    fva, gva = _vjp_addresses(f_vjp, g_vjp, compute_grad)
    grad_p = np.zeros(p.size)
    R, E, _, _, _ = _step_value_and_grad(
        fa, ga, fva, gva, M, V, d, et, t_reg, dt, x, p, dW, dZ, stride, rtol, atol_arr, bool(compute_grad), grad_p
    )
    return float(R), (grad_p if compute_grad else None), float(E)


def sde_local_regularizer(
    f,
    g,
    f_vjp,
    g_vjp,
    t_reg,
    t1,
    x_reg,
    p,
    rng,
    rtol=1e-2,
    atol=1e-2,
    method="sosri",
    noise="diagonal",
    delta=None,
    compute_grad=True,
) -> SDELocalReg:
    """The SDE local regularizer at t_reg: one SRI step from ``x_reg = X(t_reg)`` on (t_reg, t1).

    Parameters
    ----------
    f, g, f_vjp, g_vjp : drift, diffusion and their VJPs (as for ``solve_sde`` / ``sde_discrete_adjoint``).
    t_reg, t1 : the sampled time and the end of the main solve's span (t_reg < t1).
    x_reg : the main solve's state at t_reg (the whole minibatch, flat).
    p : parameters.
    rng : ``numpy.random.Generator`` for the step's fresh noise (ΔW then ΔZ, each ``sqrt(dt)·N(0, 1)``).
    rtol, atol : the main solve's tolerances (scale E_est, drive the initial-step rule).
    method, noise, delta : the SRI method (default SOSRI), the noise type, an override of δ.
    compute_grad : False returns only the value.
    """
    x, p, t_reg, t1 = check_regularization_point("x_reg", x_reg, p, t_reg, t1)
    if not t_reg < t1:
        raise ValueError(f"t_reg must lie before t1 (the step runs on (t_reg, t1)), got t_reg={t_reg!r}, t1={t1!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    rtol_f, atol_arr = check_tolerances(rtol, atol, x.size, "x_reg")
    tab, M, V, d, et, m, stride = _prepare(method, noise, delta, x, p)
    fh = as_compiled(f, "rhs", "f")
    gh = as_compiled(g, "rhs", "g")
    dt, nf0, ng0 = _sde_reg_dt(fh.addresses, gh.addresses, t_reg, t1, x, p, tab.order, rtol_f, atol_arr)
    sq = math.sqrt(dt)
    dW = rng.standard_normal(m) * sq
    dZ = rng.standard_normal(m) * sq
    fva, gva = _vjp_addresses(f_vjp, g_vjp, compute_grad)
    grad_p = np.zeros(p.size)
    R, E, nf, ng, nv = _step_value_and_grad(
        fh.addresses,
        gh.addresses,
        fva,
        gva,
        M,
        V,
        d,
        et,
        t_reg,
        dt,
        x,
        p,
        dW,
        dZ,
        stride,
        rtol_f,
        atol_arr,
        bool(compute_grad),
        grad_p,
    )
    return SDELocalReg(
        value=float(R),
        grad_p=grad_p if compute_grad else None,
        dt=float(dt),
        t_reg=t_reg,
        error_estimate=float(E),
        dW=dW,
        dZ=dZ,
        nfe=int(nf0 + nf),
        nge=int(ng0 + ng),
        n_vjp=int(nv),
    )
