"""CNF likelihood/KL gradients through every adjoint against finite differences; the learned density's
mass; every training regime runs."""

import numpy as np
import pytest

from lrnde_np import adjoint as adj
from lrnde_np.cnf import CNFDynamics, HyperField, MLPField
from lrnde_np.cnf.model import CNF, density_on_grid, log_normal
from lrnde_np.cnf.toy import ENERGIES, two_moons
from lrnde_np.models.node import Regularization
from lrnde_np.nn import Adam


def _tiny(kind="hyper", trace="exact", adjoint="discrete", tol=1e-10, kinetic=False, frobenius=False):
    field = HyperField(2, 2, hidden=4) if kind == "hyper" else MLPField(2, (4,), "tanh")
    dyn = CNFDynamics(field, trace, kinetic=kinetic, frobenius=frobenius)
    theta = field.init_params(0) + 0.3 * np.random.default_rng(0).standard_normal(field.n_params)
    return CNF(dyn, rtol=tol, atol=tol, adjoint=adjoint), theta


def _fd_nll(cnf, x, theta, idx, seed=5, h=1e-5, lam_kinetic=0.0, lam_frobenius=0.0):
    out = []
    for i in idx:
        vals = []
        for s in (1, -1):
            th = theta.copy()
            th[i] += s * h
            step = cnf.nll_step(
                x, th, rng=np.random.default_rng(seed), lam_kinetic=lam_kinetic, lam_frobenius=lam_frobenius
            )
            vals.append(step.loss)
        out.append((vals[0] - vals[1]) / (2 * h))
    return np.array(out)


X = np.array([[0.5, -0.3], [-1.2, 0.8], [0.1, 1.5]])


