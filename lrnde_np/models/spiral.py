"""The spiral regression of Chen et al. (2018), torchdiffeq's ``examples/ode_demo.py``: the fast teaching case.

True dynamics du/dt = u³·A (see :func:`lrnde_np.data.spiral_true_rhs`), y0 = (2, 0), 1000 points on
[0, 25].  Model: dz/dt = W2·tanh(W1·z³ + b1) + b2, i.e. ``MLP((2, 50, 2), "tanh", input_transform="cube")``.
Minibatches as in ode_demo: ``batch_size`` random sub-trajectories of ``batch_time`` consecutive points, each
started from its true first point and integrated over ``t[:batch_time]``.  Loss: mean squared error over the
predicted sub-trajectories (ode_demo uses the mean absolute error; MSE keeps the loss smooth for the
gradient checks).

Evaluation (plain solve): every ``eval_stride``-th true point starts a sub-trajectory of ``eval_time``
points (default 4 × batch_time, i.e. four times the training horizon); all of them are predicted in one
batched solve, whose MSE, NFE and wall time are the test loss, test NFE and prediction time per batch.
(The single long trajectory from y0 over [0, 25] that ode_demo plots is available from
:meth:`SpiralTask.predict_trajectory`; its error swings by two orders of magnitude between seeds of
equally well trained models — the horizon is far beyond the training one — so it makes a poor table
entry.)
"""

from __future__ import annotations

import time

import numpy as np

from ..data import spiral_data
from ..nn import MLP, mse_loss
from .base import Evaluation, StepOutcome, check_generator
from .node import NeuralODE, Regularization


class SpiralTask:
    """Spiral regression with a neural ODE; see the module docstring."""

    name = "spiral"
    has_accuracy = False

    def __init__(
        self,
        hidden=50,
        rtol=1e-6,
        atol=1e-8,
        adjoint="discrete",
        batch_size=20,
        batch_time=10,
        n_points=1000,
        t_end=25.0,
        method="tsit5",
        eval_time=None,
        eval_stride=5,
    ):
        if (
            isinstance(batch_time, bool)
            or not isinstance(batch_time, (int, np.integer))
            or not 2 <= batch_time < n_points
        ):
            raise ValueError(f"batch_time must be an integer in 2…{n_points - 1}, got {batch_time!r}")
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or not 1 <= batch_size <= n_points - batch_time
        ):
            raise ValueError(f"batch_size must be an integer in 1…{n_points - batch_time}, got {batch_size!r}")
        self.hidden, self.batch_size, self.batch_time = int(hidden), int(batch_size), int(batch_time)
        self.data = spiral_data(n_points, t_end)
        self.field = MLP((2, self.hidden, 2), "tanh", input_transform="cube")
        self.batch_t = self.data.t[: self.batch_time]
        self.node = NeuralODE(self.field, (self.batch_t[0], self.batch_t[-1]), rtol, atol, method, adjoint)
        self.eval_time = int(eval_time or 4 * self.batch_time)
        if not 2 <= self.eval_time < n_points:
            raise ValueError(f"eval_time must be an integer in 2…{n_points - 1}, got {eval_time!r}")
        if isinstance(eval_stride, bool) or not isinstance(eval_stride, (int, np.integer)) or eval_stride < 1:
            raise ValueError(f"eval_stride must be a positive integer, got {eval_stride!r}")
        self.eval_starts = np.arange(0, n_points - self.eval_time + 1, int(eval_stride))
        self.eval_t = self.data.t[: self.eval_time]
        self._config = dict(
            task="spiral",
            hidden=self.hidden,
            rtol=float(rtol),
            atol=float(atol),
            adjoint=adjoint,
            batch_size=self.batch_size,
            batch_time=self.batch_time,
            n_points=int(n_points),
            t_end=float(t_end),
            method=method,
            eval_time=self.eval_time,
            eval_stride=int(eval_stride),
        )

    def config(self) -> dict:
        return dict(self._config)

    @property
    def n_params(self) -> int:
        return self.field.n_params

    def init_params(self, rng):
        return self.field.init_params(check_generator(rng))

    def sample_batch(self, rng):
        """(y0 (B, 2), targets (batch_time, B, 2)) of random sub-trajectories."""
        rng = check_generator(rng)
        starts = rng.choice(self.data.t.size - self.batch_time, self.batch_size, replace=False)
        y0 = self.data.y[starts]
        targets = np.stack([self.data.y[starts + i] for i in range(self.batch_time)])
        return y0, targets

    def step(self, params, batch, regularization: Regularization, lam, rng) -> StepOutcome:
        y0, targets = batch
        fp = self.node.forward(np.ascontiguousarray(y0).ravel(), params, regularization, rng, saveat=self.batch_t)
        task_loss, grad_out = mse_loss(fp.outputs, targets.reshape(self.batch_time, -1))
        _, grad, nfe_backward = self.node.backward(fp, grad_out, lam)
        return StepOutcome(
            loss=task_loss + lam * fp.reg_value,
            task_loss=task_loss,
            reg_value=fp.reg_value,
            accuracy=float("nan"),
            grad=grad,
            nfe_forward=fp.sol.nfe,
            nfe_reg=fp.nfe_reg,
            nfe_backward=nfe_backward,
            t_reg=fp.t_reg,
        )

    def predict(self, params, y0, t):
        """Trajectories from the (B, 2) starts ``y0`` at the times ``t`` (t[0] the start); returns
        ((len(t), B, 2) states, nfe)."""
        y0 = np.ascontiguousarray(y0, dtype=np.float64)
        sol = self.node.solve(y0.ravel(), params, saveat=t, t_span=(t[0], t[-1]))
        return sol.y.reshape(len(t), -1, 2), sol.nfe

    def predict_trajectory(self, params):
        """The single long trajectory from the true y0 over all data times (ode_demo's plot)."""
        traj, nfe = self.predict(params, self.data.y[:1], self.data.t)
        return traj[:, 0], nfe

    def prediction_call(self, params):
        """A zero-argument callable predicting the evaluation batch (for interleaved timing)."""
        y0 = np.ascontiguousarray(self.data.y[self.eval_starts])
        return lambda: self.predict(params, y0, self.eval_t)

    def evaluate(self, params, repeats=5) -> Evaluation:
        """Test MSE of the evaluation sub-trajectories, the NFE of their batched solve, and the median wall
        time of ``repeats`` such predictions."""
        y0 = self.data.y[self.eval_starts]
        targets = np.stack([self.data.y[self.eval_starts + i] for i in range(self.eval_time)])
        times = []
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            pred, nfe = self.predict(params, y0, self.eval_t)
            times.append(time.perf_counter() - start)
        test_loss, _ = mse_loss(pred, targets)
        return Evaluation(
            test_loss=test_loss,
            test_accuracy=float("nan"),
            test_nfe=float(nfe),
            prediction_time=float(np.median(times)),
            n_batches=1,
        )
