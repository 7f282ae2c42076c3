"""Numba types shared by every kernel.

Right-hand sides are passed to the compiled solver loops as *first-class function values* of a fixed
signature rather than as Numba dispatchers.  A dispatcher argument makes Numba specialise (and re-key the
on-disk cache of) every loop per right-hand side, so nothing could ever be loaded from the cache; a
``FunctionType`` argument keeps one cached machine-code version of each loop for all right-hand sides at
the price of an indirect call (a few nanoseconds).
"""

from numba import types

F64 = types.float64
I64 = types.int64
B1 = types.boolean
ARR1 = types.float64[::1]
ARR2 = types.float64[:, ::1]
ARR3 = types.float64[:, :, ::1]
IARR1 = types.int64[::1]

#: ``f(t, y, p, out)``: writes dy/dt into ``out``.
RHS_SIG = types.void(F64, ARR1, ARR1, ARR1)
RHS = types.FunctionType(RHS_SIG)

#: ``f_vjp(t, y, p, a, out_y, out_p)``: ``out_y = aᵀ ∂f/∂y``, ``out_p = aᵀ ∂f/∂p`` (overwritten).
VJP_SIG = types.void(F64, ARR1, ARR1, ARR1, ARR1, ARR1)
VJP = types.FunctionType(VJP_SIG)

#: ``f_value_vjp(t, y, p, a, out_f, out_y, out_p)``: ``out_f = f``, and the VJP as above, from one forward pass
#: (the backsolve adjoint's augmented dynamics need both at the same point).
VALUE_VJP_SIG = types.void(F64, ARR1, ARR1, ARR1, ARR1, ARR1, ARR1)
VALUE_VJP = types.FunctionType(VALUE_VJP_SIG)

#: ``f_jvp(t, y, p, v, out)``: ``out = ∂f/∂y · v``.
JVP_SIG = types.void(F64, ARR1, ARR1, ARR1, ARR1)
JVP = types.FunctionType(JVP_SIG)

#: Tableau coefficients are frozen (read-only) arrays.
RO1 = types.Array(types.float64, 1, "C", readonly=True)
RO2 = types.Array(types.float64, 2, "C", readonly=True)

from ._jit import function_type_maker  # noqa: E402

#: Inside kernels: ``f = rhs_from(c_addr, jit_addr)`` rebuilds a right-hand side from a FunctionHandle.
rhs_from = function_type_maker(RHS_SIG)
vjp_from = function_type_maker(VJP_SIG)
jvp_from = function_type_maker(JVP_SIG)
value_vjp_from = function_type_maker(VALUE_VJP_SIG)


def handle_as_floats(handle):
    """A FunctionHandle's two addresses bit-cast to two float64, to travel inside a parameter vector.

    Composite right-hand sides (the adjoints' augmented dynamics) are ordinary ``f(t, y, ctx, out)``
    functions whose ``ctx`` carries the inner functions this way; :func:`rhs_at`/:func:`vjp_at` read them back.
    """
    import numpy as np

    return np.array(handle.addresses, dtype=np.int64).view(np.float64)


from numba import njit  # noqa: E402

from ._jit import float_bits_as_int  # noqa: E402


@njit(cache=True, inline="always")
def rhs_at(ctx, offset):
    """The RHS whose addresses :func:`handle_as_floats` stored at ``ctx[offset:offset+2]``."""
    return rhs_from(float_bits_as_int(ctx[offset]), float_bits_as_int(ctx[offset + 1]))


@njit(cache=True, inline="always")
def vjp_at(ctx, offset):
    """The VJP whose addresses :func:`handle_as_floats` stored at ``ctx[offset:offset+2]``."""
    return vjp_from(float_bits_as_int(ctx[offset]), float_bits_as_int(ctx[offset + 1]))


@njit(cache=True, inline="always")
def value_vjp_at(ctx, offset):
    """The fused value-and-VJP function stored at ``ctx[offset:offset+2]``."""
    return value_vjp_from(float_bits_as_int(ctx[offset]), float_bits_as_int(ctx[offset + 1]))
