"""The numba.cuda ensemble kernels: one trajectory per GPU thread.

Each kernel is made per right-hand side (and per state size and stage count, which size the
``cuda.local.array`` work arrays) and calls the per-trajectory loop of :mod:`lrnde_np.cuda.trajectory`, which
numba-cuda compiles for the device together with the library's step and controller kernels it calls (any
``@njit`` function a kernel calls is recompiled as a device function).  The user's right-hand side — a
``@cuda.jit(device=True)`` function, or an ``@njit`` one — is passed into that loop as an argument, exactly
as the CPU ensemble passes its first-class function value.

In numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) a kernel runs as Python, and a compiled CPU function
cannot take the simulator's arrays or device functions; there the loop and everything it calls run from their
Python source (:func:`as_python`), i.e. the same source the GPU compiles.

This module imports ``numba.cuda``; the library imports it only through :func:`lrnde_np.cuda.cuda_kernels`.
"""

from __future__ import annotations

import types as pytypes

import numpy as np
from numba import config, cuda, float64, int64
from numba.core.dispatcher import Dispatcher

from . import trajectory

SIMULATOR = bool(config.ENABLE_CUDASIM)
#: Threads per block (trajectories are independent; 64 leaves registers for the larger local arrays).
THREADS_PER_BLOCK = 64

_python_versions: dict = {}


def as_python(fn):
    """The Python function behind an ``@njit`` dispatcher, with every dispatcher it calls (recursively)
    replaced by its Python version as well — what the simulator must run.  Other objects pass through."""
    if not isinstance(fn, Dispatcher):
        return fn
    hit = _python_versions.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    py = fn.py_func
    namespace = dict(py.__globals__)
    new = pytypes.FunctionType(py.__code__, namespace, py.__name__, py.__defaults__, py.__closure__)
    _python_versions[id(fn)] = (fn, new)
    for name in py.__code__.co_names:
        value = namespace.get(name)
        if isinstance(value, Dispatcher):
            namespace[name] = as_python(value)
    return new


def _device(fn):
    """What a kernel calls for ``fn``: the dispatcher itself on a GPU, its Python version in the simulator."""
    return as_python(fn) if SIMULATOR else fn


_kernels: dict = {}


def _cached(key, keep, build):
    """A kernel cached under ``key`` (ids of functions, sizes); ``keep`` holds those functions alive."""
    hit = _kernels.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], keep, strict=True)):
        return hit[1]
    kernel = build()
    _kernels[key] = (keep, kernel)
    return kernel


# ----------------------------------------------------------------------------------------------------------
# Kernel factories


def ode_kernel(f, s, n):
    """The ODE ensemble kernel for right-hand side ``f``, s stages (FSAL form), n states."""

    def build():
        traj = _device(trajectory.ode_trajectory)
        fd = _device(f)

        @cuda.jit
        def kernel(
            A,
            c,
            btilde,
            P,
            order,
            t0,
            t1,
            Y0,
            Pm,
            rtol,
            atol,
            saveat,
            ctrl,
            adaptive,
            max_steps,
            Y_save,
            status,
            stats,
            t_end,
        ):
            i = cuda.grid(1)
            if i < Y0.shape[0]:
                y = cuda.local.array(n, float64)
                y_new = cuda.local.array(n, float64)
                err = cuda.local.array(n, float64)
                work_a = cuda.local.array(n, float64)
                work_b = cuda.local.array(n, float64)
                K = cuda.local.array((s, n), float64)
                w = cuda.local.array(s, float64)
                row = i if Pm.shape[0] > 1 else 0
                st, nfe, acc, rej, te = traj(
                    fd,
                    A,
                    c,
                    btilde,
                    P,
                    order,
                    t0,
                    t1,
                    Y0[i],
                    Pm[row],
                    rtol,
                    atol,
                    saveat,
                    ctrl,
                    adaptive,
                    max_steps,
                    y,
                    y_new,
                    K,
                    err,
                    work_a,
                    work_b,
                    w,
                    Y_save[i],
                )
                status[i] = st
                stats[i, 0] = nfe
                stats[i, 1] = acc
                stats[i, 2] = rej
                t_end[i] = te

        return kernel

    return _cached(("ode", id(f), s, n), (f,), build)


