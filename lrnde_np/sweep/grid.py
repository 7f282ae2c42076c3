"""The sweep's grid: task × method × λ (and schedule) × gradient semantics × tolerance × seed → cells.

A cell is a plain, JSON-serialisable dict with three parts::

    common : what the task and the training budget are (task, tolerances, iterations, batch, data split ...)
             — shared by a method and the vanilla run it is compared with
    reg    : the regularizer (method, semantics, λ, λ_end, schedule, aggregate, heuristic)
    seed   : the training seed

Its identity (:func:`cell_id`) is a readable prefix plus a hash of the canonical JSON of all three, so the
same command always names the same cells, and a record on disk is matched to its cell by name alone.
Vanilla and global cells carry semantics "-" (the gradient semantics is a property of the local step only);
vanilla cells carry λ = 0.
"""

from __future__ import annotations

import hashlib
import json
import math

METHODS = ("vanilla", "global", "local-unbiased", "local-biased")
SEMANTICS = ("paper", "exact")  # paper: k1 frozen (the paper's gradient); exact: k1 differentiated
TASKS = ("spiral", "mnist", "mnist-sde")
AGGREGATES = ("sum", "mean")
SCHEDULES = ("constant", "exponential")

#: Training/task options a cell's ``common`` part may hold, with the defaults of a sweep.
COMMON_KEYS = (
    "task",
    "rtol",
    "atol",
    "iters",
    "batch_size",
    "lr",
    "hidden",
    "adjoint",
    "data",
    "n_train",
    "n_val",
    "split_seed",
    "val_seed",
    "eval_batches",
    "eval_batch_size",
)


