"""2-D targets and the planar-flow baseline (Rezende & Mohamed 2015).

Energies U(z) of Rezende & Mohamed's Table 1 (target p ∝ exp(−U)), each with its gradient.  U2 and U3 do
not confine z1 (they are improper on the plane); like most re-implementations we confine them with a
broad Gaussian factor exp(−z1²/(2·σ²)), σ = 2.5 (so that KL(q‖p) and log Z are finite).

Data sets for maximum likelihood (Chen et al. Fig. 5): two moons and two circles, drawn from a seed.
"""

from __future__ import annotations

import math

import numpy as np

from .fields import as_generator

_CONFINE = 2.5


def _logsumexp2(a, b):
    m = np.maximum(a, b)
    ea, eb = np.exp(a - m), np.exp(b - m)
    return m + np.log(ea + eb), ea / (ea + eb), eb / (ea + eb)


def energy_u1(z):
    """Ring with two lobes: 0.5((‖z‖−2)/0.4)² − log(e^{−0.5((z1−2)/0.6)²} + e^{−0.5((z1+2)/0.6)²})."""
    z1, z2 = z[:, 0], z[:, 1]
    r = np.sqrt(z1 * z1 + z2 * z2)
    rs = np.maximum(r, 1e-12)
    a = -0.5 * ((z1 - 2.0) / 0.6) ** 2
    b = -0.5 * ((z1 + 2.0) / 0.6) ** 2
    lse, wa, wb = _logsumexp2(a, b)
    U = 0.5 * ((r - 2.0) / 0.4) ** 2 - lse
    dr = (r - 2.0) / 0.16
    g = np.empty_like(z)
    g[:, 0] = dr * z1 / rs - (wa * (-(z1 - 2.0) / 0.36) + wb * (-(z1 + 2.0) / 0.36))
    g[:, 1] = dr * z2 / rs
    return U, g


def _w1(z1):
    return np.sin(2.0 * math.pi * z1 / 4.0), (2.0 * math.pi / 4.0) * np.cos(2.0 * math.pi * z1 / 4.0)


def energy_u2(z):
    """Sine valley 0.5((z2 − w1(z1))/0.4)², confined in z1."""
    z1, z2 = z[:, 0], z[:, 1]
    w1, dw1 = _w1(z1)
    d = (z2 - w1) / 0.4
    U = 0.5 * d * d + 0.5 * (z1 / _CONFINE) ** 2
    g = np.empty_like(z)
    g[:, 0] = -d / 0.4 * dw1 + z1 / _CONFINE**2
    g[:, 1] = d / 0.4
    return U, g


def energy_u3(z):
    """Two sine valleys −log(e^{−0.5((z2−w1)/0.35)²} + e^{−0.5((z2−w1+w2)/0.35)²}), confined in z1."""
    z1, z2 = z[:, 0], z[:, 1]
    w1, dw1 = _w1(z1)
    w2 = 3.0 * np.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    dw2 = -w2 * (z1 - 1.0) / 0.36
    da = (z2 - w1) / 0.35
    db = (z2 - w1 + w2) / 0.35
    lse, wa, wb = _logsumexp2(-0.5 * da * da, -0.5 * db * db)
    U = -lse + 0.5 * (z1 / _CONFINE) ** 2
    g = np.empty_like(z)
    g[:, 0] = wa * da / 0.35 * (-dw1) + wb * db / 0.35 * (-dw1 + dw2) + z1 / _CONFINE**2
    g[:, 1] = wa * da / 0.35 + wb * db / 0.35
    return U, g


ENERGIES = {"u1": energy_u1, "u2": energy_u2, "u3": energy_u3}


def log_partition(energy, lim=10.0, n=500):
    """log ∫ exp(−U) over [−lim, lim]² by the midpoint rule (the targets' mass lies well inside)."""
    h = 2.0 * lim / n
    xs = -lim + h * (np.arange(n) + 0.5)
    X, Y = np.meshgrid(xs, xs)
    U, _ = energy(np.stack([X.ravel(), Y.ravel()], axis=1))
    m = np.min(U)
    return float(-m + np.log(np.sum(np.exp(-(U - m))) * h * h))


def two_moons(n, rng, noise=0.1):
    """n points of two interleaved half circles (sklearn's make_moons recipe), scaled ×2 and centred."""
    rng = as_generator(rng)
    n1 = n // 2
    n2 = n - n1
    a1 = rng.uniform(0.0, math.pi, n1)
    a2 = rng.uniform(0.0, math.pi, n2)
    x = np.concatenate([np.stack([np.cos(a1), np.sin(a1)], 1), np.stack([1.0 - np.cos(a2), 0.5 - np.sin(a2)], 1)])
    x += noise * rng.standard_normal(x.shape)
    x = 2.0 * (x - np.array([0.5, 0.25]))
    return x[rng.permutation(n)]


def two_circles(n, rng, noise=0.08):
    """n points on two concentric circles (radii 1 and 2, scaled ×1.5) with Gaussian noise."""
    rng = as_generator(rng)
    n1 = n // 2
    ang = rng.uniform(0.0, 2.0 * math.pi, n)
    r = np.where(np.arange(n) < n1, 1.0, 2.0)
    x = np.stack([r * np.cos(ang), r * np.sin(ang)], 1) + noise * rng.standard_normal((n, 2))
    return 1.5 * x[rng.permutation(n)]


