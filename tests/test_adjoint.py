"""Adjoints of ODE solves: the discrete adjoint and the continuous ones (backsolve, interpolating, quadrature).

* The discrete adjoint is the exact gradient of the computed solution with its step sequence held fixed, so it
  is checked against a *replay* of the recorded steps (t_j, dt_j) written here in plain NumPy — the RK stages
  from the tableau, dense-output save points from ``sol.save_step``/``sol.save_theta`` and
  ``tableau.dense_weights`` — differentiated by central finite differences (1e-6, norm-wise relative) and, for
  the same replay on the NumPy MLP twin of ``lrnde_np.nn.reference``, by autograd (1e-10 relative).
* The continuous adjoints approximate the gradient of the exact flow.  They are checked against finite
  differences of a tight forward solve (rtol = atol = 1e-12) on an MLP field and against the exact gradient
  of a linear ODE y' = Ay (from expm and its Fréchet derivative): the error is at most C·rtol with C = 100
  when the forward and the adjoint solves use the same rtol = atol, and it converges — at rtol 1e-8 it is at
  least 50 times smaller than at rtol 1e-5 (a 1000x tolerance decrease).
"""

import tracemalloc

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from scipy.linalg import expm, expm_frechet

from lrnde_np import solve_ode
from lrnde_np.adjoint import backsolve_adjoint, discrete_adjoint, interpolating_adjoint, quadrature_adjoint
from lrnde_np.nn import MLP
from lrnde_np.nn.reference import reference_forward
from lrnde_np.tableaus import get_tableau

FD_ACTIVATIONS = ["tanh", "softplus", "swish", "identity"]  # smooth: finite differences apply
ALL_ACTIVATIONS = FD_ACTIVATIONS + ["relu"]  # relu (kinks): checked against autograd only


# ---------------------------------------------------------------------------------------------------------
# The replay: a solve along a fixed, recorded step sequence, in plain (autograd-)NumPy.


def replay(f, tab, y0, p, step_t, step_dt, save_step, save_theta, xp=np, rtol=None, atol=None):
    """Saved states (one row per save point) of the explicit RK solve along the given steps.

    ``f(t, y, p)`` returns dy/dt as a new flat array.  Stage arguments Y_i = y + h Σ_j A_ij k_j, k_i =
    f(t + c_i h, Y_i); the tableau is in FSAL form, so y_{j+1} = Y_s and k_s is the next step's k_1.  A save
    point of step j at θ < 1 is the dense output y_j + h Σ_i b_i(θ) k_i; θ = 1 is y_{j+1}; step -1 is y0.
    With ``rtol``/``atol`` it also returns the per-step E_est (scaled RMS of err = h Σ btilde_i k_i) and the
    stiffness estimate ‖k_sj − k_si‖ / ‖Y_sj − Y_si‖ (0 where the tableau has no stiffness pair).
    """
    A, c, btilde = tab.A, tab.c, tab.btilde
    s = A.shape[0]
    saved = [None] * len(save_step)
    for r, j in enumerate(save_step):
        if j < 0:
            saved[r] = y0
    by_step = {}
    for r, j in enumerate(save_step):
        by_step.setdefault(int(j), []).append(r)
    E, S = [], []
    y = y0
    k1 = None
    for j, (t, h) in enumerate(zip(step_t, step_dt, strict=True)):
        K = [f(t, y, p) if k1 is None else k1]
        Y = [y]
        for i in range(1, s):
            acc = 0.0
            for m in range(i):
                if A[i, m] != 0.0:
                    acc = acc + A[i, m] * K[m]
            Y.append(y + h * acc)
            K.append(f(t + c[i] * h, Y[i], p))
        y_new = Y[s - 1]
        for r in by_step.get(j, []):
            theta = save_theta[r]
            if theta == 1.0:
                saved[r] = y_new
            else:
                w = tab.dense_weights(theta)
                saved[r] = y + h * sum(w[i] * K[i] for i in range(s) if w[i] != 0.0)
        if rtol is not None:
            err = h * sum(btilde[i] * K[i] for i in range(s) if btilde[i] != 0.0)
            sc = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
            E.append(xp.sqrt(xp.mean((err / sc) ** 2)))
            if tab.stiffness_pair:
                si, sj = tab.stiffness_pair
                S.append(xp.sqrt(xp.sum((K[sj] - K[si]) ** 2) / xp.sum((Y[sj] - Y[si]) ** 2)))
            else:
                S.append(0.0)
        y = y_new
        k1 = K[s - 1]
    out = xp.stack(saved) if saved else xp.zeros((0, y0.size))
    return (out, E, S) if rtol is not None else out