def canonical(obj) -> str:
    """Canonical JSON (sorted keys, floats by repr) — the basis of cell identity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _num(x):
    return f"{x:g}".replace("+", "")


def cell_id(cell) -> str:
    """``<task>-<method>-<semantics>-lam<λ>-rtol<rtol>-s<seed>-<hash10>`` (file-name safe)."""
    reg, common = cell["reg"], cell["common"]
    digest = hashlib.sha1(canonical(cell).encode()).hexdigest()[:10]
    sem = reg["semantics"] if reg["semantics"] != "-" else "na"
    return (
        f"{common['task']}-{reg['method']}-{sem}-lam{_num(reg['lam'])}-rtol{_num(common['rtol'])}"
        f"-s{cell['seed']}-{digest}"
    )


def config_key(cell) -> str:
    """Everything but the seed: cells with one config key are repeats of one configuration."""
    return canonical({"common": cell["common"], "reg": cell["reg"]})


def family_key(cell) -> str:
    """Everything but the seed and λ: the candidates among which validation chooses λ."""
    reg = {k: v for k, v in cell["reg"].items() if k not in ("lam", "lam_end")}
    return canonical({"common": cell["common"], "reg": reg})


def baseline_key(cell) -> str:
    """The vanilla configuration a cell is compared with (same task, tolerances, budget, data)."""
    return canonical({"common": cell["common"]})


def _positive_floats(values, name):
    out = []
    for v in values:
        v = float(v)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: every value must be a positive finite number, got {v!r}")
        out.append(v)
    if not out:
        raise ValueError(f"{name}: give at least one value")
    return out


def build_grid(
    common,
    methods,
    lambdas,
    seeds,
    semantics=("paper",),
    rtols=None,
    lambdas_global=None,
    schedule="constant",
    lambda_end_ratio=None,
    global_aggregate="sum",
    global_schedule=None,
    global_lambda_end_ratio=None,
    heuristic="error",
    atol_ratio=None,
):
    """The cells of a sweep (a list of dicts, in a stable order).

    common : dict of :data:`COMMON_KEYS` (``rtol``/``atol`` are replaced per value of ``rtols``, atol =
        rtol·atol_ratio, atol_ratio defaulting to common's atol/rtol).
    methods : subset of :data:`METHODS`.  lambdas : λ of the local methods (start λ of a schedule).
    lambdas_global : λ of the global method (default: ``lambdas``).
    schedule / lambda_end_ratio : "exponential" decays λ to λ·ratio over the run (the paper's 2.5 → 1.0 is
        ratio 0.4); global_schedule / global_lambda_end_ratio the same for the global method (default: as
        local).  global_aggregate : "sum" over steps (the paper's formula) or "mean" (the 2021 code).
    semantics : subset of :data:`SEMANTICS` for the local methods.  seeds : training seeds.
    """
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: unknown method {m!r}; choose from {', '.join(METHODS)}")
    if not methods:
        raise ValueError("methods: give at least one method")
    semantics = list(dict.fromkeys(semantics))
    for s in semantics:
        if s not in SEMANTICS:
            raise ValueError(f"semantics: unknown value {s!r}; choose from {', '.join(SEMANTICS)}")
    if not semantics:
        raise ValueError("semantics: give at least one value")
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds: give non-negative integers, got {seeds!r}")
    if common.get("task") not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {common.get('task')!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    global_schedule = schedule if global_schedule is None else global_schedule
    if global_schedule not in SCHEDULES:
        raise ValueError(f"global_schedule must be one of {SCHEDULES}, got {global_schedule!r}")
    if global_aggregate not in AGGREGATES:
        raise ValueError(f"global_aggregate must be one of {AGGREGATES}, got {global_aggregate!r}")
    if global_lambda_end_ratio is None:
        global_lambda_end_ratio = lambda_end_ratio
    for sch, ratio, name in (
        (schedule, lambda_end_ratio, "lambda_end_ratio"),
        (global_schedule, global_lambda_end_ratio, "global_lambda_end_ratio"),
    ):
        if sch == "exponential" and not (ratio is not None and math.isfinite(ratio) and ratio > 0):
            raise ValueError(f"{name} must be a positive number for the exponential schedule, got {ratio!r}")
    local_lams = _positive_floats(lambdas, "lambdas") if any(m.startswith("local") for m in methods) else []
    global_lams = (
        _positive_floats(lambdas if lambdas_global is None else lambdas_global, "lambdas_global")
        if "global" in methods
        else []
    )
    base_rtol, base_atol = float(common["rtol"]), float(common["atol"])
    if atol_ratio is None:
        atol_ratio = base_atol / base_rtol
    rtols = [base_rtol] if not rtols else _positive_floats(rtols, "rtols")

    def reg_for(method, sem, lam, sch, ratio, aggregate="sum"):
        lam_end = lam * ratio if sch == "exponential" else None
        return dict(
            method=method,
            semantics=sem,
            lam=float(lam),
            lam_end=lam_end,
            schedule=sch,
            aggregate=aggregate,
            heuristic=heuristic,
        )

    cells = []
    for rtol in rtols:
        com = dict(common)
        if len(rtols) > 1 or rtol != base_rtol:
            com["rtol"], com["atol"] = float(rtol), float(rtol * atol_ratio)
        com = {k: com.get(k) for k in COMMON_KEYS}
        for method in methods:
            if method == "vanilla":
                regs = [
                    dict(
                        method="vanilla",
                        semantics="-",
                        lam=0.0,
                        lam_end=None,
                        schedule="constant",
                        aggregate="sum",
                        heuristic="error",
                    )
                ]
            elif method == "global":
                regs = [
                    reg_for("global", "-", lam, global_schedule, global_lambda_end_ratio, global_aggregate)
                    for lam in global_lams
                ]
            else:
                regs = [
                    reg_for(method, sem, lam, schedule, lambda_end_ratio) for sem in semantics for lam in local_lams
                ]
            for reg in regs:
                for seed in seeds:
                    cells.append(dict(common=com, reg=reg, seed=seed))
    ids = [cell_id(c) for c in cells]
    if len(set(ids)) != len(ids):  # pragma: no cover - the hash makes this practically impossible
        raise RuntimeError("two cells of the grid share an id")
    return cells
