"""Minibatch training with Adam, λ schedules, per-iteration records, exact checkpoint/resume, progress.

Everything random derives from one ``numpy.random.default_rng(seed)``: it spawns three child generators —
parameter initialisation, minibatch sampling, and the regularizer's draws of t_reg — so that runs of
different regularizers with one seed start from the same parameters and see the same minibatches.

Checkpoints (``.npz``) hold the parameters, the Adam state, the three generators' ``bit_generator.state``,
the iteration count, the training time so far, every record, and the configuration; they are written to a
temporary file and moved into place with ``os.replace`` (atomic), at most every ``checkpoint_every``
iterations or ``checkpoint_seconds`` of training, and at the end.  A resumed run continues from the last
checkpoint and ends bit-identical to an uninterrupted one (wall times aside).  Records are binary arrays in
the checkpoint up to ``INLINE_RECORDS`` iterations; past that they are appended to ``<checkpoint>.records``
(:class:`RecordLog`), so a write costs O(new records), not O(all).  A truncated or corrupted checkpoint is a
:class:`CheckpointError` naming the file.  :class:`RunLock` and :func:`check_writable` serve the CLI.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .models.node import Regularization
from .nn import Adam

SCHEDULES = ("constant", "exponential")
#: Per-iteration record fields (all floats in the arrays of ``TrainResult.records``).
RECORD_FIELDS = (
    "iteration",
    "lam",
    "loss",
    "task_loss",
    "reg_value",
    "accuracy",
    "nfe_forward",
    "nfe_reg",
    "nfe_train",
    "nfe_backward",
    "t_reg",
    "step_time",
    "train_time",
)
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
    lam_end: float | None = None
    schedule: str = "constant"
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_every: int = 100
    checkpoint_seconds: float = 60.0
    progress: bool | None = None  # None or True: on (see Progress); False: off
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
                raise ValueError(
                    f"lam_end must be a positive number for the exponential schedule, got {self.lam_end!r}"
                )
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
        return dict(
            iters=int(self.iters),
            lr=float(self.lr),
            lam=float(self.lam),
            lam_end=None if self.lam_end is None else float(self.lam_end),
            schedule=self.schedule,
            seed=int(self.seed),
        )


@dataclass
class TrainResult:
    params: np.ndarray
    records: dict  # field name -> np.ndarray, one entry per iteration
    train_time: float  # seconds spent in training iterations (checkpoint I/O excluded)
    optimizer: Adam
    resumed_from: int = 0  # iterations loaded from a checkpoint
    meta: dict = field(default_factory=dict)


def make_generators(seed):
    """(init, batch, regularizer) generators spawned from ``default_rng(seed)``."""
    return tuple(np.random.default_rng(seed).spawn(3))


# ----------------------------------------------------------------------------------------------------------
# Checkpoints.


def _meta(task, regularization, config):
    return dict(
        version=_CHECKPOINT_VERSION, task=task.config(), regularization=asdict(regularization), train=config.identity()
    )


#: Up to this many records a checkpoint holds them itself (one binary array per field, rewritten each time);
#: beyond, they go to an append-only side file ``<checkpoint>.records`` so that a write costs O(new records).
INLINE_RECORDS = 4096


def records_path(path):
    """The append-only side file of a checkpoint's records (exists only for runs past INLINE_RECORDS)."""
    return os.fspath(path) + ".records"


