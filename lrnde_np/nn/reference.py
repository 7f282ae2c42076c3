"""A plain array-module twin of :class:`~lrnde_np.nn.mlp.MLP`'s forward pass, an oracle for tests.

Written against an ``xp`` module argument so that ``autograd.numpy`` can differentiate it; shares nothing
with the Numba kernels but the documented parameter layout (through :meth:`MLP.unpack_params`).
"""

from __future__ import annotations

import numpy


def _activation(name, z, xp):
    if name == "tanh":
        return xp.tanh(z)
    if name == "softplus":
        return xp.logaddexp(0.0, z)
    if name == "relu":
        return xp.maximum(z, 0.0)
    if name == "swish":
        return z * 0.5 * (1.0 + xp.tanh(0.5 * z))  # z·sigmoid(z)
    return z


def reference_forward(mlp, y, p, t=0.0, xp=numpy):
    """MLP(t, y) for a (batch, widths[0]) array y, as a (batch, widths[-1]) array."""
    x = y**3 if mlp.input_transform == "cube" else y
    for (W, w_t, b), name in zip(mlp.unpack_params(p), mlp.layer_activations, strict=True):
        z = xp.dot(x, W.T) + b
        if w_t is not None:
            z = z + t * w_t
        x = _activation(name, z, xp)
    return x
