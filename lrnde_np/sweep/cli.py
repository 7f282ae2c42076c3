"""``lrnde sweep``: a grid of training runs (task × method × λ × schedule × semantics × tolerance × seed) on Dask.

Each cell writes one JSON record to ``OUT/cells/<id>.json``; re-running the same command skips finished cells
and retries failed ones.  ``lrnde report OUT`` then chooses λ on validation data and writes the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .grid import METHODS, SEMANTICS, TASKS, build_grid, cell_id


def _floats(text):
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _seeds(text):
    out = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2 or 0-4, got {text!r}") from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative seeds, got {text!r}")
    return out


def _names(choices, what):
    def parse(text):
        names = [t.strip().lower().replace("_", "-") for t in text.split(",") if t.strip()]
        for n in names:
            if n not in choices:
                raise argparse.ArgumentTypeError(f"unknown {what} {n!r}; choose from {', '.join(choices)}")
        if not names:
            raise argparse.ArgumentTypeError(f"give at least one {what}")
        return names

    return parse


def build_parser():
    p = argparse.ArgumentParser(
        prog="lrnde sweep",
        description="Run a grid of seeded training runs on Dask (a LocalCluster by default, or --scheduler); one "
        "atomic JSON record per cell, finished cells skipped on re-run.  Then: lrnde report OUT.",
    )
    g = p.add_argument_group("grid")
    g.add_argument("--task", choices=TASKS, default="spiral")
    g.add_argument(
        "--methods",
        type=_names(METHODS, "method"),
        default=list(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all)",
    )
    g.add_argument(
        "--lambdas",
        type=_floats,
        help="λ of the local methods (start of a schedule), comma-separated (default: the task's default λ)",
    )
    g.add_argument("--lambdas-global", type=_floats, help="λ of the global method (default: the task's default)")
    g.add_argument(
        "--semantics",
        type=_names(SEMANTICS, "semantics"),
        default=["paper"],
        help="gradient semantics of the local step: paper (k1 frozen), exact (k1 differentiated), or "
        "paper,exact (default paper)",
    )
    g.add_argument("--seeds", type=_seeds, default=[0], help="training seeds, e.g. 0,1,2 or 0-2 (default 0)")
    g.add_argument(
        "--rtols",
        type=_floats,
        help="relative tolerances (default: --rtol); atol = rtol × atol/rtol of the task defaults (or --atol-ratio)",
    )
    g.add_argument("--atol-ratio", type=float, help="atol = rtol × this for every --rtols value")
    g.add_argument(
        "--schedule", choices=("constant", "exponential"), help="λ schedule of the local methods (default: the task's)"
    )
    g.add_argument(
        "--lambda-end-ratio",
        type=float,
        help="exponential schedule: λ_end = λ × this (default: the task's, MNIST 1.0/2.5 = 0.4)",
    )
    g.add_argument(
        "--global-aggregate",
        choices=("sum", "mean"),
        default="sum",
        help="global regularizer: sum over steps (the paper's formula, default) or mean (the 2021 "
        "code; with --global-schedule exponential --global-lambda-end-ratio 0.1 and λ 100, its "
        "100 → 10 setting)",
    )
    g.add_argument("--global-schedule", choices=("constant", "exponential"), help="default: --schedule")
    g.add_argument("--global-lambda-end-ratio", type=float, help="default: --lambda-end-ratio")
    g.add_argument("--heuristic", choices=("error", "error_stiffness", "stiffness"), default="error")
    t = p.add_argument_group("task and budget (defaults: the task's, as lrnde compare)")
    for name, typ in (
        ("--iters", int),
        ("--batch-size", int),
        ("--lr", float),
        ("--hidden", int),
        ("--rtol", float),
        ("--atol", float),
    ):
        t.add_argument(name, type=typ)
    t.add_argument("--adjoint", choices=("discrete", "interpolating", "backsolve"), default="discrete")
    t.add_argument("--data", metavar="DIR", help="MNIST IDX directory (mnist, mnist-sde)")
    t.add_argument("--n-train", type=int, default=8000, help="MNIST: training+validation images (default 8000)")
    t.add_argument("--n-val", type=int, default=1000, help="MNIST: validation images of those (default 1000)")
    t.add_argument("--split-seed", type=int, default=0, help="MNIST: seed of the train/test split (default 0)")
    t.add_argument("--val-seed", type=int, default=0, help="MNIST: seed of the train/validation split (default 0)")
    t.add_argument("--eval-batches", type=int, help="MNIST: evaluate on at most this many batches per split")
    t.add_argument("--eval-batch-size", type=int, help="MNIST: prediction batch size (default: --batch-size)")
    r = p.add_argument_group("running")
    r.add_argument("--out", required=True, metavar="DIR", help="sweep directory (records in DIR/cells)")
    r.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of the LocalCluster, one thread each (default 1; 0: run in this process without Dask)",
    )
    r.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786) instead of a LocalCluster",
    )
    r.add_argument(
        "--checkpoint-every", type=int, default=50, help="training iterations between a cell's checkpoints (default 50)"
    )
    r.add_argument("--dry-run", action="store_true", help="list the cells and whether they are finished; run nothing")
    r.add_argument("--report", action="store_true", help="run lrnde report OUT afterwards")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def common_from_args(args):
    from ..experiments.common import DEFAULTS

    d = DEFAULTS[args.task]
    common = dict(task=args.task)
    for key in ("rtol", "atol", "iters", "batch_size", "lr", "hidden"):
        v = getattr(args, key)
        common[key] = d[key] if v is None else v
    common.update(
        adjoint=args.adjoint,
        data=os.path.abspath(args.data) if args.data else None,
        n_train=args.n_train,
        n_val=args.n_val,
        split_seed=args.split_seed,
        val_seed=args.val_seed,
        eval_batches=args.eval_batches,
        eval_batch_size=args.eval_batch_size,
    )
    if args.task == "spiral":  # MNIST-only options do not enter a spiral cell's identity
        for key in ("data", "n_train", "n_val", "split_seed", "val_seed", "eval_batches", "eval_batch_size"):
            common[key] = None
    elif not args.data:
        raise SystemExit(f"lrnde sweep: --task {args.task} needs --data DIR")
    for key in ("iters", "batch_size", "hidden"):
        if common[key] < 1:
            raise SystemExit(f"lrnde sweep: --{key.replace('_', '-')} must be positive")
    return common


def cells_from_args(args):
    from ..experiments.common import DEFAULTS

    d = DEFAULTS[args.task]
    schedule = args.schedule or d["schedule"]
    ratio = args.lambda_end_ratio
    if ratio is None and d["lam_end"] is not None:
        ratio = d["lam_end"] / d["lam"]
    lambdas = args.lambdas or [d["lam"]]
    lambdas_global = args.lambdas_global or [d["lam_global"] if d["lam_global"] is not None else d["lam"]]
    try:
        return build_grid(
            common_from_args(args),
            args.methods,
            lambdas,
            args.seeds,
            semantics=args.semantics,
            rtols=args.rtols,
            lambdas_global=lambdas_global,
            schedule=schedule,
            lambda_end_ratio=ratio,
            global_aggregate=args.global_aggregate,
            global_schedule=args.global_schedule,
            global_lambda_end_ratio=args.global_lambda_end_ratio,
            heuristic=args.heuristic,
            atol_ratio=args.atol_ratio,
        )
    except ValueError as exc:
        raise SystemExit(f"lrnde sweep: {exc}") from None


def main(argv=None):
    argv = list(sys.argv[2:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.workers < 0:
        raise SystemExit("lrnde sweep: --workers must be ≥ 0")
    if args.checkpoint_every < 1:
        raise SystemExit("lrnde sweep: --checkpoint-every must be ≥ 1")
    cells = cells_from_args(args)
    from .execute import plan, run_sweep

    out = os.path.abspath(args.out)
    if args.dry_run:
        to_run, finished = plan(cells, out)
        done = {cell_id(c) for c in finished}
        for c in cells:
            print(("done  " if cell_id(c) in done else "to-do ") + cell_id(c))
        print(f"{len(cells)} cells: {len(finished)} finished, {len(to_run)} to run")
        return 0
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"sweep-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"), "w") as fh:
        json.dump(dict(command="lrnde sweep " + " ".join(argv), cells=[cell_id(c) for c in cells]), fh, indent=1)
    res = run_sweep(
        cells,
        out,
        workers=args.workers,
        scheduler=args.scheduler,
        checkpoint_every=args.checkpoint_every,
        progress=not args.quiet,
    )
    print(
        f"lrnde sweep: {len(cells)} cells — {res['skipped']} already finished, {res['ok']} ran ok, "
        f"{res['failed']} failed; records in {os.path.join(out, 'cells')}"
    )
    if args.report:
        from .report import main as report_main

        report_main([out])
    return 1 if res["failed"] else 0
