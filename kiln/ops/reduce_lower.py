"""Native lowerings of reduce.py: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax (constant axes)."""
from __future__ import annotations

from ..lower.context import NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, require_float, select
from ..lower.loopir import Assign, Const, For, Let, Store, Var
from ..lower.reduction import count, nest, out_index, reduce_loops, split_loops

INT_RANGE = {"i8": (-2**7, 2**7 - 1), "i16": (-2**15, 2**15 - 1), "i32": (-2**31, 2**31 - 1),
             "i64": (-2**63, 2**63 - 1), "u8": (0, 255), "u16": (0, 2**16 - 1),
             "u32": (0, 2**32 - 1), "u64": (0, 2**64 - 1)}


def _axes(ctx, x):
    from .reduce import reduce_axes
    if len(ctx.inputs) > 1 and ctx.inputs[1] is not None:
        axes = ctx.require_const(1, "reduction axes")
    else:
        axes = None
    chosen = reduce_axes(axes, x.rank, ctx.attrs["noop_with_empty_axes"])
    return tuple(range(x.rank)) if chosen is None else chosen


def _lowest(dt):
    return c(float("-inf"), dt) if dt in FLOAT else c(INT_RANGE[dt][0], dt) if dt in INT_RANGE else None


def _highest(dt):
    return c(float("inf"), dt) if dt in FLOAT else c(INT_RANGE[dt][1], dt) if dt in INT_RANGE else None


def _plus(a, b):
    return binop("+", a, b)


def reduction(kind: str):
    def lower(ctx):
        x, out = ctx.inputs[0], ctx.outputs[0]
        dt = x.dtype
        if dt == "bool":
            raise NotLowerable("reductions over bool")
        axes = _axes(ctx, x)
        ident = lambda acc: acc
        if kind == "sum":
            spec = (c(0, dt), lambda a, v: cast(_plus(a, v), dt), ident)
        elif kind == "sumsq":
            spec = (c(0, dt), lambda a, v: cast(_plus(a, binop("*", v, v)), dt), ident)
        elif kind == "l1":
            spec = (c(0, dt), lambda a, v: cast(_plus(a, select(binop("<", v, c(0, dt)), binop("-", c(0, dt), v), v)), dt), ident)
        elif kind == "prod":
            spec = (c(1, dt), lambda a, v: cast(binop("*", a, v), dt), ident)
        elif kind == "max":
            spec = (_lowest(dt), maximum, ident)
        elif kind == "min":
            spec = (_highest(dt), minimum, ident)
        elif kind in ("mean", "l2", "logsum"):
            require_float(Const(0, dt), kind)
            fin = {"mean": lambda a: binop("/", a, cast(count(x, axes), dt)),
                   "l2": lambda a: call("sqrt", a), "logsum": lambda a: call("log", a)}[kind]
            comb = (lambda a, v: _plus(a, binop("*", v, v))) if kind == "l2" else _plus
            spec = (c(0, dt), comb, fin)
        elif kind == "logsumexp":
            return _log_sum_exp(ctx, x, out, axes)
        else:
            raise AssertionError(kind)
        init, combine, finalize = spec

        def store(kept, value):
            return [Store(out.buf, out_index(x, axes, kept), value)]
        return reduce_loops(ctx, x, axes, init, combine, finalize, store)
    return lower


def _log_sum_exp(ctx, x, out, axes):
    require_float(Const(0, x.dtype), "ReduceLogSumExp")
    return _row_passes(ctx, x, axes, "logsumexp", out)


