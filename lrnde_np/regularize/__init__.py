"""Regularizers of solver heuristics: global (2021, over every step) and local (2023, one sampled step)."""

from .global_heuristics import GlobalReg, global_regularizer
from .local import (
    BiasedSample,
    LocalReg,
    biased_state,
    frozen_step_regularizer,
    local_regularizer,
    sample_biased,
    sample_unbiased,
)

__all__ = [
    "global_regularizer",
    "GlobalReg",
    "local_regularizer",
    "frozen_step_regularizer",
    "LocalReg",
    "sample_unbiased",
    "sample_biased",
    "biased_state",
    "BiasedSample",
]