def local_reg_kernel(f, f_vjp, s, n, n_p):
    """The local-regularizer ensemble kernel (Tsit5 step, its VJP with ``f_vjp``)."""
    n_pw = max(n_p, 1)

    def build():
        traj = _device(trajectory.local_reg_trajectory)
        fd = _device(f)
        vd = _device(f_vjp)

        @cuda.jit
        def kernel(
            A,
            c,
            btilde,
            si,
            sj,
            order,
            t_reg,
            t1,
            Z,
            Pm,
            rtol,
            atol,
            w_error,
            w_stiff,
            want_grad,
            through_k1,
            grad_z,
            grad_p,
            out,
            nfe,
            status,
        ):
            i = cuda.grid(1)
            if i < Z.shape[0]:
                K = cuda.local.array((s, n), float64)
                K_bar = cuda.local.array((s, n), float64)
                Y_bar = cuda.local.array((s, n), float64)
                y_new = cuda.local.array(n, float64)
                err = cuda.local.array(n, float64)
                err_bar = cuda.local.array(n, float64)
                y_new_bar = cuda.local.array(n, float64)
                work_i = cuda.local.array(n, float64)
                work_j = cuda.local.array(n, float64)
                work_y = cuda.local.array(n, float64)
                work_a = cuda.local.array(n, float64)
                work_gy = cuda.local.array(n, float64)
                work_gp = cuda.local.array(n_pw, float64)
                row = i if Pm.shape[0] > 1 else 0
                st, R, E, S, h, ne = traj(
                    fd,
                    vd,
                    A,
                    c,
                    btilde,
                    si,
                    sj,
                    order,
                    t_reg[i],
                    t1[i],
                    Z[i],
                    Pm[row],
                    rtol,
                    atol,
                    w_error,
                    w_stiff,
                    want_grad,
                    through_k1,
                    K,
                    K_bar,
                    Y_bar,
                    y_new,
                    err,
                    err_bar,
                    y_new_bar,
                    work_i,
                    work_j,
                    work_y,
                    work_a,
                    work_gy,
                    work_gp,
                    grad_z[i],
                    grad_p[i],
                )
                status[i] = st
                out[i, 0] = R
                out[i, 1] = E
                out[i, 2] = S
                out[i, 3] = h
                nfe[i] = ne

        return kernel

    return _cached(("reg", id(f), id(f_vjp), s, n, n_p), (f, f_vjp), build)


def sde_kernel(f, g, s, n, m, cap1, cap2):
    """The SDE ensemble kernel: s SRI stages, n states, m Wiener processes, RSwM3 stacks of cap1/cap2 rows."""
    w = 2 + 2 * m

    def build():
        traj = _device(trajectory.sde_trajectory)
        fd = _device(f)
        gd = _device(g)

        @cuda.jit
        def kernel(
            M,
            V,
            delta,
            error_terms,
            order,
            t0,
            t1,
            X0,
            Pm,
            rtol,
            atol,
            saveat,
            stops,
            ctrl,
            adaptive,
            max_steps,
            stride,
            rng,
            X_save,
            status,
            stats,
            t_end,
        ):
            i = cuda.grid(1)
            if i < X0.shape[0]:
                x = cuda.local.array(n, float64)
                H0 = cuda.local.array((s, n), float64)
                H1 = cuda.local.array((s, n), float64)
                F = cuda.local.array((s, n), float64)
                G = cuda.local.array((s, n), float64)
                x_new = cuda.local.array(n, float64)
                err = cuda.local.array(n, float64)
                wa = cuda.local.array(n, float64)
                wb = cuda.local.array(n, float64)
                wc = cuda.local.array(n, float64)
                wd = cuda.local.array(n, float64)
                we = cuda.local.array(n, float64)
                dW = cuda.local.array(m, float64)
                dZ = cuda.local.array(m, float64)
                S1 = cuda.local.array((cap1, w), float64)
                S2 = cuda.local.array((cap2, w), float64)
                cnt = cuda.local.array(2, int64)
                cur = cuda.local.array(w, float64)
                piece = cuda.local.array(w, float64)
                rest = cuda.local.array(w, float64)
                row = i if Pm.shape[0] > 1 else 0
                st, nfe, nge, acc, rej, te = traj(
                    fd,
                    gd,
                    M,
                    V,
                    delta,
                    error_terms,
                    order,
                    t0,
                    t1,
                    X0[i],
                    Pm[row],
                    rtol,
                    atol,
                    saveat,
                    stops,
                    ctrl,
                    adaptive,
                    max_steps,
                    stride,
                    m,
                    rng[i],
                    x,
                    H0,
                    H1,
                    F,
                    G,
                    x_new,
                    err,
                    wa,
                    wb,
                    wc,
                    wd,
                    we,
                    dW,
                    dZ,
                    S1,
                    S2,
                    cnt,
                    cur,
                    piece,
                    rest,
                    X_save[i],
                )
                status[i] = st
                stats[i, 0] = nfe
                stats[i, 1] = nge
                stats[i, 2] = acc
                stats[i, 3] = rej
                t_end[i] = te

        return kernel

    return _cached(("sde", id(f), id(g), s, n, m, cap1, cap2), (f, g), build)


# ----------------------------------------------------------------------------------------------------------
# Launchers: host arrays in, results written into the given host output arrays.


