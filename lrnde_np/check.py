"""Checking hand-written derivatives: a VJP or JVP of a right-hand side, or an adjoint's gradient of a solve.

* :func:`check_vjp` — ``f_vjp(t, y, p, a, out_y, out_p)`` against central finite differences of ``a·f`` (and
  against autograd when a pure autograd-NumPy version of f is given);
* :func:`check_jvp` — ``f_jvp(t, y, p, v, out)`` against a central difference of f along v (and autograd);
* :func:`check_gradient` — an adjoint's dL/dy0, dL/dp of a whole solve against finite differences of the
  loss of a tight solve (or, for the discrete adjoint, of a replay of its recorded step sequence).

Each returns a :class:`CheckReport` whose ``passed`` says whether every error is within tolerance and whose
``str()`` is a table::

    >>> report = check_vjp(f, f_vjp, y, p)
    >>> print(report)
    >>> assert report.passed

Errors are *relative to the largest entry* of the reference, max_i |x_i − ref_i| / max_i |ref_i| per block,
so that tiny entries of a gradient do not dominate.  Finite differences use the fourth-order central stencil
with the step ``eps·max(1, |x_i|)`` (default eps = 1e-3, truncation and rounding errors both ≲ 1e-10 for
smooth fields of moderate size); a field with kinks (relu) can fail at a kink — pass ``autograd_f`` instead.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .ode.rhs import check_user_function
from .ode.solve import check_array, check_positive, solve_ode, validate_saveat, validate_span
from .tableaus import get_tableau

__all__ = ["CheckReport", "check_vjp", "check_jvp", "check_gradient"]

ADJOINTS = ("discrete", "backsolve", "backsolve+seminorm", "interpolating", "interpolating+seminorm", "quadrature")


@dataclass
class CheckReport:
    """What a check found.

    ``max_rel_error_y`` / ``max_rel_error_p``: the largest error of the derivative with respect to y (or y0)
    and to p, over all references compared (finite differences, autograd); ``None`` where not applicable
    (a JVP has no p block).  ``passed``: every error ≤ its tolerance (and, for a VJP, the outputs are
    overwritten rather than accumulated).  ``rows``: (derivative, reference, max |error|, relative error,
    tolerance) for the table.
    """

    check: str
    max_rel_error_y: float | None
    max_rel_error_p: float | None
    passed: bool
    rows: list[tuple[str, str, float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def __bool__(self):
        return bool(self.passed)

    def __str__(self):
        head = f"{self.check}: {'PASSED' if self.passed else 'FAILED'}"
        widths = (22, 36, 12, 12, 10)
        titles = ("derivative", "reference", "max |error|", "rel. error", "tolerance")
        lines = [head, "  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True))]
        for name, ref, abs_err, rel, tol in self.rows:
            flag = "" if rel <= tol else "  <-- too large"
            lines.append(
                "  ".join(
                    [
                        name.ljust(widths[0]),
                        ref.ljust(widths[1]),
                        f"{abs_err:.3e}".ljust(widths[2]),
                        f"{rel:.3e}".ljust(widths[3]),
                        f"{tol:.1e}".ljust(widths[4]),
                    ]
                )
                + flag
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Argument checks


def _rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _callable(name, fn):
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


def _time(t):
    try:
        v = float(t)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"t must be a number, got {type(t).__name__}") from exc
    if not np.isfinite(v):
        raise ValueError(f"t must be finite, got {t!r}")
    return v


def _vector(name, x, size=None):
    a = check_array(name, x, 1).copy()
    if size is not None and a.size != size:
        raise ValueError(f"{name} must have {size} entries, got {a.size}")
    return a


def _n_points(random_points):
    if (
        isinstance(random_points, bool)
        or not isinstance(random_points, (numbers.Integral, np.integer))
        or not 0 <= random_points <= 1000
    ):
        raise ValueError(f"random_points must be an integer in 0…1000, got {random_points!r}")
    return int(random_points)


def _probe_points(f, t, y, p, gen, count):
    """``count`` seeded random points (t', y', p') near the given one — t' = t + U(-1, 1)·max(1, |t|),
    y' = y + U(-½, ½)·(|y| + 1) elementwise, p' likewise — at which f is finite (up to 10 tries each), so that
    a derivative wrong only away from the given point (say only where t ≠ 0) cannot pass."""
    points = []
    for _ in range(10 * count):
        if len(points) == count:
            break
        tt = t + gen.uniform(-1.0, 1.0) * max(1.0, abs(t))
        yy = y + gen.uniform(-0.5, 0.5, y.size) * (np.abs(y) + 1.0)
        pp = p + gen.uniform(-0.5, 0.5, p.size) * (np.abs(p) + 1.0)
        with np.errstate(all="ignore"):
            if np.all(np.isfinite(_call_rhs(f, tt, yy, pp, y.size))):
                points.append((float(tt), yy, pp))
    return points


def _max_coords(max_coords):
    if max_coords is None:
        return None
    if isinstance(max_coords, bool) or not isinstance(max_coords, (numbers.Integral, np.integer)) or max_coords < 1:
        raise ValueError(f"max_coords must be a positive int or None, got {max_coords!r}")
    return int(max_coords)


# ---------------------------------------------------------------------------------------------------------
# Numerics


def _fd4(fun, x, i, h):
    """Fourth-order central difference of the scalar fun along coordinate i of x."""

    def at(d):
        z = x.copy()
        z[i] += d
        return fun(z)

    return (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12.0 * h)


def _fd_gradient(fun, x, eps, coords):
    """Partial derivatives of the scalar fun at x for the given coordinates."""
    return np.array([_fd4(fun, x, i, eps * max(1.0, abs(x[i]))) for i in coords])


def _rel(x, ref):
    x, ref = np.ravel(x), np.ravel(ref)
    if x.size == 0:
        return 0.0, 0.0
    abs_err = float(np.max(np.abs(x - ref)))
    scale = float(np.max(np.abs(ref)))
    if scale == 0.0:
        return abs_err, (0.0 if abs_err == 0.0 else np.inf)
    return abs_err, abs_err / scale


def _coords(size, max_coords, rng):
    """All coordinates, or a random sorted subset of max_coords of them."""
    if max_coords is None or size <= max_coords:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_coords, replace=False))


def _call_rhs(f, t, y, p, n_out):
    out = np.zeros(n_out)
    f(t, y, p, out)
    return out


def _import_autograd():
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("autograd_f needs the autograd package (pip install autograd)") from exc
    return autograd, anp


def _finish(check, rows, notes, details, y_names=(), p_names=(), extra_ok=True):
    def worst(names):
        vals = [r[3] for r in rows if r[0] in names]
        return max(vals) if vals else None

    passed = extra_ok and all(r[3] <= r[4] for r in rows)
    return CheckReport(
        check=check,
        max_rel_error_y=worst(y_names),
        max_rel_error_p=worst(p_names),
        passed=bool(passed),
        rows=rows,
        notes=notes,
        details=details,
    )


# ---------------------------------------------------------------------------------------------------------
# VJP / JVP of a right-hand side


def _field_check_inputs(
    f, derivative_name, derivative, t, y, p, direction_name, direction, rng, eps, tol, autograd_tol, autograd_f
):
    """check_vjp's and check_jvp's shared arguments, validated, and f's value at (t, y, p): (t, y, p, the
    cotangent/tangent — a normal draw from the generator when None —, the generator, eps, tol, autograd_tol,
    value)."""
    _callable("f", f)
    _callable(derivative_name, derivative)
    t = _time(t)
    y = _vector("y", y)
    if y.size == 0:
        raise ValueError("y must not be empty")
    p = np.zeros(0) if p is None else _vector("p", p)
    gen = _rng(rng)
    direction = gen.standard_normal(y.size) if direction is None else _vector(direction_name, direction, y.size)
    eps = 1e-3 if eps is None else check_positive("eps", eps)
    tol = check_positive("tol", tol)
    autograd_tol = check_positive("autograd_tol", autograd_tol)
    if autograd_f is not None:
        _callable("autograd_f", autograd_f)
    # Checked first calls (ode/rhs.py): a wrong signature, an index out of range (p shorter than the function
    # reads, say) or an unwritten output is a one-line TypeError/ValueError here, before the compiled
    # functions run on unguarded arrays.
    check_user_function(f, "rhs", "f", t, y, p)
    check_user_function(derivative, "vjp" if derivative_name == "f_vjp" else "jvp", derivative_name, t, y, p, direction)
    value = _call_rhs(f, t, y, p, y.size)
    if not np.all(np.isfinite(value)):
        raise ValueError("f returned non-finite values at (t, y, p)")
    return t, y, p, direction, gen, eps, tol, autograd_tol, value


def check_vjp(
    f,
    f_vjp,
    y,
    p=None,
    t=0.0,
    a=None,
    rng=0,
    eps=None,
    autograd_f=None,
    tol=1e-6,
    autograd_tol=1e-10,
    max_coords=None,
    random_points=2,
) -> CheckReport:
    """Compare ``f_vjp(t, y, p, a, out_y, out_p)`` with central finite differences of ``a·f(t, y, p)``.

    Parameters
    ----------
    f : ``f(t, y, p, out)`` writing dy/dt into ``out`` (Numba function, FunctionHandle or Python callable).
    f_vjp : ``f_vjp(t, y, p, a, out_y, out_p)`` writing aᵀ∂f/∂y and aᵀ∂f/∂p (overwriting both).
    y, p : the point (1-D float arrays; ``p`` may be None for no parameters).  ``t``: the time.
    a : the cotangent (shape of y); default a standard normal draw from ``rng``.
    rng : an int seed or a ``numpy.random.Generator`` (for ``a`` and the coordinate subset).
    eps : relative finite-difference step (default 1e-3, see the module docstring).
    autograd_f : optional ``autograd_f(t, y, p) -> dy/dt`` written with ``autograd.numpy``; the VJP is then
        also compared with autograd's (to ``autograd_tol``), and f with autograd_f.
    tol : tolerance of the finite-difference comparison (error relative to the largest entry).
    max_coords : check at most this many coordinates of y and of p each (a random subset); None: all.
    random_points : also compare at this many random points (t', y', p', a') drawn from ``rng`` near the
        given one (see :func:`_probe_points`; finite differences only), so that a VJP wrong only away from the
        given point — say only where t ≠ 0 — fails.  Their rows say "at random point k".
    """
    n_random = _n_points(random_points)
    t, y, p, a, gen, eps, tol, autograd_tol, value = _field_check_inputs(
        f, "f_vjp", f_vjp, t, y, p, "a", a, rng, eps, tol, autograd_tol, autograd_f
    )
    max_coords = _max_coords(max_coords)
    # The VJP, once into zeroed and once into garbage-filled outputs: they must be overwritten.
    out_y, out_p = np.zeros(y.size), np.zeros(p.size)
    f_vjp(t, y.copy(), p.copy(), a.copy(), out_y, out_p)
    junk_y, junk_p = np.full(y.size, 1e3), np.full(p.size, -1e3)
    f_vjp(t, y.copy(), p.copy(), a.copy(), junk_y, junk_p)
    overwrites = bool(np.array_equal(junk_y, out_y) and np.array_equal(junk_p, out_p))
    notes = []
    if not overwrites:
        notes.append(
            "f_vjp does not overwrite out_y/out_p (it accumulates into them or leaves entries unset); "
            "the solvers hand it work buffers with old contents"
        )

    cy = _coords(y.size, max_coords, gen)
    cp = _coords(p.size, max_coords, gen)
    rows = []
    probes = [(t, y, p, a, "")]
    for k, (tt, yy, pp) in enumerate(_probe_points(f, t, y, p, gen, n_random)):
        probes.append((tt, yy, pp, gen.standard_normal(y.size), f" at random point {k + 1}"))
    for tt, yy, pp, aa, where in probes:

        def a_dot_f(y_, p_, tt=tt, aa=aa):
            return float(aa @ _call_rhs(f, tt, y_, p_, y.size))

        vy, vp = np.zeros(y.size), np.zeros(p.size)
        f_vjp(tt, yy.copy(), pp.copy(), aa.copy(), vy, vp)
        fd_y = _fd_gradient(lambda z, pp=pp: a_dot_f(z, pp), yy, eps, cy)
        fd_p = _fd_gradient(lambda q, yy=yy: a_dot_f(yy, q), pp, eps, cp)
        rows.append(("a^T df/dy", "finite differences" + where, *_rel(vy[cy], fd_y), tol))
        if p.size:
            rows.append(("a^T df/dp", "finite differences" + where, *_rel(vp[cp], fd_p), tol))
    if len(probes) - 1 < n_random:
        notes.append(f"f was non-finite at some random probe points: compared at {len(probes) - 1} of {n_random}")
    if cy.size < y.size or cp.size < p.size:
        notes.append(f"finite differences on {cy.size} of {y.size} y and {cp.size} of {p.size} p coordinates")
    if autograd_f is not None:
        autograd, anp = _import_autograd()
        rows.append(("f", "autograd_f", *_rel(value, np.asarray(autograd_f(t, y, p), dtype=float)), autograd_tol))

        def loss(y_, p_):
            return anp.dot(a, anp.ravel(autograd_f(t, y_, p_)))

        ag_y, ag_p = autograd.grad(loss, (0, 1))(y, p)
        rows.append(("a^T df/dy", "autograd", *_rel(out_y, ag_y), autograd_tol))
        if p.size:
            rows.append(("a^T df/dp", "autograd", *_rel(out_p, ag_p), autograd_tol))
    details = dict(
        a=a,
        vjp_y=out_y,
        vjp_p=out_p,
        eps=eps,
        overwrites=overwrites,
        points=[(tt, yy, pp) for tt, yy, pp, _, _ in probes],
    )
    return _finish(
        "check_vjp", rows, notes, details, y_names=("a^T df/dy",), p_names=("a^T df/dp",), extra_ok=overwrites
    )


def check_jvp(
    f, f_jvp, y, p=None, t=0.0, v=None, rng=0, eps=None, autograd_f=None, tol=1e-6, autograd_tol=1e-10, random_points=2
) -> CheckReport:
    """Compare ``f_jvp(t, y, p, v, out)`` = ∂f/∂y·v with a central difference of f along v.

    Arguments as :func:`check_vjp` (``v``: the tangent, default a normal draw; ``random_points`` random
    (t', y', p', v') as well).  ``max_rel_error_p`` is None.
    """
    n_random = _n_points(random_points)
    t, y, p, v, gen, eps, tol, autograd_tol, value = _field_check_inputs(
        f, "f_jvp", f_jvp, t, y, p, "v", v, rng, eps, tol, autograd_tol, autograd_f
    )
    probes = [(t, y, p, v, "")]
    for k, (tt, yy, pp) in enumerate(_probe_points(f, t, y, p, gen, n_random)):
        probes.append((tt, yy, pp, gen.standard_normal(y.size), f" at random point {k + 1}"))
    rows = []
    for tt, yy, pp, vv, where in probes:
        jv = np.full(y.size, 1e3)
        f_jvp(tt, yy.copy(), pp.copy(), vv.copy(), jv)
        # Along v: step eps·max(1, |y|_inf) / |v|_inf.
        h = eps * max(1.0, float(np.max(np.abs(yy)))) / max(float(np.max(np.abs(vv))), 1e-300)
        fd = (
            8.0 * (_call_rhs(f, tt, yy + h * vv, pp, y.size) - _call_rhs(f, tt, yy - h * vv, pp, y.size))
            - (_call_rhs(f, tt, yy + 2 * h * vv, pp, y.size) - _call_rhs(f, tt, yy - 2 * h * vv, pp, y.size))
        ) / (12.0 * h)
        rows.append(("df/dy v", "finite differences" + where, *_rel(jv, fd), tol))
        if not where:
            out = jv
    if autograd_f is not None:
        autograd, anp = _import_autograd()
        rows.append(("f", "autograd_f", *_rel(value, np.asarray(autograd_f(t, y, p), dtype=float)), autograd_tol))
        J = autograd.jacobian(lambda z: anp.ravel(autograd_f(t, z, p)))(y)
        rows.append(("df/dy v", "autograd", *_rel(out, J @ v), autograd_tol))
    details = dict(v=v, jvp=out, eps=eps)
    return _finish("check_jvp", rows, [], details, y_names=("df/dy v",))


# ---------------------------------------------------------------------------------------------------------
# Gradient of a whole solve


def _replayed_solve(f, tab, y0, p, sol):
    """sol.y recomputed for (y0, p) along sol's recorded step sequence (Python loop over f)."""
    A, c = tab.A, tab.c
    s = A.shape[0]
    n = y0.size
    out = np.empty((sol.t.size, n))
    by_step = {}
    for r, j in enumerate(sol.save_step):
        if j < 0:
            out[r] = y0
        else:
            by_step.setdefault(int(j), []).append(r)
    y = y0.copy()
    K = np.empty((s, n))
    K[0] = _call_rhs(f, float(sol.steps.t[0]), y, p, n) if len(sol.steps) else 0.0
    for j, (t, h) in enumerate(zip(sol.steps.t, sol.steps.dt, strict=True)):
        Y = y
        for i in range(1, s):
            Y = y + h * (A[i, :i] @ K[:i])
            K[i] = _call_rhs(f, float(t + c[i] * h), Y, p, n)
        for r in by_step.get(j, []):
            theta = sol.save_theta[r]
            out[r] = Y if theta == 1.0 else y + h * (tab.dense_weights(theta) @ K)
        y = Y
        K[0] = K[s - 1]
    return out


