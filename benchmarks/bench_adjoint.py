"""Adjoint benchmark (problem P2, the spiral 2-50-2 MLP): ``python benchmarks/bench_adjoint.py [--json PATH]``.

The same as ``lrnde bench adjoint``; see :mod:`lrnde_np.benchmarks.adjoint` for what is measured.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from lrnde_np.benchmarks.adjoint import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
