"""Adjoint benchmark (``lrnde bench adjoint``): problem P2, the spiral 2-50-2 MLP.

P2: ``MLP([2, 50, 2], ["tanh"], input_transform="cube")`` with seeded parameters, y0 = (2, 0), t ∈ [0, 1.5],
30 save points, loss Σ_k ‖y(t_k) − y_true(t_k)‖² against the true spiral (``lrnde_np.data.spiral_data``),
rtol 1e-6, atol 1e-8 for the forward and the backward solves.

Measured, each as the median (and min) over ``--repeats`` calls after a first call timed on its own (the
first call of a process compiles or loads Numba's cache: "first call"):

* forward: ``solve_ode(..., record_states=True)``;
* gradient (the backward pass given the forward solution) for each adjoint: discrete, backsolve,
  backsolve+seminorm, interpolating, quadrature; its ratio to the forward, backward NFE, and its error
  ‖g − g_ref‖/‖g_ref‖ against a reference gradient: the discrete adjoint of a rtol = atol = 1e-12 solve,
  itself compared with central finite differences of such tight solves on a few random coordinates;
* the cost of one call of the right-hand side, of its VJP and of backsolve's augmented right-hand side,
  timed in a compiled loop, and the part of each gradient's time they explain (NFE × cost per call);
* memory: tracemalloc peak (which sees Numba's array allocations) of the backsolve and discrete adjoints
  against the number of forward steps, over longer and longer spans saved at the endpoints only.

Issue #3's targets are checked and printed; where one is missed, ``cProfile`` shows where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import time
import tracemalloc

import numpy as np
from numba import njit

from .._types import handle_as_floats, rhs_from, vjp_from
from ..adjoint import AdjointSolveFailed, backsolve_adjoint, discrete_adjoint, interpolating_adjoint, quadrature_adjoint
from ..adjoint.continuous import _backsolve_context, _handle
from ..data import spiral_data
from ..nn import MLP
from ..ode import solve_ode
from ..ode.rhs import as_compiled

RTOL, ATOL = 1e-6, 1e-8
T_END = 1.5
N_SAVE = 30
Y0 = (2.0, 0.0)

TARGETS = {
    "discrete_ms": 0.3,  # discrete adjoint ≤ 0.3 ms
    "discrete_ratio": 3.0,  # and ≤ 3x the forward
    "backsolve_ms": 1.0,  # backsolve ≤ 1 ms
    "backsolve_memory": 1.2,  # 10x forward steps → ≤ 1.2x peak memory
}


class P2:
    """The problem: field, parameters, save times, target and the loss gradient."""

    def __init__(self, seed=0, t_end=T_END, n_save=N_SAVE):
        self.mlp = MLP([2, 50, 2], ["tanh"], input_transform="cube")
        self.p = self.mlp.init_params(seed)
        self.y0 = np.array(Y0)
        self.t_span = (0.0, float(t_end))
        data = spiral_data(n_save, t_end)
        self.saveat = data.t
        self.target = data.y
        self.f = as_compiled(self.mlp.rhs, "rhs", "f")
        self.vjp = as_compiled(self.mlp.vjp, "vjp", "f_vjp")
        self.value_vjp = as_compiled(self.mlp.value_vjp, "value_vjp", "f_value_vjp")

    def forward(self, rtol=RTOL, atol=ATOL, record=True, y0=None, p=None):
        return solve_ode(
            self.f,
            self.t_span,
            self.y0 if y0 is None else y0,
            self.p if p is None else p,
            rtol=rtol,
            atol=atol,
            saveat=self.saveat,
            record_states=record,
        )

    def loss(self, sol):
        return float(np.sum((sol.y - self.target) ** 2))

    def loss_grad(self, sol):
        return 2.0 * (sol.y - self.target)


def adjoint_calls(pb):
    """name -> gradient(sol, grad_y) for every adjoint benchmarked."""
    f, vjp = pb.f, pb.vjp
    return {
        "discrete": lambda sol, g: discrete_adjoint(sol, vjp, g),
        "backsolve": lambda sol, g: backsolve_adjoint(f, vjp, sol, g, RTOL, ATOL),
        "backsolve+seminorm": lambda sol, g: backsolve_adjoint(f, vjp, sol, g, RTOL, ATOL, seminorm=True),
        "backsolve+fused": lambda sol, g: backsolve_adjoint(f, vjp, sol, g, RTOL, ATOL, f_value_vjp=pb.value_vjp),
        "interpolating": lambda sol, g: interpolating_adjoint(vjp, sol, g, RTOL, ATOL),
        "quadrature": lambda sol, g: quadrature_adjoint(vjp, sol, g, RTOL, ATOL),
    }


def timed(fn, repeats):
    """(first-call seconds, median seconds, min seconds, last result)."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t)
    return first, float(np.median(samples)), float(np.min(samples)), out


