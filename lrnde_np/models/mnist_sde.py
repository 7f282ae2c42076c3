"""The paper's MNIST neural SDE classifier (``local-regularization.md`` §4.2, ``experiments/mnist_nsde.jl``).

    z(0)  = W_e·image + b_e                     encoder Dense(784 → 32), trained (gradient through z(0))
    dz    = f(z) dt + g(z) ⊙ dW  on [0, 1]      drift Dense(32 → 64, tanh) → Dense(64 → 32),
                                                diagonal diffusion Dense(32 → 32) (linear), SOSRI
    logits = W_c·z(1) + b_c                     classifier Dense(32 → 10);  loss = softmax cross-entropy (+ λ·R)

Parameter vector: encoder (W_e row-major, b_e), drift, diffusion, classifier (W_c, b_c) — each block in
:class:`~lrnde_np.nn.MLP`'s layout.

Noise: each training step draws ONE integer from the Generator it is given (the training loop's regularizer
generator) — the main solve's Brownian seed — and derives from it a private Generator for the regularizer's
draws (t_reg, the biased step, the regularizing step's noise).  Every method therefore consumes that
generator identically: runs with one seed see the same Brownian seeds iteration by iteration, and a run is
bit-identical when repeated.  Prediction solves batch ``b`` of the held-out set with seed ``eval_seed + b``
(fixed), so every method is evaluated on the same noise seeds.

Local unbiased regularization takes X(t_reg) from the linear interpolant of the vanilla main solve by
default (``unbiased_state``; see :mod:`lrnde_np.models.nsde`).

Test NFE: drift plus diffusion evaluations of the prediction solve (``stats["nfe"] + stats["nge"]``; the
initial-step rule's probes included), per batch, averaged over batches.
"""

from __future__ import annotations

import numpy as np

from ..nn import MLP, accuracy, softmax_cross_entropy
from .base import Evaluation, StepOutcome, check_generator, check_image_split, evaluate_classifier
from .node import Regularization
from .nsde import NeuralSDE

N_CLASSES = 10
EVAL_SEED = 20230