@pytest.mark.parametrize("adjoint", ["discrete", "interpolating", "backsolve"])
@pytest.mark.parametrize("kind,trace", [("hyper", "exact"), ("mlp", "exact"), ("mlp", "hutchinson")])
def test_nll_gradient_matches_finite_differences(adjoint, kind, trace):
    cnf, theta = _tiny(kind, trace, adjoint)
    step = cnf.nll_step(X, theta, rng=np.random.default_rng(5))
    idx = np.arange(0, theta.size, max(1, theta.size // 8))
    fd = _fd_nll(cnf, X, theta, idx)
    np.testing.assert_allclose(step.grad[idx], fd, rtol=1e-5, atol=1e-6)
    # the loss is the mean NLL of log_prob
    lp, _ = cnf.log_prob(X, theta, np.random.default_rng(5))  # draws the same noise as the step did
    assert abs(step.task_loss + lp.mean()) < 1e-9


def test_quadrature_adjoint_gives_the_same_nll_gradient():
    cnf, theta = _tiny("hyper")
    dyn = cnf.dynamics
    node = cnf.backward_node
    sol = node.solve(dyn.initial_state(X), theta, saveat=[0.0], record_states=True)
    z0, l0, _, _ = dyn.split(sol.y[-1])
    g = np.zeros_like(sol.y)
    g[-1, :6] = (z0 / 3).ravel()
    g[-1, 6:9] = 1.0 / 3
    res = adj.quadrature_adjoint(dyn.vjp, sol, g, rtol=1e-10, atol=1e-10)
    ref = cnf.nll_step(X, theta).grad
    np.testing.assert_allclose(res.grad_p, ref, rtol=1e-6, atol=1e-8)


def test_rnode_channels_gradient_matches_finite_differences():
    cnf, theta = _tiny("mlp", "exact", kinetic=True, frobenius=True)
    step = cnf.nll_step(X, theta, lam_kinetic=0.3, lam_frobenius=0.2)
    assert step.rnode_value > 0
    idx = np.arange(0, theta.size, 3)
    fd = _fd_nll(cnf, X, theta, idx, lam_kinetic=0.3, lam_frobenius=0.2)
    np.testing.assert_allclose(step.grad[idx], fd, rtol=1e-5, atol=1e-6)


def test_kl_gradient_matches_finite_differences():
    cnf, theta = _tiny("hyper")
    energy = ENERGIES["u1"]
    step = cnf.kl_step(energy, theta, 4, 3)
    h = 1e-5
    for i in range(0, theta.size, max(1, theta.size // 6)):
        e = np.zeros_like(theta)
        e[i] = h
        fd = (cnf.kl_step(energy, theta + e, 4, 3).loss - cnf.kl_step(energy, theta - e, 4, 3).loss) / (2 * h)
        assert abs(fd - step.grad[i]) < 1e-5 * (1 + abs(fd))


def test_sampling_log_density_agrees_with_likelihood():
    cnf, theta = _tiny("mlp")
    x, logq, _, path = cnf.sample(5, theta, 2, saveat=[0.0, 0.5, 1.0])
    lp, _ = cnf.log_prob(x, theta)
    np.testing.assert_allclose(lp, logq, atol=1e-7)
    assert path.shape == (3, 5, 2)


def test_learned_density_integrates_to_one():
    field = MLPField(2, (16,), "tanh")
    cnf = CNF(CNFDynamics(field, "exact"), rtol=1e-5, atol=1e-5)
    theta = field.init_params(0)
    opt = Adam(1e-2)
    rng = np.random.default_rng(0)
    first = None
    for _ in range(15):
        step = cnf.nll_step(two_moons(64, rng), theta, rng=rng)
        first = step.task_loss if first is None else first
        opt.step(theta, step.grad)
    assert step.task_loss < first  # it learned something
    _, _, dens, mass = density_on_grid(cnf, theta, lim=6.0, n=60)
    assert abs(mass - 1.0) < 1e-2
    assert np.all(dens >= 0)


@pytest.mark.parametrize("kind", ["none", "global", "local_unbiased", "local_biased"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_every_regime_trains(kind, trace):
    cnf, theta = _tiny("mlp", trace, tol=1e-4)
    step = cnf.nll_step(X, theta, Regularization(kind), lam=0.5, rng=np.random.default_rng(1))
    assert np.all(np.isfinite(step.grad)) and np.isfinite(step.loss)
    assert (step.reg_value > 0) == (kind != "none")
    assert step.nfe_reg > 0 if kind.startswith("local") else step.nfe_reg == 0
    plain = cnf.nll_step(X, theta, rng=np.random.default_rng(1))
    if kind != "none":
        assert not np.allclose(step.grad, plain.grad)


def test_log_normal():
    z = np.array([[0.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(log_normal(z), [-np.log(2 * np.pi), -np.log(2 * np.pi) - 2.5])


@pytest.mark.parametrize(
    "task,method,extra",
    [
        ("cnf-samples", "local-unbiased", ["--cnf-data", "circles"]),
        ("cnf-density", "global", ["--cnf-field", "hyper", "--cnf-width", "2", "--cnf-target", "u3"]),
    ],
)
def test_compare_runs_the_cnf_tasks(tmp_path, task, method, extra):
    import json

    from lrnde_np.experiments import compare

    out = tmp_path / task
    rc = compare.main(
        [
            "--task",
            task,
            "--iters",
            "2",
            "--batch-size",
            "8",
            "--out",
            str(out),
            "--no-plot",
            "--quiet",
            "--methods",
            method,
        ]
        + extra
    )
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    res = data["results"]
    assert [r["method"] for r in res] == [method]
    assert data["task"]["task"] == task
    assert all(np.isfinite(r["test_loss"]) and r["test_nfe"] > 0 for r in res)


def test_cnf_benchmark_runs():
    from lrnde_np.benchmarks.cnf import format_rows, gaussian_mixture, run

    x = gaussian_mixture(50, 3, seed=1)
    assert x.shape == (50, 3) and np.array_equal(x, gaussian_mixture(50, 3, seed=1))
    rows = run(dims=(2,), batch=4, repeats=1, hidden=4)
    assert [r["trace"] for r in rows] == ["exact", "hutchinson"]
    assert all(r["grad_s"] > 0 and r["forward_nfe"] > 0 for r in rows)
    assert "exact / Hutchinson" in format_rows(rows)
