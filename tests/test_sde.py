"""SDE core: SRI tableaus, strong/weak convergence, RSwM3 Brownian paths, replay, discrete adjoint."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from scipy import stats

from lrnde_np.sde import (
    EULER_MARUYAMA,
    SOSRI,
    SOSRI2,
    SRIW1,
    RSwM3,
    SDEPath,
    sde_discrete_adjoint,
    solve_sde,
    sri_order_conditions,
)
from lrnde_np.sde.solve import sde_controller_defaults

# ----------------------------------------------------------------------------------------------------------
# Problems (elementwise, so a large diagonal state is a batch of independent scalar SDEs).


@njit(cache=True)
def lin_drift(t, x, p, out):  # GBM drift μx
    for i in range(x.size):
        out[i] = p[0] * x[i]


@njit(cache=True)
def lin_diff(t, x, p, out):  # GBM diffusion σx
    for i in range(x.size):
        out[i] = p[1] * x[i]


@njit(cache=True)
def ou_drift(t, x, p, out):  # θ(μ - x)
    for i in range(x.size):
        out[i] = p[0] * (p[1] - x[i])


@njit(cache=True)
def ou_diff(t, x, p, out):  # σ
    for i in range(x.size):
        out[i] = p[2]


@njit(cache=True)
def zero_drift(t, x, p, out):
    out[:] = 0.0


# A coupled nonlinear pair with hand-written VJPs (for the adjoint):
#   f_i = p0 tanh(x_{i+1}) - p1 x_i + p2 sin(t),   g_i = p3 cos(x_i) + p4 x_{i+1}   (indices mod n)
@njit(cache=True)
def nl_drift(t, x, p, out):
    n = x.size
    for i in range(n):
        out[i] = p[0] * np.tanh(x[(i + 1) % n]) - p[1] * x[i] + p[2] * np.sin(t)


@njit(cache=True)
def nl_drift_vjp(t, x, p, a, oy, op):
    n = x.size
    oy[:] = 0.0
    op[:] = 0.0
    for i in range(n):
        th = np.tanh(x[(i + 1) % n])
        oy[(i + 1) % n] += a[i] * p[0] * (1.0 - th * th)
        oy[i] -= a[i] * p[1]
        op[0] += a[i] * th
        op[1] -= a[i] * x[i]
        op[2] += a[i] * np.sin(t)


@njit(cache=True)
def nl_diff(t, x, p, out):
    n = x.size
    for i in range(n):
        out[i] = p[3] * np.cos(x[i]) + p[4] * x[(i + 1) % n]


@njit(cache=True)
def nl_diff_vjp(t, x, p, a, oy, op):
    n = x.size
    oy[:] = 0.0
    op[:] = 0.0
    for i in range(n):
        oy[i] -= a[i] * p[3] * np.sin(x[i])
        oy[(i + 1) % n] += a[i] * p[4]
        op[3] += a[i] * np.cos(x[i])
        op[4] += a[i] * x[(i + 1) % n]


NL_P = np.array([0.8, 0.5, 0.3, 0.4, 0.2])


# ----------------------------------------------------------------------------------------------------------
# Tableaus


@pytest.mark.parametrize(
    "tab, tol",
    [
        (SRIW1, 1e-13),
        (SOSRI, 1e-13),
        # SOSRI2's coefficients are published to ~16 significant digits; condition 25 (½β1ᵀA1B0e + ⅓β3ᵀA1B0e)
        # cancels terms of size ~1 and leaves 1.2e-13 (solver-facts §4.7 reports the same), so 2e-13 is the
        # tightest bound that holds.
        (SOSRI2, 2e-13),
    ],
)
def test_sri_order_conditions(tab, tol):
    res = sri_order_conditions(tab)
    assert res.shape == (25,)
    assert np.max(np.abs(res)) < tol


def test_order_conditions_detect_a_typo():
    # The check must be able to fail: perturb one coefficient in the last digit range.
    from dataclasses import replace

    bad = np.array(SOSRI.beta4)
    bad[1] += 1e-9
    assert np.max(np.abs(sri_order_conditions(replace(SOSRI, beta4=bad)))) > 1e-10


def test_tableaus_are_read_only_and_controller_defaults():
    for tab in (SRIW1, SOSRI, SOSRI2, EULER_MARUYAMA):
        for name in ("c0", "c1", "A0", "A1", "B0", "B1", "alpha", "beta1", "beta2", "beta3", "beta4"):
            with pytest.raises(ValueError):
                getattr(tab, name)[0] = 1.0
    assert SRIW1.delta == pytest.approx(1 / 6) and SOSRI.delta == 1.0 and SOSRI2.delta == 1.0
    c = sde_controller_defaults(1.5)
    assert c["beta1"] == pytest.approx(7 / 15) and c["beta2"] == pytest.approx(4 / 15)
    assert c["qmax"] == pytest.approx(9 / 8) and c["qmin"] == pytest.approx(1 / 5) and c["gamma"] == 0.9


# ----------------------------------------------------------------------------------------------------------
# Convergence


def _strong_errors(method, n_steps, mu=1.0, sig=0.5, n_paths=2000, seed=7):
    x0 = np.ones(n_paths)
    errs = []
    for k in n_steps:
        sol = solve_sde(
            lin_drift,
            lin_diff,
            (0.0, 1.0),
            x0,
            np.array([mu, sig]),
            method=method,
            dt=1.0 / k,
            adaptive=False,
            seed=seed,
            saveat=[1.0],
            record_steps=True,
        )
        assert sol.success and len(sol.steps) == k
        WT = sol.steps.dW.sum(axis=0)  # the path the solver used
        exact = x0 * np.exp((mu - 0.5 * sig**2) * 1.0 + sig * WT)
        errs.append(np.mean(np.abs(sol.x[-1] - exact)))
    return np.array(errs)


@pytest.mark.parametrize("method", ["sriw1", "sosri", "sosri2"])
def test_strong_order_sri(method):
    n_steps = np.array([16, 32, 64, 128, 256])
    errs = _strong_errors(method, n_steps)
    slope = np.polyfit(np.log(1.0 / n_steps), np.log(errs), 1)[0]
    assert abs(slope - 1.5) < 0.15, (slope, errs)


def test_strong_order_euler_maruyama():
    n_steps = np.array([16, 64, 256, 1024])
    errs = _strong_errors("euler_maruyama", n_steps)
    slope = np.polyfit(np.log(1.0 / n_steps), np.log(errs), 1)[0]
    assert abs(slope - 0.5) < 0.1, (slope, errs)


@pytest.mark.parametrize("method", ["sosri", "sriw1"])
def test_weak_moments_ornstein_uhlenbeck_adaptive(method):
    theta, mu, sig, x0v, T, N = 1.0, 0.5, 0.8, 2.0, 1.0, 4000
    sol = solve_sde(
        ou_drift, ou_diff, (0.0, T), np.full(N, x0v), np.array([theta, mu, sig]), method=method, seed=11, saveat=[T]
    )
    assert sol.success
    xT = sol.x[-1]
    mean_exact = mu + (x0v - mu) * np.exp(-theta * T)
    var_exact = sig**2 / (2 * theta) * (1 - np.exp(-2 * theta * T))
    se_mean = np.sqrt(var_exact / N)
    se_var = var_exact * np.sqrt(2.0 / (N - 1))
    assert abs(xT.mean() - mean_exact) < 4 * se_mean
    assert abs(xT.var(ddof=1) - var_exact) < 4 * se_var


# ----------------------------------------------------------------------------------------------------------
# RSwM3


def test_rswm3_accepted_increments_are_standard_normal_under_many_rejections():
    # Driftless GBM with strong noise: the error estimate is pure noise, and a more aggressive qmax than the
    # SDE default 9/8 (which barely lets steps grow) makes about one attempt in four a rejection.
    zs, rejected, accepted = [], 0, 0
    for seed in range(10):
        sol = solve_sde(
            zero_drift,
            lin_diff,
            (0.0, 1.0),
            np.ones(1),
            np.array([0.0, 3.0]),
            rtol=1e-3,
            atol=1e-3,
            seed=seed,
            record_steps=True,
            controller=dict(qmax=10.0),
        )
        assert sol.success
        zs.append(sol.steps.dW[:, 0] / np.sqrt(sol.steps.dt))
        zs.append(sol.steps.dZ[:, 0] / np.sqrt(sol.steps.dt))
        rejected += sol.stats["rejected"]
        accepted += sol.stats["accepted"]
    assert rejected > 0.15 * (accepted + rejected)
    z = np.concatenate(zs)
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_same_seed_same_path_at_save_times_for_different_rejection_patterns():
    saveat = [0.25, 0.5, 0.75, 1.0]
    runs = []
    for tol in (1e-2, 1e-4):
        sol = solve_sde(
            zero_drift,
            lin_diff,
            (0.0, 1.0),
            np.ones(3),
            np.array([0.0, 3.0]),
            rtol=tol,
            atol=tol,
            seed=5,
            saveat=saveat,
            record_steps=True,
            controller=dict(qmax=10.0),
        )
        assert sol.success and sol.stats["rejected"] > 0
        np.testing.assert_array_equal(sol.t, saveat)
        runs.append((sol, sol.path.W_at(saveat), sol.path.Z_at(saveat)))
    (s1, W1, Z1), (s2, W2, Z2) = runs
    assert len(s1.steps) != len(s2.steps)
    np.testing.assert_allclose(W1, W2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Z1, Z2, rtol=0, atol=1e-12)
    # A different seed gives a different path.
    s3 = solve_sde(
        zero_drift, lin_diff, (0.0, 1.0), np.ones(3), np.array([0.0, 3.0]), seed=6, saveat=saveat, record_steps=True
    )
    assert np.abs(s3.path.W_at(saveat) - W1).max() > 1e-3


def test_rswm3_handle_keeps_future_information():
    rng = np.random.default_rng(3)
    b = RSwM3(2, rng, 0.0, anchors=[1.0])
    dW_full, _ = b.propose(0.5)
    dW_short, _ = b.reject(0.2)
    # The rejected part of the attempt is not forgotten: re-attempting the same interval gives it back.
    b.accept()
    dW_rest, _ = b.propose(0.3)
    np.testing.assert_allclose(dW_short + dW_rest, dW_full, atol=1e-14)
    b.accept()
    b.propose(0.5)
    b.accept()
    assert b.t == pytest.approx(1.0)
    # W(1) is the anchor, independent of how the interval was cut.
    b2 = RSwM3(2, np.random.default_rng(3), 0.0, anchors=[1.0])
    b2.propose(1.0)
    b2.accept()
    np.testing.assert_allclose(b.W, b2.W, atol=1e-14)


# ----------------------------------------------------------------------------------------------------------
# Replay and adjoint


def test_replay_reproduces_solution_exactly():
    sol = solve_sde(
        nl_drift, nl_diff, (0.0, 1.0), np.array([0.3, -0.5, 1.0]), NL_P, seed=2, record_steps=True, saveat=[0.5, 1.0]
    )
    rep = solve_sde(
        nl_drift,
        nl_diff,
        (0.0, 1.0),
        np.array([0.3, -0.5, 1.0]),
        NL_P,
        path=sol.path,
        record_steps=True,
        saveat=[0.5, 1.0],
    )
    np.testing.assert_array_equal(rep.x, sol.x)
    np.testing.assert_array_equal(rep.steps.error_estimate, sol.steps.error_estimate)
    np.testing.assert_array_equal(rep.steps.dt, sol.steps.dt)


@pytest.mark.parametrize(
    "method, noise, saveat",
    [
        ("sosri", "diagonal", [0.25, 0.5, 1.0]),
        ("sriw1", "scalar", [0.0, 0.25, 0.5, 1.0]),
        ("sosri2", "diagonal", [0.25, 0.5, 1.0]),
        ("euler_maruyama", "diagonal", [0.25, 0.5, 1.0]),
        ("sosri", "diagonal", None),  # every step saved
    ],
)
def test_discrete_adjoint_matches_finite_differences(method, noise, saveat):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=3)
    kw = dict(method=method, noise=noise, saveat=saveat)
    if method == "euler_maruyama":
        kw["dt"] = 0.01
    sol = solve_sde(nl_drift, nl_diff, (0.0, 1.0), x0, NL_P, seed=3, record_steps=True, **kw)
    assert sol.success
    gx = rng.normal(size=sol.x.shape)
    gE = rng.normal(size=len(sol.steps))
    res = sde_discrete_adjoint(sol, nl_drift_vjp, nl_diff_vjp, gx, gE)
    path = sol.path
    kw.pop("dt", None)

    def loss(x0_, p_):
        s = solve_sde(nl_drift, nl_diff, (0.0, 1.0), x0_, p_, path=path, record_steps=True, **kw)
        return np.sum(gx * s.x) + np.sum(gE * s.steps.error_estimate)

    eps = 1e-6
    fd_x = np.array([(loss(x0 + eps * e, NL_P) - loss(x0 - eps * e, NL_P)) / (2 * eps) for e in np.eye(3)])
    fd_p = np.array([(loss(x0, NL_P + eps * e) - loss(x0, NL_P - eps * e)) / (2 * eps) for e in np.eye(5)])
    np.testing.assert_allclose(res.grad_y0, fd_x, rtol=1e-6, atol=1e-6 * np.abs(fd_x).max())
    np.testing.assert_allclose(res.grad_p, fd_p, rtol=1e-6, atol=1e-6 * np.abs(fd_p).max())


# ----------------------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    method=st.sampled_from(["sosri", "sosri2", "sriw1"]),
    scale=st.floats(0.1, 1.5),
)
def test_one_step_vjp_matches_finite_differences(n, seed, method, scale):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    p = NL_P * scale
    h = 0.1
    path = SDEPath(
        t=np.array([0.0, h]), dW=rng.normal(size=(1, n)) * np.sqrt(h), dZ=rng.normal(size=(1, n)) * np.sqrt(h)
    )
    sol = solve_sde(nl_drift, nl_diff, (0.0, h), x0, p, method=method, path=path, record_steps=True, saveat=[h])
    a = rng.normal(size=(1, n))
    res = sde_discrete_adjoint(sol, nl_drift_vjp, nl_diff_vjp, a)

    def loss(x):
        return float(np.sum(a * solve_sde(nl_drift, nl_diff, (0.0, h), x, p, method=method, path=path, saveat=[h]).x))

    eps = 1e-6
    fd = np.array([(loss(x0 + eps * e) - loss(x0 - eps * e)) / (2 * eps) for e in np.eye(n)])
    np.testing.assert_allclose(res.grad_y0, fd, rtol=1e-5, atol=1e-7)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 10**6),
    mu=st.floats(-1.0, 1.0),
    sig=st.floats(0.05, 1.0),
    tol=st.sampled_from([1e-1, 1e-2, 1e-3]),
)
def test_solution_properties(n, seed, mu, sig, tol):
    x0 = np.linspace(0.5, 1.5, n)
    saveat = [0.3, 0.7, 1.0]
    sol = solve_sde(
        lin_drift,
        lin_diff,
        (0.0, 1.0),
        x0,
        np.array([mu, sig]),
        seed=seed,
        rtol=tol,
        atol=tol,
        saveat=saveat,
        record_steps=True,
    )
    assert sol.success
    np.testing.assert_array_equal(sol.t, saveat)  # save times are hit exactly
    st_ = sol.steps
    assert st_.t[0] == 0.0 and sol.t_end == 1.0
    np.testing.assert_array_equal(st_.t[1:], st_.t[:-1] + st_.dt[:-1])
    assert np.all(st_.error_estimate <= 1.0)  # only accepted steps are recorded
    np.testing.assert_array_equal(sol.x[-1], st_.x[-1])
    # GBM stays positive with these step sizes and keeps x_i / x_j only through noise: with scalar noise and
    # equal initial values all components coincide.
    sc = solve_sde(
        lin_drift,
        lin_diff,
        (0.0, 1.0),
        np.full(n, 0.7),
        np.array([mu, sig]),
        seed=seed,
        rtol=tol,
        atol=tol,
        noise="scalar",
        record_steps=True,
    )
    assert sc.steps.dW.shape[1] == 1
    assert np.all(sc.x == sc.x[:, :1])


def test_scalar_noise_matches_diagonal_with_equal_increments():
    # A scalar-noise solve equals a diagonal-noise replay with the single increment copied to every component.
    x0 = np.array([0.2, 0.9])
    sol = solve_sde(nl_drift, nl_diff, (0.0, 1.0), x0, NL_P, seed=4, noise="scalar", record_steps=True)
    pth = sol.path
    diag = solve_sde(
        nl_drift,
        nl_diff,
        (0.0, 1.0),
        x0,
        NL_P,
        noise="diagonal",
        record_steps=True,
        path=SDEPath(pth.t, np.repeat(pth.dW, 2, axis=1), np.repeat(pth.dZ, 2, axis=1)),
    )
    np.testing.assert_allclose(diag.x[-1], sol.x[-1], rtol=1e-14, atol=1e-14)


def test_path_mode_on_a_given_grid():
    # Euler–Maruyama on a user grid is the explicit recursion x += μx dt + σx dW.
    rng = np.random.default_rng(9)
    t = np.linspace(0.0, 1.0, 11)
    dW = rng.normal(size=(10, 1)) * np.sqrt(0.1)
    sol = solve_sde(
        lin_drift, lin_diff, (0.0, 1.0), np.array([1.0]), np.array([0.4, 0.6]), method="euler_maruyama", path=(t, dW)
    )
    x = 1.0
    for k in range(10):
        x = x + 0.4 * x * 0.1 + 0.6 * x * dW[k, 0]
    assert sol.x[-1, 0] == pytest.approx(x, rel=1e-13)
    assert sol.t.size == 11


def test_fixed_seed_is_deterministic_and_rng_is_consumed():
    a = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, seed=1)
    b = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, seed=1)
    np.testing.assert_array_equal(a.x, b.x)
    c = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, seed=2)
    assert not np.array_equal(a.x[-1], c.x[-1])
    rng = np.random.default_rng(1)
    d = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, rng=rng)
    e = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, rng=rng)
    assert not np.array_equal(d.x[-1], e.x[-1])  # the Generator advanced
    f = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(d.x, f.x)


def test_kernel_generator_normals():
    from lrnde_np.sde.brownian import normals, rng_state

    z = normals(rng_state(seed=123), 50_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 4 / np.sqrt(z.size) and abs(z.var() - 1) < 4 * np.sqrt(2 / z.size)
    z2 = normals(rng_state(seed=124), 50_000)
    assert abs(np.corrcoef(z, z2)[0, 1]) < 4 / np.sqrt(z.size)
    np.testing.assert_array_equal(normals(rng_state(seed=123), 10), z[:10])


@njit(cache=True)
def blowup_drift(t, x, p, out):  # x' = p0 x² blows up at t = 1/(p0 x0)
    for i in range(x.size):
        out[i] = p[0] * x[i] * x[i]


def test_blow_up_stops_with_a_status():
    sol = solve_sde(blowup_drift, lin_diff, (0.0, 1.0), np.ones(2), np.array([10.0, 0.5]), seed=1)
    assert sol.status in (2, 3) and not sol.success and sol.t_end < 0.2
    em = solve_sde(
        blowup_drift, lin_diff, (0.0, 1.0), np.ones(2), np.array([10.0, 0.5]), seed=1, method="euler_maruyama", dt=0.01
    )
    assert em.status == 3 and "non-finite" in em.message


def test_max_steps_status():
    sol = solve_sde(ou_drift, ou_diff, (0.0, 1.0), np.ones(2), np.array([1.0, 0.0, 0.5]), seed=0, max_steps=3)
    assert sol.status == 1 and not sol.success and "max_steps" in sol.message


# ----------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(t_span=(1.0, 0.0)), ValueError, "t_span"),
        (dict(t_span=(0.0, np.nan)), ValueError, "t_span"),
        (dict(x0=np.ones((2, 2))), ValueError, "x0"),
        (dict(x0=np.array([1.0, np.inf])), ValueError, "x0"),
        (dict(p=np.array([np.nan, 1.0])), ValueError, "p"),
        (dict(rtol=-1.0), ValueError, "rtol"),
        (dict(atol=np.ones(3)), ValueError, "atol"),
        (dict(noise="general"), ValueError, "noise"),
        (dict(method="srk9"), ValueError, "method"),
        (dict(method=3), TypeError, "method"),
        (dict(method="euler_maruyama"), ValueError, "dt"),
        (dict(method="euler_maruyama", adaptive=True, dt=0.1), ValueError, "method"),
        (dict(saveat=[0.5, 2.0]), ValueError, "saveat"),
        (dict(saveat=[0.8, 0.5]), ValueError, "saveat"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=1, rng=np.random.default_rng(0)), ValueError, "seed"),
        (dict(rng=42), TypeError, "rng"),
        (dict(max_steps=0), ValueError, "max_steps"),
        (dict(dt=-0.1), ValueError, "dt"),
        (dict(controller=dict(qmaxx=2.0)), ValueError, "controller"),
        (dict(f=3), TypeError, "f"),
        (dict(g="g"), TypeError, "g"),
        (dict(path=(np.array([0.0, 0.5]), np.zeros((1, 2)), np.zeros((1, 2)))), ValueError, "path.t"),
        (dict(path=(np.array([0.0, 1.0]), np.zeros((1, 3)), np.zeros((1, 2)))), ValueError, "path.dW"),
        (dict(path=(np.array([0.0, 1.0]), np.zeros((1, 2)))), ValueError, "path.dZ"),
        (dict(path=(np.array([0.0, 1.0]), np.zeros((1, 2)), np.zeros((1, 2))), saveat=[0.5]), ValueError, "saveat"),
        (dict(path=(np.array([0.0, 1.0]), np.zeros((1, 2)), np.zeros((1, 2))), adaptive=True), ValueError, "adaptive"),
        (dict(path=[1, 2, 3, 4]), TypeError, "path"),
    ],
)
def test_bad_input(kwargs, exc, word):
    args = dict(f=lin_drift, g=lin_diff, t_span=(0.0, 1.0), x0=np.ones(2), p=np.array([0.1, 0.2]))
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        solve_sde(**args)


def test_adjoint_bad_input():
    sol = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, seed=0)
    with pytest.raises(ValueError, match="record_steps"):
        sde_discrete_adjoint(sol, nl_drift_vjp, nl_diff_vjp, np.zeros(sol.x.shape))
    sol = solve_sde(nl_drift, nl_diff, (0.0, 1.0), np.ones(2), NL_P, seed=0, record_steps=True)
    with pytest.raises(ValueError, match="grad_x"):
        sde_discrete_adjoint(sol, nl_drift_vjp, nl_diff_vjp, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="grad_E"):
        sde_discrete_adjoint(sol, nl_drift_vjp, nl_diff_vjp, None, np.zeros(1 + len(sol.steps)))
    with pytest.raises(TypeError, match="f_vjp"):
        sde_discrete_adjoint(sol, 3, nl_diff_vjp)


# ----------------------------------------------------------------------------------------------------------
# Local regularizer


@pytest.mark.parametrize("method, noise", [("sosri", "diagonal"), ("sriw1", "scalar"), ("sosri2", "diagonal")])
def test_sde_local_regularizer_gradient_matches_finite_differences(method, noise):
    from lrnde_np.sde import sde_frozen_step_regularizer, sde_local_regularizer

    x_reg = np.array([0.4, -1.1, 0.7, 0.2])
    reg = sde_local_regularizer(
        nl_drift,
        nl_diff,
        nl_drift_vjp,
        nl_diff_vjp,
        0.3,
        1.0,
        x_reg,
        NL_P,
        np.random.default_rng(8),
        method=method,
        noise=noise,
    )
    assert 0.0 < reg.dt <= 0.7 and reg.value == pytest.approx(reg.error_estimate * reg.dt, rel=1e-14)
    assert reg.dW.shape == ((4,) if noise == "diagonal" else (1,))
    # Same Generator seed, same noise and value.
    again = sde_local_regularizer(
        nl_drift,
        nl_diff,
        None,
        None,
        0.3,
        1.0,
        x_reg,
        NL_P,
        np.random.default_rng(8),
        method=method,
        noise=noise,
        compute_grad=False,
    )
    assert again.value == reg.value and again.grad_p is None

    def R(p_):  # noise and dt frozen, X(t_reg) constant
        return sde_frozen_step_regularizer(
            nl_drift,
            nl_diff,
            None,
            None,
            0.3,
            reg.dt,
            x_reg,
            p_,
            reg.dW,
            reg.dZ,
            method=method,
            noise=noise,
            compute_grad=False,
        )[0]

    assert R(NL_P) == reg.value
    eps = 1e-6
    fd = np.array([(R(NL_P + eps * e) - R(NL_P - eps * e)) / (2 * eps) for e in np.eye(NL_P.size)])
    np.testing.assert_allclose(reg.grad_p, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_sde_local_regularizer_bad_input():
    from lrnde_np.sde import sde_local_regularizer

    args = (nl_drift, nl_diff, nl_drift_vjp, nl_diff_vjp, 0.3, 1.0, np.ones(2), NL_P, np.random.default_rng(0))
    with pytest.raises(ValueError, match="t_reg"):
        sde_local_regularizer(*args[:4], 1.0, 1.0, *args[6:])
    with pytest.raises(TypeError, match="rng"):
        sde_local_regularizer(*args[:8], 3)
    with pytest.raises(ValueError, match="method"):
        sde_local_regularizer(*args, method="euler_maruyama")
    with pytest.raises(ValueError, match="f_vjp"):
        sde_local_regularizer(nl_drift, nl_diff, None, None, *args[4:])
    with pytest.raises(ValueError, match="x_reg"):
        sde_local_regularizer(*args[:6], np.ones((2, 2)), *args[7:])


def test_generic_sriw1_step_equals_the_hand_written_step():
    # solver-facts §4.4: StochasticDiffEq's specialised SRIW1 step, transcribed independently of the tableau.
    rng = np.random.default_rng(12)
    n, h, t = 3, 0.07, 0.4
    u = rng.normal(size=n)
    dW = rng.normal(size=n) * np.sqrt(h)
    dZ = rng.normal(size=n) * np.sqrt(h)

    def F(tt, x):
        out = np.empty(n)
        nl_drift(tt, x, NL_P, out)
        return out

    def G(tt, x):
        out = np.empty(n)
        nl_diff(tt, x, NL_P, out)
        return out

    sq = np.sqrt(h)
    chi1 = (dW**2 - h) / (2 * sq)
    chi2 = (dW + dZ / np.sqrt(3)) / 2
    chi3 = (dW**3 - 3 * h * dW) / (6 * h)
    fH01 = h * F(t, u)
    g1 = G(t, u)
    H0 = u + 3 * (fH01 / 4 + chi2 * g1 / 2)
    H11 = u + fH01 / 4 + sq * g1 / 2
    H12 = u + fH01 - sq * g1
    g2 = G(t + h / 4, H11)
    g3 = G(t + h, H12)
    H13 = u + fH01 / 4 + sq * (-5 * g1 + 3 * g2 + g3 / 2)
    g4 = G(t + h / 4, H13)
    fH02 = h * F(t + 3 * h / 4, H0)
    E2 = chi2 * (2 * g1 - 4 * g2 / 3 - 2 * g3 / 3) + chi3 * (-2 * g1 + 5 * g2 / 3 - 2 * g3 / 3 + g4)
    u_new = u + (fH01 + 2 * fH02) / 3 + dW * (-g1 + 4 * g2 / 3 + 2 * g3 / 3) + chi1 * (-g1 + 4 * g2 / 3 - g3 / 3) + E2
    E1 = fH01 + fH02
    rtol, atol = 1e-2, 1e-3
    E_est = np.sqrt(np.mean(((E1 / 6 + E2) / (atol + np.maximum(np.abs(u), np.abs(u_new)) * rtol)) ** 2))

    sol = solve_sde(
        nl_drift,
        nl_diff,
        (t, t + h),
        u,
        NL_P,
        method="sriw1",
        rtol=rtol,
        atol=atol,
        path=SDEPath(np.array([t, t + h]), dW[None], dZ[None]),
        record_steps=True,
    )
    np.testing.assert_allclose(sol.x[-1], u_new, rtol=1e-14, atol=1e-14)
    assert sol.steps.error_estimate[0] == pytest.approx(E_est, rel=1e-13)
    assert sol.stats["nge"] == 4 and sol.stats["nfe"] == 2  # F_3 = f(t, u) = F_1 is reused, as by hand
