"""Native lowerings of reduce.py: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax, Hardmax, CumSum/CumProd
and TopK.

Reductions over constant axes are loop nests parallel over the kept positions. When `axes` is a
tensor known only at run time, one serial kernel reads it, decides for each input dim whether it is
reduced, and accumulates every input element into its output slot (`_runtime_axes`).
"""
from __future__ import annotations

import numpy as np

from ..lower.context import NotLowerable
from ..lower.exprs import FLOAT, INT_RANGE, binop, c, call, cast, maximum, minimum, require_float, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Load, Store, Var, add, mul, sub
from ..lower.reduction import count, nest, out_index, reduce_loops, split_loops



def _axes(ctx, x):
    from .reduce import reduce_axes
    if len(ctx.inputs) > 1 and ctx.inputs[1] is not None:
        n = ctx.inputs[1].static_shape()
        if ctx.inputs[1].data is None and n is not None and int(np.prod(n)) == 0:
            axes = np.zeros(0, np.int64)          # an empty axes tensor: its value is known
        else:
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


def _spec(kind: str, dt: str, count):
    """(init, combine(acc, v), finalize(acc)) of a reduction; count() gives the number of reduced
    elements (an i64 expression) for the mean."""
    ident = lambda acc: acc
    if dt == "bool":
        if kind == "max":
            return c(False, dt), lambda a, v: binop("||", a, v), ident
        if kind == "min":
            return c(True, dt), lambda a, v: binop("&&", a, v), ident
        raise NotLowerable(f"Reduce {kind} over bool")
    if kind == "sum":
        return c(0, dt), lambda a, v: cast(_plus(a, v), dt), ident
    if kind == "sumsq":
        return c(0, dt), lambda a, v: cast(_plus(a, binop("*", v, v)), dt), ident
    if kind == "l1":
        return c(0, dt), lambda a, v: cast(_plus(a, select(binop("<", v, c(0, dt)), binop("-", c(0, dt), v), v)), dt), ident
    if kind == "prod":
        return c(1, dt), lambda a, v: cast(binop("*", a, v), dt), ident
    if kind == "max":
        return _lowest(dt), maximum, ident
    if kind == "min":
        return _highest(dt), minimum, ident
    if kind == "mean" and dt not in FLOAT:
        if dt not in INT_RANGE:
            raise NotLowerable(f"ReduceMean over {dt}")

        def int_mean(a):           # truncating toward zero, as C; an empty reduction gives 0
            n = count()
            return select(binop("==", n, Const(0)), c(0, dt), cast(binop("/", a, cast(n, dt)), dt))
        return c(0, dt), lambda a, v: cast(_plus(a, v), dt), int_mean
    if kind in ("mean", "l2", "logsum"):
        require_float(Const(0, dt), kind)
        fin = {"mean": lambda a: binop("/", a, cast(count(), dt)),
               "l2": lambda a: call("sqrt", a), "logsum": lambda a: call("log", a)}[kind]
        comb = (lambda a, v: _plus(a, binop("*", v, v))) if kind == "l2" else _plus
        return c(0, dt), comb, fin
    if kind == "logsumexp":      # running log(exp(a) + exp(v)), exact at -inf/+inf and NaN
        require_float(Const(0, dt), kind)

        def log_add_exp(a, v):
            hi, lo = maximum(a, v), minimum(a, v)
            special = binop("||", binop("==", lo, c(float("-inf"), dt)), binop("==", hi, c(float("inf"), dt)))
            return select(special, hi, binop("+", hi, call("log1p", call("exp", binop("-", lo, hi)))))
        return c(float("-inf"), dt), log_add_exp, ident
    raise AssertionError(kind)


def reduction(kind: str):
    def lower(ctx):
        x, out = ctx.inputs[0], ctx.outputs[0]
        dt = x.dtype
        if len(ctx.inputs) > 1 and ctx.inputs[1] is not None and ctx.inputs[1].data is None:
            n = ctx.inputs[1].static_shape()
            if n is None or int(np.prod(n)) != 0:
                return _runtime_axes(ctx, kind, x, out)
        axes = _axes(ctx, x)
        if kind == "logsumexp":
            return _log_sum_exp(ctx, x, out, axes)
        init, combine, finalize = _spec(kind, dt, lambda: count(x, axes))

        def store(kept, value):
            return [Store(out.buf, out_index(x, axes, kept), value)]
        return reduce_loops(ctx, x, axes, init, combine, finalize, store)
    return lower


