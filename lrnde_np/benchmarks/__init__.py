"""Benchmarks runnable as ``lrnde bench NAME`` (and from ``benchmarks/`` in a checkout)."""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "ode": "lrnde_np.benchmarks.ode",
    "adjoint": "lrnde_np.benchmarks.adjoint",
    "sde": "lrnde_np.benchmarks.sde",
    "mnist-step": "lrnde_np.benchmarks.mnist_step",
    "ivp": "lrnde_np.benchmarks.ivp",
    "cnf": "lrnde_np.benchmarks.cnf",
    "ensemble": "lrnde_np.benchmarks.ensemble",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: lrnde bench {{{','.join(SUITES)},all}} [suite options]")
        return 0
    names = list(SUITES) if argv[0] == "all" else [argv[0]]
    for name in names:
        if name not in SUITES:
            print(f"lrnde bench: unknown suite {name!r}; choose one of {', '.join(SUITES)} or all", file=sys.stderr)
            return 2
        importlib.import_module(SUITES[name]).main(argv[1:])
    return 0
