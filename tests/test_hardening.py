"""Regression tests for issue 9: one per row of its table (hangs, crashes, silent wrong answers, data loss, late
or unclear errors, slow checkpoints), plus Ctrl-C.  What could hang or kill the interpreter runs in a
subprocess with a timeout, so that a regression fails the test instead of the suite."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from numba import njit

from lrnde_np import cli, training
from lrnde_np.check import check_gradient, check_vjp
from lrnde_np.experiments import compare as compare_mod
from lrnde_np.experiments import train_cli
from lrnde_np.experiments.solve_cli import lotka_volterra
from lrnde_np.ode import solve_ode
from lrnde_np.ode.loop import MAX_STEPS, STEP_STUCK, SUCCESS
from lrnde_np.ode.rhs import PythonRHSWarning, UserFunctionError, check_user_function
from lrnde_np.sde import solve_sde
from lrnde_np.training import CheckpointError, RunLock, TrainConfig, load_checkpoint, train

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
# Subprocesses import this file as ``test_hardening`` (as pytest does), so that Numba's cache of the functions
# below, keyed by module name, serves both.


def run_isolated(code, timeout=240):
    """Run ``code`` in a fresh interpreter (repository root on the path); (returncode, stdout + stderr)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout + proc.stderr


@njit(cache=True)
def decay(t, y, p, out):
    for i in range(y.size):
        out[i] = -(1.0 + i) * y[i]


@njit(cache=True)
def stiff(t, y, p, out):
    out[0] = -500.0 * (y[0] - np.cos(t))
    out[1] = -y[1]


@njit(cache=True)
def noise(t, y, p, out):
    for i in range(y.size):
        out[i] = 0.3


@njit(cache=True)
def writes_past_out(t, y, p, out):
    for i in range(out.size + 4):
        out[i] = -y[0]


@njit(cache=True)
def returns_value(t, y, p, out):
    return -y


@njit(cache=True)
def two_arguments(t, y):
    return -y


def python_g_returning(t, y, p, out):
    return 0.3 * np.ones_like(y)


def python_f_returning(t, y, p, out):
    return -y


Y2 = np.array([1.0, 0.5])


# ---------------------------------------------------------------------------------------------------------
# hang: qmin = 1 never shrinks a rejected step; max_steps counted accepted steps only


def test_hang_qmin_one_is_a_failure_status_not_a_loop():
    code = """
        import numpy as np
        from test_hardening import stiff, noise
        from lrnde_np.ode import solve_ode
        from lrnde_np.sde import solve_sde
        s = solve_ode(stiff, (0.0, 10.0), np.array([2.0, 1.0]), rtol=1e-10, atol=1e-12, controller={"qmin": 1.0},
                      max_steps=10**6)
        print("ode", s.status, s.stats["rejected"])
        s = solve_sde(stiff, noise, (0.0, 10.0), np.array([2.0, 1.0]), rtol=1e-5, atol=1e-5, seed=1,
                      controller={"qmin": 1.0}, max_steps=10**6)
        print("sde", s.status, s.stats["rejected"])
    """
    rc, out = run_isolated(code, timeout=300)
    assert rc == 0, out
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("ode", "sde")))
    for kind in ("ode", "sde"):
        status, rejected = map(int, lines[kind].split())
        assert status == STEP_STUCK and rejected == 1, out


def test_rejected_steps_count_toward_max_steps():
    # qmin = 0.999: every rejection shrinks the step a little, so reaching tolerance takes thousands of tries
    kw = dict(rtol=1e-10, atol=1e-12, controller={"qmin": 0.999, "qmax": 1.001}, max_steps=200, dt=1.0)
    s = solve_ode(stiff, (0.0, 10.0), np.array([2.0, 1.0]), **kw)
    assert s.status == MAX_STEPS and s.stats["accepted"] + s.stats["rejected"] == 200 and s.stats["rejected"] > 0
    s = solve_sde(stiff, noise, (0.0, 10.0), np.array([2.0, 1.0]), seed=2, **kw)
    assert s.status == MAX_STEPS and s.stats["accepted"] + s.stats["rejected"] == 200 and s.stats["rejected"] > 0
    assert "rejected" in s.message


