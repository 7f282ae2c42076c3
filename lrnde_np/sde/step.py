"""One generic SRI step for diagonal/scalar noise, its error estimate and its VJP.

The tableau travels into the kernels packed as two arrays (:func:`pack_tableau`)::

    M = [A0, A1, B0, B1]                                  (4, s, s)
    V = [c0, c1, α, β1, β2, β3, β4, need_f, need_g, f_alias]       (10, s)

plus the scalars δ and ``error_terms`` (see :mod:`lrnde_np.sde.tableaus`).  Noise: ``dW``, ``dZ`` hold one
increment per Wiener process; component m of the state uses ``dW[m * stride]`` — ``stride = 1`` for
diagonal noise (one process per component), ``stride = 0`` for scalar noise (one shared process).

Iterated integrals (``solver-facts.md`` §4.1), per component with w = ΔW, z = ΔZ (an independent N(0, h)):

    chi1 = I_(1,1)/√h   = (w² - h) / (2√h)
    chi2 = I_(1,0)/h    = (w + z/√3) / 2
    chi3 = I_(1,1,1)/h  = (w³ - 3hw) / (6h)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..ode.control import error_estimate, error_estimate_vjp

# Rows of the packed vector array V.
C0, C1, ALPHA, BETA1, BETA2, BETA3, BETA4, NEED_F, NEED_G, F_ALIAS = range(10)
SQRT3 = math.sqrt(3.0)


_PACKED: dict = {}


def pack_tableau(tab):
    """(M, V, delta, error_terms) of an :class:`~lrnde_np.sde.tableaus.SRITableau` for the kernels
    (read-only arrays, cached per tableau object)."""
    hit = _PACKED.get(id(tab))
    if hit is not None and hit[0] is tab:
        return hit[1]
    M = np.ascontiguousarray(np.stack([tab.A0, tab.A1, tab.B0, tab.B1]))
    V = np.ascontiguousarray(
        np.stack(
            [tab.c0, tab.c1, tab.alpha, tab.beta1, tab.beta2, tab.beta3, tab.beta4, tab.need_f, tab.need_g, tab.f_alias]
        )
    )
    packed = (M, V, float(tab.delta), int(tab.error_terms))
    if len(_PACKED) < 64:
        _PACKED[id(tab)] = (tab, packed)
    return packed


@njit(cache=True, inline="always")
def _chis(w, z, h, sqh):
    """(chi1, chi2, chi3) of one component."""
    return (w * w - h) / (2.0 * sqh), 0.5 * (w + z / SQRT3), (w * w * w - 3.0 * h * w) / (6.0 * h)


@njit(cache=True, inline="always")
def sri_workspace(s, n):
    """Work arrays of one SRI step with s stages on n states: H0, H1, F, G (s × n), x_new, err (n)."""
    return np.empty((s, n)), np.empty((s, n)), np.empty((s, n)), np.empty((s, n)), np.empty(n), np.empty(n)


@njit(cache=True)
def sri_stages(f, g, M, V, t, h, x, p, dW, dZ, stride, H0, H1, F, G):
    """The stage states H0, H1 (s, n) and values F = f(H0), G = g(H1) (s, n) of one step from (t, x).

    Stages whose value the method never uses (``need_f``/``need_g`` = 0) are left zero and not evaluated; a
    drift stage identical to an earlier one (``f_alias`` ≥ 0) is copied.
    Returns (f evaluations, g evaluations).
    """
    s = V.shape[1]
    n = x.size
    sqh = math.sqrt(h)
    nf = 0
    ng = 0
    for i in range(s):
        for m in range(n):
            chi2 = 0.5 * (dW[m * stride] + dZ[m * stride] / SQRT3)
            a0 = 0.0
            a1 = 0.0
            b0 = 0.0
            b1 = 0.0
            for j in range(i):
                a0 += M[0, i, j] * F[j, m]
                a1 += M[1, i, j] * F[j, m]
                b0 += M[2, i, j] * G[j, m]
                b1 += M[3, i, j] * G[j, m]
            H0[i, m] = x[m] + h * a0 + chi2 * b0
            H1[i, m] = x[m] + h * a1 + sqh * b1
        if V[F_ALIAS, i] >= 0.0:
            for m in range(n):  # element loops, not slice copies: a slice copy needs NRT on a GPU
                F[i, m] = F[int(V[F_ALIAS, i]), m]
        elif V[NEED_F, i] != 0.0:
            f(t + V[C0, i] * h, H0[i], p, F[i])
            nf += 1
        else:
            for m in range(n):
                F[i, m] = 0.0
        if V[NEED_G, i] != 0.0:
            g(t + V[C1, i] * h, H1[i], p, G[i])
            ng += 1
        else:
            for m in range(n):
                G[i, m] = 0.0
    return nf, ng


@njit(cache=True)
def sri_combine(V, delta, error_terms, h, x, dW, dZ, stride, F, G, x_new, err):
    """x_{n+1} and the error vector δ·E1 + E2 from the stage values (§4.2, §4.3)."""
    s = V.shape[1]
    n = x.size
    sqh = math.sqrt(h)
    for m in range(n):
        w = dW[m * stride]
        chi1, chi2, chi3 = _chis(w, dZ[m * stride], h, sqh)
        drift = 0.0
        e1 = 0.0
        noise = 0.0
        e2 = 0.0
        for i in range(s):
            drift += V[ALPHA, i] * F[i, m]
            if i < error_terms:
                e1 += F[i, m]
            noise += (V[BETA1, i] * w + V[BETA2, i] * chi1) * G[i, m]
            e2 += (V[BETA3, i] * chi2 + V[BETA4, i] * chi3) * G[i, m]
        x_new[m] = x[m] + h * drift + noise + e2
        err[m] = delta * h * e1 + e2


@njit(cache=True)
def sri_step(f, g, M, V, delta, error_terms, t, h, x, p, dW, dZ, stride, rtol, atol, H0, H1, F, G, x_new, err):
    """One SRI step: fills x_new and err; returns (E_est, f evaluations, g evaluations).

    E_est = RMS( err_m / (atol_m + rtol·max(|x_m|, |x_new,m|)) ), as the ODE error norm.
    """
    nf, ng = sri_stages(f, g, M, V, t, h, x, p, dW, dZ, stride, H0, H1, F, G)
    sri_combine(V, delta, error_terms, h, x, dW, dZ, stride, F, G, x_new, err)
    E = error_estimate(err, x, x_new, rtol, atol)
    return E, nf, ng


@njit(cache=True)
def sri_step_vjp(
    f, g, f_vjp, g_vjp, M, V, delta, error_terms, t, h, x, p, dW, dZ, stride, rtol, atol, xnew_bar, E_bar, x_bar, p_bar
):
    """Reverse sweep through one step with the noise (dW, dZ) and h held fixed.

    Given the cotangents ``xnew_bar`` of x_{n+1} and ``E_bar`` of E_est, accumulates into ``x_bar`` (of x_n)
    and ``p_bar`` (of the parameters).  The stage values are recomputed by :func:`sri_stages` (the same code
    the forward step runs).  Returns the number of VJP calls.

    Reverse of §4.2, with a_i = hα_i, b_i = β1_i ΔW + β2_i chi1 + β3_i chi2 + β4_i chi3, d_i = δh[i < error_terms],
    e_i = β3_i chi2 + β4_i chi3 (elementwise per component):

        F̄_i = a_i x̄_{n+1} + d_i ērr,    Ḡ_i = b_i x̄_{n+1} + e_i ērr
        for i = s..1:  H̄0_i = F̄_iᵀ ∂f/∂H0_i,  H̄1_i = Ḡ_iᵀ ∂g/∂H1_i,  x̄ += H̄0_i + H̄1_i,
                       F̄_j += h(A0_ij H̄0_i + A1_ij H̄1_i),  Ḡ_j += B0_ij chi2 H̄0_i + √h B1_ij H̄1_i   (j < i)
    """
    s = V.shape[1]
    n = x.size
    H0, H1, F, G, x_new, err = sri_workspace(s, n)
    sri_stages(f, g, M, V, t, h, x, p, dW, dZ, stride, H0, H1, F, G)
    sri_combine(V, delta, error_terms, h, x, dW, dZ, stride, F, G, x_new, err)

    a_new = xnew_bar.copy()
    err_bar = np.zeros(n)
    if E_bar != 0.0:
        E = error_estimate(err, x, x_new, rtol, atol)
        error_estimate_vjp(E_bar, E, err, x, x_new, rtol, atol, err_bar, x_bar, a_new)
    sqh = math.sqrt(h)
    Fb = np.empty((s, n))
    Gb = np.empty((s, n))
    chi2v = np.empty(n)
    for m in range(n):
        w = dW[m * stride]
        chi1, chi2, chi3 = _chis(w, dZ[m * stride], h, sqh)
        chi2v[m] = chi2
        x_bar[m] += a_new[m]
        for i in range(s):
            e = V[BETA3, i] * chi2 + V[BETA4, i] * chi3
            b = V[BETA1, i] * w + V[BETA2, i] * chi1 + e
            d = delta * h if i < error_terms else 0.0
            Fb[i, m] = h * V[ALPHA, i] * a_new[m] + d * err_bar[m]
            Gb[i, m] = b * a_new[m] + e * err_bar[m]
    out_y = np.empty(n)
    out_p = np.empty(p.size)
    h0b = np.empty(n)
    n_vjp = 0
    for i in range(s - 1, -1, -1):
        if V[F_ALIAS, i] >= 0.0:  # F_i is F_j: its cotangent goes to stage j (processed later)
            j = int(V[F_ALIAS, i])
            for m in range(n):
                Fb[j, m] += Fb[i, m]
            h0b[:] = 0.0
        elif V[NEED_F, i] != 0.0:
            f_vjp(t + V[C0, i] * h, H0[i], p, Fb[i], h0b, out_p)
            n_vjp += 1
            for k in range(p.size):
                p_bar[k] += out_p[k]
        else:
            h0b[:] = 0.0
        if V[NEED_G, i] != 0.0:
            g_vjp(t + V[C1, i] * h, H1[i], p, Gb[i], out_y, out_p)
            n_vjp += 1
            for k in range(p.size):
                p_bar[k] += out_p[k]
        else:
            out_y[:] = 0.0
        for m in range(n):
            x_bar[m] += h0b[m] + out_y[m]
            for j in range(i):
                Fb[j, m] += h * (M[0, i, j] * h0b[m] + M[1, i, j] * out_y[m])
                Gb[j, m] += M[2, i, j] * chi2v[m] * h0b[m] + sqh * M[3, i, j] * out_y[m]
    return n_vjp


@njit(cache=True)
def sde_initial_step(f, g, t0, x0, p, order, rtol, atol, dtmin, dtmax, work_f0, work_g0, work_x, work_f1, work_g1):
    """StochasticDiffEq's ``sde_determine_initdt`` (Hairer's rule with the noise folded in, §2.3).

    sk = atol + |x0|·rtol; d0 = ‖x0/sk‖, d1 = ‖max(|f0 + 3g0|, |f0 - 3g0|)/sk‖ (RMS norms);
    dt0 = 1e-6 if d0 or d1 < 1e-5 else (d0/d1)/100; x1 = x0 + dt0 f0;
    ΔgMax = max(|3g0 - 3g1|, |3g0 + 3g1|), d2 = ‖max(|f1 - f0 + ΔgMax|, |f1 - f0 - ΔgMax|)/sk‖ / dt0;
    dt1 = 10^(-(2 + log10 max(d1, d2)) / (order + 1/2)); dt = max(dtmin, min(100 dt0, dt1, dtmax)).
    Returns (dt, f evaluations, g evaluations).
    """
    n = x0.size
    f(t0, x0, p, work_f0)
    g(t0, x0, p, work_g0)
    d0 = 0.0
    d1 = 0.0
    for m in range(n):
        sk = atol[m] + abs(x0[m]) * rtol
        d0 += (x0[m] / sk) ** 2
        g3 = 3.0 * work_g0[m]
        d1 += (max(abs(work_f0[m] + g3), abs(work_f0[m] - g3)) / sk) ** 2
    d0 = math.sqrt(d0 / n)
    d1 = math.sqrt(d1 / n)
    smalldt = 1e-6
    if d0 < 1e-5 or d1 < 1e-5:
        dt0 = smalldt
    else:
        dt0 = (d0 / d1) / 100.0
    dt0 = min(dt0, dtmax)
    for m in range(n):
        work_x[m] = x0[m] + dt0 * work_f0[m]
    f(t0 + dt0, work_x, p, work_f1)
    g(t0 + dt0, work_x, p, work_g1)
    d2 = 0.0
    for m in range(n):
        sk = atol[m] + abs(x0[m]) * rtol
        g0 = 3.0 * work_g0[m]
        g1 = 3.0 * work_g1[m]
        dg = max(abs(g0 - g1), abs(g0 + g1))
        df = work_f1[m] - work_f0[m]
        d2 += (max(abs(df + dg), abs(df - dg)) / sk) ** 2
    d2 = math.sqrt(d2 / n) / dt0
    dmax = max(d1, d2)
    if not math.isfinite(dmax):
        return max(dtmin, min(smalldt, dtmax)), 2, 2
    if dmax <= 1e-15:
        dt1 = max(smalldt, dt0 * 1e-3)
    else:
        dt1 = 10.0 ** (-(2.0 + math.log10(dmax)) / (order + 0.5))
    return max(dtmin, min(100.0 * dt0, dt1, dtmax)), 2, 2
