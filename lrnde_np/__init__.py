"""lrnde_np: locally regularized neural differential equations in NumPy + Numba."""

from .ode import Solution, solve_ode
from .tableaus import ERK_TABLEAUS, ERKTableau, get_tableau

__version__ = "0.2.0"
__all__ = ["solve_ode", "Solution", "ERKTableau", "ERK_TABLEAUS", "get_tableau"]


def __getattr__(name):
    # ``solve_ivp`` (SciPy's interface, ivp.py) imports SciPy: loaded on first use so ``import lrnde_np`` stays fast.
    if name == "solve_ivp":
        from .ivp import solve_ivp

        return solve_ivp
    raise AttributeError(f"module 'lrnde_np' has no attribute {name!r}")