@pytest.mark.parametrize(
    "controller,key",
    [
        ({"qmin": 100.0}, "qmin"),
        ({"qmax": -1}, "qmax"),
        ({"gamma": -1}, "gamma"),
        ({"qmin": float("nan")}, "qmin"),
        ({"gamma": 0}, "gamma"),
        ({"qmax": 0}, "qmax"),
        ({"qmax": 1.0}, "qmax"),
        ({"beta1": float("inf")}, "beta1"),
        ({"beta1": -0.1}, "beta1"),
        ({"qoldinit": 0.0}, "qoldinit"),
    ],
)
def test_bad_controller_settings_name_the_key(controller, key):
    for solve in (
        lambda: solve_ode(decay, (0.0, 1.0), Y2, controller=controller),
        lambda: solve_sde(decay, noise, (0.0, 1.0), Y2, seed=0, controller=controller),
    ):
        with pytest.raises(ValueError, match=f"controller: {key}"):
            solve()


def test_controller_value_types_and_integer_limits():
    for solve in (
        lambda **kw: solve_ode(decay, (0.0, 1.0), Y2, **kw),
        lambda **kw: solve_sde(decay, noise, (0.0, 1.0), Y2, seed=0, **kw),
    ):
        with pytest.raises(TypeError, match="controller: qmax"):
            solve(controller={"qmax": "abc"})
        with pytest.raises(TypeError, match="controller: qmin"):
            solve(controller={"qmin": True})
        with pytest.raises(TypeError, match="controller must be a dict"):
            solve(controller=[("qmin", 0.2)])
        with pytest.raises(TypeError, match="rtol"):
            solve(rtol=True)
        with pytest.raises(ValueError, match="max_steps"):
            solve(max_steps=True)
        with pytest.raises(ValueError, match="max_steps"):
            solve(max_steps=10**30)
        with pytest.raises(TypeError, match="atol"):
            solve(atol="1e-3")
    # valid boundary settings are accepted: qmin = 1 (a failure status on the first rejection), gamma = 1
    assert solve_ode(decay, (0.0, 1.0), Y2, controller={"qmin": 1.0, "gamma": 1.0}).status in (SUCCESS, STEP_STUCK)


# ---------------------------------------------------------------------------------------------------------
# crash: writes past out; check_vjp with p shorter than the VJP writes


def test_rhs_and_diffusion_writing_past_out_are_errors_not_crashes():
    code = """
        import numpy as np
        from test_hardening import writes_past_out, decay, noise
        from lrnde_np.ode import solve_ode
        from lrnde_np.sde import solve_sde
        for call in (lambda: solve_ode(writes_past_out, (0.0, 1.0), np.ones(3)),
                     lambda: solve_sde(decay, writes_past_out, (0.0, 1.0), np.ones(3), seed=0),
                     lambda: solve_sde(writes_past_out, noise, (0.0, 1.0), np.ones(3), seed=0)):
            try:
                call()
                print("no error")
            except ValueError as exc:
                print("ValueError:", exc)
    """
    rc, out = run_isolated(code)
    assert rc == 0, out
    errors = [line for line in out.splitlines() if line.startswith("ValueError:")]
    assert len(errors) == 3, out
    assert "f (writes_past_out)" in errors[0] and "g (writes_past_out)" in errors[1]
    assert "f (writes_past_out)" in errors[2]
    assert all("out of range" in e or "past the end" in e for e in errors)


def test_check_vjp_with_short_p_is_a_value_error_not_heap_corruption():
    code = """
        import numpy as np
        from test_check import field, field_vjp
        from lrnde_np.check import check_vjp
        try:
            check_vjp(field, field_vjp, np.array([0.7, -0.4]), np.array([1.3, 0.8]))
            print("no error")
        except ValueError as exc:
            print("ValueError:", exc)
    """
    rc, out = run_isolated(code)
    assert rc == 0 and "ValueError:" in out and "f (field)" in out and "index" in out, out


def test_compiled_guard_catches_writes_past_the_end_when_the_source_cannot_run_in_python():
    # check_user_function's second stage alone (sizes over the interpreted-run limit): canary padding
    y = np.ones(3000)
    with pytest.raises(UserFunctionError, match="writes past the end of out"):
        check_user_function(writes_past_out, "rhs", "f", 0.0, y, np.zeros(0))


# ---------------------------------------------------------------------------------------------------------
# silent wrong: returning instead of writing; Lotka-Volterra with the wrong p / y0; complex y0


