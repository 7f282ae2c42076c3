"""``solve_ode``: validated arguments in, :class:`Solution` out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..tableaus import ERKTableau, get_tableau
from .control import N_CONTROL, pi_defaults
from .events import TERMINATED, apply_events
from .loop import RECORD_STAGES, RECORD_STATES, RECORD_STEPS, STATUS_MESSAGES, SUCCESS, solve_loop
from .rhs import as_compiled, check_user_function


@dataclass
class StepRecords:
    """Per accepted step: start time, signed dt, E_est, stiffness estimate; states/stages when stored.

    ``y[j]`` is the state at the start of step j (``y[-1]`` the final state), ``K[j]`` its stage values.
    """

    t: np.ndarray
    dt: np.ndarray
    error_estimate: np.ndarray
    stiffness_estimate: np.ndarray
    y: np.ndarray | None = None
    K: np.ndarray | None = None

    def __len__(self):
        return self.dt.size

    @property
    def t_end(self) -> np.ndarray:
        """End time of every accepted step."""
        return self.t + self.dt


@dataclass
class Solution:
    t: np.ndarray
    y: np.ndarray  # (len(t), n)
    status: int
    message: str
    stats: dict
    method: ERKTableau
    t_span: tuple
    steps: StepRecords | None = None
    save_step: np.ndarray | None = None  # step index that produced each saved point (-1: y0)
    save_theta: np.ndarray | None = None  # θ within that step
    p: np.ndarray | None = field(default=None, repr=False)
    options: dict = field(default_factory=dict, repr=False)
    t_events: list | None = None  # solve_ode(..., events=...): one array of times per event
    y_events: list | None = None  # and one (k, n) array of states per event

    @property
    def success(self) -> bool:
        return self.status in (SUCCESS, TERMINATED)  # TERMINATED: a terminal event

    @property
    def nfe(self) -> int:
        return self.stats["nfe"]

    def __call__(self, t):
        """Dense output at time(s) t inside the solved span (needs ``dense=True``)."""
        if self.steps is None or self.steps.K is None:
            raise ValueError("t: dense output needs solve_ode(..., dense=True)")
        t_arr = np.atleast_1d(np.asarray(t, dtype=np.float64))
        out = np.empty((t_arr.size, self.steps.y.shape[1]))
        for k, tk in enumerate(t_arr):
            j, theta = self.locate(tk)
            h = self.steps.dt[j]
            w = self.method.dense_weights(theta)
            out[k] = self.steps.y[j] + h * (w @ self.steps.K[j])
        return out[0] if np.ndim(t) == 0 else out

    def locate(self, t):
        """(step index, θ) of the accepted step covering time t."""
        t0, t1 = self.t_span
        lo, hi = min(t0, t1), max(t0, t1)
        # A few ulps of slack: a step end t_j + h_j may round just past the span's end.
        slack = 4 * np.finfo(float).eps * max(abs(t0), abs(t1), 1.0)
        if not (lo - slack <= t <= hi + slack):
            raise ValueError(f"t: {t} is outside the solved span {self.t_span}")
        n_steps = len(self.steps)
        if n_steps == 0:
            raise ValueError("t: the solution has no accepted steps")
        tdir = 1.0 if t1 >= t0 else -1.0
        # Step starts are monotone in the direction of integration.
        j = int(np.searchsorted(tdir * self.steps.t, tdir * t, side="right")) - 1
        j = min(max(j, 0), n_steps - 1)
        theta = (t - self.steps.t[j]) / self.steps.dt[j]
        return j, float(theta)


@njit(cache=True)
def _saveat_problem(ts, tdir, lo, hi):
    """0 if ``ts`` is finite, sorted along tdir and inside [lo, hi]; else 1, 2 or 3 (which check failed)."""
    for k in range(ts.size):
        if not np.isfinite(ts[k]):
            return 1
        if k > 0 and (ts[k] - ts[k - 1]) * tdir < 0.0:
            return 2
        if ts[k] < lo or ts[k] > hi:
            return 3
    return 0


@njit(cache=True)
def _all_finite(a):
    for v in a.ravel():
        if not np.isfinite(v):
            return False
    return True


_F64 = np.dtype(np.float64)


def check_array(name, x, ndim=1):
    """A C-contiguous float64 copy-if-needed of ``x`` with ``ndim`` dimensions and finite values.

    Complex, boolean and string input is a TypeError (a complex state would otherwise lose its imaginary part
    with only a warning, and the real part be solved)."""
    if not (type(x) is np.ndarray and x.dtype is _F64):  # fast path: already a float64 array
        try:
            kind = np.asarray(x).dtype.kind
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"{name} must be a float array, got {type(x).__name__}") from exc
        if kind not in "fiuO":
            what = {
                "c": "complex",
                "b": "boolean",
                "U": "string",
                "S": "bytes",
                "O": "object",
                "M": "datetime",
                "m": "timedelta",
                "V": "structured",
            }.get(kind, kind)
            raise TypeError(
                f"{name} must be a real float array, got {what} values (dtype kind {kind!r})"
                + ("; solve real and imaginary parts as separate components" if kind == "c" else "")
            )
    try:
        a = np.ascontiguousarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{name} must be a float array, got {type(x).__name__}") from exc
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if not _all_finite(a):
        raise ValueError(f"{name} contains non-finite values")
    return a


def as_real(name, x):
    """``x`` as a float, or a TypeError naming ``name``: bools, strings and complex numbers are not numbers
    here (``float(True)`` and ``float("1e-3")`` would otherwise slip through)."""
    if type(x) is float:  # the common case, first (this runs on every solve)
        return x
    if isinstance(x, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}") from exc


def check_max_steps(max_steps, name="max_steps"):
    """``max_steps`` as an int: a positive integer (not a bool) that fits in int64."""
    if type(max_steps) is int and 0 < max_steps <= _INT64_MAX:  # the common case, first
        return max_steps
    if isinstance(max_steps, (bool, np.bool_)) or not isinstance(max_steps, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {type(max_steps).__name__} {max_steps!r}")
    if not 0 < max_steps <= _INT64_MAX:
        raise ValueError(f"{name} must be a positive integer ≤ 2**63 - 1, got {max_steps!r}")
    return int(max_steps)


_INT64_MAX = 2**63 - 1


def check_controller(controller, defaults):
    """The PI gains (β1, β2, γ, qmin, qmax, qoldinit) from ``defaults`` updated by ``controller``, validated:
    known keys only, real finite numbers, β1 > 0, β2 ≥ 0, 0 < γ ≤ 1, 0 < qmin ≤ 1 < qmax, qoldinit > 0.
    A TypeError/ValueError names the bad key."""
    if not isinstance(controller, dict):
        raise TypeError(f"controller must be a dict of PI settings (or None), got {type(controller).__name__}")
    c = dict(defaults)
    unknown = [k for k in controller if k not in c]
    if unknown:
        raise ValueError(f"controller: unknown settings {sorted(map(str, unknown))}; known: {sorted(c)}")
    for k, v in controller.items():
        c[k] = as_real(f"controller: {k}", v)
        if not math.isfinite(c[k]):
            raise ValueError(f"controller: {k} must be finite, got {v!r}")
    rules = (
        ("beta1", c["beta1"] > 0, "> 0"),
        ("beta2", c["beta2"] >= 0, "≥ 0"),
        ("gamma", 0 < c["gamma"] <= 1, "in (0, 1]"),
        ("qmin", 0 < c["qmin"] <= 1, "in (0, 1]"),
        ("qmax", c["qmax"] > 1, "> 1"),
        ("qoldinit", c["qoldinit"] > 0, "> 0"),
    )
    for key, ok, rule in rules:
        if not ok:
            raise ValueError(f"controller: {key} must be {rule} (0 < qmin ≤ 1 < qmax, 0 < gamma ≤ 1), got {c[key]!r}")
    return [c[k] for k in _GAIN_KEYS]


def check_positive(name, x):
    """``x`` as a float, or a TypeError/ValueError naming ``name`` unless it is a positive finite number."""
    v = as_real(name, x)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {x!r}")
    return v


def validate_span(t_span):
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"t_span must be a pair of numbers (t0, t1), got {t_span!r}") from exc
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t_span must be finite, got {t_span!r}")
    return t0, t1


def validate_saveat(saveat, t0, t1):
    if saveat is None:
        return None
    try:
        ts = np.ascontiguousarray(saveat, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"saveat must be a sequence of times, got {type(saveat).__name__}") from exc
    if ts.ndim == 0:
        ts = ts.reshape(1)
    if ts.ndim != 1 or ts.size == 0:
        raise ValueError("saveat must be a non-empty 1-D sequence of times (or None)")
    lo, hi = min(t0, t1), max(t0, t1)
    problem = _saveat_problem(ts, 1.0 if t1 >= t0 else -1.0, lo, hi)
    if problem:
        raise ValueError(
            (
                "saveat contains non-finite times",
                "saveat must be sorted in the direction of integration (t0 towards t1)",
                f"saveat has times outside t_span [{lo}, {hi}]",
            )[problem - 1]
        )
    return ts


_EPS = float(np.finfo(np.float64).eps)


_GAIN_KEYS = ("beta1", "beta2", "gamma", "qmin", "qmax", "qoldinit")  # ctrl[0:6], see control.BETA1 ...
_DEFAULT_GAINS: dict = {}  # method order -> ctrl[0:6] of pi_defaults(order), built once (solve_ode's hot path)


def check_tolerances(rtol, atol, n, state_name="y0"):
    """(rtol as a float, atol as a C-contiguous per-component array of length n), or an error naming the
    argument: both must be positive and finite; atol is a scalar or has the state's shape."""
    rtol = check_positive("rtol", rtol)
    if isinstance(atol, (float, int)) and not isinstance(atol, bool):  # fast path for the common scalar
        atol_arr = np.empty(n)
        atol_arr.fill(check_positive("atol", atol))
        return rtol, atol_arr
    try:
        kind = np.asarray(atol).dtype.kind
        atol_arr = np.asarray(atol, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"atol must be a number or an array of numbers, got {type(atol).__name__}") from exc
    if kind not in "fiu":
        raise TypeError(
            f"atol must be a real number or an array of real numbers, got {type(atol).__name__} (dtype kind {kind!r})"
        )
    if atol_arr.ndim == 0:
        atol_arr = np.full(n, check_positive("atol", float(atol_arr)))
    elif atol_arr.shape != (n,):
        raise ValueError(f"atol must be a scalar or have the shape of {state_name} ({n},), got {atol_arr.shape}")
    elif not np.all(np.isfinite(atol_arr) & (atol_arr > 0)):
        raise ValueError("atol must be positive and finite")
    return rtol, np.ascontiguousarray(atol_arr)


