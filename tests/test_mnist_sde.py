"""The MNIST neural SDE task (``lrnde_np.models.mnist_sde``, ``models.nsde``) on tiny random data.

* the combined-vector drift/diffusion wrappers agree with the MLPs and overwrite the other network's part of
  the parameter cotangent with zeros;
* one training step's gradient (vanilla, and with the global regularizer) equals central finite differences
  of the loss re-computed on the recorded Brownian path (same steps, same increments) along random
  directions in the encoder, drift, diffusion and classifier blocks;
* the local regularizer's gradient reaches drift and diffusion (and nothing else), and equals finite
  differences of the frozen regularizing step;
* training runs are bit-identical when repeated, and every method sees the same Brownian seeds;
* ``lrnde compare --task mnist-sde`` writes its table.
"""

import csv
import json

import numpy as np
import pytest
from idx_files import mnist_files

from lrnde_np import cli
from lrnde_np.models import MNISTSDETask, NeuralSDE, Regularization
from lrnde_np.models.nsde import interpolate_steps
from lrnde_np.nn import MLP, softmax_cross_entropy
from lrnde_np.sde import sde_frozen_step_regularizer
from lrnde_np.training import TrainConfig, train

N_FEATURES, STATE, HIDDEN, BATCH = 12, 4, 6, 8
TIMING_FIELDS = {"step_time", "train_time"}


def make_task(**kwargs):
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 1.0, (56, N_FEATURES))
    y = rng.integers(0, 10, 56)
    options = dict(state_dim=STATE, hidden=HIDDEN, batch_size=BATCH, eval_batch_size=8)
    options.update(kwargs)
    return MNISTSDETask(x[:40], y[:40], x[40:], y[40:], **options)


@pytest.fixture(scope="module")
def task():
    return make_task()


@pytest.fixture(scope="module")
def params(task):
    p = task.init_params(np.random.default_rng(5))
    # non-zero biases and a livelier diffusion, so that every block's gradient is exercised
    p += 0.1 * np.random.default_rng(6).standard_normal(p.size)
    return p


def blocks(task):
    """Index ranges of the encoder, drift, diffusion and classifier parameters."""
    o = task._offsets
    k = task.nsde.n_drift
    return {
        "encoder": (o[0], o[1]),
        "drift": (o[1], o[1] + k),
        "diffusion": (o[1] + k, o[2]),
        "classifier": (o[2], o[3]),
    }


def replay_loss(task, params, images, labels, path, lam_global=0.0):
    """Cross-entropy (+ λ·Σ E_j dt_j) of the solve replayed on ``path``: the map the gradient differentiates."""
    p_enc, p_sde, p_cls = task.split_params(params)
    We, be = task._dense(task.encoder, p_enc)
    Wc, bc = task._dense(task.classifier, p_cls)
    z0 = images @ We.T + be
    sol = task.nsde.solve(np.ascontiguousarray(z0).ravel(), np.ascontiguousarray(p_sde), path=path, record_steps=True)
    loss, _ = softmax_cross_entropy(sol.x[-1].reshape(z0.shape) @ Wc.T + bc, labels)
    return loss + lam_global * float(np.sum(sol.steps.error_estimate * sol.steps.dt))


