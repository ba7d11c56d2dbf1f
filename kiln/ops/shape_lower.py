"""Native lowerings of the data-movement ops in shape.py.

Reshape-like ops (Identity, Reshape, Flatten, Squeeze, Unsqueeze, Dropout at inference) are flat
copies here; the memory planner will turn them into views later.
"""
from __future__ import annotations

import numpy as np

from ..lower.context import LowerCtx, NotLowerable, lower_elementwise
from ..lower.exprs import binop, c, cast, select
from ..lower.loopir import Bin, Const, Store, add, mul, sub


def copy_input(ctx: LowerCtx):
    """out[i] = in0[i] over the output's elements (same count: a reshape)."""
    x, y = ctx.inputs[0], ctx.outputs[0]
    if x.dtype != y.dtype:
        raise NotLowerable("copy between dtypes")
    body = ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, x.load(i))], "vector")
    return body


def lower_dropout(ctx: LowerCtx):
    mode = ctx.const_input(2) if len(ctx.inputs) > 2 and ctx.inputs[2] is not None else np.array(False)
    if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
        raise NotLowerable("Dropout in training mode")
    body = copy_input(ctx)
    if len(ctx.outputs) > 1 and ctx.outputs[1] is not None:
        mask = ctx.outputs[1]
        body += ctx.flat_loop(mask.numel(), lambda i: [Store(mask.buf, i, c(True, "bool"))], "vector")
    return body


def lower_transpose(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    perm = ctx.attrs["perm"]
    perm = list(range(x.rank))[::-1] if perm is None else [p + x.rank if p < 0 else p for p in perm]
    strides = x.strides()

    def body(idx):
        src = Const(0)
        for k, p in enumerate(perm):           # output axis k walks input axis p
            src = add(src, mul(idx[k], strides[p]))
        return [Store(y.buf, ctx.index(y, idx), x.load(src))]
    return ctx.loops(y.shape, body) if y.rank else [Store(y.buf, Const(0), x.load(Const(0)))]


def _axis(ctx, rank):
    a = ctx.attrs["axis"]
    return a + rank if a < 0 else a


def lower_concat(ctx: LowerCtx):
    y = ctx.outputs[0]
    axis = _axis(ctx, y.rank)
    stmts, offset = [], Const(0)
    for x in ctx.inputs:
        if x is None:
            continue
        def body(idx, x=x, offset=offset):
            dst = list(idx)
            dst[axis] = add(idx[axis], offset)
            return [Store(y.buf, ctx.index(y, dst), x.load(ctx.index(x, idx)))]
        stmts += ctx.loops(x.shape, body)
        offset = add(offset, x.shape[axis])
    return stmts


def lower_split(ctx: LowerCtx):
    x = ctx.inputs[0]
    axis = _axis(ctx, x.rank)
    stmts, offset = [], Const(0)
    for y in ctx.outputs:
        if y is None:
            continue
        def body(idx, y=y, offset=offset):
            src = list(idx)
            src[axis] = add(idx[axis], offset)
            return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
        stmts += ctx.loops(y.shape, body)
        offset = add(offset, y.shape[axis])
    return stmts


def lower_expand(ctx: LowerCtx):
    ctx.inputs = [ctx.inputs[0], None]
    return lower_elementwise(ctx, lambda ctx, x, _=None: x)


def lower_tile(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]

    def body(idx):
        src = [Bin("%", i, d, "i64") for i, d in zip(idx, x.shape)]
        return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
    return ctx.loops(y.shape, body)


def lower_shape(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    dims = x.shape[slice(ctx.attrs["start"], ctx.attrs["end"])]
    return [Store(y.buf, Const(k), d) for k, d in enumerate(dims)]


def lower_size(ctx: LowerCtx):
    return [Store(ctx.outputs[0].buf, Const(0), ctx.inputs[0].numel())]


def lower_constant_of_shape(ctx: LowerCtx):
    from .shape import fill_value
    y = ctx.outputs[0]
    v = fill_value(ctx.attrs["value"])
    value = c(v.item(), y.dtype)
    return ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, value)], "vector")


def lower_range(ctx: LowerCtx):
    start, _, delta = ctx.inputs
    y = ctx.outputs[0]
    if y.dtype not in ("f32", "f64", "i16", "i32", "i64"):
        raise NotLowerable(f"Range of {y.dtype}")
    s, d = start.load(Const(0)), delta.load(Const(0))
    return ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, binop("+", s, binop("*", cast(i, y.dtype), d)))])


def lower_pad(ctx: LowerCtx):
    from .shape import pad_widths
    if ctx.attrs["mode"] != "constant":
        raise NotLowerable(f"Pad mode {ctx.attrs['mode']}")
    x, y = ctx.inputs[0], ctx.outputs[0]
    pads = ctx.require_const(1, "Pad pads")
    axes = ctx.const_input(3) if len(ctx.inputs) > 3 and ctx.inputs[3] is not None else None
    if len(ctx.inputs) > 3 and ctx.inputs[3] is not None and axes is None:
        raise NotLowerable("Pad axes must be constant")
    widths = pad_widths(x.rank, [int(p) for p in pads.reshape(-1)],
                        None if axes is None else [int(a) for a in axes.reshape(-1)])
    cv = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    value = cv.load(Const(0)) if cv is not None else c(0, x.dtype)

    def body(idx):
        inside, src = c(True, "bool"), []
        for i, (b, _), d in zip(idx, widths, x.shape):
            j = sub(i, Const(b))
            src.append(j)
            inside = binop("&&", inside, binop("&&", binop(">=", j, Const(0)), binop("<", j, d)))
        safe = [select(inside, j, Const(0)) for j in src]
        return [Store(y.buf, ctx.index(y, idx), select(inside, x.load(ctx.index(x, safe)), value))]
    return ctx.loops(y.shape, body)


def lower_trilu(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    if x.rank < 2:
        raise NotLowerable("Trilu of rank < 2")
    k = ctx.inputs[1].load(Const(0)) if len(ctx.inputs) > 1 and ctx.inputs[1] is not None else Const(0)
    upper = ctx.attrs["upper"]

    def body(idx):
        r, col = idx[-2], idx[-1]
        diff = sub(col, r)                    # keep col - row >= k (upper) or <= k (lower)
        keep = binop(">=", diff, k) if upper else binop("<=", diff, k)
        i = ctx.index(y, idx)
        return [Store(y.buf, i, select(keep, x.load(i), c(0, x.dtype)))]
    return ctx.loops(y.shape, body)


LOWER = {
    "Identity": copy_input, "Reshape": copy_input, "Flatten": copy_input, "Squeeze": copy_input,
    "Unsqueeze": copy_input, "Dropout": lower_dropout, "Transpose": lower_transpose,
    "Concat": lower_concat, "Split": lower_split, "Expand": lower_expand, "Tile": lower_tile,
    "Shape": lower_shape, "Size": lower_size, "ConstantOfShape": lower_constant_of_shape,
    "Range": lower_range, "Pad": lower_pad, "Trilu": lower_trilu,
}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]

