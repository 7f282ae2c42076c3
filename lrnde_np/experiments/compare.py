"""``lrnde compare``: the paper's comparison — vanilla, global and local (unbiased, biased) regularization
trained with one seed and one budget, then the paper's table printed and written (JSON, CSV, PNG).

Columns as the paper's: test accuracy (MNIST) or test loss (spiral), training time, prediction time per
batch, and test NFE of the plain solve (no regularizer), plus the ratios against vanilla that the paper's
captions quote, the mean training NFE per iteration (forward + the regularizer's step) and backward NFE.
Training time excludes JIT compilation, which runs once per method beforehand ("warm-up", reported).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time

import numpy as np

from ..training import RunLock, RunLocked
from .common import (
    CLASSIFICATION_TASKS,
    CNF_TASKS,
    METHODS,
    TIMESERIES_TASKS,
    add_task_arguments,
    build_task,
    checkpoint_path,
    method_label,
    method_list,
    resolve,
    run_method,
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="lrnde compare",
        description="Train vanilla / global / local-unbiased / local-biased neural ODEs with one seed and budget "
        "and write the paper's comparison table.",
    )
    add_task_arguments(parser)
    o = parser.add_argument_group("output")
    o.add_argument(
        "--methods",
        type=method_list,
        default=list(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all four)",
    )
    o.add_argument("--out", metavar="DIR", help="output directory (default ./runs/<task>)")
    o.add_argument(
        "--resume",
        action="store_true",
        help="continue each method from its checkpoint in OUT/checkpoints when one exists",
    )
    o.add_argument(
        "--train-eval",
        action="store_true",
        help="MNIST: evaluate the trained models on the whole training split too (slower)",
    )
    o.add_argument("--no-plot", action="store_true", help="skip the PNG of the loss/NFE curves")
    return parser


def _fmt(x, digits=4):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def table_rows(task_name, results):
    """Header and rows of the comparison table (strings), ratios against vanilla when it ran."""
    base = next((r for r in results if r.method == "vanilla" and r.status == "ok"), None)
    if task_name in CLASSIFICATION_TASKS:
        header = [
            "Method",
            "Test Acc %",
            "Train Acc %",
            "Train Time (s)",
            "Pred Time (s/batch)",
            "Test NFE",
            "NFE ratio",
            "Pred speed-up",
            "Train time ratio",
            "Train NFE/iter",
            "Backward NFE/iter",
        ]
    else:
        header = [
            "Method",
            "Test Loss",
            "Train Loss",
            "Train Time (s)",
            "Pred Time (s/batch)",
            "Test NFE",
            "NFE ratio",
            "Pred speed-up",
            "Train time ratio",
            "Train NFE/iter",
            "Backward NFE/iter",
        ]
    rows = []
    for r in results:
        if r.status != "ok":
            rows.append([r.label, r.status] + [""] * (len(header) - 2))
            continue
        if task_name in CLASSIFICATION_TASKS:
            metric = [_fmt(100 * r.test_accuracy, 4), _fmt(100 * r.train_accuracy, 4)]
        else:
            metric = [_fmt(r.test_loss), _fmt(r.train_loss)]
        ratios = ["—"] * 3
        if base is not None:
            ratios = [
                _fmt(r.test_nfe / base.test_nfe, 3),
                _fmt(base.prediction_time / r.prediction_time, 3),
                _fmt(r.train_time / base.train_time, 3),
            ]
        rows.append(
            [r.label]
            + metric
            + [_fmt(r.train_time, 4), _fmt(r.prediction_time, 3), _fmt(r.test_nfe, 5)]
            + ratios
            + [_fmt(r.train_nfe, 4), _fmt(r.backward_nfe, 4)]
        )
    return header, rows


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def describe(args, task):
    cfg = task.config()
    if args.task == "mnist-sde":
        lines = [
            f"task: {args.task}; seed {args.seed}; {args.iters} iterations; batch {args.batch_size}; Adam lr "
            f"{args.lr}; encoder Dense({task.n_features}→{cfg['state_dim']}), drift Dense({cfg['state_dim']}→"
            f"{args.hidden}, tanh)→Dense({args.hidden}→{cfg['state_dim']}), diagonal diffusion "
            f"Dense({cfg['state_dim']}→{cfg['state_dim']}), classifier Dense({cfg['state_dim']}→10); "
            f"{cfg['method'].upper()} rtol {args.rtol:g} atol {args.atol:g} on [0, 1]; discrete adjoint",
            f"noise: one Brownian seed per iteration drawn from the run's seed (the same sequence for every "
            f"method); prediction batch b solved with the fixed seed {cfg['eval_seed']} + b; NFE = drift + "
            f"diffusion evaluations",
        ]
    else:
        lines = [
            f"task: {args.task}; seed {args.seed}; {args.iters} iterations; batch {args.batch_size}; Adam lr "
            f"{args.lr}; hidden {args.hidden}; Tsit5 rtol {args.rtol:g} atol {args.atol:g}; adjoint "
            f"{args.adjoint} (global: discrete)"
        ]
    sched = (
        f"λ {args.lam:g} → {args.lam_end:g} exponential"
        if args.schedule == "exponential"
        else f"λ {args.lam:g} constant"
    )
    lines.append(
        f"local: {sched}; global: λ {args.lam_global:g} ({args.schedule}), sum over steps; heuristic "
        f"{args.heuristic}" + ("; gradient through z(t_reg) (not the paper's)" if args.through_state else "")
    )
    if args.task in CLASSIFICATION_TASKS:
        lines.append(
            "data: "
            + cfg["data_note"]
            + f"; test metrics on {'the first ' + str(args.eval_batches) + ' ' if args.eval_batches else 'all '}"
            f"held-out batches of {cfg['eval_batch_size']}"
        )
        lines.append(
            "Train Acc: "
            + (
                "whole training split after training"
                if args.train_eval
                else "mean minibatch accuracy over the last 10% of iterations"
            )
        )
    elif args.task in TIMESERIES_TASKS:
        from ..models.latent_ode import describe_task

        lines += describe_task(task)
    elif args.task in CNF_TASKS:
        lines += task.describe()
    else:
        lines.append(
            f"data: ode_demo spiral, 1000 points on [0, 25]; minibatches of {args.batch_size} sub-trajectories "
            f"of 10 points; test: {cfg['eval_time']}-point sub-trajectories from every "
            f"{cfg['eval_stride']}th point in one batched solve; Train Loss: mean over the last 10% of "
            f"iterations"
        )
    return lines


def write_outputs(out_dir, args, task, results, trained, header, rows, notes, plot=True, command=None):
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    with open(os.path.join(out_dir, "table.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    paths["csv"] = os.path.join(out_dir, "table.csv")
    payload = dict(
        command=command,
        settings={k: v for k, v in vars(args).items()},
        task=task.config(),
        notes=notes,
        machine=dict(platform=platform.platform(), python=platform.python_version(), cpus=os.cpu_count()),
        results=[r.as_dict() for r in results],
        records={m: {k: v.tolist() for k, v in t.records.items()} for m, t in trained.items()},
    )
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(payload, fh, indent=1, default=str)
    paths["json"] = os.path.join(out_dir, "results.json")
    with open(os.path.join(out_dir, "table.md"), "w") as fh:
        fh.write("\n".join(notes) + "\n\n" + markdown_table(header, rows) + "\n")
    paths["markdown"] = os.path.join(out_dir, "table.md")
    if plot:
        paths["png"] = plot_curves(os.path.join(out_dir, "curves.png"), task.name, trained)
        if task.name == "latent-spiral":  # Chen et al.'s Fig. 8: observations, reconstruction, extrapolation
            from ..models.latent_ode import plot_spiral_predictions

            paths["predictions_png"] = plot_spiral_predictions(
                os.path.join(out_dir, "predictions.png"),
                task,
                {method_label(m, task.name): t.params for m, t in trained.items()},
            )
    return paths


def _smooth(x, window):
    if x.size < window or window <= 1:
        return x
    return np.convolve(x, np.ones(window) / window, mode="valid")


def plot_curves(path, task_name, trained):
    """Loss and training-NFE curves per method; returns the path, or a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed (pip install matplotlib)"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for method, t in trained.items():
        rec = t.records
        window = max(1, rec["loss"].size // 50)
        x = rec["iteration"][window - 1 :] if window > 1 else rec["iteration"]
        axes[0].plot(x, _smooth(rec["task_loss"], window), label=method_label(method, task_name))
        axes[1].plot(x, _smooth(rec["nfe_train"], window), label=method_label(method, task_name))
        axes[2].plot(x, _smooth(rec["nfe_backward"], window), label=method_label(method, task_name))
    axes[0].set_ylabel("task loss (moving average)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("training NFE per iteration (forward + regularizer)")
    axes[2].set_ylabel("backward NFE per iteration")
    for ax in axes:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"lrnde compare --task {task_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def interleaved_prediction_times(task, trained, rounds=None, budget_s=20.0):
    """Median prediction time per method, measured round-robin (method A, B, C, D, A, B, ...) on one batch.

    Timing each method's predictions only after its own training lets load drift on a shared machine bias
    the ratios; interleaving exposes every method to the same conditions.  The number of rounds fits
    ``budget_s`` (at least 5, at most 51).
    """
    calls = {m: task.prediction_call(tr.params) for m, tr in trained.items()}
    for call in calls.values():  # warm (compiled, caches)
        call()
    if rounds is None:
        start = time.perf_counter()
        for call in calls.values():
            call()
        per_round = max(time.perf_counter() - start, 1e-9)
        rounds = int(min(51, max(5, budget_s / per_round)))
    times = {m: [] for m in calls}
    for _ in range(rounds):
        for m, call in calls.items():
            start = time.perf_counter()
            call()
            times[m].append(time.perf_counter() - start)
    return {m: float(np.median(v)) for m, v in times.items()}, rounds


def main(argv=None):
    parser = build_parser()
    args = resolve(parser.parse_args(argv))
    out_dir = args.out or os.path.join("runs", args.task)
    # Every argument is checked (resolve) before anything trains; the output directory is locked while the
    # run writes into it — a second run into it stops at once — and creating the lock checks it is writable.
    lock = RunLock(os.path.join(out_dir, ".lrnde.lock"))
    try:
        lock.acquire()
    except RunLocked as exc:
        raise SystemExit(f"lrnde: {exc}") from None
    except OSError as exc:
        raise SystemExit(
            f"lrnde: --out {out_dir}: cannot write there ({type(exc).__name__}: {exc.strerror or exc})"
        ) from None
    try:
        return _compare(args, argv, out_dir)
    finally:
        lock.release()


def _compare(args, argv, out_dir):
    t_start = time.perf_counter()
    task = build_task(args)
    notes = describe(args, task)
    for line in notes:
        print(line)
    results, trained = [], {}
    for method in args.methods:
        ck = checkpoint_path(out_dir, method)
        if not args.resume and os.path.exists(ck):
            os.remove(ck)
        result, tr = run_method(task, method, args, checkpoint=ck, resume=args.resume, evaluate_train=args.train_eval)
        results.append(result)
        if tr is not None:
            trained[method] = tr
        status = "" if result.status == "ok" else f"  [{result.status}]"
        print(
            f"{method}: train {result.train_time:.2f}s (compile/warm-up {result.warmup_time:.2f}s), "
            f"test NFE {result.test_nfe:.1f}{status}",
            flush=True,
        )
    if len(trained) > 1:
        medians, rounds = interleaved_prediction_times(task, trained)
        for r in results:
            if r.method in medians:
                r.prediction_time = medians[r.method]
        notes.append(
            f"Pred Time: median of {rounds} rounds that time every method's prediction of the same "
            f"held-out batch in turn (interleaved, so that drifting machine load affects all methods "
            f"alike)"
        )
    header, rows = table_rows(args.task, results)
    print()
    print(markdown_table(header, rows))
    notes.append(f"wall time of the whole comparison: {time.perf_counter() - t_start:.1f} s")
    command = "lrnde compare " + " ".join(sys.argv[2:] if argv is None else argv)
    paths = write_outputs(
        out_dir, args, task, results, trained, header, rows, notes, plot=not args.no_plot, command=command
    )
    print()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0 if all(r.status == "ok" for r in results) else 1
