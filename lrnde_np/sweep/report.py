"""``lrnde report SWEEP_DIR``: λ chosen on validation data, mean ± sd over seeds, tables and a Pareto plot.

Selection protocol (:func:`select_lambdas`).  For every family of cells — one task/budget/tolerance, one
method, one gradient semantics, one schedule, λ free — the λ is chosen from **validation metrics only**:
the selection functions receive :func:`validation_view` of the records, which drops the test metrics, so
nothing about the test split can move the choice.  The rule, on the means over the seeds that every
candidate (and the matching vanilla run) has:

* feasible: validation accuracy ≥ vanilla's − ``acc_drop`` points (classification), or validation loss ≤
  ``loss_ratio`` × vanilla's (regression);
* chosen: the feasible λ with the lowest validation NFE (ties: the smaller λ); when none is feasible, the λ
  with the best validation accuracy (loss), flagged "constraint not met".

Then the chosen configurations (and vanilla) are reported on the test split: mean ± sd over all their
seeds (sample sd), the NFE ratio per seed against vanilla with the same seed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import os
import sys

import numpy as np

from .grid import baseline_key, canonical, config_key, family_key

CLASSIFICATION = ("mnist", "mnist-sde")
LABELS = {
    "vanilla": "Vanilla",
    "global": "Global (2021)",
    "local-unbiased": "Local Unbiased",
    "local-biased": "Local Biased",
}


# -- loading ---------------------------------------------------------------------------------------------


def load_records(sweep_dir):
    """All records of a sweep directory (``SWEEP/cells/*.json``), ok and failed, sorted by id."""
    paths = sorted(glob.glob(os.path.join(sweep_dir, "cells", "*.json")))
    out = []
    for p in paths:
        try:
            with open(p) as fh:
                out.append(json.load(fh))
        except (OSError, ValueError):
            continue
    return out


def validation_view(records):
    """The records as selection sees them: cell and validation metrics of the "ok" records, nothing else."""
    return [
        dict(cell=r["cell"], validation=dict(r["validation"]))
        for r in records
        if r.get("status") == "ok" and "validation" in r
    ]


def is_classification(cell):
    return cell["common"]["task"] in CLASSIFICATION


def label(cell):
    reg = cell["reg"]
    text = LABELS[reg["method"]]
    if reg["method"] == "global" and reg.get("aggregate", "sum") != "sum":
        text += f" [{reg['aggregate']}]"
    if reg["method"].startswith("local") and cell["common"]["task"] != "mnist-sde":  # SDE steps have no frozen k1
        text += f" ({reg['semantics']} grad)"
    return text


def _lam_text(reg):
    if reg["method"] == "vanilla":
        return "—"
    if reg["schedule"] == "exponential":
        return f"{reg['lam']:g} → {reg['lam_end']:g}"
    return f"{reg['lam']:g}"


# -- selection (validation only) -------------------------------------------------------------------------


def _group(view, key):
    groups = {}
    for r in view:
        groups.setdefault(key(r["cell"]), []).append(r)
    return groups


def _val_score(cell, metrics):
    """(metric value, higher-is-better) of a validation entry."""
    if is_classification(cell):
        return metrics["accuracy"], True
    return metrics["loss"], False


def _mean_over(entries, seeds, field):
    vals = [e["validation"][field] for e in entries if e["cell"]["seed"] in seeds]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def select_lambdas(view, acc_drop=1.0, loss_ratio=1.5):
    """λ per family from validation metrics only (see the module docstring).  ``view`` must come from
    :func:`validation_view`; entries carrying anything but ``cell`` and ``validation`` are refused."""
    for r in view:
        if set(r) != {"cell", "validation"}:
            raise ValueError("select_lambdas takes validation_view(records): cell and validation metrics only")
    vanilla = _group([r for r in view if r["cell"]["reg"]["method"] == "vanilla"], baseline_key)
    families = _group([r for r in view if r["cell"]["reg"]["method"] != "vanilla"], family_key)
    selections = []
    for fkey in sorted(families):
        entries = families[fkey]
        by_lam = _group(entries, config_key)
        seed_sets = [set(e["cell"]["seed"] for e in es) for es in by_lam.values()]
        base = vanilla.get(baseline_key(entries[0]["cell"]), [])
        if base:
            seed_sets.append(set(e["cell"]["seed"] for e in base))
        seeds = set.intersection(*seed_sets)
        cell0 = entries[0]["cell"]
        classify = is_classification(cell0)
        field = "accuracy" if classify else "loss"
        base_metric = _mean_over(base, seeds, field) if base and seeds else float("nan")
        candidates = []
        for ckey, es in by_lam.items():
            use = seeds or set(e["cell"]["seed"] for e in es)
            metric = _mean_over(es, use, field)
            nfe = _mean_over(es, use, "nfe")
            if math.isnan(base_metric):
                feasible = not math.isnan(metric)
            elif classify:
                feasible = metric >= base_metric - acc_drop / 100.0
            else:
                feasible = metric <= loss_ratio * base_metric
            candidates.append(
                dict(
                    config=ckey,
                    reg=es[0]["cell"]["reg"],
                    lam=es[0]["cell"]["reg"]["lam"],
                    metric=metric,
                    nfe=nfe,
                    feasible=bool(feasible),
                    seeds=sorted(use),
                )
            )
        candidates.sort(key=lambda c: c["lam"])
        feasible = [c for c in candidates if c["feasible"] and not math.isnan(c["nfe"])]
        if feasible:
            chosen = min(feasible, key=lambda c: (c["nfe"], c["lam"]))
            met = True
        else:
            sign = -1.0 if classify else 1.0
            chosen = min(candidates, key=lambda c: (sign * np.nan_to_num(c["metric"], nan=-sign * np.inf), c["lam"]))
            met = False
        rule = (
            f"validation accuracy ≥ vanilla − {acc_drop:g} point(s), then lowest validation NFE"
            if classify
            else f"validation loss ≤ {loss_ratio:g} × vanilla's, then lowest validation NFE"
        )
        selections.append(
            dict(
                family=fkey,
                common=cell0["common"],
                method=cell0["reg"]["method"],
                semantics=cell0["reg"]["semantics"],
                label=label(cell0),
                chosen=chosen["config"],
                lam=chosen["lam"],
                reg=chosen["reg"],
                constraint_met=met,
                rule=rule,
                selection_seeds=sorted(seeds),
                vanilla_metric=base_metric,
                metric=field,
                candidates=candidates,
            )
        )
    return selections


# -- aggregation (mean ± sd over seeds) ------------------------------------------------------------------


def _stats(values):
    vals = np.array(
        [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=np.float64
    )
    if vals.size == 0:
        return dict(mean=float("nan"), sd=float("nan"), n=0)
    return dict(
        mean=float(vals.mean()), sd=float(vals.std(ddof=1)) if vals.size > 1 else float("nan"), n=int(vals.size)
    )


def aggregate(records, split="test"):
    """Per configuration (config key): mean ± sd over seeds of ``split``'s metrics, times and NFE ratio.

    The NFE ratio is computed per seed against the vanilla run with the same seed and baseline."""
    ok = [r for r in records if r.get("status") == "ok"]
    vanilla = {}
    for r in ok:
        if r["cell"]["reg"]["method"] == "vanilla":
            vanilla[(baseline_key(r["cell"]), r["cell"]["seed"])] = r
    out = {}
    for ckey, rs in _group(ok, config_key).items():
        cell = rs[0]["cell"]
        ratios, pred_speedups, train_ratios = [], [], []
        for r in rs:
            v = vanilla.get((baseline_key(r["cell"]), r["cell"]["seed"]))
            if v is not None:
                ratios.append(r[split]["nfe"] / v[split]["nfe"])
                pred_speedups.append(
                    v["timing"].get(f"{split}_prediction_time", float("nan"))
                    / r["timing"].get(f"{split}_prediction_time", float("nan"))
                )
                train_ratios.append(r["timing"]["train_time"] / v["timing"]["train_time"])
        row = dict(
            config=ckey,
            cell=cell,
            label=label(cell),
            seeds=sorted(r["cell"]["seed"] for r in rs),
            split=split,
            accuracy=_stats([None if r[split].get("accuracy") is None else 100 * r[split]["accuracy"] for r in rs]),
            loss=_stats([r[split]["loss"] for r in rs]),
            nfe=_stats([r[split]["nfe"] for r in rs]),
            nfe_ratio=_stats(ratios),
            prediction_time=_stats([r["timing"].get(f"{split}_prediction_time") for r in rs]),
            pred_speedup=_stats(pred_speedups),
            train_time=_stats([r["timing"]["train_time"] for r in rs]),
            train_time_ratio=_stats(train_ratios),
            train_nfe=_stats([r["train"]["nfe_train_mean"] for r in rs]),
            val_accuracy=_stats(
                [None if r["validation"].get("accuracy") is None else 100 * r["validation"]["accuracy"] for r in rs]
            ),
            val_loss=_stats([r["validation"]["loss"] for r in rs]),
            val_nfe=_stats([r["validation"]["nfe"] for r in rs]),
        )
        if "nfe_drift" in rs[0][split]:
            row["nfe_drift"] = _stats([r[split].get("nfe_drift") for r in rs])
        out[ckey] = row
    return out


def pm(stat, digits=4, scale=1.0):
    """'mean ± sd (n)' text."""
    if stat["n"] == 0:
        return "—"
    mean = f"{stat['mean'] * scale:.{digits}g}"
    sd_value = 0.0 if stat["sd"] <= 1e-12 * abs(stat["mean"]) else stat["sd"]  # exact repeats: no rounding dust
    sd = "—" if math.isnan(stat["sd"]) else f"{sd_value * scale:.2g}"
    return f"{mean} ± {sd}"


# -- tables ----------------------------------------------------------------------------------------------


def chosen_rows(records, selections, split="test"):
    """Header and rows (strings) of the chosen configurations and vanilla on ``split``, per baseline."""
    agg = aggregate(records, split)
    rows_by_base = {}
    for row in agg.values():
        if row["cell"]["reg"]["method"] == "vanilla":
            rows_by_base.setdefault(baseline_key(row["cell"]), []).insert(0, (row, None))
    for sel in selections:
        row = agg.get(sel["chosen"])
        if row is not None:
            rows_by_base.setdefault(canonical({"common": sel["common"]}), []).append((row, sel))
    any_class = any(is_classification(r["cell"]) for rs in rows_by_base.values() for r, _ in rs)
    any_drift = any("nfe_drift" in r for rs in rows_by_base.values() for r, _ in rs)
    metric = "Test Acc %" if any_class else "Test Loss"
    header = (
        ["Task", "rtol", "Method", "λ", "Seeds", metric, "Test NFE"]
        + (["Test NFE (drift only)"] if any_drift else [])
        + [
            "NFE ratio",
            "Pred Time (s/batch)",
            "Pred speed-up",
            "Train Time (s)",
            "Train time ratio",
            "Val " + ("Acc %" if any_class else "Loss"),
            "Selection",
        ]
    )
    rows, data = [], []
    for bkey in sorted(rows_by_base):
        for row, sel in rows_by_base[bkey]:
            cell = row["cell"]
            classify = is_classification(cell)
            m = pm(row["accuracy"], 4) if classify else pm(row["loss"], 3)
            vm = pm(row["val_accuracy"], 4) if classify else pm(row["val_loss"], 3)
            note = "" if sel is None else ("validation" + ("" if sel["constraint_met"] else ", constraint not met"))
            rows.append(
                [
                    cell["common"]["task"],
                    f"{cell['common']['rtol']:g}",
                    row["label"],
                    _lam_text(cell["reg"]),
                    str(len(row["seeds"])),
                    m,
                    pm(row["nfe"], 4),
                ]
                + ([pm(row["nfe_drift"], 4) if "nfe_drift" in row else "—"] if any_drift else [])
                + [
                    pm(row["nfe_ratio"], 3),
                    pm(row["prediction_time"], 3),
                    pm(row["pred_speedup"], 3),
                    pm(row["train_time"], 4),
                    pm(row["train_time_ratio"], 3),
                    vm,
                    note,
                ]
            )
            data.append(row)
    return header, rows, data


def selection_rows(selections):
    header = ["Task", "rtol", "Method", "λ", "Selection seeds", "Val metric", "Val NFE", "Feasible", "Chosen"]
    rows = []
    for sel in selections:
        for c in sel["candidates"]:
            metric = f"{100 * c['metric']:.2f}%" if sel["metric"] == "accuracy" else f"{c['metric']:.4g}"
            rows.append(
                [
                    sel["common"]["task"],
                    f"{sel['common']['rtol']:g}",
                    sel["label"],
                    _lam_text(c["reg"]),
                    ",".join(map(str, c["seeds"])),
                    metric,
                    f"{c['nfe']:.4g}",
                    "yes" if c["feasible"] else "no",
                    "**chosen**" if c["config"] == sel["chosen"] else "",
                ]
            )
    return header, rows


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- Pareto plot -----------------------------------------------------------------------------------------


def pareto_plot(records, selections, path, split="test"):
    """Test NFE against test accuracy (loss), one point per λ with sd error bars, one panel per baseline
    (task, tolerance, budget); vanilla a star, the chosen λ ringed.  Returns the path or a note."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed"
    agg = aggregate(records, split)
    chosen = {s["chosen"] for s in selections}
    bases = sorted({baseline_key(r["cell"]) for r in agg.values()})
    if not bases:
        return "skipped: no finished cells"
    fig, axes = plt.subplots(1, len(bases), figsize=(6.5 * len(bases), 4.8), squeeze=False)
    for ax, bkey in zip(axes[0], bases, strict=False):
        rows = [r for r in agg.values() if baseline_key(r["cell"]) == bkey]
        classify = is_classification(rows[0]["cell"])
        ykey = "accuracy" if classify else "loss"
        fams = {}
        for r in rows:
            fams.setdefault(family_key(r["cell"]), []).append(r)
        for rs in sorted(fams.values(), key=lambda v: v[0]["label"]):
            rs.sort(key=lambda r: r["cell"]["reg"]["lam"])
            x = [r["nfe"]["mean"] for r in rs]
            y = [r[ykey]["mean"] for r in rs]
            xe = [0 if math.isnan(r["nfe"]["sd"]) else r["nfe"]["sd"] for r in rs]
            ye = [0 if math.isnan(r[ykey]["sd"]) else r[ykey]["sd"] for r in rs]
            is_van = rs[0]["cell"]["reg"]["method"] == "vanilla"
            eb = ax.errorbar(
                x,
                y,
                xerr=xe,
                yerr=ye,
                marker="*" if is_van else "o",
                ms=12 if is_van else 5,
                capsize=2,
                ls="none" if is_van else "-",
                label=rs[0]["label"],
            )
            for r, xi, yi in zip(rs, x, y, strict=True):
                if not is_van:
                    ax.annotate(
                        f"{r['cell']['reg']['lam']:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points"
                    )
                if r["config"] in chosen:
                    ax.plot([xi], [yi], marker="o", ms=13, mfc="none", mec=eb[0].get_color(), mew=1.5)
        c = rows[0]["cell"]["common"]
        ax.set_title(f"{c['task']} rtol {c['rtol']:g}, {c['iters']} iters (ringed: chosen on validation)", fontsize=9)
        ax.set_xlabel(f"{split} NFE (mean ± sd over seeds)")
        ax.set_ylabel(f"{split} accuracy %" if classify else f"{split} loss (MSE)")
        if not classify:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the command -----------------------------------------------------------------------------------------


def write_report(sweep_dir, out_dir=None, acc_drop=1.0, loss_ratio=1.5, plot=True, title=None):
    """Select, aggregate and write report.md, chosen.csv, selection.csv, summary.json (+ pareto.png) to
    ``out_dir`` (default SWEEP/report); returns (markdown text, paths, selections)."""
    records = load_records(sweep_dir)
    out_dir = out_dir or os.path.join(sweep_dir, "report")
    os.makedirs(out_dir, exist_ok=True)
    selections = select_lambdas(validation_view(records), acc_drop=acc_drop, loss_ratio=loss_ratio)
    ch_header, ch_rows, ch_data = chosen_rows(records, selections)
    sel_header, sel_rows = selection_rows(selections)
    n_ok = sum(r.get("status") == "ok" for r in records)
    failed = [r for r in records if r.get("status") != "ok"]
    lines = [
        f"# {title or 'Sweep report'}",
        "",
        f"Sweep directory: `{os.path.abspath(sweep_dir)}` — {n_ok} finished cells, {len(failed)} failed.",
        "",
    ]
    if selections:
        lines += [
            f"λ chosen on the validation split only ({selections[0]['rule']}; means over the seeds every "
            f"candidate has); the test split is read only for the table of the chosen configurations.",
            "",
        ]
    lines += [
        "## Chosen configurations and vanilla on the test split (mean ± sd over seeds)",
        "",
        markdown_table(ch_header, ch_rows),
        "",
        "NFE ratio and speed-ups: per seed against vanilla with the same seed, then mean ± sd; sd is the "
        "sample standard deviation (— for one seed).",
        "",
        "## Selection (validation split)",
        "",
        markdown_table(sel_header, sel_rows),
        "",
    ]
    if failed:
        lines += ["## Failed cells", ""] + [f"- `{r.get('id')}`: {r.get('error')}" for r in failed] + [""]
    paths = {}
    with open(os.path.join(out_dir, "chosen.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(ch_header)
        w.writerows(ch_rows)
    paths["chosen_csv"] = os.path.join(out_dir, "chosen.csv")
    with open(os.path.join(out_dir, "selection.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(sel_header)
        w.writerows(sel_rows)
    paths["selection_csv"] = os.path.join(out_dir, "selection.csv")
    summary = dict(
        sweep_dir=os.path.abspath(sweep_dir),
        n_ok=n_ok,
        n_failed=len(failed),
        selections=selections,
        chosen=ch_data,
        all_configurations=list(aggregate(records, "test").values()),
    )
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    paths["json"] = os.path.join(out_dir, "summary.json")
    if plot:
        paths["pareto"] = pareto_plot(records, selections, os.path.join(out_dir, "pareto.png"))
        lines += [f"Pareto plot: `{paths['pareto']}`", ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write(text + "\n")
    paths["markdown"] = os.path.join(out_dir, "report.md")
    return text, paths, selections


def build_parser():
    p = argparse.ArgumentParser(
        prog="lrnde report",
        description="Tables (mean ± sd over seeds), λ chosen on "
        "validation data, and a Pareto plot of a sweep directory written by lrnde sweep.",
    )
    p.add_argument("sweep_dir", metavar="SWEEP_DIR")
    p.add_argument("--out", metavar="DIR", help="output directory (default SWEEP_DIR/report)")
    p.add_argument(
        "--acc-drop",
        type=float,
        default=1.0,
        help="classification: feasible λ keep validation accuracy within this many points of vanilla (default 1)",
    )
    p.add_argument(
        "--loss-ratio",
        type=float,
        default=1.5,
        help="regression: feasible λ keep validation loss ≤ this × vanilla's (default 1.5)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the Pareto plot")
    p.add_argument("--title", help="title of report.md")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not os.path.isdir(os.path.join(args.sweep_dir, "cells")):
        print(f"lrnde report: {args.sweep_dir!r} has no cells/ directory (not a sweep directory)", file=sys.stderr)
        return 2
    text, paths, _ = write_report(
        args.sweep_dir, args.out, args.acc_drop, args.loss_ratio, not args.no_plot, args.title
    )
    print(text)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
