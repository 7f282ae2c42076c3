"""``solve_ivp`` against SciPy's: ``lrnde bench ivp [--repeats N] [--quick] [--json PATH]``.

The same call, ``solve_ivp(lotka_volterra, (0, 10), [1, 1], args=(1.5, 1, 3, 1), rtol=1e-6, atol=1e-6, ...)``
with one plain Python ``fun(t, y, a, b, c, d)`` returning a NumPy array (which ``lrnde_np.solve_ivp`` compiles
with Numba and SciPy calls as Python), made with

* ``lrnde_np.solve_ivp`` and ``scipy.integrate.solve_ivp``, both ``method="RK45"`` (Dormand–Prince 5(4); the
  step-size controllers differ, so the NFE are reported too), and ``lrnde_np.solve_ivp(method="Tsit5")``;
* three output modes: every step (default), ``t_eval`` with 101 points, and ``dense_output=True``.

Reported: the first call of ours (Numba compiles ``fun`` and a wrapper then; not in the medians), the median and
IQR of the per-call time over interleaved repeat blocks (``time.perf_counter``), the NFE, the error at t = 10
against DOP853 at rtol = atol = 1e-12, and the speed ratio SciPy / ours (issue 13's target: ≥ 20x).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.integrate

from ..ivp import solve_ivp
from .ode import interleaved_blocks, summary

TARGET_SPEEDUP = 20.0
ARGS = (1.5, 1.0, 3.0, 1.0)
SPAN = (0.0, 10.0)
Y0 = [1.0, 1.0]
TOL = 1e-6


def lotka_volterra(t, y, a, b, c, d):
    """A SciPy user's right-hand side, unchanged: plain Python returning a NumPy array."""
    return np.array([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


MODES = {"steps": {}, "t_eval": {"t_eval": np.linspace(0.0, 10.0, 101)}, "dense": {"dense_output": True}}


def bench(repeats, min_block_s):
    ref = scipy.integrate.solve_ivp(lotka_volterra, SPAN, Y0, method="DOP853", rtol=1e-12, atol=1e-12, args=ARGS)
    y_ref = ref.y[:, -1]
    t0 = time.perf_counter()
    solve_ivp(lotka_volterra, SPAN, Y0, method="RK45", rtol=TOL, atol=TOL, args=ARGS)
    first_call = time.perf_counter() - t0
    rows = []
    for mode, kw in MODES.items():
        calls = {
            "ours RK45": lambda kw=kw: solve_ivp(
                lotka_volterra, SPAN, Y0, method="RK45", rtol=TOL, atol=TOL, args=ARGS, **kw
            ),
            "ours Tsit5": lambda kw=kw: solve_ivp(
                lotka_volterra, SPAN, Y0, method="Tsit5", rtol=TOL, atol=TOL, args=ARGS, **kw
            ),
            "scipy RK45": lambda kw=kw: scipy.integrate.solve_ivp(
                lotka_volterra, SPAN, Y0, method="RK45", rtol=TOL, atol=TOL, args=ARGS, **kw
            ),
        }
        per_call, _ = interleaved_blocks(calls, repeats, min_block_s)
        stats = {name: summary(v) for name, v in per_call.items()}
        for name, call in calls.items():
            r = call()
            stats[name]["nfev"] = int(r.nfev)
            stats[name]["error_at_10"] = float(np.max(np.abs(r.y[:, -1] - y_ref)))
            stats[name]["speedup_vs_scipy"] = stats["scipy RK45"]["median"] / stats[name]["median"]
        rows.append({"mode": mode, **{name: stats[name] for name in calls}})
    return {"first_call_s": first_call, "rows": rows}


def report(res):
    print(f"Lotka–Volterra, t in [0, 10], rtol = atol = {TOL:g}, plain Python fun(t, y, *args)")
    print(
        f"first call of lrnde_np.solve_ivp (Numba compiles fun + wrapper): {res['first_call_s']:.2f} s (excluded below)"
    )
    print(
        f"{'output':8s} {'solver':11s} {'median':>10s} {'IQR':>9s} {'nfev':>6s} {'err(t=10)':>10s} {'SciPy/ours':>11s}"
    )
    for row in res["rows"]:
        for name in ("ours RK45", "ours Tsit5", "scipy RK45"):
            s = row[name]
            print(
                f"{row['mode']:8s} {name:11s} {s['median'] * 1e6:8.1f}µs {s['iqr'] * 1e6:7.1f}µs {s['nfev']:6d} "
                f"{s['error_at_10']:10.2e} {s['speedup_vs_scipy']:10.1f}x"
            )
    worst = min(row["ours RK45"]["speedup_vs_scipy"] for row in res["rows"])
    print(
        f"smallest speed-up of lrnde_np RK45 over SciPy RK45: {worst:.1f}x (target ≥ {TARGET_SPEEDUP:g}x: "
        f"{'met' if worst >= TARGET_SPEEDUP else 'MISSED'})"
    )
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lrnde bench ivp", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timing blocks per measurement (default 15)")
    parser.add_argument("--quick", action="store_true", help="few short blocks")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    res = bench(repeats, 0.02 if args.quick else 0.1)
    res["worst_speedup"] = report(res)
    res["target_speedup"] = TARGET_SPEEDUP
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0
