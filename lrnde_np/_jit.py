"""Right-hand sides passed to the compiled loops as raw function addresses."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.experimental.function_type import _get_jit_address, _get_wrapper_address
from numba.extending import intrinsic


class FunctionHandle:
    """A compiled function as the two machine addresses the kernels need, plus the dispatcher that owns them.

    Passing a Numba dispatcher into a compiled loop costs ~60 µs per call (Numba re-resolves the function's
    addresses in Python each time) and, typed as a dispatcher, re-keys the loop's on-disk cache for every
    function.  Handing the loops two integers and rebuilding the first-class function value inside
    (:func:`function_from_addresses`) costs nothing and keeps one cached loop for all right-hand sides.
    The handle keeps the dispatcher alive so that the addresses stay valid.
    """

    __slots__ = ("dispatcher", "signature", "c_addr", "jit_addr", "source", "checked", "__weakref__")

    def __init__(self, dispatcher, signature):
        self.dispatcher = dispatcher
        self.signature = signature
        self.source = None  # the user's Python function (for the checked first call, ode/rhs.py)
        self.checked = set()  # (kind, n, m) sizes its checked first call passed for
        self.c_addr = _get_wrapper_address(dispatcher, signature)
        self.jit_addr = _get_jit_address(dispatcher, signature)

    @property
    def addresses(self):
        return self.c_addr, self.jit_addr

    def __call__(self, *args):
        return self.dispatcher(*args)


def function_type_maker(signature):
    """An intrinsic ``make(c_addr, jit_addr)`` returning a ``FunctionType(signature)`` value."""
    fn_type = types.FunctionType(signature)

    @intrinsic
    def make(typingctx, c_addr, jit_addr):
        def codegen(context, builder, sig, args):
            sfunc = cgutils.create_struct_proxy(fn_type)(context, builder)
            voidptr = context.get_value_type(types.voidptr)
            sfunc.c_addr = builder.inttoptr(args[0], voidptr)
            sfunc.jit_addr = builder.inttoptr(args[1], voidptr)
            sfunc.py_addr = ir.Constant(voidptr, None)
            return sfunc._getvalue()

        return fn_type(types.int64, types.int64), codegen

    return make


@intrinsic
def float_bits_as_int(typingctx, x):
    """Reinterpret the 64 bits of a float64 as an int64 (the inverse of ``int64_array.view(float64)``)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def check_interrupt(typingctx):
    """``check_interrupt()`` in compiled code: run pending signal handlers now; if one raised (Ctrl-C's
    ``KeyboardInterrupt``), leave the compiled function at once with that exception.

    Python runs signal handlers only between bytecodes, so a long compiled loop would ignore Ctrl-C until it
    ended.  The solver loops call this every few dozen steps: ``PyErr_CheckSignals`` runs the handlers (a
    custom SIGINT handler that does not raise lets the loop go on) and, when one raised, the function returns
    Numba's "Python error set" status, which every compiled caller propagates and the dispatcher turns into
    the exception itself.  Only with the GIL held (``PyGILState_Check``): code running without it (a worker
    thread) is not interrupted.  Cost: a few nanoseconds.  Arrays the interrupted function allocated are
    leaked (as with any exception raised in nopython mode).
    """

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fn_i32 = ir.FunctionType(i32, [])
        gil_check = cgutils.get_or_insert_function(builder.module, fn_i32, "PyGILState_Check")
        check = cgutils.get_or_insert_function(builder.module, fn_i32, "PyErr_CheckSignals")
        zero = ir.Constant(i32, 0)
        with builder.if_then(builder.icmp_signed("!=", builder.call(gil_check, []), zero), likely=False):
            with builder.if_then(builder.icmp_signed("!=", builder.call(check, []), zero), likely=False):
                context.call_conv.return_exc(builder)
        return context.get_dummy_value()

    return types.none(), codegen
