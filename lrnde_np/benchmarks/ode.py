"""ODE solver benchmark: ``lrnde bench ode [--repeats N] [--quick] [--json PATH]``.

Two problems, each solved by

* ``solve_ode`` (the public entry point: argument checks, the compiled loop, the Solution object),
* the raw compiled loop ``lrnde_np.ode.loop.solve_loop`` with prepared arguments,
* ``scipy.integrate.solve_ivp(method="RK45")`` with a plain NumPy right-hand side,

at the same tolerances and output times:

* P1  Lotka–Volterra α=1.5, β=1, γ=3, δ=1, y0=(1, 1), t ∈ [0, 10], rtol = atol = 1e-6, 101 save points;
* P2  Chen et al.'s spiral field du/dt = W2·tanh(W1·u³ + b1) + b2, a 2-50-2 MLP with seeded parameters,
      u0 = (2, 0), t ∈ [0, 1.5], 30 save points, rtol 1e-6, atol 1e-8.

Reported per problem: the first (JIT-compiling or cache-loading) call, the steady-state median and IQR of the
per-solve time over repeat blocks (``time.perf_counter``), the NFE of each solver, the speed ratios, and the
solver overhead = solve time / (NFE × time of one RHS call made from a compiled loop), i.e. how many RHS
calls' worth of time the solver spends per RHS call it makes (1 = pure RHS time).  Finally the cold start:
the wall time of fresh ``python -c "import lrnde_np; <solve P1>"`` processes (the second one finds Numba's
on-disk cache warm).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from numba import njit

from .._types import rhs_from
from ..ode import solve_ode
from ..ode.loop import solve_loop
from ..ode.rhs import as_compiled
from ..ode.solve import control_array
from ..tableaus import get_tableau

# Targets from the issue (reported, not enforced).
TARGET_SPEEDUP = {"P1": 150.0, "P2": 30.0}
TARGET_OVERHEAD = 1.5
TARGET_COLD_S = 2.0

LV_PARAMS = np.array([1.5, 1.0, 3.0, 1.0])
SPIRAL_SEED = 0


@njit(cache=True)
def lotka_volterra(t, y, p, out):
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


def lotka_volterra_numpy(t, y, p=LV_PARAMS):
    return np.array([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def solve_p1():
    """P1 as a user would write it (also what the cold-start subprocess runs)."""
    return solve_ode(
        lotka_volterra,
        (0.0, 10.0),
        np.array([1.0, 1.0]),
        LV_PARAMS,
        method="tsit5",
        rtol=1e-6,
        atol=1e-6,
        saveat=np.linspace(0.0, 10.0, 101),
    )


def spiral_problem(seed=SPIRAL_SEED):
    """The 2-50-2 cube-input tanh MLP, its parameters (Glorot weights, small random biases) and a NumPy twin."""
    from ..nn import MLP

    mlp = MLP((2, 50, 2), "tanh", input_transform="cube")
    rng = np.random.default_rng(seed)
    p = mlp.init_params(rng)
    (W1, _, b1), (W2, _, b2) = mlp.unpack_params(p)
    b1[:] = rng.uniform(-0.5, 0.5, size=b1.shape)
    b2[:] = rng.uniform(-0.1, 0.1, size=b2.shape)
    W1n, b1n, W2n, b2n = W1.copy(), b1.copy(), W2.copy(), b2.copy()

    def spiral_numpy(t, u):
        return W2n @ np.tanh(W1n @ (u * u * u) + b1n) + b2n

    return mlp, p, spiral_numpy


def problems():
    mlp, p2, spiral_numpy = spiral_problem()
    return [
        dict(
            name="P1",
            title="Lotka-Volterra (2 states), tsit5",
            make_f=lambda: lotka_volterra,
            f_numpy=lotka_volterra_numpy,
            y0=np.array([1.0, 1.0]),
            p=LV_PARAMS.copy(),
            t_span=(0.0, 10.0),
            saveat=np.linspace(0.0, 10.0, 101),
            rtol=1e-6,
            atol=1e-6,
        ),
        dict(
            name="P2",
            title="spiral MLP 2-50-2 (cube, tanh), tsit5",
            make_f=lambda: mlp.rhs,
            f_numpy=spiral_numpy,
            y0=np.array([2.0, 0.0]),
            p=p2,
            t_span=(0.0, 1.5),
            saveat=np.linspace(0.0, 1.5, 30),
            rtol=1e-6,
            atol=1e-8,
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Timing helpers


def interleaved_blocks(fns, repeats, min_block_s):
    """Per-call times of several functions, measured in alternating blocks (round-robin), so that a change of
    machine load during the run affects all of them alike; ratios of their medians are then meaningful."""
    inner = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_block_s / max(time.perf_counter() - t0, 1e-9)))
    per_call = {name: np.empty(repeats) for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            per_call[name][r] = (time.perf_counter() - t0) / n
    return per_call, inner


def summary(per_call):
    q1, med, q3 = np.percentile(per_call, [25, 50, 75])
    return dict(median=float(med), iqr=float(q3 - q1), q1=float(q1), q3=float(q3), n_blocks=int(per_call.size))


@njit(cache=True)
def _rhs_call_loop(f_addr, t, y, p, out, n):
    """Call the RHS n times through the same first-class function pointer the solver loop uses."""
    f = rhs_from(f_addr[0], f_addr[1])
    acc = 0.0
    for i in range(n):
        f(t + 1e-9 * i, y, p, out)
        acc += out[0]
    return acc


def rhs_call_time(handle, t, y, p, repeats, n_calls):
    out = np.empty(y.size)
    _rhs_call_loop(handle.addresses, t, y, p, out, 10)
    per_call = np.empty(repeats)
    for r in range(repeats):
        t0 = time.perf_counter()
        _rhs_call_loop(handle.addresses, t, y, p, out, n_calls)
        per_call[r] = (time.perf_counter() - t0) / n_calls
    return per_call


def loop_arguments(prob):
    """What solve_ode hands the compiled loop, prepared once."""
    tab = get_tableau("tsit5")
    handle = as_compiled(prob["f"], "rhs", "f")
    t0, t1 = prob["t_span"]
    ctrl = control_array(tab, t0, t1, None, None, None, None)
    si, sj = tab.stiffness_pair
    atol = np.full(prob["y0"].size, prob["atol"])
    return handle, (
        handle.addresses,
        tab.A,
        tab.c,
        tab.btilde,
        tab.P,
        tab.order,
        si,
        sj,
        t0,
        t1,
        prob["y0"],
        prob["p"],
        prob["rtol"],
        atol,
        prob["saveat"],
        False,
        ctrl,
        True,
        100_000,
        0,
    )


# ---------------------------------------------------------------------------------------------------------


def bench_problem(prob, repeats, min_block_s):
    from scipy.integrate import solve_ivp

    res = dict(name=prob["name"], title=prob["title"])

    def ours():
        return solve_ode(
            f,
            prob["t_span"],
            prob["y0"],
            prob["p"],
            method="tsit5",
            rtol=prob["rtol"],
            atol=prob["atol"],
            saveat=prob["saveat"],
        )

    # First call: builds (P2: compiles the MLP's entry point) and compiles or cache-loads the RHS and the loop.
    t0 = time.perf_counter()
    f = prob["make_f"]()
    sol = ours()
    res["first_call_s"] = time.perf_counter() - t0
    prob = dict(prob, f=f)
    assert sol.success, sol.message
    res["nfe"] = sol.nfe
    res["accepted"] = sol.stats["accepted"]
    res["rejected"] = sol.stats["rejected"]

    handle, args = loop_arguments(prob)
    out = solve_loop(*args)
    res["loop_nfe"] = int(out[5])

    def scipy_solve():
        return solve_ivp(
            prob["f_numpy"],
            prob["t_span"],
            prob["y0"],
            method="RK45",
            rtol=prob["rtol"],
            atol=prob["atol"],
            t_eval=prob["saveat"],
        )

    ref = scipy_solve()
    res["scipy_nfe"] = int(ref.nfev)
    res["max_abs_diff_vs_scipy"] = float(np.max(np.abs(ref.y.T - sol.y)))

    times, res["calls_per_block"] = interleaved_blocks(
        {"solve_ode": ours, "loop": lambda: solve_loop(*args), "scipy_rk45": scipy_solve}, repeats, min_block_s
    )
    for key, per_call in times.items():
        res[key] = summary(per_call)
    # Speed-up within each round of blocks (robust to load drifting between rounds).
    res["speedup_per_round"] = summary(times["scipy_rk45"] / times["solve_ode"])

    n_calls = max(1000, int(0.02 / max(res["loop"]["median"] / max(res["nfe"], 1), 1e-9)))
    rhs_t = rhs_call_time(handle, prob["t_span"][0], prob["y0"], prob["p"], 3 * repeats, n_calls)
    res["rhs_call"] = summary(rhs_t)
    rhs = res["rhs_call"]["median"]
    res["speedup_solve_ode_vs_scipy"] = res["scipy_rk45"]["median"] / res["solve_ode"]["median"]
    res["speedup_loop_vs_scipy"] = res["scipy_rk45"]["median"] / res["loop"]["median"]
    res["overhead_solve_ode"] = res["solve_ode"]["median"] / (res["nfe"] * rhs)
    res["overhead_loop"] = res["loop"]["median"] / (res["nfe"] * rhs)
    res["target_speedup"] = TARGET_SPEEDUP[prob["name"]]
    return res


COLD_SCRIPT = (
    "import time; t0 = time.perf_counter(); import lrnde_np; t1 = time.perf_counter(); "
    "from lrnde_np.benchmarks.ode import solve_p1; s = solve_p1(); t2 = time.perf_counter(); "
    "assert s.success; print(f'{t1 - t0:.4f} {t2 - t1:.4f}')"
)


def _fresh_process(what, numba_cache_dir=None):
    """Run COLD_SCRIPT in a new interpreter (optionally with its own Numba cache directory): its wall time,
    import time and first-solve time."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if numba_cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = numba_cache_dir
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", COLD_SCRIPT], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{what} subprocess failed:\n{proc.stderr}")
    import_s, solve_s = (float(v) for v in proc.stdout.split()[-2:])
    return dict(wall_s=wall, import_s=import_s, first_solve_s=solve_s)


