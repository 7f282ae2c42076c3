"""The ``lrnde`` command line: ``compare`` (the main job), ``train``, ``bench``, ``validate``, ``solve``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command -> "module:function" taking the remaining argv; imported only when used so that
# ``lrnde --help`` stays instant.
COMMANDS = {
    "compare": ("lrnde_np.experiments.compare:main",
                "train vanilla / global / local-unbiased / local-biased with one seed and budget; print and "
                "write the paper's table"),
    "train": ("lrnde_np.experiments.train_cli:main", "train one model with one regularizer"),
    "bench": ("lrnde_np.benchmarks:main", "speed and memory benchmarks (ode, adjoint, sde, all)"),
    "validate": ("lrnde_np.experiments.validate:main", "run a validation script (the paper's tables)"),
    "solve": ("lrnde_np.experiments.solve_cli:main", "solve a built-in ODE problem and print the result"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser = argparse.ArgumentParser(
            prog="lrnde", description="Locally regularized neural differential equations (NumPy + Numba).")
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lrnde: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, func = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), func)(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
