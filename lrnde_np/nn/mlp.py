"""Multilayer perceptrons as Numba right-hand sides, with their exact VJP and JVP.

The heavy code lives in a few ``@njit(cache=True)`` kernels that read the architecture from an int64
*layout* array at run time, so they are compiled once and loaded from Numba's on-disk cache by every later
process, whatever the widths.  Each architecture then gets three tiny closures over its layout, compiled for
the fixed signatures of :mod:`lrnde_np._types` (``rhs``, ``vjp``, ``jvp``), which call the cached kernels
through their addresses and are shared by all MLPs with that layout.

Layout array: ``[n_layers, input_transform, (n_in, n_out, activation, takes_time) per layer]``.

Parameter vector (one flat float64 array), layer after layer::

    W    (n_out, n_in)  row-major
    w_t  (n_out,)       only when the layer takes t
    b    (n_out,)

and layer ``l`` computes ``a_l = act_l(W a_{l-1} + w_t t + b)``.  A torchdiffeq ``ConcatLinear`` weight
``W_torch`` (t in its first input column) is ``w_t = W_torch[:, 0]``, ``W = W_torch[:, 1:]``; ``w_t`` is
kept apart so that ``W`` stays contiguous for BLAS.

A state is a flat minibatch: ``len(y) == batch * widths[0]`` with the batch size inferred at run time, each
sample's features contiguous.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit, types

from .._jit import FunctionHandle, function_type_maker
from .._types import JVP_SIG, RHS_SIG, VALUE_VJP_SIG, VJP_SIG
from .tanh import tanh_into

IDENTITY, TANH, SOFTPLUS, RELU, SWISH = 0, 1, 2, 3, 4
ACTIVATIONS = {"identity": IDENTITY, "tanh": TANH, "softplus": SOFTPLUS, "relu": RELU, "swish": SWISH}
TIME_INPUTS = ("none", "first", "all")
NO_TRANSFORM, CUBE = 0, 1
INPUT_TRANSFORMS = {"none": NO_TRANSFORM, "cube": CUBE}

# Layers with at least this many multiply-adds per call go through BLAS.  Below it np.dot's fixed cost
# (~0.3 µs) outweighs its speed: the measured crossover lies between ~4k multiply-adds (short rows, e.g.
# 2→50 on a batch) and ~16k (square layers on a few samples).
BLAS_MIN_MACS = 4096

_HEADER = 2  # layout entries before the per-layer records
_PER_LAYER = 4  # n_in, n_out, activation, takes_time


# ----------------------------------------------------------------------------------------------------------
# Kernels work on views (slices) of flat arrays.


@njit(cache=True, inline="always")
def _sigmoid(z):
    # Two branches so that exp never overflows.
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def _activate(code, z, a):
    """a = act(z) elementwise (one branch per call, not per element)."""
    if code == TANH:
        tanh_into(z, a)
    elif code == SOFTPLUS:
        for k in range(z.size):
            a[k] = max(z[k], 0.0) + math.log1p(math.exp(-abs(z[k])))
    elif code == RELU:
        for k in range(z.size):
            a[k] = max(z[k], 0.0)
    elif code == SWISH:
        for k in range(z.size):
            a[k] = z[k] * _sigmoid(z[k])
    else:
        a[:] = z


@njit(cache=True)
def _times_slope(code, z, a, src, dst):
    """dst = act'(z) * src elementwise, given a = act(z).

    ``dst`` may be ``z`` itself (the VJP overwrites pre-activations it no longer needs): each element's
    slope is computed before that element is written.
    """
    if code == TANH:
        for k in range(z.size):
            dst[k] = (1.0 - a[k] * a[k]) * src[k]
    elif code == SOFTPLUS:
        for k in range(z.size):
            dst[k] = _sigmoid(z[k]) * src[k]
    elif code == RELU:
        for k in range(z.size):
            dst[k] = src[k] if z[k] > 0.0 else 0.0
    elif code == SWISH:
        for k in range(z.size):
            sig = _sigmoid(z[k])
            dst[k] = sig * (1.0 + z[k] * (1.0 - sig)) * src[k]
    else:
        dst[:] = src


# Dense layers on row-major blocks: W (n_out, n_in), inputs x (batch, n_in), outputs z (batch, n_out), all
# flat.  Small layers run as plain loops, indexed with unsigned ints (np.uint64): Numba then skips the
# negative-index fix-up, and reshaping (~25 ns each) or slicing every row would cost more than the
# arithmetic.  The pullback and weight-gradient loops keep their innermost loop long: along a row when rows
# are long (n_in ≥ n_out), down a column otherwise (2→50: ~2.5x faster); the forward product reduces along
# rows throughout (the column order gained ~20% on 2→50 and lost elsewhere).  Reassociation lets LLVM
# vectorise the reductions; NaN and Inf still propagate (no nnan/ninf).  Large layers go to BLAS.
_REASSOCIATE = {"reassoc", "contract"}


@njit(cache=True, fastmath=_REASSOCIATE)
def _rows_times_wt(W, x, z, n_in, n_out):
    """z[s, o] = Σ_i W[o, i] x[s, i]."""
    batch = z.size // n_out
    if batch * n_in * n_out >= BLAS_MIN_MACS:
        np.dot(x.reshape((batch, n_in)), W.reshape((n_out, n_in)).T, z.reshape((batch, n_out)))
        return
    for s in range(batch):
        x_row = s * n_in
        for o in range(n_out):
            w_row = o * n_in
            acc = 0.0
            for i in range(n_in):
                acc += W[np.uint64(w_row + i)] * x[np.uint64(x_row + i)]
            z[np.uint64(s * n_out + o)] = acc


@njit(cache=True, fastmath=_REASSOCIATE)
def _rows_times_w(W, g, dst, n_in, n_out):
    """dst[s, i] = Σ_o g[s, o] W[o, i]: cotangents of a layer's outputs pulled back to its inputs."""
    batch = g.size // n_out
    if batch * n_in * n_out >= BLAS_MIN_MACS:
        np.dot(g.reshape((batch, n_out)), W.reshape((n_out, n_in)), dst.reshape((batch, n_in)))
        return
    for s in range(batch):
        g_row = s * n_out
        d_row = s * n_in
        if n_in < n_out:
            for i in range(n_in):
                acc = 0.0
                for o in range(n_out):
                    acc += g[np.uint64(g_row + o)] * W[np.uint64(o * n_in + i)]
                dst[np.uint64(d_row + i)] = acc
        else:
            for i in range(n_in):
                dst[np.uint64(d_row + i)] = 0.0
            for o in range(n_out):
                go = g[np.uint64(g_row + o)]
                w_row = o * n_in
                for i in range(n_in):
                    dst[np.uint64(d_row + i)] += go * W[np.uint64(w_row + i)]


