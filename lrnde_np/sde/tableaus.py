"""Stochastic Runge–Kutta (SRI, Rößler) tableaus for Itô SDEs with diagonal or scalar noise.

One generic step (:mod:`lrnde_np.sde.step`) serves every tableau (``solver-facts.md`` §4.2)::

    H0_i    = x + h Σ_{j<i} A0_ij F_j + chi2 Σ_{j<i} B0_ij G_j
    H1_i    = x + h Σ_{j<i} A1_ij F_j + √h   Σ_{j<i} B1_ij G_j
    F_i     = f(t + c0_i h, H0_i),   G_i = g(t + c1_i h, H1_i)
    E2      = Σ_i (β3_i chi2 + β4_i chi3) G_i
    x_{n+1} = x + h Σ_i α_i F_i + Σ_i (β1_i ΔW + β2_i chi1) G_i + E2
    E1      = h Σ_{i < error_terms} F_i,     err = δ E1 + E2

Coefficients are transcribed from ``solver-facts.md`` §4.4–4.6 (StochasticDiffEq.jl ``constructSRIW1``,
``constructSRIOpt1`` = SOSRI, ``constructSRIOpt2`` = SOSRI2) and checked against the 25 order conditions of
§4.7 in ``tests/test_sde.py``.  Euler–Maruyama is the one-stage member (α = β1 = (1,), the rest zero); it
has no error estimate and runs with fixed steps only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _frozen(x) -> np.ndarray:
    a = np.ascontiguousarray(np.array(x, dtype=np.float64))
    a.setflags(write=False)
    return a


def _lower(entries, s=4):
    """A strictly lower-triangular (s, s) matrix from {(i, j): value} with 1-based indices."""
    m = np.zeros((s, s))
    for (i, j), v in entries.items():
        assert i > j
        m[i - 1, j - 1] = v
    return m


@dataclass(frozen=True)
class SRITableau:
    """A Rößler SRI method (see the module docstring). All arrays are read-only float64."""

    name: str
    c0: np.ndarray  # (s,) drift nodes
    c1: np.ndarray  # (s,) diffusion nodes
    A0: np.ndarray  # (s, s) drift stages <- drift
    A1: np.ndarray  # (s, s) diffusion stages <- drift
    B0: np.ndarray  # (s, s) drift stages <- diffusion (times chi2)
    B1: np.ndarray  # (s, s) diffusion stages <- diffusion (times √h)
    alpha: np.ndarray  # (s,)
    beta1: np.ndarray  # (s,) weights of ΔW
    beta2: np.ndarray  # (s,) weights of chi1 = I_(1,1)/√h
    beta3: np.ndarray  # (s,) weights of chi2 = I_(1,0)/h
    beta4: np.ndarray  # (s,) weights of chi3 = I_(1,1,1)/h
    order: float  # strong order
    delta: float  # weight of E1 in the error combination δ·E1 + E2
    error_terms: int  # E1 sums the first error_terms drift stages
    adaptive: bool  # has an error estimate
    need_f: np.ndarray  # (s,) 1.0 where F_i must be evaluated (used, and not a copy of an earlier stage)
    need_g: np.ndarray  # (s,) 1.0 where G_i is used at all
    f_alias: np.ndarray  # (s,) j ≥ 0 where F_i = F_j identically (same H0 row and node), else -1

    @property
    def stages(self) -> int:
        return self.alpha.size

    @property
    def controller_order(self) -> float:
        """The order the PI controller's exponents are computed from (3/2 for SRI, §4.8)."""
        return self.order


def _make(name, c0, c1, A0, A1, B0, B1, alpha, beta1, beta2, beta3, beta4, order, delta, error_terms, adaptive):
    A0, A1, B0, B1 = (np.asarray(m, dtype=np.float64) for m in (A0, A1, B0, B1))
    alpha, beta1, beta2, beta3, beta4 = (np.asarray(v, dtype=np.float64) for v in (alpha, beta1, beta2, beta3, beta4))
    s = alpha.size
    # F_i enters x_{n+1} (α), later stages (A0, A1 columns) or E1; G_i enters through β or B0, B1 columns.
    nf = (alpha != 0) | (A0 != 0).any(axis=0) | (A1 != 0).any(axis=0)
    if adaptive:
        nf = nf | (np.arange(s) < error_terms)
    ng = (beta1 != 0) | (beta2 != 0) | (beta3 != 0) | (beta4 != 0) | (B0 != 0).any(axis=0) | (B1 != 0).any(axis=0)
    # SRIW1: H0_3 = x and c0_3 = 0, so F_3 = F_1 = f(t, x) (the hand-written step reuses f1).
    alias = np.full(s, -1.0)
    c0a = np.asarray(c0, dtype=np.float64)
    for i in range(s):
        for j in range(i):
            if alias[j] < 0 and c0a[i] == c0a[j] and np.array_equal(A0[i], A0[j]) and np.array_equal(B0[i], B0[j]):
                alias[i] = j
                break
    nf = nf & (alias < 0)
    return SRITableau(
        name=name,
        c0=_frozen(c0),
        c1=_frozen(c1),
        A0=_frozen(A0),
        A1=_frozen(A1),
        B0=_frozen(B0),
        B1=_frozen(B1),
        alpha=_frozen(alpha),
        beta1=_frozen(beta1),
        beta2=_frozen(beta2),
        beta3=_frozen(beta3),
        beta4=_frozen(beta4),
        order=float(order),
        delta=float(delta),
        error_terms=int(error_terms),
        adaptive=bool(adaptive),
        need_f=_frozen(nf.astype(float)),
        need_g=_frozen(ng.astype(float)),
        f_alias=_frozen(alias),
    )


