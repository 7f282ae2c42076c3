"""Runge–Kutta tableaus as data.

Every explicit method is stored in *FSAL form*: its stages followed, where the method is not already
first-same-as-last, by one extra stage ``f(t + h, y_{n+1})`` (row ``b`` of ``A``, node 1).  That stage is the
next step's ``k1`` and the right end of the Hermite interpolant, so one generic step kernel, one dense-output
formula and one VJP serve every method:

    k_i      = f(t + c_i h, y_n + h Σ_j A_ij k_j)        i = 1..s
    y_{n+1}  = y_n + h Σ_i b_i k_i
    err      = h Σ_i btilde_i k_i                       (btilde = bhat - b, OrdinaryDiffEq's sign)
    y(θ)     = y_n + h Σ_i (Σ_m P_im θ^(m+1)) k_i        0 ≤ θ ≤ 1

Coefficients are transcribed from ``solver-facts.md`` (OrdinaryDiffEq / SciPy / Hairer) and checked against
their order conditions in ``tests/test_tableaus.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as Fr

import numpy as np


def _frozen(x) -> np.ndarray:
    a = np.ascontiguousarray(np.array(x, dtype=np.float64))
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class ERKTableau:
    """An explicit Runge–Kutta method in FSAL form (see the module docstring)."""

    name: str
    A: np.ndarray  # (s, s) strictly lower triangular
    b: np.ndarray  # (s,)
    c: np.ndarray  # (s,)
    btilde: np.ndarray  # (s,) embedded-minus-main weights; zeros for fixed-step methods
    P: np.ndarray  # (s, m) dense-output polynomial coefficients
    order: int  # order of y_{n+1}
    error_order: int  # order of the embedded solution (0: no error estimate)
    stages: int  # stages of the published method (without the appended FSAL stage)
    stiffness_pair: tuple  # 0-based stages (i, j) with c_i == c_j for the stiffness estimate, or ()
    stability_size: float  # |z| where the real stability boundary crosses the negative axis
    interpolant: str  # "free" (the method's own) or "hermite" (cubic, from y0, y1, f0, f1)

    @property
    def adaptive(self) -> bool:
        return self.error_order > 0

    @property
    def n_stages(self) -> int:
        """Stage evaluations stored per step (including the FSAL stage)."""
        return self.A.shape[0]

    def dense_weights(self, theta: float) -> np.ndarray:
        """b_i(θ): y(t_n + θh) = y_n + h Σ_i b_i(θ) k_i."""
        powers = theta ** np.arange(1, self.P.shape[1] + 1)
        return self.P @ powers


def _hermite_P(b: np.ndarray) -> np.ndarray:
    """Cubic Hermite on (y0, y1, f0 = k_1, f1 = k_s) written in the stage basis.

    y(θ) - y0 = (3θ² - 2θ³)(y1 - y0) + (θ - 2θ² + θ³) h f0 + (θ³ - θ²) h f1  and  y1 - y0 = h Σ b_i k_i.
    """
    s = len(b)
    P = np.zeros((s, 3))
    P[:, 1] += 3.0 * b
    P[:, 2] += -2.0 * b
    P[0] += (1.0, -2.0, 1.0)
    P[s - 1] += (0.0, -1.0, 1.0)
    return P


def _fsal_form(A, b, c, bhat=None):
    """Append the stage f(t+h, y_{n+1}) unless the last row of A already equals b with c = 1."""
    A = np.array(A, dtype=object)
    b = list(b)
    c = list(c)
    s = len(b)
    already_fsal = c[-1] == 1 and list(A[-1]) == b
    if not already_fsal:
        A2 = np.zeros((s + 1, s + 1), dtype=object)
        A2[:s, :s] = A
        A2[s, :s] = b
        A, b, c = A2, b + [0], c + [1]
        if bhat is not None:
            bhat = list(bhat) + [0]
    return A, b, c, bhat


def _make(name, A, b, c, bhat, order, error_order, stiffness_pair, stability_size, P=None):
    stages = len(b)
    A, b, c, bhat = _fsal_form(A, b, c, bhat)
    b_arr = np.array([float(x) for x in b])
    btilde = np.zeros_like(b_arr) if bhat is None else np.array([float(x) for x in bhat]) - b_arr
    if bhat is not None:  # exact differences where the coefficients are rational
        btilde = np.array(
            [
                float(Fr(x) - Fr(y)) if isinstance(x, Fr) and isinstance(y, Fr) else float(x) - float(y)
                for x, y in zip(bhat, b, strict=True)
            ]
        )
    interpolant = "free" if P is not None else "hermite"
    if P is None:
        P = _hermite_P(b_arr)
    return ERKTableau(
        name=name,
        A=_frozen(np.array(A, dtype=float)),
        b=_frozen(b_arr),
        c=_frozen([float(x) for x in c]),
        btilde=_frozen(btilde),
        P=_frozen(P),
        order=order,
        error_order=error_order,
        stages=stages,
        stiffness_pair=stiffness_pair,
        stability_size=stability_size,
        interpolant=interpolant,
    )


# --- Tsitouras 5(4) ---------------------------------------------------------------------------------
_TS_A = [
    [0] * 7,
    [0.161] + [0] * 6,
    [
        -0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
        0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569,
    ]
    + [0] * 5,
    [
        2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
        -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
        4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077,
    ]
    + [0] * 4,
    [
        5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
        -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
        7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
        -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635,
    ]
    + [0] * 3,
    [
        5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
        -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
        8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
        -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
        -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206,
    ]
    + [0] * 2,
    [
        0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
        0.01,
        0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
        1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
        -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
        2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
        0,
    ],
]
_TS_C = [
    0,
    0.161,
    0.327,
    0.9,
    0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604,
    1,
    1,
]
_TS_BTILDE = [
    -1.780011052225771443378550607539534775944678804333659557637450799792588061629796e-03,
    -8.164344596567469032236360633546862401862537590159047610940604670770447527463931e-04,
    7.880878010261996010314727672526304238628733777103128603258129604952959142646516e-03,
    -1.44711007173262907537165147972635116720922712343167677619514233896760819649515e-01,
    5.823571654525552250199376106520421794260781239567387797673045438803694038950012e-01,
    -4.580821059291869466616365188325542974428047279788398179474684434732070620889539e-01,
    1 / 66,
]
# Free 4th-order interpolant (OrdinaryDiffEq Tsit5Interp): b1(θ) = θ(r11 + r12 θ + r13 θ² + r14 θ³),
# b_i(θ) = θ²(r_i2 + r_i3 θ + r_i4 θ²).
_TS_P = [
    [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
    [0.0, 0.13169999999999998, -0.2234, 0.1017],
    [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
    [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
    [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
    [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
    [0.0, 1.5, -4.0, 2.5],
]


def _tsit5():
    b = list(_TS_A[6])
    t = _make("tsit5", _TS_A, b, _TS_C, None, 5, 4, (5, 6), 3.5068, P=np.array(_TS_P))
    # btilde is given directly to full precision rather than as bhat - b.
    object.__setattr__(t, "btilde", _frozen(_TS_BTILDE))
    return t


# --- Dormand–Prince 5(4) ----------------------------------------------------------------------------
def _dp5():
    F = Fr
    A = [
        [0] * 7,
        [F(1, 5)] + [0] * 6,
        [F(3, 40), F(9, 40)] + [0] * 5,
        [F(44, 45), F(-56, 15), F(32, 9)] + [0] * 4,
        [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)] + [0] * 3,
        [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)] + [0] * 2,
        [F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0],
    ]
    b = [F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0)]
    bhat = [F(5179, 57600), F(0), F(7571, 16695), F(393, 640), F(-92097, 339200), F(187, 2100), F(1, 40)]
    c = [0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1]
    # SciPy RK45.P: y(θ) = y0 + h Σ_i (Σ_m P_im θ^(m+1)) k_i (identical to Hairer's dense output).
    P = [
        [1, F(-8048581381, 2820520608), F(8663915743, 2820520608), F(-12715105075, 11282082432)],
        [0, 0, 0, 0],
        [0, F(131558114200, 32700410799), F(-68118460800, 10900136933), F(87487479700, 32700410799)],
        [0, F(-1754552775, 470086768), F(14199869525, 1410260304), F(-10690763975, 1880347072)],
        [0, F(127303824393, 49829197408), F(-318862633887, 49829197408), F(701980252875, 199316789632)],
        [0, F(-282668133, 205662961), F(2019193451, 616988883), F(-1453857185, 822651844)],
        [0, F(40617522, 29380423), F(-110615467, 29380423), F(69997945, 29380423)],
    ]
    return _make("dp5", A, b, c, bhat, 5, 4, (5, 6), 3.3066, P=np.array(P, dtype=float))


def _bs3():
    F = Fr
    A = [[0] * 4, [F(1, 2), 0, 0, 0], [0, F(3, 4), 0, 0], [F(2, 9), F(1, 3), F(4, 9), 0]]
    b = [F(2, 9), F(1, 3), F(4, 9), F(0)]
    bhat = [F(7, 24), F(1, 4), F(1, 3), F(1, 8)]
    c = [0, F(1, 2), F(3, 4), 1]
    # No two stages share a node below the FSAL one, so no stiffness estimate; stability boundary ≈ 2.5127.
    return _make("bs3", A, b, c, bhat, 3, 2, (), 2.5127)


def _euler():
    return _make("euler", [[0]], [Fr(1)], [0], None, 1, 0, (), 2.0)


def _rk4():
    F = Fr
    A = [[0] * 4, [F(1, 2), 0, 0, 0], [0, F(1, 2), 0, 0], [0, 0, 1, 0]]
    b = [F(1, 6), F(1, 3), F(1, 3), F(1, 6)]
    # Stage 4 (node 1) and the appended FSAL stage f(t+h, y_{n+1}) share a node.
    return _make("rk4", A, b, [0, F(1, 2), F(1, 2), 1], None, 4, 0, (3, 4), 2.7853)


TSIT5 = _tsit5()
DP5 = _dp5()
BS3 = _bs3()
EULER = _euler()
RK4 = _rk4()

ERK_TABLEAUS = {t.name: t for t in (TSIT5, DP5, BS3, EULER, RK4)}


def get_tableau(method) -> ERKTableau:
    """Look a method up by name (case-insensitive) or pass an :class:`ERKTableau` through."""
    if isinstance(method, ERKTableau):
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name or an ERKTableau, got {type(method).__name__}")
    key = method.lower()
    if key not in ERK_TABLEAUS:
        raise ValueError(f"method: unknown method {method!r}; choose one of {sorted(ERK_TABLEAUS)}")
    return ERK_TABLEAUS[key]