@njit(cache=True, fastmath=_REASSOCIATE, inline="always")
def _add_outer(g, g_row, x, x_row, gW, n_in, n_out, accumulate):
    """gW[o, i] (+)= g[g_row + o] x[x_row + i]: adds when accumulate, else overwrites."""
    if n_in < n_out:
        for i in range(n_in):
            xi = x[np.uint64(x_row + i)]
            if accumulate:
                for o in range(n_out):
                    gW[np.uint64(o * n_in + i)] += g[np.uint64(g_row + o)] * xi
            else:
                for o in range(n_out):
                    gW[np.uint64(o * n_in + i)] = g[np.uint64(g_row + o)] * xi
    else:
        for o in range(n_out):
            go = g[np.uint64(g_row + o)]
            w_row = o * n_in
            if accumulate:
                for i in range(n_in):
                    gW[np.uint64(w_row + i)] += go * x[np.uint64(x_row + i)]
            else:
                for i in range(n_in):
                    gW[np.uint64(w_row + i)] = go * x[np.uint64(x_row + i)]


@njit(cache=True, fastmath=_REASSOCIATE)
def _layer_param_grads(g, x, t, gW, gw_t, gb, n_in, n_out):
    """Overwrite gW, gw_t (empty unless the layer takes t) and gb with the gradients of Σ_s g[s]·z[s]."""
    batch = g.size // n_out
    if batch * n_in * n_out >= BLAS_MIN_MACS:
        np.dot(g.reshape((batch, n_out)).T, x.reshape((batch, n_in)), gW.reshape((n_out, n_in)))
    else:
        # gW = Σ_s g[s] ⊗ x[s], summed in place: the first sample's term overwrites.
        for s in range(batch):
            _add_outer(g, s * n_out, x, s * n_in, gW, n_in, n_out, s > 0)
    gb[:] = 0.0
    for s in range(batch):
        g_row = s * n_out
        for o in range(n_out):
            gb[o] += g[np.uint64(g_row + o)]
    for o in range(gw_t.size):
        gw_t[o] = gb[o] * t