def compiled_field(mlp):
    return lambda t, y, p: mlp.forward(y, p, t)


def twin_field(mlp):
    dim = mlp.input_dim
    return lambda t, y, p: anp.reshape(reference_forward(mlp, anp.reshape(y, (-1, dim)), p, t, anp), (-1,))


def replay_sol(f, sol, y0, p, xp=np):
    return replay(f, sol.method, y0, p, sol.steps.t, sol.steps.dt, sol.save_step, sol.save_theta, xp)


def fd4(fun, x, v, h):
    """Fourth-order central difference of the scalar fun at x along v."""
    return (8.0 * (fun(x + h * v) - fun(x - h * v)) - (fun(x + 2 * h * v) - fun(x - 2 * h * v))) / (12.0 * h)


def rel_err(a, b):
    """Norm-wise relative error of a with respect to the reference b."""
    a, b = np.ravel(a), np.ravel(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


# ---------------------------------------------------------------------------------------------------------
# Random discrete-adjoint problems


@st.composite
def discrete_problems(draw, activations=FD_ACTIVATIONS):
    n_hidden = draw(st.integers(1, 3))
    dim = draw(st.integers(1, 3))
    widths = [dim] + [draw(st.integers(1, 8)) for _ in range(n_hidden)] + [dim]
    acts = [draw(st.sampled_from(activations)) for _ in range(n_hidden)]
    time_input = draw(st.sampled_from(["none", "all"]))
    batch = draw(st.integers(1, 3))
    method = draw(st.sampled_from(["tsit5", "dp5", "bs3", "rk4", "euler"]))
    t0 = draw(st.floats(-1.0, 1.0))
    length = draw(st.floats(0.2, 1.5))
    backwards = draw(st.booleans())
    t1 = t0 - length if backwards else t0 + length
    dense_saves = draw(st.booleans())
    fracs = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5)))
    n_fixed = draw(st.floats(3.0, 15.0))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    mlp = MLP(widths, acts, time_input=time_input)
    p = mlp.init_params(rng) + 0.1 * rng.normal(size=mlp.n_params)
    y0 = rng.normal(size=batch * dim)
    saveat = [t0 + f * (t1 - t0) for f in fracs] + [t1] if dense_saves else None
    tab = get_tableau(method)
    opts = dict(method=method, saveat=saveat, record_states=True)
    if tab.adaptive:
        opts.update(rtol=1e-5, atol=1e-7)
    else:
        opts.update(dt=length / n_fixed)
    sol = solve_ode(mlp.rhs, (t0, t1), y0, p, **opts)
    assert sol.success
    W = rng.normal(size=sol.y.shape)
    return mlp, p, y0, sol, W, rng


@settings(max_examples=25, deadline=None)
@given(discrete_problems())
def test_discrete_adjoint_matches_finite_differences_of_the_replayed_solve(problem):
    mlp, p, y0, sol, W, rng = problem
    f = compiled_field(mlp)
    # The replay reproduces the solve (same arithmetic up to the summation order).
    assert rel_err(replay_sol(f, sol, y0, p), sol.y) < 1e-12
    res = discrete_adjoint(sol, mlp.vjp, grad_y=W)
    assert res.nfe_backward == sol.method.n_stages * len(sol.steps)

    def loss(y_init, params):
        return float(np.sum(W * replay_sol(f, sol, y_init, params)))

    h = 5e-4
    # dL/dy0: every coordinate.
    eye = np.eye(y0.size)
    fd_y0 = np.array([fd4(lambda y: loss(y, p), y0, eye[i], h) for i in range(y0.size)])
    assert rel_err(res.grad_y0, fd_y0) < 1e-6 or np.linalg.norm(res.grad_y0 - fd_y0) < 1e-11
    # dL/dp: three random directions.
    V = rng.normal(size=(3, p.size))
    fd_p = np.array([fd4(lambda q: loss(y0, q), p, v, h) for v in V])
    assert rel_err(V @ res.grad_p, fd_p) < 1e-6 or np.linalg.norm(V @ res.grad_p - fd_p) < 1e-11