def test_wrappers_slice_the_shared_vector():
    drift = MLP((3, 5, 3), "tanh")
    diffusion = MLP((3, 3), [])
    nsde = NeuralSDE(drift, diffusion)
    rng = np.random.default_rng(0)
    p = rng.standard_normal(nsde.n_params)
    pf, pg = nsde.split_params(p)
    x = rng.standard_normal(6)  # a batch of two states
    out = np.empty(6)
    nsde.f(0.3, x, p, out)
    np.testing.assert_allclose(out, drift.forward(x, pf), rtol=1e-14)
    nsde.g(0.3, x, p, out)
    np.testing.assert_allclose(out, diffusion.forward(x, pg), rtol=1e-14)
    a = rng.standard_normal(6)
    out_x, out_p = np.empty(6), np.full(nsde.n_params, np.nan)
    nsde.f_vjp(0.3, x, p, a, out_x, out_p)
    ref_x, ref_p = drift.vjp_py(x, pf, a)
    np.testing.assert_allclose(out_x, ref_x, rtol=1e-13)
    np.testing.assert_allclose(out_p[: pf.size], ref_p, rtol=1e-13)
    assert np.all(out_p[pf.size :] == 0.0)
    out_p[:] = np.nan
    nsde.g_vjp(0.3, x, p, a, out_x, out_p)
    ref_x, ref_p = diffusion.vjp_py(x, pg, a)
    np.testing.assert_allclose(out_x, ref_x, rtol=1e-13)
    np.testing.assert_allclose(out_p[pf.size :], ref_p, rtol=1e-13)
    assert np.all(out_p[: pf.size] == 0.0)