DATASETS = {"moons": two_moons, "circles": two_circles}


# ----------------------------------------------------------------------------------------------------------
# Planar flows


class PlanarFlow:
    """K planar layers x ← x + û h(wᵀx + b), h = tanh, with û = u + (m(wᵀu) − wᵀu) w/‖w‖², m(a) = −1 +
    softplus(a) (Rezende & Mohamed's invertibility reparameterisation).  Parameters: [u (D), w (D), b] per
    layer."""

    def __init__(self, dim, n_layers):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers: expected a positive int, got {n_layers!r}")
        self.dim = dim
        self.n_layers = n_layers

    @property
    def n_params(self):
        return self.n_layers * (2 * self.dim + 1)

    def init_params(self, rng):
        """Near-identity shears: w ~ N(0, 0.5²), u = log(e − 1)·w/‖w‖² + 0.01·noise, so that m(wᵀu) ≈ 0 and
        û is the small part of u orthogonal to w (det = 1 + h'·wᵀû ≈ 1); b = 0.  (Small random u and w
        instead give wᵀû = m(0) = −0.31 in every layer, a contraction that compounds over K layers.)"""
        rng = as_generator(rng)
        D = self.dim
        theta = np.zeros(self.n_params)
        for k in range(self.n_layers):
            o = k * (2 * D + 1)
            w = 0.5 * rng.standard_normal(D)
            theta[o + D : o + 2 * D] = w
            theta[o : o + D] = math.log(math.e - 1.0) * w / float(w @ w) + 0.01 * rng.standard_normal(D)
        return theta

    def _layers(self, theta):
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta: expected shape ({self.n_params},), got {theta.shape}")
        D = self.dim
        out = []
        for k in range(self.n_layers):
            o = k * (2 * D + 1)
            u, w, b = theta[o : o + D], theta[o + D : o + 2 * D], theta[o + 2 * D]
            alpha = float(w @ u)
            s = float(w @ w) + 1e-12
            m = -1.0 + np.logaddexp(0.0, alpha)
            beta = (m - alpha) / s
            out.append((u, w, b, u + beta * w, alpha, s, m, beta))
        return out

    def forward(self, z0, theta):
        """(x_K (B, D), Σ log|det|, per-layer cache)."""
        x = np.array(z0, dtype=np.float64)
        logdet = np.zeros(x.shape[0])
        cache = []
        for _u, w, b, uh, *_rest in self._layers(theta):
            a = x @ w + b
            h = np.tanh(a)
            hp = 1.0 - h * h
            det = 1.0 + hp * float(w @ uh)
            cache.append((x.copy(), h, hp, det))
            x = x + np.outer(h, uh)
            logdet += np.log(np.abs(det))
        return x, logdet, cache

    def sample(self, n, theta, rng):
        """(x, log q(x)) for n draws."""
        rng = as_generator(rng)
        z0 = rng.standard_normal((int(n), self.dim))
        x, logdet, _ = self.forward(z0, theta)
        return x, -0.5 * np.sum(z0 * z0, 1) - 0.5 * self.dim * math.log(2 * math.pi) - logdet

    def kl_loss_and_grad(self, energy, theta, n, rng):
        """E_q[log q + U] over n draws and its reparameterised gradient (hand-written backward pass)."""
        rng = as_generator(rng)
        z0 = rng.standard_normal((int(n), self.dim))
        B = z0.shape[0]
        layers = self._layers(theta)
        x, logdet, cache = self.forward(z0, theta)
        U, gU = energy(x)
        logq = -0.5 * np.sum(z0 * z0, 1) - 0.5 * self.dim * math.log(2 * math.pi) - logdet
        loss = float(np.mean(logq + U))
        grad = np.zeros(self.n_params)
        gx = gU / B
        D = self.dim
        for k in range(self.n_layers - 1, -1, -1):
            u, w, b, uh, alpha, s, m, beta = layers[k]
            xp, h, hp, det = cache[k]
            c = float(w @ uh)
            gdet = -1.0 / (B * det)  # d(−log|det|)/d det, per sample
            hpp = -2.0 * h * hp
            ga = (gx @ uh) * hp + gdet * hpp * c
            g_uh = gx.T @ h + np.sum(gdet * hp) * w
            g_w = xp.T @ ga + np.sum(gdet * hp) * uh
            g_b = float(np.sum(ga))
            gx = gx + np.outer(ga, w)
            # û = u + β(α, s) w with α = wᵀu, s = ‖w‖²
            sig = 1.0 / (1.0 + math.exp(-alpha))
            gw_uh = float(g_uh @ w)
            g_alpha = gw_uh * (sig - 1.0) / s
            g_s = -gw_uh * (m - alpha) / (s * s)
            g_u = g_uh + g_alpha * w
            g_w = g_w + beta * g_uh + g_alpha * u + 2.0 * g_s * w
            o = k * (2 * D + 1)
            grad[o : o + D] = g_u
            grad[o + D : o + 2 * D] = g_w
            grad[o + 2 * D] = g_b
        return loss, grad
