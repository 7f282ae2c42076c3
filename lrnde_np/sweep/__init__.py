"""Seeded sweeps on Dask and reports whose λ is chosen on validation data (``lrnde sweep``, ``lrnde report``).

grid     cells of task × method × λ × schedule × semantics × tolerance × seed, and their identities
runner   one cell: train, evaluate on validation and test splits, write one atomic JSON record
execute  run the cells on a Dask LocalCluster or an existing scheduler; skip finished, retry failed
report   validation-only λ selection, mean ± sd tables (md/CSV/JSON), Pareto plot
"""

from .grid import build_grid, cell_id, config_key, family_key
from .report import aggregate, load_records, select_lambdas, validation_view, write_report

__all__ = [
    "build_grid",
    "cell_id",
    "config_key",
    "family_key",
    "aggregate",
    "load_records",
    "select_lambdas",
    "validation_view",
    "write_report",
    "run_sweep",
    "run_cell",
]


def __getattr__(name):  # dask and the models are imported only when a sweep runs
    if name == "run_sweep":
        from .execute import run_sweep

        return run_sweep
    if name == "run_cell":
        from .runner import run_cell

        return run_cell
    raise AttributeError(name)
