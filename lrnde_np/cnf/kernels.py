"""Compiled kernels of the CNF augmented dynamics and their hand-written VJPs (second derivatives of the field).

Per sample b of a flat minibatch the augmented state is ``[z_b (D), l_b, E_b?, F_b?]`` stored channel-major,
``y = [z (B·D), l (B), E (B) if kinetic, F (B) if frobenius]``, and::

    dz/dt = f(t, z)
    dl/dt = -tr(∂f/∂z)                         (exact, or Hutchinson εᵀ(∂f/∂z)ε)
    dE/dt = ‖f‖²                               (RNODE kinetic energy)
    dF/dt = Σ_k ‖(∂f/∂z) v_k‖²                 (RNODE Jacobian Frobenius norm: exact with the D unit vectors
                                                v_k = e_k, Hutchinson with the one probe v = ε)

The field is a stack of dense layers read from an MLP layout (see :mod:`lrnde_np.nn.mlp`).  Its Jacobian
enters only through *probe* products ``J v_k``, carried by one forward-mode (tangent) sweep alongside the
forward sweep, all K probes of all B samples at once (K·B rows).  The exact trace is Σ_k e_kᵀ J e_k (K = D
probes); Hutchinson's is εᵀ J ε (K = 1, ε per sample from the parameter vector's tail).  Chen's gated
hypernetwork field ``f = (1/M) Σ_i u_i(t) tanh(w_i(t)ᵀ z + b_i(t))`` is the same two-layer stack with
weights made from t by a hypernetwork MLP; its exact trace is analytic,
``tr = (1/M) Σ_i h'(s_i) u_iᵀ w_i`` — no probes.

The VJP sweeps back through the tangent sweep: with ȧ = σ'(z) ż, ż = W ẋ,

    ż̄ = σ'(z) ǡ,   z̄ += σ''(z) ż ǡ + σ'(z) ā,   W̄ += z̄ xᵀ + ż̄ ẋᵀ,   x̄ = Wᵀ z̄,   ẋ̄ = Wᵀ ż̄

seeded at the output by ā = a_z + 2 a_E f and ǡ_k = -a_l w_k v_k + 2 a_F J v_k.  The probes are constants
(the ε of a solve is not differentiated).

Configuration array (int64, frozen into each compiled entry point)::

    [D, kind (0 MLP, 1 hypernetwork), trace (0 exact, 1 Hutchinson), kinetic, frobenius, M, n_theta, 0,
     field-or-hypernetwork MLP layout ...]
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..nn.mlp import IDENTITY, RELU, SOFTPLUS, SWISH, TANH, _activate, mlp_rhs, mlp_vjp

CFG_HEADER = 8
KIND_MLP, KIND_HYPER = 0, 1
TRACE_EXACT, TRACE_HUTCHINSON = 0, 1


@njit(cache=True, inline="always")
def _sig(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True, inline="always")
def _d1(code, z, a):
    """σ'(z) given a = σ(z)."""
    if code == TANH:
        return 1.0 - a * a
    if code == SOFTPLUS:
        return _sig(z)
    if code == RELU:
        return 1.0 if z > 0.0 else 0.0
    if code == SWISH:
        s = _sig(z)
        return s * (1.0 + z * (1.0 - s))
    return 1.0


@njit(cache=True, inline="always")
def _d2(code, z, a):
    """σ''(z) given a = σ(z)."""
    if code == TANH:
        return -2.0 * a * (1.0 - a * a)
    if code == SOFTPLUS:
        s = _sig(z)
        return s * (1.0 - s)
    if code == SWISH:
        s = _sig(z)
        return s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
    return 0.0


@njit(cache=True, inline="always")
def _rec(layout, layer):
    r = 2 + 4 * layer
    return layout[r], layout[r + 1], layout[r + 2], layout[r + 3]


@njit(cache=True)
def core_work_size(layout, B, K):
    size = 0
    for layer in range(layout[0]):
        _, n_out, _, _ = _rec(layout, layer)
        size += 2 * B * n_out + 2 * K * B * n_out
    return size


