"""The CPU ensemble (Numba prange): every trajectory is the one-trajectory solver's, to 1e-12 with the same steps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ensemble_problems import (
    blowup,
    gbm_f,
    gbm_g,
    gbm_problem,
    lv,
    lv_problem,
    lv_vjp,
    ode_mismatches,
    reg_mismatches,
    sde_mismatches,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from lrnde_np.cuda.trajectory import STACK_FULL
from lrnde_np.ensemble import CUDAUnavailableError, local_regularizer_ensemble, solve_ode_ensemble, solve_sde_ensemble
from lrnde_np.ode.loop import DT_MIN, MAX_STEPS, NONFINITE, STATUS_MESSAGES, STEP_STUCK, SUCCESS

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaExperimentalFeatureWarning")


# ---------------------------------------------------------------------------------------------------- ODE


@pytest.mark.parametrize("method", ["tsit5", "dp5", "bs3"])
def test_ode_rows_are_solve_ode(method):
    Y0, P = lv_problem(12, seed=1)
    saveat = np.linspace(0.0, 8.0, 9)  # includes t0 (y0 itself) and t1
    kw = dict(method=method, rtol=1e-6, atol=1e-7)
    ens = solve_ode_ensemble(lv, (0.0, 8.0), Y0, P, saveat=saveat, **kw)
    assert ens.y.shape == (12, 9, 2) and ens.backend == "cpu"
    assert np.all(ens.status == SUCCESS) and np.all(ens.t_end == 8.0)
    assert ode_mismatches(ens, lv, (0.0, 8.0), Y0, P, **kw) == []


def test_ode_shared_parameters_backwards_and_default_saveat():
    Y0, _ = lv_problem(6, seed=2)
    p = np.array([1.5, 1.0, 3.0, 1.0])
    ens = solve_ode_ensemble(lv, (5.0, 0.0), Y0, p, rtol=1e-5)
    assert ens.t.tolist() == [0.0]
    assert ode_mismatches(ens, lv, (5.0, 0.0), Y0, p, rtol=1e-5) == []


def test_ode_fixed_step_and_controller_options():
    Y0, P = lv_problem(5, seed=3)
    ens = solve_ode_ensemble(lv, (0.0, 2.0), Y0, P, method="rk4", dt=0.05, saveat=[0.5, 1.0, 2.0])
    assert ode_mismatches(ens, lv, (0.0, 2.0), Y0, P, method="rk4", dt=0.05) == []
    kw = dict(dt=0.3, dtmax=0.5, rtol=1e-8, controller=dict(qmax=5.0, gamma=0.8))
    ens = solve_ode_ensemble(lv, (0.0, 4.0), Y0, P, saveat=[1.0, 4.0], **kw)
    assert ode_mismatches(ens, lv, (0.0, 4.0), Y0, P, **kw) == []
    assert ens.stats["rejected"].sum() > 0  # the controller's rejection branch was exercised


def test_ode_failure_statuses_match_and_unreached_points_are_nan():
    # Rows 0-1 blow up before t = 1 (y0 = 2, 4), row 2 does not (y0 = 0.5: blow-up at t = 2).
    Y0 = np.array([[2.0], [4.0], [0.5]])
    saveat = [0.25, 0.5, 1.0]
    ens = solve_ode_ensemble(blowup, (0.0, 1.0), Y0, np.array([1.0]), saveat=saveat)
    assert ens.status[2] == SUCCESS and set(ens.status[:2]) <= {DT_MIN, NONFINITE}
    assert np.isnan(ens.y[0, 2]).all() and np.isfinite(ens.y[2]).all()
    assert ode_mismatches(ens, blowup, (0.0, 1.0), Y0, np.array([1.0])) == []
    # max_steps
    Y0, P = lv_problem(4, seed=4)
    ens = solve_ode_ensemble(lv, (0.0, 10.0), Y0, P, saveat=[1.0, 10.0], max_steps=12)
    assert np.all(ens.status == MAX_STEPS) and np.all(ens.stats["accepted"] + ens.stats["rejected"] == 12)
    assert ode_mismatches(ens, lv, (0.0, 10.0), Y0, P, max_steps=12) == []
    # a controller that cannot shrink a rejected step
    kw = dict(dt=1.0, rtol=1e-10, atol=1e-10, controller=dict(qmin=1.0))
    ens = solve_ode_ensemble(lv, (0.0, 10.0), Y0, P, saveat=[10.0], **kw)
    assert np.all(ens.status == STEP_STUCK)
    assert ode_mismatches(ens, lv, (0.0, 10.0), Y0, P, **kw) == []


@settings(max_examples=15, deadline=None)
@given(
    y0=st.lists(st.floats(0.2, 3.0), min_size=2, max_size=2),
    p=st.lists(st.floats(0.2, 3.0), min_size=4, max_size=4),
    rtol=st.sampled_from([1e-3, 1e-5, 1e-8]),
    t1=st.floats(0.5, 15.0),
    method=st.sampled_from(["tsit5", "bs3"]),
)
def test_ode_row_property(y0, p, rtol, t1, method):
    """A random row, put among other rows, is solved exactly as alone."""
    Y0, P = lv_problem(3, seed=5)
    Y0[1] = y0
    P[1] = p
    saveat = np.linspace(0.0, t1, 4)
    ens = solve_ode_ensemble(lv, (0.0, t1), Y0, P, saveat=saveat, rtol=rtol, atol=rtol, method=method)
    assert ode_mismatches(ens_row(ens, 1), lv, (0.0, t1), Y0[1:2], P[1:2], rtol=rtol, atol=rtol, method=method) == []


def ens_row(ens, i):
    """A one-row view of an ensemble result (for the per-row oracle)."""
    from lrnde_np.ensemble import EnsembleSolution

    return EnsembleSolution(
        t=ens.t,
        y=ens.y[i : i + 1],
        status=ens.status[i : i + 1],
        t_end=ens.t_end[i : i + 1],
        stats={k: v[i : i + 1] for k, v in ens.stats.items()},
        backend=ens.backend,
    )


def test_ode_prange_uses_both_threads_and_gives_the_same_answer():
    import numba

    Y0, P = lv_problem(40, seed=6)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = solve_ode_ensemble(lv, (0.0, 5.0), Y0, P, saveat=[5.0], rtol=1e-6)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = solve_ode_ensemble(lv, (0.0, 5.0), Y0, P, saveat=[5.0], rtol=1e-6)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.y, many.y)
    np.testing.assert_array_equal(one.stats["nfe"], many.stats["nfe"])


# ----------------------------------------------------------------------------------------- local regularizer


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(through_k1=True),
        dict(through_state=True),
        dict(heuristic="error_stiffness", stiffness_weight=0.3),
        dict(heuristic="stiffness"),
        dict(compute_grad=False),
    ],
    ids=["frozen_k1", "through_k1", "through_state", "error_stiffness", "stiffness", "no_grad"],
)
def test_local_regularizer_rows(kw):
    Z, P = lv_problem(10, seed=7)
    t_reg = np.random.default_rng(8).uniform(0.0, 4.0, 10)
    ens = local_regularizer_ensemble(lv, lv_vjp, t_reg, 5.0, Z, P, 1e-6, 1e-6, **kw)
    assert np.all(ens.status == SUCCESS)
    assert reg_mismatches(ens, lv, lv_vjp, t_reg, 5.0, Z, P, 1e-6, 1e-6, **kw) == []
    if kw.get("compute_grad", True):
        assert np.all(np.isfinite(ens.grad_p)) and np.any(ens.grad_p != 0.0)


def test_local_regularizer_shared_parameters_and_nonfinite_row():
    Z, _ = lv_problem(4, seed=9)
    Z[2] = [1e300, 1e300]  # f overflows: local_regularizer raises, the ensemble flags the row
    p = np.array([1.5, 1.0, 3.0, 1.0])
    ens = local_regularizer_ensemble(lv, lv_vjp, 0.5, 2.0, Z, p, 1e-4, 1e-6)
    assert ens.status.tolist() == [SUCCESS, SUCCESS, NONFINITE, SUCCESS] and np.isnan(ens.value[2])
    keep = [0, 1, 3]
    sub = type(ens)(**{k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in vars(ens).items()})
    assert reg_mismatches(sub, lv, lv_vjp, np.full(3, 0.5), 2.0, Z[keep], p, 1e-4, 1e-6) == []


# ------------------------------------------------------------------------------------------------------- SDE


@pytest.mark.parametrize("method,noise", [("sosri", "diagonal"), ("sriw1", "scalar"), ("sosri2", "diagonal")])
def test_sde_paths_are_solve_sde_with_the_same_seed(method, noise):
    X0, P = gbm_problem(6, seed=10)
    seeds = np.array([3, 1, 4, 1, 5, 9])  # a repeated seed gives a repeated path where x0, p repeat
    kw = dict(method=method, noise=noise, dt=0.1)  # a large first step: rejections, RSwM3 bridging
    ens = solve_sde_ensemble(gbm_f, gbm_g, (0.0, 0.3), X0, P, saveat=[0.0, 0.1, 0.3], seeds=seeds, **kw)
    assert np.all(ens.status == SUCCESS) and ens.stats["rejected"].sum() > 0
    assert sde_mismatches(ens, gbm_f, gbm_g, (0.0, 0.3), X0, P, seeds, **kw) == []


def test_sde_seed_means_consecutive_seeds_and_euler_maruyama():
    X0, P = gbm_problem(4, seed=11)
    ens = solve_sde_ensemble(gbm_f, gbm_g, (0.0, 0.2), X0, P, seed=100, rtol=1e-2)
    assert sde_mismatches(ens, gbm_f, gbm_g, (0.0, 0.2), X0, P, 100 + np.arange(4), rtol=1e-2) == []
    ens = solve_sde_ensemble(gbm_f, gbm_g, (0.0, 0.2), X0, P, seed=7, method="em", dt=0.01, saveat=[0.1, 0.2])
    assert sde_mismatches(ens, gbm_f, gbm_g, (0.0, 0.2), X0, P, 7 + np.arange(4), method="em", dt=0.01) == []
    # max_steps counts rejected attempts too, as solve_sde does
    ens = solve_sde_ensemble(gbm_f, gbm_g, (0.0, 0.2), X0, P, seed=3, dt=0.1, max_steps=7)
    assert np.all(ens.status == MAX_STEPS) and ens.stats["rejected"].sum() > 0
    assert sde_mismatches(ens, gbm_f, gbm_g, (0.0, 0.2), X0, P, 3 + np.arange(4), dt=0.1, max_steps=7) == []


def test_sde_full_stack_is_a_status_not_a_crash():
    assert STACK_FULL not in STATUS_MESSAGES  # the ensembles' own code, distinct from the solvers'
    X0, P = gbm_problem(3, seed=12)
    ens = solve_sde_ensemble(gbm_f, gbm_g, (0.0, 0.3), X0, P, seed=0, dt=0.3, saveat=[0.3], stack_size=2)
    assert np.all(ens.status == STACK_FULL)
    assert "stack" in ens.message(0)
    assert np.isnan(ens.y).all() and np.all(ens.t_end < 0.3)


# ---------------------------------------------------------------------------------------------------- errors


def test_bad_inputs_name_the_argument():
    Y0, P = lv_problem(4)
    with pytest.raises(ValueError, match="p must"):
        solve_ode_ensemble(lv, (0.0, 1.0), Y0, P[:3])
    with pytest.raises(ValueError, match="y0"):
        solve_ode_ensemble(lv, (0.0, 1.0), Y0[0], P)
    with pytest.raises(ValueError, match="y0"):
        solve_ode_ensemble(lv, (0.0, 1.0), np.zeros((0, 2)), P)
    with pytest.raises(ValueError, match="backend"):
        solve_ode_ensemble(lv, (0.0, 1.0), Y0, P, backend="gpu")
    with pytest.raises(TypeError, match="njit"):
        solve_ode_ensemble(lambda t, y, p, out: None, (0.0, 1.0), Y0, P)
    with pytest.raises(ValueError, match="t_reg"):
        local_regularizer_ensemble(lv, lv_vjp, np.zeros(3), 1.0, Y0, P, 1e-3, 1e-6)
    with pytest.raises(ValueError, match="f_vjp"):
        local_regularizer_ensemble(lv, None, 0.0, 1.0, Y0, P, 1e-3, 1e-6)
    X0, Pg = gbm_problem(4)
    with pytest.raises(ValueError, match="seeds"):
        solve_sde_ensemble(gbm_f, gbm_g, (0.0, 1.0), X0, Pg, seeds=[1, 2, 3])
    with pytest.raises(ValueError, match="seed"):
        solve_sde_ensemble(gbm_f, gbm_g, (0.0, 1.0), X0, Pg)
    with pytest.raises(ValueError, match="stack_size"):
        solve_sde_ensemble(gbm_f, gbm_g, (0.0, 1.0), X0, Pg, seed=1, stack_size=1)


def test_cuda_backend_without_a_gpu_names_what_is_missing():
    from numba import config, cuda

    if config.ENABLE_CUDASIM or cuda.is_available():
        pytest.skip("a GPU (or the simulator) is present")
    Y0, P = lv_problem(2)
    with pytest.raises(CUDAUnavailableError, match="GPU.*driver"):
        solve_ode_ensemble(lv, (0.0, 1.0), Y0, P, backend="cuda")


def test_the_library_does_not_import_numba_cuda():
    code = textwrap.dedent("""
        import sys, numpy as np
        import lrnde_np, lrnde_np.ensemble
        from numba import njit
        @njit
        def f(t, y, p, out):
            out[0] = -y[0]
        lrnde_np.ensemble.solve_ode_ensemble(f, (0.0, 1.0), np.ones((2, 1)))
        bad = [m for m in sys.modules if m.startswith(("numba.cuda", "numba_cuda"))]
        assert not bad, bad
    """)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_cuda_device_function_serves_the_cpu_backend_too():
    """A function written for the GPU (@cuda.jit(device=True)) is recompiled by @njit for backend='cpu'.
    Checked in a subprocess: numba.cuda must not be imported into the test process's library modules."""
    code = textwrap.dedent("""
        import numpy as np
        from numba import cuda
        from lrnde_np.ensemble import solve_ode_ensemble
        from lrnde_np.ode import solve_ode
        from ensemble_problems import lv
        @cuda.jit(device=True)
        def lv_dev(t, y, p, out):
            out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
            out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]
        @cuda.jit
        def not_device(t, y, p, out):
            pass
        Y0 = np.array([[1.0, 1.0], [2.0, 0.5]]); P = np.array([1.5, 1.0, 3.0, 1.0])
        ens = solve_ode_ensemble(lv_dev, (0.0, 3.0), Y0, P, saveat=[3.0])
        ref = solve_ode(lv, (0.0, 3.0), Y0[1], P, saveat=[3.0])
        assert np.array_equal(ens.y[1], ref.y), (ens.y[1], ref.y)
        try:
            solve_ode_ensemble(not_device, (0.0, 3.0), Y0, P)
        except TypeError as exc:
            assert "kernel" in str(exc), exc
        else:
            raise AssertionError("a CUDA kernel was accepted as a right-hand side")
    """)
    env = dict(
        os.environ,
        PYTHONWARNINGS="ignore",
        PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


@njit(cache=True)
def _writes_past_out(t, y, p, out):
    out[0] = -y[0]
    out[out.size + 3] = 1.0


def test_a_right_hand_side_writing_out_of_range_is_refused_before_the_parallel_loop():
    with pytest.raises((ValueError, TypeError), match="f"):
        solve_ode_ensemble(_writes_past_out, (0.0, 1.0), np.ones((3, 1)))


def test_bench_ensemble_runs_and_reports_the_gpu_as_skipped(capsys, tmp_path):
    """`lrnde bench ensemble` on a tiny ensemble: every row agrees with the loop; no GPU here is reported."""
    import json

    from lrnde_np.benchmarks import main as bench_main

    out_json = tmp_path / "bench.json"
    assert bench_main(["ensemble", "--n", "8", "--repeats", "1", "--gpu-n", "8", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    res = json.loads(out_json.read_text())
    assert set(res["problems"]) == {"LV", "GBM", "GBM-sriw1"}
    for row in res["problems"].values():
        assert row["mismatched_rows"] == 0 and row["per_s_prange_all"] > 0
        if row["gpu"] is None:
            assert "skipped" in text and row["gpu_skipped"]
