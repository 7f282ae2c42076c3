"""CNF tasks for ``training.train`` and ``lrnde compare``: maximum likelihood on 2-D samples (``cnf-samples``,
Chen et al. Fig. 5) and density matching by KL(q‖p) (``cnf-density``, Chen et al. Fig. 4).

Both follow the task interface of :class:`~lrnde_np.models.SpiralTask` (``config``, ``init_params``,
``sample_batch``, ``step``, ``evaluate``, ``prediction_call``).  The RNODE terms (Finlay et al. 2020) are a
property of the task (``lam_kinetic``, ``lam_frobenius`` > 0 add the channels), so that any solver
regularizer can be combined with them.

* cnf-samples: data drawn from a seed (two moons / two circles); test NLL on ``n_test`` held-out points in one
  batched backward solve, whose NFE is the test NFE; prediction time = sampling ``n_test`` points.
* cnf-density: loss E_q[log q + U]; the test metric is KL(q‖p) = E_q[log q + U] + log Z on ``n_test``
  samples of a fixed seed (log Z by quadrature); test NFE and prediction time of that sampling solve.
"""

from __future__ import annotations

import time

import numpy as np

from ..models.base import Evaluation, StepOutcome, check_generator
from ..models.node import Regularization
from .fields import CNFDynamics, HyperField, MLPField
from .model import CNF
from .toy import DATASETS, ENERGIES, log_partition

#: Defaults for ``lrnde compare --task cnf-*`` (2-core budget).  λ: validation/cnf.py chose local λ = 10 and global
#: λ = 1 on validation samples of two moons (grids 10/30/100 and 1/3).  At rtol = atol = 1e-4 the local
#: R = E_est·|dt| is only ~4e-8 and the global Σ_j E_j|dt_j| ~7e-4 at initialisation, but with k1 frozen (the
#: paper's gradient) the local term's gradient at λ = 1 is already ~3% of the NLL's (measured on two moons).
CNF_DEFAULTS = {
    "cnf-samples": dict(
        iters=300,
        batch_size=128,
        lr=3e-3,
        rtol=1e-4,
        atol=1e-4,
        hidden=32,
        lam=10.0,
        lam_end=None,
        schedule="constant",
        lam_global=1.0,
    ),
    "cnf-density": dict(
        iters=300,
        batch_size=128,
        lr=3e-3,
        rtol=1e-4,
        atol=1e-4,
        hidden=32,
        lam=10.0,
        lam_end=None,
        schedule="constant",
        lam_global=1.0,
    ),
}
CNF_TASKS = tuple(CNF_DEFAULTS)
#: Table labels of ``lrnde compare --task cnf-*``.
CNF_LABELS = {
    task: {
        "vanilla": "Vanilla CNF",
        "global": "Global ERNODE (2021)",
        "local-unbiased": "Local Unbiased ERNODE",
        "local-biased": "Local Biased ERNODE",
    }
    for task in CNF_TASKS
}


def _field(field, hidden, width):
    if field == "mlp":
        return MLPField(2, (hidden, hidden), "tanh", time_input="all")
    if field == "hyper":
        return HyperField(2, width, hidden=hidden)
    raise ValueError(f"field: expected 'mlp' or 'hyper', got {field!r}")


class _CNFTaskBase:
    has_accuracy = False

    def __init__(
        self,
        field="mlp",
        hidden=32,
        width=16,
        trace="exact",
        rtol=1e-4,
        atol=1e-4,
        adjoint="discrete",
        batch_size=128,
        lam_kinetic=0.0,
        lam_frobenius=0.0,
        n_test=1000,
        test_seed=12345,
        noise="rademacher",
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if lam_kinetic < 0 or lam_frobenius < 0:
            raise ValueError("lam_kinetic, lam_frobenius: must be non-negative")
        self.field = _field(field, int(hidden), int(width))
        self.dynamics = CNFDynamics(
            self.field, trace, noise=noise, kinetic=lam_kinetic > 0, frobenius=lam_frobenius > 0
        )
        # Evaluation: the plain dynamics (no RNODE channels), exact trace.
        self.eval_dynamics = CNFDynamics(self.field, "exact")
        self.cnf = CNF(self.dynamics, rtol=rtol, atol=atol, adjoint=adjoint)
        self.eval_cnf = CNF(self.eval_dynamics, rtol=rtol, atol=atol, adjoint=adjoint)
        self.batch_size = int(batch_size)
        self.lam_kinetic, self.lam_frobenius = float(lam_kinetic), float(lam_frobenius)
        self.n_test, self.test_seed = int(n_test), int(test_seed)
        self._config = dict(
            field=field,
            hidden=int(hidden),
            width=int(width),
            trace=trace,
            rtol=float(rtol),
            atol=float(atol),
            adjoint=adjoint,
            batch_size=self.batch_size,
            lam_kinetic=self.lam_kinetic,
            lam_frobenius=self.lam_frobenius,
            n_test=self.n_test,
            test_seed=self.test_seed,
            noise=noise,
        )

    def config(self):
        return dict(self._config)

    @property
    def n_params(self):
        return self.field.n_params

    def init_params(self, rng):
        return self.field.init_params(check_generator(rng))

    def sample(self, params, n, seed):
        """(x, log q(x), nfe) of n samples drawn with ``seed``."""
        x, logq, nfe, _ = self.eval_cnf.sample(n, params, seed)
        return x, logq, nfe

    def prediction_call(self, params):
        return lambda: self.eval_cnf.sample(self.n_test, params, self.test_seed)


class CNFSamplesTask(_CNFTaskBase):
    """Maximum likelihood of a CNF on 2-D samples (see the module docstring)."""

    name = "cnf-samples"

    def __init__(self, dataset="moons", data_seed=0, **kwargs):
        super().__init__(**kwargs)
        if dataset not in DATASETS:
            raise ValueError(f"dataset: expected one of {sorted(DATASETS)}, got {dataset!r}")
        self.dataset = dataset
        self.draw = DATASETS[dataset]
        self.test_x = self.draw(self.n_test, self.test_seed)
        self._config.update(task=self.name, dataset=dataset)

    def sample_batch(self, rng):
        return self.draw(self.batch_size, check_generator(rng))

    def step(self, params, batch, regularization: Regularization, lam, rng) -> StepOutcome:
        s = self.cnf.nll_step(batch, params, regularization, lam, rng, self.lam_kinetic, self.lam_frobenius)
        return StepOutcome(
            loss=s.loss,
            task_loss=s.task_loss,
            reg_value=s.reg_value,
            accuracy=float("nan"),
            grad=s.grad,
            nfe_forward=s.nfe_forward,
            nfe_reg=s.nfe_reg,
            nfe_backward=s.nfe_backward,
        )

    def nll(self, params, x):
        """(mean NLL, NFE) of points x with the exact trace (one batched solve)."""
        lp, nfe = self.eval_cnf.log_prob(x, params)
        return float(-np.mean(lp)), nfe

    def evaluate(self, params, repeats=3) -> Evaluation:
        nll, nfe = self.nll(params, self.test_x)
        times = []
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            self.prediction_call(params)()
            times.append(time.perf_counter() - start)
        return Evaluation(
            test_loss=nll,
            test_accuracy=float("nan"),
            test_nfe=float(nfe),
            prediction_time=float(np.median(times)),
            n_batches=1,
        )

    def describe(self):
        c = self._config
        return [
            f"data: {self.dataset}, minibatches of {self.batch_size} fresh samples; test NLL (nats) and test "
            f"NFE: one backward solve of {self.n_test} held-out samples (seed {self.test_seed}), exact trace; "
            f"Pred Time: sampling {self.n_test} points",
            f"CNF: {self.field!r}, training trace {c['trace']}, Tsit5 rtol {c['rtol']:g} atol {c['atol']:g}, "
            f"t ∈ [0, 1]; RNODE λ_K {self.lam_kinetic:g}, λ_J {self.lam_frobenius:g}",
        ]


class CNFDensityTask(_CNFTaskBase):
    """Density matching: minimise E_q[log q + U] for a target p ∝ exp(−U) (see the module docstring)."""

    name = "cnf-density"

    def __init__(self, target="u1", **kwargs):
        super().__init__(**kwargs)
        if target not in ENERGIES:
            raise ValueError(f"target: expected one of {sorted(ENERGIES)}, got {target!r}")
        self.target = target
        self.energy = ENERGIES[target]
        self.log_z = log_partition(self.energy)
        self._config.update(task=self.name, target=target)

    def sample_batch(self, rng):
        return int(check_generator(rng).integers(2**62))

    def step(self, params, batch, regularization: Regularization, lam, rng) -> StepOutcome:
        s = self.cnf.kl_step(self.energy, params, self.batch_size, batch, regularization, lam)
        # + log Z: the task loss is the minibatch estimate of KL(q‖p) itself (the gradient is unchanged)
        return StepOutcome(
            loss=s.loss + self.log_z,
            task_loss=s.task_loss + self.log_z,
            reg_value=s.reg_value,
            accuracy=float("nan"),
            grad=s.grad,
            nfe_forward=s.nfe_forward,
            nfe_reg=s.nfe_reg,
            nfe_backward=s.nfe_backward,
        )

    def kl(self, params, n=None, seed=None):
        """(KL(q‖p) estimate, its standard error, NFE) on n samples."""
        x, logq, nfe = self.sample(params, n or self.n_test, self.test_seed if seed is None else seed)
        U, _ = self.energy(x)
        terms = logq + U + self.log_z
        return float(np.mean(terms)), float(np.std(terms, ddof=1) / np.sqrt(terms.size)), nfe

    def evaluate(self, params, repeats=3) -> Evaluation:
        kl, _, nfe = self.kl(params)
        times = []
        for _ in range(max(1, int(repeats))):
            start = time.perf_counter()
            self.prediction_call(params)()
            times.append(time.perf_counter() - start)
        return Evaluation(
            test_loss=kl,
            test_accuracy=float("nan"),
            test_nfe=float(nfe),
            prediction_time=float(np.median(times)),
            n_batches=1,
        )

    def describe(self):
        c = self._config
        return [
            f"target: Rezende & Mohamed's {self.target.upper()} (log Z = {self.log_z:.4f} by quadrature); "
            f"minibatches of {self.batch_size} base samples; Test Loss = KL(q‖p) on {self.n_test} samples "
            f"(seed {self.test_seed}), whose sampling solve gives test NFE and Pred Time",
            f"CNF: {self.field!r}, training trace {c['trace']}, Tsit5 rtol {c['rtol']:g} atol {c['atol']:g}",
        ]


def task_from_args(args):
    """The CNF task of ``lrnde compare/train --task cnf-*`` arguments."""
    common = dict(
        field=getattr(args, "cnf_field", "mlp"),
        hidden=args.hidden,
        width=getattr(args, "cnf_width", 16),
        trace=getattr(args, "cnf_trace", "exact"),
        rtol=args.rtol,
        atol=args.atol,
        adjoint=args.adjoint,
        batch_size=args.batch_size,
    )
    if args.task == "cnf-samples":
        return CNFSamplesTask(dataset=getattr(args, "cnf_data", "moons"), **common)
    return CNFDensityTask(target=getattr(args, "cnf_target", "u1"), **common)
