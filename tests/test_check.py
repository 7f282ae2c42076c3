"""lrnde_np.check: the derivative checkers pass right derivatives and catch wrong ones."""

import autograd.numpy as anp
import numpy as np
import pytest
from numba import njit

from lrnde_np.check import CheckReport, check_gradient, check_jvp, check_vjp
from lrnde_np.nn import MLP
from lrnde_np.nn.reference import reference_forward

# A small hand-written field: f(y) = [p0 y1, -p1 sin(y0) + p2 y1²]


@njit(cache=True)
def field(t, y, p, out):
    out[0] = p[0] * y[1]
    out[1] = -p[1] * np.sin(y[0]) + p[2] * y[1] * y[1]


@njit(cache=True)
def field_vjp(t, y, p, a, out_y, out_p):
    out_y[0] = -a[1] * p[1] * np.cos(y[0])
    out_y[1] = a[0] * p[0] + 2.0 * a[1] * p[2] * y[1]
    out_p[0] = a[0] * y[1]
    out_p[1] = -a[1] * np.sin(y[0])
    out_p[2] = a[1] * y[1] * y[1]


@njit(cache=True)
def field_vjp_wrong_p(t, y, p, a, out_y, out_p):
    """dL/dp2 off by a factor 2 (y1² differentiated as if it were p2²)."""
    field_vjp(t, y, p, a, out_y, out_p)
    out_p[2] *= 2.0


@njit(cache=True)
def field_vjp_wrong_y(t, y, p, a, out_y, out_p):
    """Forgets the p2 y1² term in dL/dy1."""
    field_vjp(t, y, p, a, out_y, out_p)
    out_y[1] = a[0] * p[0]


@njit(cache=True)
def field_vjp_accumulating(t, y, p, a, out_y, out_p):
    """Right values but added into the outputs instead of overwriting them."""
    out_y[0] += -a[1] * p[1] * np.cos(y[0])
    out_y[1] += a[0] * p[0] + 2.0 * a[1] * p[2] * y[1]
    out_p[0] += a[0] * y[1]
    out_p[1] += -a[1] * np.sin(y[0])
    out_p[2] += a[1] * y[1] * y[1]


@njit(cache=True)
def field_jvp(t, y, p, v, out):
    out[0] = p[0] * v[1]
    out[1] = -p[1] * np.cos(y[0]) * v[0] + 2.0 * p[2] * y[1] * v[1]


@njit(cache=True)
def field_jvp_wrong(t, y, p, v, out):
    out[0] = p[0] * v[1]
    out[1] = p[1] * np.cos(y[0]) * v[0] + 2.0 * p[2] * y[1] * v[1]


def field_autograd(t, y, p):
    return anp.stack([p[0] * y[1], -p[1] * anp.sin(y[0]) + p[2] * y[1] ** 2])


Y = np.array([0.7, -0.4])
P = np.array([1.3, 0.8, 0.5])


def test_check_vjp_passes_a_right_vjp_and_reports_a_table():
    rep = check_vjp(field, field_vjp, Y, P, t=0.3, autograd_f=field_autograd)
    assert isinstance(rep, CheckReport) and rep.passed and bool(rep)
    assert rep.max_rel_error_y < 1e-9 and rep.max_rel_error_p < 1e-9
    text = str(rep)
    assert "PASSED" in text and "finite differences" in text and "autograd" in text
    assert "a^T df/dp" in text


@pytest.mark.parametrize("wrong,block", [(field_vjp_wrong_p, "p"), (field_vjp_wrong_y, "y")])
def test_check_vjp_detects_a_wrong_vjp(wrong, block):
    for kw in ({}, {"autograd_f": field_autograd}):
        rep = check_vjp(field, wrong, Y, P, **kw)
        assert not rep.passed
        bad = rep.max_rel_error_p if block == "p" else rep.max_rel_error_y
        good = rep.max_rel_error_y if block == "p" else rep.max_rel_error_p
        assert bad > 1e-2 and good < 1e-9
        assert "FAILED" in str(rep) and "too large" in str(rep)


def test_check_vjp_detects_a_vjp_that_accumulates_instead_of_overwriting():
    rep = check_vjp(field, field_vjp_accumulating, Y, P)
    assert rep.max_rel_error_y < 1e-9 and rep.max_rel_error_p < 1e-9  # the values are right...
    assert not rep.passed and "overwrite" in str(rep)  # ...the contract is not


def test_check_vjp_on_an_mlp_with_its_numpy_twin():
    mlp = MLP((3, 7, 5, 3), ("tanh", "softplus"), time_input="all")
    rng = np.random.default_rng(4)
    p = mlp.init_params(rng) + 0.1 * rng.normal(size=mlp.n_params)
    y = rng.normal(size=2 * 3)
    twin = lambda t, yy, pp: anp.ravel(reference_forward(mlp, anp.reshape(yy, (-1, 3)), pp, t, anp))
    rep = check_vjp(mlp.rhs, mlp.vjp, y, p, t=0.4, autograd_f=twin, rng=rng)
    assert rep.passed, str(rep)
    # a random subset of coordinates when asked
    rep = check_vjp(mlp.rhs, mlp.vjp, y, p, t=0.4, max_coords=5)
    assert rep.passed and "5 of" in str(rep)
    # a wrong architecture's twin is caught by the autograd rows
    other = MLP((3, 7, 5, 3), ("tanh", "tanh"), time_input="all")
    wrong_twin = lambda t, yy, pp: anp.ravel(reference_forward(other, anp.reshape(yy, (-1, 3)), pp, t, anp))
    assert not check_vjp(mlp.rhs, mlp.vjp, y, p, t=0.4, autograd_f=wrong_twin).passed


