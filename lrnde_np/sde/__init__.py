"""Itô SDEs with diagonal or scalar noise: SRI methods (SRIW1, SOSRI, SOSRI2), Euler–Maruyama, RSwM3
Brownian paths, the discrete adjoint and the local regularizer."""

from ..ode.loop import DT_MIN, MAX_STEPS, NONFINITE, SUCCESS
from .adjoint import sde_discrete_adjoint
from .brownian import RSwM3, SDEPath, rng_state
from .regularize import SDELocalReg, sde_frozen_step_regularizer, sde_local_regularizer
from .solve import SDESolution, SDEStepRecords, sde_controller_defaults, solve_sde
from .step import pack_tableau, sde_initial_step, sri_step, sri_step_vjp
from .tableaus import (
    EULER_MARUYAMA,
    SOSRI,
    SOSRI2,
    SRI_TABLEAUS,
    SRIW1,
    SRITableau,
    get_sde_tableau,
    sri_order_conditions,
)

__all__ = [
    "solve_sde",
    "sde_discrete_adjoint",
    "sde_local_regularizer",
    "sde_frozen_step_regularizer",
    "SDELocalReg",
    "rng_state",
    "SDESolution",
    "SDEStepRecords",
    "SDEPath",
    "RSwM3",
    "sde_controller_defaults",
    "SRITableau",
    "SRIW1",
    "SOSRI",
    "SOSRI2",
    "EULER_MARUYAMA",
    "SRI_TABLEAUS",
    "get_sde_tableau",
    "sri_order_conditions",
    "sri_step",
    "sri_step_vjp",
    "sde_initial_step",
    "pack_tableau",
    "SUCCESS",
    "MAX_STEPS",
    "DT_MIN",
    "NONFINITE",
]
