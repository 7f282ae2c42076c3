"""Training loop: loss decreases for every regime, seeded runs repeat bit for bit, an interrupted run resumed from
its checkpoint ends bit-identical to an uninterrupted one, checkpoints are atomic, λ schedules, divergence,
the training-NFE records, and an MNIST smoke run on a tiny synthetic IDX data set.
"""

import io
import math
import os
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from idx_files import mnist_files

from lrnde_np import training
from lrnde_np.data import load_mnist, split
from lrnde_np.models import MNISTTask, Regularization, SolveFailed, SpiralTask, StepOutcome
from lrnde_np.training import (
    CheckpointError,
    TrainConfig,
    TrainingDiverged,
    lambda_at,
    load_checkpoint,
    make_generators,
    save_checkpoint,
    train,
)

KINDS = ["none", "global", "local_unbiased", "local_biased"]
TIMING_FIELDS = {"step_time", "train_time"}
ITERS = 40
LAM = 0.01


def assert_records_equal(a, b):
    assert set(a) == set(b) == set(training.RECORD_FIELDS)
    for k in training.RECORD_FIELDS:
        if k in TIMING_FIELDS:
            continue
        # NaN (accuracy of regression, t_reg of non-local regimes) compares equal to NaN here
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def spiral_config(kind, seed=0, iters=ITERS, **kw):
    return TrainConfig(iters=iters, lr=1e-2, lam=0.0 if kind == "none" else LAM, seed=seed, progress=False, **kw)


@pytest.fixture(scope="module")
def spiral_task():
    return SpiralTask(hidden=16, batch_size=10)


@pytest.fixture(scope="module")
def spiral_runs(spiral_task):
    """kind -> (TrainResult, held-out loss of the initial params, held-out loss of the trained params)."""
    runs = {}
    for kind in KINDS:
        p0 = spiral_task.init_params(make_generators(0)[0])
        e0 = spiral_task.evaluate(p0, repeats=1).test_loss
        res = train(spiral_task, Regularization(kind), spiral_config(kind))
        e1 = spiral_task.evaluate(res.params, repeats=1).test_loss
        runs[kind] = (res, e0, e1)
    return runs


# ----------------------------------------------------------------------------------------------------------
# Training makes progress, for every regime.


@pytest.mark.parametrize("kind", KINDS)
def test_training_decreases_heldout_loss(spiral_runs, kind):
    res, e0, e1 = spiral_runs[kind]
    rec = res.records
    assert rec["iteration"].tolist() == list(range(ITERS))
    assert np.all(np.isfinite(res.params))
    # the held-out MSE over 200 sub-trajectories (4x the training horizon) of the fixed evaluation set
    assert math.isfinite(e0) and e0 > 0
    assert e1 < 0.6 * e0, (kind, e0, e1)
    # the recorded loss is task loss + λ·R, with R > 0 exactly for the regularized regimes
    np.testing.assert_allclose(rec["loss"], rec["task_loss"] + rec["lam"] * rec["reg_value"], rtol=1e-14, atol=0)
    if kind == "none":
        assert np.all(rec["reg_value"] == 0) and np.all(rec["lam"] == 0)
    else:
        assert np.all(rec["reg_value"] > 0) and np.all(np.isfinite(rec["reg_value"]))
        assert np.all(rec["lam"] == LAM)
    assert np.all(np.isnan(rec["accuracy"]))  # regression task
    assert np.all(np.diff(rec["train_time"]) > 0)
    np.testing.assert_allclose(rec["train_time"], np.cumsum(rec["step_time"]), rtol=1e-9)
    assert res.train_time == rec["train_time"][-1]


def test_regimes_share_initialisation_and_minibatches(spiral_runs, spiral_task):
    # one seed: the same initial parameters and the same first minibatch for every regime, so the first task
    # loss (that of the same main solve) agrees across the regimes; later ones differ with the regularizer
    first = {spiral_runs[k][0].records["task_loss"][0] for k in KINDS}
    assert len(first) == 1
    last = {spiral_runs[k][0].records["task_loss"][-1] for k in KINDS}
    assert len(last) == len(KINDS)


