"""A continuous normalizing flow: likelihood of data, sampling, density matching, and their gradients.

Convention (Chen et al. 2018, eq. 4): with dl/dt = -tr(∂f/∂z) and l = 0 where the solve starts,
``log p(z(t_end)) = log p(z(t_start)) + l(t_end)``.  The base density N(0, I) sits at t0, the data at t1:

* likelihood of data x: solve [x, 0, 0…] from t1 back to t0, then ``log p(x) = log N(z(t0)) - l(t0)``;
* sampling: z0 ~ N(0, I), solve from t0 to t1, ``x = z(t1)``, ``log q(x) = log N(z0) + l(t1)``.

Both directions are :class:`~lrnde_np.models.node.NeuralODE` solves of the augmented dynamics
(:class:`~lrnde_np.cnf.fields.CNFDynamics`), so every adjoint and every regularizer of the library applies —
vanilla, global ERNODE, local unbiased/biased — plus the RNODE channels (kinetic energy, Jacobian Frobenius
norm), which enter the loss as λ_K·mean|E(t_end)| and λ_J·mean|F(t_end)| through their final-state cotangents.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..models.node import NeuralODE, Regularization
from .fields import CNFDynamics, as_generator

LOG_2PI = math.log(2.0 * math.pi)


def _count(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected a positive int, got {n!r}")
    return int(n)


def log_normal(z):
    """log N(z; 0, I) row-wise for (B, D) z."""
    return -0.5 * np.sum(z * z, axis=1) - 0.5 * z.shape[1] * LOG_2PI


@dataclass
class CNFStep:
    """One training step of a CNF: loss parts, gradient and work."""

    loss: float
    task_loss: float
    reg_value: float
    rnode_value: float
    grad: np.ndarray
    nfe_forward: int
    nfe_reg: int
    nfe_backward: int


class CNF:
    """A CNF of a :class:`CNFDynamics` on ``(t0, t1)`` with a N(0, I) base density at t0.

    adjoint : "discrete", "interpolating" or "backsolve" (the global regularizer always uses "discrete").
    """

    def __init__(
        self, dynamics, t_span=(0.0, 1.0), rtol=1e-5, atol=1e-5, method="tsit5", adjoint="discrete", max_steps=20_000
    ):
        if not isinstance(dynamics, CNFDynamics):
            raise TypeError(f"dynamics: expected a CNFDynamics, got {type(dynamics).__name__}")
        t0, t1 = (float(v) for v in t_span)
        self.dynamics = dynamics
        self.t_span = (t0, t1)
        # Backwards (t1 → t0) for the likelihood of data, forwards for sampling.
        self.backward_node = NeuralODE(
            dynamics, (t1, t0), rtol=rtol, atol=atol, method=method, adjoint=adjoint, max_steps=max_steps
        )
        self.forward_node = NeuralODE(
            dynamics, (t0, t1), rtol=rtol, atol=atol, method=method, adjoint=adjoint, max_steps=max_steps
        )

    @property
    def dim(self):
        return self.dynamics.dim

    def _points(self, x, name="x"):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise ValueError(f"{name}: expected a non-empty (batch, {self.dim}) array, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: contains non-finite values")
        return x

    # -- evaluation --------------------------------------------------------------------------------------

    def log_prob(self, x, theta, rng=None):
        """(log p(x) per row, NFE) by one backward solve; ``rng`` seeds the Hutchinson noise if used."""
        x = self._points(x)
        p = self.dynamics.params(theta, x.shape[0], rng)
        sol = self.backward_node.solve(self.dynamics.initial_state(x), p, saveat=[self.t_span[0]])
        z0, l0, _, _ = self.dynamics.split(sol.y[-1])
        return log_normal(z0) - l0, sol.nfe

    def sample(self, n, theta, rng, saveat=None):
        """(x (n, D), log q(x), NFE, states at ``saveat`` (len, n, D) or None) from z0 ~ N(0, I)."""
        rng = as_generator(rng)
        z0 = rng.standard_normal((_count("n", n), self.dim))
        p = self.dynamics.params(theta, z0.shape[0], rng)
        times = [self.t_span[1]] if saveat is None else list(saveat)
        sol = self.forward_node.solve(self.dynamics.initial_state(z0), p, saveat=times)
        z1, l1, _, _ = self.dynamics.split(sol.y[-1])
        path = None
        if saveat is not None:
            path = np.stack([self.dynamics.split(row)[0] for row in sol.y])
        return z1.copy(), log_normal(z0) + l1, sol.nfe, path

    # -- training ----------------------------------------------------------------------------------------

    def _rnode(self, y_end, node, lam_kinetic, lam_frobenius, B):
        """RNODE value and the cotangents it puts on the final state's channels (sign: span direction)."""
        dyn = self.dynamics
        sign = 1.0 if node.t_span[1] > node.t_span[0] else -1.0
        _, _, E, F = dyn.split(y_end)
        value = 0.0
        g = np.zeros_like(y_end)
        c = B * (dyn.dim + 1)
        if dyn.kinetic:
            value += lam_kinetic * sign * float(np.mean(E))
            g[c : c + B] = lam_kinetic * sign / B
            c += B
        if dyn.frobenius:
            value += lam_frobenius * sign * float(np.mean(F))
            g[c : c + B] = lam_frobenius * sign / B
        return value, g

    def nll_step(self, x, theta, regularization=None, lam=0.0, rng=None, lam_kinetic=0.0, lam_frobenius=0.0) -> CNFStep:
        """Mean NLL of x (+ λ·R of the solver regularizer + the RNODE terms) and its gradient in θ.

        ``rng`` (Generator or seed) draws the Hutchinson noise and the local regularizer's t_reg.
        """
        x = self._points(x)
        regularization = Regularization() if regularization is None else regularization
        rng = as_generator(rng if rng is not None else 0)
        dyn = self.dynamics
        B = x.shape[0]
        p = dyn.params(theta, B, rng)
        node = self.backward_node
        fp = node.forward(dyn.initial_state(x), p, regularization, rng=rng)
        y_end = fp.outputs[-1]
        z0, l0, _, _ = dyn.split(y_end)
        nll = float(np.mean(-log_normal(z0) + l0))
        g = np.zeros_like(y_end)
        g[: B * dyn.dim] = (z0 / B).reshape(-1)
        g[B * dyn.dim : B * (dyn.dim + 1)] = 1.0 / B
        rnode, g_rnode = self._rnode(y_end, node, lam_kinetic, lam_frobenius, B)
        g += g_rnode
        _, grad_p, nfe_b = node.backward(fp, g[None, :], lam)
        return CNFStep(
            loss=nll + rnode + lam * fp.reg_value,
            task_loss=nll,
            reg_value=fp.reg_value,
            rnode_value=rnode,
            grad=grad_p[: dyn.n_theta].copy(),
            nfe_forward=fp.sol.nfe,
            nfe_reg=fp.nfe_reg,
            nfe_backward=nfe_b,
        )

    def kl_step(self, energy, theta, n, rng, regularization=None, lam=0.0) -> CNFStep:
        """Density matching: E_q[log q(x) + U(x)] (= KL(q‖p) − log Z for p ∝ exp(−U)) over n samples of q,
        and its reparameterised gradient in θ.  ``energy(x) -> (U (B,), ∇U (B, D))``."""
        rng = as_generator(rng)
        regularization = Regularization() if regularization is None else regularization
        dyn = self.dynamics
        z0 = rng.standard_normal((_count("n", n), self.dim))
        B = z0.shape[0]
        p = dyn.params(theta, B, rng)
        node = self.forward_node
        fp = node.forward(dyn.initial_state(z0), p, regularization, rng=rng)
        y_end = fp.outputs[-1]
        x, l1, _, _ = dyn.split(y_end)
        U, gU = energy(x)
        loss = float(np.mean(log_normal(z0) + l1 + U))
        g = np.zeros_like(y_end)
        g[: B * dyn.dim] = (gU / B).reshape(-1)
        g[B * dyn.dim : B * (dyn.dim + 1)] = 1.0 / B
        _, grad_p, nfe_b = node.backward(fp, g[None, :], lam)
        return CNFStep(
            loss=loss + lam * fp.reg_value,
            task_loss=loss,
            reg_value=fp.reg_value,
            rnode_value=0.0,
            grad=grad_p[: dyn.n_theta].copy(),
            nfe_forward=fp.sol.nfe,
            nfe_reg=fp.nfe_reg,
            nfe_backward=nfe_b,
        )


def density_on_grid(cnf, theta, lim=4.0, n=64, batch=1024, rng=0):
    """(xs, ys, density (n, n), ∫ density dA by the midpoint rule) of a 2-D CNF on [-lim, lim]²."""
    if cnf.dim != 2:
        raise ValueError("cnf: density_on_grid needs a 2-D CNF")
    h = 2.0 * lim / n
    xs = -lim + h * (np.arange(n) + 0.5)
    X, Y = np.meshgrid(xs, xs)
    pts = np.stack([X.ravel(), Y.ravel()], axis=1)
    logp = np.empty(pts.shape[0])
    for s in range(0, pts.shape[0], batch):
        logp[s : s + batch], _ = cnf.log_prob(pts[s : s + batch], theta, rng)
    dens = np.exp(logp).reshape(n, n)
    return xs, xs, dens, float(dens.sum() * h * h)


def timed(fn, *args, **kwargs):
    """(result, seconds)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
