"""Recurrent cells: VJPs against autograd twins (written independently here) and central finite differences."""

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad
from hypothesis import given, settings
from hypothesis import strategies as st

from lrnde_np.nn.rnn import LatentGRUCell, RNNCell, run_backwards, run_backwards_vjp

# -- autograd twins -----------------------------------------------------------------------------------------


def _sig(x):
    return 1.0 / (1.0 + anp.exp(-x))


def rnn_twin(cell, x, h, p):
    n_w = cell.hidden * (cell.input_dim + cell.hidden)
    W = anp.reshape(p[:n_w], (cell.hidden, cell.input_dim + cell.hidden))
    b = p[n_w:]
    new = anp.tanh(anp.dot(anp.concatenate([x, h], axis=1), W.T) + b)
    f = _flag(cell, x)
    return f * new + (1 - f) * h


def _flag(cell, x):
    if cell.mask_columns is None:
        return np.ones((x.shape[0], 1))
    s, e = cell.mask_columns
    return (np.asarray(x)[:, s:e] > 0).any(axis=1, keepdims=True).astype(float)


def gru_twin(cell, x, h, p):
    H, L, I = cell.hidden, cell.latent, cell.input_dim
    nc = 2 * L + I
    sizes = [
        ("U1", (H, nc)),
        ("bu1", (H,)),
        ("U2", (L, H)),
        ("bu2", (L,)),
        ("R1", (H, nc)),
        ("br1", (H,)),
        ("R2", (L, H)),
        ("br2", (L,)),
        ("N1", (H, nc)),
        ("bn1", (H,)),
        ("N2", (2 * L, H)),
        ("bn2", (2 * L,)),
    ]
    P, o = {}, 0
    for name, shape in sizes:
        k = int(np.prod(shape))
        P[name] = anp.reshape(p[o : o + k], shape)
        o += k
    mean, std = h[:, :L], h[:, L:]
    c = anp.concatenate([mean, std, x], axis=1)
    u = _sig(anp.dot(anp.tanh(anp.dot(c, P["U1"].T) + P["bu1"]), P["U2"].T) + P["bu2"])
    r = _sig(anp.dot(anp.tanh(anp.dot(c, P["R1"].T) + P["br1"]), P["R2"].T) + P["br2"])
    c2 = anp.concatenate([mean * r, std * r, x], axis=1)
    n = anp.tanh(anp.dot(anp.tanh(anp.dot(c2, P["N1"].T) + P["bn1"]), P["N2"].T) + P["bn2"])
    new_mean = (1 - u) * n[:, :L] + u * mean
    new_std = (1 - u) * n[:, L:] + u * std
    new = anp.concatenate([new_mean, new_std], axis=1)
    f = _flag(cell, x)
    return f * new + (1 - f) * h


def _setup(cell, batch, seed, masked_rows=()):
    rng = np.random.default_rng(seed)
    p = cell.init_params(rng) + 0.1 * rng.standard_normal(cell.n_params)
    x = rng.standard_normal((batch, cell.input_dim))
    if cell.mask_columns is not None:
        s, e = cell.mask_columns
        x[:, s:e] = (rng.random((batch, e - s)) < 0.6).astype(float)
        x[:, s] = 1.0
        for row in masked_rows:
            x[row, s:e] = 0.0
    h = rng.standard_normal((batch, cell.state_dim))
    a = rng.standard_normal((batch, cell.state_dim))
    return x, h, p, a


CELLS = [
    lambda: RNNCell(3, 4),
    lambda: RNNCell(5, 3, mask_columns=(2, 4)),
    lambda: LatentGRUCell(3, 5, 2),
    lambda: LatentGRUCell(5, 4, 3, mask_columns=(2, 4)),
]


def _twin(cell):
    return rnn_twin if isinstance(cell, RNNCell) else gru_twin


