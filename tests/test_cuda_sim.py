"""The CUDA kernels, run in numba's CUDA simulator, against the CPU solvers — and compiled to PTX for a real GPU.

The simulator must be switched on (NUMBA_ENABLE_CUDASIM=1) before numba.cuda is first imported, so each check
runs this file as a script in a subprocess with that environment.  Ensembles are tiny (4–8 trajectories): the
simulator runs every GPU thread as a Python thread executing the kernels' source.

``test_kernels_compile_to_ptx`` compiles the three kernels for compute capability 8.0 with the real CUDA target
(needs NVVM and NVRTC, e.g. ``pip install "cuda-toolkit[nvvm,nvrtc]==13.*"``, but no GPU): the simulator proves
the logic, this proves that numba-cuda accepts the code — the shared ``@njit`` step kernels, the right-hand side
passed as an argument, the local arrays.  All three kernels compile (``sde/step.py`` copies stage rows with element
loops rather than slice assignments, which numba-cuda lowers only with its runtime).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install -e '.[test]')")


def _run(kind, simulator=True, timeout=300):
    env = dict(
        os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])
    )
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    else:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), kind], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ode_kernel_matches_solve_ode_in_the_simulator():
    res = _run("ode")
    assert res["mismatches"] == {"tsit5": [], "dp5": [], "bs3": [], "njit_rhs": [], "failures": []}
    assert res["backend"] == "cuda" and res["rejected"] > 0 and res["statuses"] == sorted(set(res["statuses"]))
    assert len(res["statuses"]) >= 2  # the failure run ended with more than one status


def test_local_regularizer_kernel_matches_in_the_simulator():
    res = _run("reg")
    assert res["mismatches"] == {"frozen_k1": [], "through_k1": [], "through_state": [], "no_grad": []}


def test_sde_kernel_matches_solve_sde_in_the_simulator():
    res = _run("sde")
    assert res["mismatches"] == {"sosri_diagonal": [], "sriw1_scalar": []}
    assert res["rejected"] > 0 and res["stack_full"] is True


def test_the_library_mlp_as_a_device_field_matches_solve_ode_in_the_simulator():
    res = _run("mlp")
    assert res["mismatches"] == [] and res["backend"] == "cuda"


def test_bad_right_hand_sides_are_refused_in_the_simulator():
    res = _run("errors")
    assert res == {"kernel": "TypeError", "python": "TypeError", "shape": "ValueError"}


def _have_nvvm_and_nvrtc():
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        load_nvidia_dynamic_lib("nvvm")
        load_nvidia_dynamic_lib("nvrtc")
        return True
    except Exception:
        return ctypes.util.find_library("nvvm") is not None and ctypes.util.find_library("nvrtc") is not None


@pytest.fixture(scope="module")
def ptx_sizes():
    if not _have_nvvm_and_nvrtc():
        pytest.skip("NVVM/NVRTC not found (pip install 'cuda-toolkit[nvvm,nvrtc]==13.*')")
    return _run("ptx", simulator=False)


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["ode", "reg", "mlp"])
def test_kernels_compile_to_ptx(ptx_sizes, kernel):
    assert isinstance(ptx_sizes[kernel], int) and ptx_sizes[kernel] > 10_000, ptx_sizes[kernel]


@pytest.mark.slow
def test_sde_kernel_compiles_to_ptx(ptx_sizes):
    assert isinstance(ptx_sizes["sde"], int) and ptx_sizes["sde"] > 10_000, ptx_sizes["sde"]


# ---------------------------------------------------------------------------------------------------------------
# The subprocess side.


def _check_ode():
    import numpy as np
    from ensemble_problems import blowup, lv, lv_problem, ode_mismatches
    from numba import cuda

    from lrnde_np.ensemble import solve_ode_ensemble

    @cuda.jit(device=True)
    def lv_dev(t, y, p, out):
        out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
        out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]

    out = {"mismatches": {}}
    Y0, P = lv_problem(8, seed=1)
    saveat = np.linspace(0.0, 6.0, 4)
    rejected = 0
    for method, n in (("tsit5", 8), ("dp5", 4), ("bs3", 4)):
        kw = dict(method=method, rtol=1e-6, atol=1e-7, dt=0.5)
        ens = solve_ode_ensemble(lv_dev, (0.0, 6.0), Y0[:n], P[:n], saveat=saveat, backend="cuda", **kw)
        out["mismatches"][method] = ode_mismatches(ens, lv, (0.0, 6.0), Y0[:n], P[:n], **kw)
        out["backend"] = ens.backend
        rejected += int(ens.stats["rejected"].sum())
    # An @njit right-hand side (numba-cuda compiles it for the device), shared parameters, the initial-step rule.
    p = np.array([1.5, 1.0, 3.0, 1.0])
    ens = solve_ode_ensemble(lv, (0.0, 3.0), Y0[:4], p, rtol=1e-5, backend="cuda")
    out["mismatches"]["njit_rhs"] = ode_mismatches(ens, lv, (0.0, 3.0), Y0[:4], p, rtol=1e-5)
    # Failure statuses: blow-up (rows 0, 1) and max_steps.
    Yb = np.array([[2.0], [4.0], [0.5], [0.25]])
    ens = solve_ode_ensemble(blowup, (0.0, 1.0), Yb, np.array([1.0]), saveat=[0.5, 1.0], max_steps=40, backend="cuda")
    out["mismatches"]["failures"] = ode_mismatches(ens, blowup, (0.0, 1.0), Yb, np.array([1.0]), max_steps=40)
    out["statuses"] = sorted({int(s) for s in ens.status})
    out["rejected"] = rejected
    return out


def _check_mlp():
    import numpy as np
    from ensemble_problems import ode_mismatches

    from lrnde_np.cuda.fields import mlp_device_field
    from lrnde_np.ensemble import solve_ode_ensemble
    from lrnde_np.nn import MLP

    mlp = MLP((2, 8, 2), "tanh", time_input="all", input_transform="cube")
    rng = np.random.default_rng(5)
    P = np.stack([mlp.init_params(rng) for _ in range(4)])
    Y0 = rng.normal(size=(4, 2))
    field = mlp_device_field(mlp)
    kw = dict(rtol=1e-6, atol=1e-8)
    ens = solve_ode_ensemble(field, (0.0, 1.0), Y0, P, saveat=[0.5, 1.0], backend="cuda", **kw)
    return {"mismatches": ode_mismatches(ens, field, (0.0, 1.0), Y0, P, **kw), "backend": ens.backend}


def _check_reg():
    import numpy as np
    from ensemble_problems import lv, lv_problem, lv_vjp, reg_mismatches
    from numba import cuda

    from lrnde_np.ensemble import local_regularizer_ensemble

    @cuda.jit(device=True)
    def lv_vjp_dev(t, y, p, a, out_y, out_p):
        out_y[0] = a[0] * (p[0] - p[1] * y[1]) + a[1] * p[3] * y[1]
        out_y[1] = -a[0] * p[1] * y[0] + a[1] * (-p[2] + p[3] * y[0])
        out_p[0] = a[0] * y[0]
        out_p[1] = -a[0] * y[0] * y[1]
        out_p[2] = -a[1] * y[1]
        out_p[3] = a[1] * y[0] * y[1]

    Z, P = lv_problem(6, seed=7)
    t_reg = np.random.default_rng(8).uniform(0.0, 4.0, 6)
    out = {"mismatches": {}}
    cases = {
        "frozen_k1": dict(),
        "through_k1": dict(through_k1=True),
        "through_state": dict(through_state=True, heuristic="error_stiffness", stiffness_weight=0.5),
        "no_grad": dict(compute_grad=False),
    }
    for name, kw in cases.items():
        ens = local_regularizer_ensemble(lv, lv_vjp_dev, t_reg, 5.0, Z, P, 1e-6, 1e-6, backend="cuda", **kw)
        out["mismatches"][name] = reg_mismatches(ens, lv, lv_vjp, t_reg, 5.0, Z, P, 1e-6, 1e-6, **kw)
    return out


def _check_sde():
    import numpy as np
    from ensemble_problems import gbm_f, gbm_g, gbm_problem, sde_mismatches
    from numba import cuda

    from lrnde_np.cuda.trajectory import STACK_FULL
    from lrnde_np.ensemble import solve_sde_ensemble

    @cuda.jit(device=True)
    def drift(t, x, p, out):
        for i in range(x.size):
            out[i] = p[0] * x[i]

    @cuda.jit(device=True)
    def diffusion(t, x, p, out):
        for i in range(x.size):
            out[i] = p[1] * x[i]

    X0, P = gbm_problem(4, seed=10)
    out = {"mismatches": {}}
    rejected = 0
    for name, method, noise, seeds in (
        ("sosri_diagonal", "sosri", "diagonal", np.array([3, 1, 4, 1])),
        ("sriw1_scalar", "sriw1", "scalar", np.array([5, 9, 2, 6])),
    ):
        kw = dict(method=method, noise=noise, dt=0.05)
        ens = solve_sde_ensemble(
            drift, diffusion, (0.0, 0.08), X0, P, saveat=[0.04, 0.08], seeds=seeds, backend="cuda", **kw
        )
        out["mismatches"][name] = sde_mismatches(ens, gbm_f, gbm_g, (0.0, 0.08), X0, P, seeds, **kw)
        rejected += int(ens.stats["rejected"].sum())
    ens = solve_sde_ensemble(drift, diffusion, (0.0, 0.3), X0, P, seed=0, dt=0.3, stack_size=2, backend="cuda")
    out["stack_full"] = bool(np.all(ens.status == STACK_FULL))
    out["rejected"] = rejected
    return out


def _check_errors():
    import numpy as np
    from ensemble_problems import lv_problem
    from numba import cuda

    from lrnde_np.ensemble import solve_ode_ensemble

    @cuda.jit
    def kernel(t, y, p, out):
        pass

    @cuda.jit(device=True)
    def lv_dev(t, y, p, out):
        out[0] = -y[0]
        out[1] = -y[1]

    Y0, P = lv_problem(4)
    out = {}
    for name, call in (
        ("kernel", lambda: solve_ode_ensemble(kernel, (0.0, 1.0), Y0, P, backend="cuda")),
        ("python", lambda: solve_ode_ensemble(lambda t, y, p, o: None, (0.0, 1.0), Y0, P, backend="cuda")),
        ("shape", lambda: solve_ode_ensemble(lv_dev, (0.0, 1.0), Y0, np.ones((3, 4)), backend="cuda")),
    ):
        try:
            call()
            out[name] = "accepted"
        except Exception as exc:  # the type is the result
            out[name] = type(exc).__name__
    return out


def _check_ptx():
    """Compile each kernel for compute capability 8.0 with the real CUDA target (no GPU: numba-cuda asks the
    current device for its compute capability when it compiles device functions, so that one query is
    answered here)."""
    import types

    import numba
    import numba.cuda.dispatcher as cuda_dispatcher
    import numpy as np
    from ensemble_problems import lv_problem
    from numba import cuda

    from lrnde_np.cuda import kernels
    from lrnde_np.ode.solve import control_array
    from lrnde_np.sde.step import pack_tableau
    from lrnde_np.sde.tableaus import get_sde_tableau
    from lrnde_np.tableaus import TSIT5

    cuda_dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(8, 0))

    @cuda.jit(device=True)
    def lv_dev(t, y, p, out):
        out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
        out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]

    @cuda.jit(device=True)
    def lv_vjp_dev(t, y, p, a, out_y, out_p):
        out_y[0] = a[0] * (p[0] - p[1] * y[1]) + a[1] * p[3] * y[1]
        out_y[1] = -a[0] * p[1] * y[0] + a[1] * (-p[2] + p[3] * y[0])
        for k in range(4):
            out_p[k] = a[0] * y[0] + a[1] * y[1]

    def ptx(kernel, args):
        try:
            code, _ = cuda.compile_ptx(kernel.py_func, tuple(numba.typeof(a) for a in args), cc=(8, 0))
        except Exception as exc:  # reported, not raised: the test says which kernel failed and why
            return " ".join(str(exc).split())[-600:]
        return len(code)

    N = 4
    Y0, P = lv_problem(N)
    ctrl = control_array(TSIT5, 0.0, 1.0, None, None, None, None)
    atol = np.full(2, 1e-6)
    out = {}
    args = kernels.ode_args(
        TSIT5,
        0.0,
        1.0,
        Y0,
        P,
        1e-3,
        atol,
        np.ones(3),
        ctrl,
        True,
        100,
        np.empty((N, 3, 2)),
        np.empty(N, np.int64),
        np.empty((N, 3), np.int64),
        np.empty(N),
    )
    out["ode"] = ptx(kernels.ode_kernel(lv_dev, 7, 2), args)
    # the library's MLP as a device field (cuda/fields.py), compiled into the same ODE kernel
    from lrnde_np.cuda.fields import mlp_device_field
    from lrnde_np.nn import MLP

    mlp = MLP((2, 8, 2), "tanh", time_input="all")
    args_mlp = kernels.ode_args(
        TSIT5,
        0.0,
        1.0,
        Y0,
        np.zeros((N, mlp.n_params)),
        1e-3,
        atol,
        np.ones(3),
        ctrl,
        True,
        100,
        np.empty((N, 3, 2)),
        np.empty(N, np.int64),
        np.empty((N, 3), np.int64),
        np.empty(N),
    )
    out["mlp"] = ptx(kernels.ode_kernel(mlp_device_field(mlp), 7, 2), args_mlp)
    args = kernels.local_reg_args(
        TSIT5,
        5,
        6,
        np.zeros(N),
        np.ones(N),
        Y0,
        P,
        1e-3,
        atol,
        1.0,
        0.0,
        True,
        False,
        np.empty((N, 2)),
        np.empty((N, 4)),
        np.empty((N, 4)),
        np.empty(N, np.int64),
        np.empty(N, np.int64),
    )
    out["reg"] = ptx(kernels.local_reg_kernel(lv_dev, lv_vjp_dev, 7, 2, 4), args)
    M, V, delta, eterms = pack_tableau(get_sde_tableau("sosri"))
    args = (  # the SDE kernel's arguments, in order
        M,
        V,
        delta,
        eterms,
        1.5,
        0.0,
        1.0,
        Y0,
        P,
        1e-2,
        atol,
        np.ones(1),
        np.ones(1),
        ctrl,
        True,
        100,
        1,
        np.zeros((N, 4), np.uint64),
        np.empty((N, 1, 2)),
        np.empty(N, np.int64),
        np.empty((N, 4), np.int64),
        np.empty(N),
    )
    out["sde"] = ptx(kernels.sde_kernel(lv_dev, lv_dev, V.shape[1], 2, 2, 65, 64), args)
    return out


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    result = {
        "ode": _check_ode,
        "mlp": _check_mlp,
        "reg": _check_reg,
        "sde": _check_sde,
        "errors": _check_errors,
        "ptx": _check_ptx,
    }[sys.argv[1]]()
    print(json.dumps(result))
