"""Chen et al. (2018) Table 1 on MNIST, CPU-sized: ResNet vs RK-Net vs ODE-Net with matched blocks.

    python validation/odenet_vs_resnet.py --data DIR [--out PREFIX] [--seed S] [--minutes-per-model M] [--quick]

(the defaults are the reported run: 10 minutes on a shared 2-core machine; ``--memory-depths ""`` skips the
memory probes, as for the extra seeds)

DIR holds the MNIST IDX files (``t10k-*``; ``train-*`` is used when present).  The three models of
:mod:`lrnde_np.models.odenet` (same stem, same block architecture, same head) are trained with Adam on the same
seeded minibatches and evaluated on held-out images; reported per model: test error, parameters, training time,
NFE per forward pass, and — measured, in fresh subprocesses — the peak resident memory of one training step
(forward + backward) against the depth L (ResNet) or the number of solver steps L̃ (RK-Net: fixed-step RK4
backpropagated through; ODE-Net: the same forward steps, backsolve adjoint).

Memory is measured as the growth of the process's peak resident set (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, Linux) during one ``loss_and_grad`` call on a batch of ``--memory-batch`` inputs,
after a warm-up call of the same shape (which compiles), with glibc told to map every array above 64 KiB
separately and to return freed memory at once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``), so that
the resident set follows the live arrays.  The inputs of the memory
probes are seeded uniform pixels: memory does not depend on the pixel values.

Chen et al.: ResNet 0.41 % / 0.60 M / O(L); RK-Net 0.47 % / 0.22 M / O(L̃); ODE-Net 0.42 % / 0.22 M / O(1)
(conv nets, 60,000 training images, GPU).  This script's numbers are for small dense blocks on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from lrnde_np.data import load_mnist, split  # noqa: E402
from lrnde_np.models.odenet import KINDS, Table1Model  # noqa: E402
from lrnde_np.nn import Adam  # noqa: E402

CHEN = {
    "resnet": ("0.41%", "0.60 M", "O(L)"),
    "rknet": ("0.47%", "0.22 M", "O(L̃)"),
    "odenet": ("0.42%", "0.22 M", "O(1)"),
}
LABEL = {"resnet": "ResNet", "rknet": "RK-Net", "odenet": "ODE-Net"}


def _status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe(kind, depth, args):
    """Child process: peak-RSS growth (bytes) of one training step with L = depth blocks / L̃ = depth steps."""
    model = Table1Model(
        kind,
        dim=args.dim,
        hidden=args.hidden,
        n_blocks=depth,
        fixed_steps=None if kind == "resnet" else depth,
        rtol=args.tol,
        atol=args.tol,
    )
    rng = np.random.default_rng(args.seed)
    params = model.init_params(rng)
    x = rng.uniform(0.0, 1.0, (args.memory_batch, 784))
    labels = rng.integers(0, 10, args.memory_batch)
    model.loss_and_grad(params, x, labels)  # warm-up: compile, size the allocator
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    model.loss_and_grad(params, x, labels)
    elapsed = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {
        "kind": kind,
        "depth": depth,
        "peak_growth_bytes": (peak - base) * 1024,
        "step_s": elapsed,
        "nfe": model.last_nfe,
        "state_bytes": args.memory_batch * args.dim * 8,
    }


def run_probe(kind, depth, args):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--probe",
        kind,
        str(depth),
        "--dim",
        str(args.dim),
        "--hidden",
        str(args.hidden),
        "--memory-batch",
        str(args.memory_batch),
        "--tol",
        str(args.tol),
        "--seed",
        str(args.seed),
    ]
    # glibc: serve every array above 64 KiB by mmap and give freed memory back at once, so that the resident set
    # follows the live arrays (by default freed blocks stay resident and are reused, hiding the step's peak).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", MALLOC_TOP_PAD_="0")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def load_data(directory, n_train, seed):
    try:
        xtr, ytr = load_mnist(directory, "train")
        xte, yte = load_mnist(directory, "test")
        if n_train and n_train < xtr.shape[0]:
            idx = np.random.default_rng(seed).permutation(xtr.shape[0])[:n_train]
            xtr, ytr = xtr[idx], ytr[idx]
        note = f"{xtr.shape[0]} training images of the 60,000-image train split; the 10,000 test images"
    except ValueError:
        x, y = load_mnist(directory, "test")
        n = n_train or 8000
        xtr, ytr, xte, yte = split(x, y, n, seed)
        note = (
            f"only the 10,000-image test split is available: {n} of it train, the other {xte.shape[0]} are "
            f"held out for the test error (seeded split)"
        )
    return xtr, ytr, xte, yte, note


def train(kind, data, args, log):
    xtr, ytr, xte, yte = data
    model = Table1Model(kind, dim=args.dim, hidden=args.hidden, n_blocks=args.blocks, rtol=args.tol, atol=args.tol)
    rng = np.random.default_rng(args.seed)
    params = model.init_params(rng)
    opt = Adam(lr=args.lr)
    n_batches = xtr.shape[0] // args.batch
    t_start = time.perf_counter()
    nfe_sum, steps = 0, 0
    epochs_done = 0
    budget = 60.0 * args.minutes_per_model
    for epoch in range(args.epochs):
        order = np.random.default_rng(args.seed + 1 + epoch).permutation(xtr.shape[0])  # same for all models
        losses = []
        for b in range(n_batches):
            idx = order[b * args.batch : (b + 1) * args.batch]
            loss, grad = model.loss_and_grad(params, xtr[idx], ytr[idx])
            opt.step(params, grad)  # in place
            losses.append(loss)
            nfe_sum += model.last_nfe
            steps += 1
            if time.perf_counter() - t_start > budget:
                break
        epochs_done = epoch + (b + 1) / n_batches
        log(
            f"  {LABEL[kind]:7s} epoch {epochs_done:5.2f}: mean loss {np.mean(losses):.4f} "
            f"({time.perf_counter() - t_start:.0f} s)"
        )
        if time.perf_counter() - t_start > budget:
            log(f"  {LABEL[kind]}: time budget of {args.minutes_per_model} min reached")
            break
    train_s = time.perf_counter() - t_start
    errors, nfe_test = 0, []
    for b in range(0, xte.shape[0], 500):
        logits = model.predict(params, xte[b : b + 500])
        errors += int(np.sum(np.argmax(logits, axis=1) != yte[b : b + 500]))
        nfe_test.append(model.last_nfe)
    return {
        "kind": kind,
        "test_error": errors / xte.shape[0],
        "n_test": int(xte.shape[0]),
        "n_params": model.n_params,
        "epochs": float(epochs_done),
        "train_s": train_s,
        "s_per_step": train_s / max(steps, 1),
        "train_nfe_per_step": nfe_sum / max(steps, 1),
        "test_nfe": float(np.mean(nfe_test)),
        "config": model.config(),
    }


def fit_slope(xs, ys):
    """Least-squares slope and intercept of ys against xs."""
    A = np.vstack([xs, np.ones_like(xs)]).T
    (slope, intercept), *_ = np.linalg.lstsq(A, ys, rcond=None)
    return float(slope), float(intercept)


def report(results, memory, note, args):
    lines = [
        "# Chen et al. Table 1, CPU-sized: ResNet vs RK-Net vs ODE-Net",
        "",
        f"Data: {note}. Blocks: MLP({args.dim}, {args.hidden}, {args.dim}), tanh, time input; stem 784→"
        f"{args.dim} tanh; head {args.dim}→10. ResNet L = {args.blocks}; RK-Net and ODE-Net: Tsit5, rtol = "
        f"atol = {args.tol:g} on [0, 1]. Adam lr {args.lr:g}, batch {args.batch}, seed {args.seed}, at most "
        f"{args.epochs} epochs or {args.minutes_per_model} min per model.",
        "",
        "| model | test error | (Chen) | params | (Chen) | memory | (Chen) | epochs | train time | s/step | "
        "train NFE/step | test NFE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    growth = {}
    for kind in KINDS:
        rows = [m for m in memory if m["kind"] == kind]
        if rows:
            xs = np.array([m["depth"] for m in rows], float)
            ys = np.array([m["peak_growth_bytes"] for m in rows], float) / 2**20
            growth[kind] = fit_slope(xs, ys)
    for r in results:
        k = r["kind"]
        mem = f"{growth[k][0]:.2f} MiB per L" if k in growth else "—"
        lines.append(
            f"| {LABEL[k]} | {100 * r['test_error']:.2f}% | {CHEN[k][0]} | {r['n_params'] / 1e6:.3f} M | "
            f"{CHEN[k][1]} | {mem} | {CHEN[k][2]} | {r['epochs']:.2f} | {r['train_s']:.0f} s | "
            f"{r['s_per_step']:.3f} | {r['train_nfe_per_step']:.1f} | {r['test_nfe']:.1f} |"
        )
    if memory:
        lines += [
            "",
            f"Peak resident-memory growth of one training step (batch {args.memory_batch}, state "
            f"{args.memory_batch * args.dim * 8 / 2**20:.2f} MiB), measured in fresh processes; L = "
            f"blocks (ResNet) or fixed RK4 steps (RK-Net, ODE-Net forward):",
            "",
            "| L | " + " | ".join(f"{LABEL[k]} MiB" for k in KINDS) + " |",
            "|---|" + "---|" * len(KINDS),
        ]
        depths = sorted({m["depth"] for m in memory})
        for d in depths:
            cells = []
            for k in KINDS:
                hit = [m for m in memory if m["kind"] == k and m["depth"] == d]
                cells.append(f"{hit[0]['peak_growth_bytes'] / 2**20:.2f}" if hit else "—")
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Least-squares slope (MiB per block/step) and intercept: "
            + "; ".join(f"{LABEL[k]} {growth[k][0]:.3f} MiB/L + {growth[k][1]:.2f} MiB" for k in growth)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def plot(memory, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    plt.figure(figsize=(5.5, 3.8))
    for k, marker in zip(KINDS, "os^", strict=True):
        rows = sorted((m for m in memory if m["kind"] == k), key=lambda m: m["depth"])
        plt.plot(
            [m["depth"] for m in rows], [m["peak_growth_bytes"] / 2**20 for m in rows], marker + "-", label=LABEL[k]
        )
    plt.xlabel("L (ResNet blocks) / L̃ (solver steps)")
    plt.ylabel("peak memory growth of a training step (MiB)")
    plt.legend()
    plt.tight_layout()
    plt.savefig(path, dpi=120)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="directory with the MNIST IDX files (required)")
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "odenet_vs_resnet"),
        help="output path prefix",
    )
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=6, help="ResNet depth L for the accuracy comparison")
    parser.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of the ODE models' solves")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--minutes-per-model", type=float, default=7.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-train", type=int, default=0, help="training images (0: 8000 of t10k, or all train)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-batch", type=int, default=2048)
    parser.add_argument("--memory-depths", default="1,2,4,8,16", help='comma-separated; "" skips the probes')
    parser.add_argument("--quick", action="store_true", help="tiny run to check the pipeline")
    parser.add_argument("--probe", nargs=2, metavar=("KIND", "DEPTH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe[0], int(args.probe[1]), args)))
        return 0
    if not args.data:
        parser.error("--data DIR is required (the MNIST IDX files)")
    if args.quick:
        args.epochs, args.minutes_per_model, args.n_train = 1, 0.3, 1000
        args.memory_depths, args.memory_batch = "1,4", 256

    def log(msg):
        print(msg, flush=True)

    t_all = time.perf_counter()
    xtr, ytr, xte, yte, note = load_data(args.data, args.n_train, args.seed)
    log(f"data: {note}")
    results = []
    for kind in KINDS:
        log(f"training {LABEL[kind]}")
        results.append(train(kind, (xtr, ytr, xte, yte), args, log))
        r = results[-1]
        log(
            f"  {LABEL[kind]}: test error {100 * r['test_error']:.2f}%, {r['n_params']} params, "
            f"{r['train_s']:.0f} s, test NFE {r['test_nfe']:.1f}"
        )
    memory = []
    for depth in [int(d) for d in args.memory_depths.split(",") if d.strip()]:
        for kind in KINDS:
            m = run_probe(kind, depth, args)
            memory.append(m)
            log(
                f"memory {LABEL[kind]:7s} L={depth:3d}: +{m['peak_growth_bytes'] / 2**20:7.2f} MiB "
                f"({m['step_s']:.2f} s per step)"
            )
    text = report(results, memory, note, args)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".report.md", "w") as fh:
        fh.write(text)
    with open(args.out + ".json", "w") as fh:
        json.dump(
            {
                "results": results,
                "memory": memory,
                "note": note,
                "args": vars(args),
                "total_s": time.perf_counter() - t_all,
            },
            fh,
            indent=2,
        )
    png = plot(memory, args.out + ".memory.png") if memory else None
    log(text)
    log(
        f"wrote {args.out}.report.md, {args.out}.json"
        + (f", {png}" if png else "")
        + f" in {time.perf_counter() - t_all:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