@settings(max_examples=20, deadline=None)
@given(discrete_problems(activations=ALL_ACTIVATIONS))
def test_discrete_adjoint_matches_autograd_on_the_numpy_twin_of_the_solve(problem):
    mlp, p, y0, sol, W, _ = problem
    f = twin_field(mlp)
    assert rel_err(replay_sol(f, sol, y0, p, anp), sol.y) < 1e-12

    def loss(y_init, params):
        return anp.sum(W * replay_sol(f, sol, y_init, params, anp))

    g_y0, g_p = autograd.grad(loss, (0, 1))(y0, p)
    res = discrete_adjoint(sol, mlp.vjp, grad_y=W)
    assert rel_err(res.grad_y0, g_y0) < 1e-10
    assert rel_err(res.grad_p, g_p) < 1e-10


def test_discrete_adjoint_covers_dense_output_save_points_inside_steps():
    """The hypothesis cases above include save points inside steps; make sure such a case exists at all."""
    mlp = MLP((2, 5, 2), "tanh")
    rng = np.random.default_rng(3)
    p = mlp.init_params(rng)
    y0 = rng.normal(size=2)
    sol = solve_ode(mlp.rhs, (0.0, 1.0), y0, p, saveat=np.linspace(0.0, 1.0, 9), rtol=1e-4, record_states=True)
    assert np.any((sol.save_theta > 0.0) & (sol.save_theta < 1.0)) and sol.save_step[0] == -1
    W = rng.normal(size=sol.y.shape)
    f = twin_field(mlp)
    g_y0, g_p = autograd.grad(lambda a, b: anp.sum(W * replay_sol(f, sol, a, b, anp)), (0, 1))(y0, p)
    res = discrete_adjoint(sol, mlp.vjp, grad_y=W)
    assert rel_err(res.grad_y0, g_y0) < 1e-10 and rel_err(res.grad_p, g_p) < 1e-10


@pytest.mark.parametrize("method,w_stiff", [("bs3", 0.0), ("dp5", 0.3)])
def test_discrete_adjoint_of_global_regularizer_matches_replayed_finite_differences(method, w_stiff):
    """L = Σ_k W_k·y(t_k) + Σ_j (E_j + w_S S_j)|dt_j| along the frozen step sequence (Tsit5 is covered in
    test_regularize.py): the discrete adjoint with grad_error = |dt|, grad_stiffness = w_S|dt| against finite
    differences of the replay (E_j is a norm of a residual, so the differences are only good to ~1e-5)."""
    mlp = MLP((2, 6, 2), "tanh", time_input="all")
    rng = np.random.default_rng(21)
    p = 1.5 * mlp.init_params(rng)
    y0 = rng.normal(size=4)
    rtol, atol = 1e-5, 1e-7
    sol = solve_ode(
        mlp.rhs, (0.0, 2.0), y0, p, method=method, rtol=rtol, atol=atol, saveat=[0.3, 1.1, 2.0], record_states=True
    )
    W = rng.normal(size=sol.y.shape)
    f = compiled_field(mlp)
    abs_dt = np.abs(sol.steps.dt)
    tab = sol.method
    atol_arr = np.full(y0.size, atol)

    def loss(y_init, params):
        saved, E, S = replay(
            f, tab, y_init, params, sol.steps.t, sol.steps.dt, sol.save_step, sol.save_theta, rtol=rtol, atol=atol_arr
        )
        return float(np.sum(W * saved) + np.sum(abs_dt * (np.array(E) + w_stiff * np.array(S))))

    _, E, S = replay(f, tab, y0, p, sol.steps.t, sol.steps.dt, sol.save_step, sol.save_theta, rtol=rtol, atol=atol_arr)
    assert rel_err(E, sol.steps.error_estimate) < 1e-8
    if w_stiff:
        assert rel_err(S, sol.steps.stiffness_estimate) < 1e-8
    res = discrete_adjoint(
        sol, mlp.vjp, grad_y=W, grad_error=abs_dt, grad_stiffness=w_stiff * abs_dt if w_stiff else None
    )
    plain = discrete_adjoint(sol, mlp.vjp, grad_y=W)
    assert rel_err(res.grad_p, plain.grad_p) > 1e-4  # the regularizer's cotangents matter
    for i in range(y0.size):
        e = np.eye(y0.size)[i]
        assert fd4(lambda y: loss(y, p), y0, e, 1e-4) == pytest.approx(
            res.grad_y0[i], rel=1e-5, abs=1e-7 * np.linalg.norm(res.grad_y0)
        )
    for v in rng.normal(size=(3, p.size)):
        v /= np.linalg.norm(v)
        assert fd4(lambda q: loss(y0, q), p, v, 1e-4) == pytest.approx(
            res.grad_p @ v, rel=1e-5, abs=1e-7 * np.linalg.norm(res.grad_p)
        )