@njit(cache=True)
def core_forward(layout, t, x, pf, V, K, work):
    """Forward and tangent sweeps of a dense stack: per layer [Z (B,n), A (B,n), Ż (K·B,n), Ȧ (K·B,n)] in work.

    x: (B, D) inputs; V: (K·B, D) probes (row k·B + b is probe k of sample b).  Returns the work position of
    the last layer's blocks.
    """
    B = x.shape[0]
    X = x
    Xd = V
    pos = 0
    w_off = 0
    last = 0
    for layer in range(layout[0]):
        n_in, n_out, act, tt = _rec(layout, layer)
        W = pf[w_off : w_off + n_out * n_in].reshape((n_out, n_in))
        o = w_off + n_out * n_in
        wt = pf[o : o + n_out * tt]
        b = pf[o + n_out * tt : o + n_out * tt + n_out]
        w_off = o + n_out * tt + n_out
        last = pos
        Z = work[pos : pos + B * n_out].reshape((B, n_out))
        pos += B * n_out
        A = work[pos : pos + B * n_out].reshape((B, n_out))
        pos += B * n_out
        np.dot(X, W.T, Z)
        for s in range(B):
            for o2 in range(n_out):
                Z[s, o2] += b[o2]
            for o2 in range(wt.size):
                Z[s, o2] += wt[o2] * t
        _activate(act, Z.reshape(-1), A.reshape(-1))
        Zd = work[pos : pos + K * B * n_out].reshape((K * B, n_out))
        pos += K * B * n_out
        Ad = work[pos : pos + K * B * n_out].reshape((K * B, n_out))
        pos += K * B * n_out
        if K > 0:
            np.dot(Xd, W.T, Zd)
            for k in range(K):
                for s in range(B):
                    r = k * B + s
                    for o2 in range(n_out):
                        Ad[r, o2] = _d1(act, Z[s, o2], A[s, o2]) * Zd[r, o2]
        X = A
        Xd = Ad
    return last


@njit(cache=True)
def core_vjp(layout, t, x, pf, V, K, work, a_out, a_tan, out_x, out_pf):
    """Reverse sweep after :func:`core_forward` (work filled): cotangents ``a_out`` (B, D_out) of the output
    and ``a_tan`` (K·B, D_out) of the probe products; overwrites ``out_x`` (B, D) and ``out_pf``."""
    B = x.shape[0]
    n_layers = layout[0]
    max_w = x.shape[1]
    for layer in range(n_layers):
        _, n_out, _, _ = _rec(layout, layer)
        max_w = max(max_w, n_out)
    gbuf = np.empty(B * max_w)
    gdbuf = np.empty(K * B * max_w)
    zbar_buf = np.empty(B * max_w)
    zdbar_buf = np.empty(K * B * max_w)
    d_out = a_out.shape[1]
    g = gbuf[: B * d_out].reshape((B, d_out))
    g[:, :] = a_out
    gd = gdbuf[: K * B * d_out].reshape((K * B, d_out))
    gd[:, :] = a_tan
    # block offsets of every layer
    pos_end = core_work_size(layout, B, K)
    w_end = pf.size
    for layer in range(n_layers - 1, -1, -1):
        n_in, n_out, act, tt = _rec(layout, layer)
        blk = 2 * B * n_out + 2 * K * B * n_out
        pos = pos_end - blk
        Z = work[pos : pos + B * n_out].reshape((B, n_out))
        A = work[pos + B * n_out : pos + 2 * B * n_out].reshape((B, n_out))
        Zd = work[pos + 2 * B * n_out : pos + 2 * B * n_out + K * B * n_out].reshape((K * B, n_out))
        if layer > 0:
            _, pn, _, _ = _rec(layout, layer - 1)
            pblk = 2 * B * pn + 2 * K * B * pn
            ppos = pos - pblk
            X = work[ppos + B * pn : ppos + 2 * B * pn].reshape((B, pn))
            Xd = work[ppos + 2 * B * pn + K * B * pn : ppos + pblk].reshape((K * B, pn))
        else:
            X = x
            Xd = V
        w_off = w_end - n_out * (n_in + tt + 1)
        W = pf[w_off : w_off + n_out * n_in].reshape((n_out, n_in))
        gW = out_pf[w_off : w_off + n_out * n_in].reshape((n_out, n_in))
        gwt = out_pf[w_off + n_out * n_in : w_off + n_out * n_in + n_out * tt]
        gb = out_pf[w_off + n_out * n_in + n_out * tt : w_end]
        zbar = zbar_buf[: B * n_out].reshape((B, n_out))
        zdbar = zdbar_buf[: K * B * n_out].reshape((K * B, n_out))
        for s in range(B):
            for o in range(n_out):
                zbar[s, o] = _d1(act, Z[s, o], A[s, o]) * g[s, o]
        for k in range(K):
            for s in range(B):
                r = k * B + s
                for o in range(n_out):
                    d1 = _d1(act, Z[s, o], A[s, o])
                    zdbar[r, o] = d1 * gd[r, o]
                    zbar[s, o] += _d2(act, Z[s, o], A[s, o]) * Zd[r, o] * gd[r, o]
        np.dot(zbar.T, X, gW)
        if K > 0:
            gW += np.dot(zdbar.T, Xd)
        for o in range(n_out):
            acc = 0.0
            for s in range(B):
                acc += zbar[s, o]
            gb[o] = acc
        for o in range(gwt.size):
            gwt[o] = gb[o] * t
        if layer > 0:
            g = gbuf[: B * n_in].reshape((B, n_in))
            np.dot(zbar, W, g)
            gd = gdbuf[: K * B * n_in].reshape((K * B, n_in))
            if K > 0:
                np.dot(zdbar, W, gd)
        else:
            np.dot(zbar, W, out_x)
        pos_end = pos
        w_end = w_off