def test_t_reg_recorded_for_local_regimes_only(spiral_runs, spiral_task):
    t0, t1 = spiral_task.node.t_span
    for kind in KINDS:
        t_reg = spiral_runs[kind][0].records["t_reg"]
        if kind.startswith("local"):
            assert np.all((t_reg >= t0) & (t_reg < t1))
            assert np.unique(t_reg).size > ITERS // 2  # drawn afresh every iteration
        else:
            assert np.all(np.isnan(t_reg))


# ----------------------------------------------------------------------------------------------------------
# NFE records.


@pytest.mark.parametrize("kind", KINDS)
def test_training_nfe_includes_regularizer_step(spiral_runs, kind):
    rec = spiral_runs[kind][0].records
    np.testing.assert_array_equal(rec["nfe_train"], rec["nfe_forward"] + rec["nfe_reg"])
    assert np.all(rec["nfe_forward"] > 0) and np.all(rec["nfe_backward"] > 0)
    if kind.startswith("local"):
        assert np.all(rec["nfe_reg"] > 0)
        assert np.all(rec["nfe_train"] > rec["nfe_forward"])
    else:
        assert np.all(rec["nfe_reg"] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_first_record_matches_an_independent_step(spiral_runs, spiral_task, kind):
    """Iteration 0 redone by hand from the documented generators gives the recorded numbers."""
    rec = spiral_runs[kind][0].records
    init_rng, batch_rng, reg_rng = make_generators(0)
    params = spiral_task.init_params(init_rng)
    batch = spiral_task.sample_batch(batch_rng)
    lam = 0.0 if kind == "none" else LAM
    out = spiral_task.step(params.copy(), batch, Regularization(kind), lam, reg_rng)
    assert rec["loss"][0] == out.loss and rec["task_loss"][0] == out.task_loss
    assert rec["nfe_forward"][0] == out.nfe_forward and rec["nfe_reg"][0] == out.nfe_reg
    assert rec["nfe_backward"][0] == out.nfe_backward
    # the forward NFE is that of the main solve: a plain solve over the same sub-trajectory times
    plain = spiral_task.node.solve(np.ascontiguousarray(batch[0]).ravel(), params, saveat=spiral_task.batch_t)
    # (save points, t_reg among them, are interpolated: they do not change the steps)
    assert rec["nfe_forward"][0] == plain.nfe


# ----------------------------------------------------------------------------------------------------------
# Reproducibility.


def test_same_seed_repeats_bit_for_bit(spiral_runs, spiral_task):
    first = spiral_runs["local_unbiased"][0]
    again = train(spiral_task, Regularization("local_unbiased"), spiral_config("local_unbiased"))
    np.testing.assert_array_equal(again.params, first.params)
    assert_records_equal(again.records, first.records)
    np.testing.assert_array_equal(again.optimizer.m, first.optimizer.m)
    other = train(spiral_task, Regularization("local_unbiased"), spiral_config("local_unbiased", seed=1, iters=3))
    assert not np.array_equal(other.records["loss"], first.records["loss"][:3])


class Interrupt(Exception):
    pass


def interrupt_at(k):
    def callback(it, record):
        assert record["iteration"] == it
        if it == k:
            raise Interrupt(f"stopped at {it}")

    return callback


@pytest.mark.parametrize("kind", ["local_unbiased", "local_biased", "global"])
def test_interrupted_and_resumed_run_is_bit_identical(spiral_task, tmp_path, kind):
    iters = 20
    reference = train(spiral_task, Regularization(kind), spiral_config(kind, iters=iters))
    ck = tmp_path / "run.npz"
    cfg = spiral_config(kind, iters=iters, checkpoint=str(ck), checkpoint_every=6, checkpoint_seconds=1e9)
    with pytest.raises(Interrupt):
        train(spiral_task, Regularization(kind), cfg, callback=interrupt_at(14))
    saved = load_checkpoint(ck)
    assert saved["iteration"] == 12  # the last checkpoint before the interruption
    assert len(saved["records"]["loss"]) == 12
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]
    resumed = train(spiral_task, Regularization(kind), cfg)
    assert resumed.resumed_from == 12
    np.testing.assert_array_equal(resumed.params, reference.params)
    assert_records_equal(resumed.records, reference.records)
    np.testing.assert_array_equal(resumed.optimizer.v, reference.optimizer.v)
    assert resumed.optimizer.step_count == iters
    # the final checkpoint holds the finished run: resuming it trains nothing more
    done = train(spiral_task, Regularization(kind), cfg)
    assert done.resumed_from == iters
    np.testing.assert_array_equal(done.params, reference.params)
    assert_records_equal(done.records, reference.records)
    # resume=False starts over from the seed
    fresh = train(spiral_task, Regularization(kind), cfg, resume=False)
    assert fresh.resumed_from == 0
    np.testing.assert_array_equal(fresh.params, reference.params)


