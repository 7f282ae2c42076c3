"""Quick start: the README's ten-line Lotka–Volterra solve, dense output, and a check against SciPy.

python examples/quickstart.py          (a few seconds; the first run also fills Numba's cache)
"""

import time

import numpy as np
from numba import njit
from scipy.integrate import solve_ivp

from lrnde_np import solve_ode


@njit
def lotka_volterra(t, y, p, out):  # in-place right-hand side on flat float64 arrays
    out[0] = p[0] * y[0] - p[1] * y[0] * y[1]
    out[1] = -p[2] * y[1] + p[3] * y[0] * y[1]


y0, p = np.array([1.0, 1.0]), np.array([1.5, 1.0, 3.0, 1.0])
sol = solve_ode(
    lotka_volterra, (0.0, 10.0), y0, p, method="tsit5", rtol=1e-6, atol=1e-6, saveat=np.linspace(0, 10, 101)
)
print(sol.status, sol.message, sol.stats, sol.y[-1])


def main():
    # --- Dense output: keep every step's stages and evaluate the 4th-order interpolant anywhere. -----------
    dense = solve_ode(lotka_volterra, (0.0, 10.0), y0, p, rtol=1e-6, atol=1e-6, dense=True)
    t_fine = np.linspace(0.0, 10.0, 1001)
    y_fine = dense(t_fine)  # (1001, 2), from the stored steps, no re-solve
    print(
        f"\ndense output: {len(dense.steps)} steps, y(pi) = {dense(np.pi)}, "
        f"prey peak {y_fine[:, 0].max():.4f} at t = {t_fine[np.argmax(y_fine[:, 0])]:.2f}"
    )
    print(
        f"  steps: dt in [{np.abs(dense.steps.dt).min():.3g}, {np.abs(dense.steps.dt).max():.3g}], "
        f"max E_est {dense.steps.error_estimate.max():.3f} (accepted iff <= 1)"
    )

    # --- The same problem with SciPy: a tight DOP853 reference and RK45 at the same tolerances. ------------
    def lv_numpy(t, y):
        return np.array([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])

    ts = sol.t
    ref = solve_ivp(lv_numpy, (0.0, 10.0), y0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=ts).y.T
    rk45 = solve_ivp(lv_numpy, (0.0, 10.0), y0, method="RK45", rtol=1e-6, atol=1e-6, t_eval=ts)
    print("\nagainst DOP853 (rtol = atol = 1e-12) on the 101 save points:")
    print(f"  lrnde_np tsit5: max error {np.abs(sol.y - ref).max():.2e}, {sol.nfe} RHS evaluations")
    print(f"  SciPy RK45    : max error {np.abs(rk45.y.T - ref).max():.2e}, {rk45.nfev} RHS evaluations")
    print(f"  dense output  : max error {np.abs(dense(ts) - ref).max():.2e}")

    def best_of(fn, n):
        best = np.inf
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    ours = best_of(lambda: solve_ode(lotka_volterra, (0.0, 10.0), y0, p, rtol=1e-6, atol=1e-6, saveat=ts), 200)
    theirs = best_of(lambda: solve_ivp(lv_numpy, (0.0, 10.0), y0, method="RK45", rtol=1e-6, atol=1e-6, t_eval=ts), 10)
    print(
        f"\ntime per solve (best of repeats): lrnde_np {ours * 1e6:.0f} µs, SciPy RK45 {theirs * 1e3:.2f} ms "
        f"({theirs / ours:.0f}x)"
    )


if __name__ == "__main__":
    main()
