"""Minibatch training with Adam, λ schedules, per-iteration records, exact checkpoint/resume, progress.

Everything random derives from one ``numpy.random.default_rng(seed)``: it spawns three child generators —
parameter initialisation, minibatch sampling, and the regularizer's draws of t_reg — so that runs of
different regularizers with one seed start from the same parameters and see the same minibatches.

Checkpoints (``.npz``) hold the parameters, the Adam state, the three generators' ``bit_generator.state``,
the iteration count, the training time so far, every record, and the configuration; they are written to a
temporary file and moved into place with ``os.replace`` (atomic), at most every ``checkpoint_every``
iterations or ``checkpoint_seconds`` of training, and at the end.  A resumed run continues from the last
checkpoint and ends bit-identical to an uninterrupted one (wall times aside).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

from .models.node import Regularization
from .nn import Adam

SCHEDULES = ("constant", "exponential")
#: Per-iteration record fields (all floats in the arrays of ``TrainResult.records``).
RECORD_FIELDS = ("iteration", "lam", "loss", "task_loss", "reg_value", "accuracy", "nfe_forward", "nfe_reg",
                 "nfe_train", "nfe_backward", "t_reg", "step_time", "train_time")
_CHECKPOINT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The loss or gradient became non-finite (or the solver failed) during training."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or was written by a different configuration (so it cannot be resumed)."""


def lambda_at(step, lam0, lam1=None, n_steps=1, schedule="constant"):
    """λ at training step ``step`` (0-based).

    constant: λ0.  exponential: λ0·exp(−k·step) with k = log(λ0/λ1)/N (the official code's
    ``ExponentialDecay(λ0, λ1, N)``; it reaches λ1 at step N).
    """
    if schedule == "constant":
        return float(lam0)
    if schedule != "exponential":
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if lam0 == 0.0:
        return 0.0
    k = math.log(lam0 / lam1) / n_steps
    return float(lam0 * math.exp(-k * step))


@dataclass
class TrainConfig:
    """Training hyperparameters.  ``lam_end`` is λ1 of the exponential schedule (ignored when constant)."""

    iters: int = 1000
    lr: float = 1e-3
    lam: float = 0.0
    lam_end: Optional[float] = None
    schedule: str = "constant"
    seed: int = 0
    checkpoint: Optional[str] = None
    checkpoint_every: int = 100
    checkpoint_seconds: float = 60.0
    progress: Optional[bool] = None     # None or True: on (see Progress); False: off
    label: str = ""

    def __post_init__(self):
        if isinstance(self.iters, bool) or not isinstance(self.iters, (int, np.integer)) or self.iters < 1:
            raise ValueError(f"iters must be a positive integer, got {self.iters!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a non-negative number, got {self.lam!r}")
        if self.schedule == "exponential":
            if self.lam_end is None or not (math.isfinite(self.lam_end) and self.lam_end > 0):
                raise ValueError(f"lam_end must be a positive number for the exponential schedule, got "
                                 f"{self.lam_end!r}")
            if self.lam == 0:
                raise ValueError("lam must be positive for the exponential schedule")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be ≥ 1, got {self.checkpoint_every!r}")

    def lam_at(self, step):
        return lambda_at(step, self.lam, self.lam_end, self.iters, self.schedule)

    def identity(self) -> dict:
        """The settings a checkpoint must agree with to be resumed."""
        return dict(iters=int(self.iters), lr=float(self.lr), lam=float(self.lam),
                    lam_end=None if self.lam_end is None else float(self.lam_end), schedule=self.schedule,
                    seed=int(self.seed))


@dataclass
class TrainResult:
    params: np.ndarray
    records: dict                     # field name -> np.ndarray, one entry per iteration
    train_time: float                 # seconds spent in training iterations (checkpoint I/O excluded)
    optimizer: Adam
    resumed_from: int = 0             # iterations loaded from a checkpoint
    meta: dict = field(default_factory=dict)