def _row_passes(ctx, x, axes, kind, out):
    """max pass, sum-of-exp pass, then the result: softmax, log-softmax or log-sum-exp."""
    dt = x.dtype
    kept, red, all_vars = split_loops(ctx, x, axes)
    kept_ext = [d for k, d in enumerate(x.shape) if k not in axes]
    red_ext = [d for k, d in enumerate(x.shape) if k in axes]
    m, s = ctx.fresh("m"), ctx.fresh("s")
    mv, sv = Var(m, dt), Var(s, dt)
    xi = x.load(ctx.index(x, all_vars))
    body = [Let(m, c(float("-inf"), dt), dt)]
    body += nest(red, red_ext, [Assign(m, maximum(mv, xi))])
    # a row of -inf (or empty) must not become NaN through inf - inf
    body.append(Assign(m, select(binop("==", mv, c(float("-inf"), dt)), c(0, dt), mv)))
    body.append(Let(s, c(0, dt), dt))
    body += nest(red, red_ext, [Assign(s, binop("+", sv, call("exp", binop("-", xi, mv))))])
    if kind == "logsumexp":
        body.append(Store(out.buf, out_index(x, axes, kept), binop("+", call("log", sv), mv)))
    else:
        y = ctx.outputs[0]
        if kind == "softmax":
            inv = ctx.fresh("inv")
            body.append(Let(inv, binop("/", c(1, dt), sv), dt))
            val = binop("*", call("exp", binop("-", xi, mv)), Var(inv, dt))
        else:
            lse = ctx.fresh("lse")
            body.append(Let(lse, binop("+", call("log", sv), mv), dt))
            val = binop("-", xi, Var(lse, dt))
        body += nest(red, red_ext, [Store(y.buf, ctx.index(y, all_vars), val)])
    return nest(kept, kept_ext, body, "parallel")


def normalizer(kind: str):
    def lower(ctx):
        x = ctx.inputs[0]
        require_float(Const(0, x.dtype), kind)
        if x.rank == 0:
            raise NotLowerable("softmax of a scalar")
        ax = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
        axes = tuple(range(ax, x.rank)) if ctx.attrs["flatten"] else (ax,)
        return _row_passes(ctx, x, axes, kind, ctx.outputs[0])
    return lower


def arg_reduction(largest: bool):
    def lower(ctx):
        x, out = ctx.inputs[0], ctx.outputs[0]
        if x.dtype == "bool" or x.rank == 0:
            raise NotLowerable("ArgMax/ArgMin of bool or a scalar")
        ax = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
        last = bool(ctx.attrs["select_last_index"])
        kept, red, all_vars = split_loops(ctx, x, (ax,))
        kept_ext = [d for k, d in enumerate(x.shape) if k != ax]
        best, where = ctx.fresh("best"), ctx.fresh("at")
        bv, wv = Var(best, x.dtype), Var(where, "i64")
        xi = x.load(ctx.index(x, all_vars))
        better = binop(">" if largest else "<", xi, bv)
        if last:
            better = binop("||", better, binop("==", xi, bv))
        first = binop("==", red[0], Const(0))
        take = binop("||", first, better)
        inner = [For(red[0].name, x.shape[ax], [     # `where` first: `take` reads the old best
            Assign(where, select(take, red[0], wv)), Assign(best, select(take, xi, bv))])]
        body = [Let(best, x.load(Const(0)), x.dtype), Let(where, Const(0), "i64")] + inner
        body.append(Store(out.buf, out_index(x, (ax,), kept), wv))
        return nest(kept, kept_ext, body, "parallel")
    return lower


LOWER = {
    "ReduceSum": reduction("sum"), "ReduceMean": reduction("mean"), "ReduceMax": reduction("max"),
    "ReduceMin": reduction("min"), "ReduceProd": reduction("prod"), "ReduceL1": reduction("l1"),
    "ReduceL2": reduction("l2"), "ReduceLogSum": reduction("logsum"),
    "ReduceLogSumExp": reduction("logsumexp"), "ReduceSumSquare": reduction("sumsq"),
    "Softmax": normalizer("softmax"), "LogSoftmax": normalizer("logsoftmax"),
    "ArgMax": arg_reduction(True), "ArgMin": arg_reduction(False),
}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]

