"""CNF augmented dynamics: values and hand-written second-order VJPs against an autograd twin and central
finite differences; the linear-field closed form; Hutchinson unbiasedness; planar flows; targets."""

import math

import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad, jacobian
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from lrnde_np.cnf import CNFDynamics, HyperField, MLPField
from lrnde_np.cnf.model import CNF, log_normal
from lrnde_np.cnf.reference import augmented_twin
from lrnde_np.cnf.toy import ENERGIES, PlanarFlow, log_partition, two_circles, two_moons

FIELDS = {
    "mlp": lambda D, w, act: MLPField(D, (w, w + 1), act),
    "mlp_first": lambda D, w, act: MLPField(D, (w,), act, time_input="first"),
    "hyper": lambda D, w, act: HyperField(D, w, hidden=5, activation=act),
}


def _setup(kind, D, width, act, trace, kinetic, frobenius, B, seed):
    field = FIELDS[kind](D, width, act)
    dyn = CNFDynamics(
        field, trace, noise="gaussian" if seed % 2 else "rademacher", kinetic=kinetic, frobenius=frobenius
    )
    rng = np.random.default_rng(seed)
    theta = field.init_params(seed) + 0.2 * rng.standard_normal(field.n_params)
    p = dyn.params(theta, B, rng)
    y = rng.standard_normal(B * dyn.channels)
    a = rng.standard_normal(y.size)
    return dyn, p, y, a


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(sorted(FIELDS)),
    D=st.integers(1, 3),
    width=st.integers(1, 4),
    act=st.sampled_from(["tanh", "softplus", "swish"]),
    trace=st.sampled_from(["exact", "hutchinson"]),
    kinetic=st.booleans(),
    frobenius=st.booleans(),
    B=st.integers(1, 3),
    t=st.floats(-1.0, 2.0),
    seed=st.integers(0, 1000),
)
def test_augmented_dynamics_and_vjp_match_autograd_twin(kind, D, width, act, trace, kinetic, frobenius, B, t, seed):
    dyn, p, y, a = _setup(kind, D, width, act, trace, kinetic, frobenius, B, seed)
    ref = augmented_twin(dyn, t, y, p, jacobian, anp)
    np.testing.assert_allclose(dyn.evaluate(t, y, p), ref, rtol=1e-10, atol=1e-11)
    gy, gp = dyn.vjp_py(t, y, p, a)
    ry = grad(lambda yy: anp.dot(a, augmented_twin(dyn, t, yy, p, jacobian, anp)))(y)
    rp = grad(lambda pp: anp.dot(a, augmented_twin(dyn, t, y, pp, jacobian, anp)))(p)
    n = dyn.n_theta
    np.testing.assert_allclose(gy, ry, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gp[:n], rp[:n], rtol=1e-9, atol=1e-10)
    assert np.all(gp[n:] == 0.0)  # the Hutchinson noise is a constant of the solve


