"""CNF benchmark: ``lrnde bench cnf [--dims 2,64] [--batch B] [--repeats R] [--quick] [--json PATH]``.

The cost of a CNF's NLL gradient (forward solve of the augmented dynamics + discrete adjoint) with the exact
trace (D probe JVPs for an MLP field) against Hutchinson's estimator (one probe, Rademacher), at D = 2 and
D = 64, next to the forward solve alone (the likelihood evaluation).  Data: B samples of a synthetic Gaussian
mixture (8 components, means ~ N(0, 4I), unit covariances, seed 0).  Field: MLP D → 64 → 64 → D (tanh, t into
every layer) at its seeded initialisation.  Tsit5, rtol = atol = 1e-4.  Reported: median wall time over R
repeats, NFE (forward, backward) and time per augmented-RHS evaluation.  Set OPENBLAS_NUM_THREADS=1 on a small
shared machine (multithreaded BLAS spins there).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ..cnf import CNFDynamics, MLPField
from ..cnf.model import CNF


def gaussian_mixture(n, dim, seed=0, components=8):
    """n samples of an equal-weight mixture of unit Gaussians with means ~ N(0, 4I) (seeded)."""
    rng = np.random.default_rng(seed)
    means = 2.0 * rng.standard_normal((components, dim))
    return means[rng.integers(components, size=n)] + rng.standard_normal((n, dim))


def _median_time(fn, repeats):
    fn()  # warm (compile, caches)
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def run(dims=(2, 64), batch=128, repeats=5, hidden=64, tol=1e-4):
    rows = []
    for D in dims:
        x = gaussian_mixture(batch, D)
        field = MLPField(D, (hidden, hidden), "tanh")
        theta = field.init_params(0)
        for trace in ("exact", "hutchinson"):
            cnf = CNF(CNFDynamics(field, trace), rtol=tol, atol=tol)
            t_fwd, (_, nfe_fwd) = _median_time(lambda c=cnf, x=x, th=theta: c.log_prob(x, th, 1), repeats)
            t_grad, step = _median_time(lambda c=cnf, x=x, th=theta: c.nll_step(x, th, rng=1), repeats)
            rows.append(
                dict(
                    dim=D,
                    trace=trace,
                    batch=batch,
                    forward_s=t_fwd,
                    forward_nfe=int(nfe_fwd),
                    grad_s=t_grad,
                    grad_nfe_forward=step.nfe_forward,
                    grad_nfe_backward=step.nfe_backward,
                    forward_ms_per_eval=1e3 * t_fwd / max(nfe_fwd, 1),
                    grad_ms_per_eval=1e3 * t_grad / max(step.nfe_forward + step.nfe_backward, 1),
                )
            )
    return rows


def format_rows(rows):
    lines = [
        "| D | trace | forward solve (s) | NFE | ms/eval | NLL gradient (s) | NFE fwd+bwd | ms/eval | "
        "gradient / forward |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dim']} | {r['trace']} | {r['forward_s']:.4f} | {r['forward_nfe']} | "
            f"{r['forward_ms_per_eval']:.3f} | {r['grad_s']:.4f} | {r['grad_nfe_forward']}+"
            f"{r['grad_nfe_backward']} | {r['grad_ms_per_eval']:.3f} | {r['grad_s'] / r['forward_s']:.2f} |"
        )
    by = {(r["dim"], r["trace"]): r for r in rows}
    for D in sorted({r["dim"] for r in rows}):
        if (D, "exact") in by and (D, "hutchinson") in by:
            e, h = by[(D, "exact")], by[(D, "hutchinson")]
            lines.append(
                f"\nD = {D}: exact / Hutchinson gradient time {e['grad_s'] / h['grad_s']:.2f}x "
                f"(per evaluation {e['grad_ms_per_eval'] / h['grad_ms_per_eval']:.2f}x)"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lrnde bench cnf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", default="2,64", help="comma-separated dimensions (default 2,64)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 repeats")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    dims = tuple(int(d) for d in args.dims.split(",") if d.strip())
    if not dims or min(dims) < 1:
        raise SystemExit("lrnde bench cnf: --dims must be positive integers")
    batch, repeats = (16, 2) if args.quick else (args.batch, args.repeats)
    if batch < 1 or repeats < 1:
        raise SystemExit("lrnde bench cnf: --batch and --repeats must be positive")
    rows = run(dims, batch, repeats)
    print(f"CNF NLL gradient (forward + discrete adjoint) vs forward solve; batch {batch}, median of {repeats}")
    print(format_rows(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0