def test_resume_with_other_configuration_is_refused(spiral_task, tmp_path):
    ck = str(tmp_path / "run.npz")
    cfg = spiral_config("local_unbiased", iters=3, checkpoint=ck)
    train(spiral_task, Regularization("local_unbiased"), cfg)
    cases = [
        (spiral_task, Regularization("local_unbiased"), replace(cfg, lr=2e-2), "train"),
        (spiral_task, Regularization("local_unbiased"), replace(cfg, seed=5), "train"),
        (spiral_task, Regularization("local_biased"), cfg, "regularization"),
        (SpiralTask(hidden=8, batch_size=10), Regularization("local_unbiased"), cfg, "task"),
    ]
    for task, reg, config, field in cases:
        with pytest.raises(CheckpointError) as exc:
            train(task, reg, config)
        msg = str(exc.value)
        assert "different configuration" in msg and ck in msg and f"'{field}'" in msg, msg
        assert isinstance(exc.value, ValueError)
    # the refused attempts left the checkpoint as it was
    assert load_checkpoint(ck)["iteration"] == 3


# ----------------------------------------------------------------------------------------------------------
# Checkpoint files.


class QuadraticTask:
    """A cheap stand-in task: loss ½|p - 1|² on a random 'batch' shift; optional failure at one call."""

    name = "quadratic"
    has_accuracy = False

    def __init__(self, n=4, fail_at=None, failure="nan_grad"):
        self.n, self.fail_at, self.failure, self.calls = n, fail_at, failure, 0

    def config(self):
        return dict(task="quadratic", n=self.n)

    def init_params(self, rng):
        return rng.normal(size=self.n)

    def sample_batch(self, rng):
        return 0.01 * rng.normal(size=self.n)

    def step(self, params, batch, regularization, lam, rng):
        call, self.calls = self.calls, self.calls + 1
        r = params - 1.0 + batch
        loss, grad = 0.5 * float(r @ r), r.copy()
        if call == self.fail_at:
            if self.failure == "nan_grad":
                grad[1] = np.nan
            elif self.failure == "inf_loss":
                loss = math.inf
            else:
                raise SolveFailed("stopped at t = 0.3: step size below dtmin")
        return StepOutcome(
            loss=loss,
            task_loss=loss,
            reg_value=0.0,
            accuracy=float("nan"),
            grad=grad,
            nfe_forward=10,
            nfe_reg=3 if regularization.is_local else 0,
            nfe_backward=20,
        )


def quick_checkpoint(tmp_path, iters=3):
    ck = str(tmp_path / "q.npz")
    res = train(
        QuadraticTask(), Regularization("none"), TrainConfig(iters=iters, lr=0.1, seed=3, checkpoint=ck, progress=False)
    )
    return ck, res


