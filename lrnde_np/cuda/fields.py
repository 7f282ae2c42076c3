"""The library's MLP field as a function that compiles for the CPU and for a GPU thread (small networks).

``nn/mlp.py``'s fields allocate work arrays and call BLAS, neither of which exists inside a CUDA kernel.  For the
ensembles, where one thread integrates one trajectory of a small field, :func:`mlp_device_field` builds an
allocation-free, BLAS-free ``f(t, y, p, out)`` for an :class:`~lrnde_np.nn.MLP` with **one hidden layer**
(widths ``(n, h, m)``, any activations, ``time_input`` and ``input_transform`` as the MLP's): for each hidden unit
it forms the pre-activation, applies the activation and adds that unit's column of the output layer into ``out``,
so no hidden vector needs storing.  The parameter vector is the MLP's own (``MLP.unpack_params`` layout), so the
same ``p`` trains with ``mlp.rhs`` and integrates with this field.

The function is a plain ``@njit`` function: ``backend="cpu"`` compiles it as such, and numba-cuda compiles it as a
device function for ``backend="cuda"``.  Its activations use ``math.tanh``/``exp``/``log1p`` (the CPU MLP uses
the library's vectorised ``tanh``, ≤ 1.4 ulp), so values agree with ``mlp.rhs`` to rounding, not bitwise.
Imports numba only.
"""

from __future__ import annotations

import math

from numba import njit

from ..nn.mlp import ACTIVATIONS, IDENTITY, RELU, SOFTPLUS, SWISH, TANH

__all__ = ["mlp_device_field"]


@njit(cache=True)
def _activate(z, code):
    if code == TANH:
        return math.tanh(z)
    if code == RELU:
        return z if z > 0.0 else 0.0
    if code == SOFTPLUS:  # log(1 + e^z) without overflow
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    if code == SWISH:
        return z * 0.5 * (1.0 + math.tanh(0.5 * z))
    return z


def mlp_device_field(mlp):
    """``f(t, y, p, out)`` computing ``mlp.forward`` on flat (batch × n) states, compilable for a GPU thread.

    Raises ValueError for an MLP with other than one hidden layer (a deeper one needs per-thread scratch of its
    widths; use the CPU ensemble with ``mlp.rhs`` for those).
    """
    if mlp.n_layers != 2:
        raise ValueError(
            f"mlp: the device field supports one hidden layer (widths (n, h, m)), got widths {tuple(mlp.widths)}"
        )
    n_in, hidden, n_out = (int(w) for w in mlp.widths)
    act_hidden, act_out = (ACTIVATIONS[a] for a in mlp.layer_activations)
    time_hidden, time_out = (bool(b) for b in mlp.layer_takes_time)
    cube = mlp.input_transform == "cube"
    # Offsets into p, in MLP.unpack_params order: W (n_out × n_in), then w_t (n_out) if the layer takes t, then b.
    w1 = 0
    w1t = w1 + hidden * n_in
    b1 = w1t + (hidden if time_hidden else 0)
    w2 = b1 + hidden
    w2t = w2 + n_out * hidden
    b2 = w2t + (n_out if time_out else 0)
    n_params = b2 + n_out
    if n_params != mlp.n_params:  # the layout above must be the MLP's
        raise AssertionError(f"parameter layout mismatch: {n_params} != {mlp.n_params}")

    @njit
    def field(t, y, p, out):
        batch = y.size // n_in
        for s in range(batch):
            for j in range(n_out):
                acc = p[b2 + j]
                if time_out:
                    acc += t * p[w2t + j]
                out[s * n_out + j] = acc
            for k in range(hidden):
                z = p[b1 + k]
                if time_hidden:
                    z += t * p[w1t + k]
                for i in range(n_in):
                    x = y[s * n_in + i]
                    if cube:
                        x = x * x * x
                    z += p[w1 + k * n_in + i] * x
                a = _activate(z, act_hidden)
                for j in range(n_out):
                    out[s * n_out + j] += p[w2 + j * hidden + k] * a
            if act_out != IDENTITY:
                for j in range(n_out):
                    out[s * n_out + j] = _activate(out[s * n_out + j], act_out)

    return field