# ---------------------------------------------------------------------------------------------------------
# Continuous adjoints


@njit(cache=True)
def linear_rhs(t, y, p, out):
    """y' = A y with A = p.reshape(n, n) row-major."""
    n = y.size
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += p[i * n + j] * y[j]
        out[i] = acc


@njit(cache=True)
def linear_vjp(t, y, p, a, out_y, out_p):
    n = y.size
    for j in range(n):
        acc = 0.0
        for i in range(n):
            acc += a[i] * p[i * n + j]
        out_y[j] = acc
    for i in range(n):
        for j in range(n):
            out_p[i * n + j] = a[i] * y[j]


C_RTOL = 100.0  # continuous adjoints: ‖error‖ ≤ C·rtol (relative), forward and backward at rtol = atol
TIGHT = 1e-12  # the forward solves differentiated for the reference gradients
CONVERGENCE = 50.0  # error(rtol 1e-5) / error(rtol 1e-8) at least this

CONTINUOUS = {
    "backsolve": lambda pb, sol, g, r: backsolve_adjoint(pb.f, pb.vjp, sol, g, r, r),
    "backsolve+seminorm": lambda pb, sol, g, r: backsolve_adjoint(pb.f, pb.vjp, sol, g, r, r, seminorm=True),
    "backsolve+checkpoints": lambda pb, sol, g, r: backsolve_adjoint(pb.f, pb.vjp, sol, g, r, r, checkpoints=True),
    "interpolating": lambda pb, sol, g, r: interpolating_adjoint(pb.vjp, sol, g, r, r),
    "interpolating+seminorm": lambda pb, sol, g, r: interpolating_adjoint(pb.vjp, sol, g, r, r, seminorm=True),
    "quadrature": lambda pb, sol, g, r: quadrature_adjoint(pb.vjp, sol, g, r, r),
}


class Problem:
    """A field, its VJP, a span with dense-output save points, a loss and a reference gradient (y0, p)."""

    def __init__(self, f, vjp, t_span, y0, p, saveat, loss, loss_grad):
        self.f, self.vjp, self.t_span, self.y0, self.p, self.saveat = f, vjp, t_span, y0, p, saveat
        self.loss, self.loss_grad = loss, loss_grad
        self.reference = None
        self._sols = {}

    def solve(self, y0, p, rtol, record=False):
        return solve_ode(self.f, self.t_span, y0, p, rtol=rtol, atol=rtol, saveat=self.saveat, record_states=record)

    def fd_gradient(self, h):
        """Fourth-order central differences, coordinate by coordinate, of the loss of a tight solve."""
        x0 = np.concatenate([self.y0, self.p])
        n = self.y0.size

        def L(x):
            return self.loss(self.solve(x[:n], x[n:], TIGHT).y)

        eye = np.eye(x0.size)
        return np.array([fd4(L, x0, eye[i], h) for i in range(x0.size)])

    def forward(self, rtol):
        if rtol not in self._sols:
            sol = self.solve(self.y0, self.p, rtol, record=True)
            assert sol.success
            self._sols[rtol] = sol
        return self._sols[rtol]

    def error(self, name, rtol):
        sol = self.forward(rtol)
        res = CONTINUOUS[name](self, sol, self.loss_grad(sol.y), rtol)
        return rel_err(np.concatenate([res.grad_y0, res.grad_p]), self.reference)