def test_checkpoint_round_trip(tmp_path):
    ck, res = quick_checkpoint(tmp_path)
    saved = load_checkpoint(ck)
    np.testing.assert_array_equal(saved["params"], res.params)
    np.testing.assert_array_equal(saved["optimizer"]["m"], res.optimizer.m)
    assert saved["optimizer"]["step_count"] == 3 and saved["iteration"] == 3
    assert saved["meta"]["train"]["seed"] == 3 and saved["meta"]["task"] == {"task": "quadratic", "n": 4}
    for k, v in res.records.items():
        np.testing.assert_array_equal(np.array(saved["records"][k]), v)


def test_failed_checkpoint_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    ck, res = quick_checkpoint(tmp_path)
    before = open(ck, "rb").read()
    state = load_checkpoint(ck)
    gens = make_generators(0)

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")  # half a zip file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training.np, "savez", broken_savez)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(ck, res.params + 1.0, res.optimizer, gens, 4, {}, 0.0, state["meta"])
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["q.npz"]  # no temporary file left behind
    assert open(ck, "rb").read() == before

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(training.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(ck, res.params + 1.0, res.optimizer, gens, 4, {}, 0.0, state["meta"])
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["q.npz"]
    assert open(ck, "rb").read() == before

    # a new checkpoint in a new directory appears complete and alone
    target = tmp_path / "sub" / "dir" / "c.npz"
    save_checkpoint(target, res.params + 1.0, res.optimizer, gens, 4, {"loss": [1.5]}, 2.0, state["meta"])
    assert os.listdir(target.parent) == ["c.npz"]
    loaded = load_checkpoint(target)
    np.testing.assert_array_equal(loaded["params"], res.params + 1.0)
    assert loaded["records"] == {"loss": [1.5]} and loaded["train_time"] == 2.0


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.npz"):
        load_checkpoint(bad)
    cfg = TrainConfig(iters=2, checkpoint=str(bad), progress=False)
    with pytest.raises(ValueError, match="cannot read"):
        train(QuadraticTask(), Regularization("none"), cfg)
    partial = tmp_path / "partial.npz"
    np.savez(partial, params=np.zeros(3))
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(partial)


# ----------------------------------------------------------------------------------------------------------
# λ schedules.


def test_constant_schedule():
    for step in (0, 1, 17, 1000):
        assert lambda_at(step, 0.3) == 0.3
        assert lambda_at(step, 0.3, 0.1, 10, "constant") == 0.3
    assert TrainConfig(lam=0.7).lam_at(5) == 0.7


@settings(max_examples=25, deadline=None)
@given(lam0=st.floats(1e-4, 1e3), ratio=st.floats(1e-3, 0.999), n=st.integers(1, 5000))
def test_exponential_schedule(lam0, ratio, n):
    lam1 = lam0 * ratio
    assert lambda_at(0, lam0, lam1, n, "exponential") == lam0
    assert lambda_at(n, lam0, lam1, n, "exponential") == pytest.approx(lam1, rel=1e-10)
    steps = np.unique(np.linspace(0, n, min(n + 1, 50)).astype(int))
    values = np.array([lambda_at(int(s), lam0, lam1, n, "exponential") for s in steps])
    assert np.all(np.diff(values) < 0) and np.all(values <= lam0) and np.all(values >= lam1 * (1 - 1e-12))
    # geometric: λ(s) = λ0 (λ1/λ0)^(s/N)
    np.testing.assert_allclose(values, lam0 * ratio ** (steps / n), rtol=1e-9)


def test_schedule_validation():
    with pytest.raises(ValueError, match="schedule"):
        lambda_at(0, 1.0, 0.5, 10, "linear")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="lam_end"):
        TrainConfig(lam=1.0, schedule="exponential")
    with pytest.raises(ValueError, match="lam"):
        TrainConfig(lam=-1.0)
    with pytest.raises(ValueError, match="iters"):
        TrainConfig(iters=0)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="seed"):
        TrainConfig(seed=-1)


