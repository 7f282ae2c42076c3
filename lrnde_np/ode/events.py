"""SciPy-style events, located on the dense output between accepted steps.

An event is a function ``g(t, y)`` (``g(t, y, *args)`` from :func:`lrnde_np.solve_ivp` with ``args``) whose
zeros are wanted.  As in ``scipy.integrate.solve_ivp`` it may carry two attributes:

* ``terminal``: ``False``/``0`` (default) — record every zero; ``True`` or a positive integer ``k`` — the
  ``k``-th zero ends the solution there;
* ``direction``: ``0`` (default) any zero, ``> 0`` only zeros where g goes from negative to positive,
  ``< 0`` only from positive to negative.

The events are found after the solve, on its recorded steps, exactly the way SciPy's ``solve_ivp`` finds them
during its solve: ``g`` is evaluated at t0 and at the end of every accepted step; a step whose end values
change sign (in an allowed direction, a value exactly 0 counting on both sides) is searched for the root of
``g(t, y(t))`` by ``scipy.optimize.brentq`` (``xtol = rtol = 4 eps``) on that step's dense output, so the
event times are as accurate as the interpolant.  When a terminal count is reached the solution is cut at that
root; the steps taken past it by the solver (which did not know about the event) are discarded.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numba import njit

from .rk import dense_eval

_EPS = float(np.finfo(np.float64).eps)

#: ``Solution.status`` of a solution ended by a terminal event (``solve_ivp`` reports it as SciPy's 1).
TERMINATED = 4
TERMINATED_MESSAGE = "A termination event occurred."


def prepare_events(events, argname="events"):
    """(list of callables, max occurrences per event (inf: not terminal), direction per event), checked."""
    if callable(events):
        events = (events,)
    try:
        events = list(events)
    except TypeError as exc:
        raise TypeError(
            f"{argname} must be a callable or a sequence of callables, got {type(events).__name__}"
        ) from exc
    max_events = np.empty(len(events))
    direction = np.empty(len(events))
    for i, event in enumerate(events):
        if not callable(event):
            raise TypeError(f"{argname}[{i}] must be callable, got {type(event).__name__}")
        terminal = getattr(event, "terminal", None)
        if terminal is None or terminal is False or (not isinstance(terminal, bool) and terminal == 0):
            max_events[i] = np.inf
        elif terminal is True:
            max_events[i] = 1
        elif isinstance(terminal, (int, np.integer)) and terminal > 0:
            max_events[i] = int(terminal)
        else:
            raise ValueError(f"{argname}[{i}].terminal must be a boolean or a positive integer, got {terminal!r}")
        d = getattr(event, "direction", 0)
        try:
            d = float(d)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{argname}[{i}].direction must be a number, got {type(d).__name__}") from exc
        if not math.isfinite(d):
            raise ValueError(f"{argname}[{i}].direction must be finite, got {d!r}")
        direction[i] = d
    return events, max_events, direction


def find_active_events(g, g_new, direction):
    """Indices of the events whose value changes sign between g and g_new in an allowed direction."""
    up = (g <= 0) & (g_new >= 0)
    down = (g >= 0) & (g_new <= 0)
    mask = (up & (direction > 0)) | (down & (direction < 0)) | ((up | down) & (direction == 0))
    return np.nonzero(mask)[0]


@njit(cache=True)
def dense_at(P, t_start, h, y, K, t, out):
    """y(t) from one step's interpolant (``y``, ``K``: the step's start state and stages)."""
    w = np.empty(K.shape[0])
    dense_eval(P, (t - t_start) / h, h, y, K, w, out)


@dataclasses.dataclass
class EventResult:
    """What :func:`locate_events` found: the events' times and states, and where a terminal one cut."""

    t_events: list  # one array of times per event
    y_events: list  # one (k, n) array per event (shape (0,) when empty, as SciPy)
    terminal_step: int = -1  # index of the step holding the terminal event (-1: none)
    t_terminal: float = math.nan
    y_terminal: np.ndarray = None

    @property
    def terminated(self) -> bool:
        return self.terminal_step >= 0


