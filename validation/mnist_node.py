"""Validation: the paper's MNIST Neural ODE table (Pal, Edelman, Rackauckas 2023, Table "MNIST-NODE") on a
2-core CPU.

Data: the real MNIST test split (10,000 images, IDX) from the directory given by ``--data``; 8,000 images
train and 2,000 are held out (fixed split seed 0).  Model: the paper's field — time-dependent
Dense(785→100, tanh), Dense(101→784) — then Dense(784→10), Tsit5.  Methods: vanilla, global ERNODE (2021;
discrete adjoint), local unbiased and local biased ERNODE (λ 2.5 → 1.0 exponential, as the paper), one
seed, one budget.

Budget (documented, chosen to finish in ≤ 45 minutes here): ITERS iterations of minibatch BATCH with Adam
(lr 1e-3), rtol = atol = TOL.  The paper trains 7,500 steps of batch 512 at tolerance 1.4e-8 on a GPU —
about 500x the arithmetic of this budget — so absolute NFE and accuracy differ; the comparison is of the
ratios.

Run:  python validation/mnist_node.py --data DIR        (or: lrnde validate mnist_node --data DIR)
      the paper's gradient semantics (k1 frozen) at the paper's λ.
      python validation/mnist_node.py --data DIR --through-k1 --lambda-scale 200000 \
          --methods vanilla,local-unbiased,local-biased
      the exact gradient of R (k1 differentiated) at a λ that gives it a comparable pull (see the README).
Results of both, measured here: validation/results/.
Writes OUT/table.{md,csv}, OUT/results.json, OUT/curves.png and OUT/report.md (the table beside the paper's,
the targets of the issue checked).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ITERS = 1200
BATCH = 64
TOL = 1e-5

PAPER = {  # 2023 paper, MNIST-NODE (test accuracy %, prediction s/batch, test NFE, train hours)
    "vanilla": (97.612, 0.088, 303.559, 0.54),
    "global": (97.32, 0.060, 177.0, 0.82),
    "local-unbiased": (97.526, 0.046, 187.961, 0.49),
    "local-biased": (97.488, 0.044, 182.849, 1.12),
}
TARGETS = "local: test NFE ≤ 0.70x vanilla, test accuracy within 1 point, prediction ≥ 1.4x faster, " \
          "training time ≤ 1.15x vanilla"


def report(results_path, out_path):
    with open(results_path) as fh:
        data = json.load(fh)
    res = {r["method"]: r for r in data["results"]}
    base = res.get("vanilla")
    lines = ["# MNIST Neural ODE — measured here vs the paper", "", f"Command: `{data['command']}`", ""]
    lines += [f"- {n}" for n in data.get("notes", [])]
    lines += ["", "| Method | Test Acc % (paper) | Test NFE (paper) | NFE ratio (paper) | Pred s/batch (paper) | "
                  "Pred speed-up (paper) | Train s | Train ratio (paper) |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for m, (p_acc, p_pred, p_nfe, p_train) in PAPER.items():
        r = res.get(m)
        if r is None:
            continue
        acc = 100 * r["test_accuracy"] if r.get("test_accuracy") is not None else float("nan")
        nfe_ratio = r["test_nfe"] / base["test_nfe"] if base else float("nan")
        speed = base["prediction_time"] / r["prediction_time"] if base else float("nan")
        train_ratio = r["train_time"] / base["train_time"] if base else float("nan")
        pv = PAPER["vanilla"]
        lines.append(f"| {r['label']} | {acc:.2f} ({p_acc}) | {r['test_nfe']:.1f} ({p_nfe}) | {nfe_ratio:.3f} "
                     f"({p_nfe / pv[2]:.3f}) | {r['prediction_time']:.4f} ({p_pred}) | {speed:.2f} "
                     f"({pv[1] / p_pred:.2f}) | {r['train_time']:.1f} | {train_ratio:.2f} ({p_train / pv[3]:.2f}) |")
        if m.startswith("local") and base:
            acc_base = 100 * base["test_accuracy"]
            ok = dict(nfe=nfe_ratio <= 0.70, acc=abs(acc - acc_base) <= 1.0, pred=speed >= 1.4, train=train_ratio <= 1.15)
            verdicts.append(f"- {r['label']}: NFE ratio {nfe_ratio:.3f} ({'met' if ok['nfe'] else 'MISSED'}), "
                            f"accuracy {acc:.2f} vs {acc_base:.2f} ({'met' if ok['acc'] else 'MISSED'}), prediction "
                            f"speed-up {speed:.2f} ({'met' if ok['pred'] else 'MISSED'}), training time ratio "
                            f"{train_ratio:.2f} ({'met' if ok['train'] else 'MISSED'})")
    lines += ["", f"Targets ({TARGETS}):", ""] + verdicts
    # How strong was the regularization?  λ·R against the task loss over the last 10% of training.
    recs = data.get("records", {})
    mags = []
    for m, rec in recs.items():
        if m == "vanilla" or not rec.get("reg_value"):
            continue
        k = max(1, len(rec["reg_value"]) // 10)
        lam_r = sum(l * r for l, r in zip(rec["lam"][-k:], rec["reg_value"][-k:])) / k
        task = sum(rec["task_loss"][-k:]) / k
        mags.append(f"- {m}: mean λ·R = {lam_r:.3g} against a task loss of {task:.3g} "
                    f"({100 * lam_r / task:.2g}% of it) over the last {k} iterations")
    if mags:
        lines += ["", "Size of the regularization term.  Its value says little about its pull on training: with k1 "
                      "frozen (the paper), ∂R/∂θ loses the cancellation of the error estimate and is far larger "
                      "than the exact derivative (at initialisation here ≈ 0.09 against 1.6e-7 for λ = 1, beside a "
                      "task gradient of 2.4; see the README's regularization section).", ""]
        lines += mags
    with open(out_path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="validation/mnist_node.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory with t10k-images-idx3-ubyte[.gz] and labels")
    parser.add_argument("--out", default=os.path.join("runs", "validation_mnist_node"))
    parser.add_argument("--iters", type=int, default=ITERS)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--tol", type=float, default=TOL)
    parser.add_argument("--methods", default="vanilla,global,local-unbiased,local-biased")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lambda-scale", type=float, default=1.0,
                        help="multiply the paper's λ schedule (2.5 → 1.0 for local, 2.5 for global) by this")
    parser.add_argument("--through-k1", action="store_true",
                        help="local: the exact ∂R/∂θ (k1 differentiated; the paper freezes it) — see the README")
    parser.add_argument("--report-only", action="store_true", help="rewrite report.md from OUT/results.json")
    args = parser.parse_args(argv)
    if not args.report_only:
        from lrnde_np.experiments import compare

        rc = compare.main(["--task", "mnist", "--data", args.data, "--iters", str(args.iters), "--batch-size",
                           str(args.batch_size), "--rtol", str(args.tol), "--atol", str(args.tol), "--methods",
                           args.methods, "--seed", str(args.seed), "--out", args.out, "--quiet",
                           "--lambda", str(2.5 * args.lambda_scale), "--lambda-end", str(1.0 * args.lambda_scale),
                           "--lambda-global", str(2.5 * args.lambda_scale)]
                          + (["--through-k1"] if args.through_k1 else []))
        if rc:
            print(f"compare exited with {rc}", file=sys.stderr)
    print(report(os.path.join(args.out, "results.json"), os.path.join(args.out, "report.md")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