def _launch(kernel, N, inputs, outputs):
    """Copy the array inputs to the device, run ``kernel`` over N threads, copy ``outputs`` back in place.

    ``inputs``: the kernel's arguments in order, with each output given as its host array (also listed in
    ``outputs``).  Scalars pass as they are.
    """
    blocks = (N + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    out_ids = {id(a) for a in outputs}
    dev = {}
    args = []
    for a in inputs:
        if isinstance(a, np.ndarray):
            d = cuda.device_array_like(a) if id(a) in out_ids else cuda.to_device(np.ascontiguousarray(a))
            dev[id(a)] = d
            args.append(d)
        else:
            args.append(a)
    with np.errstate(over="ignore"):  # simulator: xoshiro256**'s uint64 products wrap (NumPy would warn)
        kernel[blocks, THREADS_PER_BLOCK](*args)
    cuda.synchronize()
    for a in outputs:
        dev[id(a)].copy_to_host(a)


def ode_args(tab, t0, t1, Y0, Pm, rtol, atol, saveat, ctrl, adaptive, max_steps, Y_save, status, stats, t_end):
    return (
        tab.A,
        tab.c,
        tab.btilde,
        tab.P,
        tab.order,
        t0,
        t1,
        Y0,
        Pm,
        rtol,
        atol,
        saveat,
        ctrl,
        adaptive,
        max_steps,
        Y_save,
        status,
        stats,
        t_end,
    )


def ode_ensemble(f, tab, t0, t1, Y0, Pm, rtol, atol, saveat, ctrl, adaptive, max_steps, Y_save, status, stats, t_end):
    kernel = ode_kernel(f, tab.A.shape[0], Y0.shape[1])
    _launch(
        kernel,
        Y0.shape[0],
        ode_args(tab, t0, t1, Y0, Pm, rtol, atol, saveat, ctrl, adaptive, max_steps, Y_save, status, stats, t_end),
        (Y_save, status, stats, t_end),
    )


def _no_vjp_py(t, y, p, a, out_y, out_p):
    pass


_NO_VJP = None


def _no_vjp():
    """A VJP that is never called (``compute_grad=False``): the kernel needs some device function."""
    global _NO_VJP
    if _NO_VJP is None:
        _NO_VJP = cuda.jit(device=True)(_no_vjp_py)
    return _NO_VJP


def local_reg_args(
    tab, si, sj, t_reg, t1, Z, Pm, rtol, atol, w_error, w_stiff, want_grad, through_k1, grad_z, grad_p, out, nfe, status
):
    return (
        tab.A,
        tab.c,
        tab.btilde,
        si,
        sj,
        tab.order,
        t_reg,
        t1,
        Z,
        Pm,
        rtol,
        atol,
        w_error,
        w_stiff,
        want_grad,
        through_k1,
        grad_z,
        grad_p,
        out,
        nfe,
        status,
    )


def local_reg_ensemble(
    f,
    f_vjp,
    tab,
    si,
    sj,
    t_reg,
    t1,
    Z,
    Pm,
    rtol,
    atol,
    w_error,
    w_stiff,
    want_grad,
    through_k1,
    grad_z,
    grad_p,
    out,
    nfe,
    status,
):
    vjp = f_vjp if f_vjp is not None else _no_vjp()
    kernel = local_reg_kernel(f, vjp, tab.A.shape[0], Z.shape[1], Pm.shape[1])
    _launch(
        kernel,
        Z.shape[0],
        local_reg_args(
            tab,
            si,
            sj,
            t_reg,
            t1,
            Z,
            Pm,
            rtol,
            atol,
            w_error,
            w_stiff,
            want_grad,
            through_k1,
            grad_z,
            grad_p,
            out,
            nfe,
            status,
        ),
        (grad_z, grad_p, out, nfe, status),
    )


def sde_ensemble(
    f,
    g,
    M,
    V,
    delta,
    error_terms,
    order,
    t0,
    t1,
    X0,
    Pm,
    rtol,
    atol,
    saveat,
    stops,
    ctrl,
    adaptive,
    max_steps,
    stride,
    m,
    rng,
    cap1,
    cap2,
    X_save,
    status,
    stats,
    t_end,
):
    kernel = sde_kernel(f, g, V.shape[1], X0.shape[1], m, cap1, cap2)
    _launch(
        kernel,
        X0.shape[0],
        (
            M,
            V,
            delta,
            error_terms,
            order,
            t0,
            t1,
            X0,
            Pm,
            rtol,
            atol,
            saveat,
            stops,
            ctrl,
            adaptive,
            max_steps,
            stride,
            rng,
            X_save,
            status,
            stats,
            t_end,
        ),
        (X_save, status, stats, t_end),
    )
