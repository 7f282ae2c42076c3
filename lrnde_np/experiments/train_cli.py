"""``lrnde train``: train one configuration (task × method), with checkpoints that resume exactly."""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from ..training import RunLock, RunLocked, check_writable
from .common import CLASSIFICATION_TASKS, METHODS, add_task_arguments, build_task, method_name, resolve, run_method


def build_parser():
    parser = argparse.ArgumentParser(prog="lrnde train", description="Train one neural ODE with one regularizer.")
    parser.add_argument(
        "--method",
        type=method_name,
        default="local-unbiased",
        help=f"one of {', '.join(METHODS)} (default local-unbiased)",
    )
    add_task_arguments(parser)
    parser.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (.npz), written atomically")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    parser.add_argument("--out", metavar="FILE", help="write the result and per-iteration records as JSON")
    return parser


def main(argv=None):
    args = resolve(build_parser().parse_args(argv))
    if args.resume and not args.checkpoint:
        raise SystemExit("lrnde train: --resume needs --checkpoint PATH")
    if args.checkpoint and not args.resume and os.path.exists(args.checkpoint):
        raise SystemExit(f"lrnde train: {args.checkpoint} exists; pass --resume to continue it or remove it")
    # Outputs are checked for writability before training (not after it, with everything lost), and the
    # checkpoint (or else the --out file) is locked while this run uses it.
    for path, what in (
        (args.out, "--out"),
        (args.out and os.path.splitext(args.out)[0] + "_params.npy", "--out"),
        (args.checkpoint, "--checkpoint"),
    ):
        problem = path and check_writable(path, what)
        if problem:
            raise SystemExit(f"lrnde train: {problem}")
    target = args.checkpoint or args.out
    lock = RunLock(target + ".lock") if target else None
    if lock is not None:
        try:
            lock.acquire()
        except RunLocked as exc:
            raise SystemExit(f"lrnde train: {exc}") from None
        except OSError as exc:
            raise SystemExit(f"lrnde train: {target}: cannot write there ({exc})") from None
    try:
        return _train(args)
    finally:
        if lock is not None:
            lock.release()


def _train(args):
    task = build_task(args)
    result, trained = run_method(task, args.method, args, checkpoint=args.checkpoint, resume=args.resume)
    if result.status != "ok":
        print(f"{args.method}: {result.status}")
        return 1
    metric = (
        f"test accuracy {100 * result.test_accuracy:.2f}%"
        if task.name in CLASSIFICATION_TASKS
        else f"test loss {result.test_loss:.4g}"
    )
    print(
        f"{args.method}: {metric}; train time {result.train_time:.2f}s (+{result.warmup_time:.2f}s compile); "
        f"test NFE {result.test_nfe:.1f}; prediction {result.prediction_time:.4g}s/batch; "
        f"train NFE/iter {result.train_nfe:.1f} + backward {result.backward_nfe:.1f}"
        + (f"; resumed after {trained.resumed_from} iterations" if trained.resumed_from else "")
    )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        payload = dict(
            settings=vars(args),
            task=task.config(),
            result={k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.as_dict().items()},
            records={k: v.tolist() for k, v in trained.records.items()},
        )
        with open(args.out, "w") as fh:
            json.dump(payload, fh, indent=1, default=str)
        np.save(os.path.splitext(args.out)[0] + "_params.npy", trained.params)
        print(f"json: {args.out}")
    return 0