# §4.4 SRIW1 (constructSRIW1), δ = 1/6 and E1 = h f(H0_1) + h f(H0_2) (the hand-written step).
SRIW1 = _make(
    "sriw1",
    c0=[0.0, 3 / 4, 0.0, 0.0],
    c1=[0.0, 1 / 4, 1.0, 1 / 4],
    A0=_lower({(2, 1): 3 / 4}),
    A1=_lower({(2, 1): 1 / 4, (3, 1): 1.0, (4, 3): 1 / 4}),
    B0=_lower({(2, 1): 3 / 2}),
    B1=_lower({(2, 1): 1 / 2, (3, 1): -1.0, (4, 1): -5.0, (4, 2): 3.0, (4, 3): 1 / 2}),
    alpha=[1 / 3, 2 / 3, 0.0, 0.0],
    beta1=[-1.0, 4 / 3, 2 / 3, 0.0],
    beta2=[-1.0, 4 / 3, -1 / 3, 0.0],
    beta3=[2.0, -4 / 3, -2 / 3, 0.0],
    beta4=[-2.0, 5 / 3, -2 / 3, 1.0],
    order=1.5,
    delta=1 / 6,
    error_terms=2,
    adaptive=True,
)

# §4.5 SOSRI (constructSRIOpt1, Rackauckas & Nie 2018), δ = 1, E1 over all 4 drift stages.
_SOSRI_A0 = _lower(
    {
        (2, 1): -0.04199224421316468,
        (3, 1): 2.842612915017106,
        (3, 2): -2.0527723684000727,
        (4, 1): 4.338237071435815,
        (4, 2): -2.8895936137439793,
        (4, 3): 2.3017575594644466,
    }
)
_SOSRI_A1 = _lower(
    {
        (2, 1): 0.26204282091330466,
        (3, 1): 0.20903646383505375,
        (3, 2): -0.1502377115150361,
        (4, 1): 0.05836595312746999,
        (4, 2): 0.6149440396332373,
        (4, 3): 0.08535117634046772,
    }
)
SOSRI = _make(
    "sosri",
    # c0 = A0·e, c1 = A1·e (as the source defines them; quoted values agree to round-off)
    c0=_SOSRI_A0.sum(axis=1),
    c1=_SOSRI_A1.sum(axis=1),
    A0=_SOSRI_A0,
    A1=_SOSRI_A1,
    B0=_lower(
        {
            (2, 1): -0.21641093549612528,
            (3, 1): 1.5336352863679572,
            (3, 2): 0.26066223492647056,
            (4, 1): -1.0536037558179159,
            (4, 2): 1.7015284721089472,
            (4, 3): -0.20725685784180017,
        }
    ),
    B1=_lower(
        {
            (2, 1): -0.5119011827621657,
            (3, 1): 2.67767339866713,
            (3, 2): -4.9395031322250995,
            (4, 1): 0.15580956238299215,
            (4, 2): 3.2361551006624674,
            (4, 3): -1.4223118283355949,
        }
    ),
    alpha=[1.140099274172029, -0.6401334255743456, 0.4736296532772559, 0.026404498125060714],
    beta1=[-1.8453464565104432, 2.688764531100726, -0.2523866501071323, 0.40896857551684956],
    beta2=[0.4969658141589478, -0.5771202869753592, -0.12919702470322217, 0.2093514975196336],
    beta3=[2.8453464565104425, -2.688764531100725, 0.2523866501071322, -0.40896857551684945],
    beta4=[0.11522663875443433, -0.57877086147738, 0.2857851028163886, 0.17775911990655704],
    order=1.5,
    delta=1.0,
    error_terms=4,
    adaptive=True,
)