class MNISTSDETask:
    """MNIST classification with a neural SDE; see the module docstring."""

    name = "mnist-sde"
    has_accuracy = True

    def __init__(
        self,
        train_images,
        train_labels,
        test_images,
        test_labels,
        state_dim=32,
        hidden=64,
        rtol=0.14,
        atol=0.14,
        batch_size=64,
        eval_batch_size=None,
        method="sosri",
        eval_seed=EVAL_SEED,
        delta=None,
        unbiased_state="interpolate",
        data_note="",
    ):
        self.train_x, self.train_y, self.test_x, self.test_y = check_image_split(
            train_images, train_labels, test_images, test_labels, batch_size
        )
        for name, v in (("state_dim", state_dim), ("hidden", hidden)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(eval_seed, bool) or not isinstance(eval_seed, (int, np.integer)) or eval_seed < 0:
            raise ValueError(f"eval_seed must be a non-negative integer, got {eval_seed!r}")
        self.n_features = self.train_x.shape[1]
        self.state_dim, self.hidden = int(state_dim), int(hidden)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.eval_seed = int(eval_seed)
        self.encoder = MLP((self.n_features, self.state_dim), [])
        self.drift = MLP((self.state_dim, self.hidden, self.state_dim), "tanh")
        self.diffusion = MLP((self.state_dim, self.state_dim), [])
        self.classifier = MLP((self.state_dim, N_CLASSES), [])
        self.nsde = NeuralSDE(
            self.drift, self.diffusion, (0.0, 1.0), rtol, atol, method, delta=delta, unbiased_state=unbiased_state
        )
        sizes = [self.encoder.n_params, self.nsde.n_params, self.classifier.n_params]
        self._offsets = np.cumsum([0] + sizes)
        self._config = dict(
            task="mnist-sde",
            state_dim=self.state_dim,
            hidden=self.hidden,
            rtol=float(rtol),
            atol=float(atol),
            adjoint="discrete",
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            method=method,
            noise="diagonal",
            eval_seed=self.eval_seed,
            delta=None if delta is None else float(delta),
            unbiased_state=unbiased_state,
            n_train=int(self.train_x.shape[0]),
            n_test=int(self.test_x.shape[0]),
            data_note=data_note,
        )

    def config(self) -> dict:
        return dict(self._config)

    @property
    def n_params(self) -> int:
        return int(self._offsets[-1])

    def split_params(self, params):
        """Views (encoder, nsde (drift + diffusion), classifier) of the parameter vector."""
        o = self._offsets
        return params[o[0] : o[1]], params[o[1] : o[2]], params[o[2] : o[3]]

    def _dense(self, net, p):
        ((W, _, b),) = net.unpack_params(p)
        return W, b

    def init_params(self, rng):
        """Glorot-uniform weights and zero biases for every layer (Lux's Dense defaults)."""
        rng = check_generator(rng)
        return np.concatenate(
            [self.encoder.init_params(rng), self.nsde.init_params(rng), self.classifier.init_params(rng)]
        )

    def sample_batch(self, rng):
        idx = check_generator(rng).choice(self.train_x.shape[0], self.batch_size, replace=False)
        return self.train_x[idx], self.train_y[idx]

    @staticmethod
    def draw_noise(rng):
        """(Brownian seed of the main solve, Generator for the regularizer's draws) from one draw of ``rng``."""
        seed = int(check_generator(rng).integers(0, 2**63 - 1))
        return seed, np.random.default_rng([seed, 1])

    def forward_backward(self, params, images, labels, regularization: Regularization, lam, seed, reg_rng):
        """One step with a given Brownian seed and regularizer Generator; returns (StepOutcome, forward pass)."""
        p_enc, p_sde, p_cls = self.split_params(params)
        We, be = self._dense(self.encoder, p_enc)
        Wc, bc = self._dense(self.classifier, p_cls)
        images = np.ascontiguousarray(images, dtype=np.float64)
        z0 = images @ We.T + be
        fp = self.nsde.forward(
            np.ascontiguousarray(z0).ravel(), np.ascontiguousarray(p_sde), regularization, reg_rng, seed
        )
        z1 = fp.output.reshape(z0.shape)
        logits = z1 @ Wc.T + bc
        task_loss, grad_logits = softmax_cross_entropy(logits, labels)
        grad = np.zeros_like(params)
        g_enc, g_sde, g_cls = self.split_params(grad)
        gWe, gbe = self._dense(self.encoder, g_enc)
        gWc, gbc = self._dense(self.classifier, g_cls)
        gWc[:] = grad_logits.T @ z1
        gbc[:] = grad_logits.sum(axis=0)
        g_z0, g_sde[:], nfe_backward = self.nsde.backward(fp, (grad_logits @ Wc).ravel(), lam)
        g_z0 = g_z0.reshape(z0.shape)
        gWe[:] = g_z0.T @ images
        gbe[:] = g_z0.sum(axis=0)
        out = StepOutcome(
            loss=task_loss + lam * fp.reg_value,
            task_loss=task_loss,
            reg_value=fp.reg_value,
            accuracy=accuracy(logits, labels),
            grad=grad,
            nfe_forward=fp.nfe_main,
            nfe_reg=fp.nfe_reg,
            nfe_backward=nfe_backward,
            t_reg=fp.t_reg,
        )
        return out, fp

    def step(self, params, batch, regularization: Regularization, lam, rng) -> StepOutcome:
        images, labels = batch
        seed, reg_rng = self.draw_noise(rng)
        return self.forward_backward(params, images, labels, regularization, lam, seed, reg_rng)[0]

    def predict(self, params, images, seed=None):
        """Logits of a batch with the plain solve and Brownian seed ``seed`` (default: the first evaluation
        batch's); returns (logits, nfe) with nfe = drift + diffusion evaluations."""
        p_enc, p_sde, p_cls = self.split_params(params)
        We, be = self._dense(self.encoder, p_enc)
        Wc, bc = self._dense(self.classifier, p_cls)
        images = np.ascontiguousarray(images, dtype=np.float64)
        z0 = images @ We.T + be
        sol = self.nsde.solve(
            np.ascontiguousarray(z0).ravel(),
            np.ascontiguousarray(p_sde),
            seed=self.eval_seed if seed is None else int(seed),
        )
        return sol.x[-1].reshape(z0.shape) @ Wc.T + bc, sol.stats["nfe"] + sol.stats["nge"]

    def prediction_call(self, params):
        """A zero-argument callable predicting the first held-out batch with its fixed seed (for timing)."""
        xb = np.ascontiguousarray(self.test_x[: self.eval_batch_size])
        return lambda: self.predict(params, xb, self.eval_seed)

    def evaluate(self, params, split="test", max_batches=None) -> Evaluation:
        """Loss, accuracy, mean NFE and median prediction time per batch (batch b solved with seed
        ``eval_seed + b``) over the held-out (or training) set."""
        x, y = (self.test_x, self.test_y) if split == "test" else (self.train_x, self.train_y)
        return evaluate_classifier(
            lambda b, xb: self.predict(params, xb, self.eval_seed + b), x, y, self.eval_batch_size, max_batches
        )
