"""Local regularization of solver heuristics (Pal, Edelman, Rackauckas, ICML 2023).

One scalar per forward pass, measured by a single extra Tsit5 step (``local-regularization.md`` §1–2)::

    t_reg  sampled (unbiased: t_reg ~ U[t0, t1]; biased: an accepted step end of the main solve, the final
           time excluded)
    z      = z(t_reg) from the main solve (its dense output / that step's state)
    k1     = f(t_reg, z)
    dt     = automatic initial step on (t_reg, t1) (Hairer / OrdinaryDiffEq initdt, order 5, dtmax = t1 − t_reg,
             the main solve's tolerances)
    one Tsit5 step of size dt from z  →  E_est (RMS over the whole minibatch state), S_est
    R      = E_est·|dt|                             heuristic "error" (the paper)
           = E_est·|dt| + c·S_est                   heuristic "error_stiffness"
           = S_est                                  heuristic "stiffness" (the 2023 code's variant, not multiplied
                                                    by dt; the paper reports it did not help)

Tsit5 is hard-coded for this step whatever method the main solve uses, as in the official code.

Gradients (the paper's semantics): z, dt and k1 are constants — they come from non-differentiable code in
the official implementation — so R reaches the parameters only through the stage values k2…k7 of the one
step.  The reverse sweep is the core's :func:`~lrnde_np.ode.rk.rk_step_vjp` with ``through_k1=False``,
seeded by :func:`~lrnde_np.ode.control.error_estimate_vjp` (including E_est's scale, which depends on
y_{n+1}: Zygote differentiates that too) and :func:`~lrnde_np.ode.rk.stiffness_estimate_vjp`.

``through_k1=True`` (NOT what the paper does) differentiates k1 = f(t_reg, z; θ) with respect to θ, z
still constant: the exact partial derivative ∂R/∂θ (see :func:`local_regularizer` for why the two differ by
orders of magnitude).  ``through_state=True`` (NOT what the paper does either) differentiates R with only dt held
fixed: k1 = f(t_reg, z) is differentiated too, and the cotangent of z is returned as ``grad_z`` so that the caller
can send it back through the main solve (as a cotangent of the saved state at t_reg).

NFE of the regularizer = 1 (k1) + the initial-step rule's extra evaluation (0 or 1) + 6 (stages 2–7),
i.e. the official code's "6 + integrator.sol.destats.nf".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from .._types import rhs_from, vjp_from
from ..ode.control import error_estimate, error_estimate_vjp, initial_step
from ..ode.rhs import as_compiled
from ..ode.rk import error_vector, rk_stages, rk_step_vjp, stage_argument, stiffness_estimate, stiffness_estimate_vjp
from ..ode.solve import check_array, check_tolerances
from ..tableaus import TSIT5

#: Regularized heuristics (see the module docstring).
HEURISTICS = ("error", "error_stiffness", "stiffness")
_EPS = np.finfo(np.float64).eps
#: Scalings of the local stiffness estimate S_est: "ratio" ‖k_j − k_i‖/‖Y_j − Y_i‖ (the Hairer/Shampine
#: estimate, the default) or "official" — the 2023 code's form, rms(k_j − k_i)/(rms(Y_j − Y_i) + eps) divided by
#: Tsit5's stability size 3.5068 (``alg_stability_size(Tsit5)``), i.e. the estimate in units of the largest
#: stable h·|λ| (the paper's "constant coefficient 0.0285 = 0.1/3.5068").
STIFFNESS_SCALINGS = ("ratio", "official")
TSIT5_STABILITY_SIZE = 3.5068


@dataclass(frozen=True)
class LocalReg:
    """Value of the local regularizer and its gradient.

    ``grad_p`` is dR/dp (None when ``compute_grad=False``); ``grad_z`` is dR/dz(t_reg) with k1 recomputed
    from z, only with ``through_state=True`` (None otherwise: the paper sends no gradient to the state).
    ``dt`` is the signed step the initial-step rule chose; ``nfe`` counts every f evaluation of the
    regularizer (k1, the initial-step rule's Euler probe, stages 2–7).
    """

    value: float
    grad_p: np.ndarray | None
    grad_z: np.ndarray | None
    dt: float
    nfe: int
    t_reg: float
    error_estimate: float
    stiffness_estimate: float


def _heuristic_weights(heuristic, stiffness_weight):
    """(weight of E_est·|dt|, weight of S_est) for a heuristic name."""
    if heuristic == "error":
        return 1.0, 0.0
    if heuristic == "stiffness":
        return 0.0, 1.0
    if heuristic == "error_stiffness":
        c = float(stiffness_weight)
        if not (math.isfinite(c) and c >= 0.0):
            raise ValueError(f"stiffness_weight must be a non-negative finite number, got {stiffness_weight!r}")
        return 1.0, c
    raise ValueError(f"heuristic must be one of {HEURISTICS}, got {heuristic!r}")


@njit(cache=True)
def _official_stiffness(A, si, sj, h, y, K, work_i, work_j):
    """rms(k_j − k_i) / (rms(Y_j − Y_i) + eps) / 3.5068 (the official code's local stiffness estimate)."""
    if si < 0:
        return 0.0
    stage_argument(A, si, h, y, K, work_i)
    stage_argument(A, sj, h, y, K, work_j)
    num = 0.0
    den = 0.0
    for m in range(y.size):
        num += (K[sj, m] - K[si, m]) ** 2
        den += (work_j[m] - work_i[m]) ** 2
    n = max(y.size, 1)
    return math.sqrt(num / n) / (math.sqrt(den / n) + 2.220446049250313e-16) / 3.5068


@njit(cache=True)
def _official_stiffness_vjp(Sbar, A, si, sj, h, y, K, work_i, work_j, K_bar, Y_bar):
    """Accumulate Sbar·∂S/∂(k_i, k_j, Y_i, Y_j) of :func:`_official_stiffness` into K_bar, Y_bar."""
    if si < 0 or Sbar == 0.0:
        return
    stage_argument(A, si, h, y, K, work_i)
    stage_argument(A, sj, h, y, K, work_j)
    num = 0.0
    den = 0.0
    for m in range(y.size):
        num += (K[sj, m] - K[si, m]) ** 2
        den += (work_j[m] - work_i[m]) ** 2
    n = max(y.size, 1)
    a = math.sqrt(num / n)
    b = math.sqrt(den / n)
    d = b + 2.220446049250313e-16
    C = 3.5068
    for m in range(y.size):
        if a > 0.0:
            gk = Sbar * (K[sj, m] - K[si, m]) / (n * a * d * C)
            K_bar[sj, m] += gk
            K_bar[si, m] -= gk
        if b > 0.0:
            gy = -Sbar * a * (work_j[m] - work_i[m]) / (n * b * d * d * C)
            Y_bar[sj, m] += gy
            Y_bar[si, m] -= gy


@njit(cache=True)
def _step_value_and_grad(
    f_addr,
    vjp_addr,
    A,
    c,
    btilde,
    si,
    sj,
    t,
    h,
    z,
    k1,
    p,
    rtol,
    atol,
    w_error,
    w_stiff,
    want_grad,
    through_k1,
    grad_z,
    grad_p,
    stiff_official=False,
):
    """One Tsit5 step of size h from (t, z) with first stage k1: R and (optionally) its gradient.

    Returns (R, E_est, S_est).  ``grad_z``/``grad_p`` are overwritten when ``want_grad``; ``grad_z`` is only
    meaningful with ``through_k1`` (k1 = f(t, z; θ) differentiated, through z and θ).
    """
    f = rhs_from(f_addr[0], f_addr[1])
    s = A.shape[0]
    n = z.size
    K = np.empty((s, n))
    y_new = np.empty(n)
    err = np.empty(n)
    work_i = np.empty(n)
    work_j = np.empty(n)
    for m in range(n):
        K[0, m] = k1[m]
    rk_stages(f, A, c, t, h, z, p, K, y_new)
    error_vector(btilde, h, K, err)
    E = error_estimate(err, z, y_new, rtol, atol)
    if stiff_official:
        S = _official_stiffness(A, si, sj, h, z, K, work_i, work_j)
    else:
        S = stiffness_estimate(A, si, sj, h, z, K, work_i, work_j)
    # A heuristic's weight of 0 leaves its term out (not 0·S: S can overflow to NaN on a huge step where E is fine).
    R = 0.0
    if w_error != 0.0:
        R += w_error * E * abs(h)
    if w_stiff != 0.0:
        R += w_stiff * S
    if not want_grad:
        return R, E, S
    f_vjp = vjp_from(vjp_addr[0], vjp_addr[1])
    K_bar = np.zeros((s, n))
    Y_bar = np.zeros((s, n))
    err_bar = np.zeros(n)
    y_new_bar = np.zeros(n)
    for m in range(n):
        grad_z[m] = 0.0
    for m in range(p.size):
        grad_p[m] = 0.0
    # R → E_est → (err, z, y_{n+1}); err = h Σ btilde_i k_i → stage values.
    error_estimate_vjp(w_error * abs(h), E, err, z, y_new, rtol, atol, err_bar, grad_z, y_new_bar)
    for i in range(s):
        for m in range(n):
            K_bar[i, m] = h * btilde[i] * err_bar[m]
    for m in range(n):
        Y_bar[s - 1, m] = y_new_bar[m]  # y_{n+1} is the last stage argument (FSAL form)
    if stiff_official:
        _official_stiffness_vjp(w_stiff, A, si, sj, h, z, K, work_i, work_j, K_bar, Y_bar)
    else:
        stiffness_estimate_vjp(w_stiff, A, si, sj, h, z, K, work_i, work_j, K_bar, Y_bar)
    rk_step_vjp(
        f_vjp,
        A,
        c,
        t,
        h,
        z,
        p,
        K,
        K_bar,
        Y_bar,
        grad_z,
        grad_p,
        through_k1,
        np.empty(n),
        np.empty(n),
        np.empty(n),
        np.empty(p.size),
    )
    return R, E, S


@njit(cache=True)
def _first_stage_and_dt(f_addr, t_reg, t1, z, p, rtol, atol, order):
    """k1 = f(t_reg, z) and the automatic initial step on (t_reg, t1); returns (k1, dt, nfe)."""
    f = rhs_from(f_addr[0], f_addr[1])
    n = z.size
    k1 = np.empty(n)
    f(t_reg, z, p, k1)
    tdir = 1.0 if t1 >= t_reg else -1.0
    dtmin = 16.0 * 2.220446049250313e-16 * max(abs(t_reg), abs(t1), 1.0)
    dt, extra = initial_step(
        f, t_reg, z, p, k1, tdir, order, rtol, atol, dtmin, abs(t1 - t_reg), np.empty(n), np.empty(n)
    )
    return k1, dt, 1 + extra


def _vjp_addresses(f_vjp, needed):
    if not needed:
        return (0, 0)  # never called: the kernel only builds the function value when a gradient is wanted
    if f_vjp is None:
        raise ValueError("f_vjp is required to compute the regularizer's gradient (or pass compute_grad=False)")
    return as_compiled(f_vjp, "vjp", "f_vjp").addresses


def check_regularization_point(state_name, state, p, t_reg, t1):
    """(state, p, t_reg, t1) of a local regularizer's step, validated: a non-empty state vector, parameters
    (empty when None) and two finite times.  Which way the step may run is the caller's check."""
    state = check_array(state_name, state)
    if state.size == 0:
        raise ValueError(f"{state_name} must not be empty")
    p = np.zeros(0) if p is None else check_array("p", p)
    try:
        t_reg, t1 = float(t_reg), float(t1)
    except (TypeError, ValueError) as exc:
        raise TypeError("t_reg and t1 must be numbers") from exc
    if not (math.isfinite(t_reg) and math.isfinite(t1)):
        raise ValueError(f"t_reg and t1 must be finite, got {t_reg!r}, {t1!r}")
    return state, p, t_reg, t1


def frozen_step_regularizer(
    f,
    f_vjp,
    t_reg,
    dt,
    z,
    k1,
    p,
    rtol,
    atol,
    heuristic="error",
    stiffness_weight=1.0,
    through_state=False,
    compute_grad=True,
    through_k1=False,
    stiffness_scaling="ratio",
):
    """R of one Tsit5 step from (t_reg, z) with the given dt and k1, and its gradient.

    This is the differentiable part of :func:`local_regularizer` (which chooses k1 = f(t_reg, z) and dt by
    the initial-step rule).  Returns ``(value, grad_p, grad_z, E_est, S_est)``; with ``through_state=False``
    k1 is a constant and ``grad_z`` is None; with ``through_state=True`` the gradient also runs through
    k1 = f(t_reg, z) (whatever k1 was passed must then equal f(t_reg, z)) and ``grad_z`` is dR/dz.
    ``through_k1=True`` with ``through_state=False`` keeps z constant but differentiates k1 = f(t_reg, z; θ)
    with respect to θ: the exact ∂R/∂θ at fixed z and dt (k1 must equal f(t_reg, z; p)).
    ``stiffness_scaling``: "ratio" or "official" (see :data:`STIFFNESS_SCALINGS`).
    """
    _check_scaling(stiffness_scaling)
    z = check_array("z", z)
    k1 = check_array("k1", k1)
    if k1.shape != z.shape:
        raise ValueError(f"k1 must have z's shape {z.shape}, got {k1.shape}")
    p = np.zeros(0) if p is None else check_array("p", p)
    rtol, atol_arr = check_tolerances(rtol, atol, z.size, "z_reg")
    w_error, w_stiff = _heuristic_weights(heuristic, stiffness_weight)
    t_reg, dt = float(t_reg), float(dt)
    if not (math.isfinite(t_reg) and math.isfinite(dt)) or dt == 0.0:
        raise ValueError(f"dt must be a non-zero finite step (and t_reg finite), got t_reg={t_reg!r}, dt={dt!r}")
    rhs = as_compiled(f, "rhs", "f")
    vjp_addr = _vjp_addresses(f_vjp, compute_grad)
    grad_z = np.empty(z.size)
    grad_p = np.empty(p.size)
    si, sj = TSIT5.stiffness_pair
    R, E, S = _step_value_and_grad(
        rhs.addresses,
        vjp_addr,
        TSIT5.A,
        TSIT5.c,
        TSIT5.btilde,
        si,
        sj,
        t_reg,
        dt,
        z,
        k1,
        p,
        rtol,
        atol_arr,
        w_error,
        w_stiff,
        bool(compute_grad),
        bool(through_state or through_k1),
        grad_z,
        grad_p,
        stiffness_scaling == "official",
    )
    if not compute_grad:
        return float(R), None, None, float(E), float(S)
    return float(R), grad_p, (grad_z if through_state else None), float(E), float(S)


def _check_scaling(stiffness_scaling):
    if stiffness_scaling not in STIFFNESS_SCALINGS:
        raise ValueError(f"stiffness_scaling must be one of {STIFFNESS_SCALINGS}, got {stiffness_scaling!r}")


def local_regularizer(
    f,
    f_vjp,
    t_reg,
    t1,
    z_reg,
    p,
    rtol,
    atol,
    heuristic="error",
    stiffness_weight=1.0,
    through_state=False,
    compute_grad=True,
    through_k1=False,
    stiffness_scaling="ratio",
) -> LocalReg:
    """The local regularizer at t_reg: one Tsit5 step from ``z_reg = z(t_reg)`` on (t_reg, t1).

    Parameters
    ----------
    f, f_vjp : the model's right-hand side and its VJP (Numba functions or handles, as for ``solve_ode``).
    t_reg, t1 : the sampled time and the end of the main solve's span (t_reg strictly before t1 in the
        direction of integration).
    z_reg : the main solve's state at t_reg (the whole minibatch, flat).
    p : parameters.
    rtol, atol : the main solve's tolerances (they scale E_est and drive the initial-step rule).
    heuristic : "error" (R = E_est·|dt|, the paper), "error_stiffness" (E_est·|dt| + c·S_est, c =
        ``stiffness_weight``) or "stiffness" (S_est).
    through_state : also differentiate through z (and k1 = f(t_reg, z)); the paper does not.
    through_k1 : differentiate k1 = f(t_reg, z; θ) with respect to θ (z still constant); the paper does not.
        Why it matters: err = h Σ btilde_i k_i is a cancellation (Σ btilde_i = 0).  With k1 frozen, the
        θ-derivative of err loses that cancellation — it is ≈ −h·btilde_1·∂f/∂θ, first order in h, where the
        true derivative is O(h⁵) — so the paper's gradient is orders of magnitude larger than the exact one
        and points mostly along ∂f/∂θ weighted by err's sign pattern at the sampled point.
    compute_grad : False returns only the value (for evaluation or logging).
    stiffness_scaling : "ratio" (default) or "official" — the 2023 code's S_est, rms ratio with +eps in the
        denominator, divided by Tsit5's stability size 3.5068 (see :data:`STIFFNESS_SCALINGS`).
    """
    _check_scaling(stiffness_scaling)
    z, p, t_reg, t1 = check_regularization_point("z_reg", z_reg, p, t_reg, t1)
    if t_reg == t1:
        raise ValueError(f"t_reg must differ from t1 (the regularizer's step runs on (t_reg, t1)), got {t_reg!r}")
    rtol_f, atol_arr = check_tolerances(rtol, atol, z.size, "z_reg")
    _heuristic_weights(heuristic, stiffness_weight)
    rhs = as_compiled(f, "rhs", "f")
    k1, dt, nfe_init = _first_stage_and_dt(rhs.addresses, t_reg, t1, z, p, rtol_f, atol_arr, TSIT5.order)
    if not np.all(np.isfinite(k1)):
        raise ValueError(f"f(t_reg, z_reg) is not finite at t_reg={t_reg!r}")
    value, grad_p, grad_z, E, S = frozen_step_regularizer(
        rhs,
        f_vjp,
        t_reg,
        dt,
        z,
        k1,
        p,
        rtol_f,
        atol_arr,
        heuristic,
        stiffness_weight,
        through_state,
        compute_grad,
        through_k1,
        stiffness_scaling,
    )
    if not math.isfinite(value):
        raise ValueError(
            f"the regularizing step from t_reg={t_reg!r} (dt={dt!r}) is not finite (E_est={E!r}, S_est={S!r}): "
            "the span (t_reg, t1) or z_reg is too large for one Tsit5 step"
        )
    return LocalReg(
        value=value,
        grad_p=grad_p,
        grad_z=grad_z,
        dt=float(dt),
        nfe=int(nfe_init + TSIT5.n_stages - 1),
        t_reg=t_reg,
        error_estimate=E,
        stiffness_estimate=S,
    )


# ----------------------------------------------------------------------------------------------------------
# Sampling t_reg.


def _generator(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def sample_unbiased(t_span, rng) -> float:
    """t_reg ~ U[t0, t1): ``t0 + u·(t1 − t0)`` with u = rng.random(), as the official code.

    The open upper end matters: the regularizer's step runs on (t_reg, t1).  A draw that rounds onto t1
    (possible only through floating-point rounding) is moved to the nearest float towards t0.
    """
    rng = _generator(rng)
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"t_span must be a pair of numbers (t0, t1), got {t_span!r}") from exc
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"t_span must be finite with t0 != t1, got {t_span!r}")
    t_reg = t0 + rng.random() * (t1 - t0)
    if t_reg == t1:
        t_reg = float(np.nextafter(t1, t0))
    return float(t_reg)


class BiasedSample(NamedTuple):
    """A biased draw: the time, and where its state lives in the main solve.

    ``save_index`` indexes ``sol.t``/``sol.y`` (-1 when the solve saved only at given times, in which case
    the state is ``sol.steps.y[step_state]``); ``step_state`` indexes ``sol.steps.y`` (-1 without step
    records).  The state itself is :func:`biased_state`.
    """

    t_reg: float
    save_index: int
    step_state: int


BIASED_SOURCES = ("steps", "saves")


def sample_biased(sol, rng, source="steps") -> BiasedSample:
    """t_reg drawn uniformly among the main solve's accepted-step end times, the final time excluded.

    ``source="saves"`` draws instead among the solution's SAVED times, the last one excluded — what the
    official code does (``rand(rng, sol.t[1:end-1])`` reads the solution's saved times, which are the save
    points when ``saveat`` is given, the step ends only when every step is saved); the state is then the saved
    point ``sol.y[i]`` (``save_index = i``).  It needs at least two saved times.  Without ``saveat`` both
    sources coincide (every step end is saved; the "steps" rule also excludes t0).

    The candidates are the ends of steps 0 … n−2 (the official code's ``rand(rng, sol.t[1:end-1])`` with
    ``save_start=false``: t0 and the final time are never drawn).  A solve of a single step has no such
    time; then t0 is returned (the only point whose state is known before the final one) — documented
    fallback, the official code would fail there.

    Works with a solve that saved every step (``solve_ode`` without ``saveat``; the state is a saved point,
    so a gradient can be sent to it through ``grad_y``) or one with step states
    (``record_states=True``/``dense=True``).
    """
    rng = _generator(rng)
    if source not in BIASED_SOURCES:
        raise ValueError(f"source must be one of {BIASED_SOURCES}, got {source!r}")
    if source == "saves":
        if not sol.success:
            raise ValueError(f"sol: the main solve failed ({sol.message})")
        if sol.t.size < 2:
            raise ValueError(f"sol: biased sampling from save times needs at least two saved times, got {sol.t.size}")
        i = int(rng.integers(sol.t.size - 1))
        return BiasedSample(float(sol.t[i]), i, -1)
    steps = getattr(sol, "steps", None)
    saved_every_step = (
        sol.save_step is not None
        and sol.save_step.size == sol.t.size
        and sol.t.size >= 1
        and sol.save_step[0] == -1
        and np.array_equal(sol.save_step, np.arange(-1, sol.t.size - 1))
        and np.all(sol.save_theta[1:] == 1.0)
    )
    if saved_every_step:
        n_steps = sol.t.size - 1
    elif steps is not None and steps.y is not None:
        n_steps = len(steps)
    else:
        raise ValueError(
            "sol: biased sampling needs the accepted steps' states — solve without saveat (every "
            "step saved) or with record_states=True"
        )
    if not sol.success:
        raise ValueError(f"sol: the main solve failed ({sol.message})")
    if n_steps <= 1:
        k = 0  # fallback to t0 (see the docstring)
    else:
        k = 1 + int(rng.integers(n_steps - 1))  # end of step k-1 = start of step k, k in 1 … n_steps-1
    save_index = k if saved_every_step else -1
    step_state = k if (steps is not None and steps.y is not None) else -1
    t_reg = float(sol.t[k]) if saved_every_step else float(sol.t_span[0] if k == 0 else steps.t[k])
    return BiasedSample(t_reg, save_index, step_state)


def biased_state(sol, sample: BiasedSample) -> np.ndarray:
    """The main solve's state at a :func:`sample_biased` draw."""
    if sample.save_index >= 0:
        return sol.y[sample.save_index]
    return sol.steps.y[sample.step_state]