def make_generators(seed):
    """(init, batch, regularizer) generators spawned from ``default_rng(seed)``."""
    return tuple(np.random.default_rng(seed).spawn(3))


# ----------------------------------------------------------------------------------------------------------
# Checkpoints.


def _meta(task, regularization, config):
    return dict(version=_CHECKPOINT_VERSION, task=task.config(), regularization=asdict(regularization),
                train=config.identity())


def save_checkpoint(path, params, optimizer, generators, iteration, records, train_time, meta):
    """Write a checkpoint atomically (temporary file in the same directory, then ``os.replace``)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    state = optimizer.state_dict()
    arrays = dict(
        params=params,
        adam_m=state["m"], adam_v=state["v"], adam_step_count=np.int64(state["step_count"]),
        adam_hyper=np.array([state["lr"], state["beta1"], state["beta2"], state["eps"]]),
        rng_states=np.array(json.dumps([g.bit_generator.state for g in generators])),
        iteration=np.int64(iteration),
        train_time=np.float64(train_time),
        records=np.array(json.dumps({k: [float(v) for v in vals] for k, vals in records.items()})),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path):
    """The contents of a checkpoint as a dict (params, optimizer state, rng states, iteration, records, meta)."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            ck = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path!r}: cannot read ({exc})") from exc
    needed = {"params", "adam_m", "adam_v", "adam_step_count", "adam_hyper", "rng_states", "iteration",
              "train_time", "records", "meta"}
    if not needed <= set(ck):
        raise CheckpointError(f"checkpoint {path!r}: missing {sorted(needed - set(ck))}")
    lr, beta1, beta2, eps = (float(v) for v in ck["adam_hyper"])
    return dict(
        params=np.array(ck["params"], dtype=np.float64),
        optimizer=dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, step_count=int(ck["adam_step_count"]),
                       m=ck["adam_m"], v=ck["adam_v"]),
        rng_states=json.loads(str(ck["rng_states"])),
        iteration=int(ck["iteration"]),
        train_time=float(ck["train_time"]),
        records={k: list(v) for k, v in json.loads(str(ck["records"])).items()},
        meta=json.loads(str(ck["meta"])),
    )


def _check_resumable(path, saved_meta, meta):
    expected = json.loads(json.dumps(meta, sort_keys=True))   # the form the checkpoint stores
    if saved_meta == expected:
        return
    differ = sorted(k for k in set(saved_meta) | set(expected) if saved_meta.get(k) != expected.get(k))
    raise CheckpointError(f"checkpoint {path!r} was written by a different configuration (differs in {differ}); "
                     f"use another checkpoint path or resume=False to start over")


# ----------------------------------------------------------------------------------------------------------
# Progress display.


class Progress:
    """A single updating line on a TTY; otherwise a plain line after the first iteration, then every tenth of
    the run (and at least every 30 s)."""

    def __init__(self, total, label="", stream=None, enabled=True, initial=0):
        self.total = total
        self.initial = initial          # iterations done before (a resumed run): not counted in the rate
        self.label = f"[{label}] " if label else ""
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, total // 10)
        self.start = time.perf_counter()
        self.last_print = self.start

    def update(self, iteration, record):
        if not self.enabled:
            return
        now = time.perf_counter()
        done = iteration + 1
        line = (f"{self.label}iter {done}/{self.total}  loss {record['loss']:.4g}  "
                f"nfe {record['nfe_train']:.0f}+{record['nfe_backward']:.0f}  "
                f"{(done - self.initial) / max(now - self.start, 1e-9):.1f} it/s")
        if not math.isnan(record["accuracy"]):
            line += f"  acc {record['accuracy']:.3f}"
        if self.tty:
            if now - self.last_print >= 0.1 or done == self.total:
                self.stream.write("\r" + line.ljust(100))
                self.stream.flush()
                self.last_print = now
        elif done == self.initial + 1 or done % self.every == 0 or done == self.total or now - self.last_print >= 30.0:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_print = now

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ----------------------------------------------------------------------------------------------------------