# ----------------------------------------------------------------------------------------------------------
# Hypernetwork: φ(t) = hyper(t) = [W (M,D), U (M,D), G (M,D), B (M)];  u = U·sigmoid(G);
# field stack: layer 1 (D→M, activation, weights W, bias B), layer 2 (M→D, identity, weights uᵀ/M, no bias).


@njit(cache=True)
def hyper_field_params(D, M, phi, pf):
    """Fill the two-layer stack's parameters pf from the hypernetwork output φ."""
    MD = M * D
    pf[:MD] = phi[:MD]
    pf[MD : MD + M] = phi[3 * MD : 3 * MD + M]
    o = MD + M
    for i in range(M):
        for d in range(D):
            u = phi[MD + i * D + d] * _sig(phi[2 * MD + i * D + d])
            pf[o + d * M + i] = u / M
    pf[o + MD : o + MD + D] = 0.0


@njit(cache=True)
def hyper_field_params_vjp(D, M, phi, gpf, gphi):
    """Pull the stack's parameter cotangent gpf back to φ (overwrites gphi)."""
    MD = M * D
    gphi[:MD] = gpf[:MD]
    gphi[3 * MD : 3 * MD + M] = gpf[MD : MD + M]
    o = MD + M
    for i in range(M):
        for d in range(D):
            gu = gpf[o + d * M + i] / M
            U = phi[MD + i * D + d]
            sg = _sig(phi[2 * MD + i * D + d])
            gphi[MD + i * D + d] = gu * sg
            gphi[2 * MD + i * D + d] = gu * U * sg * (1.0 - sg)


@njit(cache=True)
def _stack_layout_hyper(D, M, act):
    lay = np.empty(10, dtype=np.int64)
    lay[0] = 2
    lay[1] = 0
    lay[2], lay[3], lay[4], lay[5] = D, M, act, 0
    lay[6], lay[7], lay[8], lay[9] = M, D, IDENTITY, 0
    return lay


# ----------------------------------------------------------------------------------------------------------
# The augmented right-hand side and its VJP.