def test_check_jvp_passes_a_right_jvp_and_detects_a_wrong_one():
    rep = check_jvp(field, field_jvp, Y, P, autograd_f=field_autograd)
    assert rep.passed and rep.max_rel_error_y < 1e-9 and rep.max_rel_error_p is None
    assert "PASSED" in str(rep)
    rep = check_jvp(field, field_jvp_wrong, Y, P, v=np.array([1.0, 0.0]))
    assert not rep.passed and rep.max_rel_error_y > 0.1
    mlp = MLP((2, 6, 2), "swish")
    p = mlp.init_params(1)
    assert check_jvp(mlp.rhs, mlp.jvp, np.array([0.3, -1.2, 0.5, 0.1]), p).passed


def test_check_gradient_of_a_solve():
    y0 = np.array([0.5, 0.2])
    saveat = [0.4, 1.0, 1.7]
    # discrete adjoint: exact gradient of the computed solution (replay reference)
    rep = check_gradient(field, field_vjp, (0.0, 1.7), y0, P, saveat=saveat, reference="replay")
    assert rep.passed and rep.max_rel_error_y < 1e-8 and rep.max_rel_error_p < 1e-8, str(rep)
    # every adjoint against a tight solve, also without saveat (save at the steps)
    for adjoint in ("discrete", "backsolve", "backsolve+seminorm", "interpolating", "quadrature"):
        rep = check_gradient(field, field_vjp, (0.0, 1.7), y0, P, saveat=saveat, adjoint=adjoint)
        assert rep.passed, str(rep)
    assert check_gradient(field, field_vjp, (0.0, 1.7), y0, P, adjoint="interpolating").passed
    # a user loss with its gradient; a backwards span
    target = np.array([[0.1, 0.0], [0.3, -0.2], [0.0, 0.4]])
    rep = check_gradient(
        field,
        field_vjp,
        (1.7, 0.0),
        y0,
        P,
        saveat=[1.5, 0.6, 0.0],
        adjoint="backsolve",
        loss=lambda t, y: 0.5 * float(np.sum((y - target) ** 2)),
        loss_grad=lambda t, y: y - target,
    )
    assert rep.passed, str(rep)


@pytest.mark.parametrize(
    "adjoint,reference",
    [("discrete", "replay"), ("discrete", "solve"), ("backsolve", "solve"), ("quadrature", "solve")],
)
def test_check_gradient_detects_a_wrong_vjp(adjoint, reference):
    rep = check_gradient(
        field,
        field_vjp_wrong_p,
        (0.0, 1.7),
        np.array([0.5, 0.2]),
        P,
        saveat=[0.4, 1.7],
        adjoint=adjoint,
        reference=reference,
    )
    assert not rep.passed and rep.max_rel_error_p > 1e-3 and "FAILED" in str(rep)


def test_checks_reject_bad_input():
    with pytest.raises(TypeError, match="f"):
        check_vjp(None, field_vjp, Y, P)
    with pytest.raises(TypeError, match="f_vjp"):
        check_vjp(field, 3, Y, P)
    with pytest.raises(ValueError, match="y"):
        check_vjp(field, field_vjp, np.ones((2, 2)), P)
    with pytest.raises(ValueError, match="y"):
        check_vjp(field, field_vjp, np.array([np.nan, 1.0]), P)
    with pytest.raises(ValueError, match="a"):
        check_vjp(field, field_vjp, Y, P, a=np.ones(3))
    with pytest.raises(ValueError, match="eps"):
        check_vjp(field, field_vjp, Y, P, eps=0.0)
    with pytest.raises(ValueError, match="tol"):
        check_vjp(field, field_vjp, Y, P, tol=-1.0)
    with pytest.raises(TypeError, match="rng"):
        check_vjp(field, field_vjp, Y, P, rng="seed")
    with pytest.raises(ValueError, match="max_coords"):
        check_vjp(field, field_vjp, Y, P, max_coords=0)
    with pytest.raises(TypeError, match="t"):
        check_vjp(field, field_vjp, Y, P, t="now")
    with pytest.raises(ValueError, match="v"):
        check_jvp(field, field_jvp, Y, P, v=np.ones(5))
    with pytest.raises(TypeError, match="f_jvp"):
        check_jvp(field, None, Y, P)
    y0 = np.array([0.5, 0.2])
    with pytest.raises(ValueError, match="adjoint"):
        check_gradient(field, field_vjp, (0.0, 1.0), y0, P, adjoint="magic")
    with pytest.raises(ValueError, match="reference"):
        check_gradient(field, field_vjp, (0.0, 1.0), y0, P, adjoint="backsolve", reference="replay")
    with pytest.raises(ValueError, match="t_span"):
        check_gradient(field, field_vjp, (0.0, np.inf), y0, P)
    with pytest.raises(ValueError, match="loss"):
        check_gradient(field, field_vjp, (0.0, 1.0), y0, P, loss=lambda t, y: 0.0)
    with pytest.raises(ValueError, match="loss_grad"):
        check_gradient(
            field, field_vjp, (0.0, 1.0), y0, P, saveat=[1.0], loss=lambda t, y: 0.0, loss_grad=lambda t, y: np.zeros(3)
        )
    with pytest.raises(ValueError, match="adjoint_rtol"):
        check_gradient(field, field_vjp, (0.0, 1.0), y0, P, adjoint="backsolve", adjoint_rtol=0.0)
    with pytest.raises(ValueError, match="forward solve"):
        check_gradient(field, field_vjp, (0.0, 1.0), y0, P, max_steps=2)