def linear_problem(t_span):
    rng = np.random.default_rng(3)
    n = 3
    A = np.array([[-0.1, 1.0, 0.0], [-1.0, -0.1, 0.3], [0.0, 0.2, -0.5]]) + 0.1 * rng.normal(size=(n, n))
    y0 = rng.normal(size=n)
    t0 = t_span[0]
    saveat = np.linspace(*t_span, 6)
    W = rng.normal(size=(saveat.size, n))
    pb = Problem(
        linear_rhs, linear_vjp, t_span, y0, A.ravel().copy(), saveat, lambda Y: float(np.sum(W * Y)), lambda Y: W
    )
    # Exact: y(t) = expm(A (t - t0)) y0, dL/dy0 = Σ_k expm(A τ_k)ᵀ W_k, dL/dA_ij = Σ_k W_k·L(Aτ_k, E_ij τ_k) y0.
    g_y0 = sum(expm(A * (tk - t0)).T @ W[k] for k, tk in enumerate(saveat))
    g_A = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            E = np.zeros((n, n))
            E[i, j] = 1.0
            g_A[i, j] = sum(
                W[k] @ (expm_frechet(A * (tk - t0), E * (tk - t0), compute_expm=False) @ y0)
                for k, tk in enumerate(saveat)
            )
    pb.reference = np.concatenate([g_y0, g_A.ravel()])
    return pb


def mlp_problem(t_span):
    """A spiral-like cube-input field (Chen et al.'s form) with a sum-of-squares loss."""
    mlp = MLP([2, 8, 2], ["tanh"], input_transform="cube")
    p = mlp.init_params(7)
    saveat = np.linspace(*t_span, 7)
    target = np.cos(saveat)[:, None] * np.array([1.0, 0.5])
    pb = Problem(
        mlp.rhs,
        mlp.vjp,
        t_span,
        np.array([2.0, 0.0]),
        p,
        saveat,
        lambda Y: 0.5 * float(np.sum((Y - target) ** 2)),
        lambda Y: Y - target,
    )
    # h = 3e-4: the cube input makes the truncation error of h = 1e-3 visible (~1e-7); the rounding and
    # step-selection noise of the 1e-12 solve stays near 1e-9 relative at this h.
    pb.reference = pb.fd_gradient(3e-4)
    return pb


@pytest.fixture(scope="module")
def problems():
    return {"linear": linear_problem((0.0, 2.0)), "mlp": mlp_problem((0.0, 1.5))}


def test_reference_gradients_are_accurate(problems):
    lin = problems["linear"]
    assert rel_err(lin.fd_gradient(1e-3), lin.reference) < 1e-9  # FD of a tight solve vs expm
    mlp = problems["mlp"]
    tight = mlp.forward(TIGHT)
    d = discrete_adjoint(tight, mlp.vjp, mlp.loss_grad(tight.y))
    assert rel_err(np.concatenate([d.grad_y0, d.grad_p]), mlp.reference) < 1e-8
    for pb in problems.values():  # the losses include save points inside steps (dense output)
        th = pb.forward(1e-5).save_theta
        assert np.any((th > 0.0) & (th < 1.0))


@pytest.mark.parametrize("name", list(CONTINUOUS))
@pytest.mark.parametrize("problem", ["linear", "mlp"])
def test_continuous_adjoint_error_is_bounded_by_rtol_and_converges(problems, problem, name):
    pb = problems[problem]
    errors = {rtol: pb.error(name, rtol) for rtol in (1e-5, 1e-8)}
    for rtol, e in errors.items():
        assert e <= C_RTOL * rtol, (rtol, errors)
    assert errors[1e-8] * CONVERGENCE <= errors[1e-5], errors


@pytest.mark.parametrize("name", list(CONTINUOUS))
def test_continuous_adjoints_on_backward_spans(name):
    rtol = 1e-7
    for pb in (linear_problem((1.0, -1.0)), _backward_mlp()):
        assert pb.error(name, rtol) <= C_RTOL * rtol


_BACKWARD_MLP = []


def _backward_mlp():
    if not _BACKWARD_MLP:
        _BACKWARD_MLP.append(mlp_problem((0.5, -0.5)))
    return _BACKWARD_MLP[0]


