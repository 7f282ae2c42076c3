"""Latent ODE: the full ELBO gradient against finite differences, masking, seeding, the tasks and the data."""

import math

import numpy as np
import pytest

from lrnde_np.data_timeseries import (
    PHYSIONET_VARIABLES,
    load_physionet,
    read_physionet_file,
    spiral_timeseries,
    split_indices,
)
from lrnde_np.models.latent_ode import LatentODE, LatentSpiralTask, RNNBaseline, kl_weight, recognition_inputs
from lrnde_np.models.node import Regularization


def _problem(seed=0, B=3, T=5, D=2, L=3):
    rng = np.random.default_rng(seed)
    t = 0.05 + 0.9 * np.sort(rng.uniform(0, 1, T))
    values = rng.standard_normal((B, T, D))
    mask = (rng.random((B, T, D)) < 0.6).astype(float)
    mask[:, 0, 0] = 1.0
    eps = rng.standard_normal((B, L))
    return t, values, mask, eps


def _model(encoder="rnn", **kw):
    opts = dict(
        latent_dim=3, encoder=encoder, rec_hidden=4, rec_latent=2, field_widths=(3, 5, 3), dec_hidden=4, obs_std=0.5
    )
    opts.update(kw)
    return LatentODE(2, **opts)


def _fd(fun, p, eps=1e-6):
    g = np.empty(p.size)
    for i in range(p.size):
        e = np.zeros(p.size)
        e[i] = eps
        g[i] = (fun(p + e) - fun(p - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("encoder", ["rnn", "gru"])
def test_elbo_gradient_matches_finite_differences_frozen_steps(encoder):
    """Discrete adjoint on a fixed step sequence: the gradient of the computed loss, exactly."""
    m = _model(encoder, fixed_dt=0.1)
    t, values, mask, eps = _problem(1)
    p = m.init_params(np.random.default_rng(2))
    st = m.loss_and_grad(p, t, values, mask, eps, kl_w=0.7, t0=0.0)
    fd = _fd(lambda q: m.loss_and_grad(q, t, values, mask, eps, kl_w=0.7, t0=0.0).loss, p)
    assert np.max(np.abs(st.grad - fd)) <= 1e-7 * np.max(np.abs(fd))


def test_global_regularizer_gradient_composes_with_the_discrete_adjoint():
    """Σ_j E_j·dt_j needs an adaptive solve (fixed steps estimate no error), whose step sequence FD cannot
    freeze; the adjoint's E_j cotangents are checked against replayed FD in test_adjoint.  Here: the model
    adds exactly λ × that adjoint's parameter gradient to the field block and nothing to the decoder."""
    from lrnde_np.adjoint import discrete_adjoint

    m = _model(rtol=1e-4, atol=1e-6)
    t, values, mask, eps = _problem(3)
    p = m.init_params(np.random.default_rng(4))
    base = m.loss_and_grad(p, t, values, mask, eps, t0=0.0)
    st = m.loss_and_grad(p, t, values, mask, eps, Regularization("global"), lam=0.5, t0=0.0)
    assert st.reg_value > 0 and st.loss == pytest.approx(base.loss + 0.5 * st.reg_value, rel=1e-12)
    fp = st.forward_pass
    only_r = discrete_adjoint(
        fp.sol,
        m.field.vjp,
        grad_y=np.zeros_like(fp.sol.y),
        grad_error=fp.global_reg.grad_error,
        grad_stiffness=fp.global_reg.grad_stiffness,
    )
    n_enc = m.cell.n_params + m.rec_out.n_params
    field = slice(n_enc, n_enc + m.field.n_params)
    np.testing.assert_allclose(st.grad[field] - base.grad[field], 0.5 * only_r.grad_p, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(st.grad[field.stop :], base.grad[field.stop :], rtol=1e-12, atol=1e-15)
    assert np.any(np.abs(st.grad[:n_enc] - base.grad[:n_enc]) > 0)  # R depends on z0, hence on the encoder


@pytest.mark.parametrize("adjoint", ["interpolating", "backsolve"])
def test_continuous_adjoint_gradient_within_tolerance(adjoint):
    m = _model(adjoint=adjoint, rtol=1e-9, atol=1e-11)
    t, values, mask, eps = _problem(5)
    p = m.init_params(np.random.default_rng(6))
    st = m.loss_and_grad(p, t, values, mask, eps, t0=0.0)
    # directional derivatives along random directions (one per parameter block and one over all)
    rng = np.random.default_rng(60)
    bounds = np.cumsum([0, m.cell.n_params, m.rec_out.n_params, m.field.n_params, m.decoder.n_params])
    for lo, hi in list(zip(bounds[:-1], bounds[1:], strict=True)) + [(0, p.size)]:
        v = np.zeros(p.size)
        v[lo:hi] = rng.standard_normal(hi - lo)
        h = 1e-5
        fd = (
            m.loss_and_grad(p + h * v, t, values, mask, eps, t0=0.0).loss
            - m.loss_and_grad(p - h * v, t, values, mask, eps, t0=0.0).loss
        ) / (2 * h)
        assert st.grad @ v == pytest.approx(fd, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("kind", ["local_unbiased", "local_biased"])
def test_local_regularizer_adds_lambda_times_its_step_gradient(kind):
    m = _model(fixed_dt=0.1)
    t, values, mask, eps = _problem(7)
    p = m.init_params(np.random.default_rng(8))
    base = m.loss_and_grad(p, t, values, mask, eps, t0=0.0)
    st = m.loss_and_grad(p, t, values, mask, eps, Regularization(kind), lam=2.0, rng=np.random.default_rng(9), t0=0.0)
    again = m.loss_and_grad(
        p, t, values, mask, eps, Regularization(kind), lam=2.0, rng=np.random.default_rng(9), t0=0.0
    )
    assert st.t_reg == again.t_reg and np.array_equal(st.grad, again.grad)
    assert st.reg_value > 0 and st.nfe_reg > 0 and 0.0 <= st.t_reg < t[-1]
    assert st.loss == pytest.approx(base.loss + 2.0 * st.reg_value, rel=1e-12)
    n_cell, n_rec = m.cell.n_params, m.rec_out.n_params
    field = slice(n_cell + n_rec, n_cell + n_rec + m.field.n_params)
    np.testing.assert_allclose(
        st.grad[field] - base.grad[field], 2.0 * st.forward_pass.local.grad_p, rtol=1e-9, atol=1e-12
    )
    rest = np.ones(p.size, bool)
    rest[field] = False
    if kind == "local_unbiased":  # the extra save point only adds a dense-output row: the rest is unchanged
        np.testing.assert_allclose(st.grad[rest], base.grad[rest], rtol=1e-9, atol=1e-12)


def test_masked_values_contribute_nothing():
    m = _model("gru", fixed_dt=0.1)
    t, values, mask, eps = _problem(10)
    p = m.init_params(np.random.default_rng(11))
    a = m.loss_and_grad(p, t, values, mask, eps, t0=0.0)
    garbage = values + 1e3 * (1 - mask) * np.random.default_rng(12).standard_normal(values.shape)
    b = m.loss_and_grad(p, t, garbage, mask, eps, t0=0.0)
    assert a.loss == b.loss and np.array_equal(a.grad, b.grad)
    # an unobserved time in the union grid leaves the encoding unchanged
    t2 = np.sort(np.append(t, 0.5 * (t[1] + t[2])))
    k = int(np.searchsorted(t2, 0.5 * (t[1] + t[2])))
    v2 = np.insert(values, k, 7.0, axis=1)
    m2 = np.insert(mask, k, 0.0, axis=1)
    mu_a, lv_a, _ = m.encode(p, t, values, mask)
    mu_b, lv_b, _ = m.encode(p, t2, v2, m2)
    np.testing.assert_allclose(mu_a, mu_b, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(lv_a, lv_b, rtol=1e-13, atol=1e-14)


def test_loss_terms_closed_form():
    m = _model()
    t, values, mask, eps = _problem(13)
    p = m.init_params(np.random.default_rng(14))
    st = m.loss_and_grad(p, t, values, mask, eps, kl_w=0.3, t0=0.0)
    mu, logvar, _ = m.encode(p, t, values, mask)
    n = mask.sum()
    kl = 0.5 * np.sum(mu**2 + np.exp(logvar) - 1 - logvar) / n
    assert st.kl == pytest.approx(kl, rel=1e-12)
    assert st.neg_loglik == pytest.approx(0.5 * st.mse / 0.25 + math.log(0.5) + 0.5 * math.log(2 * math.pi), rel=1e-12)
    assert st.loss == pytest.approx(st.neg_loglik + 0.3 * st.kl, rel=1e-12)


def test_kl_weight_schedule():
    assert kl_weight(0) == 0.0 and kl_weight(100) == 0.0
    assert kl_weight(101) == pytest.approx(0.01)
    assert kl_weight(600) == pytest.approx(1 - 0.99**500)


def test_recognition_inputs_time_gaps():
    t = np.array([0.1, 0.3, 0.6, 1.0])
    values = np.arange(8.0).reshape(1, 4, 2)
    mask = np.array([[[1, 0], [0, 0], [1, 1], [0, 1]]], float)
    x = recognition_inputs(t, values, mask)
    np.testing.assert_allclose(x[:, 0, 4], [0.5, 0.0, 0.4, 0.0])
    np.testing.assert_array_equal(x[:, 0, :2], values[0] * mask[0])
    np.testing.assert_array_equal(x[:, 0, 2:4], mask[0])


def test_rnn_baseline_gradient_matches_finite_differences():
    rng = np.random.default_rng(15)
    for cell in ("rnn", "gru"):
        model = RNNBaseline(2, hidden=4, dec_hidden=3, cell=cell)  # noqa: B023 (the lambda runs inside the loop)
        p = model.init_params(rng)
        t = np.array([0.1, 0.2, 0.45, 0.5, 0.9])
        values = rng.standard_normal((3, 5, 2))
        mask = np.repeat((rng.random((3, 5, 1)) < 0.6).astype(float), 2, axis=2)
        mask[:, 0] = 1.0
        loss, g = model.loss_and_grad(p, t, values, mask)
        fd = _fd(lambda q: model.loss_and_grad(q, t, values, mask)[0], p)  # noqa: B023
        assert np.max(np.abs(g - fd)) <= 1e-7 * np.max(np.abs(fd))
        pred = model.predict(p, t, values, mask, np.array([1.0, 1.2]))
        assert pred.shape == (2, 3, 2) and np.all(np.isfinite(pred))


def test_bad_arguments():
    m = _model()
    t, values, mask, eps = _problem(16)
    p = m.init_params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="eps"):
        m.loss_and_grad(p, t, values, mask, eps[:, :2])
    with pytest.raises(ValueError, match="mask"):
        m.loss_and_grad(p, t, values, mask[:, :, :1], eps)
    with pytest.raises(ValueError, match="t:"):
        m.loss_and_grad(p, t[::-1], values, mask, eps)
    with pytest.raises(ValueError, match="mask"):
        m.loss_and_grad(p, t, values, 0 * mask, eps)
    with pytest.raises(ValueError, match="encoder"):
        LatentODE(2, encoder="lstm")
    with pytest.raises(TypeError, match="rng"):
        m.init_params(3)


# -- tasks and training --------------------------------------------------------------------------------------


def _small_task(**kw):
    opts = dict(
        n_obs=30,
        n_spirals=40,
        latent_dim=2,
        rec_hidden=6,
        field_hidden=6,
        dec_hidden=6,
        batch_size=8,
        rtol=1e-4,
        atol=1e-6,
    )
    opts.update(kw)
    return LatentSpiralTask(**opts)


def test_seeded_training_is_bit_identical():
    from lrnde_np.training import TrainConfig, train

    results = []
    for _ in range(2):
        task = _small_task()
        cfg = TrainConfig(iters=6, lr=1e-2, lam=0.1, seed=3, progress=False)
        results.append(train(task, Regularization("local_unbiased"), cfg))
    a, b = results
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a.records["loss"], b.records["loss"])
    assert np.array_equal(a.records["t_reg"], b.records["t_reg"])
    ev = task.evaluate(a.params, repeats=1)
    assert np.isfinite(ev.test_loss) and ev.test_nfe > 0
    assert set(task.last_evaluation) >= {"rmse_extrapolation", "rmse_interpolation"}


# -- data ----------------------------------------------------------------------------------------------------


def test_spiral_data_is_seeded_and_shaped_as_chen():
    a = spiral_timeseries(20, n_obs=30, seed=5)
    b = spiral_timeseries(20, n_obs=30, seed=5)
    c = spiral_timeseries(20, n_obs=30, seed=6)
    assert np.array_equal(a.values, b.values) and not np.array_equal(a.values, c.values)
    assert a.t.size == 200 and a.values.shape == (20, 200, 2)
    np.testing.assert_array_equal(a.mask[:, :100].sum(axis=(1, 2)), 60)  # 30 times × 2 features
    assert a.mask[:, 100:].sum() == 0
    assert a.info["clockwise"].sum() == 10
    noise = (a.values - a.truth)[a.mask > 0]
    assert 0.2 < noise.std() < 0.4
    t, v, m = a.batch(np.arange(5), window=100)
    assert np.all(m.any(axis=(0, 2))) and t.size <= 100
    with pytest.raises(ValueError, match="n_obs"):
        spiral_timeseries(5, n_obs=101)


def test_split_indices_partition():
    parts = split_indices(50, (0.6, 0.2, 0.2), 1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(50)) and [len(p) for p in parts] == [30, 10, 10]


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_physionet_reader_on_written_files(tmp_path):
    _write(
        tmp_path / "132539.txt",
        [
            "Time,Parameter,Value",
            "00:00,RecordID,132539",
            "00:00,Age,54",
            "00:00,Weight,-1",
            "00:07,HR,80",
            "00:37,HR,90",
            "01:10,Temp,36.5",
            "47:59,HR,100",
            "48:30,HR,120",
            "02:00,GCS,15",
        ],
    )
    _write(
        tmp_path / "132540.txt",
        ["Time,Parameter,Value", "00:00,RecordID,132540", "00:20,HR,60", "03:00,Temp,38.5", "03:00,pH,7.4"],
    )
    rows = read_physionet_file(tmp_path / "132539.txt")
    assert rows[0] == (pytest.approx(7 / 60), "HR", 80.0)
    assert all(n != "Weight" for _, n, _ in rows) and all(h <= 48 for h, _, _ in rows)
    ds = load_physionet(tmp_path)
    assert ds.values.shape == (2, 49, 37) and ds.names == PHYSIONET_VARIABLES
    hr, temp = PHYSIONET_VARIABLES.index("HR"), PHYSIONET_VARIABLES.index("Temp")
    # patient 1: HR 80 (00:07 → bin 0) and 90 (00:37 → bin 1), 100 at 47:59 → bin 48; min 60, max 100
    np.testing.assert_allclose(ds.values[0, [0, 1, 48], hr], [0.5, 0.75, 1.0])
    assert ds.values[1, 0, hr] == 0.0 and ds.mask[1, 0, hr] == 1.0 and ds.mask[1, 1:, hr].sum() == 0
    np.testing.assert_allclose(ds.values[:, :, temp][ds.mask[:, :, temp] > 0], [0.0, 1.0])
    assert ds.mask.sum() == 8 and ds.t[-1] == 1.0


@pytest.mark.parametrize(
    "line, message",
    [
        ("00:30,HR", "line 3: expected 3 comma-separated fields"),
        ("00:30,HR,fast", "line 3: value 'fast' of 'HR' is not a number"),
        ("0030,HR,80", "line 3: time '0030' is not HH:MM"),
        ("00:30,Heartrate,80", "line 3: unknown parameter 'Heartrate'"),
        ("00:30,HR,nan", "line 3: value 'nan' of 'HR' is not finite"),
    ],
)
def test_physionet_malformed_rows_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "1.txt", ["Time,Parameter,Value", "00:00,RecordID,1", line])
    with pytest.raises(ValueError) as info:
        load_physionet(tmp_path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_physionet_missing_data_errors(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load_physionet(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no '\*.txt' patient files"):
        load_physionet(tmp_path)
    _write(tmp_path / "2.txt", ["Time;Parameter;Value"])
    with pytest.raises(ValueError, match="line 1: expected the header"):
        load_physionet(tmp_path)


# -- Poisson process likelihood ------------------------------------------------------------------------------


def test_poisson_term_equals_closed_form_for_constant_intensity():
    m = _model(poisson=True)
    t, values, mask, eps = _problem(20)
    p = m.init_params(np.random.default_rng(21))
    lo = m.cell.n_params + m.rec_out.n_params + m.field.n_params
    p[lo : lo + 3] = 0.0  # w = 0
    p[lo + 3] = 0.7  # c: λ = softplus(0.7) everywhere
    st = m.loss_and_grad(p, t, values, mask, eps, t0=0.0)
    lam = math.log1p(math.exp(0.7))
    n_events = mask.any(axis=2).sum()
    expected = -(n_events * math.log(lam) - values.shape[0] * lam * (t[-1] - 0.0)) / mask.sum()
    assert st.poisson_nll == pytest.approx(expected, rel=1e-10)
    plain = _model()
    q = np.delete(p, np.arange(lo, lo + 4))
    base = plain.loss_and_grad(q, t, values, mask, eps, t0=0.0)
    assert st.loss == pytest.approx(base.loss + expected, rel=1e-10)


def test_poisson_gradient_matches_finite_differences():
    m = _model(poisson=True, fixed_dt=0.1)
    t, values, mask, eps = _problem(22)
    p = m.init_params(np.random.default_rng(23))
    lo = m.cell.n_params + m.rec_out.n_params + m.field.n_params
    p[lo : lo + 4] = np.random.default_rng(24).normal(0, 0.5, 4)
    st = m.loss_and_grad(p, t, values, mask, eps, t0=0.0)
    assert st.poisson_nll != 0.0
    fd = _fd(lambda q: m.loss_and_grad(q, t, values, mask, eps, t0=0.0).loss, p)
    assert np.max(np.abs(st.grad - fd)) <= 1e-7 * np.max(np.abs(fd))


# -- the compare command ---------------------------------------------------------------------------------


def _physionet_files(directory, n=6, seed=0):
    rng = np.random.default_rng(seed)
    names = ["HR", "Temp", "pH", "GCS", "MAP"]
    for rid in range(n):
        lines = ["Time,Parameter,Value", f"00:00,RecordID,{rid}", "00:00,Age,60", "00:00,Weight,80"]
        for _ in range(15):
            lines.append(
                f"{int(rng.integers(0, 48)):02d}:{int(rng.integers(0, 60)):02d},{rng.choice(names)},"
                f"{rng.normal(50, 10):.1f}"
            )
        _write(directory / f"{rid}.txt", lines)


def test_compare_physionet_and_latent_spiral(tmp_path, capsys):
    from lrnde_np.experiments.compare import main

    data = tmp_path / "physionet"
    data.mkdir()
    _physionet_files(data)
    out = tmp_path / "out"
    code = main(
        [
            "--task",
            "physionet",
            "--data",
            str(data),
            "--iters",
            "2",
            "--batch-size",
            "2",
            "--methods",
            "vanilla",
            "--out",
            str(out),
            "--quiet",
            "--no-plot",
        ]
    )
    assert code == 0 and (out / "table.csv").exists()
    assert "Vanilla Latent ODE" in (out / "table.md").read_text()
    out2 = tmp_path / "spiral"
    code = main(
        [
            "--task",
            "latent-spiral",
            "--n-obs",
            "30",
            "--iters",
            "2",
            "--batch-size",
            "4",
            "--hidden",
            "6",
            "--methods",
            "vanilla,local-biased",
            "--out",
            str(out2),
            "--quiet",
        ]
    )
    assert code == 0 and (out2 / "predictions.png").stat().st_size > 0
    text = (out2 / "table.md").read_text()
    assert "Chen's spirals" in text and "Local Biased ERNODE" in text


def test_compare_physionet_needs_data(capsys):
    from lrnde_np.experiments.compare import main

    with pytest.raises(SystemExit, match="--task physionet needs --data"):
        main(["--task", "physionet"])
