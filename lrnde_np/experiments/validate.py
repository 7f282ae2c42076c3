"""``lrnde validate NAME [options]``: run ``validation/NAME.py`` of a source checkout (its ``main(argv)``).

The validation scripts live beside the package in the repository (``validation/``), not inside it; this
command finds them relative to the package and lists them when no name is given.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def validation_dir():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "validation")


def available(directory):
    if not os.path.isdir(directory):
        return []
    return sorted(f[:-3] for f in os.listdir(directory) if f.endswith(".py") and not f.startswith("_"))


def main(argv=None):
    argv = list(sys.argv[2:] if argv is None else argv)
    directory = os.path.normpath(validation_dir())
    names = available(directory)
    if not argv or argv[0] in ("-h", "--help"):
        if not names:
            print(
                f"lrnde validate: no validation scripts found (looked in {directory}; they ship with a source "
                f"checkout, not with an installed wheel)"
            )
            return 0 if argv else 2
        print("usage: lrnde validate NAME [options]   (NAME --help for a script's options)")
        print("scripts: " + ", ".join(names))
        return 0
    name = argv[0].removesuffix(".py")
    if name not in names:
        print(
            f"lrnde validate: unknown script {name!r}; available: {', '.join(names) or 'none'} (in {directory})",
            file=sys.stderr,
        )
        return 2
    spec = importlib.util.spec_from_file_location(f"lrnde_validation_{name}", os.path.join(directory, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "main"):
        print(f"lrnde validate: validation/{name}.py has no main(argv)", file=sys.stderr)
        return 2
    return module.main(argv[1:]) or 0