@pytest.mark.parametrize("kind", ["mlp", "hyper"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_vjp_matches_central_differences(kind, trace):
    dyn, p, y, a = _setup(kind, 2, 3, "tanh", trace, True, True, 2, 7)
    t = 0.3
    gy, gp = dyn.vjp_py(t, y, p, a)
    h = 1e-6
    for i in range(y.size):
        e = np.zeros_like(y)
        e[i] = h
        fd = a @ (dyn.evaluate(t, y + e, p) - dyn.evaluate(t, y - e, p)) / (2 * h)
        assert abs(fd - gy[i]) < 1e-6 * (1 + abs(fd))
    for i in range(0, dyn.n_theta, max(1, dyn.n_theta // 25)):
        e = np.zeros_like(p)
        e[i] = h
        fd = a @ (dyn.evaluate(t, y, p + e) - dyn.evaluate(t, y, p - e)) / (2 * h)
        assert abs(fd - gp[i]) < 1e-6 * (1 + abs(fd))


def test_value_vjp_and_compiled_entry_points_agree():
    dyn, p, y, a = _setup("mlp", 2, 3, "tanh", "hutchinson", True, False, 3, 4)
    out = np.empty_like(y)
    dyn.rhs(0.2, y, p, out)
    np.testing.assert_allclose(out, dyn.evaluate(0.2, y, p), rtol=0, atol=0)
    f, gy, gp = np.empty_like(y), np.empty_like(y), np.empty_like(p)
    dyn.value_vjp(0.2, y, p, a, f, gy, gp)
    ry, rp = dyn.vjp_py(0.2, y, p, a)
    np.testing.assert_allclose(f, out, rtol=0, atol=0)
    np.testing.assert_allclose(gy, ry, rtol=0, atol=1e-15)
    np.testing.assert_allclose(gp, rp, rtol=0, atol=1e-15)


def test_linear_hypernetwork_field_log_density_matches_closed_form():
    # h = identity: f = A(t) z + c(t) with A(t) = (1/M) Σ_i u_i(t) w_i(t)ᵀ, so l(t1) = -∫ tr A(t) dt.
    field = HyperField(2, 3, hidden=4, activation="identity")
    dyn = CNFDynamics(field, "exact")
    theta = field.init_params(3) * 2.0
    cnf = CNF(dyn, t_span=(0.0, 1.0), rtol=1e-10, atol=1e-10)

    def tr_a(t):
        W, u, _ = field.weights(t, theta)
        return float(np.sum(W * u)) / field.width

    closed = -quad(tr_a, 0.0, 1.0, epsabs=1e-13, epsrel=1e-13)[0]
    z0 = np.array([[0.3, -1.0], [2.0, 0.5]])
    sol = cnf.forward_node.solve(dyn.initial_state(z0), theta)
    _, l1, _, _ = dyn.split(sol.y[-1])
    np.testing.assert_allclose(l1, closed, rtol=1e-8, atol=1e-9)
    # and the likelihood of the transported points: log p(x) = log N(z0) + l(t1)
    lp, _ = cnf.log_prob(dyn.split(sol.y[-1])[0], theta)
    np.testing.assert_allclose(lp, log_normal(z0) + closed, rtol=1e-7, atol=1e-7)


def test_linear_mlp_field_constant_matrix_closed_form():
    # widths (D, D), identity: f = W z + w_t t + b, tr = tr W, and z(t) is affine — the full density is known.
    field = MLPField(3, (), "tanh", time_input="none")
    dyn = CNFDynamics(field, "exact")
    theta = field.init_params(1)
    W = theta[:9].reshape(3, 3)
    cnf = CNF(dyn, t_span=(0.0, 0.7), rtol=1e-10, atol=1e-10)
    x = np.random.default_rng(0).standard_normal((4, 3))
    lp, _ = cnf.log_prob(x, theta)
    from scipy.linalg import expm

    b = theta[9:]
    # x = e^{0.7W} z0 + W^{-1}(e^{0.7W} − I) b  ⇒  z0, and log p(x) = log N(z0) − 0.7 tr W
    E = expm(0.7 * W)
    z0 = np.linalg.solve(E, (x - (np.linalg.solve(W, (E - np.eye(3)) @ b))).T).T
    np.testing.assert_allclose(lp, log_normal(z0) - 0.7 * np.trace(W), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
@pytest.mark.parametrize("kind", ["mlp", "hyper"])
def test_hutchinson_trace_and_frobenius_are_unbiased(noise, kind):
    field = FIELDS[kind](2, 4, "tanh")
    theta = field.init_params(2) + 0.3 * np.random.default_rng(2).standard_normal(field.n_params)
    exact = CNFDynamics(field, "exact", frobenius=True)
    hutch = CNFDynamics(field, "hutchinson", noise=noise, frobenius=True)
    z = np.array([0.4, -0.8])
    ref = exact.evaluate(0.5, exact.initial_state(z[None]), theta)
    n = 4000  # the draws as a batch of n copies of one point: one evaluation
    y = hutch.initial_state(np.tile(z, (n, 1)))
    out = hutch.evaluate(0.5, y, hutch.params(theta, n, 11))
    _, l_est, _, F_est = hutch.split(out)
    for est, true in ((l_est, ref[2]), (F_est, ref[3])):
        se = est.std(ddof=1) / math.sqrt(n)
        assert abs(est.mean() - true) < 4 * se + 1e-12, (est.mean(), true, se)


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="field"):
        CNFDynamics("mlp")
    with pytest.raises(ValueError, match="trace"):
        CNFDynamics(MLPField(2), trace="stochastic")
    with pytest.raises(ValueError, match="width"):
        HyperField(2, 0)
    dyn = CNFDynamics(MLPField(2), "hutchinson")
    with pytest.raises(ValueError, match="rng"):
        dyn.params(np.zeros(dyn.n_theta), 3)
    with pytest.raises(ValueError, match="theta"):
        dyn.params(np.zeros(3), 3)
    with pytest.raises(ValueError, match="z"):
        dyn.initial_state(np.zeros((3, 3)))
    cnf = CNF(CNFDynamics(MLPField(2)))
    with pytest.raises(ValueError, match="x"):
        cnf.log_prob(np.zeros((3, 5)), np.zeros(cnf.dynamics.n_theta))
    with pytest.raises(TypeError, match="rng"):
        two_moons(10, "seed")
    with pytest.raises(ValueError, match="n"):
        cnf.sample(0, np.zeros(cnf.dynamics.n_theta), 1)
    with pytest.raises(TypeError, match="dynamics"):
        CNF(MLPField(2))


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_noise_is_drawn_once_per_solve_from_the_seed(noise):
    dyn = CNFDynamics(MLPField(2, (3,)), "hutchinson", noise=noise)
    theta = np.zeros(dyn.n_theta)
    p1, p2, p3 = dyn.params(theta, 50, 4), dyn.params(theta, 50, 4), dyn.params(theta, 50, 5)
    np.testing.assert_array_equal(p1, p2)
    assert not np.array_equal(p1, p3)
    eps = p1[dyn.n_theta :]
    assert eps.size == 100
    if noise == "rademacher":
        assert set(np.unique(eps)) == {-1.0, 1.0}
    assert np.array_equal(CNFDynamics(MLPField(2, (3,)), "exact").params(theta, 50, 4), theta)


@pytest.mark.parametrize("name", sorted(ENERGIES))
def test_energy_gradients_and_normalisers(name):
    energy = ENERGIES[name]
    z = np.random.default_rng(1).standard_normal((6, 2)) * 2
    _, g = energy(z)
    h = 1e-6
    fd = np.stack([(energy(z + h * e)[0] - energy(z - h * e)[0]) / (2 * h) for e in np.eye(2)], 1)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)
    assert abs(log_partition(energy) - log_partition(energy, lim=12.0, n=700)) < 1e-3


def _planar_twin(pf, energy_np, theta, z0, xp):
    D = pf.dim
    x = z0
    logdet = 0.0
    for k in range(pf.n_layers):
        o = k * (2 * D + 1)
        u, w, b = theta[o : o + D], theta[o + D : o + 2 * D], theta[o + 2 * D]
        alpha = xp.dot(w, u)
        uh = u + ((-1.0 + xp.logaddexp(0.0, alpha)) - alpha) * w / (xp.dot(w, w) + 1e-12)
        h = xp.tanh(xp.dot(x, w) + b)
        logdet = logdet + xp.log(xp.abs(1.0 + (1.0 - h * h) * xp.dot(w, uh)))
        x = x + xp.outer(h, uh)
    logq = -0.5 * xp.sum(z0 * z0, 1) - D * 0.5 * math.log(2 * math.pi) - logdet
    return xp.mean(logq + energy_np(x))


def test_planar_flow_gradient_matches_autograd():
    pf = PlanarFlow(2, 3)
    theta = pf.init_params(0) + 0.5 * np.random.default_rng(0).standard_normal(pf.n_params)

    def u2(x):
        w1 = anp.sin(2 * math.pi * x[:, 0] / 4)
        return 0.5 * ((x[:, 1] - w1) / 0.4) ** 2 + 0.5 * (x[:, 0] / 2.5) ** 2

    loss, g = pf.kl_loss_and_grad(ENERGIES["u2"], theta, 9, 5)
    z0 = np.random.default_rng(5).standard_normal((9, 2))
    ref = grad(lambda th: _planar_twin(pf, u2, th, z0, anp))(theta)
    np.testing.assert_allclose(loss, _planar_twin(pf, u2, theta, z0, np), rtol=1e-12)
    np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-11)


def test_datasets_are_seeded():
    np.testing.assert_array_equal(two_moons(50, 3), two_moons(50, 3))
    assert two_circles(40, 1).shape == (40, 2)
    assert not np.array_equal(two_circles(40, 1), two_circles(40, 2))
