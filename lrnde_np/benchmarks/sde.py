"""SDE solver benchmark: ``lrnde bench sde [--paths M] [--quick] [--json PATH]``.

Geometric Brownian motion dX = μX dt + σX dW (μ = 1, σ = 0.5, X0 = 1, t ∈ [0, 1]), whose exact solution on
a path is X0·exp((μ - σ²/2)t + σW_t).  Fixed-step solvers, compared at *equal strong error*
E|X_N(1) - X(1)| (mean over M seeded paths, both solvers on the same increments):

* ``sdeint.itoSRI2`` (Rößler 2010 SRI2, strong order 1.0, pure Python/NumPy; ``f(y, t)``, ``G(y, t)``),
* ``solve_sde(method="sosri")`` and ``"sriw1"`` (strong order 1.5) replaying the same ΔW (plus their own
  independent ΔZ) through ``path=(t, dW, dZ)``.

The step counts: sdeint runs with N_ref steps; for each of our methods the strong error is measured over a
ladder of step counts and the smallest N whose error is at most sdeint's is used.  Reported per solver: N,
strong error (with its standard error), the median time per solve (``time.perf_counter`` over all paths,
repeated), and the time ratio sdeint / ours.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from numba import njit

from ..sde import solve_sde

MU, SIGMA, X0, T = 1.0, 0.5, 1.0, 1.0


@njit(cache=True)
def gbm_drift(t, x, p, out):
    for i in range(x.size):
        out[i] = p[0] * x[i]


@njit(cache=True)
def gbm_diffusion(t, x, p, out):
    for i in range(x.size):
        out[i] = p[1] * x[i]


def _sdeint_f(y, t):
    return MU * y


def _sdeint_G(y, t):
    return np.array([[SIGMA * y[0]]])


def increments(n_steps, n_paths, seed):
    """(dW, dZ) of shape (n_paths, n_steps, 1), seeded."""
    rng = np.random.default_rng([seed, n_steps])
    h = T / n_steps
    return (
        rng.standard_normal((n_paths, n_steps, 1)) * np.sqrt(h),
        rng.standard_normal((n_paths, n_steps, 1)) * np.sqrt(h),
    )


def exact(dW):
    return X0 * np.exp((MU - 0.5 * SIGMA**2) * T + SIGMA * dW.sum(axis=(1, 2)))


def run_ours(method, n_steps, dW, dZ):
    grid = np.linspace(0.0, T, n_steps + 1)
    p = np.array([MU, SIGMA])
    x0 = np.array([X0])
    out = np.empty(dW.shape[0])
    t0 = time.perf_counter()
    for k in range(dW.shape[0]):
        sol = solve_sde(gbm_drift, gbm_diffusion, (0.0, T), x0, p, method=method, path=(grid, dW[k], dZ[k]), saveat=[T])
        out[k] = sol.x[-1, 0]
    return out, (time.perf_counter() - t0) / dW.shape[0]


def run_sdeint(n_steps, dW):
    import sdeint

    tspan = np.linspace(0.0, T, n_steps + 1)
    y0 = np.array([X0])
    out = np.empty(dW.shape[0])
    t0 = time.perf_counter()
    for k in range(dW.shape[0]):
        out[k] = sdeint.itoSRI2(_sdeint_f, _sdeint_G, y0, tspan, dW=dW[k])[-1, 0]
    return out, (time.perf_counter() - t0) / dW.shape[0]


def strong_error(x, dW):
    e = np.abs(x - exact(dW))
    return float(e.mean()), float(e.std(ddof=1) / np.sqrt(e.size))


def measure(kind, n_steps, n_paths, seed, repeats):
    dW, dZ = increments(n_steps, n_paths, seed)
    times = []
    for _ in range(repeats):
        x, t = run_sdeint(n_steps, dW) if kind == "sdeint" else run_ours(kind, n_steps, dW, dZ)
        times.append(t)
    err, se = strong_error(x, dW)
    return dict(
        solver=kind,
        n_steps=int(n_steps),
        strong_error=err,
        strong_error_se=se,
        time_per_solve_s=float(np.median(times)),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lrnde bench sde", description=__doc__.split("\n\n")[0])
    ap.add_argument("--paths", type=int, default=200, help="sample paths per error estimate (default 200)")
    ap.add_argument("--n-ref", type=int, default=256, help="sdeint's step count (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="60 paths, N_ref 128, 1 repeat")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.paths, args.n_ref, args.repeats = 60, 128, 1
    try:
        import sdeint  # noqa: F401
    except ImportError:
        print("lrnde bench sde: the reference package sdeint is not installed (pip install sdeint)")
        return 1

    # Compile / load from cache outside the timings.
    dW, dZ = increments(4, 2, args.seed)
    for method in ("sosri", "sriw1"):
        run_ours(method, 4, dW, dZ)

    ref = measure("sdeint", args.n_ref, args.paths, args.seed, args.repeats)
    target = ref["strong_error"]
    rows = [ref]
    for method in ("sosri", "sriw1"):
        chosen = None
        ladder = sorted(set(int(round(v)) for v in np.geomspace(4, args.n_ref, 24)))
        for n in ladder:
            r = measure(method, n, args.paths, args.seed, 1)
            if r["strong_error"] <= target:
                chosen = n
                break
        chosen = chosen or args.n_ref
        rows.append(measure(method, chosen, args.paths, args.seed, args.repeats))

    print(f"GBM mu={MU} sigma={SIGMA} X0={X0} T={T}; {args.paths} paths; strong error E|X_N(T) - X(T)|")
    print(f"{'solver':>14} {'N':>6} {'strong error':>14} {'± s.e.':>10} {'time/solve':>12} {'sdeint/ours':>12}")
    for r in rows:
        ratio = ref["time_per_solve_s"] / r["time_per_solve_s"]
        r["speedup_vs_sdeint"] = ratio
        print(
            f"{r['solver']:>14} {r['n_steps']:>6d} {r['strong_error']:>14.3e} {r['strong_error_se']:>10.1e} "
            f"{r['time_per_solve_s'] * 1e3:>10.3f}ms {ratio:>12.1f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(problem=dict(mu=MU, sigma=SIGMA, x0=X0, T=T), paths=args.paths, results=rows), fh, indent=2)
    return 0