@njit(cache=True)
def _add_shift(z, w_t, b, t):
    """z[s] += w_t t + b for every sample s (w_t empty unless the layer takes t)."""
    n_out = b.size
    for s in range(z.size // n_out):
        zs = z[s * n_out : (s + 1) * n_out]
        for o in range(n_out):
            zs[o] += b[o]
        for o in range(w_t.size):
            zs[o] += w_t[o] * t


# ----------------------------------------------------------------------------------------------------------
# Whole-network passes.  Workspace: the (possibly cubed) input x_0, then z_l and a_l of every layer.


@njit(cache=True, inline="always")
def _layer_record(layout, layer):
    rec = _HEADER + _PER_LAYER * layer
    return layout[rec], layout[rec + 1], layout[rec + 2], layout[rec + 3]


@njit(cache=True, inline="always")
def _layer_blocks(p, w_off, n_in, n_out, takes_time):
    """Views (W, w_t, b) of one layer's parameters starting at w_off (w_t empty unless it takes t)."""
    t_off = w_off + n_out * n_in
    b_off = t_off + n_out * takes_time
    return p[w_off:t_off], p[t_off:b_off], p[b_off : b_off + n_out]


@njit(cache=True)
def _forward_size(layout, batch):
    size = batch * layout[_HEADER]
    for layer in range(layout[0]):
        size += 2 * batch * layout[_HEADER + _PER_LAYER * layer + 1]
    return size


@njit(cache=True)
def _max_width(layout):
    width = 0
    for layer in range(layout[0]):
        n_in, n_out, _, _ = _layer_record(layout, layer)
        width = max(width, n_in, n_out)
    return width


@njit(cache=True)
def _n_params(layout):
    n = 0
    for layer in range(layout[0]):
        n_in, n_out, _, takes_time = _layer_record(layout, layer)
        n += n_out * (n_in + takes_time + 1)
    return n


@njit(cache=True)
def _output_width(layout):
    return layout[_HEADER + _PER_LAYER * (layout[0] - 1) + 1]


@njit(cache=True)
def _batch_size(layout, y, p):
    """The number of samples in y, once y is known to hold whole samples and p to fit the layout.

    The loops index without bounds checks, so mismatched lengths must be caught here.
    """
    if y.size % layout[_HEADER] != 0:
        raise ValueError("y: length is not a multiple of the MLP's input width")
    if p.size != _n_params(layout):
        raise ValueError("p: length differs from the MLP's n_params")
    return y.size // layout[_HEADER]


@njit(cache=True)
def _forward_pass(layout, t, y, p, batch, work):
    """Fill ``work[:_forward_size]``; the network's output is its last ``batch * n_out`` entries."""
    n_x = batch * layout[_HEADER]
    x = work[:n_x]
    if layout[1] == CUBE:
        for k in range(n_x):
            x[k] = y[k] * y[k] * y[k]
    else:
        x[:] = y[:n_x]
    pos = n_x
    w_off = 0
    for layer in range(layout[0]):
        n_in, n_out, act, takes_time = _layer_record(layout, layer)
        W, w_t, b = _layer_blocks(p, w_off, n_in, n_out, takes_time)
        n_z = batch * n_out
        z = work[pos : pos + n_z]
        a = work[pos + n_z : pos + 2 * n_z]
        _rows_times_wt(W, x, z, n_in, n_out)
        _add_shift(z, w_t, b, t)
        _activate(act, z, a)
        x = a
        pos += 2 * n_z
        w_off += n_out * (n_in + takes_time + 1)


@njit(cache=True)
def mlp_rhs(layout, t, y, p, out):
    """out = MLP(t, y): every sample of the flat minibatch y through the network."""
    batch = _batch_size(layout, y, p)
    if out.size != batch * _output_width(layout):
        raise ValueError("out: length is not batch * the MLP's output width")
    size = _forward_size(layout, batch)
    work = np.empty(size)
    _forward_pass(layout, t, y, p, batch, work)
    out[:] = work[size - out.size :]


@njit(cache=True)
def mlp_value_vjp(layout, t, y, p, a, out_f, out_y, out_p):
    """out_f = MLP(t, y) (skipped when out_f is empty), out_y = aᵀ ∂MLP/∂y, out_p = aᵀ ∂MLP/∂p (overwritten),
    by one forward and one reverse sweep — the forward sweep's output is the value."""
    batch = _batch_size(layout, y, p)
    if a.size != batch * _output_width(layout):
        raise ValueError("a: length is not batch * the MLP's output width")
    if out_f.size != 0 and out_f.size != a.size:
        raise ValueError("out_f: length is not batch * the MLP's output width")
    if out_y.size != y.size:
        raise ValueError("out_y: length differs from y's")
    if out_p.size != p.size:
        raise ValueError("out_p: length differs from p's")
    fwd = _forward_size(layout, batch)
    work = np.empty(fwd + batch * _max_width(layout))
    _forward_pass(layout, t, y, p, batch, work)
    if out_f.size != 0:
        out_f[:] = work[fwd - out_f.size : fwd]
    g_buf = work[fwd:]  # cotangent of the current layer's output
    g_buf[: a.size] = a
    end = fwd  # where the current layer's workspace blocks end
    w_end = _n_params(layout)
    for layer in range(layout[0] - 1, -1, -1):
        n_in, n_out, act, takes_time = _layer_record(layout, layer)
        n_z = batch * n_out
        z = work[end - 2 * n_z : end - n_z]
        x = work[end - 2 * n_z - batch * n_in : end - 2 * n_z]
        w_off = w_end - n_out * (n_in + takes_time + 1)
        W, _, _ = _layer_blocks(p, w_off, n_in, n_out, takes_time)
        gW, gw_t, gb = _layer_blocks(out_p, w_off, n_in, n_out, takes_time)
        # The pre-activations are not needed again: the cotangent of z takes their place.
        _times_slope(act, z, work[end - n_z : end], g_buf[:n_z], z)
        _layer_param_grads(z, x, t, gW, gw_t, gb, n_in, n_out)
        _rows_times_w(W, z, g_buf[: batch * n_in] if layer > 0 else out_y, n_in, n_out)
        end -= 2 * n_z
        w_end = w_off
    if layout[1] == CUBE:
        for k in range(out_y.size):
            out_y[k] *= 3.0 * y[k] * y[k]


@njit(cache=True)
def mlp_vjp(layout, t, y, p, a, out_y, out_p):
    """out_y = aᵀ ∂MLP/∂y, out_p = aᵀ ∂MLP/∂p (both overwritten) by one forward and one reverse sweep."""
    mlp_value_vjp(layout, t, y, p, a, np.empty(0), out_y, out_p)


@njit(cache=True)
def mlp_jvp(layout, t, y, p, v, out):
    """out = ∂MLP/∂y · v by one forward sweep carrying the tangent alongside."""
    batch = _batch_size(layout, y, p)
    if v.size != y.size:
        raise ValueError("v: length differs from y's")
    if out.size != batch * _output_width(layout):
        raise ValueError("out: length is not batch * the MLP's output width")
    fwd = _forward_size(layout, batch)
    width = batch * _max_width(layout)
    work = np.empty(fwd + 2 * width)
    _forward_pass(layout, t, y, p, batch, work)
    tangent_in = work[fwd : fwd + width]
    tangent_out = work[fwd + width :]
    if layout[1] == CUBE:
        for k in range(v.size):
            tangent_in[k] = 3.0 * y[k] * y[k] * v[k]
    else:
        tangent_in[: v.size] = v
    pos = batch * layout[_HEADER]
    w_off = 0
    for layer in range(layout[0]):
        n_in, n_out, act, takes_time = _layer_record(layout, layer)
        W, _, _ = _layer_blocks(p, w_off, n_in, n_out, takes_time)
        n_z = batch * n_out
        dz = tangent_out[:n_z]
        _rows_times_wt(W, tangent_in[: batch * n_in], dz, n_in, n_out)
        _times_slope(act, work[pos : pos + n_z], work[pos + n_z : pos + 2 * n_z], dz, dz)
        tangent_in, tangent_out = tangent_out, tangent_in
        pos += 2 * n_z
        w_off += n_out * (n_in + takes_time + 1)
    out[:] = tangent_in[: out.size]


# ----------------------------------------------------------------------------------------------------------
# Per-architecture entry points with the solver's fixed signatures.
#
# A closure that called the kernels directly would link their code into its own module, and Numba would
# re-optimise and re-emit all of it for every architecture (about a second per entry point).  Calling the
# cached kernels through their addresses instead — as the solver calls right-hand sides — leaves each closure
# a few instructions to compile, for an indirect call of a few nanoseconds.

# Numba freezes a closure's array as a read-only constant, so the kernels are called with read-only layouts.
_FROZEN_LAYOUT = types.Array(types.int64, 1, "C", readonly=True)
_KERNEL_SIGS = {
    "rhs": types.void(_FROZEN_LAYOUT, *RHS_SIG.args),
    "vjp": types.void(_FROZEN_LAYOUT, *VJP_SIG.args),
    "jvp": types.void(_FROZEN_LAYOUT, *JVP_SIG.args),
    "value_vjp": types.void(_FROZEN_LAYOUT, *VALUE_VJP_SIG.args),
}
_KERNELS = {"rhs": mlp_rhs, "vjp": mlp_vjp, "jvp": mlp_jvp, "value_vjp": mlp_value_vjp}
_kernel_from = {kind: function_type_maker(sig) for kind, sig in _KERNEL_SIGS.items()}
_kernel_handles: dict = {}
_entry_points: dict = {}


def _compile_entry_point(kind, layout):
    if kind not in _kernel_handles:
        _kernel_handles[kind] = FunctionHandle(_KERNELS[kind], _KERNEL_SIGS[kind])
    c_addr, jit_addr = _kernel_handles[kind].addresses
    kernel_from = _kernel_from[kind]
    frozen = layout.copy()
    if kind == "rhs":

        def rhs(t, y, p, out):
            kernel_from(c_addr, jit_addr)(frozen, t, y, p, out)

        return njit(RHS_SIG)(rhs)
    if kind == "vjp":

        def vjp(t, y, p, a, out_y, out_p):
            kernel_from(c_addr, jit_addr)(frozen, t, y, p, a, out_y, out_p)

        return njit(VJP_SIG)(vjp)

    if kind == "value_vjp":

        def value_vjp(t, y, p, a, out_f, out_y, out_p):
            kernel_from(c_addr, jit_addr)(frozen, t, y, p, a, out_f, out_y, out_p)

        return njit(VALUE_VJP_SIG)(value_vjp)

    def jvp(t, y, p, v, out):
        kernel_from(c_addr, jit_addr)(frozen, t, y, p, v, out)

    return njit(JVP_SIG)(jvp)


def _entry_point(kind, layout):
    key = (kind, layout.tobytes())
    if key not in _entry_points:
        _entry_points[key] = _compile_entry_point(kind, layout)
    return _entry_points[key]


# ----------------------------------------------------------------------------------------------------------


def _kernel_vector(x):
    """x flattened to the kernels' argument type: a C-contiguous, writable float64 vector (copied if need
    be; a read-only one would make Numba compile another specialisation of every kernel)."""
    if x.flags.c_contiguous and x.flags.writeable:
        return x.reshape(-1)
    return np.array(x, dtype=np.float64, order="C").reshape(-1)


def _check_activation(name, argname):
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{argname}: unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return name


class MLP:
    """A dense network ``widths[0] -> widths[1] -> ... -> widths[-1]`` usable as an ODE right-hand side.

    Parameters
    ----------
    widths : sequence of int
        Feature counts, input first, e.g. ``(2, 50, 2)``; at least two entries, all positive.
    activations : str or sequence of str
        One name for every hidden layer or one per hidden layer, from ``tanh``, ``softplus``, ``relu``,
        ``swish``, ``identity``.
    time_input : {"none", "first", "all"}
        Feed t as an extra input to no layer, the first layer, or every layer (torchdiffeq's ConcatLinear;
        the MNIST field 785→100 tanh → 101→784 is ``MLP((784, 100, 784), "tanh", time_input="all")``).
    input_transform : {"none", "cube"}
        ``"cube"`` feeds ``y**3`` to the first layer (Chen et al.'s spiral field ``W2 tanh(W1 y³ + b1) + b2``).
    final_activation : str or None
        Activation of the last layer; None keeps it linear.

    Attributes ``rhs``, ``vjp`` and ``jvp`` are Numba functions with the signatures ``RHS_SIG``, ``VJP_SIG``
    and ``JVP_SIG`` of :mod:`lrnde_np._types`, ready for the solver; ``forward``, ``vjp_py`` and ``jvp_py``
    are checked Python conveniences returning new arrays.  The parameter layout is in the module docstring.
    """

    def __init__(self, widths, activations, time_input="none", input_transform="none", final_activation=None):
        try:
            widths = tuple(widths)
        except TypeError:
            raise ValueError(f"widths: expected a sequence of positive ints, got {widths!r}") from None
        if len(widths) < 2:
            raise ValueError(f"widths: need at least an input and an output width, got {widths!r}")
        for w in widths:
            if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
                raise ValueError(f"widths: every width must be a positive int, got {widths!r}")
        widths = tuple(int(w) for w in widths)
        n_hidden = len(widths) - 2
        if isinstance(activations, str):
            activations = (activations,) * n_hidden
        else:
            try:
                activations = tuple(activations)
            except TypeError:
                raise ValueError(f"activations: expected a name or a sequence of names, got {activations!r}") from None
            if len(activations) != n_hidden:
                raise ValueError(f"activations: {len(activations)} names given for {n_hidden} hidden layers")
        for name in activations:
            _check_activation(name, "activations")
        if final_activation is not None:
            _check_activation(final_activation, "final_activation")
        if time_input not in TIME_INPUTS:
            raise ValueError(f"time_input: expected one of {TIME_INPUTS}, got {time_input!r}")
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform: expected one of {tuple(INPUT_TRANSFORMS)}, got {input_transform!r}")

        self.widths = widths
        self.activations = activations
        self.time_input = time_input
        self.input_transform = input_transform
        self.final_activation = final_activation
        #: Activation name of every layer (the last one "identity" unless final_activation is given).
        self.layer_activations = activations + (final_activation or "identity",)
        #: Whether each layer takes t as an extra input.
        self.layer_takes_time = tuple(
            time_input == "all" or (time_input == "first" and layer == 0) for layer in range(len(widths) - 1)
        )
        layout = [len(widths) - 1, INPUT_TRANSFORMS[input_transform]]
        for layer in range(len(widths) - 1):
            layout += [
                widths[layer],
                widths[layer + 1],
                ACTIVATIONS[self.layer_activations[layer]],
                int(self.layer_takes_time[layer]),
            ]
        # Read-only like the constant the entry points freeze, so that both share one kernel specialisation.
        self.layout = np.array(layout, dtype=np.int64)
        self.layout.flags.writeable = False
        self._n_params = int(_n_params(self.layout))

    def __repr__(self):
        return (
            f"MLP(widths={self.widths}, activations={self.activations}, time_input={self.time_input!r}, "
            f"input_transform={self.input_transform!r}, final_activation={self.final_activation!r})"
        )

    @property
    def input_dim(self) -> int:
        return self.widths[0]

    @property
    def output_dim(self) -> int:
        return self.widths[-1]

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def n_params(self) -> int:
        return self._n_params

    # -- compiled entry points for the solver (compiled on first use, shared by equal architectures) --------

    @property
    def rhs(self):
        """``rhs(t, y, p, out)``: out = MLP(t, y) (RHS_SIG)."""
        return _entry_point("rhs", self.layout)

    @property
    def vjp(self):
        """``vjp(t, y, p, a, out_y, out_p)``: out_y = aᵀ∂f/∂y, out_p = aᵀ∂f/∂p, overwritten (VJP_SIG)."""
        return _entry_point("vjp", self.layout)

    @property
    def value_vjp(self):
        """``value_vjp(t, y, p, a, out_f, out_y, out_p)``: the value and the VJP from one forward pass
        (VALUE_VJP_SIG; the backsolve adjoint uses it)."""
        return _entry_point("value_vjp", self.layout)

    @property
    def jvp(self):
        """``jvp(t, y, p, v, out)``: out = ∂f/∂y · v (JVP_SIG)."""
        return _entry_point("jvp", self.layout)

    # -- parameters --------------------------------------------------------------------------------------

    def unpack_params(self, p):
        """Views ``[(W, w_t or None, b), ...]`` into the flat parameter vector p, one triple per layer.

        Works on any array-like supporting slicing and ``reshape`` (autograd's boxes included).
        """
        self._check_params(p)
        layers = []
        offset = 0
        for layer in range(self.n_layers):
            n_in, n_out = self.widths[layer], self.widths[layer + 1]
            W = p[offset : offset + n_out * n_in].reshape((n_out, n_in))
            offset += n_out * n_in
            w_t = None
            if self.layer_takes_time[layer]:
                w_t = p[offset : offset + n_out]
                offset += n_out
            b = p[offset : offset + n_out]
            offset += n_out
            layers.append((W, w_t, b))
        return layers

    def init_params(self, rng):
        """A fresh parameter vector: He-uniform weights for relu layers, Glorot-uniform otherwise, zero biases.

        ``rng`` is an int seed or a ``numpy.random.Generator``; equal seeds give equal vectors.  The time
        weights w_t are drawn like the rest of their layer's matrix (they are its extra input column).
        """
        if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected an int seed or a numpy.random.Generator, got {type(rng).__name__}")
        p = np.zeros(self.n_params)
        for layer, (W, w_t, _) in enumerate(self.unpack_params(p)):
            fan_out, fan_in = W.shape
            fan_in += w_t is not None
            if self.layer_activations[layer] == "relu":
                limit = math.sqrt(6.0 / fan_in)
            else:
                limit = math.sqrt(6.0 / (fan_in + fan_out))
            W[:] = rng.uniform(-limit, limit, size=W.shape)
            if w_t is not None:
                w_t[:] = rng.uniform(-limit, limit, size=w_t.shape)
        return p

    # -- checked Python conveniences -----------------------------------------------------------------------

    def _check_params(self, p):
        if np.shape(p) != (self.n_params,):
            raise ValueError(f"p: expected shape ({self.n_params},) for {self!r}, got {np.shape(p)}")

    def _flat_batch(self, y, argname, dim):
        """y as a contiguous float64 vector of whole samples of ``dim`` features, and its batch size."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == dim:
            return _kernel_vector(y), y.shape[0]
        if y.ndim == 1 and y.size % dim == 0:
            return _kernel_vector(y), y.size // dim
        raise ValueError(
            f"{argname}: expected a flat batch of {dim}-feature samples or a (batch, {dim}) array, got shape {y.shape}"
        )

    def _prepare(self, y, p):
        y_flat, batch = self._flat_batch(y, "y", self.input_dim)
        self._check_params(p)
        return y_flat, batch, _kernel_vector(np.asarray(p, dtype=np.float64))

    @staticmethod
    def _shaped_like(values, y, dim):
        return values.reshape(-1, dim) if np.ndim(y) == 2 else values

    def forward(self, y, p, t=0.0):
        """MLP(t, y) for a flat batch (returns a flat vector) or a (batch, widths[0]) array (returns 2-D)."""
        y_flat, batch, p = self._prepare(y, p)
        out = np.empty(batch * self.output_dim)
        mlp_rhs(self.layout, float(t), y_flat, p, out)
        return self._shaped_like(out, y, self.output_dim)

    def vjp_py(self, y, p, cotangent, t=0.0):
        """(aᵀ∂f/∂y, aᵀ∂f/∂p) for a cotangent a shaped like ``forward(y, p, t)``."""
        y_flat, batch, p = self._prepare(y, p)
        a_flat, a_batch = self._flat_batch(cotangent, "cotangent", self.output_dim)
        if a_batch != batch:
            raise ValueError(f"cotangent: {a_batch} samples for {batch} samples of y")
        out_y = np.empty_like(y_flat)
        out_p = np.empty(self.n_params)
        mlp_vjp(self.layout, float(t), y_flat, p, a_flat, out_y, out_p)
        return self._shaped_like(out_y, y, self.input_dim), out_p

    def jvp_py(self, y, p, tangent, t=0.0):
        """∂f/∂y · v for a tangent v shaped like y."""
        y_flat, batch, p = self._prepare(y, p)
        if np.shape(tangent) != np.shape(y):
            raise ValueError(f"tangent: shape {np.shape(tangent)} differs from y's {np.shape(y)}")
        v_flat = _kernel_vector(np.asarray(tangent, dtype=np.float64))
        out = np.empty(batch * self.output_dim)
        mlp_jvp(self.layout, float(t), y_flat, p, v_flat, out)
        return self._shaped_like(out, y, self.output_dim)
