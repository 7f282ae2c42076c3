"""MNIST-scale training step (``lrnde bench mnist-step``): where the time of one step goes, against its floor.

The paper's MNIST neural ODE: field ``MLP((784, 100, 784), "tanh", time_input="all")``, batch 64, Tsit5 at
rtol = atol = 1e-5, a 784 → 10 classifier, softmax cross-entropy, vanilla (no regularizer), discrete adjoint.

Measured per training step (forward solve with recorded stages + discrete adjoint), at the initial weights and
after ``--train`` Adam iterations (on ``--data`` MNIST if given, else on seeded synthetic images):

* µs per step (median over ``--repeats``), and its forward and backward parts;
* forward NFE and backward VJPs;
* minor page faults per step (``getrusage``): allocation of fresh large buffers shows up here;
* the **floor ratio**: step time ÷ (forward-equivalents × one forward evaluation's matrix-product time), where
  a forward evaluation is the two matrix products X·W1ᵀ (64×785 · 785×100) and H·W2ᵀ (64×101 · 101×784),
  timed with NumPy's BLAS in the same run, and a step needs NFE + 2·VJPs forward-equivalents of matrix work (a
  VJP of a dense layer is two products of the forward's size: the cotangent of its input and of its weights).

Each thread count runs in a subprocess with ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``/
``NUMBA_NUM_THREADS`` set before NumPy and Numba load. JIT compile (or cache load) time is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

BATCH, HIDDEN, DIM = 64, 100, 784


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def _images(args, rng):
    if args.data:
        from ..data import load_mnist

        images, labels = load_mnist(args.data)
        return images[:2000].astype(np.float64), labels[:2000]
    return rng.uniform(0.0, 1.0, size=(512, DIM)), rng.integers(0, 10, size=512)


def _matmul_floor(rng, repeats):
    """Median seconds of one forward evaluation's matrix products (BLAS, this process's thread count)."""
    X = rng.normal(size=(BATCH, DIM + 1))
    W1 = rng.normal(size=(HIDDEN, DIM + 1))
    H = rng.normal(size=(BATCH, HIDDEN + 1))
    W2 = rng.normal(size=(DIM, HIDDEN + 1))

    def products():
        for _ in range(20):
            X @ W1.T
            H @ W2.T

    products()
    med, _ = _median_time(products, repeats)
    return med / 20


def measure_in_process(args) -> dict:
    """The measurement itself (runs in the subprocess with the thread count already fixed)."""
    from ..models.mnist import MNISTTask
    from ..models.node import Regularization
    from ..nn import Adam

    rng = np.random.default_rng(args.seed)
    images, labels = _images(args, rng)
    n_train = images.shape[0] - BATCH
    task = MNISTTask(
        images[:n_train],
        labels[:n_train],
        images[n_train:],
        labels[n_train:],
        hidden=HIDDEN,
        rtol=1e-5,
        atol=1e-5,
        adjoint="discrete",
        batch_size=BATCH,
    )
    params = task.init_params(np.random.default_rng(args.seed))
    reg = Regularization("none")
    batch = task.sample_batch(np.random.default_rng(args.seed + 1))

    t0 = time.perf_counter()
    task.step(params, batch, reg, 0.0, np.random.default_rng(0))
    first_call = time.perf_counter() - t0

    floor = _matmul_floor(rng, args.repeats)
    results = {"threads": args.threads, "first_call_s": first_call, "matmul_forward_us": floor * 1e6}

    def one_state(label, params):
        fp_holder = {}
        out = task.step(params, batch, reg, 0.0, np.random.default_rng(0))
        field_p, W, _ = task._split_params(params)
        z0 = np.ascontiguousarray(batch[0]).ravel()

        def forward():
            fp_holder["fp"] = task.node.forward(z0, field_p, reg, np.random.default_rng(0))

        forward()
        fp = fp_holder["fp"]
        z1 = fp.outputs[0].reshape(batch[0].shape)
        g = np.ones_like(z1).ravel() * 1e-3

        flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step_med, step_min = _median_time(
            lambda: task.step(params, batch, reg, 0.0, np.random.default_rng(0)), args.repeats
        )
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0) / args.repeats
        fwd_med, _ = _median_time(forward, args.repeats)
        bwd_med, _ = _median_time(lambda: task.node.backward(fp, g, 0.0), args.repeats)
        equivalents = out.nfe_forward + 2 * out.nfe_backward
        results[label] = dict(
            step_us=step_med * 1e6,
            step_min_us=step_min * 1e6,
            forward_us=fwd_med * 1e6,
            backward_us=bwd_med * 1e6,
            nfe_forward=out.nfe_forward,
            vjps=out.nfe_backward,
            forward_equivalents=equivalents,
            page_faults_per_step=faults,
            floor_ratio=step_med / (equivalents * floor),
        )
        return out

    one_state("initial", params)
    if args.train > 0:
        opt = Adam(lr=1e-3)
        train_rng = np.random.default_rng(args.seed + 2)
        for _ in range(args.train):
            out = task.step(params, task.sample_batch(train_rng), reg, 0.0, train_rng)
            opt.step(params, out.grad)
        one_state("trained", params)
    return results


def _run_threads(threads, argv):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, "-m", "lrnde_np.benchmarks.mnist_step", "--child", "--threads", str(threads)] + argv
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"the {threads}-thread measurement failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _report(all_results):
    lines = [
        "| threads | weights | µs / step | forward µs | backward µs | NFE fwd | VJPs | fwd-equiv. | "
        "1 fwd matmul µs | floor ratio | page faults / step |",
        "|" + "---|" * 11,
    ]
    for r in all_results:
        for label in ("initial", "trained"):
            if label in r:
                s = r[label]
                lines.append(
                    f"| {r['threads']} | {label} | {s['step_us']:.0f} | {s['forward_us']:.0f} | "
                    f"{s['backward_us']:.0f} | {s['nfe_forward']} | {s['vjps']} | "
                    f"{s['forward_equivalents']} | {r['matmul_forward_us']:.0f} | {s['floor_ratio']:.2f} | "
                    f"{s['page_faults_per_step']:.0f} |"
                )
    by_threads = {r["threads"]: r["initial"]["step_us"] for r in all_results}
    if 1 in by_threads and 2 in by_threads:
        lines.append(f"\n2 threads vs 1: {by_threads[1] / by_threads[2]:.2f}x faster (target ≥ 1.6x)")
    for r in all_results:
        lines.append(f"first call ({r['threads']} thread(s), compile or cache load): {r['first_call_s']:.2f} s")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="lrnde bench mnist-step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="MNIST IDX directory (default: seeded synthetic images)")
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per measurement (median reported)")
    ap.add_argument("--train", type=int, default=20, help="Adam iterations before the 'trained' measurement")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="3 repeats, 3 training iterations, 1 thread")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.train < 0 or any(t < 1 for t in args.threads):
        ap.error("--repeats and --threads must be >= 1 and --train >= 0")
    if args.child:
        args.threads = args.threads[0]
        print(json.dumps(measure_in_process(args)))
        return 0
    if args.quick:
        args.repeats, args.train, args.threads = 3, 3, [1]
    child_argv = ["--repeats", str(args.repeats), "--train", str(args.train), "--seed", str(args.seed)]
    if args.data:
        child_argv += ["--data", args.data]
    print(
        f"MNIST training step, batch {BATCH}, 784-{HIDDEN}-784 tanh field, Tsit5 rtol=atol=1e-5, discrete "
        f"adjoint; {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )
    all_results = [_run_threads(t, child_argv) for t in args.threads]
    print(_report(all_results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(all_results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
