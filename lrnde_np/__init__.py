"""lrnde_np: locally regularized neural differential equations in NumPy + Numba."""
from .ode import Solution, solve_ode
from .tableaus import ERK_TABLEAUS, ERKTableau, get_tableau

__version__ = "0.1.0"
__all__ = ["solve_ode", "Solution", "ERKTableau", "ERK_TABLEAUS", "get_tableau"]
