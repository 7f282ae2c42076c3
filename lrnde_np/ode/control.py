"""Error norm, error estimate, stiffness estimate, PI step-size controller and the initial step.

All follow OrdinaryDiffEq (see ``solver-facts.md`` §2): the elementwise scale
``atol + rtol·max(|y_n|, |y_{n+1}|)``, the RMS norm, accept iff ``E_est ≤ 1``.
"""

from __future__ import annotations

import math

from numba import njit

EPS = 2.220446049250313e-16  # float64 machine epsilon (a literal: np.finfo is slow inside kernels)


# Indices into the float controller-settings array handed to the compiled loops.
BETA1, BETA2, GAMMA, QMIN, QMAX, QOLDINIT, DTMIN, DTMAX, DT0 = range(9)
N_CONTROL = 9


def pi_defaults(order: int) -> dict:
    """OrdinaryDiffEq's PIController defaults for a method of the given order."""
    return dict(beta1=7.0 / (10.0 * order), beta2=2.0 / (5.0 * order), gamma=0.9, qmin=0.2, qmax=10.0, qoldinit=1e-4)


@njit(cache=True)
def rms_norm(x):
    s = 0.0
    for v in x:
        s += v * v
    return math.sqrt(s / max(x.size, 1))


@njit(cache=True, inline="always")
def error_estimate(err, y_old, y_new, rtol, atol):
    """E_est = RMS( err_i / (atol_i + rtol·max(|y_old,i|, |y_new,i|)) )."""
    s = 0.0
    n = err.size
    for m in range(n):
        sc = atol[m] + rtol * max(abs(y_old[m]), abs(y_new[m]))
        r = err[m] / sc
        s += r * r
    return math.sqrt(s / max(n, 1))


@njit(cache=True)
def error_estimate_vjp(Ebar, E, err, y_old, y_new, rtol, atol, err_bar, y_old_bar, y_new_bar):
    """Accumulate Ebar·∂E/∂(err, y_old, y_new) into the three cotangent arrays.

    ∂E/∂err_m = err_m / (N E sc_m²),  ∂E/∂sc_m = -err_m² / (N E sc_m³), and sc depends on whichever of
    |y_old,m|, |y_new,m| is larger (the max picks one side; a tie goes to y_old).
    """
    n = err.size
    if E == 0.0 or Ebar == 0.0:
        return
    w = Ebar / (n * E)
    for m in range(n):
        sc = atol[m] + rtol * max(abs(y_old[m]), abs(y_new[m]))
        e = err[m]
        err_bar[m] += w * e / (sc * sc)
        sc_bar = -w * e * e / (sc * sc * sc)
        if abs(y_old[m]) >= abs(y_new[m]):
            y_old_bar[m] += sc_bar * rtol * (1.0 if y_old[m] >= 0.0 else -1.0)
        else:
            y_new_bar[m] += sc_bar * rtol * (1.0 if y_new[m] >= 0.0 else -1.0)


@njit(cache=True)
def initial_step(f, t0, y0, p, f0, tdir, order, rtol, atol, dtmin, dtmax, work_y, work_f):
    """Hairer–Nørsett–Wanner's automatic initial step, as OrdinaryDiffEq's ``_ode_initdt_iip``.

    Uses one extra evaluation of f (returned as the second value). ``f0 = f(t0, y0)`` is given.
    """
    n = y0.size
    d0 = 0.0
    d1 = 0.0
    for m in range(n):
        sk = atol[m] + abs(y0[m]) * rtol
        d0 += (y0[m] / sk) ** 2
        d1 += (f0[m] / sk) ** 2
    d0 = math.sqrt(d0 / n)
    d1 = math.sqrt(d1 / n)
    smalldt = max(dtmin, 1e-6)
    if d0 < 1e-5 or d1 < 1e-5:
        dt0 = smalldt
    else:
        dt0 = (d0 / d1) / 100.0
    dt0 = min(dt0, dtmax)
    if dt0 < 10.0 * EPS:
        return tdir * max(smalldt, dtmin), 0
    for m in range(n):
        work_y[m] = y0[m] + tdir * dt0 * f0[m]
    f(t0 + tdir * dt0, work_y, p, work_f)
    d2 = 0.0
    same = True
    for m in range(n):
        sk = atol[m] + abs(y0[m]) * rtol
        d2 += ((work_f[m] - f0[m]) / sk) ** 2
        if work_f[m] != f0[m]:
            same = False
    if same:
        return tdir * max(dtmin, min(100.0 * dt0, dtmax)), 1
    d2 = math.sqrt(d2 / n) / dt0
    dmax = max(d1, d2)
    if not math.isfinite(dmax):
        return tdir * max(smalldt, dtmin), 1
    if dmax <= 1e-15:
        dt1 = max(1e-6, dt0 * 1e-3)
    else:
        dt1 = 10.0 ** (-(2.0 + math.log10(dmax)) / order)
    return tdir * max(dtmin, min(100.0 * dt0, dt1, dtmax)), 1


@njit(cache=True, inline="always")
def pi_propose(E, h, errold, ctrl):
    """One PI-controller decision. Returns (accept, h_next, errold_next).

    q11 = E^β1, q = clamp(q11 / errold^β2 / γ, 1/qmax, 1/qmin); accept iff E ≤ 1, then h/q;
    on reject h / min(1/qmin, q11/γ). A non-finite E is a rejection by the largest factor (qmin).
    """
    beta1 = ctrl[BETA1]
    gamma = ctrl[GAMMA]
    qmin = ctrl[QMIN]
    qmax = ctrl[QMAX]
    if not math.isfinite(E):
        return False, h * qmin, errold
    if E == 0.0:
        q11 = 0.0
        q = 1.0 / qmax
    else:
        q11 = E**beta1
        q = q11 / errold ** ctrl[BETA2]
        q = max(1.0 / qmax, min(1.0 / qmin, q / gamma))
    if E <= 1.0:
        return True, h / q, max(E, ctrl[QOLDINIT])
    return False, h / min(1.0 / qmin, q11 / gamma), errold
