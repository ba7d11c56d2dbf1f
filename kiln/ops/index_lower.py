"""Native lowerings of the indexing ops in index.py: Gather, GatherElements, Slice.

Slice reads starts/ends/axes/steps at run time (clamped as Python slicing does), so one kernel
serves constant and computed slice bounds alike; with constant bounds the C compiler folds them.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import binop, c, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Load, Store, Var, add, mul, product, sub


def _wrap(i, dim):
    """A possibly negative index counted from the end of an axis of length dim."""
    i = cast(i, "i64")
    return select(binop("<", i, Const(0)), add(i, dim), i)


def _clamped(i, dim):
    """_wrap, then clamped into [0, dim): an out-of-range index (the reference raises) must not
    read outside the tensor."""
    return minimum(maximum(_wrap(i, dim), Const(0)), sub(dim, Const(1)))


def lower_gather(ctx: LowerCtx):
    x, ind, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    q = ind.rank

    def body(idx):
        pos = _clamped(ind.load(ctx.index(ind, idx[axis:axis + q])), x.shape[axis])
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
        src[axis] = _clamped(ind.load(ctx.index(ind, idx)), x.shape[axis])
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


def _inside(i, dim):
    return binop("&&", binop(">=", i, Const(0)), binop("<", i, dim))


def _combine(reduction: str, old, new):
    if reduction == "none":
        return new
    if reduction == "add":
        return cast(binop("+", old, new), old.dtype)
    if reduction == "mul":
        return cast(binop("*", old, new), old.dtype)
    if reduction == "max":
        return maximum(old, new)
    if reduction == "min":
        return minimum(old, new)
    raise NotLowerable(f"scatter reduction {reduction!r}")


def _copy(ctx, x, y):
    return ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, x.load(i))], "vector")


def lower_scatter_elements(ctx: LowerCtx):
    """A copy of data, then the updates in order (serial: later ones win, reductions combine);
    an index outside the axis is skipped (the reference raises)."""
    x, ind, upd, y = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.outputs[0]
    if x.dtype == "bool" and ctx.attrs.get("reduction", "none") != "none":
        raise NotLowerable("scatter reductions over bool")
    reduction = ctx.attrs.get("reduction", "none")
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    if x.rank == 0 or ind.rank != x.rank:
        raise NotLowerable("ScatterElements indices of another rank")

    def body(idx):
        dst = list(idx)
        dst[axis] = _wrap(ind.load(ctx.index(ind, idx)), x.shape[axis])
        ok = c(True, "bool")
        for k, (i, d) in enumerate(zip(dst, y.shape)):
            if k == axis or not (d == ind.shape[k]):
                ok = binop("&&", ok, _inside(i, d))
        at = ctx.index(y, dst)
        return [If(ok, [Store(y.buf, at, _combine(reduction, Load(y.buf, at, y.dtype),
                                                   upd.load(ctx.index(upd, idx))))])]
    return _copy(ctx, x, y) + ctx.loops(ind.shape, body, "serial")


def lower_scatter_nd(ctx: LowerCtx):
    """A copy of data, then each index row (serial, in order) writes or combines its slice."""
    x, ind, upd, y = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.outputs[0]
    reduction = ctx.attrs["reduction"]
    if x.dtype == "bool" and reduction != "none":
        raise NotLowerable("scatter reductions over bool")
    k = ind.shape[-1] if ind.rank else None
    if not isinstance(k, Const) or not 0 < k.value <= x.rank:
        raise NotLowerable("ScatterND needs a static index length")
    k = k.value
    rows = ind.shape[:-1]
    inner = product(x.shape[k:])
    r, e = Var(ctx.fresh("r")), Var(ctx.fresh("e"))
    off, ok = ctx.fresh("off"), ctx.fresh("ok")
    offv, okv = Var(off), Var(ok, "bool")
    pre = [Let(off, Const(0), "i64"), Let(ok, c(True, "bool"), "bool")]
    for j in range(k):
        i = _wrap(ind.load(add(mul(r, Const(k)), Const(j))), x.shape[j])
        pre += [Assign(ok, binop("&&", okv, _inside(i, x.shape[j]))),
                Assign(off, add(mul(offv, x.shape[j]), i))]
    at = add(mul(offv, inner), e)
    write = Store(y.buf, at, _combine(reduction, Load(y.buf, at, y.dtype), upd.load(add(mul(r, inner), e))))
    row = pre + [If(okv, [For(e.name, inner, [write])])]
    return _copy(ctx, x, y) + [For(r.name, product(rows), row)]


def lower_gather_nd(ctx: LowerCtx):
    """Each index row addresses a slice of data (its first batch_dims axes matched one to one);
    indices are clamped into the data (the reference raises)."""
    x, ind, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    b = ctx.attrs["batch_dims"]
    k = ind.shape[-1] if ind.rank else None
    if not isinstance(k, Const) or not 0 <= b < ind.rank or b + k.value > x.rank:
        raise NotLowerable("GatherND needs a static index length")
    k = k.value
    rows = product(ind.shape[:-1])
    per_batch = product(ind.shape[b:-1])
    inner = product(x.shape[b + k:])
    r, e = Var(ctx.fresh("r")), Var(ctx.fresh("e"))
    off = ctx.fresh("off")
    offv = Var(off)
    body = [Let(off, Bin("/", r, per_batch, "i64"), "i64")]       # the batch entry
    for j in range(k):
        d = x.shape[b + j]
        i = _clamped(ind.load(add(mul(r, Const(k)), Const(j))), d)
        body.append(Assign(off, add(mul(offv, d), i)))
    body.append(For(e.name, inner, [Store(y.buf, add(mul(r, inner), e), x.load(add(mul(offv, inner), e)))]))
    return [For(r.name, rows, body, "parallel")]


def lower_tensor_scatter(ctx: LowerCtx):
    """A copy of the cache, then update[b] written along `axis` from write_indices[b] (modulo the
    cache length in circular mode; positions past the cache are skipped in linear mode)."""
    past, upd, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    starts = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    mode = ctx.attrs["mode"]
    axis = ctx.attrs["axis"] + past.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    if mode not in ("linear", "circular") or not 0 < axis < past.rank or upd.rank != past.rank:
        raise NotLowerable("TensorScatter mode or axis")
    n = past.shape[axis]

    def body(idx):
        start = cast(starts.load(idx[0]), "i64") if starts is not None else Const(0)
        pos = add(start, idx[axis])
        if mode == "circular":
            pos = Bin("floormod", pos, maximum(n, Const(1)), "i64")
        dst = list(idx)
        dst[axis] = pos
        return [If(_inside(pos, n), [Store(y.buf, ctx.index(y, dst), upd.load(ctx.index(upd, idx)))])]
    return _copy(ctx, past, y) + ctx.loops(upd.shape, body)


def lower_reverse_sequence(ctx: LowerCtx):
    """y[b, t] = x[b, len[b] - 1 - t] for t < len[b] (the length clamped into the time axis),
    x[b, t] after it."""
    x, lens, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    ba, ta = ctx.attrs["batch_axis"], ctx.attrs["time_axis"]
    if x.rank < 2 or {ba, ta} != {0, 1}:
        raise NotLowerable("ReverseSequence axes")
    T = x.shape[ta]

    def body(idx):
        n = minimum(maximum(cast(lens.load(idx[ba]), "i64"), Const(0)), T)
        t = idx[ta]
        src = list(idx)
        src[ta] = select(binop("<", t, n), sub(sub(n, Const(1)), t), t)
        return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
    return ctx.loops(y.shape, body)


def lower_col2im(ctx: LowerCtx):
    """Each image element sums the column entries whose block position lands on it (gather
    form): padded coordinate q = k * dilation + col * stride for block offset k, column col."""
    x, image, block, y = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.outputs[0]
    shape = image.static_shape()
    if x.rank != 3 or shape is None or len(shape) != 1 or y.rank != shape[0] + 2:
        raise NotLowerable("Col2Im needs image_shape of a static length")
    n = shape[0]
    a = ctx.attrs
    dil, strides = a["dilations"] or [1] * n, a["strides"] or [1] * n
    pads = a["pads"] or [0] * (2 * n)
    dt = x.dtype
    pre, blk, cnt = [], [], []
    for i in range(n):
        bk, ck = ctx.fresh("blk"), ctx.fresh("cols")
        padded = add(cast(image.load(Const(i)), "i64"), Const(pads[i] + pads[i + n]))
        pre += [Let(bk, maximum(cast(block.load(Const(i)), "i64"), Const(1)), "i64"),
                Let(ck, add(Bin("floordiv", sub(sub(padded, mul(Const(dil[i]), sub(Var(bk), Const(1)))), Const(1)),
                                Const(strides[i]), "i64"), Const(1)), "i64")]
        blk.append(Var(bk))
        cnt.append(Var(ck))
    kv = [Var(ctx.fresh("k")) for _ in range(n)]
    acc = ctx.fresh("acc")
    accv = Var(acc, dt)

    def body(idx):
        b, ch, sp = idx[0], idx[1], idx[2:]
        ok, cols = c(True, "bool"), []
        for i in range(n):
            rel = sub(add(sp[i], Const(pads[i])), mul(kv[i], Const(dil[i])))
            col = Bin("/", rel, Const(strides[i]), "i64")
            ok = binop("&&", ok, binop("&&", binop(">=", rel, Const(0)), binop("<", col, cnt[i])))
            if strides[i] != 1:
                ok = binop("&&", ok, binop("==", Bin("%", rel, Const(strides[i]), "i64"), Const(0)))
            cols.append(col)
        row, col = add(mul(ch, product(blk)), _flat_of(kv, blk)), _flat_of(cols, cnt)
        # block/image shapes are data: an entry past the input (a shape that disagrees with the
        # planned one) is skipped rather than read
        ok = binop("&&", ok, binop("&&", binop("<", row, x.shape[1]), binop("<", col, x.shape[2])))
        at = add(mul(add(mul(b, x.shape[1]), row), x.shape[2]), col)
        inner = [If(ok, [Assign(acc, binop("+", accv, x.load(at)))])]
        for i in reversed(range(n)):
            inner = [For(kv[i].name, blk[i], inner)]
        return [Let(acc, c(0, dt), dt)] + inner + [Store(y.buf, ctx.index(y, idx), accv)]
    return pre + ctx.loops(y.shape, body)


def _flat_of(idx, dims):
    out = Const(0)
    for i, d in zip(idx, dims):
        out = add(mul(out, d), i)
    return out


LOWER = {"Gather": lower_gather, "GatherElements": lower_gather_elements, "Slice": lower_slice,
         "ScatterElements": lower_scatter_elements, "Scatter": lower_scatter_elements,
         "ScatterND": lower_scatter_nd, "GatherND": lower_gather_nd,
         "TensorScatter": lower_tensor_scatter, "ReverseSequence": lower_reverse_sequence,
         "Col2Im": lower_col2im}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]