def test_interpolate_steps_is_linear_between_step_ends(task, params):
    z0 = np.random.default_rng(1).standard_normal(3 * STATE)
    sol = task.nsde.solve(z0, np.ascontiguousarray(task.split_params(params)[1]), seed=3, record_steps=True)
    st = sol.steps
    assert len(st) > 2
    for j in (0, 1, len(st) - 1):
        np.testing.assert_array_equal(interpolate_steps(sol, st.t[j]), st.x[j])
        mid = interpolate_steps(sol, st.t[j] + 0.25 * st.dt[j])
        np.testing.assert_allclose(mid, 0.75 * st.x[j] + 0.25 * st.x[j + 1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(interpolate_steps(sol, 1.0), sol.x[-1], rtol=1e-12)


@pytest.mark.parametrize("kind, lam", [("none", 0.0), ("global", 0.7)])
def test_step_gradient_matches_finite_differences_on_the_frozen_path(task, params, kind, lam):
    images, labels = task.sample_batch(np.random.default_rng(3))
    out, fp = task.forward_backward(params, images, labels, Regularization(kind), lam, 1234, None)
    path = fp.sol.path
    assert len(fp.sol.steps) > 3  # an adaptive solve with several steps
    base = replay_loss(task, params, images, labels, path, lam)
    np.testing.assert_allclose(base, out.loss, rtol=1e-12)  # the replay is the forward map
    rng = np.random.default_rng(8)
    eps = 1e-6
    for name, (lo, hi) in blocks(task).items():
        assert np.any(out.grad[lo:hi] != 0.0), name
        for _ in range(2):
            d = np.zeros_like(params)
            d[lo:hi] = rng.standard_normal(hi - lo)
            fd = (
                replay_loss(task, params + eps * d, images, labels, path, lam)
                - replay_loss(task, params - eps * d, images, labels, path, lam)
            ) / (2 * eps)
            np.testing.assert_allclose(out.grad @ d, fd, rtol=2e-6, atol=1e-9, err_msg=name)


@pytest.mark.parametrize(
    "kind, state", [("local_unbiased", "interpolate"), ("local_unbiased", "saved"), ("local_biased", "interpolate")]
)
def test_local_regularizer_gradient_reaches_drift_and_diffusion(task, params, kind, state):
    if state != task.nsde.unbiased_state:
        task = make_task(unbiased_state=state)
    images, labels = task.sample_batch(np.random.default_rng(4))
    lam = 50.0
    with_reg, fp = task.forward_backward(
        params, images, labels, Regularization(kind), lam, 77, np.random.default_rng(9)
    )
    without, fp0 = task.forward_backward(
        params, images, labels, Regularization(kind), 0.0, 77, np.random.default_rng(9)
    )
    assert fp.t_reg == fp0.t_reg and 0.0 <= fp.t_reg < 1.0
    assert with_reg.reg_value > 0 and with_reg.nfe_reg > 0
    diff = with_reg.grad - without.grad
    b = blocks(task)
    for name in ("encoder", "classifier"):  # X(t_reg) is held constant
        lo, hi = b[name]
        assert np.all(diff[lo:hi] == 0.0), name
    local = fp.local
    p_sde = np.ascontiguousarray(task.split_params(params)[1])
    off = b["drift"][0]
    np.testing.assert_allclose(diff[off : off + p_sde.size], lam * local.grad_p, rtol=1e-9, atol=1e-12)
    if state == "saved":
        x_reg = fp.sol.x[0]
        assert fp.sol.t[0] == fp.t_reg and fp.output_row == 1  # t_reg is a saved point of the main solve
    elif kind == "local_unbiased":
        x_reg = interpolate_steps(fp.sol, fp.t_reg)
        assert fp.sol.t.tolist() == [1.0]  # the vanilla solve: t1 its only stop
    else:
        x_reg = fp.sol.steps.x[fp.reg_step]
        assert fp.t_reg == fp.sol.steps.t[fp.reg_step] and 1 <= fp.reg_step < len(fp.sol.steps)
    nsde = task.nsde
    R, _, _ = sde_frozen_step_regularizer(
        nsde.f,
        nsde.g,
        None,
        None,
        fp.t_reg,
        local.dt,
        x_reg,
        p_sde,
        local.dW,
        local.dZ,
        nsde.rtol,
        nsde.atol,
        compute_grad=False,
    )
    np.testing.assert_allclose(R, local.value, rtol=1e-12)
    rng = np.random.default_rng(10)
    eps = 1e-6
    for name in ("drift", "diffusion"):
        lo, hi = (v - off for v in b[name])
        assert np.any(local.grad_p[lo:hi] != 0.0), name
        d = np.zeros(p_sde.size)
        d[lo:hi] = rng.standard_normal(hi - lo)
        vals = [
            sde_frozen_step_regularizer(
                nsde.f,
                nsde.g,
                None,
                None,
                fp.t_reg,
                local.dt,
                x_reg,
                p_sde + s * d,
                local.dW,
                local.dZ,
                nsde.rtol,
                nsde.atol,
                compute_grad=False,
            )[0]
            for s in (eps, -eps)
        ]
        np.testing.assert_allclose(
            local.grad_p @ d, (vals[0] - vals[1]) / (2 * eps), rtol=1e-5, atol=1e-12, err_msg=name
        )


def run(task, kind, seed=1):
    cfg = TrainConfig(iters=3, lr=1e-2, lam=0.0 if kind == "none" else 100.0, seed=seed, progress=False)
    return train(task, Regularization(kind), cfg)


@pytest.mark.parametrize("kind", ["none", "local_unbiased", "local_biased", "global"])
def test_training_repeats_bit_for_bit(task, kind):
    a, b = run(task, kind), run(task, kind)
    np.testing.assert_array_equal(a.params, b.params)
    for k in a.records:
        if k not in TIMING_FIELDS:
            np.testing.assert_array_equal(a.records[k], b.records[k], err_msg=k)
    rec = a.records
    assert np.all(np.isfinite(rec["loss"])) and np.all(rec["nfe_forward"] > 0) and np.all(rec["nfe_backward"] > 0)
    assert np.all(rec["nfe_reg"] > 0) if kind.startswith("local") else np.all(rec["nfe_reg"] == 0)
    assert np.all(np.isnan(rec["t_reg"])) != kind.startswith("local")


def test_interrupted_and_resumed_run_is_bit_identical(task, tmp_path):
    # the Brownian seeds come from the training loop's generator, whose state the checkpoint keeps
    kind, iters = "local_unbiased", 5
    reference = train(task, Regularization(kind), TrainConfig(iters=iters, lr=1e-2, lam=100.0, seed=2, progress=False))
    cfg = TrainConfig(
        iters=iters,
        lr=1e-2,
        lam=100.0,
        seed=2,
        progress=False,
        checkpoint=str(tmp_path / "ck.npz"),
        checkpoint_every=2,
        checkpoint_seconds=1e9,
    )

    def stop(it, record):
        if it == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(task, Regularization(kind), cfg, callback=stop)
    resumed = train(task, Regularization(kind), cfg)
    assert resumed.resumed_from == 2
    np.testing.assert_array_equal(resumed.params, reference.params)
    for k in reference.records:
        if k not in TIMING_FIELDS:
            np.testing.assert_array_equal(resumed.records[k], reference.records[k], err_msg=k)


def test_methods_see_the_same_brownian_seeds(task):
    # Same initial parameters and minibatch at iteration 0; the biased regime solves exactly the vanilla
    # problem (t1 is the only stop), so the same Brownian seed gives the same main solve.
    a, b = run(task, "none", seed=4), run(task, "local_biased", seed=4)
    assert a.records["nfe_forward"][0] == b.records["nfe_forward"][0]
    assert a.records["task_loss"][0] == b.records["task_loss"][0]
    rng = np.random.default_rng(0)
    assert task.draw_noise(rng)[0] != task.draw_noise(rng)[0]  # a new seed every iteration


def test_evaluation_is_deterministic(task, params):
    e1, e2 = task.evaluate(params), task.evaluate(params)
    assert e1.n_batches == 2 and e1.test_loss == e2.test_loss and e1.test_nfe == e2.test_nfe
    assert 0.0 <= e1.test_accuracy <= 1.0 and e1.test_nfe > 0
    logits, nfe = task.prediction_call(params)()
    np.testing.assert_array_equal(logits, task.predict(params, task.test_x[:8], task.eval_seed)[0])
    assert task.predict(params, task.test_x[:8], task.eval_seed + 1)[0].tolist() != logits.tolist()


def test_bad_arguments(task, params):
    with pytest.raises(ValueError, match="diffusion"):
        NeuralSDE(MLP((3, 5, 3), "tanh"), MLP((2, 3), []))
    with pytest.raises(ValueError, match="drift"):
        NeuralSDE(MLP((3, 5, 2), "tanh"), MLP((3, 3), []))
    with pytest.raises(ValueError, match="state_dim"):
        make_task(state_dim=0)
    images, labels = task.sample_batch(np.random.default_rng(0))
    with pytest.raises(ValueError, match="seed"):
        task.forward_backward(params, images, labels, Regularization("none"), 0.0, None, None)
    with pytest.raises(ValueError, match="heuristic"):
        task.forward_backward(
            params,
            images,
            labels,
            Regularization("local_unbiased", heuristic="stiffness"),
            1.0,
            1,
            np.random.default_rng(0),
        )
    with pytest.raises(TypeError, match="rng"):
        task.forward_backward(params, images, labels, Regularization("local_unbiased"), 1.0, 1, 5)


def test_compare_mnist_sde_writes_the_table(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(3)
    mnist_files(data, rng.integers(0, 256, (50, 6, 6)), rng.integers(0, 10, 50))
    argv = [
        "compare",
        "--task",
        "mnist-sde",
        "--data",
        str(data),
        "--n-train",
        "30",
        "--hidden",
        "4",
        "--batch-size",
        "10",
        "--iters",
        "2",
        "--methods",
        "vanilla,local-unbiased,local-biased",
        "--out",
        str(tmp_path / "out"),
        "--no-plot",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    with open(tmp_path / "out" / "table.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["Method", "Test Acc %", "Train Acc %"]
    assert [r[0] for r in rows[1:]] == ["Vanilla NSDE", "Local Unbiased ERNSDE", "Local Biased ERNSDE"]
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    assert payload["task"]["task"] == "mnist-sde" and payload["settings"]["lam"] == 1000.0
    for r in payload["results"]:
        assert r["status"] == "ok" and 0.0 <= r["test_accuracy"] <= 1.0 and r["eval_batches"] == 2
        assert r["test_nfe"] > 0
    assert "SOSRI rtol 0.14" in (tmp_path / "out" / "table.md").read_text()
    with pytest.raises(SystemExit) as exc:
        cli.main(argv[:-4] + ["--adjoint", "backsolve", "--out", str(tmp_path / "o2")])
    assert "discrete" in exc.value.code
