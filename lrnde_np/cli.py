"""The ``lrnde`` command line: ``compare`` (the main job), ``train``, ``bench``, ``validate``, ``solve``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command -> "module:function" taking the remaining argv; imported only when used so that
# ``lrnde --help`` stays instant.
COMMANDS = {
    "compare": (
        "lrnde_np.experiments.compare:main",
        "train vanilla / global / local-unbiased / local-biased with one seed and budget; print and "
        "write the paper's table",
    ),
    "train": ("lrnde_np.experiments.train_cli:main", "train one model with one regularizer"),
    "bench": ("lrnde_np.benchmarks:main", "speed and memory benchmarks (ode, adjoint, sde, ivp, ensemble, all)"),
    "validate": ("lrnde_np.experiments.validate:main", "run a validation script (the paper's tables)"),
    "solve": ("lrnde_np.experiments.solve_cli:main", "solve a built-in ODE problem and print the result"),
    "sweep": (
        "lrnde_np.sweep.cli:main",
        "run a seeded grid (task × method × λ × semantics × seed) on Dask, one JSON record per cell, resumable",
    ),
    "report": ("lrnde_np.sweep.report:main", "mean ± sd tables, λ chosen on validation data, Pareto plot of a sweep"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        parser = argparse.ArgumentParser(
            prog="lrnde", description="Locally regularized neural differential equations (NumPy + Numba)."
        )
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lrnde: unknown command {name!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    rest = [a for a in rest if a != "--debug"]  # entry_point's flag
    module, func = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), func)(rest) or 0


def entry_point(argv=None):
    """The console script: :func:`main`, with every failure one line ``lrnde: ...`` and exit status 1 (the
    traceback only with ``--debug``, anywhere on the command line), and Ctrl-C one line with status 130
    (checkpoints are written atomically, so the last one stays intact)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("lrnde: interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"lrnde: {type(exc).__name__}: {text} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(entry_point())