@pytest.mark.parametrize("make", CELLS)
def test_forward_matches_twin(make):
    cell = make()
    x, h, p, _ = _setup(cell, 4, 0, masked_rows=(1,))
    out, _ = cell.forward(x, h, p)
    np.testing.assert_allclose(out, _twin(cell)(cell, x, h, p), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("make", CELLS)
def test_vjp_matches_autograd(make):
    cell = make()
    x, h, p, a = _setup(cell, 4, 1, masked_rows=(2,))
    _, tape = cell.forward(x, h, p)
    x_bar, h_bar, p_bar = cell.vjp(tape, a)
    twin = _twin(cell)
    np.testing.assert_allclose(p_bar, grad(lambda q: anp.sum(a * twin(cell, x, h, q)))(p), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_bar, grad(lambda g: anp.sum(a * twin(cell, x, g, p)))(h), rtol=1e-10, atol=1e-12)
    # x: differentiable columns only (the mask block changes the flag, which is piecewise constant)
    xg = grad(lambda z: anp.sum(a * twin(cell, z, h, p)))(x)
    np.testing.assert_allclose(x_bar, xg, rtol=1e-10, atol=1e-12)


def _fd(fun, v, eps=1e-6):
    out = np.empty(v.size)
    for i in range(v.size):
        e = np.zeros_like(v)
        e.flat[i] = eps
        out[i] = (fun(v + e) - fun(v - e)) / (2 * eps)
    return out.reshape(v.shape)


@pytest.mark.parametrize("make", CELLS)
def test_vjp_matches_central_differences(make):
    cell = make()
    x, h, p, a = _setup(cell, 3, 2, masked_rows=(0,))
    _, tape = cell.forward(x, h, p)
    _, h_bar, p_bar = cell.vjp(tape, a)
    np.testing.assert_allclose(p_bar, _fd(lambda q: np.sum(a * cell.forward(x, h, q)[0]), p), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h_bar, _fd(lambda g: np.sum(a * cell.forward(x, g, p)[0]), h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("make", CELLS[1::2])
def test_unobserved_samples_keep_their_state(make):
    cell = make()
    x, h, p, a = _setup(cell, 3, 3, masked_rows=(1,))
    out, tape = cell.forward(x, h, p)
    np.testing.assert_array_equal(out[1], h[1])
    x_bar, h_bar, p_bar = cell.vjp(tape, a * np.array([[0.0], [1.0], [0.0]]))
    np.testing.assert_array_equal(h_bar[1], a[1])
    assert np.all(p_bar == 0.0) and np.all(x_bar == 0.0)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5),
    inp=st.integers(1, 4),
    hid=st.integers(1, 5),
    lat=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.1, 5.0),
    gru=st.booleans(),
)
def test_vjp_property(batch, inp, hid, lat, seed, scale, gru):
    cell = LatentGRUCell(inp, hid, lat) if gru else RNNCell(inp, hid)
    x, h, p, a = _setup(cell, batch, seed)
    x, h = scale * x, scale * h
    _, tape = cell.forward(x, h, p)
    x_bar, h_bar, p_bar = cell.vjp(tape, a)
    twin = _twin(cell)
    np.testing.assert_allclose(p_bar, grad(lambda q: anp.sum(a * twin(cell, x, h, q)))(p), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(x_bar, grad(lambda z: anp.sum(a * twin(cell, z, h, p)))(x), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(h_bar, grad(lambda g: anp.sum(a * twin(cell, x, g, p)))(h), rtol=1e-9, atol=1e-11)


def test_sequence_vjp_matches_autograd():
    cell = LatentGRUCell(3, 4, 2, mask_columns=(1, 2))
    rng = np.random.default_rng(5)
    p = cell.init_params(rng)
    xs = rng.standard_normal((6, 2, 3))
    xs[:, :, 1] = rng.random((6, 2)) < 0.5
    a = rng.standard_normal((2, 4))
    h, tapes = run_backwards(cell, xs, p)
    xs_bar, h0_bar, p_bar = run_backwards_vjp(cell, tapes, a)

    def total(q):
        state = np.zeros((2, 4))
        for k in range(5, -1, -1):
            state = gru_twin(cell, xs[k], state, q)
        return anp.sum(a * state)

    np.testing.assert_allclose(p_bar, grad(total)(p), rtol=1e-10, atol=1e-12)
    assert xs_bar.shape == xs.shape and h0_bar.shape == (2, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden"):
        RNNCell(2, 0)
    with pytest.raises(ValueError, match="mask_columns"):
        LatentGRUCell(3, 2, 2, mask_columns=(2, 5))
    cell = RNNCell(2, 3)
    with pytest.raises(ValueError, match="x:"):
        cell.forward(np.zeros((2, 3)), np.zeros((2, 3)), cell.init_params(0))
    with pytest.raises(ValueError, match="p:"):
        cell.forward(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(TypeError, match="rng"):
        cell.init_params("seed")
    assert np.array_equal(cell.init_params(3), cell.init_params(np.random.default_rng(3)))


def test_compiled_rnn_sweep_matches_the_cell_and_autograd():
    cell = RNNCell(3, 4, mask_columns=(1, 2))
    rng = np.random.default_rng(7)
    p = cell.init_params(rng)
    xs = rng.standard_normal((7, 3, 3))
    xs[:, :, 1] = rng.random((7, 3)) < 0.5
    h0 = rng.standard_normal((3, 4))
    a = rng.standard_normal((3, 4))
    h, tape = run_backwards(cell, xs, p, h0)
    ref = h0
    for k in range(6, -1, -1):
        ref, _ = cell.forward(xs[k], ref, p)
    np.testing.assert_allclose(h, ref, rtol=1e-13, atol=1e-14)
    xs_bar, h0_bar, p_bar = run_backwards_vjp(cell, tape, a)

    def total(q, x, g):
        state = g
        for k in range(6, -1, -1):
            state = rnn_twin(cell, x[k], state, q)
        return anp.sum(a * state)

    g_p, g_x, g_h = grad(total, (0, 1, 2))(p, xs, h0)
    np.testing.assert_allclose(p_bar, g_p, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xs_bar, g_x, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h0_bar, g_h, rtol=1e-10, atol=1e-12)
