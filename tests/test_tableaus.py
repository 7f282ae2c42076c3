"""Every explicit RK tableau against the theory it claims: consistency, Butcher order conditions (all 17 trees
of order ≤ 5, enumerated generically), the dense-output identities and measured interpolation order, and the
real stability boundary.  Pure NumPy on the stored coefficients: no Numba compile, runs in well under a second.
"""

import itertools
import math

import numpy as np
import pytest

from lrnde_np.tableaus import ERK_TABLEAUS, get_tableau

TABLEAUS = sorted(ERK_TABLEAUS)


# ---------------------------------------------------------------------------------------------------------
# Rooted trees.  A tree is the sorted tuple of its children's subtrees; the leaf is ().  For a tree t with
# children t_1..t_m the elementary weight is  Φ(t) = Σ_i b_i Π_k (A Ψ(t_k))_i  with Ψ(t) = Π_k (A Ψ(t_k))
# (componentwise) and Ψ(leaf) = e, so that A Ψ(leaf) = A e = c: a leaf child contributes the nodes c (the
# row-sum condition, tested on its own below).  The method has order p iff Φ(t) = 1/γ(t) for every tree with
# |t| ≤ p, where γ(t) = |t| Π_k γ(t_k) is the tree's density.


def _partitions(n, largest):
    if n == 0:
        yield ()
        return
    for k in range(min(n, largest), 0, -1):
        for rest in _partitions(n - k, k):
            yield (k,) + rest


def rooted_trees(order):
    """All rooted trees with ``order`` nodes (each once, in a canonical form)."""
    if order == 1:
        return [()]
    found = set()
    for sizes in _partitions(order - 1, order - 1):
        for children in itertools.product(*(rooted_trees(k) for k in sizes)):
            found.add(tuple(sorted(children)))
    return sorted(found)


def tree_size(tree):
    return 1 + sum(tree_size(child) for child in tree)


def density(tree):
    """γ(t)."""
    return tree_size(tree) * math.prod(density(child) for child in tree)


def stage_product(tree, A, c):
    """Ψ(t) = Π_children (A Ψ(child)), a vector over the stages, with A Ψ(leaf) = c."""
    v = np.ones(c.size)
    for child in tree:
        v = v * (c if child == () else A @ stage_product(child, A, c))
    return v


def elementary_weight(tree, A, b, c):
    return float(b @ stage_product(tree, A, c))


def test_tree_enumeration_counts_the_rooted_trees():
    # 1, 1, 2, 4, 9, 20 rooted trees with 1..6 nodes (OEIS A000081): 17 of order ≤ 5.
    assert [len(rooted_trees(k)) for k in range(1, 7)] == [1, 1, 2, 4, 9, 20]
    # The densities of the order-4 trees, written out by hand: b·c³=1/4, b·(c∘Ac)=1/8, b·Ac²=1/12, b·AAc=1/24.
    assert sorted(density(t) for t in rooted_trees(4)) == [4, 8, 12, 24]
    # The order-5 densities: 5, 10, 15, 20, 20, 30, 40, 60, 120.
    assert sorted(density(t) for t in rooted_trees(5)) == [5, 10, 15, 20, 20, 30, 40, 60, 120]


# ---------------------------------------------------------------------------------------------------------
# Structure


@pytest.mark.parametrize("name", TABLEAUS)
def test_shapes_explicitness_and_fsal_form(name):
    tab = ERK_TABLEAUS[name]
    s = tab.n_stages
    assert tab.A.shape == (s, s) and tab.b.shape == tab.c.shape == tab.btilde.shape == (s,)
    assert tab.P.shape[0] == s
    assert np.all(np.triu(tab.A) == 0.0), "explicit: A strictly lower triangular"
    # FSAL form: the last stage is f(t + h, y_{n+1}), i.e. its A row is b, its node 1, its own weight 0.
    np.testing.assert_array_equal(tab.A[-1, :], tab.b)
    assert tab.c[-1] == 1.0 and tab.b[-1] == 0.0
    assert tab.stages in (s, s - 1)
    assert get_tableau(name.upper()) is tab and get_tableau(tab) is tab
    if tab.stiffness_pair:
        i, j = tab.stiffness_pair
        assert i != j and tab.c[i] == tab.c[j], "the stiffness estimate needs two stages at one node"


