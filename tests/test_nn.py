"""MLP right-hand sides against an autograd-differentiated NumPy twin; losses; Adam."""

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrnde_np import solve_ode
from lrnde_np._jit import FunctionHandle
from lrnde_np._types import JVP_SIG, RHS_SIG, VJP_SIG
from lrnde_np.nn import ACTIVATIONS, MLP, Adam, accuracy, mse_loss, softmax_cross_entropy, sum_squares_loss
from lrnde_np.nn.mlp import BLAS_MIN_MACS
from lrnde_np.nn.reference import reference_forward
from lrnde_np.ode.rhs import as_compiled

ACTIVATION_NAMES = sorted(ACTIVATIONS)
SMOOTH_ACTIVATIONS = [name for name in ACTIVATION_NAMES if name != "relu"]


def assert_close(actual, expected, rtol):
    """Elementwise relative agreement, with the absolute floor scaled to the largest expected entry."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@st.composite
def mlp_problems(draw, activations=ACTIVATION_NAMES):
    """An architecture, a minibatch, parameters, t, and a cotangent and tangent for it."""
    n_hidden = draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 12)) for _ in range(n_hidden + 2)]
    hidden = [draw(st.sampled_from(activations)) for _ in range(n_hidden)]
    final = draw(st.sampled_from([None] + list(activations)))
    mlp = MLP(
        widths,
        hidden,
        time_input=draw(st.sampled_from(["none", "first", "all"])),
        input_transform=draw(st.sampled_from(["none", "cube"])),
        final_activation=final,
    )
    batch = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.normal(size=(batch, mlp.input_dim))
    p = rng.normal(size=mlp.n_params)
    t = draw(st.floats(-2.0, 2.0))
    cotangent = rng.normal(size=(batch, mlp.output_dim))
    tangent = rng.normal(size=y.shape)
    return mlp, y, p, t, cotangent, tangent


def autograd_vjp(mlp, y, p, t, cotangent):
    def pairing(y_, p_):
        return anp.sum(reference_forward(mlp, y_, p_, t, anp) * cotangent)

    return autograd.grad(pairing, 0)(y, p), autograd.grad(pairing, 1)(y, p)


def autograd_jvp(mlp, y, p, t, tangent):
    return autograd.make_jvp(lambda y_: reference_forward(mlp, y_, p, t, anp))(y)(tangent)[1]


# ---------------------------------------------------------------------------------------------------------
# MLP against its twin


# autograd differentiates tanh as 1/cosh², whose cosh overflows (harmlessly, to a slope of 0) for large inputs.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@settings(max_examples=400, deadline=None)
@given(mlp_problems())
def test_forward_vjp_jvp_match_autograd_on_the_twin(problem):
    mlp, y, p, t, cotangent, tangent = problem
    assert_close(mlp.forward(y, p, t), reference_forward(mlp, y, p, t), 1e-12)
    grad_y, grad_p = mlp.vjp_py(y, p, cotangent, t)
    expected_y, expected_p = autograd_vjp(mlp, y, p, t, cotangent)
    assert_close(grad_y, expected_y, 1e-12)
    assert_close(grad_p, expected_p, 1e-12)
    assert_close(mlp.jvp_py(y, p, tangent, t), autograd_jvp(mlp, y, p, t, tangent), 1e-12)


def central_difference(func, x, direction, h=1e-6):
    return (func(x + h * direction) - func(x - h * direction)) / (2.0 * h)


@settings(max_examples=150, deadline=None)
@given(mlp_problems(activations=SMOOTH_ACTIVATIONS))
def test_vjp_and_jvp_match_central_differences(problem):
    mlp, y, p, t, cotangent, tangent = problem
    rng = np.random.default_rng(0)
    grad_y, grad_p = mlp.vjp_py(y, p, cotangent, t)
    # aᵀ(∂f/∂y)·v and aᵀ(∂f/∂p)·δp are directional derivatives of the scalar a·f.
    pairing_in_y = lambda y_: np.sum(cotangent * mlp.forward(y_, p, t))  # noqa: E731
    pairing_in_p = lambda p_: np.sum(cotangent * mlp.forward(y, p_, t))  # noqa: E731
    direction_p = rng.normal(size=p.shape)
    fd_y = central_difference(pairing_in_y, y, tangent)
    fd_p = central_difference(pairing_in_p, p, direction_p)
    assert abs(np.sum(grad_y * tangent) - fd_y) <= 1e-6 * (1.0 + abs(fd_y))
    assert abs(grad_p @ direction_p - fd_p) <= 1e-6 * (1.0 + abs(fd_p))
    fd_jvp = central_difference(lambda y_: mlp.forward(y_, p, t), y, tangent)
    assert_close(mlp.jvp_py(y, p, tangent, t), fd_jvp, 1e-6)


def test_relu_derivatives_away_from_the_kink():
    mlp = MLP((3, 8, 2), "relu", final_activation="relu")
    rng = np.random.default_rng(5)
    p, y, a = rng.normal(size=mlp.n_params), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    (W0, _, b0), (W1, _, b1) = mlp.unpack_params(p)
    z0 = y @ W0.T + b0
    z1 = np.maximum(z0, 0.0) @ W1.T + b1
    # Both sides of the kink occur, and no pre-activation is near it, so that ±h steps cannot cross it.
    assert (z0 < 0).any() and (z0 > 0).any() and (z1 < 0).any() and (z1 > 0).any()
    assert min(np.min(np.abs(z0)), np.min(np.abs(z1))) > 1e-3
    grad_y, grad_p = mlp.vjp_py(y, p, a)
    expected_y, expected_p = autograd_vjp(mlp, y, p, 0.0, a)
    assert_close(grad_y, expected_y, 1e-12)
    assert_close(grad_p, expected_p, 1e-12)
    direction = rng.normal(size=p.shape)
    fd = central_difference(lambda p_: np.sum(a * mlp.forward(y, p_)), p, direction)
    assert abs(grad_p @ direction - fd) <= 1e-6 * (1.0 + abs(fd))


@pytest.mark.parametrize("time_input", ["none", "all"])
def test_layers_large_enough_for_blas_match_the_twin(time_input):
    # 64·80·2 multiply-adds per layer take the BLAS branch; the 80→3 head stays on the loops.
    mlp = MLP((64, 80, 64, 3), ["tanh", "softplus"], time_input=time_input)
    assert 64 * 80 * 2 >= BLAS_MIN_MACS > 64 * 3 * 2
    rng = np.random.default_rng(11)
    y, p = rng.normal(size=(2, 64)), rng.normal(size=mlp.n_params) / 8.0
    a, v = rng.normal(size=(2, 3)), rng.normal(size=(2, 64))
    assert_close(mlp.forward(y, p, 0.4), reference_forward(mlp, y, p, 0.4), 1e-12)
    grad_y, grad_p = mlp.vjp_py(y, p, a, 0.4)
    expected_y, expected_p = autograd_vjp(mlp, y, p, 0.4, a)
    assert_close(grad_y, expected_y, 1e-12)
    assert_close(grad_p, expected_p, 1e-12)
    assert_close(mlp.jvp_py(y, p, v, 0.4), autograd_jvp(mlp, y, p, 0.4, v), 1e-12)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activations_and_slopes_stay_finite_for_extreme_inputs(name):
    mlp = MLP((1, 1), [], final_activation=name)
    p = np.array([1.0, 0.0])  # W = 1, b = 0: the output is act(y)
    y = np.array([-800.0, -30.0, 30.0, 800.0])
    sigmoid = np.array([0.0, math.exp(-30.0) / (1 + math.exp(-30.0)), 1 / (1 + math.exp(-30.0)), 1.0])
    expected_value, expected_slope = {
        "identity": (y, np.ones(4)),
        "tanh": (np.tanh(y), 1.0 - np.tanh(y) ** 2),
        "relu": (np.maximum(y, 0.0), (y > 0).astype(float)),
        "softplus": (np.array([0.0, math.log1p(math.exp(-30.0)), 30.0 + math.log1p(math.exp(-30.0)), 800.0]), sigmoid),
        "swish": (y * sigmoid, sigmoid * (1.0 + y * (1.0 - sigmoid))),
    }[name]
    np.testing.assert_allclose(mlp.forward(y, p), expected_value, rtol=1e-15, atol=1e-300)
    grad_y, _ = mlp.vjp_py(y, p, np.ones(4))
    np.testing.assert_allclose(grad_y, expected_slope, rtol=1e-14, atol=1e-300)


def test_forward_keeps_the_shape_of_its_batch():
    mlp = MLP((3, 5, 10), "swish")
    p = mlp.init_params(0)
    y = np.random.default_rng(1).normal(size=(7, 3))
    batched = mlp.forward(y, p)
    flat = mlp.forward(y.ravel(), p)
    assert batched.shape == (7, 10) and flat.shape == (70,)
    np.testing.assert_array_equal(batched.ravel(), flat)
    np.testing.assert_array_equal(batched[2], mlp.forward(y[2], p))
    read_only, strided = y.copy(), np.asfortranarray(y)
    read_only.flags.writeable = False
    np.testing.assert_array_equal(mlp.forward(read_only, p), batched)
    np.testing.assert_array_equal(mlp.forward(strided, p), batched)


# ---------------------------------------------------------------------------------------------------------
# The compiled entry points


ENTRY_POINT_CASES = [
    MLP((2, 50, 2), "tanh", input_transform="cube"),
    MLP((3, 6, 5, 3), ["softplus", "relu"], time_input="all", final_activation="swish"),
    MLP((4, 7, 4), "swish", time_input="first"),
]


@pytest.mark.parametrize("mlp", ENTRY_POINT_CASES, ids=repr)
def test_entry_points_have_the_fixed_signatures_and_overwrite_their_outputs(mlp):
    assert mlp.rhs.signatures == [RHS_SIG.args]
    assert mlp.vjp.signatures == [VJP_SIG.args]
    assert mlp.jvp.signatures == [JVP_SIG.args]
    rng = np.random.default_rng(2)
    batch = 3
    y, p = rng.normal(size=batch * mlp.input_dim), rng.normal(size=mlp.n_params)
    a, v = rng.normal(size=batch * mlp.output_dim), rng.normal(size=y.size)
    out = np.full(batch * mlp.output_dim, np.nan)
    mlp.rhs(0.3, y, p, out)
    np.testing.assert_array_equal(out, mlp.forward(y, p, 0.3))
    out_y, out_p = np.full(y.size, np.nan), np.full(p.size, np.nan)
    mlp.vjp(0.3, y, p, a, out_y, out_p)
    expected_y, expected_p = mlp.vjp_py(y, p, a, 0.3)
    np.testing.assert_array_equal(out_y, expected_y)
    np.testing.assert_array_equal(out_p, expected_p)
    out = np.full(batch * mlp.output_dim, np.nan)
    mlp.jvp(0.3, y, p, v, out)
    np.testing.assert_array_equal(out, mlp.jvp_py(y, p, v, 0.3))


def test_entry_points_are_shared_by_equal_architectures():
    first, second = MLP((2, 50, 2), "tanh", input_transform="cube"), ENTRY_POINT_CASES[0]
    assert first.rhs is second.rhs and first.vjp is second.vjp and first.jvp is second.jvp
    assert MLP((2, 50, 2), "tanh").rhs is not first.rhs


@pytest.mark.parametrize(
    "call, argname",
    [
        (lambda m, y, p: m.rhs(0.0, y[:-1], p, np.empty(2)), "y"),
        (lambda m, y, p: m.rhs(0.0, y, p[:-1], np.empty(4)), "p"),
        (lambda m, y, p: m.rhs(0.0, y, p, np.empty(3)), "out"),
        (lambda m, y, p: m.vjp(0.0, y, p, np.empty(3), np.empty(4), np.empty(p.size)), "a"),
        (lambda m, y, p: m.vjp(0.0, y, p, np.empty(4), np.empty(3), np.empty(p.size)), "out_y"),
        (lambda m, y, p: m.vjp(0.0, y, p, np.empty(4), np.empty(4), np.empty(p.size + 1)), "out_p"),
        (lambda m, y, p: m.jvp(0.0, y, p, np.empty(3), np.empty(4)), "v"),
    ],
)
def test_entry_points_reject_mismatched_lengths(call, argname):
    mlp = ENTRY_POINT_CASES[0]
    with pytest.raises(ValueError, match=f"^{argname}:"):
        call(mlp, np.ones(4), mlp.init_params(0))


def test_solver_integrates_the_mlp_field():
    from scipy.integrate import solve_ivp

    mlp = MLP((2, 16, 2), "tanh", time_input="all")
    p = mlp.init_params(3)
    y0 = np.array([0.5, -1.0, 1.5, 0.25])  # a batch of two states
    sol = solve_ode(mlp.rhs, (0.0, 2.0), y0, p, rtol=1e-10, atol=1e-12, saveat=[2.0])
    assert sol.success
    twin = lambda t, y: reference_forward(mlp, y.reshape(2, 2), p, t).ravel()  # noqa: E731
    expected = solve_ivp(twin, (0.0, 2.0), y0, rtol=1e-11, atol=1e-13).y[:, -1]
    np.testing.assert_allclose(sol.y[-1], expected, rtol=1e-8, atol=1e-10)
    assert isinstance(as_compiled(mlp.vjp, "vjp"), FunctionHandle)
    assert isinstance(as_compiled(mlp.jvp, "jvp"), FunctionHandle)


# ---------------------------------------------------------------------------------------------------------
# Construction, parameters, validation


def test_parameter_layout_is_the_documented_one():
    mlp = MLP((3, 4, 2), "tanh", time_input="all")
    p = np.arange(mlp.n_params, dtype=float)
    (W0, t0, b0), (W1, t1, b1) = mlp.unpack_params(p)
    # Layer 0: W (4, 3) row-major, then w_t (4), then b (4); layer 1: W (2, 4), w_t (2), b (2).
    np.testing.assert_array_equal(W0, np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(t0, np.arange(12, 16))
    np.testing.assert_array_equal(b0, np.arange(16, 20))
    np.testing.assert_array_equal(W1, np.arange(20, 28).reshape(2, 4))
    np.testing.assert_array_equal(t1, np.arange(28, 30))
    np.testing.assert_array_equal(b1, np.arange(30, 32))
    assert mlp.n_params == 32
    first_only = MLP((3, 4, 4, 2), "tanh", time_input="first")
    assert first_only.n_params == (4 * 3 + 4 + 4) + (4 * 4 + 4) + (2 * 4 + 2)
    assert [w_t is None for _, w_t, _ in first_only.unpack_params(np.zeros(50))] == [False, True, True]


def test_paper_architectures_have_the_expected_sizes():
    assert MLP((784, 100, 784), "tanh", time_input="all").n_params == 785 * 100 + 100 + 101 * 784 + 784
    assert MLP((2, 50, 2), "tanh", input_transform="cube").n_params == 2 * 50 + 50 + 50 * 2 + 2


def test_init_params_is_deterministic_and_scaled():
    mlp = MLP((5, 40, 40, 3), ["relu", "tanh"], time_input="first")
    p = mlp.init_params(7)
    np.testing.assert_array_equal(p, mlp.init_params(np.random.default_rng(7)))
    assert not np.array_equal(p, mlp.init_params(8))
    (W0, t0, b0), (W1, _, b1), (W2, _, b2) = mlp.unpack_params(p)
    assert np.max(np.abs(np.concatenate([W0.ravel(), t0]))) <= math.sqrt(6.0 / 6)  # He, fan_in 5 + t
    assert np.max(np.abs(W1)) <= math.sqrt(6.0 / 80) < np.max(np.abs(W0))  # Glorot
    assert np.max(np.abs(W2)) <= math.sqrt(6.0 / 43)
    assert not np.any(b0) and not np.any(b1) and not np.any(b2)
    with pytest.raises(TypeError, match="^rng:"):
        mlp.init_params("seed")


@pytest.mark.parametrize(
    "kwargs, argname",
    [
        (dict(widths=(2,), activations="tanh"), "widths"),
        (dict(widths=(2, 0, 2), activations="tanh"), "widths"),
        (dict(widths=(2, 2.5, 2), activations="tanh"), "widths"),
        (dict(widths=5, activations="tanh"), "widths"),
        (dict(widths=(2, 3, 2), activations="sigmoid"), "activations"),
        (dict(widths=(2, 3, 2), activations=["tanh", "tanh"]), "activations"),
        (dict(widths=(2, 3, 2), activations="tanh", time_input="last"), "time_input"),
        (dict(widths=(2, 3, 2), activations="tanh", input_transform="square"), "input_transform"),
        (dict(widths=(2, 3, 2), activations="tanh", final_activation="softmax"), "final_activation"),
    ],
)
def test_bad_construction_arguments_name_the_argument(kwargs, argname):
    with pytest.raises(ValueError, match=f"^{argname}:"):
        MLP(**kwargs)


def test_bad_call_arguments_name_the_argument():
    mlp = MLP((3, 4, 2), "tanh")
    p, y = mlp.init_params(0), np.ones((2, 3))
    with pytest.raises(ValueError, match="^y:"):
        mlp.forward(np.ones(4), p)
    with pytest.raises(ValueError, match="^p:"):
        mlp.forward(y, p[:-1])
    with pytest.raises(ValueError, match="^cotangent:"):
        mlp.vjp_py(y, p, np.ones((3, 2)))
    with pytest.raises(ValueError, match="^tangent:"):
        mlp.jvp_py(y, p, np.ones(6))


# ---------------------------------------------------------------------------------------------------------
# Losses


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_regression_loss_gradients_match_autograd(rows, cols, seed):
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=(rows, cols)), rng.normal(size=(rows, cols))
    for loss_fn, reference in [
        (mse_loss, lambda x: anp.mean((x - target) ** 2)),
        (sum_squares_loss, lambda x: anp.sum((x - target) ** 2)),
    ]:
        loss, grad = loss_fn(pred, target)
        assert loss == pytest.approx(reference(pred), rel=1e-14)
        assert_close(grad, autograd.grad(reference)(pred), 1e-14)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_cross_entropy_gradient_matches_autograd_and_differences(batch, classes, seed):
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(batch, classes))
    labels = rng.integers(0, classes, size=batch)

    def reference(x):
        log_norm = anp.log(anp.sum(anp.exp(x), axis=1))
        return anp.mean(log_norm - x[np.arange(batch), labels])

    loss, grad = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(reference(logits), rel=1e-12, abs=1e-14)
    assert_close(grad, autograd.grad(reference)(logits), 1e-12)
    direction = rng.normal(size=logits.shape)
    fd = central_difference(lambda x: softmax_cross_entropy(x, labels)[0], logits, direction)
    assert np.sum(grad * direction) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [5e4, 5e4, 5e4]])
    loss, grad = softmax_cross_entropy(logits, np.array([1, 2]))
    assert loss == pytest.approx((1000.0 + math.log(3.0)) / 2, rel=1e-12)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [1 / 6, 1 / 6, -1 / 3]], atol=1e-15)


def test_accuracy_counts_argmax_hits():
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5], [4.0, 4.5]])
    assert accuracy(logits, np.array([1, 0, 0, 0])) == 0.5


@pytest.mark.parametrize(
    "call, argname",
    [
        (lambda: mse_loss(np.ones(3), np.ones(4)), "target"),
        (lambda: sum_squares_loss(np.ones((2, 2)), np.ones(4)), "target"),
        (lambda: softmax_cross_entropy(np.ones(3), np.array([0])), "logits"),
        (lambda: softmax_cross_entropy(np.ones((2, 3)), np.array([0])), "labels"),
        (lambda: softmax_cross_entropy(np.ones((2, 3)), np.array([0, 3])), "labels"),
        (lambda: softmax_cross_entropy(np.ones((2, 3)), np.array([0.0, 1.0])), "labels"),
        (lambda: accuracy(np.ones((2, 3)), np.array([-1, 0])), "labels"),
    ],
)
def test_losses_reject_bad_shapes(call, argname):
    with pytest.raises(ValueError, match=f"^{argname}:"):
        call()


# ---------------------------------------------------------------------------------------------------------
# Adam


def test_adam_two_steps_by_hand():
    # lr 0.1, β1 0.9, β2 0.999, eps 1e-8; gradients (0.1, -0.2) then (0.3, 0.4).
    # Step 1: m̂ = g, v̂ = g², so each coordinate moves by lr·g/(|g| + eps).
    # Step 2: m = (0.039, 0.022), v = (9.999e-5, 1.9996e-4); m̂ = m/0.19, v̂ = v/0.001999.
    params = np.array([1.0, -2.0])
    opt = Adam(lr=0.1)
    opt.step(params, np.array([0.1, -0.2]))
    np.testing.assert_allclose(params, [1.0 - 0.01 / (0.1 + 1e-8), -2.0 + 0.02 / (0.2 + 1e-8)], rtol=1e-15)
    opt.step(params, np.array([0.3, 0.4]))
    np.testing.assert_allclose(opt.m, [0.039, 0.022], rtol=1e-13)
    np.testing.assert_allclose(opt.v, [9.999e-5, 1.9996e-4], rtol=1e-13)
    np.testing.assert_allclose(params, [0.8082219022055899, -1.9366103565460366], rtol=1e-13)
    assert opt.step_count == 2


def test_adam_state_round_trips_through_npz(tmp_path):
    rng = np.random.default_rng(4)
    params = rng.normal(size=6)
    opt = Adam(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-7)
    fresh = Adam().state_dict()
    for _ in range(3):
        opt.step(params, rng.normal(size=6))
    np.savez(tmp_path / "adam.npz", **opt.state_dict())
    restored = Adam()
    restored.load_state_dict(np.load(tmp_path / "adam.npz"))
    copy = params.copy()
    grad = rng.normal(size=6)
    opt.step(params, grad)
    restored.step(copy, grad)
    np.testing.assert_array_equal(params, copy)
    assert (restored.lr, restored.beta1, restored.beta2, restored.eps) == (0.05, 0.8, 0.99, 1e-7)
    # A state saved before any step restores to "no moments yet".
    restored.load_state_dict(fresh)
    assert restored.step_count == 0 and restored.m is None


def test_adam_reset_and_validation():
    params = np.zeros(3)
    opt = Adam()
    opt.step(params, np.ones(3))
    opt.reset()
    assert opt.step_count == 0 and opt.m is None
    for kwargs, argname in [
        (dict(lr=0.0), "lr"),
        (dict(beta1=1.0), "beta1"),
        (dict(beta2=-0.1), "beta2"),
        (dict(eps=-1.0), "eps"),
    ]:
        with pytest.raises(ValueError, match=f"^{argname}:"):
            Adam(**kwargs)
    with pytest.raises(ValueError, match="^grad:"):
        opt.step(params, np.ones(4))
    with pytest.raises(ValueError, match="^params:"):
        opt.step([0.0, 0.0, 0.0], np.ones(3))
    with pytest.raises(ValueError, match="^state:"):
        opt.load_state_dict({"lr": 0.1})


@pytest.mark.parametrize("time_input,transform", [("none", "cube"), ("all", "none")])
def test_value_vjp_equals_rhs_and_vjp(time_input, transform):
    """The fused entry point gives exactly the value of rhs and the VJP of vjp (one forward pass)."""
    mlp = MLP((3, 7, 3), "tanh", time_input=time_input, input_transform=transform)
    rng = np.random.default_rng(11)
    p = mlp.init_params(rng)
    y, a = rng.normal(size=6), rng.normal(size=6)
    f_ref, gy_ref, gp_ref = np.empty(6), np.empty(6), np.empty(p.size)
    mlp.rhs(0.3, y, p, f_ref)
    mlp.vjp(0.3, y, p, a, gy_ref, gp_ref)
    f, gy, gp = np.full(6, np.nan), np.full(6, np.nan), np.full(p.size, np.nan)
    mlp.value_vjp(0.3, y, p, a, f, gy, gp)
    np.testing.assert_array_equal(f, f_ref)
    np.testing.assert_array_equal(gy, gy_ref)
    np.testing.assert_array_equal(gp, gp_ref)


# ----------------------------------------------------------------------------------------------------------
# The vectorisable tanh behind the "tanh" activation (lrnde_np/nn/tanh.py).

from lrnde_np.nn.tanh import tanh_into  # noqa: E402

LONG_DOUBLE_IS_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


def ulp_error(values, x):
    """|values − tanh(x)| in units of the double spacing at tanh(x), tanh from the widest float we have."""
    wide = np.longdouble if LONG_DOUBLE_IS_WIDER else np.float64
    exact = np.tanh(x.astype(wide))
    spacing = np.spacing(np.abs(exact).astype(np.float64)).astype(wide)
    return np.abs(values.astype(wide) - exact) / spacing


def vector_tanh(x):
    out = np.empty_like(x)
    tanh_into(x, out)
    return out


def test_vector_tanh_is_within_two_ulp():
    # 10⁵ points per band, bands spanning both branches (the switch is at 0.625), the saturation at 20 and
    # the tiny arguments where tanh x = x; reference: long-double tanh (double libm, which itself errs by up
    # to ~1.2 ulp, where long double is no wider: hence the looser bound there).
    rng = np.random.default_rng(11)
    bound = 2.0 if LONG_DOUBLE_IS_WIDER else 3.0
    for top in (1e-300, 1e-12, 1e-4, 0.3, 0.62, 0.63, 0.7, 1.0, 2.0, 5.0, 12.0, 19.0, 21.0, 40.0):
        x = rng.uniform(-top, top, 100_000)
        err = ulp_error(vector_tanh(x), x)
        assert err.max() <= bound, (top, float(err.max()))
    x = np.nextafter(0.625, [-1.0, 2.0])  # both sides of the switch
    assert ulp_error(vector_tanh(x), x).max() <= bound


def test_vector_tanh_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 1e-310, 20.0, -20.0, 1e308, -1e308])
    t = vector_tanh(x)
    np.testing.assert_array_equal(t, np.tanh(x))
    np.testing.assert_array_equal(np.signbit(t), np.signbit(x))  # tanh(−0) = −0
    assert np.isnan(vector_tanh(np.array([np.nan, -np.nan]))).all()  # NaN propagates, never ±1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=False), min_size=1, max_size=70))
def test_vector_tanh_is_odd_bounded_and_in_place_safe(values):
    x = np.array(values)
    t = vector_tanh(x)
    np.testing.assert_array_equal(vector_tanh(-x), -t)
    assert np.all(np.abs(t) <= 1.0) and np.all(np.sign(t) == np.sign(x))
    y = x.copy()
    tanh_into(y, y)  # a may be z: the MLP reuses buffers
    np.testing.assert_array_equal(y, t)
