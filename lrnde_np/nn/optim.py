"""Adam (Kingma & Ba 2015) on flat parameter vectors."""

from __future__ import annotations

import numpy as np


class Adam:
    """Bias-corrected Adam updating a float64 parameter vector in place.

    ``m ← β1 m + (1-β1) g``, ``v ← β2 v + (1-β2) g²``,
    ``p ← p - lr · (m / (1-β1^k)) / (sqrt(v / (1-β2^k)) + eps)`` at step k = 1, 2, ...

    The moments are created on the first step with the parameters' shape; :meth:`state_dict` holds only
    floats, an int and arrays, so ``np.savez(path, **opt.state_dict())`` checkpoints it and
    ``opt.load_state_dict(np.load(path))`` restores it.
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = self._checked_hyperparameters(lr, beta1, beta2, eps)
        self.reset()

    @staticmethod
    def _checked_hyperparameters(lr, beta1, beta2, eps):
        lr, beta1, beta2, eps = float(lr), float(beta1), float(beta2), float(eps)
        if not lr > 0.0:
            raise ValueError(f"lr: must be positive, got {lr}")
        if not 0.0 <= beta1 < 1.0:
            raise ValueError(f"beta1: must lie in [0, 1), got {beta1}")
        if not 0.0 <= beta2 < 1.0:
            raise ValueError(f"beta2: must lie in [0, 1), got {beta2}")
        if not eps >= 0.0:
            raise ValueError(f"eps: must be non-negative, got {eps}")
        return lr, beta1, beta2, eps

    def reset(self):
        """Forget the moments and the step count (the hyperparameters stay)."""
        self.step_count = 0
        self.m = None
        self.v = None

    def step(self, params, grad):
        """One Adam update of ``params`` (a writable float64 array) in place, given its gradient."""
        if not isinstance(params, np.ndarray) or params.dtype != np.float64 or not params.flags.writeable:
            raise ValueError("params: expected a writable float64 numpy array (updated in place)")
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != params.shape:
            raise ValueError(f"grad: shape {grad.shape} differs from params' {params.shape}")
        if self.m is None:
            self.m = np.zeros_like(params)
            self.v = np.zeros_like(params)
        elif self.m.shape != params.shape:
            raise ValueError(f"params: shape {params.shape} differs from the optimizer state's {self.m.shape}")
        self.step_count += 1
        self.m *= self.beta1
        self.m += (1.0 - self.beta1) * grad
        self.v *= self.beta2
        self.v += (1.0 - self.beta2) * grad * grad
        m_hat = self.m / (1.0 - self.beta1**self.step_count)
        v_hat = self.v / (1.0 - self.beta2**self.step_count)
        params -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self):
        """Hyperparameters, step count and copies of the moments (empty arrays before the first step)."""
        empty = np.zeros(0)
        return {
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "step_count": self.step_count,
            "m": empty if self.m is None else self.m.copy(),
            "v": empty if self.v is None else self.v.copy(),
        }

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (plain values or the 0-d arrays of a loaded .npz)."""
        missing = {"lr", "beta1", "beta2", "eps", "step_count", "m", "v"} - set(state.keys())
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        hyper = self._checked_hyperparameters(state["lr"], state["beta1"], state["beta2"], state["eps"])
        step_count = int(state["step_count"])
        m = np.array(state["m"], dtype=np.float64)
        v = np.array(state["v"], dtype=np.float64)
        if step_count < 0:
            raise ValueError(f"state: step_count must be non-negative, got {step_count}")
        if m.shape != v.shape or (step_count > 0) != (m.size > 0):
            raise ValueError(f"state: moments of shapes {m.shape} and {v.shape} do not fit step_count {step_count}")
        self.lr, self.beta1, self.beta2, self.eps = hyper
        self.step_count = step_count
        self.m, self.v = (m, v) if step_count > 0 else (None, None)