@pytest.mark.parametrize("name", TABLEAUS)
def test_row_sums_equal_nodes(name):
    tab = ERK_TABLEAUS[name]
    np.testing.assert_allclose(tab.A.sum(axis=1), tab.c, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------
# Order conditions

# Absolute tolerance on Φ(t) - 1/γ(t).  Every stored tableau meets 1e-14 with room to spare (largest residual
# 1.8e-15, DP5).  Tsit5's coefficients are the correctly rounded float64 values of the 80-digit strings in
# OrdinaryDiffEq; with those strings (exact rational arithmetic) its quadrature conditions hold to 1e-85, and
# the stored float64 tableau meets every order-≤5 condition to 9e-16 absolute.  Two caveats, stated so they
# are not hidden: (i) relative to 1/γ the tree (Ac)∘(Ac) (γ = 20) has a 1.25e-14 residual, because A·c sums
# entries up to 13 in magnitude; (ii) writing the leaves as A·e instead of c raises Tsit5's residuals to 1.4e-14
# absolute, since the float64 row sums of its large A entries miss c by up to 8e-16 — hence leaves use c and
# the row sums are checked separately above.
ORDER_ATOL = 1e-14


def _weights(tab, which):
    if which == "b":
        return tab.b, tab.order
    return tab.b + tab.btilde, tab.error_order


@pytest.mark.parametrize("which", ["b", "bhat"])
@pytest.mark.parametrize("name", TABLEAUS)
def test_order_conditions_hold_up_to_the_claimed_order(name, which):
    tab = ERK_TABLEAUS[name]
    w, order = _weights(tab, which)
    checked = 0
    for k in range(1, order + 1):
        for tree in rooted_trees(k):
            phi = elementary_weight(tree, tab.A, w, tab.c)
            assert abs(phi - 1.0 / density(tree)) <= ORDER_ATOL, (name, which, tree, phi, 1.0 / density(tree))
            checked += 1
    assert checked == [0, 1, 2, 4, 8, 17][order]


@pytest.mark.parametrize("which", ["b", "bhat"])
@pytest.mark.parametrize("name", TABLEAUS)
def test_claimed_order_is_not_an_underestimate(name, which):
    """Some tree of order p+1 fails by far more than rounding: the claimed order is the exact order."""
    tab = ERK_TABLEAUS[name]
    w, order = _weights(tab, which)
    if which == "bhat" and order == 0:
        np.testing.assert_array_equal(tab.btilde, 0.0)  # fixed-step methods carry no error estimate
        return
    worst = max(abs(elementary_weight(t, tab.A, w, tab.c) - 1.0 / density(t)) for t in rooted_trees(order + 1))
    assert worst > 1e-6


@pytest.mark.parametrize("name", [n for n in TABLEAUS if ERK_TABLEAUS[n].adaptive])
def test_error_weights_sum_to_zero(name):
    # btilde = bhat - b with both consistent (Σ = 1), so the error estimate of y' = const is exactly 0.
    assert abs(ERK_TABLEAUS[name].btilde.sum()) <= 1e-15


def test_published_values():
    # Spot checks against solver-facts.md: DP5 btilde (= scipy's E) and Tsit5's last error weight.
    np.testing.assert_allclose(
        ERK_TABLEAUS["dp5"].btilde,
        [-71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40],
        rtol=1e-15,
        atol=1e-18,
    )
    np.testing.assert_allclose(ERK_TABLEAUS["bs3"].btilde, [5 / 72, -1 / 12, -1 / 9, 1 / 8], rtol=1e-15)
    assert ERK_TABLEAUS["tsit5"].btilde[-1] == 1 / 66
    assert ERK_TABLEAUS["tsit5"].A[1, 0] == 0.161 and ERK_TABLEAUS["tsit5"].c[2] == 0.327


# ---------------------------------------------------------------------------------------------------------
# Dense output

THETAS = np.linspace(0.0, 1.0, 21)


def _dweights(tab, theta):
    """d/dθ b_i(θ)."""
    m = np.arange(1, tab.P.shape[1] + 1)
    return tab.P @ (m * theta ** (m - 1))


@pytest.mark.parametrize("name", TABLEAUS)
def test_interpolant_identities(name):
    tab = ERK_TABLEAUS[name]
    np.testing.assert_array_equal(tab.dense_weights(0.0), 0.0)
    # b(1) = b: Tsit5's interpolant coefficients are rounded independently of its a7 row (agree to 6.7e-15).
    np.testing.assert_allclose(tab.dense_weights(1.0), tab.b, rtol=0, atol=1e-14)
    for theta in THETAS:
        assert abs(tab.dense_weights(theta).sum() - theta) <= 1e-14  # exact for y' = const
    # C¹ across steps: y'(t_n) = k_1 and y'(t_{n+1}) = k_s = f(t_{n+1}, y_{n+1}) (the FSAL stage).
    e_first = np.zeros(tab.n_stages)
    e_first[0] = 1.0
    e_last = np.zeros(tab.n_stages)
    e_last[-1] = 1.0
    np.testing.assert_allclose(_dweights(tab, 0.0), e_first, rtol=0, atol=1e-13)
    np.testing.assert_allclose(_dweights(tab, 1.0), e_last, rtol=0, atol=1e-13)


def _polynomial_rhs(t, y):
    # y1' = y1², y2' = t·y1 with y(0) = (1, 0):  y1 = 1/(1-t),  y2 = -t - log(1-t)  (coupled, non-autonomous).
    return np.array([y[0] ** 2, t * y[0]])


def _exact(t):
    return np.array([1.0 / (1.0 - t), -t - math.log1p(-t)])


def _one_step_dense(tab, h, theta):
    y0 = _exact(0.0)
    K = np.zeros((tab.n_stages, 2))
    for i in range(tab.n_stages):
        K[i] = _polynomial_rhs(tab.c[i] * h, y0 + h * (tab.A[i, :i] @ K[:i]))
    return y0 + h * (tab.dense_weights(theta) @ K)


# Interpolant order q: y(θh) is reproduced with a local error O(h^(q+1)).  Tsit5 and DP5 have free 4th-order
# interpolants; the cubic Hermite used for BS3 and RK4 is 3rd order.  Measured local slopes are 5.3 / 5.1 /
# 4.1 / 4.2; the bound allows the usual ±0.3 of a log-log regression.
@pytest.mark.parametrize("name,q", [("tsit5", 4), ("dp5", 4), ("bs3", 3), ("rk4", 3)])
def test_dense_output_order_at_mid_step(name, q):
    tab = ERK_TABLEAUS[name]
    hs = 0.2 / 2.0 ** np.arange(5)
    errors = [np.abs(_one_step_dense(tab, h, 0.5) - _exact(0.5 * h)).max() for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert slope >= q + 1 - 0.3, (name, slope, errors)
    # And the step end itself (θ = 1) has the method's order: local error O(h^(p+1)).
    # (Largest four h only: at h = 0.0125 Tsit5's end-point error is already at round-off, 7e-15.)
    end_errors = [np.abs(_one_step_dense(tab, h, 1.0) - _exact(h)).max() for h in hs[:4]]
    end_slope = np.polyfit(np.log(hs[:4]), np.log(end_errors), 1)[0]
    assert end_slope >= tab.order + 1 - 0.3, (name, end_slope)


# ---------------------------------------------------------------------------------------------------------
# Linear stability


def stability_polynomial(tab):
    """Coefficients (lowest degree first) of R(z) = 1 + z bᵀ(I - zA)⁻¹e = 1 + Σ_k z^k bᵀA^(k-1)e."""
    coef = [1.0]
    v = np.ones(tab.n_stages)
    for _ in range(tab.n_stages):
        coef.append(float(tab.b @ v))
        v = tab.A @ v
    return np.array(coef)


def real_stability_boundary(tab):
    """Smallest x > 0 with |R(-x)| = 1: scan outwards for the first x with |R(-x)| > 1, then bisect."""
    R = np.polynomial.Polynomial(stability_polynomial(tab))
    xs = np.arange(1, 1001) * 0.01
    outside = np.abs(R(-xs)) > 1.0
    assert outside.any(), "no crossing below |z| = 10"
    k = int(np.argmax(outside))
    lo, hi = xs[k - 1], xs[k]
    assert np.all(np.abs(R(-xs[:k])) <= 1.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if abs(R(-mid)) > 1.0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi), R


@pytest.mark.parametrize("name", TABLEAUS)
def test_stability_size_is_the_real_stability_boundary(name):
    tab = ERK_TABLEAUS[name]
    x, R = real_stability_boundary(tab)
    assert abs(abs(R(-x)) - 1.0) < 1e-9
    assert abs(x - tab.stability_size) <= 1e-3, (name, x, tab.stability_size)


@pytest.mark.parametrize("name", TABLEAUS)
def test_stability_polynomial_matches_the_order(name):
    # R(z) agrees with e^z through z^p (the tall trees' conditions bᵀA^(k-1)e = 1/k!).
    tab = ERK_TABLEAUS[name]
    coef = stability_polynomial(tab)
    for k in range(tab.order + 1):
        assert abs(coef[k] - 1.0 / math.factorial(k)) <= 1e-14
    assert abs(coef[tab.order + 1] - 1.0 / math.factorial(tab.order + 1)) > 1e-6