@njit(cache=True)
def cnf_eval(cfg, t, y, p, a, out_f, out_y, out_p, want_vjp):
    """out_f = augmented dynamics (skipped when empty); with want_vjp, out_y = aᵀ∂F/∂y, out_p = aᵀ∂F/∂p."""
    D = cfg[0]
    kind = cfg[1]
    hutch = cfg[2] == TRACE_HUTCHINSON
    kin = cfg[3]
    frob = cfg[4]
    M = cfg[5]
    n_theta = cfg[6]
    layout = cfg[CFG_HEADER:]
    n_ch = D + 1 + kin + frob
    if y.size % n_ch != 0:
        raise ValueError("y: length is not a multiple of the CNF's channels per sample")
    B = y.size // n_ch
    if p.size != n_theta + (B * D if hutch else 0):
        raise ValueError("p: length differs from n_theta (+ batch * D Hutchinson noise)")
    theta = p[:n_theta]
    x = y[: B * D].reshape((B, D))
    # Field parameters: θ itself (MLP) or the hypernetwork's stack at time t.
    if kind == KIND_HYPER:
        MD = M * D
        n_phi = 3 * MD + M
        act = cfg[7]
        slay = _stack_layout_hyper(D, M, act)
        tin = np.empty(1)
        tin[0] = t
        phi = np.empty(n_phi)
        mlp_rhs(layout, 0.0, tin, theta, phi)
        pf = np.empty(2 * MD + M + D)
        hyper_field_params(D, M, phi, pf)
    else:
        slay = layout
        pf = theta
        phi = np.empty(0)
        MD = 0
        n_phi = 0
    analytic = kind == KIND_HYPER and not hutch
    # Probes
    if hutch:
        K = 1
    elif analytic:
        K = D if frob else 0
    else:
        K = D
    V = np.zeros((K * B, D))
    if hutch:
        eps = p[n_theta:]
        for s in range(B):
            for d in range(D):
                V[s, d] = eps[s * D + d]
    else:
        for k in range(K):
            for s in range(B):
                V[k * B + s, k] = 1.0
    work = np.empty(core_work_size(slay, B, K))
    last = core_forward(slay, t, x, pf, V, K, work)
    n_out = D
    F = work[last + B * n_out : last + 2 * B * n_out].reshape((B, D))
    JV = work[last + 2 * B * n_out + K * B * n_out : last + 2 * B * n_out + 2 * K * B * n_out].reshape((K * B, D))
    # Layer-1 pre-activations and activations (hypernetwork analytic trace)
    if analytic:
        S1 = work[: B * M].reshape((B, M))
        H1 = work[B * M : 2 * B * M].reshape((B, M))
        q = np.empty(M)  # q_i = u_iᵀ w_i / M
        for i in range(M):
            acc = 0.0
            for d in range(D):
                acc += pf[MD + M + d * M + i] * pf[i * D + d]
            q[i] = acc
    else:
        S1 = work[:0].reshape((0, 1))
        H1 = S1
        q = np.empty(0)
    if out_f.size:
        if out_f.size != y.size:
            raise ValueError("out_f: length differs from y's")
        out_f[: B * D] = F.reshape(-1)
        for s in range(B):
            tr = 0.0
            if analytic:
                act1 = cfg[7]
                for i in range(M):
                    tr += _d1(act1, S1[s, i], H1[s, i]) * q[i]
            else:
                for k in range(K):
                    r = k * B + s
                    for d in range(D):
                        tr += V[r, d] * JV[r, d]
            out_f[B * D + s] = -tr
            c = B * (D + 1)
            if kin:
                acc = 0.0
                for d in range(D):
                    acc += F[s, d] * F[s, d]
                out_f[c + s] = acc
                c += B
            if frob:
                acc = 0.0
                for k in range(K):
                    r = k * B + s
                    for d in range(D):
                        acc += JV[r, d] * JV[r, d]
                out_f[c + s] = acc
    if not want_vjp:
        return
    if a.size != y.size or out_y.size != y.size or out_p.size != p.size:
        raise ValueError("a, out_y, out_p: lengths must match y, y and p")
    a_z = a[: B * D].reshape((B, D))
    a_l = a[B * D : B * (D + 1)]
    c = B * (D + 1)
    a_E = a[c : c + B * kin]
    c += B * kin
    a_F = a[c : c + B * frob]
    a_out = np.empty((B, D))
    for s in range(B):
        for d in range(D):
            a_out[s, d] = a_z[s, d] + (2.0 * a_E[s] * F[s, d] if kin else 0.0)
    a_tan = np.zeros((K * B, D))
    for k in range(K):
        for s in range(B):
            r = k * B + s
            w_tr = 0.0 if analytic else -a_l[s]
            w_fr = 2.0 * a_F[s] if frob else 0.0
            for d in range(D):
                a_tan[r, d] = w_tr * V[r, d] + w_fr * JV[r, d]
    out_x = out_y[: B * D].reshape((B, D))
    out_y[B * D :] = 0.0
    gpf = np.empty(pf.size)
    core_vjp(slay, t, x, pf, V, K, work, a_out, a_tan, out_x, gpf)
    if analytic:
        # tr_s = Σ_i σ'(s_i) q_i with s_i = w_iᵀ z + b_i and q_i = Σ_d pf_u[d, i] w_i[d]; cotangent -a_l[s].
        act1 = cfg[7]
        o2 = MD + M
        for s in range(B):
            cs = -a_l[s]
            if cs == 0.0:
                continue
            for i in range(M):
                d1 = _d1(act1, S1[s, i], H1[s, i])
                d2 = _d2(act1, S1[s, i], H1[s, i])
                gs = cs * d2 * q[i]
                gq = cs * d1
                for d in range(D):
                    out_x[s, d] += gs * pf[i * D + d]
                    gpf[i * D + d] += gs * x[s, d] + gq * pf[o2 + d * M + i]
                    gpf[o2 + d * M + i] += gq * pf[i * D + d]
                gpf[MD + i] += gs
    out_p[:] = 0.0
    if kind == KIND_HYPER:
        gphi = np.empty(n_phi)
        hyper_field_params_vjp(D, M, phi, gpf, gphi)
        tin = np.empty(1)
        tin[0] = t
        gt = np.empty(1)
        mlp_vjp(layout, 0.0, tin, theta, gphi, gt, out_p[:n_theta])
    else:
        out_p[:n_theta] = gpf