def test_discrete_adjoint_is_the_solution_gradient_to_order_rtol(problems):
    """Not a continuous adjoint, but the same reference: the exact gradient of a solve at rtol is within
    O(rtol) of the gradient of the flow."""
    for pb in problems.values():
        for rtol in (1e-5, 1e-8):
            sol = pb.forward(rtol)
            d = discrete_adjoint(sol, pb.vjp, pb.loss_grad(sol.y))
            assert rel_err(np.concatenate([d.grad_y0, d.grad_p]), pb.reference) <= C_RTOL * rtol


# ---------------------------------------------------------------------------------------------------------
# Bad input


@pytest.fixture(scope="module")
def small():
    mlp = MLP((2, 4, 2), "tanh")
    p = mlp.init_params(0)
    y0 = np.array([1.0, -0.5])
    return mlp, p, y0


def test_adjoints_needing_recorded_states_reject_a_plain_solution(small):
    mlp, p, y0 = small
    sol = solve_ode(mlp.rhs, (0.0, 1.0), y0, p)
    g = np.ones_like(sol.y)
    with pytest.raises(ValueError, match="sol"):
        discrete_adjoint(sol, mlp.vjp, g)
    with pytest.raises(ValueError, match="sol"):
        interpolating_adjoint(mlp.vjp, sol, g)
    with pytest.raises(ValueError, match="sol"):
        quadrature_adjoint(mlp.vjp, sol, g)
    steps_only = solve_ode(mlp.rhs, (0.0, 1.0), y0, p, record_steps=True)
    with pytest.raises(ValueError, match="sol"):
        discrete_adjoint(steps_only, mlp.vjp, np.ones_like(steps_only.y))
    # backsolve needs no recorded states
    assert np.all(np.isfinite(backsolve_adjoint(mlp.rhs, mlp.vjp, sol, g).grad_p))


def test_adjoints_reject_a_cotangent_of_the_wrong_shape(small):
    mlp, p, y0 = small
    sol = solve_ode(mlp.rhs, (0.0, 1.0), y0, p, saveat=[0.5, 1.0], record_states=True)
    for bad in (np.ones((3, 2)), np.ones(2), np.ones((2, 3))):
        with pytest.raises(ValueError, match="grad_y"):
            discrete_adjoint(sol, mlp.vjp, bad)
        with pytest.raises(ValueError, match="grad_y"):
            backsolve_adjoint(mlp.rhs, mlp.vjp, sol, bad)
        with pytest.raises(ValueError, match="grad_y"):
            interpolating_adjoint(mlp.vjp, sol, bad)
        with pytest.raises(ValueError, match="grad_y"):
            quadrature_adjoint(mlp.vjp, sol, bad)
    with pytest.raises(ValueError, match="grad_y"):
        discrete_adjoint(sol, mlp.vjp, np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="grad_error"):
        discrete_adjoint(sol, mlp.vjp, np.ones((2, 2)), grad_error=np.ones(len(sol.steps) + 1))


def test_adjoints_reject_a_failed_forward_solve(small):
    mlp, p, y0 = small
    sol = solve_ode(mlp.rhs, (0.0, 10.0), y0, p, rtol=1e-10, max_steps=3, record_states=True)
    assert not sol.success
    g = np.ones_like(sol.y)
    for call in (
        lambda: discrete_adjoint(sol, mlp.vjp, g),
        lambda: backsolve_adjoint(mlp.rhs, mlp.vjp, sol, g),
        lambda: interpolating_adjoint(mlp.vjp, sol, g),
        lambda: quadrature_adjoint(mlp.vjp, sol, g),
    ):
        with pytest.raises(ValueError, match="succeed"):
            call()


@pytest.mark.parametrize("bad", [0.0, -1e-6, np.inf, np.nan])
def test_continuous_adjoints_reject_non_positive_tolerances(small, bad):
    mlp, p, y0 = small
    sol = solve_ode(mlp.rhs, (0.0, 1.0), y0, p, saveat=[1.0], record_states=True)
    g = np.ones_like(sol.y)
    for name in ("rtol", "atol"):
        kw = {name: bad}
        with pytest.raises(ValueError, match=name):
            backsolve_adjoint(mlp.rhs, mlp.vjp, sol, g, **kw)
        with pytest.raises(ValueError, match=name):
            interpolating_adjoint(mlp.vjp, sol, g, **kw)
        with pytest.raises(ValueError, match=name):
            quadrature_adjoint(mlp.vjp, sol, g, **kw)


