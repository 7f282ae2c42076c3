"""The MLP field compiled without allocation or BLAS (``cuda.fields.mlp_device_field``): values against the
library's MLP and its NumPy twin, and trajectories of the CPU ensemble against ``solve_ode`` with the same field.
The CUDA-simulator run of the same field is in ``tests/test_cuda_sim.py``."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrnde_np import solve_ode
from lrnde_np.cuda.fields import mlp_device_field
from lrnde_np.ensemble import solve_ode_ensemble
from lrnde_np.nn import MLP
from lrnde_np.nn.reference import reference_forward


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    hidden=st.integers(1, 12),
    batch=st.integers(1, 3),
    activation=st.sampled_from(["tanh", "softplus", "relu", "swish", "identity"]),
    final=st.sampled_from([None, "tanh"]),
    time_input=st.sampled_from(["none", "first", "all"]),
    transform=st.sampled_from(["none", "cube"]),
    t=st.floats(-2.0, 2.0),
    seed=st.integers(0, 2**16),
)
def test_device_field_equals_the_mlp(n, hidden, batch, activation, final, time_input, transform, t, seed):
    mlp = MLP((n, hidden, n), activation, time_input=time_input, input_transform=transform, final_activation=final)
    rng = np.random.default_rng(seed)
    p = mlp.init_params(rng) + 0.1 * rng.normal(size=mlp.n_params)
    y = rng.normal(size=batch * n)
    out = np.empty(batch * n)
    mlp_device_field(mlp)(t, y, p, out)
    expected = reference_forward(mlp, y.reshape(batch, n), p, t).ravel()
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13 * max(1.0, np.max(np.abs(expected))))
    np.testing.assert_allclose(out, mlp.forward(y, p, t), rtol=1e-12, atol=1e-12)


def test_cpu_ensemble_with_the_device_field_equals_solve_ode_per_trajectory():
    mlp = MLP((2, 16, 2), "tanh", input_transform="cube")
    rng = np.random.default_rng(3)
    P = np.stack([mlp.init_params(rng) for _ in range(6)])
    Y0 = rng.normal(size=(6, 2))
    field = mlp_device_field(mlp)
    saveat = np.linspace(0.0, 1.5, 5)
    ens = solve_ode_ensemble(field, (0.0, 1.5), Y0, P, saveat=saveat, rtol=1e-6, atol=1e-8)
    for i in range(6):
        sol = solve_ode(field, (0.0, 1.5), Y0[i], P[i], saveat=saveat, rtol=1e-6, atol=1e-8)
        assert ens.status[i] == sol.status and int(ens.stats["accepted"][i]) == sol.stats["accepted"]
        np.testing.assert_allclose(ens.y[i], sol.y, rtol=1e-12, atol=1e-300)
        # and the same trajectory as the library's MLP field, to the solver's tolerance
        ref = solve_ode(mlp.rhs, (0.0, 1.5), Y0[i], P[i], saveat=saveat, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(ens.y[i], ref.y, rtol=1e-5, atol=1e-7)


def test_deeper_networks_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="one hidden layer"):
        mlp_device_field(MLP((2, 8, 8, 2), "tanh"))