def train(task, regularization: Regularization, config: TrainConfig, resume=True,
          callback: Optional[Callable] = None, stream=None) -> TrainResult:
    """Train ``task`` (a :class:`~lrnde_np.models.SpiralTask`, :class:`~lrnde_np.models.MNISTTask` or
    anything with ``config``, ``init_params``, ``sample_batch`` and ``step``) with Adam.

    ``resume``: continue from ``config.checkpoint`` when it exists (its configuration must match).
    ``callback(iteration, record)`` is called after every iteration (an exception it raises stops the run;
    the last checkpoint stays valid).  Raises :class:`TrainingDiverged` when the loss or gradient becomes
    non-finite or the solver fails.
    """
    from .models.node import SolveFailed

    meta = _meta(task, regularization, config)
    init_rng, batch_rng, reg_rng = make_generators(config.seed)
    params = task.init_params(init_rng)
    optimizer = Adam(lr=config.lr)
    records = {k: [] for k in RECORD_FIELDS}
    start_iter, train_time = 0, 0.0
    if config.checkpoint and resume and os.path.exists(config.checkpoint):
        ck = load_checkpoint(config.checkpoint)
        _check_resumable(config.checkpoint, ck["meta"], meta)
        params = ck["params"]
        optimizer.load_state_dict(ck["optimizer"])
        for g, state in zip((init_rng, batch_rng, reg_rng), ck["rng_states"]):
            g.bit_generator.state = state
        start_iter, train_time = ck["iteration"], ck["train_time"]
        records = {k: list(ck["records"].get(k, [])) for k in RECORD_FIELDS}
    generators = (init_rng, batch_rng, reg_rng)

    show = config.progress if config.progress is not None else True
    progress = Progress(config.iters, config.label, stream, enabled=show and start_iter < config.iters,
                        initial=start_iter)
    last_save_iter, last_save_time = start_iter, train_time
    try:
        for it in range(start_iter, config.iters):
            lam = config.lam_at(it) if regularization.kind != "none" else 0.0
            t_start = time.perf_counter()
            batch = task.sample_batch(batch_rng)
            try:
                out = task.step(params, batch, regularization, lam, reg_rng)
            except SolveFailed as exc:
                raise TrainingDiverged(f"iteration {it}: the solver failed: {exc}") from exc
            if not (math.isfinite(out.loss) and np.all(np.isfinite(out.grad))):
                raise TrainingDiverged(f"iteration {it}: non-finite loss or gradient (loss {out.loss})")
            optimizer.step(params, out.grad)
            step_time = time.perf_counter() - t_start
            train_time += step_time
            record = dict(iteration=it, lam=lam, loss=out.loss, task_loss=out.task_loss, reg_value=out.reg_value,
                          accuracy=out.accuracy, nfe_forward=out.nfe_forward, nfe_reg=out.nfe_reg,
                          nfe_train=out.nfe_forward + out.nfe_reg, nfe_backward=out.nfe_backward, t_reg=out.t_reg,
                          step_time=step_time, train_time=train_time)
            for k in RECORD_FIELDS:
                records[k].append(float(record[k]))
            progress.update(it, record)
            done = it + 1
            if config.checkpoint and (done - last_save_iter >= config.checkpoint_every
                                      or train_time - last_save_time >= config.checkpoint_seconds
                                      or done == config.iters):
                save_checkpoint(config.checkpoint, params, optimizer, generators, done, records, train_time, meta)
                last_save_iter, last_save_time = done, train_time
            if callback is not None:
                callback(it, record)
    finally:
        progress.close()
    return TrainResult(params=params, records={k: np.array(v) for k, v in records.items()}, train_time=train_time,
                       optimizer=optimizer, resumed_from=start_iter, meta=meta)