def test_functions_returning_instead_of_writing_are_type_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PythonRHSWarning)
        with pytest.raises(TypeError, match="g .*returns a value"):
            solve_sde(decay, python_g_returning, (0.0, 1.0), Y2, seed=0)
        with pytest.raises(TypeError, match="f .*returns a value"):
            solve_ode(python_f_returning, (0.0, 1.0), Y2)
    with pytest.raises(TypeError, match="f \\(returns_value\\) returns a value"):
        solve_ode(returns_value, (0.0, 1.0), Y2)


@pytest.mark.parametrize(
    "y0,p", [(Y2, None), (Y2, np.array([1.5, 1.0])), (np.array([1.0]), np.array([1.5, 1.0, 3.0, 1.0]))]
)
def test_lotka_volterra_with_missing_parameters_or_state_is_a_value_error(y0, p):
    with pytest.raises(ValueError, match="f \\(lotka_volterra\\) indexes out of range"):
        solve_ode(lotka_volterra, (0.0, 1.0), y0, p)


def test_complex_state_is_rejected():
    for call in (
        lambda: solve_ode(decay, (0.0, 1.0), Y2 + 1j),
        lambda: solve_sde(decay, noise, (0.0, 1.0), Y2 + 1j, seed=0),
        lambda: solve_ode(decay, (0.0, 1.0), Y2, p=np.array([1j])),
        lambda: check_vjp(decay, decay_vjp, Y2 + 1j),
    ):
        with pytest.raises(TypeError, match="complex"):
            call()


@njit(cache=True)
def decay_vjp(t, y, p, a, out_y, out_p):
    for i in range(y.size):
        out_y[i] = -(1.0 + i) * a[i]


# ---------------------------------------------------------------------------------------------------------
# silent wrong: the checkers


@njit(cache=True)
def tfield(t, y, p, out):
    out[0] = p[0] * y[1] + t * y[0]
    out[1] = -p[1] * y[0]


@njit(cache=True)
def tfield_vjp(t, y, p, a, out_y, out_p):
    out_y[0] = -a[1] * p[1] + a[0] * t
    out_y[1] = a[0] * p[0]
    out_p[0] = a[0] * y[1]
    out_p[1] = -a[1] * y[0]


@njit(cache=True)
def tfield_vjp_forgets_t(t, y, p, a, out_y, out_p):
    tfield_vjp(0.0, y, p, a, out_y, out_p)  # right only where t = 0


@njit(cache=True)
def tfield_vjp_4_percent(t, y, p, a, out_y, out_p):
    tfield_vjp(t, y, p, a, out_y, out_p)
    out_p[0] *= 1.04


YT, PT = np.array([0.3, -0.2]), np.array([1.0, 2.0])


def test_check_vjp_probes_random_points_besides_the_given_one():
    rep = check_vjp(tfield, tfield_vjp_forgets_t, YT, PT)  # default t = 0, where it is right
    assert not rep.passed and "random point" in str(rep)
    assert check_vjp(tfield, tfield_vjp_forgets_t, YT, PT, random_points=0).passed  # the old blind spot
    assert check_vjp(tfield, tfield_vjp, YT, PT).passed
    with pytest.raises(ValueError, match="random_points"):
        check_vjp(tfield, tfield_vjp, YT, PT, random_points=-1)


def test_check_gradient_uses_the_users_tolerance():
    rep = check_gradient(tfield, tfield_vjp_4_percent, (0.0, 1.0), YT, PT, rtol=1e-3)
    assert not rep.passed and rep.max_rel_error_p == pytest.approx(0.04, rel=0.05)
    assert any(r[4] == 1e-3 and "replayed" in r[1] for r in rep.rows)  # the VJP row: rtol, unchanged
    assert any("budget" in r[1] for r in rep.rows)  # the adjoint's budget, separately
    for adjoint in ("discrete", "backsolve"):
        assert check_gradient(tfield, tfield_vjp, (0.0, 1.0), YT, PT, rtol=1e-3, adjoint=adjoint).passed


# ---------------------------------------------------------------------------------------------------------
# CLI: data loss, late errors, unclear errors


