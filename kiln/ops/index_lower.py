"""Native lowerings of the indexing ops in index.py: Gather, GatherElements, Slice.

Slice reads starts/ends/axes/steps at run time (clamped as Python slicing does), so one kernel
serves constant and computed slice bounds alike; with constant bounds the C compiler folds them.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import binop, cast, maximum, minimum, select
from ..lower.loopir import Assign, Const, If, Let, Store, Var, add, mul


def _wrap(i, dim):
    """A possibly negative index counted from the end of an axis of length dim."""
    i = cast(i, "i64")
    return select(binop("<", i, Const(0)), add(i, dim), i)


def lower_gather(ctx: LowerCtx):
    x, ind, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    q = ind.rank

    def body(idx):
        pos = _wrap(ind.load(ctx.index(ind, idx[axis:axis + q])), x.shape[axis])
        src = list(idx[:axis]) + [pos] + list(idx[axis + q:])
        return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
    if y.rank == 0:
        return body([])
    return ctx.loops(y.shape, body)


def lower_gather_elements(ctx: LowerCtx):
    x, ind, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]

    def body(idx):
        src = list(idx)
        src[axis] = _wrap(ind.load(ctx.index(ind, idx)), x.shape[axis])
        return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
    return ctx.loops(y.shape, body)


def lower_slice(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    starts = ctx.inputs[1]       # the output shape (planned) already accounts for `ends`
    axes = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    steps = ctx.inputs[4] if len(ctx.inputs) > 4 else None
    n = starts.static_shape()
    if n is None or len(n) != 1:
        raise NotLowerable("Slice needs a starts vector of static length")
    n = n[0]
    pre = []
    begin, step = [], []
    for r in range(x.rank):
        st, sp = ctx.fresh("st"), ctx.fresh("sp")
        pre += [Let(st, Const(0), "i64"), Let(sp, Const(1), "i64")]
        for j in range(n):
            a = _wrap(axes.load(Const(j)), Const(x.rank)) if axes is not None else Const(j)
            if axes is None and j != r:
                continue
            s_j = cast(steps.load(Const(j)), "i64") if steps is not None else Const(1)
            raw = _wrap(starts.load(Const(j)), x.shape[r])
            lo_pos = minimum(maximum(raw, Const(0)), x.shape[r])                  # step > 0
            lo_neg = minimum(maximum(raw, Const(-1)), add(x.shape[r], Const(-1)))  # step < 0
            set_ = [Assign(sp, s_j), Assign(st, select(binop(">", s_j, Const(0)), lo_pos, lo_neg))]
            pre += [If(binop("==", a, Const(r)), set_)] if axes is not None else set_
        begin.append(Var(st))
        step.append(Var(sp))

    def body(idx):
        src = [add(b, mul(i, s)) for b, i, s in zip(begin, idx, step)]
        return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
    return pre + ctx.loops(y.shape, body)


LOWER = {"Gather": lower_gather, "GatherElements": lower_gather_elements, "Slice": lower_slice}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]

