"""Native lowerings of the activation ops (activation.py) as scalar expressions (float only,
except Relu and LeakyRelu-style selects that also work on integers)."""
from __future__ import annotations

import math

from ..lower.exprs import binop, c, call, maximum, minimum, neg, require_float, select


def _f(x, v):
    return c(v, x.dtype)


def _sigmoid(x):
    require_float(x, "Sigmoid")
    return binop("/", _f(x, 1), binop("+", _f(x, 1), call("exp", neg(x))))


def _softplus(x):
    # max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|
    return binop("+", maximum(x, _f(x, 0)), call("log1p", call("exp", neg(call("fabs", x)))))


def _expm1_neg_part(x):
    return call("expm1", minimum(x, _f(x, 0)))


def _gelu(ctx, x):
    require_float(x, "Gelu")
    if ctx.attrs["approximate"] == "tanh":
        cube = binop("*", binop("*", x, x), x)
        inner = binop("*", _f(x, math.sqrt(2 / math.pi)), binop("+", x, binop("*", _f(x, 0.044715), cube)))
        return binop("*", binop("*", _f(x, 0.5), x), binop("+", _f(x, 1), call("tanh", inner)))
    return binop("*", binop("*", _f(x, 0.5), x),
                 binop("+", _f(x, 1), call("erf", binop("*", x, _f(x, 1 / math.sqrt(2))))))


def _relu(ctx, x):
    return maximum(x, _f(x, 0)) if x.dtype.startswith("f") else \
        select(binop("<", x, _f(x, 0)), _f(x, 0), x)


def _hard_sigmoid(ctx, x):
    a = ctx.attrs
    y = binop("+", binop("*", _f(require_float(x, "HardSigmoid"), a["alpha"]), x), _f(x, a["beta"]))
    return minimum(maximum(y, _f(x, 0)), _f(x, 1))


def _elu(ctx, x):
    require_float(x, "Elu")
    return select(binop(">", x, _f(x, 0)), x, binop("*", _f(x, ctx.attrs["alpha"]), _expm1_neg_part(x)))


def _selu(ctx, x):
    require_float(x, "Selu")
    a = ctx.attrs
    inner = select(binop(">", x, _f(x, 0)), x, binop("*", _f(x, a["alpha"]), _expm1_neg_part(x)))
    return binop("*", _f(x, a["gamma"]), inner)


def _celu(ctx, x):
    require_float(x, "Celu")
    alpha = ctx.attrs["alpha"]
    neg_part = binop("*", _f(x, alpha), call("expm1", binop("/", x, _f(x, alpha))))
    return binop("+", maximum(x, _f(x, 0)), minimum(_f(x, 0), neg_part))


def _leaky(ctx, x):
    require_float(x, "LeakyRelu")
    return select(binop(">=", x, _f(x, 0)), x, binop("*", _f(x, ctx.attrs["alpha"]), x))


def _prelu(ctx, x, slope):
    require_float(x, "PRelu")
    return select(binop(">=", x, _f(x, 0)), x, binop("*", slope, x))


def _thresholded(ctx, x):
    require_float(x, "ThresholdedRelu")
    return select(binop(">", x, _f(x, ctx.attrs["alpha"])), x, _f(x, 0))


def _softsign(ctx, x):
    require_float(x, "Softsign")
    return binop("/", x, binop("+", _f(x, 1), call("fabs", x)))


def _hard_swish(ctx, x):
    require_float(x, "HardSwish")
    gate = minimum(maximum(binop("+", binop("/", x, _f(x, 6)), _f(x, 0.5)), _f(x, 0)), _f(x, 1))
    return binop("*", x, gate)


def _mish(ctx, x):
    require_float(x, "Mish")
    return binop("*", x, call("tanh", _softplus(x)))


def _swish(ctx, x):
    return binop("*", x, _sigmoid(binop("*", _f(require_float(x, "Swish"), ctx.attrs["alpha"]), x)))


def _shrink(ctx, x):
    require_float(x, "Shrink")
    a = ctx.attrs
    lo = binop("<", x, _f(x, -a["lambd"]))
    hi = binop(">", x, _f(x, a["lambd"]))
    return select(lo, binop("+", x, _f(x, a["bias"])),
                  select(hi, binop("-", x, _f(x, a["bias"])), _f(x, 0)))


SCALAR = {
    "Relu": _relu, "Sigmoid": lambda ctx, x: _sigmoid(x), "HardSigmoid": _hard_sigmoid,
    "Elu": _elu, "Selu": _selu, "Celu": _celu, "LeakyRelu": _leaky, "PRelu": _prelu,
    "ThresholdedRelu": _thresholded, "Softplus": lambda ctx, x: _softplus(require_float(x, "Softplus")),
    "Softsign": _softsign, "HardSwish": _hard_swish, "Mish": _mish, "Gelu": _gelu,
    "Swish": _swish, "Shrink": _shrink,
}


def attach(ops) -> None:
    for d in ops:
        if d.name in SCALAR:
            d.scalar = SCALAR[d.name]
