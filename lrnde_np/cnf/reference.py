"""A plain array-module twin of the CNF augmented dynamics, an oracle for tests.

Written against an ``xp`` module (``autograd.numpy`` in the tests) and a ``jacobian`` function (autograd's),
so that the Jacobian of the field is taken by automatic differentiation — the VJP tests then differentiate
twice.  Shares nothing with the Numba kernels but the documented parameter layouts.
"""

from __future__ import annotations

import numpy

from ..nn.reference import _activation, reference_forward


def field_twin(dyn, t, z, theta, xp=numpy):
    """f(t, z) for a (D,) point z."""
    field = dyn.field
    if field.kind == 0:
        return reference_forward(field.mlp, xp.reshape(z, (1, -1)), theta, t=t, xp=xp)[0]
    M, D = field.width, field.dim
    phi = reference_forward(field.hyper, xp.array([[t]]) * 1.0, theta, xp=xp)[0]
    W = xp.reshape(phi[: M * D], (M, D))
    U = xp.reshape(phi[M * D : 2 * M * D], (M, D))
    G = xp.reshape(phi[2 * M * D : 3 * M * D], (M, D))
    b = phi[3 * M * D :]
    u = U * 0.5 * (1.0 + xp.tanh(0.5 * G))
    h = _activation(field.activation, xp.dot(W, z) + b, xp)
    return xp.dot(h, u) / M


def augmented_twin(dyn, t, y, p, jacobian, xp=numpy):
    """The augmented dynamics of ``dyn`` (a :class:`~lrnde_np.cnf.CNFDynamics`) at (t, y) with parameters p."""
    D = dyn.dim
    B = y.shape[0] // dyn.channels
    theta = p[: dyn.n_theta]
    eps = xp.reshape(p[dyn.n_theta :], (B, D)) if dyn.trace == "hutchinson" else None
    fs, trs, kins, frobs = [], [], [], []
    for s in range(B):
        z = y[s * D : (s + 1) * D]
        f = field_twin(dyn, t, z, theta, xp)
        J = jacobian(lambda zz: field_twin(dyn, t, zz, theta, xp))(z)
        fs.append(f)
        if eps is None:
            trs.append(xp.trace(J))
            frobs.append(xp.sum(J * J))
        else:
            Je = xp.dot(J, eps[s])
            trs.append(xp.dot(eps[s], Je))
            frobs.append(xp.sum(Je * Je))
        kins.append(xp.sum(f * f))
    parts = [xp.concatenate(fs), -xp.stack(trs)]
    if dyn.kinetic:
        parts.append(xp.stack(kins))
    if dyn.frobenius:
        parts.append(xp.stack(frobs))
    return xp.concatenate(parts)
