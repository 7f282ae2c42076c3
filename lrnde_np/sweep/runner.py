"""One cell of a sweep: train, evaluate on the validation and the test split, write one JSON record.

The record is written atomically (a temporary file in the same directory, then ``os.replace``), so a record
on disk is always complete: a sweep killed at any moment leaves finished cells' records and nothing else
that looks finished.  Training inside a cell checkpoints (``training.train``'s atomic, bit-exact
checkpoints) to ``SWEEP/checkpoints/<id>.npz``, so a killed cell resumes where it stopped and ends with the
record an uninterrupted run writes.  Everything in a record except its ``timing`` part is deterministic.

Record layout::

    format, id, status ("ok" / "failed"), error (failed only)
    cell        the cell (common, reg, seed; see lrnde_np.sweep.grid)
    versions    lrnde_np, numpy, numba, python
    train       iterations, summary of the curves (mean of the last 10% of iterations, 20-point curves)
    validation  loss, accuracy, nfe (and nfe_drift for mnist-sde), n_batches, n_samples
    test        the same on the test split
    timing      train_time, warmup_time, prediction times, wall time, host, start/end (not deterministic)

Splits.  MNIST / MNIST-SDE: ``lrnde_np.experiments.common.mnist_splits`` (8,000 → 7,000 train / 1,000
validation, seeded; the 2,000 held-out images are the test split).  Spiral: training draws sub-trajectories
from the whole curve (as ode_demo), so no point is held out; validation predicts the sub-trajectories that
start at every ``eval_stride``-th point shifted by ``eval_stride // 2``, test the task's own evaluation
starts — disjoint starts, so the two metrics are different numbers, but both come from the training curve.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import time
import traceback

import numpy as np

from .grid import cell_id

RECORD_FORMAT = 1
_TASK_CACHE: dict = {}


def versions():
    import numba

    import lrnde_np

    return dict(
        lrnde_np=lrnde_np.__version__, numpy=np.__version__, numba=numba.__version__, python=platform.python_version()
    )


def atomic_write_json(path, payload):
    """Write ``payload`` as JSON to ``path`` atomically (temporary file + fsync + ``os.replace``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


def record_path(out_dir, cid):
    return os.path.join(out_dir, "cells", f"{cid}.json")


def checkpoint_file(out_dir, cid):
    return os.path.join(out_dir, "checkpoints", f"{cid}.npz")


def read_record(path):
    """A record, or None when the file is missing or unreadable (a finished record is always complete)."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


# -- tasks -----------------------------------------------------------------------------------------------


def _task_key(common):
    return json.dumps(common, sort_keys=True)


def build_task(common):
    """(task, splits) for a cell's ``common`` part; cached per process (workers run many cells of one task).

    ``splits`` maps "validation"/"test" to what :func:`evaluate_split` needs.
    """
    key = _task_key(common)
    if key in _TASK_CACHE:
        return _TASK_CACHE[key]
    from ..models import MNISTSDETask, MNISTTask, SpiralTask

    name = common["task"]
    if name == "spiral":
        task = SpiralTask(
            hidden=common["hidden"],
            rtol=common["rtol"],
            atol=common["atol"],
            adjoint=common["adjoint"],
            batch_size=common["batch_size"],
        )
        stride = int(task.config()["eval_stride"])
        n_points = task.data.t.size
        val_starts = np.arange(stride // 2, n_points - task.eval_time + 1, stride)
        splits = dict(validation=("starts", val_starts), test=("starts", task.eval_starts.copy()))
    else:
        from ..experiments.common import mnist_splits

        if not common.get("data"):
            raise ValueError(f"task {name} needs a data directory (--data)")
        sp = mnist_splits(common["data"], common["n_train"], common["split_seed"], common["n_val"], common["val_seed"])
        (tr_x, tr_y), (va_x, va_y) = sp["train"], sp["validation"]
        note = (
            f"{tr_x.shape[0]:,} training / {va_x.shape[0]:,} validation (seed {common['val_seed']}) / "
            f"{sp['test'][0].shape[0]:,} test images of the 10,000-image MNIST test split (split seed "
            f"{common['split_seed']})"
        )
        kwargs = dict(
            hidden=common["hidden"],
            rtol=common["rtol"],
            atol=common["atol"],
            batch_size=common["batch_size"],
            eval_batch_size=common.get("eval_batch_size"),
            data_note=note,
        )
        if name == "mnist":
            task = MNISTTask(tr_x, tr_y, va_x, va_y, adjoint=common["adjoint"], **kwargs)
        else:
            task = MNISTSDETask(tr_x, tr_y, va_x, va_y, **kwargs)
        splits = dict(validation=("images", sp["validation"]), test=("images", sp["test"]))
    _TASK_CACHE[key] = (task, splits)
    return task, splits


def _sde_predict_counts(task, params, images, seed):
    """MNIST-SDE prediction returning (logits, f + g evaluations, f evaluations)."""
    p_enc, p_sde, p_cls = task.split_params(params)
    We, be = task._dense(task.encoder, p_enc)
    Wc, bc = task._dense(task.classifier, p_cls)
    images = np.ascontiguousarray(images, dtype=np.float64)
    z0 = images @ We.T + be
    sol = task.nsde.solve(np.ascontiguousarray(z0).ravel(), np.ascontiguousarray(p_sde), seed=int(seed))
    return sol.x[-1].reshape(z0.shape) @ Wc.T + bc, sol.stats["nfe"] + sol.stats["nge"], sol.stats["nfe"]


def evaluate_split(task, split, params, max_batches=None):
    """Metrics of ``params`` on one split: dict(loss, accuracy, nfe[, nfe_drift], n_batches, n_samples) and the
    median prediction time per batch (returned separately: it is not deterministic)."""
    kind, data = split
    if kind == "starts":
        saved = task.eval_starts
        try:
            task.eval_starts = np.asarray(data)
            ev = task.evaluate(params)
        finally:
            task.eval_starts = saved
        return dict(
            loss=_finite(ev.test_loss),
            accuracy=None,
            nfe=float(ev.test_nfe),
            n_batches=ev.n_batches,
            n_samples=int(len(data)),
        ), ev.prediction_time
    from ..models.base import evaluate_classifier

    x, y = data
    if task.name == "mnist-sde":
        drift = []

        def predict_batch(b, xb):
            logits, nfe, nfe_f = _sde_predict_counts(task, params, xb, task.eval_seed + b)
            drift.append(nfe_f)
            return logits, nfe
    else:

        def predict_batch(b, xb):
            return task.predict(params, xb)

    ev = evaluate_classifier(predict_batch, x, y, task.eval_batch_size, max_batches)
    n_samples = min(x.shape[0], ev.n_batches * task.eval_batch_size)
    out = dict(
        loss=_finite(ev.test_loss),
        accuracy=float(ev.test_accuracy),
        nfe=float(ev.test_nfe),
        n_batches=ev.n_batches,
        n_samples=int(n_samples),
    )
    if task.name == "mnist-sde":
        out["nfe_drift"] = float(np.mean(drift))
    return out, ev.prediction_time


# -- one cell --------------------------------------------------------------------------------------------


def regularization(reg):
    from ..models import Regularization

    kinds = {"vanilla": "none", "global": "global", "local-unbiased": "local_unbiased", "local-biased": "local_biased"}
    kind = kinds[reg["method"]]
    if kind == "none":
        return Regularization("none")
    if kind == "global":
        return Regularization("global", heuristic=reg["heuristic"], aggregate=reg["aggregate"])
    return Regularization(kind, heuristic=reg["heuristic"], through_k1=reg["semantics"] == "exact")


def _curve(values, points=20):
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return []
    edges = np.linspace(0, values.size, min(points, values.size) + 1).astype(int)
    return [float(np.mean(values[a:b])) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _summary(records):
    n = len(records["loss"])
    tail = max(1, n // 10)
    out = dict(iterations=n)
    for key in ("task_loss", "loss", "reg_value", "accuracy", "nfe_train", "nfe_forward", "nfe_reg", "nfe_backward"):
        out[f"{key}_last10pct"] = _finite(np.mean(records[key][-tail:]))
    out["nfe_train_mean"] = _finite(np.mean(records["nfe_train"]))
    out["nfe_backward_mean"] = _finite(np.mean(records["nfe_backward"]))
    out["curves"] = dict(
        task_loss=_curve(records["task_loss"]), nfe_train=_curve(records["nfe_train"]), lam=_curve(records["lam"])
    )
    return out


def run_cell(cell, out_dir, checkpoint_every=50, keep_checkpoint=False, progress=False):
    """Train and evaluate one cell and write its record; returns a short summary dict.

    A cell whose "ok" record already exists is not run again (two drivers may share a sweep directory).
    Never raises for a failure of the cell itself (divergence, a failed solve, bad data, an exception in the
    model): the record then has status "failed" and the error.  ``checkpoint_every`` iterations between
    training checkpoints (the cell resumes from the last one when it was interrupted).
    """
    from ..training import TrainConfig, make_generators, train

    out_dir = os.path.abspath(out_dir)
    cid = cell_id(cell)
    path = record_path(out_dir, cid)
    done = read_record(path)
    if done is not None and done.get("status") == "ok" and done.get("cell") == cell:
        # finished meanwhile (another driver on the same directory): keep the record, do not redo the work
        return dict(id=cid, status="ok", error=None, wall_time=None, skipped=True)
    ck = checkpoint_file(out_dir, cid)
    os.makedirs(os.path.dirname(ck), exist_ok=True)
    started = time.time()
    t0 = time.perf_counter()
    record = dict(format=RECORD_FORMAT, id=cid, cell=cell, versions=versions())
    timing = dict(host=socket.gethostname(), pid=os.getpid(), started=started)
    try:
        common, reg = cell["common"], cell["reg"]
        task, splits = build_task(common)
        regz = regularization(reg)
        lam = 0.0 if reg["method"] == "vanilla" else reg["lam"]
        cfg = TrainConfig(
            iters=int(common["iters"]),
            lr=float(common["lr"]),
            lam=lam,
            lam_end=reg["lam_end"],
            schedule=reg["schedule"],
            seed=int(cell["seed"]),
            checkpoint=ck,
            checkpoint_every=int(checkpoint_every),
            checkpoint_seconds=1e9,
            progress=progress,
            label=cid,
        )
        # warm-up (compilation) outside the timed training, on throwaway state as ``lrnde compare`` does
        w0 = time.perf_counter()
        init_rng, batch_rng, reg_rng = make_generators(int(cell["seed"]) + 1_000_003)
        p0 = task.init_params(init_rng)
        task.step(p0, task.sample_batch(batch_rng), regz, lam, reg_rng)
        timing["warmup_time"] = time.perf_counter() - w0
        trained = train(task, regz, cfg, resume=True)
        record["train"] = _summary(trained.records)
        timing["resumed_from"] = int(trained.resumed_from)
        timing["train_time"] = float(trained.train_time)
        eb = common.get("eval_batches")
        for name in ("validation", "test"):
            metrics, pred_time = evaluate_split(task, splits[name], trained.params, eb)
            record[name] = metrics
            timing[f"{name}_prediction_time"] = float(pred_time)
        record["status"] = "ok"
    except Exception as exc:  # a failed cell is recorded, never fatal to the sweep
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        timing["traceback"] = traceback.format_exc()[-4000:]
    timing["wall_time"] = time.perf_counter() - t0
    timing["finished"] = time.time()
    record["timing"] = timing
    atomic_write_json(path, record)
    if record["status"] == "ok" and not keep_checkpoint and os.path.exists(ck):
        os.remove(ck)
    return dict(id=cid, status=record["status"], error=record.get("error"), wall_time=timing["wall_time"])
