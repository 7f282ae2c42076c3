"""CNF vector fields and the augmented dynamics [z, log p, regularizer channels] as solver right-hand sides.

``CNFDynamics(field, trace=..., kinetic=..., frobenius=...)`` has ``rhs``, ``vjp`` and ``value_vjp`` with the
solver's fixed signatures (:mod:`lrnde_np._types`), so every solver, adjoint and regularizer of the library
applies unchanged.  Its parameter vector is ``[θ, ε]``: θ the field's parameters, ε (only for the Hutchinson
trace) one noise vector per sample, drawn once per solve (:meth:`CNFDynamics.params`) and not differentiated
(its entries of the VJP are zero).
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit, types

from .._jit import FunctionHandle, function_type_maker
from .._types import ARR1, B1, F64, RHS_SIG, VALUE_VJP_SIG, VJP_SIG
from ..nn.mlp import ACTIVATIONS, MLP
from .kernels import CFG_HEADER, KIND_HYPER, KIND_MLP, TRACE_EXACT, TRACE_HUTCHINSON, cnf_eval

TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return int(v)


def as_generator(rng, argname="rng"):
    """An int seed or a numpy Generator as a Generator (TypeError naming ``argname`` otherwise)."""
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"{argname}: expected an int seed or a numpy.random.Generator, got {type(rng).__name__}")


class MLPField:
    """f(t, z) = MLP(z; t) with widths ``(dim, *hidden, dim)``; its exact trace costs D probe JVPs."""

    kind = KIND_MLP

    def __init__(self, dim, hidden=(32, 32), activation="tanh", time_input="all"):
        self.dim = _positive_int("dim", dim)
        hidden = tuple(hidden)
        for h in hidden:
            _positive_int("hidden", h)
        self.mlp = MLP((self.dim, *hidden, self.dim), activation, time_input=time_input)
        self.layout = self.mlp.layout
        self.width = 0
        self.activation_code = 0

    @property
    def n_params(self):
        return self.mlp.n_params

    def init_params(self, rng):
        return self.mlp.init_params(as_generator(rng))

    def __repr__(self):
        return f"MLPField(dim={self.dim}, widths={self.mlp.widths}, activations={self.mlp.activations})"


class HyperField:
    """Chen et al.'s gated hypernetwork field f(z, t) = (1/M) Σ_i u_i(t) h(w_i(t)ᵀz + b_i(t)).

    ``[W, U, G, B] = hyper(t)``, an MLP ``1 → hidden → hidden → 3·M·D + M`` (tanh), and u_i = U_i·sigmoid(G_i)
    (Chen et al.'s torchdiffeq example).  Its exact trace is analytic: (1/M) Σ_i h'(s_i) u_iᵀ w_i.
    """

    kind = KIND_HYPER

    def __init__(self, dim, width, hidden=32, activation="tanh"):
        self.dim = _positive_int("dim", dim)
        self.width = _positive_int("width", width)
        hidden = _positive_int("hidden", hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: unknown {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.activation_code = ACTIVATIONS[activation]
        self.hyper = MLP((1, hidden, hidden, 3 * self.width * self.dim + self.width), "tanh")
        self.layout = self.hyper.layout

    @property
    def n_params(self):
        return self.hyper.n_params

    def init_params(self, rng):
        return self.hyper.init_params(as_generator(rng))

    def weights(self, t, theta):
        """(W (M, D), u (M, D), b (M)) at time t."""
        M, D = self.width, self.dim
        phi = self.hyper.forward(np.array([[float(t)]]), theta)[0]
        W = phi[: M * D].reshape(M, D)
        U = phi[M * D : 2 * M * D].reshape(M, D)
        G = phi[2 * M * D : 3 * M * D].reshape(M, D)
        return W, U / (1.0 + np.exp(-G)), phi[3 * M * D :]

    def __repr__(self):
        return f"HyperField(dim={self.dim}, width={self.width}, activation={self.activation!r})"


# ----------------------------------------------------------------------------------------------------------

_CFG_TYPE = types.Array(types.int64, 1, "C", readonly=True)
#: The one kernel every entry point calls through its address: ``cnf_eval(cfg, t, y, p, a, out_f, out_y, out_p,
#: want_vjp)``.  Calling it directly from three wrappers would make Numba link and re-optimise its whole body into
#: each of them (≈ 25 s of cold compilation apiece); through the address it is compiled once.
_KSIG = types.void(_CFG_TYPE, F64, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1, B1)
_kernel_from = function_type_maker(_KSIG)
_kernel_handle: list = []
_entry_points: dict = {}


def _compile(kind, cfg):
    if not _kernel_handle:
        _kernel_handle.append(FunctionHandle(cnf_eval, _KSIG))
    c_addr, jit_addr = _kernel_handle[0].addresses
    make = _kernel_from
    frozen = cfg.copy()
    if kind == "rhs":

        def rhs(t, y, p, out):
            e = np.empty(0)
            make(c_addr, jit_addr)(frozen, t, y, p, e, out, e, e, False)

        return njit(RHS_SIG)(rhs)
    if kind == "vjp":

        def vjp(t, y, p, a, out_y, out_p):
            make(c_addr, jit_addr)(frozen, t, y, p, a, np.empty(0), out_y, out_p, True)

        return njit(VJP_SIG)(vjp)

    def value_vjp(t, y, p, a, out_f, out_y, out_p):
        make(c_addr, jit_addr)(frozen, t, y, p, a, out_f, out_y, out_p, True)

    return njit(VALUE_VJP_SIG)(value_vjp)


def _entry(kind, cfg):
    key = (kind, cfg.tobytes())
    if key not in _entry_points:
        _entry_points[key] = _compile(kind, cfg)
    return _entry_points[key]


class CNFDynamics:
    """The augmented CNF dynamics of a field, for a flat minibatch (see :mod:`lrnde_np.cnf.kernels`).

    trace : "exact" (analytic for :class:`HyperField`, D probe JVPs for :class:`MLPField`) or "hutchinson".
    noise : "rademacher" or "gaussian" — the Hutchinson probe's distribution (the Frobenius channel with the
        Hutchinson trace reuses the same probe).
    kinetic, frobenius : add the RNODE channels ∫‖f‖² and ∫‖∂f/∂z‖²_F (exact with the exact trace for the MLP
        field and via D unit probes for the hypernetwork; ‖(∂f/∂z)ε‖² with the Hutchinson trace).
    """

    def __init__(self, field, trace="exact", noise="rademacher", kinetic=False, frobenius=False):
        if not isinstance(field, (MLPField, HyperField)):
            raise TypeError(f"field: expected an MLPField or a HyperField, got {type(field).__name__}")
        if trace not in TRACES:
            raise ValueError(f"trace: expected one of {TRACES}, got {trace!r}")
        if noise not in NOISES:
            raise ValueError(f"noise: expected one of {NOISES}, got {noise!r}")
        self.field = field
        self.trace = trace
        self.noise = noise
        self.kinetic = bool(kinetic)
        self.frobenius = bool(frobenius)
        self.dim = field.dim
        head = [
            field.dim,
            field.kind,
            TRACE_EXACT if trace == "exact" else TRACE_HUTCHINSON,
            int(self.kinetic),
            int(self.frobenius),
            field.width,
            field.n_params,
            field.activation_code,
        ]
        assert len(head) == CFG_HEADER
        self.cfg = np.concatenate([np.array(head, dtype=np.int64), np.asarray(field.layout, dtype=np.int64)])
        self.cfg.flags.writeable = False

    @property
    def channels(self):
        """Channels per sample: D + 1 (+1 kinetic) (+1 Frobenius)."""
        return self.dim + 1 + self.kinetic + self.frobenius

    @property
    def n_theta(self):
        return self.field.n_params

    @property
    def rhs(self):
        return _entry("rhs", self.cfg)

    @property
    def vjp(self):
        return _entry("vjp", self.cfg)

    @property
    def value_vjp(self):
        return _entry("value_vjp", self.cfg)

    # -- states and parameters ---------------------------------------------------------------------------

    def noise_vector(self, batch, rng):
        """ε for ``batch`` samples (flat, batch·D), drawn from ``rng`` (seed or Generator)."""
        rng = as_generator(rng)
        if self.noise == "gaussian":
            return rng.standard_normal(batch * self.dim)
        return rng.integers(0, 2, size=batch * self.dim).astype(np.float64) * 2.0 - 1.0

    def params(self, theta, batch, rng=None):
        """The solver's parameter vector: θ, plus ε drawn from ``rng`` with the Hutchinson trace."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_theta,):
            raise ValueError(f"theta: expected shape ({self.n_theta},), got {theta.shape}")
        if self.trace == "exact":
            return np.ascontiguousarray(theta)
        if rng is None:
            raise ValueError("rng: the Hutchinson trace needs a seed or Generator to draw its noise")
        return np.concatenate([theta, self.noise_vector(batch, rng)])

    def initial_state(self, z):
        """Flat augmented state [z, 0 (log p), 0 (channels)] for (batch, D) points z."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z: expected shape (batch, {self.dim}), got {z.shape}")
        B = z.shape[0]
        return np.concatenate([z.reshape(-1), np.zeros(B * (self.channels - self.dim))])

    def split(self, y):
        """(z (B, D), l (B), kinetic (B) or None, frobenius (B) or None) of a flat augmented state."""
        y = np.asarray(y)
        B = y.size // self.channels
        D = self.dim
        z = y[: B * D].reshape(B, D)
        l_ = y[B * D : B * (D + 1)]
        c = B * (D + 1)
        E = F = None
        if self.kinetic:
            E = y[c : c + B]
            c += B
        if self.frobenius:
            F = y[c : c + B]
        return z, l_, E, F

    def evaluate(self, t, y, p):
        """The augmented dynamics at (t, y) (a checked convenience returning a new array)."""
        y = np.ascontiguousarray(y, dtype=np.float64)
        out = np.empty_like(y)
        e = np.empty(0)
        cnf_eval(self.cfg, float(t), y, np.ascontiguousarray(p, dtype=np.float64), e, out, e, e, False)
        return out

    def vjp_py(self, t, y, p, a):
        """(aᵀ∂F/∂y, aᵀ∂F/∂p) of the augmented dynamics (the ε entries of the latter are zero)."""
        y = np.ascontiguousarray(y, dtype=np.float64)
        p = np.ascontiguousarray(p, dtype=np.float64)
        out_y = np.empty_like(y)
        out_p = np.empty_like(p)
        cnf_eval(self.cfg, float(t), y, p, np.ascontiguousarray(a, dtype=np.float64), np.empty(0), out_y, out_p, True)
        return out_y, out_p

    def __repr__(self):
        return (
            f"CNFDynamics({self.field!r}, trace={self.trace!r}, noise={self.noise!r}, kinetic={self.kinetic}, "
            f"frobenius={self.frobenius})"
        )
