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


def check_image_split(train_images, train_labels, test_images, test_labels, batch_size):
    """Float64 (N, features) images and int64 labels of a train/held-out split, checked; and a minibatch size
    that fits the training images.  Errors name the argument."""
    train_x = np.ascontiguousarray(train_images, dtype=np.float64)
    train_y = np.asarray(train_labels, dtype=np.int64)
    test_x = np.ascontiguousarray(test_images, dtype=np.float64)
    test_y = np.asarray(test_labels, dtype=np.int64)
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.ndim != 2 or x.shape[0] == 0 or y.shape != (x.shape[0],):
            raise ValueError(f"{name}_images/{name}_labels: expected (N, features) images and N labels, got "
                             f"{x.shape} and {y.shape}")
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError("test_images: feature count differs from train_images'")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not \
            1 <= batch_size <= train_x.shape[0]:
        raise ValueError(f"batch_size must be an integer in 1…{train_x.shape[0]}, got {batch_size!r}")
    return train_x, train_y, test_x, test_y
