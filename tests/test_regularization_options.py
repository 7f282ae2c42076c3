"""The fidelity options of the local regularizers reach training through ``Regularization``.

``biased_source="saves"`` draws t_reg among the solution's saved times (the official code), ``"steps"`` among
the accepted step ends; ``stiffness_scaling="official"`` is the 2023 code's local stiffness estimate.
"""

import numpy as np
import pytest

from lrnde_np.models.node import NeuralODE, Regularization
from lrnde_np.nn import MLP
from lrnde_np.regularize import local_regularizer


def _node():
    field = MLP((2, 16, 2), "tanh", time_input="all")
    p = field.init_params(np.random.default_rng(0))
    z0 = np.random.default_rng(1).normal(size=3 * 2)
    return NeuralODE(field, (0.0, 1.0), 1e-6, 1e-8, "tsit5", "discrete"), field, p, z0


def test_biased_source_saves_draws_among_saved_times_and_steps_among_step_ends():
    node, _, p, z0 = _node()
    saveat = np.linspace(0.1, 1.0, 10)
    saved, stepped = set(), set()
    for seed in range(20):
        fp = node.forward(
            z0, p, Regularization("local_biased", biased_source="saves"), np.random.default_rng(seed), saveat=saveat
        )
        assert fp.t_reg in set(fp.sol.t[:-1]) and fp.reg_save_index >= 0
        assert np.isfinite(fp.local.value) and fp.local.value >= 0.0
        saved.add(fp.t_reg)
        fp = node.forward(z0, p, Regularization("local_biased"), np.random.default_rng(seed), saveat=saveat)
        assert fp.t_reg in set(fp.sol.steps.t[1:])
        stepped.add(fp.t_reg)
    assert saved <= set(saveat[:-1]) and len(saved) > 1
    assert not stepped <= set(saveat)  # step ends are not the save points


def test_official_stiffness_scaling_reaches_the_regularizer():
    node, field, p, z0 = _node()
    values = {}
    for scaling in ("ratio", "official"):
        reg = Regularization("local_unbiased", heuristic="stiffness", stiffness_scaling=scaling)
        fp = node.forward(z0, p, reg, np.random.default_rng(3))
        direct = local_regularizer(
            field.rhs,
            field.vjp,
            fp.t_reg,
            1.0,
            fp.sol.y[fp.reg_save_index],
            p,
            1e-6,
            1e-8,
            heuristic="stiffness",
            stiffness_scaling=scaling,
        )
        assert fp.local.value == pytest.approx(direct.value, rel=1e-14)
        values[scaling] = fp.local.value
    assert values["official"] != pytest.approx(values["ratio"], rel=1e-3)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="biased_source"):
        Regularization("local_biased", biased_source="anywhere")
    with pytest.raises(ValueError, match="stiffness_scaling"):
        Regularization("local_unbiased", stiffness_scaling="loud")
