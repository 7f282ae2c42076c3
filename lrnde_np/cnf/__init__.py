"""Continuous normalizing flows (Chen et al. 2018, §4): augmented dynamics, exact and Hutchinson traces with
hand-written second-order VJPs, the RNODE channels, planar-flow baselines, training and density matching."""

from .fields import NOISES, TRACES, CNFDynamics, HyperField, MLPField

__all__ = ["CNFDynamics", "HyperField", "MLPField", "TRACES", "NOISES"]
