"""The error estimate against the true local error (SciPy's DOP853 at 1e-13, or an exact SDE solution).

What the regularizer penalizes, E_est·|dt|, is a scaled norm of err = h Σ btilde_i k_i.  These tests show that
err is the true local error of the embedded solution to leading order (ratio → 1, direction → the same), that
the true errors decay at the tableaus' orders, and that the local regularizer's value is E_est·|dt| of a step
checked this way.
"""

import math

import numpy as np
import pytest
from numba import njit

from lrnde_np.check_error import check_error_estimate, check_sde_error_estimate
from lrnde_np.nn import MLP
from lrnde_np.regularize import local_regularizer


@njit(cache=True)
def lotka_volterra(t, y, p, out):
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


@njit(cache=True)
def van_der_pol(t, y, p, out):
    out[0] = y[1]
    out[1] = p[0] * (1.0 - y[0] * y[0]) * y[1] - y[0]


def _spiral_field():
    mlp = MLP((2, 16, 2), "tanh")
    p = mlp.init_params(np.random.default_rng(0))
    z = np.random.default_rng(1).normal(size=8)
    return mlp, p, z


def _problem(name):
    if name == "lotka_volterra":
        return lotka_volterra, 0.0, np.array([1.0, 1.0]), np.array([1.5, 1.0, 3.0, 1.0])
    if name == "van_der_pol":
        return van_der_pol, 0.0, np.array([2.0, 0.0]), np.array([1.0])
    mlp, p, z = _spiral_field()
    return mlp.rhs, 0.3, z, p


@pytest.mark.parametrize("method", ["tsit5", "dp5", "bs3"])
@pytest.mark.parametrize("problem", ["lotka_volterra", "van_der_pol", "mlp_field"])
def test_error_vector_is_the_embedded_solutions_true_local_error(problem, method):
    f, t, y, p = _problem(problem)
    report = check_error_estimate(f, t, y, p, method=method)
    assert report.dt.size == 15 and np.all(np.isfinite(report.true_error_embedded))
    # ratio ‖err‖/‖ŷ₁ − y*‖ within 10% of 1, and err points the same way, at the three smallest steps whose
    # embedded error stands 1000x clear of the reference's accuracy
    usable = np.flatnonzero(report.true_error_embedded > 1e-12)
    small = usable[np.argsort(report.dt[usable])][:3]
    assert small.size == 3 and np.all(report.dt[small] <= 0.1)
    np.testing.assert_allclose(report.ratio[small], 1.0, atol=0.1)
    assert np.all(report.cosine[small] > 0.99)
    # the embedded solution's true error decays at order p̂ + 1
    assert report.slope_embedded == pytest.approx(report.error_order + 1, abs=0.3)
    # the propagated solution's error at order p + 1 — for BS3, and for the 5(4) pairs on the MLP field.  On
    # Lotka–Volterra and Van der Pol the 5(4) pairs' propagated errors are pre-asymptotic all the way down to
    # round-off (local slopes 6.5–7 on Lotka–Volterra, erratic on Van der Pol where a component's error changes
    # sign): their principal error coefficients are small, so the h^(p+2) terms dominate above 1e-13.
    if method == "bs3" or problem == "mlp_field":
        assert report.slope == pytest.approx(report.order + 1, abs=0.3)
    # and E_est is the scaled RMS norm of that vector (it grows with ‖err‖, and R = E_est·|dt|)
    np.testing.assert_allclose(report.regularizer, report.error_estimate * np.abs(report.dt), rtol=1e-15)
    assert "slope" in str(report)


def test_local_regularizer_is_e_est_dt_of_the_scipy_checked_step():
    mlp, p, z = _spiral_field()
    rtol, atol, t_reg = 1e-4, 1e-6, 0.3
    reg = local_regularizer(mlp.rhs, mlp.vjp, t_reg, 1.0, z, p, rtol, atol, compute_grad=False)
    report = check_error_estimate(mlp.rhs, t_reg, z, p, dt=reg.dt, method="tsit5", rtol=rtol, atol=atol)
    assert report.regularizer[0] == pytest.approx(reg.value, rel=1e-13)
    assert report.error_estimate[0] == pytest.approx(reg.error_estimate, rel=1e-13)
    # at the step the regularizer takes (the solver's initial step at these tolerances) err is still within 10%
    # of the true local error of the embedded solution
    assert report.ratio[0] == pytest.approx(1.0, abs=0.1)


