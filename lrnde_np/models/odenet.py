"""Chen et al. (2018), Table 1, CPU-sized: a ResNet, an RK-Net and an ODE-Net with the same block.

All three classify a flattened image x (784 pixels in [0, 1]) as

    h0 = tanh(W_in x + b_in)                      (784 → dim: the "downsampling" stem)
    h1 = feature map of h0                        (dim → dim, below)
    logits = W_out h1 + b_out                     (dim → 10)

and differ only in the feature map, built from one block architecture ``f(t, h; θ) = MLP((dim, hidden, dim),
"tanh", time_input="all")`` (the time enters every layer, as in Chen's ConcatConv blocks):

* ``"resnet"``: L residual blocks ``h ← h + f(l/L, h; θ_l)`` with their own parameters θ_1…θ_L; backprop
  stores the L block inputs (memory O(L));
* ``"rknet"``: ``dh/dt = f(t, h; θ)`` on [0, 1] with one θ, solved by a Runge–Kutta method (adaptive Tsit5 by
  default, or fixed steps) and differentiated by backpropagating through the solver's steps — the discrete
  adjoint (memory O(L̃), L̃ the number of steps);
* ``"odenet"``: the same ODE, differentiated by Chen's backsolve adjoint (z re-solved backwards with the
  adjoint state; memory O(1) in the steps).

Parameter vector: W_in (dim × 784, row-major), b_in, the block parameters (L blocks for the ResNet, one for the
ODE models), W_out (10 × dim), b_out.
"""

from __future__ import annotations

import math

import numpy as np

from ..adjoint import backsolve_adjoint, discrete_adjoint
from ..nn import MLP, softmax_cross_entropy
from ..ode import solve_ode

KINDS = ("resnet", "rknet", "odenet")
N_CLASSES = 10


class SolveFailedError(RuntimeError):
    """A forward solve of an ODE model did not reach t = 1."""


