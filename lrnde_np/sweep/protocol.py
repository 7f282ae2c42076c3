"""The two-stage protocol of the validation scripts: choose λ on validation data, then repeat the choice.

Stage 1 runs the λ grid with one seed (and vanilla).  :func:`lrnde_np.sweep.report.select_lambdas` picks one λ
per family from validation metrics only.  Stage 2 runs the chosen configurations and vanilla with more seeds;
their test metrics are reported as mean ± sd.  Selection always uses the seeds every candidate has (stage 1's),
so stage 2 cannot move it.  Both stages are ordinary sweeps into one directory: re-running resumes.
"""

from __future__ import annotations

import math

import numpy as np

from .grid import cell_id


def dedupe(cells):
    seen, out = set(), []
    for c in cells:
        cid = cell_id(c)
        if cid not in seen:
            seen.add(cid)
            out.append(c)
    return out


def stage2_cells(selections, vanilla_cells, seeds):
    """The chosen configurations and vanilla, repeated with ``seeds``."""
    import json

    out = []
    for sel in selections:
        cfg = json.loads(sel["chosen"])
        out += [dict(common=cfg["common"], reg=cfg["reg"], seed=int(s)) for s in seeds]
    for v in vanilla_cells:
        out += [dict(common=v["common"], reg=v["reg"], seed=int(s)) for s in seeds]
    return dedupe(out)


def run_protocol(
    out_dir, stage1, seeds=(1, 2), workers=1, scheduler=None, checkpoint_every=50, acc_drop=1.0, loss_ratio=1.5
):
    """Run stage 1, select on validation, run stage 2; returns the selections."""
    from .execute import run_sweep
    from .report import load_records, select_lambdas, validation_view

    stage1 = dedupe(stage1)
    res = run_sweep(stage1, out_dir, workers=workers, scheduler=scheduler, checkpoint_every=checkpoint_every)
    print(f"stage 1: {res['ok']} ok, {res['failed']} failed, {res['skipped']} already finished", flush=True)
    selections = select_lambdas(validation_view(load_records(out_dir)), acc_drop=acc_drop, loss_ratio=loss_ratio)
    for sel in selections:
        print(
            f"chosen on validation: {sel['label']} λ {sel['lam']:g}"
            + ("" if sel["constraint_met"] else " (constraint not met)"),
            flush=True,
        )
    vanilla = [c for c in stage1 if c["reg"]["method"] == "vanilla"]
    stage2 = stage2_cells(selections, vanilla, seeds)
    res = run_sweep(stage2, out_dir, workers=workers, scheduler=scheduler, checkpoint_every=checkpoint_every)
    print(f"stage 2: {res['ok']} ok, {res['failed']} failed, {res['skipped']} already finished", flush=True)
    return selections


def _interval(stat):
    """(mean, half-width of mean ± 2·SE) — NaN half-width for one seed."""
    if stat["n"] == 0:
        return float("nan"), float("nan")
    if stat["n"] < 2 or math.isnan(stat["sd"]):
        return stat["mean"], float("nan")
    return stat["mean"], 2.0 * stat["sd"] / math.sqrt(stat["n"])


def verdict_lines(records, selections, nfe_target, acc_points=1.0, methods_prefix="local"):
    """One line per chosen configuration: NFE ratio against ``nfe_target`` and accuracy against vanilla's,
    each with mean ± sd over seeds and a verdict that says whether mean ± 2·SE clears the target."""
    from .grid import baseline_key
    from .report import aggregate

    agg = aggregate(records, "test")
    ok = [r for r in records if r.get("status") == "ok"]
    van = {}
    for r in ok:
        if r["cell"]["reg"]["method"] == "vanilla":
            van[(baseline_key(r["cell"]), r["cell"]["seed"])] = r
    lines = []
    for sel in selections:
        row = agg.get(sel["chosen"])
        if row is None:
            continue
        # accuracy difference per seed against vanilla with that seed
        diffs = []
        for r in ok:
            if (
                r["cell"]["seed"] in row["seeds"]
                and r["cell"]["reg"] == sel["reg"]
                and r["cell"]["common"] == sel["common"]
            ):
                v = van.get((baseline_key(r["cell"]), r["cell"]["seed"]))
                if v is not None and r["test"].get("accuracy") is not None:
                    diffs.append(100 * (r["test"]["accuracy"] - v["test"]["accuracy"]))
        d = np.array(diffs)
        dstat = dict(
            mean=float(d.mean()) if d.size else float("nan"),
            sd=float(d.std(ddof=1)) if d.size > 1 else float("nan"),
            n=int(d.size),
        )
        m, h = _interval(row["nfe_ratio"])
        dm, dh = _interval(dstat)

        def judge(mean, half, ok_if_below, bound):
            if math.isnan(mean):
                return "no data"
            good = mean <= bound if ok_if_below else mean >= bound
            if math.isnan(half):
                return "met on one seed" if good else "missed on one seed"
            lo, hi = mean - half, mean + half
            if ok_if_below:
                return "met" if hi <= bound else ("missed" if lo > bound else "undecided (interval straddles it)")
            return "met" if lo >= bound else ("missed" if hi < bound else "undecided (interval straddles it)")

        nfe_v = judge(m, h, True, nfe_target)
        acc_v = judge(dm, dh, False, -acc_points)
        sd_text = "—" if math.isnan(row["nfe_ratio"]["sd"]) else f"{row['nfe_ratio']['sd']:.3f}"
        dsd = "—" if math.isnan(dstat["sd"]) else f"{dstat['sd']:.2f}"
        lines.append(
            f"- {sel['label']} (λ {sel['lam']:g}, {row['nfe_ratio']['n']} seeds): NFE ratio "
            f"{m:.3f} ± {sd_text} (target ≤ {nfe_target:g}: {nfe_v}); accuracy − vanilla "
            f"{dm:+.2f} ± {dsd} points (target ≥ −{acc_points:g}: {acc_v})"
        )
    lines.append("")
    lines.append(
        'Verdicts: "met"/"missed" when the whole interval mean ± 2·SE (SE = sd/√n over seeds) lies on '
        'one side of the target, "undecided" when it straddles it.'
    )
    return lines