def _runtime_axes(ctx, kind, x, out):
    """A reduction whose axes tensor is read at run time (serial: every input element is added
    into its output slot). For each input dim k: red_k (reduced or not) and os_k, its stride in
    the output (0 when reduced; the output holds the kept dims in order, whatever keepdims)."""
    axes = ctx.inputs[1]
    if axes.rank != 1 or axes.dtype not in ("i64", "i32"):
        raise NotLowerable("reduction axes must be a 1-D integer tensor")
    dt, r = x.dtype, x.rank
    red = [ctx.fresh("red") for _ in range(r)]
    pre = [Let(v, Const(0), "i64") for v in red]
    j, a = Var(ctx.fresh("j")), ctx.fresh("ax")
    av = Var(a)
    raw = cast(axes.load(j), "i64")
    pick = [Let(a, select(binop("<", raw, Const(0)), add(raw, Const(r)), raw), "i64")]
    pick += [If(binop("==", av, Const(k)), [Assign(red[k], Const(1))]) for k in range(r)]
    if r:
        pre.append(For(j.name, axes.shape[0], pick))
    n_axes = axes.shape[0]
    if not ctx.attrs["noop_with_empty_axes"] and not (isinstance(n_axes, Const) and n_axes.value):
        pre.append(If(binop("==", axes.shape[0], Const(0)), [Assign(v, Const(1)) for v in red]))
    n_out = ctx.fresh("nout")
    nv = Var(n_out)
    pre.append(Let(n_out, Const(1), "i64"))
    ostride = [None] * r
    for k in reversed(range(r)):
        is_red = binop("!=", Var(red[k]), Const(0))
        ostride[k] = Var(ctx.fresh("os"))
        pre += [Let(ostride[k].name, select(is_red, Const(0), nv), "i64"),
                Assign(n_out, mul(nv, select(is_red, Const(1), x.shape[k])))]
    init, combine, finalize = _spec(kind, dt, lambda: Bin("/", x.numel(), nv, "i64"))
    o = Var(ctx.fresh("o"))
    body = [For(o.name, nv, [Store(out.buf, o, init)])]

    def acc(idx):
        oi = Const(0)
        for i, s in zip(idx, ostride):
            oi = add(oi, mul(i, s))
        at, a, v = ctx.fresh("at"), ctx.fresh("a"), ctx.fresh("v")
        return [Let(at, oi, "i64"), Let(a, Load(out.buf, Var(at), dt), dt),
                Let(v, x.load(ctx.index(x, idx)), dt),
                Store(out.buf, Var(at), combine(Var(a, dt), Var(v, dt)))]
    body += ctx.loops(x.shape, acc, "serial") if r else acc([])
    if kind in ("mean", "l2", "logsum"):
        body.append(For(o.name, nv, [Store(out.buf, o, finalize(Load(out.buf, o, dt)))]))
    # the planned output must hold exactly the kept dims (a wrong plan must not write past it)
    return pre + [If(binop("==", nv, out.numel()), body)]


def _log_sum_exp(ctx, x, out, axes):
    require_float(Const(0, x.dtype), "ReduceLogSumExp")
    return _row_passes(ctx, x, axes, "logsumexp", out)


def _reduce_nest(vars_, extents, body, reduction):
    """nest() whose innermost loop is a vector loop, reducing into `reduction` = (op, var) when
    given."""
    if not vars_:
        return body
    inner = [For(vars_[-1].name, extents[-1], body, "vector", reduce=(reduction,) if reduction else ())]
    return nest(vars_[:-1], extents[:-1], inner) if len(vars_) > 1 else inner