class Table1Model:
    """One of Chen's three Table 1 models (see the module docstring)."""

    def __init__(
        self,
        kind,
        dim=32,
        hidden=64,
        n_blocks=6,
        input_dim=784,
        rtol=1e-3,
        atol=1e-3,
        method="tsit5",
        fixed_steps=None,
        backsolve_tol=None,
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, v in (("dim", dim), ("hidden", hidden), ("n_blocks", n_blocks), ("input_dim", input_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if fixed_steps is not None and (
            isinstance(fixed_steps, bool) or not isinstance(fixed_steps, (int, np.integer)) or fixed_steps <= 0
        ):
            raise ValueError(f"fixed_steps must be a positive integer or None, got {fixed_steps!r}")
        self.kind = kind
        self.dim, self.hidden, self.input_dim = int(dim), int(hidden), int(input_dim)
        self.n_blocks = int(n_blocks) if kind == "resnet" else 1
        self.rtol, self.atol = float(rtol), float(atol)
        self.method = method
        self.fixed_steps = fixed_steps
        self.backsolve_tol = backsolve_tol
        self.block = MLP((self.dim, self.hidden, self.dim), "tanh", time_input="all")
        nb = self.block.n_params
        sizes = [self.dim * self.input_dim, self.dim] + [nb] * self.n_blocks + [N_CLASSES * self.dim, N_CLASSES]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_params = int(self._offsets[-1])
        self.last_nfe = 0
        self.last_steps = 0

    # -- parameters ----------------------------------------------------------------------------------------

    def split(self, params):
        """(W_in, b_in, [θ_1, …], W_out, b_out) as views into ``params``."""
        if params.shape != (self.n_params,):
            raise ValueError(f"params must have shape ({self.n_params},), got {params.shape}")
        o = self._offsets
        W_in = params[o[0] : o[1]].reshape(self.dim, self.input_dim)
        b_in = params[o[1] : o[2]]
        blocks = [params[o[2 + i] : o[3 + i]] for i in range(self.n_blocks)]
        k = 2 + self.n_blocks
        W_out = params[o[k] : o[k + 1]].reshape(N_CLASSES, self.dim)
        b_out = params[o[k + 1] : o[k + 2]]
        return W_in, b_in, blocks, W_out, b_out

    def init_params(self, rng):
        """Glorot-uniform weights, zero biases; each ResNet block scaled by 1/L so the depth does not blow up the
        initial features (the ODE blocks integrate over a unit interval, which does the same)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        params = np.zeros(self.n_params)
        W_in, b_in, blocks, W_out, b_out = self.split(params)
        W_in[:] = rng.uniform(-1, 1, W_in.shape) * math.sqrt(6.0 / (self.input_dim + self.dim))
        for theta in blocks:
            theta[:] = self.block.init_params(rng)
            if self.kind == "resnet":
                theta *= 1.0 / self.n_blocks
        W_out[:] = rng.uniform(-1, 1, W_out.shape) * math.sqrt(6.0 / (self.dim + N_CLASSES))
        return params

    # -- the feature map -------------------------------------------------------------------------------------

    def _solve(self, h0, theta, record):
        kw = {"saveat": np.array([1.0]), "record_states": record}
        if self.fixed_steps is not None:
            method = "rk4" if self.method in ("tsit5", "dp5", "bs3") else self.method
            sol = solve_ode(
                self.block.rhs, (0.0, 1.0), h0, theta, method=method, adaptive=False, dt=1.0 / self.fixed_steps, **kw
            )
        else:
            sol = solve_ode(
                self.block.rhs, (0.0, 1.0), h0, theta, method=self.method, rtol=self.rtol, atol=self.atol, **kw
            )
        if not sol.success:
            raise SolveFailedError(sol.message)
        self.last_nfe = sol.nfe
        self.last_steps = sol.stats["accepted"]
        return sol

    def features(self, params, x):
        """h1 for a batch of images (batch, input_dim) → (batch, dim)."""
        W_in, b_in, blocks, _, _ = self.split(params)
        h = np.tanh(x @ W_in.T + b_in).ravel()
        if self.kind == "resnet":
            out = np.empty_like(h)
            for i, theta in enumerate(blocks):
                self.block.rhs(i / self.n_blocks, h, theta, out)
                h = h + out
            return h.reshape(x.shape[0], self.dim)
        return self._solve(h, blocks[0], record=False).y[-1].reshape(x.shape[0], self.dim)

    def predict(self, params, x):
        _, _, _, W_out, b_out = self.split(params)
        return self.features(params, x) @ W_out.T + b_out

    # -- training ----------------------------------------------------------------------------------------------

    def loss_and_grad(self, params, x, labels):
        """Mean softmax cross-entropy of the batch and its gradient with respect to ``params``."""
        W_in, b_in, blocks, W_out, b_out = self.split(params)
        grad = np.zeros_like(params)
        gW_in, gb_in, gblocks, gW_out, gb_out = self.split(grad)
        batch = x.shape[0]
        h0 = np.tanh(x @ W_in.T + b_in)
        h = h0.ravel()
        if self.kind == "resnet":
            inputs = []  # the stored activations: O(L) memory
            out = np.empty_like(h)
            for i, theta in enumerate(blocks):
                inputs.append(h)
                self.block.rhs(i / self.n_blocks, h, theta, out)
                h = h + out
            self.last_nfe, self.last_steps = self.n_blocks, self.n_blocks
        else:
            sol = self._solve(h, blocks[0], record=self.kind == "rknet")
            h = sol.y[-1].copy()
        h1 = h.reshape(batch, self.dim)
        logits = h1 @ W_out.T + b_out
        loss, g_logits = softmax_cross_entropy(logits, labels)
        gW_out[:] = g_logits.T @ h1
        gb_out[:] = g_logits.sum(axis=0)
        a = (g_logits @ W_out).ravel()  # dL/dh1
        if self.kind == "resnet":
            a_y = np.empty_like(a)
            for i in range(self.n_blocks - 1, -1, -1):
                self.block.vjp(i / self.n_blocks, inputs[i], blocks[i], a, a_y, gblocks[i])
                a = a + a_y
        elif self.kind == "rknet":
            res = discrete_adjoint(sol, self.block.vjp, grad_y=a[None, :])
            a, gblocks[0][:] = res.grad_y0, res.grad_p
        else:
            tol = self.backsolve_tol or (self.rtol, self.atol)
            res = backsolve_adjoint(
                self.block.rhs,
                self.block.vjp,
                sol,
                a[None, :],
                rtol=tol[0],
                atol=tol[1],
                method="tsit5",
                f_value_vjp=self.block.value_vjp,
            )
            a, gblocks[0][:] = res.grad_y0, res.grad_p
        g_z = a.reshape(batch, self.dim) * (1.0 - h0 * h0)
        gW_in[:] = g_z.T @ x
        gb_in[:] = g_z.sum(axis=0)
        return loss, grad

    def config(self):
        return {
            "kind": self.kind,
            "dim": self.dim,
            "hidden": self.hidden,
            "n_blocks": self.n_blocks,
            "rtol": self.rtol,
            "atol": self.atol,
            "method": self.method,
            "fixed_steps": self.fixed_steps,
            "n_params": self.n_params,
        }
