"""What a task hands the training loop and the comparison: one step's outcome and an evaluation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class StepOutcome:
    """One minibatch: total loss (task loss + λ·R), its parts, the gradient, and the work done.

    ``nfe_forward`` is the main solve's NFE, ``nfe_reg`` the regularizer step's (their sum is the paper's
    training NFE); ``nfe_backward`` is the adjoint's.  ``accuracy`` is NaN for regression tasks.
    """

    loss: float
    task_loss: float
    reg_value: float
    accuracy: float
    grad: np.ndarray
    nfe_forward: int
    nfe_reg: int
    nfe_backward: int
    t_reg: float = float("nan")


@dataclass
class Evaluation:
    """Held-out metrics with the plain (unregularized) solve.

    ``test_nfe`` is the mean NFE per prediction batch, ``prediction_time`` the median wall time per batch
    (seconds), ``n_batches`` how many batches were timed.
    """

    test_loss: float
    test_accuracy: float
    test_nfe: float
    prediction_time: float
    n_batches: int

    def as_dict(self):
        return asdict(self)


def check_generator(rng, argname="rng"):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{argname} must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng
