"""Native lowerings of the loss ops (nn_loss.py): NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss.

Inputs are viewed as (N, C, D) with D the product of the trailing dims; the target as (N, D).
Each position (n, d) picks its class t = target[n, d]: loss = -input[n, t, d] * weight[t], or 0
where t == ignore_index. A class outside [0, C) is clamped (the reference raises instead).
`none` stores the loss per position (positions in parallel); `sum` and `mean` (the weighted mean
sum(loss) / sum(weight)) accumulate serially in float64. SoftmaxCrossEntropyLoss first takes the
log-softmax over C at each position (and stores it when log_prob is asked for).
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Const, For, Let, Store, Var, add, mul, product


def _loss(ctx: LowerCtx, softmax: bool):
    x, target = ctx.inputs[0], ctx.inputs[1]
    weight = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    y = ctx.outputs[0]
    log_prob = ctx.outputs[1] if softmax and len(ctx.outputs) > 1 else None
    dt = x.dtype
    if dt not in FLOAT or x.rank < 2 or target.dtype not in ("i32", "i64"):
        raise NotLowerable("losses over float inputs and integer targets")
    if (weight is not None and weight.dtype != dt) or y.dtype != dt or \
            (log_prob is not None and log_prob.dtype != dt):
        raise NotLowerable("loss operands of mixed float types")
    reduction = ctx.attrs["reduction"]
    if reduction not in ("none", "sum", "mean"):
        raise NotLowerable(f"loss reduction {reduction!r}")
    ignore = ctx.attrs["ignore_index"]
    N, C = x.shape[0], x.shape[1]
    D = product(x.shape[2:])
    p = Var(ctx.fresh("p"))                      # position n * D + d
    n, d = ctx.fresh("n"), ctx.fresh("d")
    nv, dv = Var(n), Var(d)
    t, safe = ctx.fresh("t"), ctx.fresh("cls")
    tv, sv = Var(t), Var(safe)
    at = lambda cls: add(mul(add(mul(nv, C), cls), D), dv)      # flat index of x[n, cls, d]
    body = [Let(n, binop("/", p, D), "i64"), Let(d, binop("%", p, D), "i64"),
            Let(t, cast(target.load(p), "i64"), "i64"),
            Let(safe, minimum(maximum(tv, Const(0)), binop("-", C, Const(1))), "i64")]
    if softmax:                                  # log-softmax over the classes at (n, d)
        k = Var(ctx.fresh("k"))
        m, s, lse = ctx.fresh("m"), ctx.fresh("s"), ctx.fresh("lse")
        mv, svv = Var(m, dt), Var(s, dt)
        xk = x.load(at(k))
        body += [Let(m, c(float("-inf"), dt), dt), For(k.name, C, [Assign(m, maximum(mv, xk))]),
                 Let(s, c(0, dt), dt),
                 For(k.name, C, [Assign(s, binop("+", svv, call("exp", binop("-", xk, mv))))]),
                 Let(lse, call("log", svv), dt)]
        lp = lambda cls: binop("-", binop("-", x.load(at(cls)), mv), Var(lse, dt))
        if log_prob is not None:
            body.append(For(k.name, C, [Store(log_prob.buf, at(k), lp(k))]))
        picked = lp(sv)
    else:
        picked = x.load(at(sv))
    keep = c(True, "bool") if ignore is None else binop("!=", tv, Const(int(ignore)))
    w_of = weight.load(sv) if weight is not None else c(1, dt)
    w, loss = ctx.fresh("w"), ctx.fresh("loss")
    body += [Let(w, select(keep, w_of, c(0, dt)), dt),
             Let(loss, binop("*", binop("-", c(0, dt), picked), Var(w, dt)), dt)]
    positions = mul(N, D)
    if reduction == "none":
        body.append(Store(y.buf, p, Var(loss, dt)))
        return [For(p.name, positions, body, "parallel")]
    total, wsum = ctx.fresh("total"), ctx.fresh("wsum")
    body += [Assign(total, binop("+", Var(total, "f64"), cast(Var(loss, dt), "f64"))),
             Assign(wsum, binop("+", Var(wsum, "f64"), cast(Var(w, dt), "f64")))]
    result = Var(total, "f64")
    if reduction == "mean":
        result = binop("/", result, Var(wsum, "f64"))
    return [Let(total, c(0, "f64"), "f64"), Let(wsum, c(0, "f64"), "f64"),
            For(p.name, positions, body, "serial"), Store(y.buf, Const(0), cast(result, dt))]


LOWER = {"NegativeLogLikelihoodLoss": lambda ctx: _loss(ctx, False),
         "SoftmaxCrossEntropyLoss": lambda ctx: _loss(ctx, True)}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