def test_schedule_drives_the_recorded_lambda():
    cfg = TrainConfig(iters=10, lr=0.1, lam=2.5, lam_end=1.0, schedule="exponential", progress=False)
    rec = train(QuadraticTask(), Regularization("local_unbiased"), cfg).records
    np.testing.assert_array_equal(rec["lam"], [lambda_at(i, 2.5, 1.0, 10, "exponential") for i in range(10)])
    assert rec["lam"][0] == 2.5 and np.all(np.diff(rec["lam"]) < 0)
    np.testing.assert_array_equal(rec["nfe_train"], 13.0)
    # vanilla ignores λ
    rec = train(QuadraticTask(), Regularization("none"), cfg).records
    assert np.all(rec["lam"] == 0) and np.all(rec["nfe_train"] == 10)


# ----------------------------------------------------------------------------------------------------------
# Divergence and progress.


@pytest.mark.parametrize(
    "failure,text", [("nan_grad", "non-finite"), ("inf_loss", "non-finite"), ("solve", "solver failed")]
)
def test_training_diverged(tmp_path, failure, text):
    seen = []
    cfg = TrainConfig(iters=10, lr=0.1, progress=False, checkpoint=str(tmp_path / "d.npz"), checkpoint_every=1)
    with pytest.raises(TrainingDiverged, match=text) as exc:
        train(
            QuadraticTask(fail_at=3, failure=failure),
            Regularization("none"),
            cfg,
            callback=lambda it, rec: seen.append(it),
        )
    assert "iteration 3" in str(exc.value)
    assert seen == [0, 1, 2]
    assert load_checkpoint(tmp_path / "d.npz")["iteration"] == 3  # the last good state stays resumable


def test_quadratic_training_converges_and_progress_is_printed():
    stream = io.StringIO()
    cfg = TrainConfig(iters=200, lr=0.05, seed=1, progress=True, label="quad")
    res = train(QuadraticTask(), Regularization("none"), cfg, stream=stream)
    assert np.max(np.abs(res.params - 1.0)) < 0.05
    assert res.records["loss"][-1] < 1e-2 * res.records["loss"][0]
    lines = stream.getvalue().splitlines()
    # not a TTY: a line after the first iteration, then one per tenth of the run
    assert [line.split()[2] for line in lines] == ["1/200"] + [f"{20 * k}/200" for k in range(1, 11)]
    assert lines[-1].startswith("[quad] iter 200/200  loss ") and "nfe 10+20" in lines[-1]
    quiet = io.StringIO()
    train(QuadraticTask(), Regularization("none"), replace(cfg, progress=False), stream=quiet)
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------------------------------------------------
# MNIST smoke run on tiny synthetic IDX files.


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 60).astype(np.uint8)
    # class-dependent blobs plus noise, 8 x 8 pixels
    images = rng.integers(0, 60, (60, 8, 8)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, c % 8, :] = 255
    mnist_files(d, images, labels)
    return d


@pytest.mark.parametrize("kind", KINDS)
def test_mnist_smoke(tiny_mnist, kind):
    x, y = load_mnist(tiny_mnist)
    assert x.shape == (60, 64)
    task = MNISTTask(*split(x, y, 40, seed=0), hidden=8, batch_size=16, rtol=1e-4, atol=1e-4)
    cfg = TrainConfig(iters=4, lr=1e-2, lam=0.0 if kind == "none" else 1.0, seed=2, progress=False)
    res = train(task, Regularization(kind), cfg)
    rec = res.records
    assert np.all((rec["accuracy"] >= 0) & (rec["accuracy"] <= 1))
    np.testing.assert_array_equal(rec["accuracy"] * 16, np.round(rec["accuracy"] * 16))  # k/16 correct
    assert np.all(np.isfinite(rec["loss"])) and np.all(rec["task_loss"] > 0)
    assert np.all(rec["nfe_reg"] > 0) if kind.startswith("local") else np.all(rec["nfe_reg"] == 0)
    ev = task.evaluate(res.params)
    assert 0.0 <= ev.test_accuracy <= 1.0
    assert ev.n_batches == 2  # 20 held-out images in batches of 16
    for name, value in ev.as_dict().items():
        assert math.isfinite(value), name
    assert ev.test_loss > 0 and ev.test_nfe > 0 and ev.prediction_time > 0
