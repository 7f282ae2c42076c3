"""Chen's Table 1 models (lrnde_np.models.odenet): hand-written backprop against autograd and finite differences."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from lrnde_np.models.odenet import KINDS, Table1Model
from lrnde_np.nn.reference import reference_forward

DIM, HIDDEN, IN, BATCH = 3, 5, 6, 4


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (BATCH, IN)), rng.integers(0, 10, BATCH)


def _model(kind, **kw):
    return Table1Model(kind, dim=DIM, hidden=HIDDEN, n_blocks=3, input_dim=IN, **kw)


def resnet_twin(model, params, x, labels):
    """The ResNet's loss written with autograd.numpy, sharing only the parameter layout."""
    o = model._offsets
    W_in = anp.reshape(params[o[0] : o[1]], (DIM, IN))
    h = anp.tanh(anp.dot(x, W_in.T) + params[o[1] : o[2]])
    for i in range(model.n_blocks):
        h = h + reference_forward(model.block, h, params[o[2 + i] : o[3 + i]], t=i / model.n_blocks, xp=anp)
    k = 2 + model.n_blocks
    logits = anp.dot(h, anp.reshape(params[o[k] : o[k + 1]], (10, DIM)).T) + params[o[k + 1] : o[k + 2]]
    shifted = logits - anp.max(logits, axis=1, keepdims=True)
    logp = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
    return -anp.mean(logp[np.arange(BATCH), labels])


def fd_grad(fun, p, h=1e-5):
    g = np.empty_like(p)
    for i in range(p.size):
        e = np.zeros_like(p)
        e[i] = h
        g[i] = (fun(p + e) - fun(p - e)) / (2 * h)
    return g


def test_resnet_gradient_matches_autograd_twin_and_finite_differences():
    model = _model("resnet")
    params = model.init_params(np.random.default_rng(1))
    params += 0.3 * np.random.default_rng(2).normal(size=params.size)  # away from the zero biases
    x, y = _data()
    loss, grad = model.loss_and_grad(params, x, y)
    assert loss == pytest.approx(float(resnet_twin(model, params, x, y)), rel=1e-12)
    np.testing.assert_allclose(
        grad, autograd.grad(lambda q: resnet_twin(model, q, x, y))(params), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(grad, fd_grad(lambda q: model.loss_and_grad(q, x, y)[0], params), rtol=1e-5, atol=1e-9)


def test_rknet_fixed_steps_gradient_is_the_exact_gradient_of_the_computed_solve():
    # Fixed RK4 steps: the discrete adjoint differentiates exactly the function finite differences see.
    model = _model("rknet", fixed_steps=4)
    params = model.init_params(np.random.default_rng(3))
    params += 0.3 * np.random.default_rng(4).normal(size=params.size)
    x, y = _data(1)
    _, grad = model.loss_and_grad(params, x, y)
    np.testing.assert_allclose(grad, fd_grad(lambda q: model.loss_and_grad(q, x, y)[0], params), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["rknet", "odenet"])
def test_adaptive_ode_models_gradients_match_finite_differences_of_a_tight_solve(kind):
    tight = _model(kind, rtol=1e-10, atol=1e-10)
    params = tight.init_params(np.random.default_rng(5))
    params += 0.3 * np.random.default_rng(6).normal(size=params.size)
    x, y = _data(2)
    fd = fd_grad(lambda q: tight.loss_and_grad(q, x, y)[0], params)
    _, grad = _model(kind, rtol=1e-7, atol=1e-7).loss_and_grad(params, x, y)
    assert np.max(np.abs(grad - fd)) <= 1e-5 * np.max(np.abs(fd))


def test_the_three_models_share_stem_head_and_block():
    sizes = {k: _model(k).n_params for k in KINDS}
    block = _model("odenet").block.n_params
    assert sizes["rknet"] == sizes["odenet"]
    assert sizes["resnet"] - sizes["odenet"] == 2 * block  # 3 blocks against 1
    m = _model("odenet")
    p = m.init_params(np.random.default_rng(0))
    x, _ = _data()
    assert m.predict(p, x).shape == (BATCH, 10) and m.last_nfe > 0


@pytest.mark.parametrize(
    "kwargs, error", [({"kind": "cnn"}, ValueError), ({"dim": 0}, ValueError), ({"fixed_steps": 0}, ValueError)]
)
def test_bad_arguments(kwargs, error):
    call = {"kind": "resnet", "dim": 2, "hidden": 3, "input_dim": 4}
    call.update(kwargs)
    with pytest.raises(error):
        Table1Model(**call)
    with pytest.raises(TypeError, match="rng"):
        Table1Model("resnet", dim=2, hidden=3, input_dim=4).init_params(0)
