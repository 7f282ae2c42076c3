"""tanh that LLVM can vectorise: the hidden-layer activation of every model here.

``math.tanh`` is an opaque libm call (~20 ns per element here), so a loop over a layer's 50 pre-activations
spends most of the spiral field's evaluation inside it.  This version is straight-line arithmetic, which
LLVM turns into AVX2 code: ~3 ns per element (``python -m lrnde_np.benchmarks.ode`` reports the RHS call).

How (the Cephes recipe, branch-free so that lanes need not agree):

* |x| < 0.625: Cephes' odd rational ``x + x·z·P(z)/Q(z)``, z = x², degrees 2/3.
* |x| ≥ 0.625: ``1 − 2/(e^{2|x|} + 1)`` with e^v = 2^n·exp(r), v = n·ln2 + r, |r| ≤ ln2/2 (Cody–Waite
  split of ln2), exp(r) by its degree-13 Taylor polynomial (truncation r¹⁴/14! < 5e-18), and 2^n written
  straight into the exponent bits.  n comes from the 1.5·2⁵² "magic number" rounding, so no float→int
  conversion (which AVX2 lacks) is needed.  |x| is clamped at 20, where tanh is 1 in double precision.
* The sign is copied bitwise from x, so tanh(−0) = −0; NaN passes through.

Accuracy, measured against long-double ``tanh`` on 10⁶ points per decade of |x| from 1e-300 to 30
(``tests/test_nn.py::test_vector_tanh_is_within_two_ulp``): at most 1.4 ulp (libm: 1.2 ulp).

``error_model="numpy"`` drops Numba's divide-by-zero checks (the denominators here are ≥ 1), which would
otherwise stop vectorisation; ``contract`` allows fused multiply-adds and changes no rounding analysis above.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["tanh_into", "tanh_scalar"]


@intrinsic
def _float_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_from_float(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


_SIGN_BIT = -0x8000000000000000  # int64 with only bit 63 set
_MAGIC = 6755399441055744.0  # 1.5·2⁵²: adding it rounds to an integer held in the low mantissa bits
_MAGIC_BITS = 0x4338000000000000  # its bit pattern
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln2 = _LN2_HI + _LN2_LO, _LN2_HI with trailing zero bits
_LN2_LO = 1.90821492927058770002e-10
_SMALL = 0.625  # below it the rational form; above it the exponential one
_SATURATE = 20.0  # 1 − tanh(20) ≈ 8.5e-18 < half an ulp of 1

# Cephes tanh.c, |x| < 0.625: tanh x = x + x·z·P(z)/Q(z), z = x².
_P0, _P1, _P2 = -9.64399179425052238628e-01, -9.92877231001918586564e01, -1.61468768441708447952e03
_Q0, _Q1, _Q2 = 1.12811678491632931402e02, 2.23548839060100448583e03, 4.84406305325125486048e03

_OPTIONS = dict(cache=True, error_model="numpy", fastmath={"contract"})


@njit(inline="always", **_OPTIONS)
def _exp_reduced(v):
    """e^v for 0 ≤ v ≤ 40."""
    k = v * _LOG2E + _MAGIC
    n = k - _MAGIC
    r = (v - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # The low bits of k's pattern hold n; shift n + 1023 into the exponent field to make 2^n.
    return p * _float_from_bits((_bits_from_float(k) - _MAGIC_BITS + 1023) << 52)


@njit(inline="always", **_OPTIONS)
def tanh_scalar(x):
    """tanh(x), inlined into the caller (whose loop it lets vectorise)."""
    ax = min(abs(x), _SATURATE)
    z = ax * ax
    small = ax + ax * z * (((_P0 * z + _P1) * z + _P2) / (((z + _Q0) * z + _Q1) * z + _Q2))
    large = 1.0 - 2.0 / (_exp_reduced(2.0 * ax) + 1.0)
    t = small if ax < _SMALL else large
    signed = _float_from_bits(_bits_from_float(t) | (_bits_from_float(x) & _SIGN_BIT))
    return x if x != x else signed


@njit(**_OPTIONS)
def tanh_into(z, a):
    """a[k] = tanh(z[k]) for every k (a may be z)."""
    for k in range(z.size):
        a[k] = tanh_scalar(z[k])
