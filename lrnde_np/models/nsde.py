"""A neural SDE layer (drift and diagonal diffusion MLPs sharing one parameter vector) with the training
regimes of the paper's MNIST-NSDE comparison.

    dX = f(X; θ_f) dt + g(X; θ_g) ⊙ dW,      θ = [θ_f, θ_g]   (one flat vector)

``NeuralSDE`` composes existing pieces: :func:`~lrnde_np.sde.solve_sde` (SOSRI by default) for the main solve,
:func:`~lrnde_np.sde.sde_discrete_adjoint` for the gradient (the paper's discrete sensitivities,
``TrackerAdjoint``), :func:`~lrnde_np.sde.sde_local_regularizer` for the local regularizer.  No new numerics.

Drift and diffusion see the shared vector through four small compiled wrappers (``f``, ``g``, ``f_vjp``,
``g_vjp``) that slice it at the split index and call the MLPs' compiled entry points through their addresses;
they are compiled once per (drift, diffusion) architecture pair.  The VJP wrappers overwrite the whole
parameter cotangent: the other network's part is zero.

Regimes (``Regularization.kind``; only the "error" heuristic exists for SDEs, and ``through_state`` is not
supported — the paper holds X(t_reg) constant):

* ``"none"``            vanilla: main solve saving t1 only.
* ``"global"``          + λ·Σ_j E_j·dt_j over the accepted steps (2021), its gradient through the discrete
                        adjoint's per-step error cotangents (``grad_E``), dt_j held fixed.
* ``"local_unbiased"``  + λ·E_est·dt of one SRI step from X(t_reg), t_reg ~ U[t0, t1).  Where X(t_reg) comes
                        from (``unbiased_state``):

                        - ``"interpolate"`` (default, the official code's behaviour): the main solve is the
                          vanilla one (t1 its only stop) and X(t_reg) is the linear interpolant of the
                          accepted step containing t_reg — StochasticDiffEq's ``saveat`` does not clip steps
                          and interpolates SDE solutions linearly.  X(t_reg) is a constant for the gradient
                          anyway.
                        - ``"saved"``: t_reg is added to the main solve's save times, so X(t_reg) is an exact
                          step end.  ``solve_sde`` clips steps to save times (which are also RSwM3 anchors),
                          and its PI controller then proposes the next step from the clipped one; with
                          SOSRI's qmax = 9/8 the steps take many steps to grow back, so the training solve
                          costs measurably more than the vanilla one with the same seed (MNIST, batch 64, at
                          initialisation: +15% forward NFE on average, up to +50% in single iterations).
* ``"local_biased"``    + λ·E_est·dt at an accepted step end drawn uniformly, the final time excluded (the
                        official code's ``rand(sol.t[1:end-1])``); the state is the recorded start state of
                        the following step.  The main solve saves t1 only (the official code saves every
                        step; the step sequence is the same either way — t1 is the only stop).  A solve of a
                        single step falls back to t_reg = t0 (as ``regularize.local.sample_biased``).

Randomness: ``seed`` (an int) seeds the main solve's Brownian path; ``rng`` (a Generator) draws t_reg, the
biased step, and the regularizing step's fresh noise.

NFE: drift plus diffusion evaluations (``stats["nfe"] + stats["nge"]``), as the official code counts
them (separate counters around the drift and the diffusion).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from numba import njit

from .._types import RHS_SIG, VJP_SIG, rhs_from, vjp_from
from ..ode.rhs import as_compiled
from ..regularize.global_heuristics import global_regularizer
from ..regularize.local import sample_unbiased
from ..sde import SDELocalReg, SDESolution, sde_discrete_adjoint, sde_local_regularizer, solve_sde
from .node import Regularization, SolveFailed

_WRAPPERS: dict = {}
#: Where the unbiased regime takes X(t_reg) from (see the module docstring).
UNBIASED_STATES = ("interpolate", "saved")


def _compile_wrappers(drift, diffusion):
    """(f, g, f_vjp, g_vjp) Numba functions on the combined vector, and the handles they call through."""
    k = int(drift.n_params)
    handles = (
        as_compiled(drift.rhs, "rhs", "drift"),
        as_compiled(diffusion.rhs, "rhs", "diffusion"),
        as_compiled(drift.vjp, "vjp", "drift"),
        as_compiled(diffusion.vjp, "vjp", "diffusion"),
    )
    fa0, fa1 = handles[0].addresses
    ga0, ga1 = handles[1].addresses
    fv0, fv1 = handles[2].addresses
    gv0, gv1 = handles[3].addresses

    def f(t, x, p, out):
        rhs_from(fa0, fa1)(t, x, p[:k], out)

    def g(t, x, p, out):
        rhs_from(ga0, ga1)(t, x, p[k:], out)

    def f_vjp(t, x, p, a, out_x, out_p):
        vjp_from(fv0, fv1)(t, x, p[:k], a, out_x, out_p[:k])
        for i in range(k, out_p.size):
            out_p[i] = 0.0

    def g_vjp(t, x, p, a, out_x, out_p):
        vjp_from(gv0, gv1)(t, x, p[k:], a, out_x, out_p[k:])
        for i in range(k):
            out_p[i] = 0.0

    return (njit(RHS_SIG)(f), njit(RHS_SIG)(g), njit(VJP_SIG)(f_vjp), njit(VJP_SIG)(g_vjp)), handles


def sde_wrappers(drift, diffusion):
    """The combined-vector (f, g, f_vjp, g_vjp) of a drift and a diffusion MLP (cached per architecture)."""
    key = (drift.layout.tobytes(), diffusion.layout.tobytes())
    if key not in _WRAPPERS:
        _WRAPPERS[key] = _compile_wrappers(drift, diffusion)
    return _WRAPPERS[key][0]


def interpolate_steps(sol, t):
    """The linear interpolant of a recorded SDE solve at t0 ≤ t ≤ t1 between the end states of the accepted
    step containing t (StochasticDiffEq's SDE interpolation); exact at step ends."""
    st = sol.steps
    n = len(st)
    if n == 0:
        return st.x[0].copy()
    j = min(max(int(np.searchsorted(st.t, t, side="right")) - 1, 0), n - 1)
    theta = (t - st.t[j]) / st.dt[j]
    if theta <= 0.0:
        return st.x[j].copy()
    return (1.0 - theta) * st.x[j] + theta * st.x[j + 1]


@dataclass
class SDEForwardPass:
    """What the backward pass needs from one training forward pass."""

    sol: SDESolution
    output: np.ndarray  # X(t1), flat
    output_row: int  # its row in sol.x
    regularization: Regularization
    seed: int
    reg_value: float = 0.0
    local: SDELocalReg | None = None
    grad_E: np.ndarray | None = None  # dR/dE_j of the global regularizer (per accepted step)
    t_reg: float = float("nan")
    reg_step: int = -1  # biased: index of the step whose start state is X(t_reg); unbiased: -1
    nfe_reg: int = 0

    @property
    def nfe_main(self) -> int:
        return self.sol.stats["nfe"] + self.sol.stats["nge"]


class NeuralSDE:
    """dX = drift(X) dt + diffusion(X) ⊙ dW on ``t_span`` for a flat minibatch state (diagonal noise).

    ``drift`` and ``diffusion`` are :class:`~lrnde_np.nn.MLP` objects mapping the state dimension to itself.
    ``delta`` overrides the tableau's δ in the regularizer's error estimate only (the main solve always uses
    the tableau's; StochasticDiffEq's old default was 1/6, see ``sde.regularize``).
    """

    def __init__(
        self,
        drift,
        diffusion,
        t_span=(0.0, 1.0),
        rtol=0.14,
        atol=0.14,
        method="sosri",
        delta=None,
        max_steps=100_000,
        unbiased_state="interpolate",
    ):
        for name, net in (("drift", drift), ("diffusion", diffusion)):
            if not all(hasattr(net, a) for a in ("rhs", "vjp", "n_params", "layout", "input_dim", "output_dim")):
                raise TypeError(f"{name} must be an MLP, got {type(net).__name__}")
        if drift.input_dim != drift.output_dim:
            raise ValueError(f"drift must map the state to itself, got {drift.input_dim} → {drift.output_dim}")
        if (diffusion.input_dim, diffusion.output_dim) != (drift.input_dim, drift.input_dim):
            raise ValueError(
                f"diffusion must map the {drift.input_dim}-dim state to {drift.input_dim} diagonal "
                f"entries, got {diffusion.input_dim} → {diffusion.output_dim}"
            )
        if unbiased_state not in UNBIASED_STATES:
            raise ValueError(f"unbiased_state must be one of {UNBIASED_STATES}, got {unbiased_state!r}")
        self.unbiased_state = unbiased_state
        t0, t1 = (float(v) for v in t_span)
        if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
            raise ValueError(f"t_span must be finite with t1 > t0, got {t_span!r}")
        for name, v in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        self.drift, self.diffusion = drift, diffusion
        self.dim = drift.input_dim
        self.t_span = (t0, t1)
        self.rtol, self.atol = float(rtol), float(atol)
        self.method = method
        self.delta = delta
        self.max_steps = int(max_steps)
        self.n_drift = drift.n_params
        self.n_params = drift.n_params + diffusion.n_params
        self.f, self.g, self.f_vjp, self.g_vjp = sde_wrappers(drift, diffusion)

    def init_params(self, rng):
        """Drift then diffusion initialisation (Glorot uniform, zero biases), one vector."""
        return np.concatenate([self.drift.init_params(rng), self.diffusion.init_params(rng)])

    def split_params(self, p):
        """Views (drift part, diffusion part) of the combined vector."""
        return p[: self.n_drift], p[self.n_drift :]

    # -- plain solves (prediction, test NFE) -----------------------------------------------------------

    def solve(self, x0, p, seed=None, saveat=None, record_steps=False, path=None) -> SDESolution:
        """The unregularized solve with Brownian seed ``seed`` (or on a recorded ``path``)."""
        sol = solve_sde(
            self.f,
            self.g,
            self.t_span,
            x0,
            p,
            method=self.method,
            rtol=self.rtol,
            atol=self.atol,
            saveat=np.array([self.t_span[1]]) if saveat is None else saveat,
            seed=None if path is not None else seed,
            record_steps=record_steps,
            path=path,
            max_steps=self.max_steps,
        )
        if not sol.success:
            raise SolveFailed(sol.message)
        return sol

    # -- training --------------------------------------------------------------------------------------

    def forward(self, x0, p, regularization: Regularization, rng=None, seed=None) -> SDEForwardPass:
        """Main solve (steps recorded for the discrete adjoint) plus the regularizer's value and gradient.

        ``seed``: the Brownian path's seed (int); ``rng``: Generator for t_reg and the regularizer's noise.
        """
        reg = regularization
        if reg.heuristic != "error":
            raise ValueError(f"regularization: neural SDEs support the 'error' heuristic only, got {reg.heuristic!r}")
        if reg.through_state:
            raise ValueError(
                "regularization: through_state is not supported for neural SDEs (the paper holds X(t_reg) constant)"
            )
        if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer (the Brownian path's seed), got {seed!r}")
        if reg.is_local and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        t0, t1 = self.t_span
        t_reg, reg_step = float("nan"), -1
        if reg.kind == "local_unbiased" and self.unbiased_state == "saved":
            t_reg = sample_unbiased(self.t_span, rng)
            sol = self.solve(x0, p, seed=int(seed), saveat=np.array([t_reg, t1]), record_steps=True)
            x_reg, out_row = sol.x[0], 1
        elif reg.kind == "local_unbiased":
            t_reg = sample_unbiased(self.t_span, rng)
            sol = self.solve(x0, p, seed=int(seed), record_steps=True)
            out_row = 0
            x_reg = interpolate_steps(sol, t_reg)
        else:
            sol = self.solve(x0, p, seed=int(seed), record_steps=True)
            out_row = 0
            if reg.kind == "local_biased":
                n_steps = len(sol.steps)
                reg_step = 1 + int(rng.integers(n_steps - 1)) if n_steps > 1 else 0
                t_reg = float(sol.steps.t[reg_step]) if n_steps else t0
                x_reg = sol.steps.x[reg_step]
        fp = SDEForwardPass(
            sol=sol,
            output=sol.x[out_row],
            output_row=out_row,
            regularization=reg,
            seed=int(seed),
            t_reg=t_reg,
            reg_step=reg_step,
        )
        if reg.kind == "global":
            st = sol.steps
            shim = SimpleNamespace(
                steps=SimpleNamespace(
                    dt=st.dt, error_estimate=st.error_estimate, stiffness_estimate=np.zeros_like(st.dt)
                )
            )
            gr = global_regularizer(shim, "error", reg.aggregate)
            fp.reg_value, fp.grad_E = gr.value, gr.grad_error
        elif reg.is_local:
            fp.local = sde_local_regularizer(
                self.f,
                self.g,
                self.f_vjp,
                self.g_vjp,
                t_reg,
                t1,
                x_reg,
                p,
                rng,
                rtol=self.rtol,
                atol=self.atol,
                method=self.method,
                delta=self.delta,
            )
            fp.reg_value = fp.local.value
            fp.nfe_reg = fp.local.nfe + fp.local.nge
        return fp

    def backward(self, fp: SDEForwardPass, grad_output, lam):
        """Gradient of ``loss(X(t1)) + lam·R`` given ``grad_output`` = dloss/dX(t1) (flat).

        Returns ``(grad_x0, grad_p, n_vjp)``; X(t_reg) is held constant (no regularizer gradient reaches x0).
        """
        lam = float(lam)
        grad_x = np.zeros_like(fp.sol.x)
        grad_x[fp.output_row] = np.asarray(grad_output, dtype=np.float64).ravel()
        grad_E = None if fp.grad_E is None else lam * fp.grad_E
        res = sde_discrete_adjoint(fp.sol, self.f_vjp, self.g_vjp, grad_x=grad_x, grad_E=grad_E)
        grad_p = np.array(res.grad_p, dtype=np.float64)
        if fp.local is not None:
            grad_p += lam * fp.local.grad_p
        return np.asarray(res.grad_y0), grad_p, int(res.nfe_backward)
