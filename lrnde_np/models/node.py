"""A neural ODE layer with any adjoint and any of the four training regimes of the paper's comparison.

``NeuralODE`` composes the pieces: ``solve_ode`` for the main solve, the regularizers of
:mod:`lrnde_np.regularize`, and an adjoint of :mod:`lrnde_np.adjoint` for the gradient.  No new numerics.

Regimes (``Regularization.kind``):

* ``"none"``            vanilla: the loss only.
* ``"global"``          + λ·Σ_j E_j|dt_j| (2021).  Its gradient needs the cotangents of every step's E_j, which
                        only the discrete adjoint carries: this regime always uses the discrete adjoint (the
                        2021 paper used discrete sensitivities too).
* ``"local_unbiased"``  + λ·E_est·|dt| at t_reg ~ U[t0, t1): t_reg is added to the save points of the main solve
                        so that z(t_reg) comes from its dense output.
* ``"local_biased"``    + λ·E_est·|dt| at an accepted step end (not the final one).  When the outputs are the
                        final state only (MNIST), the main solve saves every step (the official code's
                        ``saveat=[]``) and z(t_reg) is a saved point; otherwise the step states are recorded.

The local regimes keep whichever adjoint was asked for on the main solve; their own gradient reaches the
parameters through the one regularizing step (see :mod:`lrnde_np.regularize.local`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ode import solve_ode
from ..ode.solve import Solution
from ..regularize import (
    GlobalReg,
    LocalReg,
    biased_state,
    global_regularizer,
    local_regularizer,
    sample_biased,
    sample_unbiased,
)
from ..regularize.global_heuristics import AGGREGATES, HEURISTICS
from ..regularize.local import STIFFNESS_SCALINGS

REGULARIZERS = ("none", "global", "local_unbiased", "local_biased")
BIASED_SOURCES = ("steps", "saves")
ADJOINTS = ("discrete", "interpolating", "backsolve")


class SolveFailed(RuntimeError):
    """The main solve stopped before the end of its span (its message says why)."""


@dataclass(frozen=True)
class Regularization:
    """Which regularizer to train with, and its options (λ is given per step, see ``training``).

    heuristic : "error" (E_est, the papers' ERNODE), "stiffness" or "error_stiffness" (E + c·S).
    stiffness_weight : c of "error_stiffness".
    aggregate : global only — "sum" (the paper's formula), "mean" or "max" (the 2021 code's variants).
    through_state : local only — also send the regularizer's gradient through z(t_reg) into the main solve
        (the paper does NOT; see ``regularize.local``).
    through_k1 : local only — differentiate the step's first stage k1 = f(t_reg, z; θ) with respect to θ
        (z still constant): the exact ∂R/∂θ.  The paper freezes k1 (see ``regularize.local_regularizer``).
    biased_source : local_biased only — draw t_reg among the accepted step ends ("steps", default) or among the
        solution's saved times ("saves", what the official code does; see ``regularize.sample_biased``).
    stiffness_scaling : local only — "ratio" (‖Δk‖/‖ΔY‖, default) or "official" (the 2023 code's
        rms ratio ÷ 3.5068 with +eps; see ``regularize.local.STIFFNESS_SCALINGS``).
    """

    kind: str = "none"
    heuristic: str = "error"
    stiffness_weight: float = 1.0
    aggregate: str = "sum"
    through_state: bool = False
    through_k1: bool = False
    biased_source: str = "steps"
    stiffness_scaling: str = "ratio"

    def __post_init__(self):
        if self.kind not in REGULARIZERS:
            raise ValueError(f"kind must be one of {REGULARIZERS}, got {self.kind!r}")
        if self.heuristic not in HEURISTICS:
            raise ValueError(f"heuristic must be one of {HEURISTICS}, got {self.heuristic!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if (self.through_state or self.through_k1) and not self.kind.startswith("local"):
            raise ValueError("through_state and through_k1 apply to the local regularizers only")
        if self.biased_source not in BIASED_SOURCES:
            raise ValueError(f"biased_source must be one of {BIASED_SOURCES}, got {self.biased_source!r}")
        if self.stiffness_scaling not in STIFFNESS_SCALINGS:
            raise ValueError(f"stiffness_scaling must be one of {STIFFNESS_SCALINGS}, got {self.stiffness_scaling!r}")

    @property
    def is_local(self) -> bool:
        return self.kind.startswith("local")


@dataclass
class ForwardPass:
    """What the backward pass needs from one training forward pass."""

    sol: Solution
    outputs: np.ndarray  # (n_outputs, n): the states at the requested output times
    output_index: np.ndarray  # their rows in sol.y
    regularization: Regularization
    adjoint: str  # the adjoint the backward pass will use
    reg_value: float = 0.0
    local: LocalReg | None = None
    global_reg: GlobalReg | None = None
    reg_save_index: int = -1  # row of z(t_reg) in sol.y (local regularizers), -1 if not a saved point
    t_reg: float = float("nan")
    nfe_reg: int = 0

    @property
    def nfe(self) -> int:
        """Training forward NFE: the main solve plus the regularizer's step."""
        return self.sol.nfe + self.nfe_reg


class NeuralODE:
    """dz/dt = field(t, z; θ) on ``t_span`` for a flat minibatch state, solved with ``method``.

    ``field`` is any object with Numba ``rhs`` and ``vjp`` (e.g. :class:`~lrnde_np.nn.MLP`).
    ``adjoint`` is "discrete", "interpolating" or "backsolve" (the global regime always uses "discrete").
    """

    def __init__(
        self, field, t_span=(0.0, 1.0), rtol=1e-3, atol=1e-6, method="tsit5", adjoint="discrete", max_steps=100_000
    ):
        if adjoint not in ADJOINTS:
            raise ValueError(f"adjoint must be one of {ADJOINTS}, got {adjoint!r}")
        t0, t1 = (float(v) for v in t_span)
        if not (np.isfinite(t0) and np.isfinite(t1)) or t0 == t1:
            raise ValueError(f"t_span must be finite with t0 != t1, got {t_span!r}")
        self.field = field
        self.t_span = (t0, t1)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.method = method
        self.adjoint = adjoint
        self.max_steps = int(max_steps)

    # -- plain solves (prediction, test NFE) -----------------------------------------------------------

    def solve(self, z0, p, saveat=None, t_span=None, **options) -> Solution:
        """The unregularized solve (what prediction and the reported test NFE use)."""
        sol = solve_ode(
            self.field.rhs,
            self.t_span if t_span is None else t_span,
            z0,
            p,
            method=self.method,
            rtol=self.rtol,
            atol=self.atol,
            saveat=saveat,
            max_steps=self.max_steps,
            **options,
        )
        if not sol.success:
            raise SolveFailed(sol.message)
        return sol

    # -- training --------------------------------------------------------------------------------------

    def forward(self, z0, p, regularization: Regularization, rng=None, saveat=None) -> ForwardPass:
        """Main solve plus the regularizer's value; ``saveat`` are the output times (default: t1 only).

        ``rng`` (a numpy Generator) draws t_reg for the local regularizers.
        """
        t0, t1 = self.t_span
        outputs_at = np.array([t1]) if saveat is None else np.atleast_1d(np.asarray(saveat, dtype=np.float64))
        reg = regularization
        adjoint = "discrete" if reg.kind == "global" else self.adjoint
        record_states = adjoint in ("discrete", "interpolating")
        final_only = outputs_at.size == 1 and outputs_at[0] == t1

        if reg.kind == "local_unbiased":
            t_reg = sample_unbiased(self.t_span, rng)
            pos = int(np.searchsorted(outputs_at * np.sign(t1 - t0), t_reg * np.sign(t1 - t0)))
            solve_at = np.insert(outputs_at, pos, t_reg)
            output_index = np.delete(np.arange(solve_at.size), pos)
            sol = self.solve(z0, p, saveat=solve_at, record_steps=True, record_states=record_states)
            z_reg, reg_save_index = sol.y[pos], pos
        elif reg.kind == "local_biased":
            if final_only:
                sol = self.solve(z0, p, saveat=None, record_steps=True, record_states=record_states)
                output_index = np.array([sol.t.size - 1])
            else:
                if reg.through_state:
                    raise ValueError(
                        "through_state with biased sampling needs a model whose only output is the "
                        "final state (the sampled step state must be a saved point)"
                    )
                sol = self.solve(z0, p, saveat=outputs_at, record_steps=True, record_states=True)
                output_index = np.arange(outputs_at.size)
            sample = sample_biased(sol, rng, source=reg.biased_source)
            t_reg, z_reg, reg_save_index = sample.t_reg, biased_state(sol, sample), sample.save_index
        else:
            sol = self.solve(z0, p, saveat=outputs_at, record_steps=True, record_states=record_states)
            output_index = np.arange(outputs_at.size)
            t_reg, reg_save_index = float("nan"), -1

        fp = ForwardPass(
            sol=sol,
            outputs=sol.y[output_index],
            output_index=output_index,
            regularization=reg,
            adjoint=adjoint,
            t_reg=t_reg,
            reg_save_index=reg_save_index,
        )
        if reg.kind == "global":
            fp.global_reg = global_regularizer(sol, reg.heuristic, reg.aggregate, reg.stiffness_weight)
            fp.reg_value = fp.global_reg.value
        elif reg.is_local:
            fp.local = local_regularizer(
                self.field.rhs,
                self.field.vjp,
                t_reg,
                t1,
                z_reg,
                p,
                self.rtol,
                self.atol,
                heuristic=reg.heuristic,
                stiffness_weight=reg.stiffness_weight,
                through_state=reg.through_state,
                through_k1=reg.through_k1,
                stiffness_scaling=reg.stiffness_scaling,
            )
            fp.reg_value = fp.local.value
            fp.nfe_reg = fp.local.nfe
        return fp

    def backward(self, fp: ForwardPass, grad_outputs, lam):
        """Gradient of ``loss(outputs) + lam·R`` given ``grad_outputs`` = dloss/d(outputs).

        Returns ``(grad_z0, grad_p, nfe_backward)``.
        """
        from .. import adjoint as adj

        sol = fp.sol
        grad_y = np.zeros_like(sol.y)
        grad_y[fp.output_index] += np.asarray(grad_outputs, dtype=np.float64).reshape(fp.outputs.shape)
        lam = float(lam)
        if fp.local is not None and fp.local.grad_z is not None:
            grad_y[fp.reg_save_index] += lam * fp.local.grad_z
        f_vjp = self.field.vjp
        if fp.adjoint == "discrete":
            kwargs = {}
            if fp.global_reg is not None:
                kwargs = dict(
                    grad_error=lam * fp.global_reg.grad_error, grad_stiffness=lam * fp.global_reg.grad_stiffness
                )
            res = adj.discrete_adjoint(sol, f_vjp, grad_y=grad_y, **kwargs)
        elif fp.adjoint == "interpolating":
            res = adj.interpolating_adjoint(f_vjp, sol, grad_y, rtol=self.rtol, atol=self.atol)
        else:
            res = adj.backsolve_adjoint(
                self.field.rhs,
                f_vjp,
                sol,
                grad_y,
                rtol=self.rtol,
                atol=self.atol,
                f_value_vjp=getattr(self.field, "value_vjp", None),
            )
        grad_p = np.array(res.grad_p, dtype=np.float64)
        if fp.local is not None:
            grad_p += lam * fp.local.grad_p
        return np.asarray(res.grad_y0), grad_p, int(res.nfe_backward)