class RecordLog:
    """The side file of a long run's records: float64 rows of ``RECORD_FIELDS``, only ever appended.

    The checkpoint stores how many rows are valid (``n_records``); rows past that (appended before a crash
    that came before the checkpoint's own replace) are ignored when read and cut off when a run resumes.
    """

    def __init__(self, path):
        self.path = records_path(path)
        self.written = 0

    def resume(self, n_valid):
        """Cut the file to its first ``n_valid`` rows (or delete it when there are none)."""
        if os.path.exists(self.path):
            if n_valid:
                with open(self.path, "r+b") as fh:
                    fh.truncate(n_valid * 8 * len(RECORD_FIELDS))
            else:
                os.remove(self.path)
        self.written = n_valid

    def append(self, records):
        """Append the rows not written yet, fsync'd (before the checkpoint that counts them is replaced)."""
        n = len(records[RECORD_FIELDS[0]])
        if n <= self.written:
            return
        rows = np.column_stack([np.asarray(records[k][self.written : n], dtype=np.float64) for k in RECORD_FIELDS])
        with open(self.path, "ab") as fh:
            fh.write(np.ascontiguousarray(rows).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        self.written = n


def save_checkpoint(path, params, optimizer, generators, iteration, records, train_time, meta, log=None):
    """Write a checkpoint atomically (temporary file in the same directory, then ``os.replace``).

    ``records`` (field → list of floats) go into the file itself, one binary array per field; with a
    :class:`RecordLog` ``log`` they are appended to its side file instead (only the new rows) and the
    checkpoint records their count."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    state = optimizer.state_dict()
    arrays = dict(
        params=params,
        adam_m=state["m"],
        adam_v=state["v"],
        adam_step_count=np.int64(state["step_count"]),
        adam_hyper=np.array([state["lr"], state["beta1"], state["beta2"], state["eps"]]),
        rng_states=np.array(json.dumps([g.bit_generator.state for g in generators])),
        iteration=np.int64(iteration),
        train_time=np.float64(train_time),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    if log is not None:
        log.append(records)
        arrays["n_records"] = np.int64(log.written)
    else:
        for k, vals in records.items():
            arrays["rec__" + k] = np.asarray(vals, dtype=np.float64)
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
    except Exception as exc:  # noqa: BLE001 - OSError, BadZipFile, EOFError, zlib.error, ValueError ...
        kind = (
            "cannot read"
            if isinstance(exc, OSError) and not os.path.isfile(path)
            else "cannot read: the file is truncated or corrupted"
        )
        raise CheckpointError(
            f"checkpoint {path!r}: {kind} ({type(exc).__name__}: {exc}); remove it, or start without resuming"
        ) from exc
    needed = {
        "params",
        "adam_m",
        "adam_v",
        "adam_step_count",
        "adam_hyper",
        "rng_states",
        "iteration",
        "train_time",
        "meta",
    }
    if not needed <= set(ck):
        raise CheckpointError(f"checkpoint {path!r}: missing {sorted(needed - set(ck))}")
    try:
        lr, beta1, beta2, eps = (float(v) for v in ck["adam_hyper"])
        if "n_records" in ck:
            records = _read_record_log(path, int(ck["n_records"]))
        elif "records" in ck:  # the first format: JSON
            records = {k: list(v) for k, v in json.loads(str(ck["records"])).items()}
        else:
            records = {k[5:]: ck[k].tolist() for k in ck if k.startswith("rec__")}
        return dict(
            params=np.array(ck["params"], dtype=np.float64),
            optimizer=dict(
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                eps=eps,
                step_count=int(ck["adam_step_count"]),
                m=ck["adam_m"],
                v=ck["adam_v"],
            ),
            rng_states=json.loads(str(ck["rng_states"])),
            iteration=int(ck["iteration"]),
            train_time=float(ck["train_time"]),
            records=records,
            records_in_log="n_records" in ck,
            meta=json.loads(str(ck["meta"])),
        )
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed contents
        raise CheckpointError(f"checkpoint {path!r}: corrupted contents ({type(exc).__name__}: {exc})") from exc


def _read_record_log(path, n):
    side = records_path(path)
    width = len(RECORD_FIELDS)
    try:
        raw = np.fromfile(side, dtype=np.float64, count=n * width) if n else np.zeros(0)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path!r}: its records file {side!r} cannot be read ({exc})") from exc
    if raw.size != n * width:
        raise CheckpointError(
            f"checkpoint {path!r}: its records file {side!r} holds {raw.size // width} of the "
            f"{n} records the checkpoint counts (truncated)"
        )
    rows = raw.reshape(n, width)
    return {k: rows[:, i].tolist() for i, k in enumerate(RECORD_FIELDS)}


def _check_resumable(path, saved_meta, meta):
    expected = json.loads(json.dumps(meta, sort_keys=True))  # the form the checkpoint stores
    if saved_meta == expected:
        return
    differ = sorted(k for k in set(saved_meta) | set(expected) if saved_meta.get(k) != expected.get(k))
    raise CheckpointError(
        f"checkpoint {path!r} was written by a different configuration (differs in {differ}); "
        f"use another checkpoint path or resume=False to start over"
    )


# ----------------------------------------------------------------------------------------------------------
# Progress display.


class Progress:
    """A single updating line on a TTY; otherwise a plain line after the first iteration, then every tenth of
    the run (and at least every 30 s)."""

    def __init__(self, total, label="", stream=None, enabled=True, initial=0):
        self.total = total
        self.initial = initial  # iterations done before (a resumed run): not counted in the rate
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
        line = (
            f"{self.label}iter {done}/{self.total}  loss {record['loss']:.4g}  "
            f"nfe {record['nfe_train']:.0f}+{record['nfe_backward']:.0f}  "
            f"{(done - self.initial) / max(now - self.start, 1e-9):.1f} it/s"
        )
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


def train(
    task,
    regularization: Regularization,
    config: TrainConfig,
    resume=True,
    callback: Callable | None = None,
    stream=None,
) -> TrainResult:
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
    records_in_log = False
    if config.checkpoint and resume and os.path.exists(config.checkpoint):
        ck = load_checkpoint(config.checkpoint)
        records_in_log = ck["records_in_log"]
        _check_resumable(config.checkpoint, ck["meta"], meta)
        params = ck["params"]
        optimizer.load_state_dict(ck["optimizer"])
        for g, state in zip((init_rng, batch_rng, reg_rng), ck["rng_states"], strict=True):
            g.bit_generator.state = state
        start_iter, train_time = ck["iteration"], ck["train_time"]
        records = {k: list(ck["records"].get(k, [])) for k in RECORD_FIELDS}
    generators = (init_rng, batch_rng, reg_rng)
    log = None  # the records' side file, once the run is past INLINE_RECORDS
    if config.checkpoint:
        side = RecordLog(config.checkpoint)
        if records_in_log:  # resumed from a checkpoint whose records live in the side file
            side.resume(len(records["iteration"]))
            log = side
        elif os.path.exists(side.path):
            side.resume(0)  # a stale side file of an earlier run with this checkpoint path

    show = config.progress if config.progress is not None else True
    progress = Progress(
        config.iters, config.label, stream, enabled=show and start_iter < config.iters, initial=start_iter
    )
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
            record = dict(
                iteration=it,
                lam=lam,
                loss=out.loss,
                task_loss=out.task_loss,
                reg_value=out.reg_value,
                accuracy=out.accuracy,
                nfe_forward=out.nfe_forward,
                nfe_reg=out.nfe_reg,
                nfe_train=out.nfe_forward + out.nfe_reg,
                nfe_backward=out.nfe_backward,
                t_reg=out.t_reg,
                step_time=step_time,
                train_time=train_time,
            )
            for k in RECORD_FIELDS:
                records[k].append(float(record[k]))
            progress.update(it, record)
            done = it + 1
            if config.checkpoint and (
                done - last_save_iter >= config.checkpoint_every
                or train_time - last_save_time >= config.checkpoint_seconds
                or done == config.iters
            ):
                if log is None and len(records["iteration"]) > INLINE_RECORDS:
                    log = RecordLog(config.checkpoint)  # from now on O(new records) per write
                save_checkpoint(
                    config.checkpoint, params, optimizer, generators, done, records, train_time, meta, log=log
                )
                last_save_iter, last_save_time = done, train_time
            if callback is not None:
                callback(it, record)
    finally:
        progress.close()
    return TrainResult(
        params=params,
        records={k: np.array(v) for k, v in records.items()},
        train_time=train_time,
        optimizer=optimizer,
        resumed_from=start_iter,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------------------
# Run locks and output checks (the CLI's ``--out`` / ``--checkpoint``).


class RunLocked(RuntimeError):
    """Another process is using the run directory (or checkpoint)."""


class RunLock:
    """An exclusive, non-blocking ``flock`` on a lock file, held while a run writes its outputs.

    A second run into the same place stops at once with :class:`RunLocked` naming the holder's pid; the lock
    is released by :meth:`release` (the lock file is removed, and a directory the lock created, if left
    empty) and, should the process die, by the kernel — a stale lock file never blocks a later run.  Where
    ``fcntl`` is missing (Windows) the lock is a no-op.  Creating the lock file is also the up-front check
    that the place is writable (``OSError``).
    """

    def __init__(self, lock_path):
        self.path = os.fspath(lock_path)
        self.fd = None
        self.created_dir = None

    def acquire(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory)
            self.created_dir = directory
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            except OSError:
                holder = "?"
            os.close(self.fd)
            self.fd = None
            raise RunLocked(
                f"{directory} is in use by another lrnde run (pid {holder}; lock file {self.path}); "
                f"wait for it to finish or choose another output location"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def release(self):
        if self.fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None
        if self.created_dir:
            try:
                os.rmdir(self.created_dir)  # only when empty
            except OSError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def check_writable(path, what):
    """OSError-free check that a file can be created at ``path`` (its directory is created if needed);
    returns None or a one-line reason naming ``what``."""
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".lrnde-write-test-{os.getpid()}")
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as exc:
        return f"{what} {path}: cannot write there ({type(exc).__name__}: {exc.strerror or exc})"
    if os.path.isdir(os.fspath(path)):
        return f"{what} {path}: is a directory, expected a file path"
    return None
