"""Gradients of solutions: the discrete adjoint and the continuous adjoints (backsolve, interpolating,
quadrature).  See the README's adjoint guide for which to use when."""

from .continuous import AdjointSolveFailed, backsolve_adjoint, interpolating_adjoint, quadrature_adjoint
from .discrete import AdjointResult, discrete_adjoint

ADJOINT_METHODS = ("discrete", "backsolve", "interpolating", "quadrature")

__all__ = [
    "AdjointResult",
    "AdjointSolveFailed",
    "discrete_adjoint",
    "backsolve_adjoint",
    "interpolating_adjoint",
    "quadrature_adjoint",
    "ADJOINT_METHODS",
]
