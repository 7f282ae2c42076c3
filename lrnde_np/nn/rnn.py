"""Recurrent cells with hand-written VJPs: a plain tanh RNN cell and the masked GRU of the latent ODE papers.

Both cells work on minibatches — inputs ``x`` of shape (batch, input_dim), states ``h`` of shape
(batch, state_dim) — with all parameters in one flat float64 vector (the layout is below; views into it are
returned by ``unpack_params``).  ``forward(x, h, p)`` returns the new state and a *tape* (the intermediate
values); ``vjp(tape, h_bar)`` pulls a cotangent of the new state back to ``(x_bar, h_bar_prev, p_bar)``.
A sequence is back-propagated by calling ``vjp`` on the tapes in reverse order and summing ``p_bar``.

**Masked inputs.**  Each cell may name a block of input columns ``mask_columns = (start, stop)`` that holds the
observation mask (1 = observed).  A sample whose mask block is all zero keeps its state unchanged
(``h_new = h``): the cell's update is ``h_new = f·cell(x, h) + (1 − f)·h`` with ``f = any(mask > 0)``.
That is how irregularly sampled series run on the union of a minibatch's observation times.  The flag is
piecewise constant, so it has no derivative.

``RNNCell(input_dim, hidden)``: ``h_new = tanh(W [x; h] + b)`` (the recognition RNN of Chen et al., 2018).
Parameters: W (hidden, input_dim + hidden) row-major, then b (hidden,).

``LatentGRUCell(input_dim, hidden, latent)`` (the Locally-Regularized paper's PhysioNet encoder,
``LatentGRUCell(37, 40, 50)`` with input [x·m, m, Δt] of width 2·37 + 1, after Rubanova et al., 2019):
the state is ``[mean, std]`` (2·latent) and, with ``c = [mean; std; x]``,

    u = σ(U2 tanh(U1 c + bu1) + bu2)              update gate   (latent)
    r = σ(R2 tanh(R1 c + br1) + br2)              reset gate    (latent)
    n = tanh(N2 tanh(N1 [mean·r; std·r; x] + bn1) + bn2)        (2·latent: new mean, new std)
    [mean, std]_new = (1 − u)·n + u·[mean, std]   (u applied to both halves)

Parameters, in order: U1, bu1, U2, bu2, R1, br1, R2, br2, N1, bn1, N2, bn2 (weights row-major (out, in)).
The official Julia code updates *both* halves from the new std half (``new_y_mean = (1 − u)·new_state_std
+ …``); we follow Rubanova et al.'s cell, where the mean comes from the new mean half.

The VJPs are exact; ``tests/test_rnn.py`` checks them against autograd on independent NumPy twins and against
central finite differences.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit


def _check_dim(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def _generator(rng):
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected an int seed or a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _sigmoid(x):
    # exp(-|x|) never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class _Cell:
    """Shared checks, parameter views and the mask flag."""

    input_dim: int
    state_dim: int
    mask_columns = None
    _blocks: tuple = ()  # ((name, shape), ...) in parameter order

    def _set_mask_columns(self, mask_columns):
        if mask_columns is None:
            self.mask_columns = None
            return
        try:
            start, stop = (int(v) for v in mask_columns)
        except (TypeError, ValueError):
            raise ValueError(f"mask_columns: expected (start, stop) or None, got {mask_columns!r}") from None
        if not 0 <= start < stop <= self.input_dim:
            raise ValueError(
                f"mask_columns: ({start}, {stop}) is not a non-empty block of the {self.input_dim} input columns"
            )
        self.mask_columns = (start, stop)

    @property
    def n_params(self) -> int:
        return int(sum(math.prod(shape) for _, shape in self._blocks))

    def unpack_params(self, p):
        """Dict of views into the flat parameter vector (autograd boxes work too)."""
        if np.shape(p) != (self.n_params,):
            raise ValueError(f"p: expected shape ({self.n_params},) for {self!r}, got {np.shape(p)}")
        out, offset = {}, 0
        for name, shape in self._blocks:
            size = math.prod(shape)
            out[name] = p[offset : offset + size].reshape(shape)
            offset += size
        return out

    def init_params(self, rng):
        """Glorot-uniform weights, zero biases; ``rng`` an int seed or a numpy Generator."""
        rng = _generator(rng)
        p = np.zeros(self.n_params)
        for block in self.unpack_params(p).values():
            if block.ndim == 2:
                limit = math.sqrt(6.0 / (block.shape[0] + block.shape[1]))
                block[:] = rng.uniform(-limit, limit, size=block.shape)
        return p

    def initial_state(self, batch):
        return np.zeros((int(batch), self.state_dim))

    def _check(self, x, h, p):
        x = np.asarray(x, dtype=np.float64)
        h = np.asarray(h, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"x: expected shape (batch, {self.input_dim}), got {x.shape}")
        if h.shape != (x.shape[0], self.state_dim):
            raise ValueError(f"h: expected shape ({x.shape[0]}, {self.state_dim}), got {h.shape}")
        p = np.asarray(p, dtype=np.float64)
        return x, h, self.unpack_params(p)

    def observed(self, x):
        """(batch, 1) flag: 1.0 where the sample updates its state (any mask entry > 0, or no mask block)."""
        if self.mask_columns is None:
            return np.ones((x.shape[0], 1))
        start, stop = self.mask_columns
        return np.any(x[:, start:stop] > 0, axis=1, keepdims=True).astype(np.float64)


class RNNCell(_Cell):
    """``h_new = tanh(W [x; h] + b)``, with optional masked updates; see the module docstring."""

    def __init__(self, input_dim, hidden, mask_columns=None):
        self.input_dim = _check_dim(input_dim, "input_dim")
        self.hidden = self.state_dim = _check_dim(hidden, "hidden")
        self._blocks = (("W", (self.hidden, self.input_dim + self.hidden)), ("b", (self.hidden,)))
        self._set_mask_columns(mask_columns)

    def __repr__(self):
        return f"RNNCell(input_dim={self.input_dim}, hidden={self.hidden}, mask_columns={self.mask_columns})"

    def forward(self, x, h, p):
        x, h, P = self._check(x, h, p)
        c = np.concatenate([x, h], axis=1)
        a = np.tanh(c @ P["W"].T + P["b"])
        f = self.observed(x)
        return f * a + (1.0 - f) * h, (c, a, f, P)

    def vjp(self, tape, h_bar):
        c, a, f, P = tape
        h_bar = np.asarray(h_bar, dtype=np.float64)
        g = f * h_bar * (1.0 - a * a)
        c_bar = g @ P["W"]
        p_bar = np.concatenate([(g.T @ c).ravel(), g.sum(axis=0)])
        x_bar = c_bar[:, : self.input_dim]
        hp_bar = c_bar[:, self.input_dim :] + (1.0 - f) * h_bar
        return x_bar, hp_bar, p_bar


class LatentGRUCell(_Cell):
    """The masked GRU with a [mean, std] state; see the module docstring."""

    def __init__(self, input_dim, hidden, latent, mask_columns=None):
        self.input_dim = _check_dim(input_dim, "input_dim")
        self.hidden = _check_dim(hidden, "hidden")
        self.latent = _check_dim(latent, "latent")
        self.state_dim = 2 * self.latent
        n_c = self.state_dim + self.input_dim
        H, L = self.hidden, self.latent
        self._blocks = (
            ("U1", (H, n_c)),
            ("bu1", (H,)),
            ("U2", (L, H)),
            ("bu2", (L,)),
            ("R1", (H, n_c)),
            ("br1", (H,)),
            ("R2", (L, H)),
            ("br2", (L,)),
            ("N1", (H, n_c)),
            ("bn1", (H,)),
            ("N2", (2 * L, H)),
            ("bn2", (2 * L,)),
        )
        self._set_mask_columns(mask_columns)

    def __repr__(self):
        return (
            f"LatentGRUCell(input_dim={self.input_dim}, hidden={self.hidden}, latent={self.latent}, "
            f"mask_columns={self.mask_columns})"
        )

    def forward(self, x, h, p):
        x, h, P = self._check(x, h, p)
        L = self.latent
        c = np.concatenate([h, x], axis=1)
        a_u = np.tanh(c @ P["U1"].T + P["bu1"])
        u = _sigmoid(a_u @ P["U2"].T + P["bu2"])
        a_r = np.tanh(c @ P["R1"].T + P["br1"])
        r = _sigmoid(a_r @ P["R2"].T + P["br2"])
        c2 = np.concatenate([h[:, :L] * r, h[:, L:] * r, x], axis=1)
        a_n = np.tanh(c2 @ P["N1"].T + P["bn1"])
        n = np.tanh(a_n @ P["N2"].T + P["bn2"])
        uu = np.concatenate([u, u], axis=1)
        cell = (1.0 - uu) * n + uu * h
        f = self.observed(x)
        return f * cell + (1.0 - f) * h, (h, c, a_u, u, a_r, r, c2, a_n, n, uu, f, P)

    def vjp(self, tape, h_bar):
        h, c, a_u, u, a_r, r, c2, a_n, n, uu, f, P = tape
        L = self.latent
        h_bar = np.asarray(h_bar, dtype=np.float64)
        g = f * h_bar
        hp_bar = (1.0 - f) * h_bar + uu * g
        n_bar = (1.0 - uu) * g
        uu_bar = (h - n) * g
        u_bar = uu_bar[:, :L] + uu_bar[:, L:]
        grads = {}
        # new state n = tanh(N2 a_n + bn2), a_n = tanh(N1 c2 + bn1)
        z = n_bar * (1.0 - n * n)
        grads["N2"], grads["bn2"] = z.T @ a_n, z.sum(axis=0)
        z = (z @ P["N2"]) * (1.0 - a_n * a_n)
        grads["N1"], grads["bn1"] = z.T @ c2, z.sum(axis=0)
        c2_bar = z @ P["N1"]
        hp_bar[:, :L] += c2_bar[:, :L] * r
        hp_bar[:, L:] += c2_bar[:, L : 2 * L] * r
        r_bar = c2_bar[:, :L] * h[:, :L] + c2_bar[:, L : 2 * L] * h[:, L:]
        x_bar = c2_bar[:, 2 * L :].copy()
        c_bar = np.zeros_like(c)
        for gate, gate_bar, a, W1, b1, W2, b2 in (
            ("r", r_bar, a_r, "R1", "br1", "R2", "br2"),
            ("u", u_bar, a_u, "U1", "bu1", "U2", "bu2"),
        ):
            s = r if gate == "r" else u
            z = gate_bar * s * (1.0 - s)
            grads[W2], grads[b2] = z.T @ a, z.sum(axis=0)
            z = (z @ P[W2]) * (1.0 - a * a)
            grads[W1], grads[b1] = z.T @ c, z.sum(axis=0)
            c_bar += z @ P[W1]
        hp_bar += c_bar[:, : 2 * L]
        x_bar += c_bar[:, 2 * L :]
        p_bar = np.concatenate([grads[name].ravel() for name, _ in self._blocks])
        return x_bar, hp_bar, p_bar


@njit(cache=True)
def _rnn_sweep(W, b, inputs, lo, hi, h0):
    """Compiled backwards sweep of the tanh RNN cell: states H[k] after processing inputs[T-1-k+1…]
    (H[0] = h0), activations A and update flags F in processing order."""
    T, B, I = inputs.shape
    Hd = b.size
    H = np.empty((T + 1, B, Hd))
    A = np.empty((T, B, Hd))
    F = np.empty((T, B))
    H[0] = h0
    Wx = np.ascontiguousarray(W[:, :I])
    Wh = np.ascontiguousarray(W[:, I:])
    for j in range(T):
        x = np.ascontiguousarray(inputs[T - 1 - j])
        h = H[j]
        pre = x @ Wx.T + h @ Wh.T
        for r in range(B):
            f = 1.0
            if hi > lo:
                f = 0.0
                for c in range(lo, hi):
                    if x[r, c] > 0:
                        f = 1.0
                        break
            F[j, r] = f
            for k in range(Hd):
                a = np.tanh(pre[r, k] + b[k])
                A[j, r, k] = a
                H[j + 1, r, k] = a if f == 1.0 else h[r, k]
    return H, A, F


@njit(cache=True)
def _rnn_sweep_vjp(W, inputs, H, A, F, h_bar):
    """Reverse of :func:`_rnn_sweep`: (W_bar, b_bar, h0_bar, inputs_bar (time order))."""
    T, B, I = inputs.shape
    Hd = A.shape[2]
    W_bar = np.zeros(W.shape)
    b_bar = np.zeros(Hd)
    x_bar = np.zeros(inputs.shape)
    g = np.empty((B, Hd))
    hb = h_bar.copy()
    Wx = np.ascontiguousarray(W[:, :I])
    Wh = np.ascontiguousarray(W[:, I:])
    for j in range(T - 1, -1, -1):
        x = np.ascontiguousarray(inputs[T - 1 - j])
        h = H[j]
        for r in range(B):
            for k in range(Hd):
                a = A[j, r, k]
                g[r, k] = F[j, r] * hb[r, k] * (1.0 - a * a)
        W_bar[:, :I] += g.T @ x
        W_bar[:, I:] += g.T @ h
        for k in range(Hd):
            for r in range(B):
                b_bar[k] += g[r, k]
        x_bar[T - 1 - j] = g @ Wx
        carry = g @ Wh
        for r in range(B):
            keep = 1.0 - F[j, r]
            for k in range(Hd):
                hb[r, k] = carry[r, k] + keep * hb[r, k]
    return W_bar, b_bar, hb, x_bar


class _SweepTape:
    """What the compiled RNN sweep keeps for its VJP."""

    def __init__(self, inputs, P, H, A, F):
        self.inputs, self.P, self.H, self.A, self.F = inputs, P, H, A, F


def run_backwards(cell, inputs, p, h0=None):
    """Run ``cell`` over ``inputs`` (T, batch, input_dim) from the last time to the first.

    Returns (final state (batch, state_dim), tape for :func:`run_backwards_vjp`).  The tanh
    :class:`RNNCell` runs in one compiled sweep (same arithmetic as its ``forward``, checked in the tests);
    other cells step by step (the tape is then their per-step tapes in the order they were made).
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    if inputs.ndim != 3 or inputs.shape[2] != cell.input_dim:
        raise ValueError(f"inputs: expected shape (T, batch, {cell.input_dim}), got {inputs.shape}")
    h = cell.initial_state(inputs.shape[1]) if h0 is None else np.asarray(h0, dtype=np.float64)
    if isinstance(cell, RNNCell):
        P = cell.unpack_params(np.ascontiguousarray(p, dtype=np.float64))
        lo, hi = cell.mask_columns if cell.mask_columns is not None else (0, 0)
        inputs = np.ascontiguousarray(inputs)
        H, A, F = _rnn_sweep(
            np.ascontiguousarray(P["W"]), np.ascontiguousarray(P["b"]), inputs, lo, hi, np.ascontiguousarray(h)
        )
        return H[-1].copy(), _SweepTape(inputs, P, H, A, F)
    tapes = []
    for k in range(inputs.shape[0] - 1, -1, -1):
        h, tape = cell.forward(inputs[k], h, p)
        tapes.append(tape)
    return h, tapes


def run_backwards_vjp(cell, tapes, h_bar):
    """Pull the final state's cotangent back through :func:`run_backwards`; returns (inputs_bar (T, batch,
    input_dim) in time order, h0_bar, p_bar)."""
    if isinstance(tapes, _SweepTape):
        W_bar, b_bar, h0_bar, x_bar = _rnn_sweep_vjp(
            np.ascontiguousarray(tapes.P["W"]),
            tapes.inputs,
            tapes.H,
            tapes.A,
            tapes.F,
            np.ascontiguousarray(h_bar, dtype=np.float64),
        )
        return x_bar, h0_bar, np.concatenate([W_bar.ravel(), b_bar])
    p_bar = np.zeros(cell.n_params)
    x_bars = []
    for tape in reversed(tapes):
        x_bar, h_bar, pb = cell.vjp(tape, h_bar)
        p_bar += pb
        x_bars.append(x_bar)
    # tapes were made from the last time to the first; reversed(tapes) walks first → last time
    return (np.stack(x_bars) if x_bars else np.zeros((0,) + np.shape(h_bar))), h_bar, p_bar