def control_array(tab: ERKTableau, t0, t1, dtmin, dtmax, dt, controller):
    ctrl = np.empty(N_CONTROL)
    if controller is not None and (controller or not isinstance(controller, dict)):
        ctrl[:6] = check_controller(controller, pi_defaults(tab.order))
    else:
        gains = _DEFAULT_GAINS.get(tab.order)
        if gains is None:
            c = pi_defaults(tab.order)
            gains = _DEFAULT_GAINS[tab.order] = np.array([c[k] for k in _GAIN_KEYS])
        ctrl[:6] = gains
    span = abs(t1 - t0)
    ctrl[6] = 16 * _EPS * max(abs(t0), abs(t1), 1.0) if dtmin is None else _check_nonneg("dtmin", dtmin)
    ctrl[7] = span if dtmax is None else check_positive("dtmax", dtmax)
    ctrl[8] = 0.0 if dt is None else check_positive("dt", dt)
    return ctrl


def _check_nonneg(name, x):
    v = as_real(name, x)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {x!r}")
    return v


def solve_ode(
    f,
    t_span,
    y0,
    p=None,
    method="tsit5",
    rtol=1e-3,
    atol=1e-6,
    saveat=None,
    dense=False,
    record_steps=False,
    record_states=False,
    dt=None,
    adaptive=None,
    dtmin=None,
    dtmax=None,
    max_steps=100_000,
    controller=None,
    events=None,
) -> Solution:
    """Solve y' = f(t, y, p) on ``t_span`` with an explicit Runge–Kutta method.

    Parameters
    ----------
    f : Numba-compiled ``f(t, y, p, out)`` writing dy/dt into ``out`` (flat float64 arrays). A plain
        Python function works too, through Numba's object mode (much slower; a warning says so).
    t_span : (t0, t1); t1 < t0 integrates backwards.
    y0, p : initial state and parameters (1-D; ``p`` may be omitted).
    method : "tsit5" (default), "dp5", "bs3" (adaptive) or "euler", "rk4" (fixed step, need ``dt``), or an
        :class:`~lrnde_np.tableaus.ERKTableau`.
    rtol, atol : tolerances; ``atol`` may be a per-component array.
    saveat : sorted times at which to return the solution (dense output inside the steps); default: t0
        and every accepted step.
    dense : keep the stages of every step so that ``sol(t)`` evaluates the interpolant anywhere.
    record_steps : keep the per-step records (t, dt, E_est, stiffness estimate) in ``sol.steps``.
    record_states : also keep the state and stages of every step (for adjoints and regularizers).
    dt : initial step (adaptive) or the fixed step; ``adaptive=False`` forces fixed steps of size dt.
    dtmin, dtmax, max_steps, controller : step-size limits and PI-controller settings (``beta1``,
        ``beta2``, ``gamma``, ``qmin``, ``qmax``, ``qoldinit``; defaults as OrdinaryDiffEq; validated:
        β1 > 0, β2 ≥ 0, 0 < gamma ≤ 1, 0 < qmin ≤ 1 < qmax).  ``max_steps`` bounds all step attempts,
        rejected ones included (OrdinaryDiffEq's ``maxiters``); a rejected step the controller cannot shrink
        ends the solve with status ``STEP_STUCK``.  Ctrl-C interrupts the compiled loop (KeyboardInterrupt).
    events : SciPy-style ``event(t, y)`` function(s) with optional ``terminal``/``direction`` attributes, found
        on the dense output (``sol.t_events``, ``sol.y_events``); a terminal one cuts the solution there with
        ``status`` :data:`~lrnde_np.ode.events.TERMINATED` (see ``ode/events.py``).

    The first call of ``f`` for given sizes of y0 and p is checked (``ode.rhs.check_user_function``):
    an index out of range (``p`` shorter than f reads, say), a write past ``out``, an entry of ``out`` left
    unwritten, a changed input, a return value instead of writing ``out`` or a wrong signature is a one-line
    TypeError/ValueError naming f, not a crash or a silently wrong answer.  Complex ``y0``/``p`` are a
    TypeError.
    """
    tab = get_tableau(method)
    t0, t1 = validate_span(t_span)
    y0 = check_array("y0", y0)
    if y0.size == 0:
        raise ValueError("y0 must not be empty")
    p = np.zeros(0) if p is None else check_array("p", p)
    rtol, atol_arr = check_tolerances(rtol, atol, y0.size, "y0")
    ts = validate_saveat(saveat, t0, t1)
    if adaptive is None:
        adaptive = tab.adaptive
    if adaptive and not tab.adaptive:
        raise ValueError(f"method: {tab.name} has no error estimate; use adaptive=False with a fixed dt")
    if not adaptive and dt is None:
        raise ValueError(f"dt: fixed-step integration ({tab.name}) needs a step size dt")
    max_steps = check_max_steps(max_steps)
    ctrl = control_array(tab, t0, t1, dtmin, dtmax, dt, controller)
    rhs = as_compiled(f, "rhs", "f")
    if ("rhs", y0.size, p.size) not in rhs.checked:  # once per function and sizes (ode/rhs.py)
        check_user_function(rhs, "rhs", "f", t0, y0, p)
    if events is not None:  # located on the dense output (ode/events.py)
        dense = True

    record = RECORD_STEPS if (record_steps or dense or record_states) else 0
    if dense or record_states:
        record |= RECORD_STATES | RECORD_STAGES
    si, sj = tab.stiffness_pair if tab.stiffness_pair else (-1, -1)
    out = solve_loop(
        rhs.addresses,
        tab.A,
        tab.c,
        tab.btilde,
        tab.P,
        tab.order,
        si,
        sj,
        t0,
        t1,
        y0,
        p,
        rtol,
        atol_arr,
        ts if ts is not None else np.zeros(0),
        ts is None,
        ctrl,
        bool(adaptive),
        int(max_steps),
        record,
    )
    (
        status,
        t_save,
        y_save,
        save_step,
        save_theta,
        nfe,
        accepted,
        rejected,
        step_t,
        step_dt,
        step_E,
        step_S,
        step_y,
        step_K,
        n_steps,
    ) = out
    steps = None
    if record:
        steps = StepRecords(
            step_t,
            step_dt,
            step_E,
            step_S,
            step_y if record & RECORD_STATES else None,
            step_K if record & RECORD_STAGES else None,
        )
    message = STATUS_MESSAGES[status]
    if status != SUCCESS:
        last = t_save[-1] if t_save.size else t0
        message += f" (last saved time {last:.6g})"
    sol = Solution(
        t=t_save,
        y=y_save,
        status=int(status),
        message=message,
        stats=dict(nfe=int(nfe), accepted=int(accepted), rejected=int(rejected)),
        method=tab,
        t_span=(t0, t1),
        steps=steps,
        save_step=save_step,
        save_theta=save_theta,
        p=p,
        options=dict(rtol=rtol, atol=atol_arr, adaptive=bool(adaptive), rhs=rhs),
    )
    return sol if events is None else apply_events(sol, events)
