"""What a task hands the training loop and the comparison: one step's outcome and an evaluation."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..nn import softmax_cross_entropy


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
            raise ValueError(
                f"{name}_images/{name}_labels: expected (N, features) images and N labels, got {x.shape} and {y.shape}"
            )
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError("test_images: feature count differs from train_images'")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or not 1 <= batch_size <= train_x.shape[0]
    ):
        raise ValueError(f"batch_size must be an integer in 1…{train_x.shape[0]}, got {batch_size!r}")
    return train_x, train_y, test_x, test_y


def evaluate_classifier(predict_batch, x, y, batch_size, max_batches=None) -> Evaluation:
    """Cross-entropy, accuracy, mean NFE and median prediction time over (x, y) in batches of batch_size
    (the first max_batches of them when given); ``predict_batch(b, x_b) -> (logits, nfe)`` predicts batch b."""
    starts = list(range(0, x.shape[0], batch_size))
    if max_batches is not None:
        starts = starts[:max_batches]
    losses, correct, nfes, times, count = [], 0, [], [], 0
    for b, s in enumerate(starts):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        start = time.perf_counter()
        logits, nfe = predict_batch(b, xb)
        times.append(time.perf_counter() - start)
        loss, _ = softmax_cross_entropy(logits, yb)
        losses.append(loss * yb.size)
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
        nfes.append(nfe)
        count += yb.size
    return Evaluation(
        test_loss=float(np.sum(losses) / count),
        test_accuracy=correct / count,
        test_nfe=float(np.mean(nfes)),
        prediction_time=float(np.median(times)),
        n_batches=len(nfes),
    )