TINY = ["--task", "spiral", "--hidden", "8", "--no-plot", "--quiet", "--iters", "2", "--methods", "vanilla"]
TRAIN_TINY = ["--task", "spiral", "--hidden", "8", "--quiet", "--iters", "2", "--method", "vanilla"]


def test_second_compare_into_a_locked_run_directory_stops_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(compare_mod, "run_method", lambda *a, **k: pytest.fail("trained despite the lock"))
    with RunLock(tmp_path / ".lrnde.lock"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["compare", *TINY, "--out", str(tmp_path)])
    assert "in use by another lrnde run" in exc.value.code and f"pid {os.getpid()}" in exc.value.code
    assert not (tmp_path / ".lrnde.lock").exists()  # released, and nothing left behind


def test_lock_between_processes(tmp_path):
    code = f"""
        import time
        from lrnde_np.training import RunLock
        with RunLock({str(tmp_path / "x.lock")!r}):
            print("locked", flush=True)
            time.sleep(30)
    """
    env = dict(os.environ, PYTHONPATH=ROOT)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(training.RunLocked, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "x.lock").acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path / "x.lock"):  # the dead holder's lock is gone with it
        pass


def test_train_to_an_unwritable_out_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(train_cli, "run_method", lambda *a, **k: pytest.fail("trained before checking --out"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for flag in ("--out", "--checkpoint"):
        with pytest.raises(SystemExit) as exc:
            cli.main(["train", *TRAIN_TINY, flag, str(blocker / "run.json")])
        assert f"{flag} {blocker / 'run.json'}: cannot write there" in exc.value.code


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--lambda", "-1"], "--lambda must be"),
        (["--lambda", "nan"], "--lambda must be"),
        (["--lambda-end", "0"], "--lambda-end must be"),
        (["--rtol", "0"], "--rtol must be"),
        (["--eval-batches", "0"], "--eval-batches must be"),
        (["--atol", "inf"], "--atol must be"),
        (["--schedule", "exponential", "--lambda", "0", "--lambda-end", "1"], "local-unbiased: lam must be positive"),
    ],
)
def test_bad_numbers_are_rejected_before_any_training(tmp_path, monkeypatch, flags, message):
    monkeypatch.setattr(compare_mod, "run_method", lambda *a, **k: pytest.fail("trained before validating"))
    argv = ["compare", *TINY[:-2], "--methods", "vanilla,local-unbiased", "--out", str(tmp_path), *flags]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert isinstance(exc.value.code, str) and message in exc.value.code and "\n" not in exc.value.code
    assert list(tmp_path.iterdir()) == []


