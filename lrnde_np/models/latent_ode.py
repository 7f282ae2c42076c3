"""Latent ODEs for irregularly sampled time series (Chen et al., 2018, §5; Rubanova et al., 2019), with the
local and global regularizers of the Locally Regularized paper, and an RNN baseline.

Generative model: z0 ~ N(0, I); dz/dt = f(z; θ_f) (an :class:`~lrnde_np.nn.MLP`); x(t_i) ~ N(g(z(t_i)), s²)
with a decoder MLP g and a fixed observation noise s.  Recognition: a recurrent cell (plain tanh RNN as
Chen's spiral experiment, or the masked :class:`~lrnde_np.nn.rnn.LatentGRUCell` of the PhysioNet model) runs
**backwards in time** over the minibatch's union of observation times.  Its input at time t_k is
``[x·m, m, Δt]`` — the values with missing entries zeroed, the mask, and the gap to the series' previously
processed (later) observation — and a series with nothing observed at t_k keeps its state.  The final state
goes through ``rec_out`` (an MLP) to q(z0|x) = N(μ, exp(logvar)), sampled as z0 = μ + exp(logvar/2)·ε with ε
drawn by the caller from a seeded generator.  The latent ODE is solved once for the whole minibatch, saved at
the union of the observation times, by :class:`~lrnde_np.models.node.NeuralODE` (so every regularizer and
adjoint of the library applies unchanged).

Loss (per observed value, so that λ does not scale with the series length):

    loss = −[ Σ_{b,i,d observed} log N(x | g(z_b(t_i)), s²) − w_KL Σ_b KL(q(z0_b|x_b) ‖ N(0, I)) ] / N_obs
           + λ·R

with the paper's KL weight schedule ``w_KL = max(0, 1 − 0.99^(iter − 100))`` (:func:`kl_weight`).

Gradient: decoder MLP VJP → the NeuralODE's adjoint (discrete / interpolating / backsolve; the global
regularizer's E_j cotangents ride on the discrete one) → reparameterization and KL by hand → ``rec_out`` MLP
VJP → the cell VJPs back through the recognition sweep.  No autograd at run time.

Parameter vector: [cell | rec_out | field | decoder].

Poisson process (``poisson=True``, Chen §5.1): the observation times of each series are events of an
inhomogeneous Poisson process with intensity λ(z(t)) = softplus(w·z + c); the log-likelihood
Σ_events log λ(z(t_i)) − ∫_{t0}^{t_end} λ(z(t)) dt is added (per observed value, like the rest), its integral
Λ carried as one extra ODE state per series by :class:`PoissonField` (the field block then holds [MLP | w | c]).

:class:`RNNBaseline` is Chen's RNN comparison: an RNN over the observations in time order whose input is
``[x_prev, Δt, 1]`` (the previous observation, the gap to the time being predicted, and a flag that makes the
cell update), trained by teacher forcing on the next observation and extrapolating autoregressively.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..data_timeseries import spiral_timeseries, split_indices
from ..nn import MLP
from ..nn.rnn import LatentGRUCell, RNNCell, run_backwards, run_backwards_vjp
from .base import Evaluation, StepOutcome, check_generator
from .node import ForwardPass, NeuralODE, Regularization

ENCODERS = ("rnn", "gru")
LOG_2PI = math.log(2.0 * math.pi)


def kl_weight(iteration, offset=100, rate=0.99):
    """The paper's KL annealing ``max(0, 1 − rate^(iteration − offset))`` (0 for the first ``offset`` steps)."""
    return max(0.0, 1.0 - rate ** (float(iteration) - offset))