# §4.6 SOSRI2 (constructSRIOpt2), δ = 1, E1 over all 4 drift stages. c0, c1 as quoted (≈ A0·e, A1·e).
SOSRI2 = _make(
    "sosri2",
    c0=[0.0, 0.13804532298278663, 0.9999999999999992, 0.9999999999999994],
    c1=[0.0, 0.45605532163856893, 0.999999999999996, 0.9999999999999962],
    A0=_lower(
        {
            (2, 1): 0.13804532298278663,
            (3, 1): 0.5818361298250374,
            (3, 2): 0.4181638701749618,
            (4, 1): 0.4670018408674211,
            (4, 2): 0.8046204792187386,
            (4, 3): -0.27162232008616016,
        }
    ),
    A1=_lower(
        {
            (2, 1): 0.45605532163856893,
            (3, 1): 0.7555807846451692,
            (3, 2): 0.24441921535482677,
            (4, 1): 0.6981181143266059,
            (4, 2): 0.3453277086024727,
            (4, 3): -0.04344582292908241,
        }
    ),
    B0=_lower(
        {
            (2, 1): 0.08852381537667678,
            (3, 1): 1.0317752458971061,
            (3, 2): 0.4563552922077882,
            (4, 1): 1.73078280444124,
            (4, 2): -0.46089678470929774,
            (4, 3): -0.9637509618944188,
        }
    ),
    B1=_lower(
        {
            (2, 1): 0.6753186815412179,
            (3, 1): -0.07452812525785148,
            (3, 2): -0.49783736486149366,
            (4, 1): -0.5591906709928903,
            (4, 2): 0.022696571806569924,
            (4, 3): -0.8984927888368557,
        }
    ),
    alpha=[-0.15036858140642623, 0.7545275856696072, 0.686995463807979, -0.2911544680711602],
    beta1=[-0.45315689727309133, 0.8330937231303951, 0.3792843195533544, 0.24077885458934192],
    beta2=[-0.4994383733810986, 0.9181786186154077, -0.25613778661003145, -0.16260245862427797],
    beta3=[1.4531568972730915, -0.8330937231303933, -0.3792843195533583, -0.24077885458934023],
    beta4=[-0.4976090683622265, 0.9148155835648892, -1.4102107084476505, 0.9930041932449877],
    order=1.5,
    delta=1.0,
    error_terms=4,
    adaptive=True,
)

# Euler–Maruyama as the one-stage SRI member: x_{n+1} = x + h f(t, x) + g(t, x) ΔW. Fixed step only.
EULER_MARUYAMA = _make(
    "euler_maruyama",
    c0=[0.0],
    c1=[0.0],
    A0=[[0.0]],
    A1=[[0.0]],
    B0=[[0.0]],
    B1=[[0.0]],
    alpha=[1.0],
    beta1=[1.0],
    beta2=[0.0],
    beta3=[0.0],
    beta4=[0.0],
    order=0.5,
    delta=1.0,
    error_terms=0,
    adaptive=False,
)

SRI_TABLEAUS = {
    "sriw1": SRIW1,
    "sosri": SOSRI,
    "sosri2": SOSRI2,
    "euler_maruyama": EULER_MARUYAMA,
    "em": EULER_MARUYAMA,
    "euler": EULER_MARUYAMA,
}


def get_sde_tableau(method) -> SRITableau:
    """The tableau for a name ("sosri", "sosri2", "sriw1", "euler_maruyama"/"em") or a tableau itself."""
    if isinstance(method, SRITableau):
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name or an SRITableau, got {type(method).__name__}")
    key = method.lower().replace("-", "_")
    if key not in SRI_TABLEAUS:
        raise ValueError(
            f"method: unknown SDE method {method!r}; choose one of "
            f"{', '.join(sorted(set(t.name for t in SRI_TABLEAUS.values())))}"
        )
    return SRI_TABLEAUS[key]


def sri_order_conditions(tab: SRITableau) -> np.ndarray:
    """The 25 residuals (left side minus right side) of the strong order 1.5 conditions (§4.7)."""
    e = np.ones(tab.stages)
    a, b1, b2, b3, b4 = tab.alpha, tab.beta1, tab.beta2, tab.beta3, tab.beta4
    A0e, A1e, B0e, B1e = tab.A0 @ e, tab.A1 @ e, tab.B0 @ e, tab.B1 @ e
    B1B1e = tab.B1 @ B1e
    A1B0e = tab.A1 @ B0e
    res = [
        a @ e - 1,
        b1 @ e - 1,
        b2 @ e,
        b3 @ e,
        b4 @ e,  # 1-5
        b1 @ B1e,
        b2 @ B1e - 1,
        b3 @ B1e,
        b4 @ B1e,  # 6-9
        a @ A0e - 0.5,
        a @ B0e - 1,
        a @ B0e**2 - 1.5,  # 10-12
        b1 @ A1e - 1,
        b2 @ A1e,
        b3 @ A1e + 1,
        b4 @ A1e,  # 13-16
        b1 @ B1e**2 - 1,
        b2 @ B1e**2,
        b3 @ B1e**2 + 1,
        b4 @ B1e**2 - 2,  # 17-20
        b1 @ B1B1e,
        b2 @ B1B1e,
        b3 @ B1B1e,
        b4 @ B1B1e - 1,  # 21-24
        0.5 * (b1 @ A1B0e) + (b3 @ A1B0e) / 3.0,  # 25
    ]
    return np.array(res)
