"""Validation: does the paper's frozen-k1 gradient of the local regularizer lower NFE where the exact one does
not?  Spiral task, λ over ten decades (1e-4 … 1e6), rtol 1e-5 and 1e-7, both gradient semantics, several seeds.

The paper's gradient (``paper``) treats the regularizing step's first stage k1 = f(t_reg, z; θ) as a constant;
the exact partial derivative (``exact``) differentiates it.  The two differ by orders of magnitude in size
(README, "What the local regularizer's gradient is"), so the same λ means different pulls: the comparison is
of the Pareto fronts — test NFE against test loss over the whole λ range — and of the configurations chosen
on the validation split by the sweep's rule (validation loss ≤ 1.5 × vanilla's, then lowest validation NFE).

Run (resumable: finished cells are skipped):

    python validation/gradient_semantics.py --out runs/gradient_semantics --workers 1
    python validation/gradient_semantics.py --out runs/gradient_semantics --report-only

Writes OUT/report/{report.md, chosen.csv, selection.csv, summary.json, pareto.png} and OUT/verdict.md; the
committed copies live in validation/results/gradient_semantics/.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys

LAMBDAS = [10.0**k for k in range(-4, 7)]  # 1e-4 … 1e6: ten decades
RTOLS = [1e-5, 1e-7]
SEEDS = [0, 1, 2]
ITERS = 1000


def cells(iters=ITERS, lambdas=LAMBDAS, rtols=RTOLS, seeds=SEEDS, methods=("vanilla", "local-unbiased")):
    from lrnde_np.experiments.common import DEFAULTS
    from lrnde_np.sweep import build_grid

    d = DEFAULTS["spiral"]
    common = dict(
        task="spiral",
        rtol=d["rtol"],
        atol=d["atol"],
        iters=iters,
        batch_size=d["batch_size"],
        lr=d["lr"],
        hidden=d["hidden"],
        adjoint="discrete",
    )
    return build_grid(
        common, list(methods), lambdas, seeds, semantics=("paper", "exact"), rtols=rtols, schedule="constant"
    )


def front(points):
    """Non-dominated (nfe, loss) points, sorted by NFE (lower is better in both)."""
    pts = sorted(points)
    out, best = [], math.inf
    for nfe, loss, lam in pts:
        if loss < best:
            out.append((nfe, loss, lam))
            best = loss
    return out


def verdict(sweep_dir, loss_ratio=1.5):
    from lrnde_np.sweep import aggregate, load_records, select_lambdas, validation_view
    from lrnde_np.sweep.grid import baseline_key

    records = load_records(sweep_dir)
    agg = aggregate(records, "test")
    sels = select_lambdas(validation_view(records), loss_ratio=loss_ratio)
    lines = ["# Gradient semantics: paper (k1 frozen) vs exact (k1 differentiated) — spiral", ""]
    bases = sorted({baseline_key(r["cell"]) for r in agg.values()})
    for b in bases:
        rows = [r for r in agg.values() if baseline_key(r["cell"]) == b]
        van = [r for r in rows if r["cell"]["reg"]["method"] == "vanilla"]
        rtol = rows[0]["cell"]["common"]["rtol"]
        lines.append(f"## rtol {rtol:g}")
        lines.append("")
        if not van:
            lines += ["(no vanilla cells finished yet)", ""]
            continue
        v = van[0]
        lines.append(
            f"- vanilla: test loss {v['loss']['mean']:.4g} ± {v['loss']['sd']:.2g}, test NFE "
            f"{v['nfe']['mean']:.1f} ± {v['nfe']['sd']:.2g} ({v['loss']['n']} seeds)"
        )
        for sem in ("paper", "exact"):
            pts = [
                (r["nfe"]["mean"], r["loss"]["mean"], r["cell"]["reg"]["lam"])
                for r in rows
                if r["cell"]["reg"]["method"].startswith("local") and r["cell"]["reg"]["semantics"] == sem
            ]
            ok = [p for p in pts if p[1] <= loss_ratio * v["loss"]["mean"]]
            fr = front(pts)
            best = min(ok) if ok else None
            text = (
                f"lowest mean test NFE with test loss ≤ {loss_ratio:g}× vanilla: {best[0]:.1f} at λ {best[2]:g} "
                f"(ratio {best[0] / v['nfe']['mean']:.3f})"
                if best
                else f"no λ keeps the loss within {loss_ratio:g}× vanilla"
            )
            lines.append(
                f"- {sem}: {len(pts)} λ values finished; {text}; front (NFE, loss, λ): "
                + ", ".join(f"({n:.0f}, {lo:.3g}, {lam:g})" for n, lo, lam in fr)
            )
        by = {}
        for r in rows:
            reg = r["cell"]["reg"]
            if reg["method"].startswith("local"):
                by.setdefault(reg["lam"], {})[reg["semantics"]] = r
        lines += [
            "",
            "| λ | paper: test NFE | paper: test loss | exact: test NFE | exact: test loss |",
            "|---|---|---|---|---|",
        ]
        for lam in sorted(by):
            cells_ = []
            for sem in ("paper", "exact"):
                r = by[lam].get(sem)
                cells_ += (
                    [
                        f"{r['nfe']['mean']:.1f} ± {r['nfe']['sd']:.2g}",
                        f"{r['loss']['mean']:.3g} ± {r['loss']['sd']:.2g}",
                    ]
                    if r
                    else ["—", "—"]
                )
            lines.append(f"| {lam:g} | " + " | ".join(cells_) + " |")
        lines.append("")
        pts = {
            sem: [(r["nfe"]["mean"], r["loss"]["mean"]) for lam in by for s2, r in by[lam].items() if s2 == sem]
            for sem in ("paper", "exact")
        }
        for a, b in (("paper", "exact"), ("exact", "paper")):
            dom = sum(1 for (n, lo) in pts[a] if any(n2 <= n and l2 <= lo and (n2, l2) != (n, lo) for n2, l2 in pts[b]))
            lines.append(
                f"- {dom} of {len(pts[a])} {a}-gradient points are dominated by a point of the {b} gradient "
                f"(no more NFE and no more loss, means over seeds)"
            )
        for sel in sels:
            if sel["common"]["rtol"] != rtol:
                continue
            r = agg.get(sel["chosen"])
            if r is None:
                continue
            lines.append(
                f"- chosen on validation, {sel['label']}: λ {sel['lam']:g} → test NFE "
                f"{r['nfe']['mean']:.1f} ± {r['nfe']['sd']:.2g}, NFE ratio {r['nfe_ratio']['mean']:.3f} ± "
                f"{r['nfe_ratio']['sd']:.2g}, test loss {r['loss']['mean']:.4g} ± {r['loss']['sd']:.2g} "
                f"({r['loss']['n']} seeds){'' if sel['constraint_met'] else ' [constraint not met]'}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="validation/gradient_semantics.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join("runs", "gradient_semantics"))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--scheduler")
    p.add_argument("--iters", type=int, default=ITERS)
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--report-only", action="store_true")
    p.add_argument(
        "--results",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gradient_semantics"),
        help="where the committed copy of the report goes",
    )
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.report_only:
        from lrnde_np.sweep import run_sweep

        # seed 0 of every cell first (a complete front early), then the other seeds
        grid = cells(args.iters, seeds=seeds)
        grid.sort(key=lambda c: c["seed"])
        res = run_sweep(grid, args.out, workers=args.workers, scheduler=args.scheduler, checkpoint_every=200)
        print(f"ran {res['ran']} cells ({res['ok']} ok, {res['failed']} failed), skipped {res['skipped']}")
    from lrnde_np.sweep import write_report

    text, paths, _ = write_report(args.out, title="Gradient semantics on the spiral (lrnde sweep)")
    v = verdict(args.out)
    with open(os.path.join(args.out, "verdict.md"), "w") as fh:
        fh.write(v + "\n")
    print(v)
    os.makedirs(args.results, exist_ok=True)
    for name in ("report.md", "chosen.csv", "selection.csv", "summary.json", "pareto.png"):
        src = os.path.join(args.out, "report", name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.results, name))
    shutil.copy(os.path.join(args.out, "verdict.md"), os.path.join(args.results, "verdict.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
