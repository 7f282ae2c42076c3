"""GPU ensembles with numba.cuda — imported lazily.

* :mod:`lrnde_np.cuda.trajectory` — the per-trajectory solver loops (ODE, SDE, local regularizer) as
  allocation-free ``@njit`` functions; the CPU ensemble compiles them for the CPU, the kernels for the GPU.
  It imports ``numba`` only.
* :mod:`lrnde_np.cuda.kernels` — the ``@cuda.jit`` kernels (one trajectory per thread, work arrays in
  ``cuda.local.array``) and their launchers; the only module of the library that imports ``numba.cuda``, and
  only when :func:`cuda_kernels` is called (``backend="cuda"`` in :mod:`lrnde_np.ensemble`).

Running the kernels in numba's CUDA simulator: set ``NUMBA_ENABLE_CUDASIM=1`` in the environment *before*
numba is imported (the tests do it in a subprocess).  The simulator runs each GPU thread as a Python thread
executing the same source, so it is slow (use 4–16 trajectories) but checks the kernels' logic on any machine.
"""

from __future__ import annotations

import importlib.util


class CUDAUnavailableError(RuntimeError):
    """``backend="cuda"`` was asked for but numba-cuda, or a usable GPU and driver, is missing."""


def cuda_kernels():
    """The :mod:`lrnde_np.cuda.kernels` module, or :class:`CUDAUnavailableError` naming what is missing."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise CUDAUnavailableError(
            "backend='cuda' needs the numba-cuda package, which is not installed: "
            "pip install -e '.[cuda]' (or use backend='cpu')"
        )
    from numba import config, cuda

    if not config.ENABLE_CUDASIM and not cuda.is_available():
        try:
            cuda.current_context()
            reason = "numba.cuda.is_available() is False"
        except Exception as exc:  # the driver's own words: no driver library, no device, ...
            reason = " ".join(str(exc).split())
        raise CUDAUnavailableError(
            f"backend='cuda' needs an NVIDIA GPU with a working driver; none is usable here "
            f"({reason}). Use backend='cpu', or set NUMBA_ENABLE_CUDASIM=1 before numba is "
            f"imported to run the kernels in the (slow) CUDA simulator."
        )
    from . import kernels

    return kernels
