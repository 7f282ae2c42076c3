"""The generic explicit Runge–Kutta step and its vector–Jacobian product.

A method is its tableau (``lrnde_np.tableaus``, FSAL form) plus these few kernels.  With stage arguments
``Y_i = y + h Σ_{j<i} A_ij k_j`` and stage values ``k_i = f(t + c_i h, Y_i)``, the FSAL form makes the last
stage argument the new state: ``y_{n+1} = Y_s``.  Everything a step produces is a function of the stage
values K:

* new state            ``Y_s``
* error vector         ``err = h Σ btilde_i k_i``          → ``E_est`` (``control.error_estimate``)
* stiffness estimate   ``‖k_j − k_i‖ / ‖Y_j − Y_i‖`` for two stages with ``c_i = c_j``
* dense output         ``y(θ) = y + h Σ_i b_i(θ) k_i``

so :func:`rk_step_vjp` — the single reverse sweep over the stages — serves the discrete adjoint, the
global regularizers (cotangents on E_est and the stiffness estimate) and the local regularizer (frozen
``k_1`` and ``y``) alike.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, inline="always")
def stage_argument(A, i, h, y, K, out):
    """out = Y_i = y + h Σ_{j<i} A_ij k_j."""
    n = y.size
    for m in range(n):
        acc = 0.0
        for j in range(i):
            acc += A[i, j] * K[j, m]
        out[m] = y[m] + h * acc


@njit(cache=True)
def rk_stages(f, A, c, t, h, y, p, K, y_new):
    """Fill K[1:] (K[0] = f(t, y) on entry) and write y_{n+1} = Y_s into ``y_new``.

    Every stage argument is built in ``y_new``; the last one is the new state.
    """
    s = A.shape[0]
    for i in range(1, s):
        stage_argument(A, i, h, y, K, y_new)
        f(t + c[i] * h, y_new, p, K[i])


@njit(cache=True, inline="always")
def error_vector(btilde, h, K, err):
    """err = h Σ_i btilde_i k_i (OrdinaryDiffEq's sign: embedded minus main)."""
    s, n = K.shape
    for m in range(n):
        acc = 0.0
        for i in range(s):
            acc += btilde[i] * K[i, m]
        err[m] = h * acc


@njit(cache=True)
def stiffness_estimate(A, si, sj, h, y, K, work_i, work_j):
    """‖k_j − k_i‖ / ‖Y_j − Y_i‖ for stages i, j with equal nodes (RMS norms, so the ratio of 2-norms).

    This is the Hairer/Shampine estimate of the dominant |λ| of ∂f/∂y. OrdinaryDiffEq's Tsit5 uses the
    elementwise max of the quotient instead; the norm ratio is used here because it is differentiable,
    which the stiffness regularizer needs. Returns 0 where the two stage arguments coincide.
    """
    if si < 0:
        return 0.0
    stage_argument(A, si, h, y, K, work_i)
    stage_argument(A, sj, h, y, K, work_j)
    num = 0.0
    den = 0.0
    for m in range(y.size):
        num += (K[sj, m] - K[si, m]) ** 2
        den += (work_j[m] - work_i[m]) ** 2
    if den == 0.0:
        return 0.0
    return math.sqrt(num / den)


@njit(cache=True)
def stiffness_estimate_vjp(Sbar, A, si, sj, h, y, K, work_i, work_j, K_bar, Y_bar):
    """Accumulate Sbar·∂S/∂(k_i, k_j, Y_i, Y_j) into the stage cotangents K_bar, Y_bar."""
    if si < 0 or Sbar == 0.0:
        return
    stage_argument(A, si, h, y, K, work_i)
    stage_argument(A, sj, h, y, K, work_j)
    num = 0.0
    den = 0.0
    for m in range(y.size):
        num += (K[sj, m] - K[si, m]) ** 2
        den += (work_j[m] - work_i[m]) ** 2
    if den == 0.0 or num == 0.0:
        return
    a = math.sqrt(num)
    b = math.sqrt(den)
    S = a / b
    for m in range(y.size):
        gk = Sbar * (K[sj, m] - K[si, m]) / (a * b)
        gy = -Sbar * S * (work_j[m] - work_i[m]) / (b * b)
        K_bar[sj, m] += gk
        K_bar[si, m] -= gk
        Y_bar[sj, m] += gy
        Y_bar[si, m] -= gy


@njit(cache=True, inline="always")
def dense_weights(P, theta, w):
    """w_i = b_i(θ) = Σ_m P_im θ^(m+1)."""
    s, deg = P.shape
    for i in range(s):
        acc = 0.0
        pw = theta
        for m in range(deg):
            acc += P[i, m] * pw
            pw *= theta
        w[i] = acc


@njit(cache=True, inline="always")
def dense_eval(P, theta, h, y, K, w, out):
    """out = y(t + θh) = y + h Σ_i b_i(θ) k_i."""
    dense_weights(P, theta, w)
    s, n = K.shape
    for m in range(n):
        acc = 0.0
        for i in range(s):
            acc += w[i] * K[i, m]
        out[m] = y[m] + h * acc


@njit(cache=True)
def rk_step_vjp(f_vjp, A, c, t, h, y, p, K, K_bar, Y_bar, y_bar, p_bar, through_k1, work_y, work_a, work_gy, work_gp):
    """Reverse sweep through one step: pull stage cotangents back to y and p.

    On entry ``K_bar[i]`` holds the cotangent of the stage value k_i and ``Y_bar[i]`` that of the stage
    argument Y_i (put the cotangent of y_{n+1} in ``Y_bar[s-1]``, of dense outputs in K_bar via
    ``dense_weights``, of err in K_bar via ``btilde``).  Both arrays are consumed (overwritten).
    Accumulates ``y_bar += ∂/∂y`` and ``p_bar += ∂/∂p``.  ``through_k1=False`` treats k_1 as a constant
    (the local regularizer's frozen ``integrator.fsalfirst``); the step size h is always held fixed.
    """
    s, n = K.shape
    for i in range(s - 1, -1, -1):
        # k_i = f(t + c_i h, Y_i): pull K_bar[i] back to Y_i and p.
        if i > 0 or through_k1:
            nonzero = False
            for m in range(n):
                if K_bar[i, m] != 0.0:
                    nonzero = True
                    break
            if nonzero:
                stage_argument(A, i, h, y, K, work_y)
                for m in range(n):
                    work_a[m] = K_bar[i, m]
                f_vjp(t + c[i] * h, work_y, p, work_a, work_gy, work_gp)
                for m in range(n):
                    Y_bar[i, m] += work_gy[m]
                for m in range(p.size):
                    p_bar[m] += work_gp[m]
        # Y_i = y + h Σ_j A_ij k_j: pull Y_bar[i] back to y and the earlier stage values.
        for m in range(n):
            g = Y_bar[i, m]
            if g != 0.0:
                y_bar[m] += g
                for j in range(i):
                    K_bar[j, m] += h * A[i, j] * g
