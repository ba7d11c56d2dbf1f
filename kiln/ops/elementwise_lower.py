"""Native lowerings of the elementwise ops (elementwise.py) as scalar expressions.

Each entry maps an op to `scalar(ctx, *inputs) -> Expr`; the generic broadcasting loop nest
(kiln/lower/context.py) wraps it. Cases numpy handles differently from C (integer division by zero,
shifts past the width) are guarded to give numpy's answer, not undefined behaviour.
"""
from __future__ import annotations

from functools import reduce

from ..ir import dtypes
from ..lower.context import NotLowerable, lower_elementwise
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, neg, require_float, select
from ..lower.loopir import Un

BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "u8": 8, "u16": 16, "u32": 32, "u64": 64}


def _float_call(fn):
    return lambda ctx, x: call(fn, x)


def _abs(ctx, x):
    if x.dtype in FLOAT:
        return call("fabs", x)
    if x.dtype.startswith("u") or x.dtype == "bool":
        return x
    return select(binop("<", x, c(0, x.dtype)), neg(x), x)


def _sign(ctx, x):
    one, zero = c(1, x.dtype), c(0, x.dtype)
    return select(binop(">", x, zero), one, select(binop("<", x, zero), c(-1, x.dtype), zero if x.dtype not in FLOAT else x))


def _reciprocal(ctx, x):
    return binop("/", c(1, require_float(x, "Reciprocal").dtype), x)


def _bitnot(ctx, x):
    if x.dtype not in BITS:
        raise NotLowerable("BitwiseNot needs an integer")
    return Un("bitnot", x, x.dtype)


def _is_inf(ctx, x):
    require_float(x, "IsInf")
    a = ctx.attrs
    pos = binop("==", x, c(float("inf"), x.dtype)) if a["detect_positive"] else c(False, "bool")
    neg_ = binop("==", x, c(float("-inf"), x.dtype)) if a["detect_negative"] else c(False, "bool")
    return binop("||", pos, neg_)


def _div(ctx, a, b):
    if a.dtype in FLOAT:
        return binop("/", a, b)
    zero = c(0, a.dtype)
    return select(binop("==", b, zero), zero, binop("/", a, select(binop("==", b, zero), c(1, b.dtype), b)))


def _pow(ctx, a, b):
    require_float(a, "Pow")
    return call("pow", a, cast(b, a.dtype))


def _mod(ctx, a, b):
    fmod = ctx.attrs["fmod"]
    if a.dtype in FLOAT:
        if fmod:
            return binop("%", a, b)
        r = binop("%", a, b)           # sign of the divisor, as numpy's mod
        fix = binop("&&", binop("!=", r, c(0, a.dtype)), binop("!=", binop("<", r, c(0, a.dtype)), binop("<", b, c(0, a.dtype))))
        return select(fix, binop("+", r, b), r)
    zero = c(0, a.dtype)
    safe_b = select(binop("==", b, zero), c(1, b.dtype), b)
    r = binop("%", a, safe_b) if fmod or a.dtype.startswith("u") else \
        cast(binop("floormod", cast(a, "i64"), cast(safe_b, "i64")), a.dtype)
    return select(binop("==", b, zero), zero, r)


def _bitshift(ctx, x, s):
    if x.dtype not in BITS:
        raise NotLowerable("BitShift needs integers")
    bits = BITS[x.dtype]
    s64 = cast(s, "i64")
    outside = binop("||", binop("<", s64, c(0, "i64")), binop(">=", s64, c(bits, "i64")))
    safe = select(outside, c(0, "i64"), s64)
    if ctx.attrs["direction"] == "LEFT":
        return select(outside, c(0, x.dtype), cast(binop("<<", x, safe), x.dtype))
    fill = c(0, x.dtype) if x.dtype.startswith("u") else \
        select(binop("<", x, c(0, x.dtype)), c(-1, x.dtype), c(0, x.dtype))
    return select(outside, fill, cast(binop(">>", x, safe), x.dtype))