# ---------------------------------------------------------------------------------------------------------
# Memory (measured with tracemalloc, which sees Numba's array allocations; not timed)


@njit(cache=True)
def oscillator(t, y, p, out):
    out[0] = p[0] * y[1]
    out[1] = -p[0] * y[0]


@njit(cache=True)
def oscillator_vjp(t, y, p, a, out_y, out_p):
    out_y[0] = -p[0] * a[1]
    out_y[1] = p[0] * a[0]
    out_p[0] = a[0] * y[1] - a[1] * y[0]


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_backsolve_memory_is_flat_in_the_number_of_steps_and_discrete_records_grow_linearly():
    """A harmonic oscillator over T and 12T, saved at the endpoints only: ~10x the forward (and backward)
    steps.  Backsolve keeps O(1) state (≤ 1.2x peak traced memory); the discrete adjoint needs the forward
    solve's recorded states and stages, whose size is exactly linear in the number of steps."""
    y0, p = np.array([1.0, 0.0]), np.array([2.0])
    sols = {}
    for T in (5.0, 60.0):
        sols[T] = solve_ode(oscillator, (0.0, T), y0, p, rtol=1e-6, atol=1e-6, saveat=[0.0, T], record_states=True)
        g = np.ones_like(sols[T].y)
        backsolve_adjoint(oscillator, oscillator_vjp, sols[T], g)  # warm-up (compilation, caches)
        discrete_adjoint(sols[T], oscillator_vjp, g)
    n_short, n_long = len(sols[5.0].steps), len(sols[60.0].steps)
    assert n_long >= 10 * n_short
    peaks = {
        T: _peak(lambda: backsolve_adjoint(oscillator, oscillator_vjp, sol, np.ones_like(sol.y)))
        for T, sol in sols.items()
    }
    assert peaks[60.0] <= 1.2 * peaks[5.0], peaks
    # Discrete adjoint: what it needs is O(n_steps) — per step t, dt, E, S, the state and s stage vectors.
    s, n = sols[5.0].method.n_stages, y0.size
    per_step = 8 * (4 + n + s * n)
    for sol in sols.values():
        st_ = sol.steps
        recorded = sum(a.nbytes for a in (st_.t, st_.dt, st_.error_estimate, st_.stiffness_estimate, st_.y, st_.K))
        assert recorded == per_step * len(st_) + 8 * n
    # Its own sweep on top of the records is O(1) as well.
    d_peaks = {T: _peak(lambda: discrete_adjoint(sol, oscillator_vjp, np.ones_like(sol.y))) for T, sol in sols.items()}
    assert d_peaks[60.0] <= 1.2 * d_peaks[5.0], d_peaks


def test_backsolve_with_fused_value_vjp_equals_plain_backsolve():
    """f_value_vjp only fuses two calls into one: the backward solve, hence the gradient, is identical."""
    from lrnde_np.nn import MLP

    mlp = MLP((2, 12, 2), "tanh", input_transform="cube")
    p = mlp.init_params(np.random.default_rng(4))
    ts = np.linspace(0.0, 1.0, 6)
    sol = solve_ode(mlp.rhs, (0.0, 1.0), np.array([2.0, 0.0]), p, rtol=1e-7, atol=1e-9, saveat=ts)
    g = np.random.default_rng(5).normal(size=sol.y.shape)
    plain = backsolve_adjoint(mlp.rhs, mlp.vjp, sol, g, rtol=1e-7, atol=1e-9)
    fused = backsolve_adjoint(mlp.rhs, mlp.vjp, sol, g, rtol=1e-7, atol=1e-9, f_value_vjp=mlp.value_vjp)
    np.testing.assert_array_equal(fused.grad_p, plain.grad_p)
    np.testing.assert_array_equal(fused.grad_y0, plain.grad_y0)
    assert fused.nfe_backward == plain.nfe_backward
