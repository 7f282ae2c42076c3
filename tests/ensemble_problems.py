"""Problems and per-trajectory oracles shared by tests/test_ensemble.py (CPU ensemble) and tests/test_cuda_sim.py
(the CUDA kernels in the simulator): every ensemble row must be what the one-trajectory solver computes."""

from __future__ import annotations

import numpy as np
from numba import njit

from lrnde_np.ode import solve_ode
from lrnde_np.regularize.local import local_regularizer
from lrnde_np.sde import solve_sde


@njit(cache=True)
def lv(t, y, p, out):
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


@njit(cache=True)
def lv_vjp(t, y, p, a, out_y, out_p):
    out_y[0] = a[0] * (p[0] - p[1] * y[1]) + a[1] * p[3] * y[1]
    out_y[1] = -a[0] * p[1] * y[0] + a[1] * (-p[2] + p[3] * y[0])
    out_p[0] = a[0] * y[0]
    out_p[1] = -a[0] * y[0] * y[1]
    out_p[2] = -a[1] * y[1]
    out_p[3] = a[1] * y[0] * y[1]


@njit(cache=True)
def blowup(t, y, p, out):
    """y' = p·y², which reaches infinity at t = 1/(p·y0)."""
    for i in range(y.size):
        out[i] = p[0] * y[i] * y[i]


@njit(cache=True)
def gbm_f(t, x, p, out):
    for i in range(x.size):
        out[i] = p[0] * x[i]


@njit(cache=True)
def gbm_g(t, x, p, out):
    for i in range(x.size):
        out[i] = p[1] * x[i]


def lv_problem(N, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, (N, 2)), rng.uniform(0.5, 2.0, (N, 4))


def gbm_problem(N, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, (N, n)), np.column_stack([rng.uniform(0.5, 1.5, N), rng.uniform(0.2, 1.0, N)])


def _row(P, i):
    return P if P.ndim == 1 else P[i]


def ode_mismatches(ens, f, t_span, Y0, P, **kw):
    """Rows where the ensemble differs from solve_ode (values beyond 1e-12 relative, counts, status)."""
    bad = []
    for i in range(Y0.shape[0]):
        sol = solve_ode(f, t_span, Y0[i], _row(P, i), saveat=ens.t, **kw)
        counts = (sol.stats["nfe"], sol.stats["accepted"], sol.stats["rejected"])
        mine = (int(ens.stats["nfe"][i]), int(ens.stats["accepted"][i]), int(ens.stats["rejected"][i]))
        y = ens.y[i, : sol.y.shape[0]]
        rest = ens.y[i, sol.y.shape[0] :]
        if (
            sol.status != ens.status[i]
            or counts != mine
            or not np.all(np.isnan(rest))
            or not np.allclose(y, sol.y, rtol=1e-12, atol=1e-300)
        ):
            bad.append((i, sol.status, int(ens.status[i]), counts, mine))
    return bad


def sde_mismatches(ens, f, g, t_span, X0, P, seeds, **kw):
    """Rows where the ensemble differs from solve_sde with the same seed."""
    bad = []
    for i in range(X0.shape[0]):
        sol = solve_sde(f, g, t_span, X0[i], _row(P, i), saveat=ens.t, seed=int(seeds[i]), **kw)
        counts = tuple(sol.stats[k] for k in ("nfe", "nge", "accepted", "rejected"))
        mine = tuple(int(ens.stats[k][i]) for k in ("nfe", "nge", "accepted", "rejected"))
        x = ens.y[i, : sol.x.shape[0]]
        if (
            sol.status != ens.status[i]
            or counts != mine
            or sol.t_end != ens.t_end[i]
            or not np.allclose(x, sol.x, rtol=1e-12, atol=1e-300)
        ):
            bad.append((i, sol.status, int(ens.status[i]), counts, mine))
    return bad


def reg_mismatches(ens, f, f_vjp, t_reg, t1, Z, P, rtol, atol, **kw):
    """Rows where the ensemble regularizer differs from local_regularizer."""
    bad = []
    for i in range(Z.shape[0]):
        r = local_regularizer(f, f_vjp, t_reg[i], t1, Z[i], _row(P, i), rtol, atol, **kw)
        ok = (
            np.isclose(r.value, ens.value[i], rtol=1e-12, atol=0)
            and r.dt == ens.dt[i]
            and r.nfe == ens.nfe[i]
            and np.isclose(r.error_estimate, ens.error_estimate[i], rtol=1e-12, atol=0)
            and np.isclose(r.stiffness_estimate, ens.stiffness_estimate[i], rtol=1e-12, atol=0)
        )
        if r.grad_p is not None:
            ok = ok and np.allclose(r.grad_p, ens.grad_p[i], rtol=1e-12, atol=1e-300)
        elif ens.grad_p is not None:
            ok = False
        if r.grad_z is not None:
            ok = ok and ens.grad_z is not None and np.allclose(r.grad_z, ens.grad_z[i], rtol=1e-12, atol=1e-300)
        if not ok:
            bad.append(i)
    return bad