def test_backwards_steps_and_custom_exact_solution():
    @njit(cache=True)
    def decay(t, y, p, out):
        out[0] = -p[0] * y[0]

    dts = -0.1 * 2.0 ** -np.arange(5)
    report = check_error_estimate(
        decay,
        1.0,
        np.array([2.0]),
        np.array([0.7]),
        dt=dts,
        method="bs3",
        exact=lambda t0, y0, h: y0 * math.exp(-0.7 * h),
    )
    assert report.slope == pytest.approx(4.0, abs=0.3) and report.slope_embedded == pytest.approx(3.0, abs=0.3)
    # |ratio − 1| = O(h): it halves with the step
    gap = np.abs(report.ratio - 1.0)
    assert np.all(gap[1:] / gap[:-1] == pytest.approx(0.5, abs=0.1)) and gap[-1] < 0.01


def test_bad_input_is_named():
    f, t, y, p = _problem("lotka_volterra")
    with pytest.raises(ValueError, match="method"):
        check_error_estimate(f, t, y, p, method="rk4")
    with pytest.raises(ValueError, match="dt"):
        check_error_estimate(f, t, y, p, dt=[0.1, np.nan])
    with pytest.raises(ValueError, match="dt"):
        check_error_estimate(f, t, y, p, dt=0.0)
    with pytest.raises(ValueError, match="y"):
        check_error_estimate(f, t, np.array([]), p)
    with pytest.raises(ValueError, match="t must be finite"):
        check_error_estimate(f, np.inf, y, p)
    with pytest.raises(ValueError, match="fit_points"):
        check_error_estimate(f, t, y, p, fit_points=1)
    with pytest.raises(TypeError, match="exact"):
        check_sde_error_estimate(f, f, None, 0.0, y, p)


@njit(cache=True)
def gbm_drift(t, x, p, out):
    for i in range(x.size):
        out[i] = p[0] * x[i]


@njit(cache=True)
def gbm_diffusion(t, x, p, out):
    for i in range(x.size):
        out[i] = p[1] * x[i]


@pytest.mark.parametrize("method", ["sriw1", "sosri"])
def test_sri_one_step_errors_in_distribution(method):
    mu, sigma = 1.5, 0.5

    def exact(t, x, h, dW):
        return x * np.exp((mu - 0.5 * sigma**2) * h + sigma * dW)

    report = check_sde_error_estimate(
        gbm_drift,
        gbm_diffusion,
        exact,
        0.0,
        np.array([1.0, 0.5]),
        np.array([mu, sigma]),
        method=method,
        samples=3000,
        rng=7,
    )
    # strong order 1.5: local mean-square error O(h²)
    assert report.slope_ms == pytest.approx(2.0, abs=0.3)
    assert np.all(report.standard_error < 0.2 * report.ms_error**2)  # the estimates are well resolved
    # the finding: StochasticDiffEq's SRI error vector (δ·E1 + E2) is a first-order size heuristic, not an
    # estimate of the local error (E1 = h Σ f(H0_i) is O(h)); it overestimates by a factor growing like 1/h
    assert report.slope_error_vector == pytest.approx(1.0, abs=0.3)
    assert np.all(np.diff(report.ratio) > 0) and report.ratio[-1] > 10
    # seeded: the same seed, the same report
    again = check_sde_error_estimate(
        gbm_drift,
        gbm_diffusion,
        exact,
        0.0,
        np.array([1.0, 0.5]),
        np.array([mu, sigma]),
        method=method,
        samples=3000,
        rng=7,
    )
    np.testing.assert_array_equal(report.ms_error, again.ms_error)
    assert "strong" in str(report)
