"""SciPy as the oracle of the error estimate: what E_est measures, against the true local error of one step.

The local regularizer penalizes R = E_est·|dt|, where E_est is the scaled RMS norm of the embedded error vector
err = h Σ_i btilde_i k_i of one step.  That is worth penalizing only if err tracks the step's true local error.
Two checks say whether it does:

* :func:`check_error_estimate` (ODE): from a given (t, y), take one step of an adaptive tableau for each dt of
  a range — through :func:`~lrnde_np.ode.solve.solve_ode` itself, with a fixed step — and compare it with the
  exact one-step solution from ``scipy.integrate.solve_ivp(method="DOP853", rtol=1e-13, atol=1e-13)`` started
  at the same state.  With y* the exact value, y₁ the propagated and ŷ₁ = y₁ + err the embedded solution
  (OrdinaryDiffEq's sign: err is embedded minus main), the report has, per dt, the true local errors
  ‖y₁ − y*‖ (order p+1) and ‖ŷ₁ − y*‖ (order p̂+1), ‖err‖, the ratio ‖err‖/‖ŷ₁ − y*‖ (→ 1 as dt → 0,
  because err = (ŷ₁ − y*) − (y₁ − y*) and the second term is of higher order), the cosine between err and
  ŷ₁ − y*, E_est and E_est·|dt|; plus the log-log slopes of the true errors at small dt.
* :func:`check_sde_error_estimate` (SDE, in distribution): one SRI step from (t, x) on many Brownian
  increments (ΔW, ΔZ) drawn from a seed, against an exact solution evaluated on the same ΔW (e.g. geometric
  Brownian motion).  The report has the mean-square one-step error (strong order 1.5: local mean-square error
  O(h²)), the mean error (O(h^2.5)), the root-mean-square of the method's error vector, their ratio and the
  mean E_est, per dt.

Norms are Euclidean.  Both checks run the library's own kernels (the solve loop, ``error_vector``,
``error_estimate``, ``sri_step``), never a second copy of the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ._types import rhs_from
from .ode.control import error_estimate
from .ode.rhs import as_compiled
from .ode.rk import error_vector
from .ode.solve import check_array, check_tolerances, solve_ode
from .sde.step import pack_tableau, sri_step, sri_workspace
from .sde.tableaus import get_sde_tableau
from .tableaus import get_tableau

__all__ = ["ErrorEstimateReport", "SDEErrorEstimateReport", "check_error_estimate", "check_sde_error_estimate"]


def _slope(dts, errors):
    """Least-squares slope of log(error) against log(dt) (NaN when fewer than two positive errors)."""
    dts, errors = np.asarray(dts, float), np.asarray(errors, float)
    keep = (errors > 0) & np.isfinite(errors)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(dts[keep]), np.log(errors[keep]), 1)[0])


def _table(title, headers, rows, notes):
    width = max(12, *(len(h) + 2 for h in headers))
    lines = [title, "".join(h.rjust(width) for h in headers)]
    for row in rows:
        lines.append("".join(f"{v:{width}.3e}" for v in row))
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


@dataclass
class ErrorEstimateReport:
    """One adaptive step against its exact solution, over a range of step sizes (arrays indexed by dt).

    ``true_error``: ‖y₁ − y*‖ of the propagated solution; ``true_error_embedded``: ‖ŷ₁ − y*‖;
    ``error_vector_norm``: ‖err‖; ``ratio``: ‖err‖ / ‖ŷ₁ − y*‖; ``cosine``: cos∠(err, ŷ₁ − y*);
    ``error_estimate``: E_est (scaled RMS of err, as the solver and the regularizer compute it);
    ``regularizer``: E_est·|dt|.  ``slope``/``slope_embedded``: fitted orders of the true errors over the
    ``fit_points`` smallest dt above round-off, to compare with ``order + 1`` and ``error_order + 1``.
    """

    method: str
    order: int
    error_order: int
    dt: np.ndarray
    true_error: np.ndarray
    true_error_embedded: np.ndarray
    error_vector_norm: np.ndarray
    ratio: np.ndarray
    cosine: np.ndarray
    error_estimate: np.ndarray
    regularizer: np.ndarray
    slope: float
    slope_embedded: float
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        headers = ("dt", "|y1-y*|", "|yhat1-y*|", "|err|", "ratio", "cosine", "E_est", "E_est*dt")
        rows = zip(
            self.dt,
            self.true_error,
            self.true_error_embedded,
            self.error_vector_norm,
            self.ratio,
            self.cosine,
            self.error_estimate,
            self.regularizer,
            strict=True,
        )
        notes = [
            f"slope of |y1-y*|: {self.slope:.2f} (order+1 = {self.order + 1}); slope of |yhat1-y*|: "
            f"{self.slope_embedded:.2f} (embedded order+1 = {self.error_order + 1})"
        ] + self.notes
        return _table(
            f"error estimate of one {self.method} step against DOP853 (rtol=atol=1e-13)", headers, rows, notes
        )


def _python_rhs(f, p, n):
    """fun(t, y) for SciPy from an in-place f(t, y, p, out) (a Numba dispatcher or a plain function)."""
    if not callable(f):
        raise TypeError(f"f must be a callable f(t, y, p, out), got {type(f).__name__}")
    call = f

    def fun(t, y):
        out = np.empty(n)
        call(float(t), np.ascontiguousarray(y, dtype=float), p, out)
        return out

    return fun


def _start(state_name, t, state, p):
    """The checked starting point (t, state, p) of one step."""
    state = check_array(state_name, state)
    if state.size == 0:
        raise ValueError(f"{state_name} must not be empty")
    p = np.zeros(0) if p is None else check_array("p", p)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t!r}")
    return t, state, p


def _dts(dt, name):
    dts = np.atleast_1d(np.asarray(dt, dtype=float))
    if dts.ndim != 1 or dts.size == 0:
        raise ValueError(f"{name} must be a positive step or a 1-D array of them, got {dt!r}")
    if not np.all(np.isfinite(dts)) or np.any(dts == 0.0):
        raise ValueError(f"{name} must be finite and non-zero, got {dt!r}")
    return dts


def check_error_estimate(
    f, t, y, p=None, dt=None, method="tsit5", rtol=1e-6, atol=1e-6, fit_points=4, exact: Callable | None = None
) -> ErrorEstimateReport:
    """Compare the error estimate of one step of an adaptive tableau with the step's true local error.

    Parameters
    ----------
    f : in-place right-hand side ``f(t, y, p, out)`` (Numba-compiled or plain Python).
    t, y, p : the state the step starts from.
    dt : the step sizes to try (a scalar or 1-D array; negative steps integrate backwards). Default: 0.5·2^(−k/2),
        k = 0..14.
    method : an adaptive tableau ("tsit5", "dp5", "bs3") or an :class:`~lrnde_np.tableaus.ERKTableau`.
    rtol, atol : the tolerances that scale E_est (they do not change the step: it is taken at the given dt).
    fit_points : the slopes are fitted on this many of the smallest dt whose true error stands clear of
        round-off (1000 ulps of the state).
    exact : optional ``exact(t0, y0, dt) -> y(t0 + dt)``; default: SciPy's DOP853 at rtol = atol = 1e-13.
    """
    tab = get_tableau(method)
    if not tab.adaptive:
        raise ValueError(f"method: {tab.name} has no embedded error estimate")
    t, y, p = _start("y", t, y, p)
    dts = _dts(0.5 * 2.0 ** (-0.5 * np.arange(15)) if dt is None else dt, "dt")
    rtol_f, atol_arr = check_tolerances(rtol, atol, y.size, "y")
    if not isinstance(fit_points, int) or fit_points < 2:
        raise ValueError(f"fit_points must be an integer >= 2, got {fit_points!r}")
    as_compiled(f, "rhs", "f")  # the same argument checks as solve_ode, before SciPy calls f
    if exact is None:
        from scipy.integrate import solve_ivp

        fun = _python_rhs(f, p, y.size)

        def exact(t0, y0, h):
            res = solve_ivp(fun, (t0, t0 + h), y0, method="DOP853", rtol=1e-13, atol=1e-13)
            if res.status != 0:
                raise RuntimeError(f"SciPy's reference solve failed at dt={h!r}: {res.message}")
            return res.y[:, -1]

    rows = {k: np.empty(dts.size) for k in ("prop", "emb", "err", "ratio", "cos", "E")}
    err = np.empty(y.size)
    for i, h in enumerate(dts):
        sol = solve_ode(
            f, (t, t + h), y, p, method=tab, dt=abs(h), adaptive=False, record_states=True, rtol=rtol_f, atol=atol_arr
        )
        if not sol.success or sol.stats["accepted"] != 1:
            raise RuntimeError(f"one step of dt={h!r} did not complete: {sol.message}")
        K = np.ascontiguousarray(sol.steps.K[0])
        y1 = sol.y[-1]
        error_vector(tab.btilde, h, K, err)
        y_star = np.asarray(exact(t, y.copy(), h), dtype=float)
        d_prop = y1 - y_star
        d_emb = y1 + err - y_star
        rows["prop"][i] = np.linalg.norm(d_prop)
        rows["emb"][i] = np.linalg.norm(d_emb)
        rows["err"][i] = np.linalg.norm(err)
        rows["ratio"][i] = rows["err"][i] / rows["emb"][i] if rows["emb"][i] > 0 else np.nan
        denom = rows["err"][i] * rows["emb"][i]
        rows["cos"][i] = float(err @ d_emb) / denom if denom > 0 else np.nan
        rows["E"][i] = error_estimate(err, y, y1, rtol_f, atol_arr)
    # Fit the orders on the smallest steps whose error still stands clear of the step's own round-off
    # (1000 ulps of the state): below that, the measured "error" is rounding, whatever the method's order.
    floor = 1e3 * np.finfo(float).eps * max(1.0, float(np.max(np.abs(y))))
    notes = []
    slopes = []
    for name, errors in (("propagated", rows["prop"]), ("embedded", rows["emb"])):
        usable = np.flatnonzero(errors > floor)
        usable = usable[np.argsort(np.abs(dts[usable]))][:fit_points]
        slopes.append(_slope(np.abs(dts[usable]), errors[usable]) if usable.size >= 2 else float("nan"))
        if usable.size < fit_points:
            notes.append(
                f"only {usable.size} dt values give a {name} error above round-off ({floor:.1e}); "
                "its slope rests on fewer points"
            )
    return ErrorEstimateReport(
        method=tab.name,
        order=tab.order,
        error_order=tab.error_order,
        dt=dts,
        true_error=rows["prop"],
        true_error_embedded=rows["emb"],
        error_vector_norm=rows["err"],
        ratio=rows["ratio"],
        cosine=rows["cos"],
        error_estimate=rows["E"],
        regularizer=rows["E"] * np.abs(dts),
        slope=slopes[0],
        slope_embedded=slopes[1],
        notes=notes,
    )


# ------------------------------------------------------------------------------------------------------------
# SDE: one SRI step in distribution.


@njit(cache=True)
def _sri_steps(f_addr, g_addr, M, V, delta, error_terms, t, h, x, p, dW, dZ, stride, rtol, atol, x_out, err_out, E_out):
    """One SRI step from (t, x) for each row of the noise arrays dW, dZ (samples × m)."""
    f = rhs_from(f_addr[0], f_addr[1])
    g = rhs_from(g_addr[0], g_addr[1])
    H0, H1, F, G, x_new, err = sri_workspace(V.shape[1], x.size)
    for r in range(dW.shape[0]):
        E, _, _ = sri_step(
            f, g, M, V, delta, error_terms, t, h, x, p, dW[r], dZ[r], stride, rtol, atol, H0, H1, F, G, x_new, err
        )
        x_out[r] = x_new
        err_out[r] = err
        E_out[r] = E


@dataclass
class SDEErrorEstimateReport:
    """One SRI step against an exact solution on the same Brownian increments, in distribution.

    Per dt: ``ms_error`` = sqrt(E‖x₁ − x*‖²) (local mean-square error, O(h²) for strong order 1.5),
    ``mean_error`` = ‖E[x₁ − x*]‖ (O(h^2.5)), ``ms_error_vector`` = sqrt(E‖err‖²), ``ratio`` =
    ms_error_vector / ms_error, ``mean_error_estimate`` = E[E_est], and ``standard_error`` of ms_error².
    ``slope_ms`` / ``slope_mean``: fitted orders over all dt.
    """

    method: str
    samples: int
    dt: np.ndarray
    ms_error: np.ndarray
    mean_error: np.ndarray
    ms_error_vector: np.ndarray
    ratio: np.ndarray
    mean_error_estimate: np.ndarray
    standard_error: np.ndarray
    slope_ms: float
    slope_mean: float
    slope_error_vector: float

    def __str__(self):
        headers = ("dt", "rms |x1-x*|", "|mean x1-x*|", "rms |err|", "ratio", "mean E_est")
        rows = zip(
            self.dt,
            self.ms_error,
            self.mean_error,
            self.ms_error_vector,
            self.ratio,
            self.mean_error_estimate,
            strict=True,
        )
        notes = [
            f"{self.samples} Brownian increments per dt; slopes: rms error {self.slope_ms:.2f} (2 for strong "
            f"order 1.5), mean error {self.slope_mean:.2f} (2.5), rms error vector "
            f"{self.slope_error_vector:.2f}"
        ]
        return _table(f"error estimate of one {self.method} step against the exact solution", headers, rows, notes)


def check_sde_error_estimate(
    f, g, exact, t, x, p=None, dt=None, method="sosri", rtol=1e-2, atol=1e-2, samples=4000, noise="diagonal", rng=0
) -> SDEErrorEstimateReport:
    """Compare one SRI step (and its error vector) with an exact solution on the same Brownian increments.

    ``exact(t, x, dt, dW) -> x(t + dt)`` gives the exact solution driven by the increment ``dW`` (shape (m,)),
    e.g. geometric Brownian motion ``x·exp((μ − σ²/2)dt + σ dW)``.  ``rng`` is a seed or a
    ``numpy.random.Generator``; ΔW and the independent ΔZ are N(0, dt) per Wiener process.
    """
    tab = get_sde_tableau(method)
    if not tab.adaptive:
        raise ValueError(f"method: {tab.name} has no error estimate")
    if noise not in ("diagonal", "scalar"):
        raise ValueError(f"noise must be 'diagonal' or 'scalar', got {noise!r}")
    if not callable(exact):
        raise TypeError(f"exact must be a callable exact(t, x, dt, dW), got {type(exact).__name__}")
    t, x, p = _start("x", t, x, p)
    dts = _dts(0.2 * 2.0 ** -np.arange(6) if dt is None else dt, "dt")
    if np.any(dts < 0):
        raise ValueError(f"dt must be positive for an SDE step, got {dt!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2, got {samples!r}")
    rtol_f, atol_arr = check_tolerances(rtol, atol, x.size, "x")
    if isinstance(rng, np.random.Generator):
        gen = rng
    elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        gen = np.random.default_rng(int(rng))
    else:
        raise TypeError(f"rng must be a seed or a numpy.random.Generator, got {type(rng).__name__}")
    fa = as_compiled(f, "rhs", "f").addresses
    ga = as_compiled(g, "rhs", "g").addresses
    M, V, delta, error_terms = pack_tableau(tab)
    m, stride = (x.size, 1) if noise == "diagonal" else (1, 0)
    out = {k: np.empty(dts.size) for k in ("ms", "mean", "msv", "E", "se")}
    for i, h in enumerate(dts):
        dW = gen.standard_normal((samples, m)) * math.sqrt(h)
        dZ = gen.standard_normal((samples, m)) * math.sqrt(h)
        x1 = np.empty((samples, x.size))
        err = np.empty((samples, x.size))
        E = np.empty(samples)
        _sri_steps(fa, ga, M, V, delta, error_terms, t, h, x, p, dW, dZ, stride, rtol_f, atol_arr, x1, err, E)
        x_star = np.array([np.asarray(exact(t, x.copy(), h, dW[r]), dtype=float) for r in range(samples)])
        d = x1 - x_star
        sq = np.sum(d * d, axis=1)
        out["ms"][i] = math.sqrt(sq.mean())
        out["se"][i] = sq.std(ddof=1) / math.sqrt(samples)
        out["mean"][i] = np.linalg.norm(d.mean(axis=0))
        out["msv"][i] = math.sqrt(np.sum(err * err, axis=1).mean())
        out["E"][i] = E.mean()
    return SDEErrorEstimateReport(
        method=tab.name,
        samples=samples,
        dt=dts,
        ms_error=out["ms"],
        mean_error=out["mean"],
        ms_error_vector=out["msv"],
        ratio=out["msv"] / out["ms"],
        mean_error_estimate=out["E"],
        standard_error=out["se"],
        slope_ms=_slope(dts, out["ms"]),
        slope_mean=_slope(dts, out["mean"]),
        slope_error_vector=_slope(dts, out["msv"]),
    )
