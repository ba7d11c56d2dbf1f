"""Native lowerings of the optimizer steps (training.py): Momentum, Adagrad, Adam, and of two
ai.onnx.ml ops (ml.py): Binarizer and ArrayFeatureExtractor.

Each optimizer input group (X..., G..., states...) becomes one elementwise loop writing the new
variable and states; the learning rate and its schedule (T) are read at run time. Arithmetic is
in float64, rounded to each output's type.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Bin, Const, For, Let, Store, Var, add, mul, sub

F64 = "f64"


def _f(v):
    return c(float(v), F64)


def _groups(ctx: LowerCtx, k: int):
    tensors = ctx.inputs[2:]
    if len(tensors) % k or any(t is None or t.dtype not in FLOAT for t in tensors):
        raise NotLowerable("optimizer inputs: groups of float tensors")
    n = len(tensors) // k
    outs = ctx.outputs
    if len(outs) != n * (k - 1) or any(o is None for o in outs):
        raise NotLowerable("optimizer outputs")
    return [tensors[i * n:(i + 1) * n] for i in range(k)], n


def _loop(ctx, ref, body):
    i = Var(ctx.fresh("i"))
    return [For(i.name, ref.numel(), body(i), "parallel")]


def lower_momentum(ctx: LowerCtx):
    (xs, gs, vs), n = _groups(ctx, 3)
    a = ctx.attrs
    if a["mode"] not in ("standard", "nesterov"):
        raise NotLowerable(f"Momentum mode {a['mode']!r}")
    r, t = ctx.inputs[0], ctx.inputs[1]
    rn, bn = ctx.fresh("rate"), ctx.fresh("beta")
    pre = [Let(rn, cast(r.load(Const(0)), F64), F64),
           Let(bn, select(binop(">", cast(t.load(Const(0)), F64), _f(0)), _f(a["beta"]), _f(1.0)), F64)]
    rate, beta = Var(rn, F64), Var(bn, F64)
    stmts = list(pre)
    for k in range(n):
        x, g, v = xs[k], gs[k], vs[k]
        x_out, v_out = ctx.outputs[k], ctx.outputs[n + k]

        def body(i, x=x, g=g, v=v, x_out=x_out, v_out=v_out):
            g_reg = binop("+", binop("*", _f(a["norm_coefficient"]), cast(x.load(i), F64)), cast(g.load(i), F64))
            v_new = binop("+", binop("*", _f(a["alpha"]), cast(v.load(i), F64)), binop("*", beta, g_reg))
            gr, vn = ctx.fresh("greg"), ctx.fresh("vnew")
            step = binop("+", Var(gr, F64), binop("*", _f(a["alpha"]), Var(vn, F64))) if a["mode"] == "nesterov" \
                else Var(vn, F64)
            return [Let(gr, g_reg, F64), Let(vn, v_new, F64),
                    Store(x_out.buf, i, cast(binop("-", cast(x.load(i), F64), binop("*", rate, step)), x_out.dtype)),
                    Store(v_out.buf, i, cast(Var(vn, F64), v_out.dtype))]
        stmts += _loop(ctx, x, body)
    return stmts


def lower_adagrad(ctx: LowerCtx):
    (xs, gs, hs), n = _groups(ctx, 3)
    a = ctx.attrs
    r, t = ctx.inputs[0], ctx.inputs[1]
    rn = ctx.fresh("rate")
    stmts = [Let(rn, binop("/", cast(r.load(Const(0)), F64),
                               binop("+", _f(1.0), binop("*", cast(t.load(Const(0)), F64), _f(a["decay_factor"])))), F64)]
    rate = Var(rn, F64)
    for k in range(n):
        x, g, h = xs[k], gs[k], hs[k]
        x_out, h_out = ctx.outputs[k], ctx.outputs[n + k]

        def body(i, x=x, g=g, h=h, x_out=x_out, h_out=h_out):
            gr, hn = ctx.fresh("greg"), ctx.fresh("hnew")
            grv, hnv = Var(gr, F64), Var(hn, F64)
            return [Let(gr, binop("+", binop("*", _f(a["norm_coefficient"]), cast(x.load(i), F64)), cast(g.load(i), F64)), F64),
                    Let(hn, binop("+", cast(h.load(i), F64), binop("*", grv, grv)), F64),
                    Store(x_out.buf, i, cast(binop("-", cast(x.load(i), F64), binop(
                        "/", binop("*", rate, grv), binop("+", call("sqrt", hnv), _f(a["epsilon"])))), x_out.dtype)),
                    Store(h_out.buf, i, cast(hnv, h_out.dtype))]
        stmts += _loop(ctx, x, body)
    return stmts


def lower_adam(ctx: LowerCtx):
    (xs, gs, vs, hs), n = _groups(ctx, 4)
    a = ctx.attrs
    r, t = ctx.inputs[0], ctx.inputs[1]
    rn = ctx.fresh("rate")
    tv = cast(t.load(Const(0)), F64)
    corrected = binop("/", binop("*", cast(r.load(Const(0)), F64),
                                 call("sqrt", binop("-", _f(1.0), call("pow", _f(a["beta"]), tv)))),
                      binop("-", _f(1.0), call("pow", _f(a["alpha"]), tv)))
    stmts = [Let(rn, select(binop(">", tv, _f(0)), corrected, cast(r.load(Const(0)), F64)), F64)]
    rate = Var(rn, F64)
    alpha, beta = a["alpha"], a["beta"]
    for k in range(n):
        x, g, v, h = xs[k], gs[k], vs[k], hs[k]
        x_out, v_out, h_out = ctx.outputs[k], ctx.outputs[n + k], ctx.outputs[2 * n + k]

        def body(i, x=x, g=g, v=v, h=h, x_out=x_out, v_out=v_out, h_out=h_out):
            gr, vn, hn = ctx.fresh("greg"), ctx.fresh("vnew"), ctx.fresh("hnew")
            grv, vnv, hnv = Var(gr, F64), Var(vn, F64), Var(hn, F64)
            xv = cast(x.load(i), F64)
            x_new = binop("*", binop("-", xv, binop("/", binop("*", rate, vnv), binop("+", call("sqrt", hnv), _f(a["epsilon"])))),
                          _f(1 - a["norm_coefficient_post"]))
            return [Let(gr, binop("+", binop("*", _f(a["norm_coefficient"]), xv), cast(g.load(i), F64)), F64),
                    Let(vn, binop("+", binop("*", _f(alpha), cast(v.load(i), F64)), binop("*", _f(1 - alpha), grv)), F64),
                    Let(hn, binop("+", binop("*", _f(beta), cast(h.load(i), F64)),
                                  binop("*", binop("*", _f(1 - beta), grv), grv)), F64),
                    Store(x_out.buf, i, cast(x_new, x_out.dtype)), Store(v_out.buf, i, cast(vnv, v_out.dtype)),
                    Store(h_out.buf, i, cast(hnv, h_out.dtype))]
        stmts += _loop(ctx, x, body)
    return stmts


def lower_binarizer(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    if x.dtype not in FLOAT + ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"):
        raise NotLowerable(f"Binarizer of {x.dtype}")
    th = ctx.attrs["threshold"]
    return ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, select(
        binop(">", cast(x.load(i), F64), _f(th)), c(1, y.dtype), c(0, y.dtype)))], "vector")


def lower_array_feature_extractor(ctx: LowerCtx):
    """Z[..., j] = X[..., Y[j]] (indices clamped into the last axis; the reference raises)."""
    x, ind, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if x.rank == 0 or ind.dtype not in ("i32", "i64"):
        raise NotLowerable("ArrayFeatureExtractor of a scalar")
    C = x.shape[-1]
    k = y.shape[-1]
    r, j = Var(ctx.fresh("r")), Var(ctx.fresh("j"))
    pos = cast(ind.load(j), "i64")
    pos = minimum(maximum(select(binop("<", pos, Const(0)), add(pos, C), pos), Const(0)), sub(C, Const(1)))
    rows = Bin("/", x.numel(), maximum(C, Const(1)), "i64")
    body = [For(j.name, k, [Store(y.buf, add(mul(r, k), j), x.load(add(mul(r, C), pos)))])]
    return [For(r.name, rows, body, "parallel")]


LOWER = {"training.Momentum": lower_momentum, "training.Adagrad": lower_adagrad,
         "training.Adam": lower_adam, "ml.Binarizer": lower_binarizer,
         "ml.ArrayFeatureExtractor": lower_array_feature_extractor}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