def _row_passes(ctx, x, axes, kind, out):
    """max pass, sum-of-exp pass, then the result: softmax, log-softmax or log-sum-exp. Softmax
    stores each exp in the sum pass and scales the row in the last one (x and y are distinct
    buffers: a kernel's parameters are restrict)."""
    dt = x.dtype
    kept, red, all_vars = split_loops(ctx, x, axes)
    kept_ext = [d for k, d in enumerate(x.shape) if k not in axes]
    red_ext = [d for k, d in enumerate(x.shape) if k in axes]
    m, s = ctx.fresh("m"), ctx.fresh("s")
    mv, sv = Var(m, dt), Var(s, dt)
    xi = x.load(ctx.index(x, all_vars))
    body = [Let(m, c(float("-inf"), dt), dt)]
    # the max and the sum as vector reductions over the last axis (lanes combined at the end).
    # The max may drop a NaN, but a NaN anywhere in the row makes the sum, and so the whole
    # row, NaN anyway
    body += _reduce_nest(red, red_ext, [Assign(m, select(binop(">", xi, mv), xi, mv))], ("max", m))
    # a row of -inf (or empty) must not become NaN through inf - inf
    body.append(Assign(m, select(binop("==", mv, c(float("-inf"), dt)), c(0, dt), mv)))
    body.append(Let(s, c(0, dt), dt))
    if kind == "softmax":
        # each exp once: stored by the sum pass, scaled in place by the last one
        y = ctx.outputs[0]
        yi, e, inv = ctx.index(y, all_vars), ctx.fresh("e"), ctx.fresh("inv")
        body += _reduce_nest(red, red_ext, [Let(e, call("exp", binop("-", xi, mv)), dt),
                                            Store(y.buf, yi, Var(e, dt)),
                                            Assign(s, binop("+", sv, Var(e, dt)))], ("+", s))
        body.append(Let(inv, binop("/", c(1, dt), sv), dt))
        body += _reduce_nest(red, red_ext, [Store(y.buf, yi, binop("*", Load(y.buf, yi, dt), Var(inv, dt)))],
                             None)
        return nest(kept, kept_ext, body, "parallel")
    body += _reduce_nest(red, red_ext, [Assign(s, binop("+", sv, call("exp", binop("-", xi, mv))))],
                         ("+", s))
    if kind == "logsumexp":
        body.append(Store(out.buf, out_index(x, axes, kept), binop("+", call("log", sv), mv)))
    else:
        y = ctx.outputs[0]
        lse = ctx.fresh("lse")
        body.append(Let(lse, binop("+", call("log", sv), mv), dt))
        val = binop("-", xi, Var(lse, dt))
        body += _reduce_nest(red, red_ext, [Store(y.buf, ctx.index(y, all_vars), val)], None)
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
        body = [Let(best, c(0, x.dtype), x.dtype), Let(where, Const(0), "i64")] + inner
        body.append(Store(out.buf, out_index(x, (ax,), kept), wv))
        return nest(kept, kept_ext, body, "parallel")
    return lower


def _before(a, b, a_at, b_at, largest: bool):
    """(a, a_at) comes before (b, b_at) in TopK's order: better value, then the lower index."""
    better = binop(">" if largest else "<", a, b)
    return binop("||", better, binop("&&", binop("==", a, b), binop("<", a_at, b_at)))