def recognition_inputs(t, values, mask, t_end=None):
    """(T, B, 2D+1) recognition inputs ``[x·m, m, Δt]`` from values and mask (B, T, D) on the times t (T,).

    Δt at an observed time is the gap to the series' next later observation (to ``t_end``, default t[-1], for
    its last one), 0 where nothing is observed.
    """
    t = np.asarray(t, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if values.ndim != 3 or values.shape != mask.shape or values.shape[1] != t.size:
        raise ValueError(
            f"values/mask: expected equal (batch, {t.size}, features) arrays, got {values.shape} and {mask.shape}"
        )
    B, T, D = values.shape
    out = np.zeros((T, B, 2 * D + 1))
    out[:, :, :D] = np.transpose(values * mask, (1, 0, 2))
    out[:, :, D : 2 * D] = np.transpose(mask, (1, 0, 2))
    last = np.full(B, t[-1] if t_end is None else float(t_end))
    for k in range(T - 1, -1, -1):
        obs = mask[:, k].any(axis=1)
        out[k, :, 2 * D] = np.where(obs, last - t[k], 0.0)
        last = np.where(obs, t[k], last)
    return out


def _check_series(t, values, mask):
    t = np.ascontiguousarray(t, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if t.ndim != 1 or t.size < 1 or np.any(np.diff(t) <= 0):
        raise ValueError("t: expected a strictly increasing 1-D array of observation times")
    if values.ndim != 3 or values.shape[1] != t.size:
        raise ValueError(f"values: expected shape (batch, {t.size}, features), got {values.shape}")
    if mask.shape != values.shape:
        raise ValueError(f"mask: shape {mask.shape} differs from values' {values.shape}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask: entries must be 0 or 1")
    return t, np.where(mask > 0, values, 0.0), mask


class _SolverNODE(NeuralODE):
    """NeuralODE whose solves may use a fixed step (``fixed_dt``): a frozen step sequence for exact checks."""

    fixed_dt: float | None = None

    def solve(self, z0, p, saveat=None, t_span=None, **options):
        if self.fixed_dt is not None:
            options.setdefault("dt", self.fixed_dt)
            options.setdefault("adaptive", False)
        return super().solve(z0, p, saveat=saveat, t_span=t_span, **options)


@dataclass
class LatentStep:
    """One minibatch: the loss and its parts, the gradient, and the work done."""

    loss: float
    neg_loglik: float  # −Σ log-likelihood / N_obs
    kl: float  # Σ_b KL_b / N_obs (unweighted)
    mse: float  # masked mean squared reconstruction error
    reg_value: float
    grad: np.ndarray
    nfe_forward: int
    nfe_reg: int
    nfe_backward: int
    t_reg: float
    forward_pass: ForwardPass | None = None
    poisson_nll: float = 0.0  # −(Σ_events log λ − ∫λ dt) / N_obs (Poisson models)


class LatentODE:
    """The latent ODE model; see the module docstring.

    obs_dim : D, features per observation.  latent_dim : L.
    encoder : "rnn" (tanh RNNCell with ``rec_hidden`` units, rec_out = Dense(hidden → 2L)) or "gru"
        (LatentGRUCell(2D+1, rec_hidden, rec_latent), rec_out = Dense(2·rec_latent → rec_latent, tanh) →
        Dense(rec_latent → 2L), the paper's rec_to_gen).
    field_widths / field_activation / field_final : the dynamics MLP (default (L, 20, L), tanh).
    dec_hidden : decoder MLP (L, dec_hidden, D) with tanh.
    obs_std : s of the Gaussian likelihood.
    rtol, atol, method, adjoint : the latent solve; ``fixed_dt`` fixes its step (checks).
    """

    def __init__(
        self,
        obs_dim,
        latent_dim=4,
        encoder="rnn",
        rec_hidden=25,
        rec_latent=None,
        field_widths=None,
        field_activation="tanh",
        field_final=None,
        dec_hidden=20,
        obs_std=0.1,
        rtol=1e-5,
        atol=1e-7,
        method="tsit5",
        adjoint="discrete",
        fixed_dt=None,
        poisson=False,
    ):
        if encoder not in ENCODERS:
            raise ValueError(f"encoder: expected one of {ENCODERS}, got {encoder!r}")
        if not (isinstance(obs_std, (int, float)) and obs_std > 0 and math.isfinite(obs_std)):
            raise ValueError(f"obs_std: expected a positive number, got {obs_std!r}")
        self.obs_dim, self.latent_dim = int(obs_dim), int(latent_dim)
        if self.obs_dim < 1 or self.latent_dim < 1:
            raise ValueError("obs_dim, latent_dim: expected positive ints")
        D, L = self.obs_dim, self.latent_dim
        self.encoder = encoder
        if encoder == "rnn":
            self.cell = RNNCell(2 * D + 1, rec_hidden, mask_columns=(D, 2 * D))
            self.rec_out = MLP((self.cell.state_dim, 2 * L), ())
        else:
            rl = int(rec_latent or L)
            self.cell = LatentGRUCell(2 * D + 1, rec_hidden, rl, mask_columns=(D, 2 * D))
            self.rec_out = MLP((2 * rl, rl, 2 * L), "tanh")
        widths = tuple(field_widths) if field_widths is not None else (L, 20, L)
        if widths[0] != L or widths[-1] != L:
            raise ValueError(f"field_widths: must start and end with latent_dim={L}, got {widths}")
        self.field = MLP(widths, field_activation, final_activation=field_final)
        self.decoder = MLP((L, int(dec_hidden), D), "tanh")
        self.obs_std = float(obs_std)
        self.poisson = bool(poisson)
        #: The solved field: the dynamics MLP, or with ``poisson`` the MLP plus the intensity integral.
        self.ode_field = PoissonField(self.field, L) if self.poisson else self.field
        self.node = _SolverNODE(self.ode_field, (0.0, 1.0), rtol, atol, method, adjoint)
        self.node.fixed_dt = None if fixed_dt is None else float(fixed_dt)
        self._sizes = (self.cell.n_params, self.rec_out.n_params, self.ode_field.n_params, self.decoder.n_params)

    @property
    def n_params(self) -> int:
        return int(sum(self._sizes))

    def split(self, p):
        """Views (cell, rec_out, field, decoder) into the flat parameter vector."""
        if np.shape(p) != (self.n_params,):
            raise ValueError(f"p: expected shape ({self.n_params},), got {np.shape(p)}")
        out, o = [], 0
        for n in self._sizes:
            out.append(p[o : o + n])
            o += n
        return tuple(out)

    def init_params(self, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        p = np.zeros(self.n_params)
        for view, part in zip(self.split(p), (self.cell, self.rec_out, self.ode_field, self.decoder), strict=True):
            view[:] = part.init_params(rng)
        return p

    # -- pieces ------------------------------------------------------------------------------------------

    def encode(self, p, t, values, mask):
        """(μ, logvar) of q(z0|x), each (B, L), and what the backward pass needs."""
        p_cell, p_rec, _, _ = self.split(p)
        inputs = recognition_inputs(t, values, mask)
        h, tapes = run_backwards(self.cell, inputs, p_cell)
        stats = self.rec_out.forward(h, p_rec)
        L = self.latent_dim
        return stats[:, :L], stats[:, L:], (h, tapes)

    def _solve_span(self, t, t0):
        t0 = float(t[0]) if t0 is None else float(t0)
        if t0 > t[0]:
            raise ValueError(f"t0: z0's time {t0} lies after the first observation time {t[0]}")
        t1 = float(t[-1])
        if t1 == t0:
            raise ValueError("t: need observations after t0")
        self.node.t_span = (t0, t1)
        return t0, t1

    # -- training ----------------------------------------------------------------------------------------

    def loss_and_grad(
        self, p, t, values, mask, eps, regularization=None, lam=0.0, kl_w=1.0, rng=None, t0=None
    ) -> LatentStep:
        """The negative ELBO per observed value (+ λ·R) and its exact gradient (see the module docstring).

        t (T,) the union of the minibatch's observation times; values, mask (B, T, D); eps (B, L) the
        reparameterization noise; rng draws t_reg for the local regularizers; t0 the time of z0 (default t[0]).
        """
        t, values, mask = _check_series(t, values, mask)
        regularization = Regularization() if regularization is None else regularization
        B, T, D = values.shape
        L = self.latent_dim
        eps = np.asarray(eps, dtype=np.float64)
        if eps.shape != (B, L):
            raise ValueError(f"eps: expected shape ({B}, {L}), got {eps.shape}")
        n_obs = float(mask.sum())
        if n_obs == 0:
            raise ValueError("mask: no observed values in the minibatch")
        p = np.ascontiguousarray(p, dtype=np.float64)
        p_cell, p_rec, p_field, p_dec = self.split(p)
        mu, logvar, (h, tapes) = self.encode(p, t, values, mask)
        sigma = np.exp(0.5 * logvar)
        z0 = mu + sigma * eps
        self._solve_span(t, t0)
        state0 = np.concatenate([z0.ravel(), np.zeros(B)]) if self.poisson else np.ascontiguousarray(z0).ravel()
        fp = self.node.forward(state0, np.ascontiguousarray(p_field), regularization, rng, saveat=t)
        Z = np.ascontiguousarray(fp.outputs[:, : B * L]).reshape(T * B, L)  # time-major: row k·B + b
        xhat = self.decoder.forward(Z, p_dec).reshape(T, B, D)
        x = np.transpose(values, (1, 0, 2))
        m = np.transpose(mask, (1, 0, 2))
        resid = m * (x - xhat)
        s2 = self.obs_std**2
        loglik = -0.5 * float(np.sum(resid * resid)) / s2 - n_obs * (math.log(self.obs_std) + 0.5 * LOG_2PI)
        kl_b = 0.5 * np.sum(mu * mu + sigma * sigma - 1.0 - logvar, axis=1)
        kl = float(kl_b.sum())
        task_loss = -(loglik - kl_w * kl) / n_obs
        poisson_nll, out_bar = 0.0, np.zeros_like(fp.outputs)
        if self.poisson:  # events: the series' observation times; Λ(t_end) = ∫ λ dt from t0
            events = m.any(axis=2).astype(np.float64)  # (T, B)
            lam_ev, slope = self.ode_field.intensity(Z.reshape(T, B, L), p_field)
            integral = fp.outputs[-1, B * L :]
            poisson_ll = float(np.sum(events * np.log(lam_ev))) - float(np.sum(integral))
            poisson_nll = -poisson_ll / n_obs
            task_loss += poisson_nll
            coef = -events * slope / lam_ev / n_obs  # d(−ll/N)/ds at each event
            nz = self.field.n_params
            w = p_field[nz : nz + L]
            Zev_bar = coef[:, :, None] * w  # (T, B, L)
            out_bar[:, : B * L] += Zev_bar.reshape(T, B * L)
            out_bar[-1, B * L :] += 1.0 / n_obs
        # backward
        xhat_bar = -resid / s2 / n_obs  # d(−loglik/N)/dx̂ = −m(x − x̂)/(s² N)
        Z_bar, g_dec = self.decoder.vjp_py(Z, p_dec, xhat_bar.reshape(T * B, D))
        out_bar[:, : B * L] += Z_bar.reshape(T, B * L)
        z0_bar, g_field, nfe_back = self.node.backward(fp, out_bar, lam)
        z0_bar = z0_bar[: B * L].reshape(B, L)
        if self.poisson:
            g_field[nz : nz + L] += np.einsum("tb,tbl->l", coef, Z.reshape(T, B, L))
            g_field[nz + L] += float(np.sum(coef))
        mu_bar = z0_bar + kl_w * mu / n_obs
        logvar_bar = z0_bar * eps * 0.5 * sigma + kl_w * 0.5 * (sigma * sigma - 1.0) / n_obs
        h_bar, g_rec = self.rec_out.vjp_py(h, p_rec, np.concatenate([mu_bar, logvar_bar], axis=1))
        _, _, g_cell = run_backwards_vjp(self.cell, tapes, h_bar)
        grad = np.concatenate([g_cell, g_rec, g_field, g_dec])
        return LatentStep(
            loss=task_loss + lam * fp.reg_value,
            neg_loglik=-loglik / n_obs,
            kl=kl / n_obs,
            mse=float(np.sum(resid * resid)) / n_obs,
            reg_value=fp.reg_value,
            grad=grad,
            poisson_nll=poisson_nll,
            nfe_forward=fp.sol.nfe,
            nfe_reg=fp.nfe_reg,
            nfe_backward=nfe_back,
            t_reg=fp.t_reg,
            forward_pass=fp,
        )

    # -- prediction ----------------------------------------------------------------------------------------

    def predict(self, p, t, values, mask, t_pred, t0=None, eps=None):
        """Decoded trajectories at ``t_pred`` (sorted, starting at or after t0) from the observations; z0 = μ
        unless ``eps`` is given.  Returns ((len(t_pred), B, D), nfe)."""
        t, values, mask = _check_series(t, values, mask)
        p = np.ascontiguousarray(p, dtype=np.float64)
        _, _, p_field, p_dec = self.split(p)
        mu, logvar, _ = self.encode(p, t, values, mask)
        z0 = mu if eps is None else mu + np.exp(0.5 * logvar) * np.asarray(eps)
        t_pred = np.ascontiguousarray(t_pred, dtype=np.float64)
        t0 = float(t[0]) if t0 is None else float(t0)
        B, L = z0.shape
        state0 = np.concatenate([z0.ravel(), np.zeros(B)]) if self.poisson else np.ascontiguousarray(z0).ravel()
        sol = self.node.solve(state0, np.ascontiguousarray(p_field), saveat=t_pred, t_span=(t0, float(t_pred[-1])))
        xhat = self.decoder.forward(np.ascontiguousarray(sol.y[:, : B * L]).reshape(-1, L), p_dec)
        return xhat.reshape(t_pred.size, B, self.obs_dim), sol.nfe


class RNNBaseline:
    """Chen's RNN baseline on irregular observations (time gaps as inputs); see the module docstring.

    Input at each step ``[x_prev, Δt, flag]`` (width D + 2): the previous observation (unobserved entries of a
    partly observed one filled with the prediction), the gap from it to the time being predicted, and the
    flag that makes the series' state update (the cell's mask block; series with nothing observed at that
    time keep their state).  Loss: the mean squared error of the one-step-ahead predictions over the observed
    values.  ``cell`` is "rnn" (tanh, ``hidden`` units) or "gru" (LatentGRUCell with state 2·(hidden // 2)).
    """

    def __init__(self, obs_dim, hidden=25, dec_hidden=20, cell="rnn"):
        if cell not in ENCODERS:
            raise ValueError(f"cell: expected one of {ENCODERS}, got {cell!r}")
        self.obs_dim = int(obs_dim)
        if self.obs_dim < 1:
            raise ValueError(f"obs_dim: expected a positive int, got {obs_dim!r}")
        D = self.obs_dim
        if cell == "rnn":
            self.cell = RNNCell(D + 2, hidden, mask_columns=(D + 1, D + 2))
        else:
            self.cell = LatentGRUCell(D + 2, hidden, max(1, int(hidden) // 2), mask_columns=(D + 1, D + 2))
        self.decoder = MLP((self.cell.state_dim, int(dec_hidden), D), "tanh")
        self._sizes = (self.cell.n_params, self.decoder.n_params)

    @property
    def n_params(self) -> int:
        return int(sum(self._sizes))

    def split(self, p):
        if np.shape(p) != (self.n_params,):
            raise ValueError(f"p: expected shape ({self.n_params},), got {np.shape(p)}")
        return p[: self._sizes[0]], p[self._sizes[0] :]

    def init_params(self, rng):
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        p = np.zeros(self.n_params)
        pc, pd = self.split(p)
        pc[:] = self.cell.init_params(rng)
        pd[:] = self.decoder.init_params(rng)
        return p

    def _run(self, p, t, values, mask, t0, keep):
        pc, pd = self.split(p)
        B, T, D = values.shape
        h = self.cell.initial_state(B)
        x_prev = np.zeros((B, D))
        t_prev = np.full(B, float(t[0]) if t0 is None else float(t0))
        sq, tape_list = 0.0, []
        for k in range(T):
            m = mask[:, k]
            obs = m.any(axis=1)
            inp = np.concatenate([x_prev, (t[k] - t_prev)[:, None], obs[:, None].astype(np.float64)], axis=1)
            h, tape = self.cell.forward(inp, h, pc)
            xhat = self.decoder.forward(h, pd)
            resid = m * (values[:, k] - xhat)
            sq += float(np.sum(resid * resid))
            if keep:
                tape_list.append((tape, h, resid))
            x_prev = np.where(obs[:, None], m * values[:, k] + (1.0 - m) * xhat, x_prev)
            t_prev = np.where(obs, t[k], t_prev)
        return sq, tape_list, (h, x_prev, t_prev)

    def loss_and_grad(self, p, t, values, mask, t0=None):
        """(MSE of the one-step predictions over the observed values, its gradient).  The fill-in of
        unobserved entries of x_prev by the prediction is not differentiated (teacher forcing)."""
        t, values, mask = _check_series(t, values, mask)
        n_obs = float(mask.sum())
        if n_obs == 0:
            raise ValueError("mask: no observed values in the minibatch")
        p = np.ascontiguousarray(p, dtype=np.float64)
        pc, pd = self.split(p)
        sq, tapes, _ = self._run(p, t, values, mask, t0, keep=True)
        g_cell = np.zeros(pc.size)
        g_dec = np.zeros(pd.size)
        h_bar = np.zeros((values.shape[0], self.cell.state_dim))
        for tape, h, resid in reversed(tapes):
            hb, gd = self.decoder.vjp_py(h, pd, -2.0 * resid / n_obs)
            g_dec += gd
            _, h_bar, gc = self.cell.vjp(tape, h_bar + hb)
            g_cell += gc
        return sq / n_obs, np.concatenate([g_cell, g_dec])

    def predict(self, p, t, values, mask, t_future, t0=None):
        """Autoregressive predictions (len(t_future), B, D) at the sorted times ``t_future`` after the
        observations."""
        t, values, mask = _check_series(t, values, mask)
        p = np.ascontiguousarray(p, dtype=np.float64)
        pc, pd = self.split(p)
        _, _, (h, x_prev, t_prev) = self._run(p, t, values, mask, t0, keep=False)
        flag = np.ones((values.shape[0], 1))
        out = []
        for tau in np.asarray(t_future, dtype=np.float64):
            inp = np.concatenate([x_prev, (tau - t_prev)[:, None], flag], axis=1)
            h, _ = self.cell.forward(inp, h, pc)
            x_prev = self.decoder.forward(h, pd)
            t_prev = np.full_like(t_prev, tau)
            out.append(x_prev)
        return np.stack(out) if out else np.zeros((0,) + values.shape[::2])


# ------------------------------------------------------------------------------------------------------------
# Tasks for the training loop and ``lrnde compare``.


class _SeriesTask:
    """What the latent-ODE tasks share: the data split, minibatches with their reparameterization noise and
    KL weight, the training step, evaluation and timing.

    The KL weight follows the training iteration, counted by ``sample_batch`` (the training loop calls it once
    per iteration) and reset by ``init_params``; a run resumed from a checkpoint restarts this count.
    """

    name = "latent"
    has_accuracy = False
    kl_offset = 100

    def _setup(self, data, train_idx, val_idx, test_idx, batch_size, window, t0):
        self.data = data
        self.train_idx, self.val_idx, self.test_idx = (np.asarray(i) for i in (train_idx, val_idx, test_idx))
        if self.train_idx.size == 0 or self.test_idx.size == 0:
            raise ValueError("data: the split leaves no training or no test series")
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or not 1 <= batch_size <= self.train_idx.size
        ):
            raise ValueError(f"batch_size must be an integer in 1…{self.train_idx.size}, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.window = window
        self.t0 = float(t0)
        self.iteration = 0
        self.last_evaluation: dict = {}

    def config(self) -> dict:
        return dict(self._config)

    @property
    def n_params(self) -> int:
        return self.model.n_params

    def init_params(self, rng):
        self.iteration = 0
        return self.model.init_params(check_generator(rng))

    def sample_batch(self, rng):
        rng = check_generator(rng)
        idx = np.sort(rng.choice(self.train_idx, self.batch_size, replace=False))
        eps = rng.standard_normal((self.batch_size, self.model.latent_dim))
        w = kl_weight(self.iteration, self.kl_offset)
        self.iteration += 1
        return idx, eps, w

    def step(self, params, batch, regularization: Regularization, lam, rng):
        idx, eps, w = batch
        t, values, mask = self.data.batch(idx, window=self.window)
        st = self.model.loss_and_grad(params, t, values, mask, eps, regularization, lam, w, rng, t0=self.t0)
        return StepOutcome(
            loss=st.loss,
            task_loss=st.loss - lam * st.reg_value,
            reg_value=st.reg_value,
            accuracy=float("nan"),
            grad=st.grad,
            nfe_forward=st.nfe_forward,
            nfe_reg=st.nfe_reg,
            nfe_backward=st.nfe_backward,
            t_reg=st.t_reg,
        )

    def split_indices(self, split):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
        idx = {"train": self.train_idx, "val": self.val_idx, "test": self.test_idx}[split]
        if idx.size == 0:
            raise ValueError(f"split: the {split!r} split is empty")
        return idx


class LatentSpiralTask(_SeriesTask):
    """Chen's spirals with a latent ODE: train on ``n_obs`` irregular observations in the first 100 times of
    each training series; test = prediction from the held-out series' observations over all 200 times.

    ``test_loss`` is the extrapolation MSE against the noise-free spiral over the 100 times after the
    observation window (Chen's Table 2 reports its square root); ``last_evaluation`` also holds the
    reconstruction (interpolation) RMSE.  Split: a seeded 64 % / 16 % / 20 % train / validation / test cut
    of the series (the validation part picks λ; never the test part).
    """

    name = "latent-spiral"

    def __init__(
        self,
        n_obs=50,
        n_spirals=1000,
        data_seed=0,
        latent_dim=4,
        rec_hidden=25,
        field_hidden=20,
        dec_hidden=20,
        obs_std=0.3,
        rtol=1e-5,
        atol=1e-7,
        adjoint="discrete",
        batch_size=100,
        method="tsit5",
        encoder="rnn",
        noise_std=0.3,
        field_layers=2,
    ):
        data = spiral_timeseries(n_spirals, n_obs=n_obs, seed=data_seed, noise_std=noise_std)
        tr, va, te = split_indices(len(data), (0.64, 0.16, 0.20), data_seed + 1)
        self.model = LatentODE(
            2,
            latent_dim,
            encoder=encoder,
            rec_hidden=rec_hidden,
            field_widths=(latent_dim,) + (field_hidden,) * int(field_layers) + (latent_dim,),
            dec_hidden=dec_hidden,
            obs_std=obs_std,
            rtol=rtol,
            atol=atol,
            method=method,
            adjoint=adjoint,
        )
        self.n_window = int(data.info["n_window"])
        self._setup(data, tr, va, te, batch_size, self.n_window, 0.0)
        self._config = dict(
            task=self.name,
            n_obs=int(n_obs),
            n_spirals=int(n_spirals),
            data_seed=int(data_seed),
            latent_dim=int(latent_dim),
            rec_hidden=int(rec_hidden),
            field_hidden=int(field_hidden),
            dec_hidden=int(dec_hidden),
            obs_std=float(obs_std),
            rtol=float(rtol),
            atol=float(atol),
            adjoint=adjoint,
            batch_size=self.batch_size,
            method=method,
            encoder=encoder,
            noise_std=float(noise_std),
            field_layers=int(field_layers),
        )

    def predict(self, params, idx):
        """Mean predictions (200, B, 2) for the series ``idx`` from their observations; and the NFE."""
        t, values, mask = self.data.batch(idx, window=self.n_window)
        return self.model.predict(params, t, values, mask, self.data.t, t0=self.t0)

    def prediction_call(self, params):
        idx = self.test_idx
        return lambda: self.predict(params, idx)

    def evaluate(self, params, repeats=3, split="test"):
        idx = self.split_indices(split)
        times = []
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            pred, nfe = self.predict(params, idx)
            times.append(time.perf_counter() - start)
        truth = np.transpose(self.data.truth[idx], (1, 0, 2))
        w = self.n_window
        mse_ex = float(np.mean((pred[w:] - truth[w:]) ** 2))
        mse_in = float(np.mean((pred[:w] - truth[:w]) ** 2))
        self.last_evaluation = dict(
            split=split, rmse_extrapolation=math.sqrt(mse_ex), rmse_interpolation=math.sqrt(mse_in), nfe=float(nfe)
        )
        return Evaluation(
            test_loss=mse_ex,
            test_accuracy=float("nan"),
            test_nfe=float(nfe),
            prediction_time=float(np.median(times)),
            n_batches=1,
        )


class RNNSpiralTask(LatentSpiralTask):
    """The RNN baseline on the same spirals, split and evaluation (the regularizer arguments are ignored)."""

    name = "rnn-spiral"

    def __init__(
        self, n_obs=50, n_spirals=1000, data_seed=0, hidden=25, dec_hidden=20, batch_size=100, cell="rnn", noise_std=0.3
    ):
        data = spiral_timeseries(n_spirals, n_obs=n_obs, seed=data_seed, noise_std=noise_std)
        tr, va, te = split_indices(len(data), (0.64, 0.16, 0.20), data_seed + 1)
        self.model = RNNBaseline(2, hidden, dec_hidden, cell)
        self.model.latent_dim = 1  # sample_batch draws reparameterization noise of this width (unused here)
        self.n_window = int(data.info["n_window"])
        self._setup(data, tr, va, te, batch_size, self.n_window, 0.0)
        self._config = dict(
            task=self.name,
            n_obs=int(n_obs),
            n_spirals=int(n_spirals),
            data_seed=int(data_seed),
            hidden=int(hidden),
            dec_hidden=int(dec_hidden),
            batch_size=self.batch_size,
            cell=cell,
            noise_std=float(noise_std),
        )

    def step(self, params, batch, regularization, lam, rng):
        idx, _, _ = batch
        t, values, mask = self.data.batch(idx, window=self.n_window)
        loss, grad = self.model.loss_and_grad(params, t, values, mask, t0=self.t0)
        return StepOutcome(
            loss=loss,
            task_loss=loss,
            reg_value=0.0,
            accuracy=float("nan"),
            grad=grad,
            nfe_forward=0,
            nfe_reg=0,
            nfe_backward=0,
        )

    def predict(self, params, idx):
        """(200, B, 2) with NaN in the observation window (the RNN does not reconstruct) and its
        autoregressive extrapolation over the 100 later times; NFE 0."""
        t, values, mask = self.data.batch(idx, window=self.n_window)
        w = self.n_window
        future = self.model.predict(params, t, values, mask, self.data.t[w:], t0=self.t0)
        pred = np.full((self.data.t.size, len(idx), 2), np.nan)
        pred[w:] = future
        return pred, 0

    def evaluate(self, params, repeats=3, split="test"):
        ev = super().evaluate(params, repeats, split)
        self.last_evaluation["rmse_interpolation"] = float("nan")
        return ev


class PhysioNetTask(_SeriesTask):
    """The Locally Regularized paper's PhysioNet latent ODE (interpolation): encoder LatentGRUCell(37, 40, 50)
    on inputs [x·m, m, Δt]; rec_to_gen Dense(100 → 50, tanh) → Dense(50 → 40) (μ, logvar of a 20-d z0);
    dynamics Dense(20 ↔ 40, tanh) × 8; decoder Dense(20 → dec_hidden, tanh) → Dense(→ 37); Gaussian
    likelihood with s = obs_std; an 80 : 20 seeded split of the patients (a further 20 % of the training
    patients are the validation split).  ``test_loss`` is the masked MSE of the reconstruction of the
    held-out patients' observed values (normalized units), as the paper's table.

    Differences from the paper (stated in the README): the dynamics MLP has no leading tanh on its input; the
    GRU updates the mean from the new mean half (see :mod:`lrnde_np.nn.rnn`).
    """

    name = "physionet"

    def __init__(
        self,
        directory,
        latent_dim=20,
        rec_hidden=40,
        rec_latent=50,
        field_hidden=40,
        dec_hidden=50,
        obs_std=0.01,
        rtol=1e-5,
        atol=1e-7,
        adjoint="interpolating",
        batch_size=64,
        method="tsit5",
        split_seed=0,
        resolution=1.0,
        max_files=None,
        eval_batch_size=256,
    ):
        from ..data_timeseries import load_physionet

        data = load_physionet(directory, resolution=resolution, max_files=max_files)
        train_all, test = split_indices(len(data), (0.8, 0.2), split_seed)
        n_val = int(round(0.2 * train_all.size))
        val, train = train_all[:n_val], train_all[n_val:]
        L = int(latent_dim)
        widths = (L,) + (int(field_hidden), L) * 4
        self.model = LatentODE(
            data.n_features,
            L,
            encoder="gru",
            rec_hidden=rec_hidden,
            rec_latent=rec_latent,
            field_widths=widths,
            field_final="tanh",
            dec_hidden=dec_hidden,
            obs_std=obs_std,
            rtol=rtol,
            atol=atol,
            method=method,
            adjoint=adjoint,
        )
        self._setup(data, train, val, test, min(int(batch_size), train.size), None, 0.0)
        self.eval_batch_size = int(eval_batch_size)
        self._config = dict(
            task=self.name,
            latent_dim=L,
            rec_hidden=int(rec_hidden),
            rec_latent=int(rec_latent),
            field_hidden=int(field_hidden),
            dec_hidden=int(dec_hidden),
            obs_std=float(obs_std),
            rtol=float(rtol),
            atol=float(atol),
            adjoint=adjoint,
            batch_size=self.batch_size,
            method=method,
            split_seed=int(split_seed),
            resolution=float(resolution),
            n_patients=len(data),
            n_train=int(train.size),
            n_val=int(val.size),
            n_test=int(test.size),
        )

    def predict(self, params, idx):
        t, values, mask = self.data.batch(idx)
        pred, nfe = self.model.predict(params, t, values, mask, t, t0=self.t0)
        return (pred, (values, mask)), nfe

    def prediction_call(self, params):
        idx = self.test_idx[: self.eval_batch_size]
        return lambda: self.predict(params, idx)

    def evaluate(self, params, repeats=1, split="test"):
        idx = self.split_indices(split)
        sq, count, nfes, times = 0.0, 0.0, [], []
        for s in range(0, idx.size, self.eval_batch_size):
            start = time.perf_counter()
            (pred, (values, mask)), nfe = self.predict(params, idx[s : s + self.eval_batch_size])
            times.append(time.perf_counter() - start)
            r = np.transpose(mask, (1, 0, 2)) * (pred - np.transpose(values, (1, 0, 2)))
            sq += float(np.sum(r * r))
            count += float(mask.sum())
            nfes.append(nfe)
        self.last_evaluation = dict(split=split, mse=sq / max(count, 1.0))
        return Evaluation(
            test_loss=sq / max(count, 1.0),
            test_accuracy=float("nan"),
            test_nfe=float(np.mean(nfes)),
            prediction_time=float(np.median(times)),
            n_batches=len(nfes),
        )


# ------------------------------------------------------------------------------------------------------------
# ``lrnde compare`` / ``lrnde train`` glue (lrnde_np.experiments.common reads these).

#: Per-task defaults of the time-series tasks (``--hidden`` is the dynamics MLP's hidden width).  Spiral: the
#: settings and λ's of validation/latent_ode_spiral.py (local λ = 1 selected on the validation split; global
#: λ = 1); PhysioNet: the paper's (local 100 → 10 exponential over the run; global: the 2021 paper's 1000 → 100).
TIMESERIES_DEFAULTS = {
    "latent-spiral": dict(
        iters=800,
        batch_size=100,
        lr=1e-2,
        rtol=1e-4,
        atol=1e-6,
        hidden=20,
        lam=1.0,
        lam_end=None,
        schedule="constant",
        lam_global=1.0,
    ),
    "physionet": dict(
        iters=3000,
        batch_size=64,
        lr=1e-2,
        rtol=1e-5,
        atol=1e-7,
        hidden=40,
        lam=100.0,
        lam_end=10.0,
        schedule="exponential",
        lam_global=1000.0,
    ),
}
TIMESERIES_LABELS = {
    task: {
        "vanilla": "Vanilla Latent ODE",
        "global": "Global ERNODE (2021)",
        "local-unbiased": "Local Unbiased ERNODE",
        "local-biased": "Local Biased ERNODE",
    }
    for task in TIMESERIES_DEFAULTS
}


def task_from_args(args):
    """The time-series task that parsed ``lrnde compare/train`` arguments describe."""
    if args.task == "latent-spiral":
        return LatentSpiralTask(
            n_obs=getattr(args, "n_obs", None) or 50,
            field_hidden=args.hidden,
            rtol=args.rtol,
            atol=args.atol,
            adjoint=args.adjoint,
            batch_size=args.batch_size,
            data_seed=getattr(args, "split_seed", 0),
        )
    if args.task == "physionet":
        return PhysioNetTask(
            args.data,
            field_hidden=args.hidden,
            rtol=args.rtol,
            atol=args.atol,
            adjoint=args.adjoint,
            batch_size=args.batch_size,
            split_seed=getattr(args, "split_seed", 0),
            eval_batch_size=getattr(args, "eval_batch_size", None) or 256,
        )
    raise ValueError(f"task: not a time-series task: {args.task!r}")


def _describe_spiral(task):
    c = task.config()
    return [
        f"data: Chen's spirals, {c['n_spirals']} series (half clockwise, noise sd {c['noise_std']:g}, data seed "
        f"{c['data_seed']}), {c['n_obs']} irregular observations in the first 100 of 200 times; "
        f"{task.train_idx.size}/{task.val_idx.size}/{task.test_idx.size} train/validation/test series; "
        f"model: {c['encoder'].upper()} encoder ({c['rec_hidden']}) backwards with time gaps, latent "
        f"{c['latent_dim']}, dynamics Dense({c['latent_dim']}→{c['field_hidden']}, tanh)"
        f"{'→Dense(→' + str(c['field_hidden']) + ', tanh)' * (c['field_layers'] - 1)}→Dense(→"
        f"{c['latent_dim']}), decoder Dense(→{c['dec_hidden']}, tanh)→Dense(→2), s = {c['obs_std']:g}; KL "
        f"weight max(0, 1 − 0.99^(iter − 100))",
        "Test Loss: extrapolation MSE against the noise-free spirals over the 100 times after the observation "
        "window (z0 = mean of q); Train Loss: −ELBO per observed value (last 10% of iterations)",
    ]


def _describe_physionet(task):
    c = task.config()
    return [
        f"data: PhysioNet 2012, {c['n_patients']} patients ({c['n_train']}/{c['n_val']}/{c['n_test']} "
        f"train/validation/test, split seed {c['split_seed']}), 37 variables min–max normalized, "
        f"{c['resolution']:g} h bins over 48 h; model: LatentGRUCell(37, {c['rec_hidden']}, {c['rec_latent']}), "
        f"rec_to_gen Dense(100→50, tanh)→Dense(50→{2 * c['latent_dim']}), dynamics Dense({c['latent_dim']}↔"
        f"{c['field_hidden']}, tanh)×8, s = {c['obs_std']:g}; KL weight max(0, 1 − 0.99^(iter − 100))",
        "Test Loss: masked MSE of the reconstructed held-out observations (normalized units); Train Loss: −ELBO "
        "per observed value (last 10% of iterations)",
    ]


def describe_task(task):
    """Lines for the comparison's notes."""
    return _describe_spiral(task) if isinstance(task, LatentSpiralTask) else _describe_physionet(task)


def plot_spiral_predictions(path, task, params_by_label, n_series=4, split="test"):
    """A figure like Chen et al.'s Fig. 8: for a few held-out spirals, the observed points, the truth, the
    reconstruction (observation window) and the extrapolation, one column per model.  A value of
    ``params_by_label`` may also be a ``(task, params)`` pair (e.g. an :class:`RNNSpiralTask` on the same data).
    Returns the path, or a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed (pip install matplotlib)"
    idx = task.split_indices(split)[:n_series]
    w = task.n_window
    labels = list(params_by_label)
    fig, axes = plt.subplots(len(idx), len(labels), figsize=(3.2 * len(labels), 3.0 * len(idx)), squeeze=False)
    for col, label in enumerate(labels):
        entry = params_by_label[label]
        col_task, params = entry if isinstance(entry, tuple) else (task, entry)
        pred, _ = col_task.predict(params, idx)
        for row, i in enumerate(idx):
            ax = axes[row, col]
            truth, obs = task.data.truth[i], task.data.mask[i, :, 0] > 0
            ax.plot(truth[:, 0], truth[:, 1], color="0.75", lw=1, label="truth")
            ax.scatter(task.data.values[i, obs, 0], task.data.values[i, obs, 1], s=6, color="k", label="observed")
            if np.all(np.isfinite(pred[:w, row])):
                ax.plot(pred[:w, row, 0], pred[:w, row, 1], color="tab:blue", lw=1.5, label="reconstruction")
            ax.plot(
                pred[w - 1 :, row, 0] if np.all(np.isfinite(pred[w - 1])) else pred[w:, row, 0],
                pred[w - 1 :, row, 1] if np.all(np.isfinite(pred[w - 1])) else pred[w:, row, 1],
                color="tab:red",
                lw=1.5,
                label="extrapolation",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------------------
# Poisson-process likelihood (Chen et al., §5.1): an intensity λ(z) = softplus(w·z + c) whose integral rides
# along as one extra ODE state per series.


class PoissonField:
    """dz/dt = f(z) and dΛ/dt = λ(z) = softplus(w·z + c) on the flat state [z (B·L) | Λ (B)].

    Parameters: [f's parameters | w (L) | c].  ``rhs``/``vjp`` have the solver's signatures, so the augmented
    field is an ordinary right-hand side for every adjoint and regularizer.
    """

    def __init__(self, field, latent_dim):
        from numba import njit

        from .._types import RHS_SIG, VJP_SIG, rhs_from, vjp_from
        from ..ode.rhs import as_compiled

        self.inner = field
        self.latent_dim = L = int(latent_dim)
        self.n_params = field.n_params + L + 1
        nz = field.n_params
        rc, rj = as_compiled(field.rhs, "rhs").addresses
        vc, vj = as_compiled(field.vjp, "vjp").addresses

        def rhs(t, y, p, out):
            B = y.size // (L + 1)
            n = B * L
            rhs_from(rc, rj)(t, y[:n], p[:nz], out[:n])
            for b in range(B):
                s = p[nz + L]
                for k in range(L):
                    s += p[nz + k] * y[b * L + k]
                out[n + b] = max(s, 0.0) + math.log1p(math.exp(-abs(s)))

        def vjp(t, y, p, a, out_y, out_p):
            B = y.size // (L + 1)
            n = B * L
            vjp_from(vc, vj)(t, y[:n], p[:nz], a[:n], out_y[:n], out_p[:nz])
            for k in range(L + 1):
                out_p[nz + k] = 0.0
            for b in range(B):
                s = p[nz + L]
                for k in range(L):
                    s += p[nz + k] * y[b * L + k]
                g = a[n + b] / (1.0 + math.exp(-s))  # a_Λ · softplus'(s)
                for k in range(L):
                    out_y[b * L + k] += g * p[nz + k]
                    out_p[nz + k] += g * y[b * L + k]
                out_p[nz + L] += g
                out_y[n + b] = 0.0

        self.rhs = njit(RHS_SIG)(rhs)
        self.vjp = njit(VJP_SIG)(vjp)

    def init_params(self, rng):
        p = np.zeros(self.n_params)
        p[: self.inner.n_params] = self.inner.init_params(rng)
        return p

    def intensity(self, Z, p):
        """λ(z) for the rows of Z (…, L), and softplus' (the logistic) at the same points."""
        nz, L = self.inner.n_params, self.latent_dim
        s = Z @ p[nz : nz + L] + p[nz + L]
        return np.logaddexp(0.0, s), 1.0 / (1.0 + np.exp(-s))
