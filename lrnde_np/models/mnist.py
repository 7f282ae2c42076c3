"""The paper's MNIST neural ODE classifier.

z(0) = the image (784 pixels in [0, 1]); dz/dt = W2·[tanh(W1·[z; t] + b1); t] + b2 on t ∈ [0, 1], i.e.
``MLP((784, hidden, 784), "tanh", time_input="all")`` (the official ``TDChain(Dense(785→100, tanh),
Dense(101→784))`` at hidden = 100); logits = W·z(1) + b (784 → 10); loss = softmax cross-entropy (+ λ·R).

Parameter vector: the field's parameters, then W (10 × 784, row-major), then b (10).

Data: the images the caller passes (the experiments use 8,000 training / 2,000 held-out images of the
10,000-image MNIST test split, split with a fixed seed — see :func:`lrnde_np.data.split`).
"""

from __future__ import annotations

import math

import numpy as np

from ..nn import MLP, accuracy, softmax_cross_entropy
from .base import Evaluation, StepOutcome, check_generator, check_image_split, evaluate_classifier
from .node import NeuralODE, Regularization

N_CLASSES = 10


class MNISTTask:
    """MNIST classification with a neural ODE; see the module docstring."""

    name = "mnist"
    has_accuracy = True

    def __init__(
        self,
        train_images,
        train_labels,
        test_images,
        test_labels,
        hidden=100,
        rtol=1e-5,
        atol=1e-5,
        adjoint="discrete",
        batch_size=128,
        eval_batch_size=None,
        method="tsit5",
        data_note="",
    ):
        self.train_x, self.train_y, self.test_x, self.test_y = check_image_split(
            train_images, train_labels, test_images, test_labels, batch_size
        )
        self.dim = self.train_x.shape[1]
        self.hidden = int(hidden)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.field = MLP((self.dim, self.hidden, self.dim), "tanh", time_input="all")
        self.node = NeuralODE(self.field, (0.0, 1.0), rtol, atol, method, adjoint)
        self._config = dict(
            task="mnist",
            hidden=self.hidden,
            rtol=float(rtol),
            atol=float(atol),
            adjoint=adjoint,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            method=method,
            n_train=int(self.train_x.shape[0]),
            n_test=int(self.test_x.shape[0]),
            data_note=data_note,
        )

    def config(self) -> dict:
        return dict(self._config)

    @property
    def n_params(self) -> int:
        return self.field.n_params + N_CLASSES * self.dim + N_CLASSES

    def _split_params(self, params):
        n_field = self.field.n_params
        W = params[n_field : n_field + N_CLASSES * self.dim].reshape(N_CLASSES, self.dim)
        return params[:n_field], W, params[n_field + N_CLASSES * self.dim :]

    def init_params(self, rng):
        """The field's initialisation (Glorot), a Glorot-uniform classifier and zero classifier biases."""
        rng = check_generator(rng)
        params = np.zeros(self.n_params)
        field_p, W, _ = self._split_params(params)
        field_p[:] = self.field.init_params(rng)
        limit = math.sqrt(6.0 / (self.dim + N_CLASSES))
        W[:] = rng.uniform(-limit, limit, size=W.shape)
        return params

    def sample_batch(self, rng):
        idx = check_generator(rng).choice(self.train_x.shape[0], self.batch_size, replace=False)
        return self.train_x[idx], self.train_y[idx]

    def step(self, params, batch, regularization: Regularization, lam, rng) -> StepOutcome:
        images, labels = batch
        field_p, W, b = self._split_params(params)
        fp = self.node.forward(np.ascontiguousarray(images).ravel(), field_p, regularization, rng)
        z1 = fp.outputs[0].reshape(images.shape)
        logits = z1 @ W.T + b
        task_loss, grad_logits = softmax_cross_entropy(logits, labels)
        grad = np.empty_like(params)
        g_field, g_W, g_b = self._split_params(grad)
        g_W[:] = grad_logits.T @ z1
        g_b[:] = grad_logits.sum(axis=0)
        _, g_field[:], nfe_backward = self.node.backward(fp, (grad_logits @ W).ravel(), lam)
        return StepOutcome(
            loss=task_loss + lam * fp.reg_value,
            task_loss=task_loss,
            reg_value=fp.reg_value,
            accuracy=accuracy(logits, labels),
            grad=grad,
            nfe_forward=fp.sol.nfe,
            nfe_reg=fp.nfe_reg,
            nfe_backward=nfe_backward,
            t_reg=fp.t_reg,
        )

    def predict(self, params, images):
        """Logits of a batch with the plain solve; returns (logits, nfe)."""
        field_p, W, b = self._split_params(params)
        images = np.ascontiguousarray(images, dtype=np.float64)
        sol = self.node.solve(images.ravel(), field_p, saveat=np.array([1.0]))
        return sol.y[-1].reshape(images.shape) @ W.T + b, sol.nfe

    def prediction_call(self, params):
        """A zero-argument callable predicting the first held-out batch (for interleaved timing)."""
        xb = np.ascontiguousarray(self.test_x[: self.eval_batch_size])
        return lambda: self.predict(params, xb)

    def evaluate(self, params, split="test", max_batches=None) -> Evaluation:
        """Loss, accuracy, mean NFE and median prediction time per batch over the held-out (or training) set."""
        x, y = (self.test_x, self.test_y) if split == "test" else (self.train_x, self.train_y)
        return evaluate_classifier(lambda b, xb: self.predict(params, xb), x, y, self.eval_batch_size, max_batches)
