"""Ensemble benchmark: ``lrnde bench ensemble [--n N] [--repeats R] [--gpu-n N] [--quick] [--json PATH]``.

Two ensembles, each solved

* by a Python loop over the one-trajectory solver (``solve_ode`` / ``solve_sde``, one call per trajectory),
* by the CPU ensemble (:mod:`lrnde_np.ensemble`, Numba ``prange``) on 1 thread and on all threads,
* by the GPU kernel (``backend="cuda"``) when a GPU is present — reported as skipped otherwise, with the reason:

* LV   10⁴ Lotka–Volterra trajectories, parameters (α, β, γ, δ) ~ U[0.5, 2]⁴ and y0 ~ U[0.5, 2]² (seeded),
       t ∈ [0, 10], Tsit5, rtol = atol = 1e-6, saved at t = 0, 1, …, 10;
* GBM  10⁴ geometric Brownian motion paths dX = μX dt + σX dW, μ = 1, σ = 0.5, X0 = 1, t ∈ [0, 1], SOSRI,
       rtol = atol = 1e-2 (solve_sde's defaults), saved at t = 1, path i from seed i; and the same with SRIW1
       ("GBM-sriw1"), whose error estimate lets it take ~6x fewer steps here (SOSRI: ~425 steps per path).

Reported: the median wall time over the repeats (``time.perf_counter``; compilation and cache loading are done
first, outside the timings; the loop and the two prange runs are interleaved, so that a change of the machine's
load hits all three alike), trajectories per second, the best (minimum) times, the process CPU time per
trajectory, and the ratios prange(all threads) / prange(1 thread) and
prange(all threads) / Python loop, against the issue's targets (≥ 1.8x on 2 cores; ≥ 4x for LV and ≥ 15x for
GBM over the loop; on a GPU ≥ 50x the CPU ensemble for 10⁵ LV trajectories).  Every ensemble row is also
compared with the loop's solve (values, step counts): the speed is for the same answers.  The 1-minute load
average is printed: on a shared machine the thread scaling is only as good as the free cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numba
import numpy as np
from numba import njit

from ..ensemble import CUDAUnavailableError, solve_ode_ensemble, solve_sde_ensemble
from ..ode import solve_ode
from ..sde import solve_sde

TARGETS = {"threads": 1.8, "LV_vs_loop": 4.0, "GBM_vs_loop": 15.0, "gpu_vs_cpu": 50.0}
MU, SIGMA = 1.0, 0.5


@njit(cache=True)
def lotka_volterra(t, y, p, out):
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


@njit(cache=True)
def gbm_drift(t, x, p, out):
    for i in range(x.size):
        out[i] = p[0] * x[i]


@njit(cache=True)
def gbm_diffusion(t, x, p, out):
    for i in range(x.size):
        out[i] = p[1] * x[i]


def lv_problem(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, (n, 2)), rng.uniform(0.5, 2.0, (n, 4))


LV_KW = dict(method="tsit5", rtol=1e-6, atol=1e-6)
LV_SPAN = (0.0, 10.0)
LV_SAVEAT = np.linspace(0.0, 10.0, 11)
GBM_KW = dict(method="sosri", rtol=1e-2, atol=1e-2)
GBM_SPAN = (0.0, 1.0)


def _median_time(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def _with_threads(k, fn):
    before = numba.get_num_threads()
    numba.set_num_threads(k)
    try:
        return fn()
    finally:
        numba.set_num_threads(before)


def _interleaved(fns, repeats):
    """Time several ways of doing the same work, interleaved (one run of each per repeat, the order rotating), so
    that a change in the machine's load hits them alike.  Returns name -> dict(median, min wall seconds,
    median process CPU seconds) and name -> the last run's result."""
    names = list(fns)
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    outs = {}
    for r in range(repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            c = time.process_time()
            t = time.perf_counter()
            outs[k] = fns[k]()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    stats = {
        k: dict(median=float(np.median(wall[k])), min=float(np.min(wall[k])), cpu=float(np.median(cpu[k])))
        for k in names
    }
    return stats, outs


def _timed_row(loop, ens, repeats, max_threads):
    """Loop, prange on 1 thread and on all threads, interleaved; the row's timings and the two results."""
    stats, outs = _interleaved(
        {
            "loop": loop,
            "prange_1": lambda: _with_threads(1, ens),
            "prange_all": lambda: _with_threads(max_threads, ens),
        },
        repeats,
    )
    row = {}
    for k, v in stats.items():
        row[f"{k}_s"] = v["median"]
        row[f"{k}_min_s"] = v["min"]
        row[f"{k}_cpu_s"] = v["cpu"]
    return row, outs["loop"], outs["prange_all"]


def lv_loop(Y0, P):
    y = np.empty((Y0.shape[0], LV_SAVEAT.size, 2))
    counts = np.empty((Y0.shape[0], 3), np.int64)
    for i in range(Y0.shape[0]):
        sol = solve_ode(lotka_volterra, LV_SPAN, Y0[i], P[i], saveat=LV_SAVEAT, **LV_KW)
        y[i] = sol.y
        counts[i] = sol.stats["nfe"], sol.stats["accepted"], sol.stats["rejected"]
    return y, counts


def gbm_loop(X0, P, seeds, kw=GBM_KW):
    x = np.empty((X0.shape[0], 1, 1))
    counts = np.empty((X0.shape[0], 3), np.int64)
    for i in range(X0.shape[0]):
        sol = solve_sde(gbm_drift, gbm_diffusion, GBM_SPAN, X0[i], P, saveat=[1.0], seed=int(seeds[i]), **kw)
        x[i] = sol.x
        counts[i] = sol.stats["nfe"], sol.stats["accepted"], sol.stats["rejected"]
    return x, counts


def _agreement(loop_out, ens):
    """(rows whose values differ beyond 1e-12 relative or whose step counts differ, max relative difference)."""
    y, counts = loop_out
    mine = np.column_stack([ens.stats["nfe"], ens.stats["accepted"], ens.stats["rejected"]])
    rel = np.abs(ens.y - y) / np.maximum(np.abs(y), 1e-300)
    bad = np.any(rel.reshape(len(y), -1) > 1e-12, axis=1) | np.any(mine != counts, axis=1)
    return int(bad.sum()), float(rel.max())


def _cuda_or_reason(fn):
    try:
        return fn(), None
    except CUDAUnavailableError as exc:
        return None, str(exc)


def run(n, repeats, gpu_n, seed=0):
    max_threads = numba.config.NUMBA_NUM_THREADS
    results = {
        "n": n,
        "repeats": repeats,
        "threads": max_threads,
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "problems": {},
    }

    # --- Lotka–Volterra
    Y0, P = lv_problem(n, seed)
    lv_ens = lambda: solve_ode_ensemble(lotka_volterra, LV_SPAN, Y0, P, saveat=LV_SAVEAT, **LV_KW)
    lv_ens()  # compile / load, start the thread pool
    lv_loop(Y0[:4], P[:4])
    row, loop_out, ens = _timed_row(lambda: lv_loop(Y0, P), lv_ens, repeats, max_threads)
    bad, rel = _agreement(loop_out, ens)
    row.update(
        mismatched_rows=bad,
        max_rel_diff=rel,
        mean_accepted=float(ens.stats["accepted"].mean()),
        mean_rejected=float(ens.stats["rejected"].mean()),
    )
    # GPU: the same n, and the 10^5 against the CPU ensemble.
    Yg, Pg = lv_problem(gpu_n, seed + 1)

    def gpu():
        run_gpu = lambda: solve_ode_ensemble(lotka_volterra, LV_SPAN, Yg, Pg, saveat=LV_SAVEAT, backend="cuda", **LV_KW)
        run_gpu()  # compile
        t_gpu, _ = _median_time(run_gpu, repeats)
        t_cpu, _ = _with_threads(
            max_threads,
            lambda: _median_time(
                lambda: solve_ode_ensemble(lotka_volterra, LV_SPAN, Yg, Pg, saveat=LV_SAVEAT, **LV_KW), 1
            ),
        )
        return dict(n=gpu_n, gpu_s=t_gpu, cpu_all_s=t_cpu, gpu_vs_cpu=t_cpu / t_gpu)

    row["gpu"], row["gpu_skipped"] = _cuda_or_reason(gpu)
    results["problems"]["LV"] = row

    # --- geometric Brownian motion: SOSRI (solve_sde's default) and SRIW1 (whose error estimate allows ~6x
    # fewer steps on this problem, so the per-call overhead weighs more in the loop).
    X0 = np.ones((n, 1))
    pg = np.array([MU, SIGMA])
    seeds = np.arange(n)
    for name, method in (("GBM", "sosri"), ("GBM-sriw1", "sriw1")):
        kw = dict(GBM_KW, method=method)
        gbm_ens = lambda kw=kw: solve_sde_ensemble(
            gbm_drift, gbm_diffusion, GBM_SPAN, X0, pg, saveat=[1.0], seeds=seeds, **kw
        )
        gbm_ens()
        gbm_loop(X0[:4], pg, seeds[:4], kw)
        row, loop_out, ens = _timed_row(lambda kw=kw: gbm_loop(X0, pg, seeds, kw), gbm_ens, repeats, max_threads)
        t_all = row["prange_all_s"]
        ens_counts = type(ens)(
            t=ens.t,
            y=ens.y,
            status=ens.status,
            t_end=ens.t_end,
            backend=ens.backend,
            stats=dict(nfe=ens.stats["nfe"], accepted=ens.stats["accepted"], rejected=ens.stats["rejected"]),
        )
        bad, rel = _agreement(loop_out, ens_counts)
        row.update(
            method=method,
            mismatched_rows=bad,
            max_rel_diff=rel,
            mean_accepted=float(ens.stats["accepted"].mean()),
            mean_rejected=float(ens.stats["rejected"].mean()),
        )

        def gpu_sde(kw=kw, t_all=t_all):
            run_gpu = lambda: solve_sde_ensemble(
                gbm_drift, gbm_diffusion, GBM_SPAN, X0, pg, saveat=[1.0], seeds=seeds, backend="cuda", **kw
            )
            run_gpu()
            t_gpu, _ = _median_time(run_gpu, repeats)
            return dict(n=n, gpu_s=t_gpu, gpu_vs_cpu=t_all / t_gpu)

        row["gpu"], row["gpu_skipped"] = _cuda_or_reason(gpu_sde)
        results["problems"][name] = row

    for r in results["problems"].values():
        r["per_s_loop"] = n / r["loop_s"]
        r["per_s_prange_1"] = n / r["prange_1_s"]
        r["per_s_prange_all"] = n / r["prange_all_s"]
        r["threads_speedup"] = r["prange_1_s"] / r["prange_all_s"]
        r["vs_loop"] = r["loop_s"] / r["prange_all_s"]
        r["vs_loop_1_thread"] = r["loop_s"] / r["prange_1_s"]
        r["threads_speedup_best"] = r["prange_1_min_s"] / r["prange_all_min_s"]
        r["vs_loop_best"] = r["loop_min_s"] / r["prange_all_min_s"]
        r["cpu_us_per_traj"] = {k: 1e6 * r[f"{k}_cpu_s"] / n for k in ("loop", "prange_1", "prange_all")}
    results["loadavg_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return results


def report(res):
    print(
        f"ensembles of {res['n']} trajectories; median of {res['repeats']} runs; {res['threads']} Numba threads on "
        f"{res['cpu_count']} CPUs (1-min load average at start {res['loadavg_1min']})"
    )
    print(
        f"{'problem':>10} {'loop /s':>10} {'prange×1 /s':>12} {'prange×all /s':>14} {'threads':>8} {'vs loop':>8}"
        f" {'target':>7} {'rows ≠':>7} {'steps':>7}"
    )
    for name, r in res["problems"].items():
        tgt = TARGETS[f"{name.split('-')[0]}_vs_loop"]
        print(
            f"{name:>10} {r['per_s_loop']:10.0f} {r['per_s_prange_1']:12.0f} {r['per_s_prange_all']:14.0f} "
            f"{r['threads_speedup']:7.2f}x {r['vs_loop']:7.1f}x {tgt:6.0f}x {r['mismatched_rows']:7d} "
            f"{r['mean_accepted']:7.1f}"
        )
    print("best of the runs (min wall time), and process CPU time per trajectory (µs; all threads summed):")
    for name, r in res["problems"].items():
        c = r["cpu_us_per_traj"]
        print(
            f"{name:>10} threads {r['threads_speedup_best']:5.2f}x  vs loop {r['vs_loop_best']:6.1f}x   CPU µs/traj: "
            f"loop {c['loop']:8.1f}  prange×1 {c['prange_1']:8.1f}  prange×all {c['prange_all']:8.1f}"
        )
    print(f"1-min load average at the end {res['loadavg_1min_end']}")
    print(
        f"targets: prange(all threads) >= {TARGETS['threads']}x prange(1 thread) on 2 cores; "
        f">= {TARGETS['LV_vs_loop']}x (LV) and >= {TARGETS['GBM_vs_loop']}x (GBM) the Python loop"
    )
    for name, r in res["problems"].items():
        if r["gpu"] is None:
            print(f"{name} GPU: skipped — {r['gpu_skipped']}")
            continue
        g = r["gpu"]
        print(
            f"{name} GPU: {g['n']} trajectories in {g['gpu_s']:.3f} s, {g['gpu_vs_cpu']:.1f}x the CPU ensemble "
            f"(target >= {TARGETS['gpu_vs_cpu']}x for LV)"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lrnde bench ensemble", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="trajectories per ensemble (default 10^4)")
    ap.add_argument("--gpu-n", type=int, default=100_000, help="LV trajectories for the GPU comparison (10^5)")
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats (median reported; default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1000 trajectories, 1 repeat, GPU 10^4")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.gpu_n = 1000, 1, 10_000
    if args.n < 4 or args.repeats < 1:
        ap.error("--n must be >= 4 and --repeats >= 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaExperimentalFeatureWarning)
        res = run(args.n, args.repeats, args.gpu_n, args.seed)
    report(res)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0