def test_resume_from_a_corrupt_checkpoint_names_the_file(tmp_path):
    ck = tmp_path / "ck.npz"
    argv = ["train", *TRAIN_TINY, "--checkpoint", str(ck)]
    assert cli.main(argv) == 0
    data = ck.read_bytes()
    for broken in (data[: len(data) // 2], b"\0" * 100, data[:-30]):
        ck.write_bytes(broken)
        with pytest.raises(SystemExit) as exc:
            cli.main(argv + ["--resume"])
        assert str(ck) in exc.value.code and "\n" not in exc.value.code and "Traceback" not in exc.value.code


def test_entry_point_one_line_errors_and_debug(tmp_path, capsys, monkeypatch):
    def boom(argv):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "boom", (f"{__name__}:_boom", "test"))
    monkeypatch.setattr(sys.modules[__name__], "_boom", boom, raising=False)
    assert cli.entry_point(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lrnde: RuntimeError: disk on fire second line")
    with pytest.raises(RuntimeError):
        cli.entry_point(["boom", "--debug"])


def _boom(argv):  # replaced by the test
    raise AssertionError


def test_compiled_functions_with_the_wrong_signature_get_one_line_errors():
    with pytest.raises(TypeError) as exc:
        solve_ode(two_arguments, (0.0, 1.0), Y2)
    msg = str(exc.value)
    assert "\n" not in msg and "f (two_arguments" in msg and "4 arguments" in msg
    with pytest.raises(TypeError) as exc:
        solve_ode(returns_value, (0.0, 1.0), Y2)
    assert "\n" not in str(exc.value) and "returns a value" in str(exc.value)


# ---------------------------------------------------------------------------------------------------------
# slow: checkpoints cost O(new records)


class Quadratic:
    name = "quadratic"

    def config(self):
        return dict(task="quadratic")

    def init_params(self, rng):
        return rng.normal(size=3)

    def sample_batch(self, rng):
        return 0.01 * rng.normal(size=3)

    def step(self, params, batch, regularization, lam, rng):
        from lrnde_np.models.base import StepOutcome

        r = params - 1.0 + batch
        return StepOutcome(
            loss=0.5 * float(r @ r),
            task_loss=0.5 * float(r @ r),
            reg_value=0.0,
            accuracy=float("nan"),
            grad=r.copy(),
            nfe_forward=1,
            nfe_reg=0,
            nfe_backward=1,
        )


def test_checkpoint_records_are_appended_not_rewritten(tmp_path, monkeypatch):
    from lrnde_np.models.node import Regularization

    monkeypatch.setattr(training, "INLINE_RECORDS", 5)
    appended = []
    real_append = training.RecordLog.append

    def spy(self, records):
        before = self.written
        real_append(self, records)
        appended.append(self.written - before)

    monkeypatch.setattr(training.RecordLog, "append", spy)
    ck = tmp_path / "q.npz"
    cfg = TrainConfig(iters=30, lr=0.1, seed=1, checkpoint=str(ck), checkpoint_every=4, progress=False)
    reference = train(Quadratic(), Regularization("none"), TrainConfig(iters=30, lr=0.1, seed=1, progress=False))

    class Stop(Exception):
        pass

    def stop(it, record):
        if it == 21:
            raise Stop

    with pytest.raises(Stop):
        train(Quadratic(), Regularization("none"), cfg, callback=stop)
    # the first write past 5 records writes all 8, every later one only the 4 new ones
    assert appended == [8, 4, 4, 4]
    saved = load_checkpoint(ck)
    assert saved["iteration"] == 20 and len(saved["records"]["loss"]) == 20
    resumed = train(Quadratic(), Regularization("none"), cfg)
    np.testing.assert_array_equal(resumed.params, reference.params)
    for k in ("loss", "iteration", "lam"):
        np.testing.assert_array_equal(resumed.records[k], reference.records[k])
    # a side file shorter than the checkpoint says is a clear error
    side = training.records_path(ck)
    with open(side, "r+b") as fh:
        fh.truncate(8 * 3)
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(ck)


# ---------------------------------------------------------------------------------------------------------
# Ctrl-C inside a compiled loop


@pytest.mark.parametrize("which", ["ode", "sde"])
def test_ctrl_c_stops_a_long_compiled_solve(which):
    call = (
        "solve_ode(decay, (0.0, 1e9), np.ones(2), dtmax=1e-4, max_steps=10**15)"
        if which == "ode"
        else "solve_sde(decay, noise, (0.0, 1e9), np.ones(2), seed=0, dtmax=1e-4, max_steps=10**15)"
    )
    code = f"""
        import signal, time, numpy as np
        signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with SIGINT ignored (nohup)
        from test_hardening import decay, noise
        from lrnde_np.ode import solve_ode
        from lrnde_np.sde import solve_sde
        solve_ode(decay, (0.0, 1.0), np.ones(2)); solve_sde(decay, noise, (0.0, 1.0), np.ones(2), seed=0)
        print("ready", flush=True)
        start = time.perf_counter()
        try:
            {call}
            print("finished")
        except KeyboardInterrupt:
            print(f"interrupted {{time.perf_counter() - start:.3f}}", flush=True)
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        latency = time.perf_counter() - sent
    finally:
        proc.kill()
    assert out.startswith("interrupted"), out + err
    assert latency < 5.0, latency  # ms in practice; generous for a loaded CI machine


@njit(cache=True)
def writes_half(t, y, p, out):
    out[0] = -y[0]


@njit(cache=True)
def changes_y(t, y, p, out):
    y[0] = 0.0
    out[:] = -y


def test_checked_first_call_catches_unwritten_outputs_and_changed_inputs_and_is_cached():
    with pytest.raises(UserFunctionError, match=r"does not write out\[1\]"):
        solve_ode(writes_half, (0.0, 1.0), Y2)
    with pytest.raises(UserFunctionError, match="modifies its input y"):
        solve_ode(changes_y, (0.0, 1.0), Y2)
    calls = []

    def counted(t, y, p, out):
        calls.append(t)
        out[:] = -y

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PythonRHSWarning)
        solve_ode(counted, (0.0, 1.0), Y2)
        first = len(calls)
        solve_ode(counted, (0.0, 1.0), Y2)
        second = len(calls) - first
        solve_ode(counted, (0.0, 1.0), np.ones(3))  # new sizes: checked again (3 guarded calls)
        third = len(calls) - first - second
    assert first == second + 3 and third == second + 3


# ---------------------------------------------------------------------------------------------------------
# the adjoints check the user's VJP (and f) on first use, their max_steps and their cotangents


@njit(cache=True)
def decay_vjp_writes_past_out(t, y, p, a, out_y, out_p):
    for i in range(y.size + 3):
        out_y[i] = -(1.0 + i) * a[0]


def test_adjoints_check_the_vjp_max_steps_and_cotangents():
    code = """
        import numpy as np
        from test_hardening import decay, decay_vjp_writes_past_out
        from lrnde_np.ode import solve_ode
        from lrnde_np.adjoint import (backsolve_adjoint, discrete_adjoint, interpolating_adjoint,
                                      quadrature_adjoint)
        sol = solve_ode(decay, (0.0, 1.0), np.ones(3), record_states=True)
        g = np.ones_like(sol.y)
        calls = {
            "discrete": lambda: discrete_adjoint(sol, decay_vjp_writes_past_out, g),
            "backsolve": lambda: backsolve_adjoint(decay, decay_vjp_writes_past_out, sol, g),
            "interpolating": lambda: interpolating_adjoint(decay_vjp_writes_past_out, sol, g),
            "quadrature": lambda: quadrature_adjoint(decay_vjp_writes_past_out, sol, g),
        }
        for name, call in calls.items():
            try:
                call()
                print(name, "no error")
            except ValueError as exc:
                print(name, "ValueError:", exc)
    """
    rc, out = run_isolated(code)
    assert rc == 0, out
    for name in ("discrete", "backsolve", "interpolating", "quadrature"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert "ValueError:" in line and "f_vjp (decay_vjp_writes_past_out)" in line, out


def test_adjoint_max_steps_and_grad_y_are_checked():
    from lrnde_np.adjoint import backsolve_adjoint, discrete_adjoint, interpolating_adjoint

    @njit
    def decay_vjp(t, y, p, a, out_y, out_p):
        for i in range(y.size):
            out_y[i] = -(1.0 + i) * a[i]

    sol = solve_ode(decay, (0.0, 1.0), np.ones(3), record_states=True)
    g = np.ones_like(sol.y)
    for bad in (True, 2.5, 0, 10**30):
        with pytest.raises(ValueError, match="max_steps"):
            backsolve_adjoint(decay, decay_vjp, sol, g, max_steps=bad)
        with pytest.raises(ValueError, match="max_steps"):
            interpolating_adjoint(decay_vjp, sol, g, max_steps=bad)
    with pytest.raises(TypeError, match="grad_y"):
        discrete_adjoint(sol, decay_vjp, [["a"] * 3] * sol.y.shape[0])
    # and a correct VJP still passes: L = Σ_k Σ_i y_i(t_k), dL/dy0_i = Σ_k exp(−(1+i) t_k) (to the solve's tolerance)
    ok = discrete_adjoint(sol, decay_vjp, g)
    exact = np.exp(-np.outer(sol.t, np.arange(1.0, 4.0))).sum(axis=0)
    np.testing.assert_allclose(ok.grad_y0, exact, rtol=1e-2)


def test_local_regularizer_never_returns_a_silent_nan():
    from lrnde_np.regularize import local_regularizer

    @njit
    def decay_vjp(t, y, p, a, out_y, out_p):
        for i in range(y.size):
            out_y[i] = -(1.0 + i) * a[i]

    z = np.array([1.0, 0.5])
    # a huge but finite step: heuristic "error" no longer picks up the stiffness term's overflow (0·NaN)
    reg = local_regularizer(decay, decay_vjp, 0.0, 4e40, z, None, 1e-3, 1e-6, heuristic="error")
    assert np.isfinite(reg.value) and reg.value > 0.0
    # a step whose stages overflow: a ValueError naming t_reg
    with pytest.raises(ValueError, match="t_reg"):
        local_regularizer(decay, decay_vjp, 0.0, 1e300, z, None, 1e-3, 1e-6)
