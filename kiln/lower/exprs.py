"""Small builders for loop IR expressions, used by ops' `scalar` and `lower` functions."""
from __future__ import annotations

from .context import NotLowerable
from .loopir import Bin, Call, Cast, Const, Select, Un

FLOAT = ("f32", "f64")
# (lowest, highest) value of each native integer dtype
INT_RANGE = {"i8": (-2**7, 2**7 - 1), "i16": (-2**15, 2**15 - 1), "i32": (-2**31, 2**31 - 1),
             "i64": (-2**63, 2**63 - 1), "u8": (0, 2**8 - 1), "u16": (0, 2**16 - 1),
             "u32": (0, 2**32 - 1), "u64": (0, 2**64 - 1)}


def c(value, dtype: str) -> Const:
    """A constant of the given dtype."""
    if dtype in FLOAT:
        return Const(float(value), dtype)
    if dtype == "bool":
        return Const(bool(value), dtype)
    return Const(int(value), dtype)


def binop(op: str, a, b):
    dtype = "bool" if op in ("<", "<=", ">", ">=", "==", "!=", "&&", "||") else a.dtype
    return Bin(op, a, b, dtype)


def call(fn: str, *args):
    if args[0].dtype not in FLOAT:
        raise NotLowerable(f"{fn} on {args[0].dtype} has no native lowering")
    return Call(fn, tuple(args), args[0].dtype)


def select(cond, a, b):
    return Select(cond, a, b, a.dtype)


def cast(x, dtype: str):
    return x if x.dtype == dtype else Cast(x, dtype)


def neg(x):
    return Un("neg", x, x.dtype)


def maximum(a, b):
    return Bin("max", a, b, a.dtype)


def minimum(a, b):
    return Bin("min", a, b, a.dtype)


def require_float(x, what: str):
    if x.dtype not in FLOAT:
        raise NotLowerable(f"{what} on {x.dtype} has no native lowering")
    return x