def cold_compile():
    """Wall time of solving P1 in a fresh process with an empty Numba cache: the full JIT compile."""
    import tempfile

    with tempfile.TemporaryDirectory() as cache_dir:
        return _fresh_process("cold-compile", cache_dir)


def cold_start(n_processes=3):
    """Wall time of fresh interpreters importing lrnde_np and solving P1; the first may fill Numba's cache."""
    return [_fresh_process("cold-start") for _ in range(n_processes)]


# ---------------------------------------------------------------------------------------------------------


def _fmt_time(s):
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.2f} µs"
    return f"{s * 1e9:.1f} ns"


def _ok(flag):
    return "meets target" if flag else "MISSES target"


def report(results, cold, compile_run=None):
    lines = []
    for r in results:
        lines.append(f"{r['name']}: {r['title']}")
        lines.append(f"  first call (JIT compile / cache load): {_fmt_time(r['first_call_s'])}")
        lines.append(f"  {'':<22}{'median':>12}{'IQR':>12}{'NFE':>8}")
        for key, label, nfe in [
            ("solve_ode", "solve_ode", r["nfe"]),
            ("loop", "compiled loop", r["loop_nfe"]),
            ("scipy_rk45", "SciPy RK45 (NumPy RHS)", r["scipy_nfe"]),
        ]:
            s = r[key]
            lines.append(f"  {label:<22}{_fmt_time(s['median']):>12}{_fmt_time(s['iqr']):>12}{nfe:>8}")
        lines.append(f"  one RHS call (from a compiled loop): {_fmt_time(r['rhs_call']['median'])}")
        lines.append(
            f"  steps: {r['accepted']} accepted, {r['rejected']} rejected; max |ours - RK45| = "
            f"{r['max_abs_diff_vs_scipy']:.2e}"
        )
        lines.append(
            f"  speed-up vs RK45 (ratio of medians): solve_ode {r['speedup_solve_ode_vs_scipy']:.1f}x, "
            f"loop "
            f"{r['speedup_loop_vs_scipy']:.1f}x  (target >= {r['target_speedup']:.0f}x: "
            f"{_ok(r['speedup_solve_ode_vs_scipy'] >= r['target_speedup'])}); per round of blocks: "
            f"median {r['speedup_per_round']['median']:.1f}x, IQR "
            f"{r['speedup_per_round']['q1']:.1f}-{r['speedup_per_round']['q3']:.1f}x"
        )
        lines.append(
            f"  overhead = time / (NFE x RHS call): solve_ode {r['overhead_solve_ode']:.2f}, loop "
            f"{r['overhead_loop']:.2f}  (target <= {TARGET_OVERHEAD}: "
            f"{_ok(r['overhead_solve_ode'] <= TARGET_OVERHEAD)})"
        )
        lines.append("")
    if cold:
        lines.append("cold start: python -c 'import lrnde_np; solve P1' in fresh processes")
        for k, c in enumerate(cold):
            lines.append(
                f"  process {k + 1}: wall {c['wall_s']:.3f} s  (import {c['import_s']:.3f} s, first "
                f"solve {c['first_solve_s']:.3f} s)"
            )
        second = cold[1]["wall_s"] if len(cold) > 1 else cold[0]["wall_s"]
        lines.append(f"  second process: {second:.3f} s  (target < {TARGET_COLD_S} s: {_ok(second < TARGET_COLD_S)})")
    if compile_run:
        lines.append(
            f"full JIT compile (fresh process, empty Numba cache): wall {compile_run['wall_s']:.2f} s "
            f"(import {compile_run['import_s']:.2f} s, first solve {compile_run['first_solve_s']:.2f} s)"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lrnde bench ode", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=25, help="timing blocks per measurement (default 25)")
    parser.add_argument("--quick", action="store_true", help="few short blocks, one cold-start process pair")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start subprocesses")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="skip the empty-cache compile run (on by default unless --quick; ~20-30 s)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be a positive integer")
    repeats = 5 if args.quick else args.repeats
    min_block_s = 0.02 if args.quick else 0.1

    import numba
    import scipy

    results = [bench_problem(prob, repeats, min_block_s) for prob in problems()]
    cold = [] if args.no_cold else cold_start(2 if args.quick else 3)
    compile_run = None if (args.quick or args.no_compile or args.no_cold) else cold_compile()
    text = report(results, cold, compile_run)
    print(
        f"lrnde bench ode  (numpy {np.__version__}, numba {numba.__version__}, scipy {scipy.__version__}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n"
    )
    print(text)
    if args.json:
        payload = dict(
            problems=results,
            cold_start=cold,
            cold_compile=compile_run,
            repeats=repeats,
            min_block_s=min_block_s,
            versions=dict(
                numpy=np.__version__, numba=numba.__version__, scipy=scipy.__version__, python=sys.version.split()[0]
            ),
            targets=dict(speedup=TARGET_SPEEDUP, overhead=TARGET_OVERHEAD, cold_start_s=TARGET_COLD_S),
        )
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