def _bitwise(op):
    def scalar(ctx, a, b):
        if a.dtype not in BITS and a.dtype != "bool":
            raise NotLowerable("bitwise ops need integers")
        return cast(binop(op, a, b), a.dtype)
    return scalar


def _arith(op):
    def scalar(ctx, a, b):
        if a.dtype == "bool":
            raise NotLowerable(f"{op} on bool")
        return cast(binop(op, a, b), a.dtype)
    return scalar


def _fold(fn, mean=False):
    def scalar(ctx, *xs):
        xs = [x for x in xs if x is not None]
        if mean:
            require_float(xs[0], "Mean")
        y = reduce(fn, xs)
        return binop("/", y, c(len(xs), y.dtype)) if mean else y
    return scalar


def _clip(ctx, x, lo=None, hi=None):
    y = x
    if lo is not None:
        y = maximum(y, cast(lo, x.dtype))
    if hi is not None:
        y = minimum(y, cast(hi, x.dtype))
    return y


def _cast_expr(x, target: str):
    if target not in FLOAT + tuple(BITS) + ("bool",):
        raise NotLowerable(f"Cast to {target} has no native lowering")
    if target == "bool":
        return binop("!=", x, c(0, x.dtype))
    return cast(x, target)


def _cast(ctx, x):
    return _cast_expr(x, dtypes.from_onnx(ctx.attrs["to"]).name)


def _lower_cast_like(ctx):
    target = ctx.inputs[1].dtype
    ctx.inputs = [ctx.inputs[0], None]
    return lower_elementwise(ctx, lambda ctx, x, _t=None: _cast_expr(x, target))


SCALAR = {
    "Abs": _abs, "Neg": lambda ctx, x: cast(neg(x), x.dtype), "Sign": _sign,
    "Ceil": _float_call("ceil"), "Floor": _float_call("floor"), "Round": _float_call("round"),
    "Reciprocal": _reciprocal, "Sqrt": _float_call("sqrt"), "Exp": _float_call("exp"),
    "Log": _float_call("log"), "Erf": _float_call("erf"),
    **{n: _float_call(n.lower()) for n in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
                                             "Cosh", "Tanh", "Asinh", "Acosh", "Atanh")},
    "BitwiseNot": _bitnot, "Not": lambda ctx, x: Un("not", x, "bool"),
    "IsNaN": lambda ctx, x: binop("!=", require_float(x, "IsNaN"), x), "IsInf": _is_inf,
    "Add": _arith("+"), "Sub": _arith("-"), "Mul": _arith("*"), "Div": _div, "Pow": _pow,
    "Mod": _mod, "BitShift": _bitshift,
    "BitwiseAnd": _bitwise("&"), "BitwiseOr": _bitwise("|"), "BitwiseXor": _bitwise("^"),
    "And": lambda ctx, a, b: binop("&&", a, b), "Or": lambda ctx, a, b: binop("||", a, b),
    "Xor": lambda ctx, a, b: binop("!=", a, b),
    "Equal": lambda ctx, a, b: binop("==", a, b), "Greater": lambda ctx, a, b: binop(">", a, b),
    "GreaterOrEqual": lambda ctx, a, b: binop(">=", a, b), "Less": lambda ctx, a, b: binop("<", a, b),
    "LessOrEqual": lambda ctx, a, b: binop("<=", a, b),
    "Max": _fold(maximum), "Min": _fold(minimum), "Sum": _fold(lambda a, b: binop("+", a, b)),
    "Mean": _fold(lambda a, b: binop("+", a, b), mean=True),
    "Where": lambda ctx, cond, x, y: select(cond, x, y), "Clip": _clip, "Cast": _cast,
}
LOWER = {"CastLike": _lower_cast_like}


def attach(ops) -> None:
    """Give each op of elementwise.py its native lowering."""
    for d in ops:
        if d.name in SCALAR:
            d.scalar = SCALAR[d.name]
        if d.name in LOWER:
            d.lower = LOWER[d.name]