def check_gradient(
    f,
    f_vjp,
    t_span,
    y0,
    p=None,
    loss=None,
    loss_grad=None,
    saveat=None,
    adjoint="discrete",
    rtol=1e-6,
    atol=1e-8,
    adjoint_rtol=None,
    adjoint_atol=None,
    reference="solve",
    fd_tol=1e-12,
    eps=None,
    tol=None,
    max_coords=None,
    rng=0,
    method="tsit5",
    budget=None,
    **solve_options,
) -> CheckReport:
    """Compare an adjoint's gradient of a loss on a solve with finite differences.

    The forward problem ``y' = f(t, y, p)``, ``y(t0) = y0`` is solved with ``solve_ode(..., rtol, atol,
    saveat, method, **solve_options, record_states=True)`` (without saveat it saves at its own steps and the
    reference solves save at those times); the loss is ``loss(sol.t, sol.y) -> float`` with
    ``loss_grad(sol.t, sol.y) -> dL/d(sol.y)`` (one row per saved point), by default a random linear
    functional ``Σ W ⊙ y``.  ``adjoint`` is "discrete", "backsolve", "backsolve+seminorm", "interpolating",
    "interpolating+seminorm" or "quadrature" (the continuous ones at ``adjoint_rtol``/``adjoint_atol``,
    default rtol/atol).

    Two comparisons, reported as separate rows, both must pass:

    * **the VJP, exactly** — always: the discrete adjoint of the forward solve against finite differences of a
      replay of that solve's own step sequence (whose exact gradient the discrete adjoint is, whatever the
      solver tolerance), to ``tol`` — by default the ``rtol`` you passed, unchanged (a VJP 4 % wrong fails at
      rtol = 1e-3), but not below 1e-7, the finite differences' resolution.
    * **the adjoint's error budget** — with ``reference="solve"`` (default): the chosen ``adjoint`` against
      finite differences of the loss of a tight solve (``rtol = atol = fd_tol``), the gradient of the exact
      flow, which every adjoint approximates only to O(rtol); this row's tolerance is ``budget``, default
      100·max(rtol, adjoint_rtol), and is labelled as the budget.  ``reference="replay"`` (discrete adjoint
      only) skips it.

    ``max_coords`` limits the coordinates differenced (random subset).
    """
    from . import adjoint as adj

    _callable("f", f)
    _callable("f_vjp", f_vjp)
    t0, t1 = validate_span(t_span)
    y0 = _vector("y0", y0)
    if y0.size == 0:
        raise ValueError("y0 must not be empty")
    p = np.zeros(0) if p is None else _vector("p", p)
    if adjoint not in ADJOINTS:
        raise ValueError(f"adjoint must be one of {ADJOINTS}, got {adjoint!r}")
    if reference not in ("solve", "replay"):
        raise ValueError(f"reference must be 'solve' or 'replay', got {reference!r}")
    if reference == "replay" and adjoint != "discrete":
        raise ValueError(
            f"reference='replay' is the discrete adjoint's reference; use reference='solve' for the {adjoint} adjoint"
        )
    rtol = check_positive("rtol", rtol)
    adjoint_rtol = rtol if adjoint_rtol is None else check_positive("adjoint_rtol", adjoint_rtol)
    adjoint_atol = atol if adjoint_atol is None else check_positive("adjoint_atol", adjoint_atol)
    fd_tol = check_positive("fd_tol", fd_tol)
    eps_replay = 1e-3 if eps is None else check_positive("eps", eps)
    eps = (1e-3 if reference == "replay" else 3e-4) if eps is None else eps_replay
    tol = max(rtol, 1e-7) if tol is None else check_positive("tol", tol)  # 1e-7: the FD resolution floor
    if budget is None:
        budget = 100.0 * max(rtol, adjoint_rtol if adjoint != "discrete" else rtol)
    budget = check_positive("budget", budget)
    max_coords = _max_coords(max_coords)
    gen = _rng(rng)
    if "record_states" in solve_options or "dense" in solve_options:
        raise ValueError("solve_options: record_states/dense are set by check_gradient")
    saveat = validate_saveat(saveat, t0, t1)
    tab = get_tableau(method)

    def solve(y_init, params, r, a, record, ts):
        return solve_ode(
            f, (t0, t1), y_init, params, method=tab, rtol=r, atol=a, saveat=ts, record_states=record, **solve_options
        )

    check_user_function(f, "rhs", "f", t0, y0, p)  # one-line errors before anything compiled runs unguarded
    check_user_function(f_vjp, "vjp", "f_vjp", t0, y0, p)
    sol = solve(y0, p, rtol, atol, True, saveat)
    if not sol.success:
        raise ValueError(f"the forward solve failed: {sol.message}")
    # Without saveat the solve saves at its own steps; the tight reference solve saves at those same times.
    ref_saveat = sol.t.copy() if saveat is None else saveat
    if loss is None and loss_grad is None:
        W = gen.standard_normal(sol.y.shape)

        def loss(ts, ys):
            return float(np.sum(W * ys))

        def loss_grad(ts, ys):
            return W
    elif loss is None or loss_grad is None:
        raise ValueError(
            "loss and loss_grad: give both (the value for the finite differences, the gradient "
            "for the adjoint) or neither"
        )
    else:
        _callable("loss", loss)
        _callable("loss_grad", loss_grad)
    gy = np.asarray(loss_grad(sol.t, sol.y), dtype=float)
    if gy.shape != sol.y.shape:
        raise ValueError(f"loss_grad must return an array of the shape of sol.y {sol.y.shape}, got {gy.shape}")

    exact = adj.discrete_adjoint(sol, f_vjp, gy)
    if adjoint == "discrete":
        res = exact
    elif adjoint.startswith("backsolve"):
        res = adj.backsolve_adjoint(f, f_vjp, sol, gy, adjoint_rtol, adjoint_atol, seminorm="seminorm" in adjoint)
    elif adjoint.startswith("interpolating"):
        res = adj.interpolating_adjoint(f_vjp, sol, gy, adjoint_rtol, adjoint_atol, seminorm="seminorm" in adjoint)
    else:
        res = adj.quadrature_adjoint(f_vjp, sol, gy, adjoint_rtol, adjoint_atol)

    n = y0.size

    def L_replay(x):
        return float(loss(sol.t, _replayed_solve(f, tab, x[:n], x[n:], sol)))

    def L_solve(x):
        s = solve(x[:n], x[n:], fd_tol, fd_tol, False, ref_saveat)
        if not s.success:
            raise ValueError(f"the tight reference solve failed ({s.message}); raise fd_tol")
        return float(loss(s.t, s.y))

    x0 = np.concatenate([y0, p])
    cy = _coords(n, max_coords, gen)
    cp = _coords(p.size, max_coords, gen)
    # The VJP, exactly: the discrete adjoint against finite differences of the replayed steps, at tol.
    rx_y = _fd_gradient(L_replay, x0, eps_replay, cy)
    rx_p = _fd_gradient(L_replay, x0, eps_replay, n + cp)
    ref_exact = "FD of replayed steps" + ("" if adjoint == "discrete" else " (discrete)")
    rows = [("dL/dy0", ref_exact, *_rel(exact.grad_y0[cy], rx_y), tol)]
    if p.size:
        rows.append(("dL/dp", ref_exact, *_rel(exact.grad_p[cp], rx_p), tol))
    fd_y, fd_p = rx_y, rx_p
    if reference == "solve":
        # The adjoint's own error against the exact flow, within its budget.
        fd_y = _fd_gradient(L_solve, x0, eps, cy)
        fd_p = _fd_gradient(L_solve, x0, eps, n + cp)
        ref_name = f"FD of solve at tol {fd_tol:g} (budget)"
        rows.append(("dL/dy0", ref_name, *_rel(res.grad_y0[cy], fd_y), budget))
        if p.size:
            rows.append(("dL/dp", ref_name, *_rel(res.grad_p[cp], fd_p), budget))
    notes = [
        f"{adjoint} adjoint; forward {len(sol.steps)} steps at rtol={rtol:g}, atol={atol:g}; "
        f"backward evaluations {res.nfe_backward}",
        f"tolerance {tol:g}: the VJP checked exactly (discrete adjoint vs finite differences of the replayed "
        f"steps)"
        + (
            f"; budget {budget:g}: the {adjoint} adjoint against the exact flow (it is accurate only to O(rtol))"
            if reference == "solve"
            else ""
        ),
    ]
    if cy.size < n or cp.size < p.size:
        notes.append(f"finite differences on {cy.size} of {n} y0 and {cp.size} of {p.size} p coordinates")
    details = dict(
        grad_y0=res.grad_y0,
        grad_p=res.grad_p,
        fd_grad_y0=fd_y,
        fd_grad_p=fd_p,
        coords_y0=cy,
        coords_p=cp,
        adjoint_result=res,
        eps=eps,
    )
    return _finish(f"check_gradient ({adjoint})", rows, notes, details, y_names=("dL/dy0",), p_names=("dL/dp",))
