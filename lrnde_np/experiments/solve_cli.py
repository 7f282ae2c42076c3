"""``lrnde solve PROBLEM``: solve a built-in ODE problem and print status, statistics and the solution."""

from __future__ import annotations

import argparse

import numpy as np
from numba import njit

from ..data import SPIRAL_A, SPIRAL_Y0, spiral_true_rhs
from ..ode import solve_ode
from ..tableaus import ERK_TABLEAUS


@njit(cache=True)
def lotka_volterra(t, y, p, out):
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


@njit(cache=True)
def van_der_pol(t, y, p, out):
    out[0] = y[1]
    out[1] = p[0] * (1.0 - y[0] * y[0]) * y[1] - y[0]


# name -> (rhs, y0, p, default t1, description)
PROBLEMS = {
    "spiral": (
        spiral_true_rhs,
        SPIRAL_Y0,
        SPIRAL_A.ravel(),
        25.0,
        "Chen et al.'s spiral du/dt = u³·A, A = [[-0.1, 2], [-2, -0.1]], u(0) = (2, 0)",
    ),
    "lotka-volterra": (
        lotka_volterra,
        np.array([1.0, 1.0]),
        np.array([1.5, 1.0, 3.0, 1.0]),
        10.0,
        "x' = 1.5x − xy, y' = −3y + xy, (x, y)(0) = (1, 1)",
    ),
    "van-der-pol": (
        van_der_pol,
        np.array([2.0, 0.0]),
        np.array([1.0]),
        20.0,
        "x'' = μ(1 − x²)x' − x, (x, x')(0) = (2, 0); μ by --mu (default 1)",
    ),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="lrnde solve", description="Solve a built-in ODE problem.")
    parser.add_argument(
        "problem", choices=sorted(PROBLEMS), help="; ".join(f"{k}: {v[4]}" for k, v in PROBLEMS.items())
    )
    parser.add_argument("--method", choices=sorted(ERK_TABLEAUS), default="tsit5")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-8)
    parser.add_argument("--t1", type=float, help="end time (problem default)")
    parser.add_argument("--dt", type=float, help="step size for the fixed-step methods (euler, rk4)")
    parser.add_argument("--points", type=int, default=11, help="print the solution at this many equally spaced times")
    parser.add_argument("--mu", type=float, default=1.0, help="van der Pol's μ")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    rhs, y0, p, t1, description = PROBLEMS[args.problem]
    p = np.array([args.mu]) if args.problem == "van-der-pol" else np.array(p, dtype=np.float64)
    t1 = args.t1 if args.t1 is not None else t1
    if args.points < 2:
        raise SystemExit("lrnde solve: --points must be at least 2")
    fixed = not ERK_TABLEAUS[args.method].adaptive
    if fixed and args.dt is None:
        raise SystemExit(f"lrnde solve: {args.method} is a fixed-step method; give --dt")
    try:
        sol = solve_ode(
            rhs,
            (0.0, t1),
            y0,
            p,
            method=args.method,
            rtol=args.rtol,
            atol=args.atol,
            saveat=np.linspace(0.0, t1, args.points),
            dt=args.dt,
        )
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"lrnde solve: {exc}") from None
    print(f"{args.problem}: {description}")
    print(f"method {args.method}, rtol {args.rtol:g}, atol {args.atol:g}, span (0, {t1:g})")
    print(f"status {sol.status}: {sol.message}")
    print(f"nfe {sol.stats['nfe']}, accepted steps {sol.stats['accepted']}, rejected {sol.stats['rejected']}")
    width = max(12, len(f"{t1:.6g}") + 2)
    print("t".rjust(width) + "".join(f"y[{i}]".rjust(16) for i in range(sol.y.shape[1])))
    for t, y in zip(sol.t, sol.y, strict=True):
        print(f"{t:{width}.6g}" + "".join(f"{v:16.8g}" for v in y))
    return 0 if sol.success else 1