def lower_hardmax(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    if x.rank == 0 or x.dtype == "bool":
        raise NotLowerable("Hardmax of a scalar or bool")
    ax = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    axes = tuple(range(ax, x.rank)) if ctx.attrs["flatten"] else (ax,)
    dt = x.dtype
    kept, red, all_vars = split_loops(ctx, x, axes)
    kept_ext = [d for k, d in enumerate(x.shape) if k not in axes]
    red_ext = [d for k, d in enumerate(x.shape) if k in axes]
    best, at, pos = ctx.fresh("best"), ctx.fresh("at"), ctx.fresh("pos")
    bv, av, pv = Var(best, dt), Var(at), Var(pos)
    xi = ctx.index(x, all_vars)
    xv = x.load(xi)
    better = binop(">", xv, bv)
    if dt in FLOAT:           # the first NaN wins, as np.argmax
        better = binop("||", better, binop("&&", binop("!=", xv, xv), binop("==", bv, bv)))
    take = binop("||", binop("==", pv, Const(0)), better)
    body = [Let(best, c(0, dt), dt), Let(at, Const(0), "i64"), Let(pos, Const(0), "i64")]
    body += nest(red, red_ext, [If(take, [Assign(best, xv), Assign(at, pv)]), Assign(pos, add(pv, Const(1)))])
    body.append(Assign(pos, Const(0)))
    body += nest(red, red_ext, [Store(y.buf, xi, select(binop("==", pv, av), c(1, dt), c(0, dt))),
                                Assign(pos, add(pv, Const(1)))])
    return nest(kept, kept_ext, body, "parallel")


def cumulative(kind: str):
    def lower(ctx):
        x, axis, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
        dt = x.dtype
        if x.rank == 0 or dt == "bool" or axis.dtype not in ("i32", "i64"):
            raise NotLowerable("CumSum/CumProd of a scalar or bool")
        r = x.rank
        ax, n, inner = ctx.fresh("ax"), ctx.fresh("len"), ctx.fresh("inner")
        raw = cast(axis.load(Const(0)), "i64")
        axv, nv, iv = Var(ax), Var(n), Var(inner)
        # the axis is read at run time: its length and the stride of one step along it
        pre = [Let(ax, select(binop("<", raw, Const(0)), add(raw, Const(r)), raw), "i64"),
               Let(n, Const(1), "i64"), Let(inner, Const(1), "i64")]
        for k in range(r):
            pre += [If(binop("==", axv, Const(k)), [Assign(n, x.shape[k])]),
                    If(binop("<", axv, Const(k)), [Assign(inner, mul(iv, x.shape[k]))])]
        lines = ctx.fresh("lines")
        pre.append(Let(lines, select(binop("==", mul(nv, iv), Const(0)), Const(0),
                                     Bin("/", x.numel(), nv, "i64")), "i64"))
        line, t = Var(ctx.fresh("line")), Var(ctx.fresh("t"))
        base, acc, at = ctx.fresh("base"), ctx.fresh("acc"), ctx.fresh("at")
        accv, atv = Var(acc, dt), Var(at)
        step = sub(sub(nv, Const(1)), t) if ctx.attrs["reverse"] else t
        ident = c(0 if kind == "sum" else 1, dt)
        op = "+" if kind == "sum" else "*"
        update = Assign(acc, cast(binop(op, accv, x.load(atv)), dt))
        store = Store(y.buf, atv, accv)
        scan = [Let(at, add(Var(base), mul(step, iv)), "i64")] + \
            ([store, update] if ctx.attrs["exclusive"] else [update, store])
        body = [Let(base, add(mul(mul(Bin("/", line, iv, "i64"), nv), iv), Bin("%", line, iv, "i64")), "i64"),
                Let(acc, ident, dt), For(t.name, nv, scan)]
        return pre + [For(line.name, Var(lines), body, "parallel")]
    return lower


def lower_top_k(ctx):
    """The k best along the axis, one output slot at a time: slot m takes the best element that
    comes after slot m-1's in (value, index) order. O(k n) per row: meant for small k."""
    x, vals, inds = ctx.inputs[0], ctx.outputs[0], ctx.outputs[1] if len(ctx.outputs) > 1 else None
    dt = x.dtype
    if x.rank == 0 or dt == "bool":
        raise NotLowerable("TopK of a scalar or bool")
    ax = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    largest = bool(ctx.attrs["largest"])
    k_dim = vals.shape[ax]                    # the planned output holds k along the axis
    kept, red, all_vars = split_loops(ctx, x, (ax,))
    kept_ext = [d for i, d in enumerate(x.shape) if i != ax]
    m = Var(ctx.fresh("m"))
    j = red[0]
    out_idx = list(all_vars)
    out_idx[ax] = m
    prev, prev_at, best, best_at, found = (ctx.fresh(p) for p in ("prev", "prev_at", "best", "best_at", "found"))
    pv, pav, bv, bav, fv = Var(prev, dt), Var(prev_at), Var(best, dt), Var(best_at), Var(found, "bool")
    xv = x.load(ctx.index(x, all_vars))
    after_prev = binop("||", binop("==", m, Const(0)), _before(pv, xv, pav, j, largest))
    wins = binop("||", binop("==", fv, c(False, "bool")), _before(xv, bv, j, bav, largest))
    scan = [If(binop("&&", after_prev, wins), [Assign(best, xv), Assign(best_at, j), Assign(found, c(True, "bool"))])]
    slot = [Let(best, c(0, dt), dt), Let(best_at, Const(0), "i64"), Let(found, c(False, "bool"), "bool"),
            For(j.name, x.shape[ax], scan),
            Store(vals.buf, ctx.index(vals, out_idx), bv)]
    if inds is not None:
        slot.append(Store(inds.buf, ctx.index(inds, out_idx), bav))
    slot += [Assign(prev, bv), Assign(prev_at, bav)]
    body = [Let(prev, c(0, dt), dt), Let(prev_at, Const(0), "i64"), For(m.name, k_dim, slot)]
    return nest(kept, kept_ext, body, "parallel")


LOWER = {
    "ReduceSum": reduction("sum"), "ReduceMean": reduction("mean"), "ReduceMax": reduction("max"),
    "ReduceMin": reduction("min"), "ReduceProd": reduction("prod"), "ReduceL1": reduction("l1"),
    "ReduceL2": reduction("l2"), "ReduceLogSum": reduction("logsum"),
    "ReduceLogSumExp": reduction("logsumexp"), "ReduceSumSquare": reduction("sumsq"),
    "Softmax": normalizer("softmax"), "LogSoftmax": normalizer("logsoftmax"),
    "ArgMax": arg_reduction(True), "ArgMin": arg_reduction(False),
    "Hardmax": lower_hardmax, "CumSum": cumulative("sum"), "CumProd": cumulative("prod"),
    "TopK": lower_top_k,
}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]