# ---------------------------------------------------------------------------------------------------------
# Cost of one call, timed inside compiled code (no Python in the loop)


@njit(cache=True)
def _loop_rhs(addr, t, y, p, n_calls):
    f = rhs_from(addr[0], addr[1])
    out = np.empty(y.size)
    for _ in range(n_calls):
        f(t, y, p, out)
    return out[0]


@njit(cache=True)
def _loop_vjp(addr, t, y, p, a, n_calls):
    f = vjp_from(addr[0], addr[1])
    out_y = np.empty(y.size)
    out_p = np.empty(p.size)
    for _ in range(n_calls):
        f(t, y, p, a, out_y, out_p)
    return out_y[0]


def per_call_us(pb, n_calls=20000, rounds=5):
    """Median over rounds of the µs per call of f, f_vjp and backsolve's augmented RHS [f, -aᵀf_z, -aᵀf_θ]."""
    y, p = pb.y0, pb.p
    a = np.array([0.3, -0.2])
    aug = _handle("backsolve")
    ctx = _backsolve_context(pb.f, pb.vjp, y.size, p)
    Y = np.concatenate([y, a, np.zeros(p.size)])
    fused = _handle("backsolve_fused")
    ctx_fused = np.concatenate([handle_as_floats(pb.value_vjp), [0.0, 0.0, y.size, p.size], p])
    cases = {
        "rhs": lambda k: _loop_rhs(np.array(pb.f.addresses), 0.0, y, p, k),
        "vjp": lambda k: _loop_vjp(np.array(pb.vjp.addresses), 0.0, y, p, a, k),
        "backsolve_aug_rhs": lambda k: _loop_rhs(np.array(aug.addresses), 0.0, Y, ctx, k),
        "backsolve_fused_aug_rhs": lambda k: _loop_rhs(np.array(fused.addresses), 0.0, Y, ctx_fused, k),
    }
    out = {}
    for name, run in cases.items():
        run(10)
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            run(n_calls)
            samples.append((time.perf_counter() - t) / n_calls * 1e6)
        out[name] = float(np.median(samples))
        out[name + "_min"] = float(np.min(samples))
    return out


def explained_ms(name, res, cost):
    """The part of a gradient's time spent in the user's functions: evaluations × µs per evaluation."""
    if name == "discrete":
        return res.nfe_backward * cost["vjp"] / 1e3
    if name == "backsolve+fused":
        return res.nfe_backward * cost["backsolve_fused_aug_rhs"] / 1e3
    if name.startswith("backsolve"):
        return res.nfe_backward * cost["backsolve_aug_rhs"] / 1e3
    return res.nfe_backward * cost["vjp"] / 1e3  # interpolating/quadrature: a VJP (+ interpolation) each


# ---------------------------------------------------------------------------------------------------------
# Reference gradient


