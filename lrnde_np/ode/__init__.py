"""Explicit Runge–Kutta ODE core: step kernel, step-size control, solve loop."""

from .loop import DT_MIN, MAX_STEPS, NONFINITE, STEP_STUCK, SUCCESS
from .rhs import PythonRHSWarning, as_compiled
from .solve import Solution, StepRecords, solve_ode

__all__ = [
    "solve_ode",
    "Solution",
    "StepRecords",
    "as_compiled",
    "PythonRHSWarning",
    "SUCCESS",
    "MAX_STEPS",
    "DT_MIN",
    "NONFINITE",
    "STEP_STUCK",
]
