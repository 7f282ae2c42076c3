"""Validation: the paper's MNIST Neural SDE table (Pal, Edelman, Rackauckas 2023, "MNIST-NSDE") with a protocol
that cannot tune to the test set, on a shared 2-core CPU.

Data: the real MNIST test split (10,000 images, IDX) from ``--data``; the usual 8,000 training images (split
seed 0) are split again into 7,000 training and 1,000 validation images (seed 0); the 2,000 held-out images
are the test split, read only for the final table.  Model (the official ``experiments/mnist_nsde.jl``):
encoder Dense(784→32), drift Dense(32→64, tanh)→Dense(64→32), diagonal diffusion Dense(32→32), classifier
Dense(32→10), SOSRI at rtol = atol = 0.14 on [0, 1], discrete adjoint, Adam 0.01, constant λ.

Protocol (``lrnde_np.sweep.protocol``):
  1. seed 0 of vanilla and of a λ grid per family — local unbiased ERNSDE (R = E_est·dt, the paper's
     gradient), global ERNSDE with the sum Σ E_j·dt_j (the paper's formula) — and, with --with-global-2021, the
     2021 code's global setting (mean over steps, λ 100 → 10);
  2. per family, λ chosen on the validation split (accuracy ≥ vanilla's − 1 point, then lowest validation NFE);
  3. the chosen configurations and vanilla with seeds 1 and 2; test metrics mean ± sd over 3 seeds.

Budget: ITERS = 150 iterations of minibatch 64, Adam lr 0.01 — sized for a 2-core machine shared by several
jobs (a cell took 2-3 minutes there with its evaluation); the earlier single-seed runs used 1,200, the paper
4,000 steps of batch 512.  Use --iters to scale up.

NFE: the tables give f + g (drift + diffusion evaluations of the prediction solve, "Test NFE") and the drift
evaluations alone ("Test NFE (drift only)") — how the official code counts (its "diffusion" column repeats the
drift counter), so the latter is the number to set beside the paper's vanilla 313.9.

Run (resumable — re-running skips finished cells):
    python validation/mnist_nsde.py --data DIR --out runs/mnist_nsde_protocol
    python validation/mnist_nsde.py --data DIR --out runs/mnist_nsde_protocol --report-only
Writes OUT/report/... and OUT/verdict.md; committed copies in validation/results/mnist_nsde_protocol/.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ITERS = 150
BATCH = 64
TOL = 0.14
# around the paper's 1000 / around 0.2 ≈ the 2021 code's λ 10 on the mean (experiments/common.py).  The first run
# had 3 values each; its validation choice sat at the largest of both, so a fourth (×3.3 / ×4) was added.
LAMBDAS_LOCAL = [300.0, 1000.0, 3000.0, 10000.0]
LAMBDAS_GLOBAL = [0.05, 0.2, 0.8, 3.2]
NFE_TARGET = 0.75

PAPER = {  # 2023 paper, MNIST-NSDE (train acc %, test acc %, train hours, prediction s/batch, test NFE drift-only)
    "vanilla": (98.27, 96.66, 2.70, 0.51, 313.86),
    "local-unbiased": (98.05, 96.57, 2.10, 0.39, 228.93),
    "local-biased": (98.02, 96.44, 1.90, 0.36, 230.10),
}


def stage1(data, iters=ITERS, batch=BATCH, tol=TOL, with_global_2021=False):
    from lrnde_np.sweep import build_grid

    common = dict(
        task="mnist-sde",
        rtol=tol,
        atol=tol,
        iters=iters,
        batch_size=batch,
        lr=1e-2,
        hidden=64,
        adjoint="discrete",
        data=os.path.abspath(data),
        n_train=8000,
        n_val=1000,
        split_seed=0,
        val_seed=0,
        eval_batches=None,
        eval_batch_size=None,
    )
    cells = build_grid(common, ["vanilla"], [1.0], [0])
    cells += build_grid(common, ["local-unbiased"], LAMBDAS_LOCAL, [0], semantics=("paper",))
    cells += build_grid(common, ["global"], [1.0], [0], lambdas_global=LAMBDAS_GLOBAL)
    if with_global_2021:
        cells += build_grid(
            common,
            ["global"],
            [1.0],
            [0],
            lambdas_global=[100.0],
            global_aggregate="mean",
            schedule="exponential",
            lambda_end_ratio=0.1,
        )
    return cells


def main(argv=None):
    from mnist_node import run_and_report

    parser = argparse.ArgumentParser(prog="validation/mnist_nsde.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory with t10k-images-idx3-ubyte[.gz] and labels")
    parser.add_argument("--out", default=os.path.join("runs", "mnist_nsde_protocol"))
    parser.add_argument("--iters", type=int, default=ITERS)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--tol", type=float, default=TOL)
    parser.add_argument("--seeds", default="1,2", help="stage 2: extra seeds of the chosen configurations")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--scheduler")
    parser.add_argument(
        "--with-global-2021",
        action="store_true",
        help="add the 2021 code's global setting (mean over steps, λ 100 → 10) as a family",
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "mnist_nsde_protocol")
    )
    args = parser.parse_args(argv)
    return run_and_report(
        args,
        stage1(args.data, args.iters, args.batch_size, args.tol, args.with_global_2021),
        NFE_TARGET,
        "MNIST Neural SDE — λ chosen on validation, mean ± sd over seeds",
        PAPER,
    )


if __name__ == "__main__":
    sys.exit(main())
