"""SDE solver benchmark (same as ``lrnde bench sde``): python benchmarks/bench_sde.py [--paths M] [--quick]
[--json PATH]."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lrnde_np.benchmarks.sde import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
