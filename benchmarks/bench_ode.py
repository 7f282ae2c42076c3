"""ODE solver benchmark (same as ``lrnde bench ode``): python benchmarks/bench_ode.py [--repeats N] [--quick]
[--json PATH]."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lrnde_np.benchmarks.ode import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