def locate_events(events, P, step_t, step_dt, step_y, step_K, t_ends, args=(), argname="events"):
    """Walk the accepted steps in order like SciPy's ``solve_ivp`` and find the events' zeros.

    ``step_t``, ``step_dt``: start and signed size of every accepted step; ``step_y``: the state at each step's
    start plus the final state (n_steps + 1 rows); ``step_K``: the stages; ``t_ends``: each step's exact end
    time; ``P``: the tableau's dense-output coefficients.  Events are called ``event(t, y, *args)``.
    """
    from scipy.optimize import brentq

    events, max_events, direction = prepare_events(events, argname)
    n_ev = len(events)
    n_steps = step_dt.size
    t_events = [[] for _ in range(n_ev)]
    y_events = [[] for _ in range(n_ev)]
    result = EventResult(t_events, y_events)
    event_count = np.zeros(n_ev)
    if n_steps == 0 or n_ev == 0:
        result.t_events = [np.asarray(te) for te in t_events]
        result.y_events = [np.asarray(ye) for ye in y_events]
        return result

    def value(e, t, y):
        v = events[e](t, y, *args)
        try:
            return float(v)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{argname}[{e}] must return a number, got {type(v).__name__}") from exc

    g = np.array([value(e, step_t[0], step_y[0]) for e in range(n_ev)])
    for j in range(n_steps):
        t_old, t_new = step_t[j], t_ends[j]
        y_new = step_y[j + 1]
        g_new = np.array([value(e, t_new, y_new) for e in range(n_ev)])
        active = find_active_events(g, g_new, direction)
        if active.size:
            y_j, K_j, t_j, h_j = step_y[j], step_K[j], step_t[j], step_dt[j]

            def sol(t, t_j=t_j, h_j=h_j, y_j=y_j, K_j=K_j):
                out = np.empty(y_j.size)
                dense_at(P, t_j, h_j, y_j, K_j, float(t), out)
                return out

            event_count[active] += 1
            roots = np.array(
                [brentq(lambda t, e=e: value(e, t, sol(t)), t_old, t_new, xtol=4 * _EPS, rtol=4 * _EPS) for e in active]
            )
            terminate = bool(np.any(event_count[active] >= max_events[active]))
            if terminate:
                order = np.argsort(roots) if t_new > t_old else np.argsort(-roots)
                active, roots = active[order], roots[order]
                first = int(np.nonzero(event_count[active] >= max_events[active])[0][0])
                active, roots = active[: first + 1], roots[: first + 1]
            for e, te in zip(active, roots, strict=True):
                t_events[e].append(te)
                y_events[e].append(sol(te))
            if terminate:
                result.terminal_step = j
                result.t_terminal = float(roots[-1])
                result.y_terminal = sol(roots[-1])
                break
        g = g_new
    result.t_events = [np.asarray(te) for te in t_events]
    result.y_events = [np.asarray(ye) for ye in y_events]
    return result


def step_ends(sol):
    """Exact end time of every accepted step of a :class:`~lrnde_np.ode.solve.Solution`."""
    st = sol.steps
    ends = np.empty(st.dt.size)
    ends[:-1] = st.t[1:]
    if st.dt.size:
        ends[-1] = sol.t_span[1] if sol.success else st.t[-1] + st.dt[-1]
    return ends


def apply_events(sol, events):
    """``solve_ode(..., events=...)``: the Solution with ``t_events``/``y_events`` set and, if a terminal event
    occurred, cut there (status :data:`TERMINATED`; the event's time and state become the last saved point).

    ``sol`` must have been solved with ``dense=True``.  Events are called ``event(t, y)``.
    """
    st = sol.steps
    found = locate_events(events, sol.method.P, st.t, st.dt, st.y, st.K, step_ends(sol))
    sol.t_events, sol.y_events = found.t_events, found.y_events
    if not found.terminated:
        return sol
    j, te, ye = found.terminal_step, found.t_terminal, found.y_terminal
    t0 = sol.t_span[0]
    tdir = 1.0 if sol.t_span[1] >= t0 else -1.0
    # Saved points up to the event (a point produced by a later step is dropped), then the event itself.
    keep = (sol.save_step <= j) & ((sol.t - te) * tdir < 0.0)
    t_new = np.append(sol.t[keep], te)
    y_new = np.vstack([sol.y[keep], ye[None, :]])
    theta_e = (te - st.t[j]) / st.dt[j]
    save_step = np.append(sol.save_step[keep], j)
    save_theta = np.append(sol.save_theta[keep], theta_e)
    steps = dataclasses.replace(
        st,
        t=st.t[: j + 1],
        dt=st.dt[: j + 1],
        error_estimate=st.error_estimate[: j + 1],
        stiffness_estimate=st.stiffness_estimate[: j + 1],
        y=st.y[: j + 2].copy(),
        K=st.K[: j + 1],
    )
    steps.y[j + 1] = ye  # the state where the solution now ends
    return dataclasses.replace(
        sol,
        t=t_new,
        y=y_new,
        status=TERMINATED,
        message=TERMINATED_MESSAGE,
        t_span=(t0, te),
        steps=steps,
        save_step=save_step,
        save_theta=save_theta,
        t_events=found.t_events,
        y_events=found.y_events,
    )