def reference_gradient(pb, n_fd=6, seed=1, h=3e-4):
    """The discrete adjoint of a rtol = atol = 1e-12 solve, and its largest relative disagreement with
    fourth-order central differences of such solves on ``n_fd`` random coordinates of (y0, p)."""
    tight = pb.forward(1e-12, 1e-12)
    res = discrete_adjoint(tight, pb.vjp, pb.loss_grad(tight))
    g = np.concatenate([res.grad_y0, res.grad_p])
    x0 = np.concatenate([pb.y0, pb.p])
    n = pb.y0.size

    def L(x):
        return pb.loss(pb.forward(1e-12, 1e-12, record=False, y0=x[:n], p=x[n:]))

    rng = np.random.default_rng(seed)
    coords = np.concatenate([[0, 1], rng.choice(np.arange(n, x0.size), size=max(n_fd - 2, 0), replace=False)])
    worst = 0.0
    for i in coords:
        e = np.zeros_like(x0)
        e[i] = h
        fd = (8.0 * (L(x0 + e) - L(x0 - e)) - (L(x0 + 2 * e) - L(x0 - 2 * e))) / (12.0 * h)
        worst = max(worst, abs(fd - g[i]) / np.max(np.abs(g)))
    return g, float(worst), len(tight.steps)


# ---------------------------------------------------------------------------------------------------------
# Memory


def peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def memory_scan(seed, spans):
    """Peak traced memory vs forward steps; P2 over longer spans, saved at t0 and t_end only."""
    rows = []
    for t_end in spans:
        pb = P2(seed, t_end=t_end, n_save=2)
        sol = pb.forward()
        plain = pb.forward(record=False)
        g = pb.loss_grad(sol)
        try:
            backsolve_adjoint(pb.f, pb.vjp, plain, g, RTOL, ATOL)  # warm
        except AdjointSolveFailed as exc:
            # Re-solving z backwards is unstable for this field over long spans (the backward z blows up
            # near t_end ≈ 100 for seed 0): backsolve's known weakness, reported rather than measured.
            print(f"memory scan: t_end={t_end:g}: {exc}", file=sys.stderr)
            continue
        discrete_adjoint(sol, pb.vjp, g)
        rows.append(
            dict(
                t_end=float(t_end),
                forward_steps=len(sol.steps),
                backsolve_adjoint_peak=peak_bytes(lambda: backsolve_adjoint(pb.f, pb.vjp, plain, g, RTOL, ATOL)),
                backsolve_gradient_peak=peak_bytes(
                    lambda: backsolve_adjoint(pb.f, pb.vjp, pb.forward(record=False), g, RTOL, ATOL)
                ),
                discrete_adjoint_peak=peak_bytes(lambda: discrete_adjoint(sol, pb.vjp, g)),
                discrete_gradient_peak=peak_bytes(lambda: discrete_adjoint(pb.forward(), pb.vjp, g)),
                backward_steps=int(backsolve_adjoint(pb.f, pb.vjp, plain, g, RTOL, ATOL).stats["accepted"]),
                recorded_bytes=int(
                    sum(
                        a.nbytes
                        for a in (
                            sol.steps.t,
                            sol.steps.dt,
                            sol.steps.error_estimate,
                            sol.steps.stiffness_estimate,
                            sol.steps.y,
                            sol.steps.K,
                        )
                    )
                ),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------------------


KERNELS = ("discrete_sweep", "backward_sweep")  # the compiled sweeps the adjoints hand their work to


def profile_call(fn, calls=200, top=12):
    """cProfile of ``calls`` calls: (text of the top entries by own time, per-call ms in total / inside the
    compiled sweep / in Python around it)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    total = max(ct for (_, _, _, ct, _) in stats.stats.values())
    kernel = sum(tt for (fname, _, func), (_, _, tt, _, _) in stats.stats.items() if func in KERNELS)
    split = dict(
        total_ms=total / calls * 1e3, compiled_sweep_ms=kernel / calls * 1e3, python_ms=(total - kernel) / calls * 1e3
    )
    return buf.getvalue(), split


def run(seed=0, repeats=50, memory=True, spans=(1.5, 15.0, 80.0), profile=True, n_fd=6):
    t_setup = time.perf_counter()
    pb = P2(seed)
    setup_s = time.perf_counter() - t_setup  # includes compiling this MLP's entry points
    first, med, best, sol = timed(pb.forward, repeats)
    assert sol.success, sol.message
    forward = dict(
        first_call_ms=first * 1e3,
        median_ms=med * 1e3,
        min_ms=best * 1e3,
        steps=len(sol.steps),
        nfe=sol.nfe,
        setup_s=setup_s,
    )
    g_y = pb.loss_grad(sol)
    ref, ref_fd_err, ref_steps = reference_gradient(pb, n_fd=n_fd)
    cost = per_call_us(pb)
    adjoints = {}
    for name, call in adjoint_calls(pb).items():
        first, med, best, res = timed(lambda: call(sol, g_y), repeats)
        g = np.concatenate([res.grad_y0, res.grad_p])
        adjoints[name] = dict(
            first_call_ms=first * 1e3,
            median_ms=med * 1e3,
            min_ms=best * 1e3,
            ratio_to_forward=med / (forward["median_ms"] / 1e3),
            rel_error=float(np.linalg.norm(g - ref) / np.linalg.norm(ref)),
            nfe_backward=int(res.nfe_backward),
            stats=res.stats,
            explained_ms=explained_ms(name, res, cost),
        )
    mem = memory_scan(seed, spans) if memory else []
    targets = {
        "discrete_ms": (adjoints["discrete"]["median_ms"], TARGETS["discrete_ms"]),
        "discrete_ratio": (adjoints["discrete"]["ratio_to_forward"], TARGETS["discrete_ratio"]),
        "backsolve_ms": (adjoints["backsolve+fused"]["median_ms"], TARGETS["backsolve_ms"]),
    }
    if len(mem) >= 2:
        short = mem[0]
        long_ = max(mem, key=lambda r: r["forward_steps"])
        targets["backsolve_memory"] = (
            long_["backsolve_adjoint_peak"] / short["backsolve_adjoint_peak"],
            TARGETS["backsolve_memory"],
        )
    met = {k: bool(v <= lim) for k, (v, lim) in targets.items()}
    profiles = {}
    if profile:
        for key, name in (("discrete_ms", "discrete"), ("discrete_ratio", "discrete"), ("backsolve_ms", "backsolve")):
            if not met[key] and name not in profiles:
                call = adjoint_calls(pb)[name]
                text, split = profile_call(lambda: call(sol, g_y))
                split["in_f_vjp_ms"] = adjoints[name]["explained_ms"]
                profiles[name] = dict(text=text, split=split)
    return dict(
        problem=dict(
            name="P2",
            widths=[2, 50, 2],
            activation="tanh",
            input_transform="cube",
            seed=seed,
            y0=list(Y0),
            t_span=[0.0, T_END],
            n_save=N_SAVE,
            rtol=RTOL,
            atol=ATOL,
            loss="sum of squares vs spiral_data",
            n_params=int(pb.p.size),
        ),
        environment=dict(
            python=platform.python_version(),
            numpy=np.__version__,
            numba=__import__("numba").__version__,
            machine=platform.machine(),
            cpus=os.cpu_count(),
            repeats=repeats,
        ),
        forward=forward,
        adjoints=adjoints,
        per_call_us=cost,
        reference=dict(
            method="discrete adjoint of a rtol=atol=1e-12 solve",
            steps=ref_steps,
            fd_check_max_rel_error=ref_fd_err,
            fd_coordinates=n_fd,
        ),
        memory=mem,
        targets={k: dict(value=v, limit=lim, met=met[k]) for k, (v, lim) in targets.items()},
        profiles=profiles,
    )


def format_report(r):
    fw = r["forward"]
    lines = [
        f"P2 spiral 2-50-2 (cube, tanh), {r['problem']['n_params']} params, t in [0, {T_END}], "
        f"{N_SAVE} save points, rtol {RTOL:g}, atol {ATOL:g}; medians over {r['environment']['repeats']} calls",
        f"forward solve_ode(record_states=True): {fw['median_ms']:.3f} ms (min {fw['min_ms']:.3f}), "
        f"{fw['steps']} steps, {fw['nfe']} f-evals; first call {fw['first_call_ms']:.1f} ms; "
        f"MLP setup {fw['setup_s']:.2f} s",
        "",
        f"{'adjoint':<20}{'median ms':>10}{'min ms':>9}{'x fwd':>7}{'rel. error':>12}{'bwd NFE':>9}"
        f"{'in f/vjp ms':>13}{'first ms':>10}",
    ]
    for name, a in r["adjoints"].items():
        lines.append(
            f"{name:<20}{a['median_ms']:>10.3f}{a['min_ms']:>9.3f}{a['ratio_to_forward']:>7.2f}"
            f"{a['rel_error']:>12.2e}{a['nfe_backward']:>9d}{a['explained_ms']:>13.3f}"
            f"{a['first_call_ms']:>10.1f}"
        )
    ref = r["reference"]
    c = r["per_call_us"]
    lines += [
        "",
        f"reference gradient: {ref['method']} ({ref['steps']} steps); vs finite differences on "
        f"{ref['fd_coordinates']} coordinates: max rel. error {ref['fd_check_max_rel_error']:.1e}",
        f"cost per call (compiled loop, median/min): rhs {c['rhs']:.2f}/{c['rhs_min']:.2f} us, "
        f"vjp {c['vjp']:.2f}/{c['vjp_min']:.2f} us, backsolve augmented rhs "
        f"{c['backsolve_aug_rhs']:.2f}/{c['backsolve_aug_rhs_min']:.2f} us",
        "  ('in f/vjp ms' = backward NFE x median cost per call: the part of the time spent in the field)",
    ]
    if r["memory"]:
        lines += [
            "",
            f"{'t_end':>7}{'fwd steps':>10}{'backsolve':>11}{'bs+fwd':>9}{'discrete':>10}"
            f"{'disc+fwd':>10}{'recorded':>10}   (tracemalloc peak bytes)",
        ]
        for m in r["memory"]:
            lines.append(
                f"{m['t_end']:>7g}{m['forward_steps']:>10d}{m['backsolve_adjoint_peak']:>11d}"
                f"{m['backsolve_gradient_peak']:>9d}{m['discrete_adjoint_peak']:>10d}"
                f"{m['discrete_gradient_peak']:>10d}{m['recorded_bytes']:>10d}"
            )
    lines += ["", "targets (issue #3):"]
    for k, t in r["targets"].items():
        lines.append(f"  {k:<18} {t['value']:.3f} <= {t['limit']:g}: {'met' if t['met'] else 'MISSED'}")
    for name, prof in r["profiles"].items():
        sp = prof["split"]
        lines += [
            "",
            f"where the {name} adjoint's time goes (cProfile, 200 calls; per call): total "
            f"{sp['total_ms']:.3f} ms = compiled sweep {sp['compiled_sweep_ms']:.3f} ms + Python "
            f"{sp['python_ms']:.3f} ms; of the sweep, ~{sp['in_f_vjp_ms']:.3f} ms are the field's own "
            f"evaluations (NFE x cost per call)",
            prof["text"].rstrip(),
        ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="lrnde bench adjoint", description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=50, help="timed calls per measurement (median reported)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the MLP parameters")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory scan")
    ap.add_argument("--no-profile", action="store_true", help="no cProfile even where a target is missed")
    ap.add_argument("--spans", type=float, nargs="+", default=[1.5, 15.0, 80.0], help="t_end values of the memory scan")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    r = run(
        seed=args.seed,
        repeats=args.repeats,
        memory=not args.no_memory,
        spans=tuple(args.spans),
        profile=not args.no_profile,
    )
    print(format_report(r))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
