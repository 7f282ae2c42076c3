"""Losses returning ``(loss, gradient w.r.t. the prediction)``, and classification accuracy."""

from __future__ import annotations

import numpy as np


def _matching_pair(pred, target):
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"target: shape {target.shape} differs from pred's {pred.shape}")
    if pred.size == 0:
        raise ValueError("pred: empty array")
    return pred, target


def mse_loss(pred, target):
    """Mean over all elements of ``(pred - target)**2``, and its gradient ``2 (pred - target) / pred.size``."""
    pred, target = _matching_pair(pred, target)
    residual = pred - target
    return float(np.mean(residual * residual)), (2.0 / residual.size) * residual


def sum_squares_loss(pred, target):
    """Sum over all elements of ``(pred - target)**2``, and its gradient ``2 (pred - target)``."""
    pred, target = _matching_pair(pred, target)
    residual = pred - target
    return float(np.sum(residual * residual)), 2.0 * residual


def _logits_and_labels(logits, labels):
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits: expected a non-empty (batch, classes) array, got shape {logits.shape}")
    labels = np.asarray(labels)
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels: expected shape ({logits.shape[0]},) to match logits, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(
            f"labels: class indices must lie in [0, {logits.shape[1]}), got [{labels.min()}, {labels.max()}]"
        )
    return logits, labels


def softmax_cross_entropy(logits, labels):
    """Mean over the batch of ``-log softmax(logits)[label]``, and its gradient ``(softmax - onehot) / batch``.

    ``logits`` is (batch, classes), ``labels`` holds integer class indices.  The row maximum is subtracted
    before exponentiating, so any finite logits work.
    """
    logits, labels = _logits_and_labels(logits, labels)
    batch = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp_shifted = np.exp(shifted)
    sum_exp = exp_shifted.sum(axis=1)
    rows = np.arange(batch)
    loss = float(np.mean(np.log(sum_exp) - shifted[rows, labels]))
    grad = exp_shifted / sum_exp[:, None]
    grad[rows, labels] -= 1.0
    grad /= batch
    return loss, grad


def accuracy(logits, labels):
    """Fraction of rows whose largest logit is at the label."""
    logits, labels = _logits_and_labels(logits, labels)
    return float(np.mean(np.argmax(logits, axis=1) == labels))
