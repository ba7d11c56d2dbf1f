"""Native lowerings of the data-movement ops in shape.py.

Reshape-like ops (Identity, Reshape, Flatten, Squeeze, Unsqueeze, Dropout at inference) are flat
copies here; between two intermediates the planner makes them views instead (no call: see
Program.views in kiln/lower/program.py), and the copy serves runs with a buffer per value.
"""
from __future__ import annotations

import numpy as np

from ..lower.context import LowerCtx, NotLowerable, TensorRef, lower_elementwise
from ..lower.exprs import binop, c, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Store, Var, add, mul, sub
from .gemm_lower import _cdiv, _min


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


TRANSPOSE_TILE = 16      # a transpose that moves the input's last axis copies 16 x 16 tiles


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
    if not y.rank:
        return [Store(y.buf, Const(0), x.load(Const(0)))]
    if perm[-1] == x.rank - 1:
        return ctx.loops(y.shape, body)
    return _tiled_transpose(ctx, y, perm.index(x.rank - 1), body)


def _tiled_transpose(ctx: LowerCtx, y: TensorRef, q: int, body) -> list:
    """The input's last axis becomes output axis q, not the last: the plain nest would read the
    input with a large stride in its inner loop (one cache line per element, rows a multiple of
    4 KiB apart sharing L1 sets: BERT's K^T, [128, 12, 64] -> [12, 64, 128], ran at 1.4 ns per
    element). Axes q and the last are cut into TRANSPOSE_TILE x TRANSPOSE_TILE tiles: the other
    axes and the tiles form the (parallel) outer nest; a tile's inner loop writes a contiguous run
    of output, its reads are TRANSPOSE_TILE lines that stay in L1 for the whole tile (K^T above:
    68 -> 19 us)."""
    T, last = TRANSPOSE_TILE, y.rank - 1
    idx = [Var(ctx.fresh("i")) for _ in range(y.rank)]
    tq, tl = Var(ctx.fresh("tq")), Var(ctx.fresh("tl"))
    nq, nl = Var(ctx.fresh("nq")), Var(ctx.fresh("nl"))

    def extent(t, dim):
        return _min(Const(T), sub(dim, mul(t, Const(T))))
    inner_idx = list(idx)
    uq, ul = Var(ctx.fresh("u")), Var(ctx.fresh("u"))
    inner_idx[q] = add(mul(tq, Const(T)), uq)
    inner_idx[last] = add(mul(tl, Const(T)), ul)
    inner = [Let(nq.name, extent(tq, y.shape[q]), "i64"), Let(nl.name, extent(tl, y.shape[last]), "i64"),
             For(uq.name, nq, [For(ul.name, nl, body(inner_idx))])]
    loops = [(tl.name, _cdiv(y.shape[last], T)), (tq.name, _cdiv(y.shape[q], T))]
    loops += [(idx[k].name, y.shape[k]) for k in reversed(range(y.rank)) if k not in (q, last)]
    stmts = inner
    for n, (name, ext) in enumerate(loops):
        stmts = [For(name, ext, stmts, "parallel" if n == len(loops) - 1 else "serial")]
    return stmts


def _axis(ctx, rank):
    a = ctx.attrs["axis"]
    return a + rank if a < 0 else a


def _slabs(ctx: LowerCtx, whole, parts, axis: int, gather: bool):
    """Copy between `whole` and consecutive slabs `parts` along `axis`: parts into whole (Concat,
    gather=True) or whole into parts (Split)."""
    stmts, offset = [], Const(0)
    for part in parts:
        if part is None:
            continue
        def body(idx, part=part, offset=offset):
            at = list(idx)
            at[axis] = add(idx[axis], offset)
            if gather:
                return [Store(whole.buf, ctx.index(whole, at), part.load(ctx.index(part, idx)))]
            return [Store(part.buf, ctx.index(part, idx), whole.load(ctx.index(whole, at)))]
        stmts += ctx.loops(part.shape, body)
        offset = add(offset, part.shape[axis])
    return stmts


def lower_concat(ctx: LowerCtx):
    y = ctx.outputs[0]
    return _slabs(ctx, y, ctx.inputs, _axis(ctx, y.rank), gather=True)


def lower_split(ctx: LowerCtx):
    x = ctx.inputs[0]
    return _slabs(ctx, x, ctx.outputs, _axis(ctx, x.rank), gather=False)


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
    x, y = ctx.inputs[0], ctx.outputs[0]
    pads = ctx.const_input(1)
    has_axes = len(ctx.inputs) > 3 and ctx.inputs[3] is not None
    axes = ctx.const_input(3) if has_axes else None
    if ctx.attrs["mode"] != "constant" or pads is None or (has_axes and axes is None):
        return _lower_pad_runtime(ctx)
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


def _lower_pad_runtime(ctx: LowerCtx):
    """Pad with pads (and axes) read at run time, any mode. Per dim: the begin/end widths b, e
    (negative: crop); the data kept after cropping is [lo, lo + n) of the input dim. An output
    position o maps to q = o - max(b, 0) inside the kept data; outside it, constant mode gives the
    value, edge clamps q, reflect mirrors it (period 2(n-1)), wrap takes it modulo n."""
    x, y = ctx.inputs[0], ctx.outputs[0]
    mode = ctx.attrs["mode"]
    if mode not in ("constant", "edge", "reflect", "wrap"):
        raise NotLowerable(f"Pad mode {mode!r}")
    pads = ctx.inputs[1]
    axes = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    r = x.rank
    if pads.rank != 1 or (axes is not None and axes.rank != 1) or r == 0:
        raise NotLowerable("Pad pads/axes must be vectors")
    n_axes = axes.static_shape()[0] if axes is not None and axes.static_shape() else None
    if axes is None:
        n_axes = r
    elif n_axes is None:
        raise NotLowerable("Pad axes of unknown length")
    pre, begin, lo, n = [], [], [], []
    for k in range(r):
        b, e = ctx.fresh("b"), ctx.fresh("e")
        pre += [Let(b, Const(0), "i64"), Let(e, Const(0), "i64")]
        for j in range(n_axes):
            set_ = [Assign(b, cast(pads.load(Const(j)), "i64")), Assign(e, cast(pads.load(Const(j + n_axes)), "i64"))]
            if axes is None:
                if j == k:
                    pre += set_
                continue
            raw = cast(axes.load(Const(j)), "i64")
            a = select(binop("<", raw, Const(0)), add(raw, Const(r)), raw)
            pre.append(If(binop("==", a, Const(k)), set_))
        bv, ev = Var(b), Var(e)
        lo_k, n_k, q0 = ctx.fresh("lo"), ctx.fresh("n"), ctx.fresh("shift")
        pre += [Let(lo_k, maximum(sub(Const(0), bv), Const(0)), "i64"),
                Let(n_k, sub(sub(x.shape[k], Var(lo_k)), maximum(sub(Const(0), ev), Const(0))), "i64"),
                Let(q0, maximum(bv, Const(0)), "i64")]
        begin.append(Var(q0))
        lo.append(Var(lo_k))
        n.append(Var(n_k))
    cv = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    value = cv.load(Const(0)) if cv is not None and mode == "constant" else c(0, x.dtype)

    def body(idx):
        inside, src = c(True, "bool"), []
        for k, i in enumerate(idx):
            q = sub(i, begin[k])
            if mode == "constant":
                inside = binop("&&", inside, binop("&&", binop(">=", q, Const(0)), binop("<", q, n[k])))
                src.append(add(lo[k], q))
                continue
            last = sub(n[k], Const(1))
            if mode == "edge":
                q = minimum(maximum(q, Const(0)), last)
            elif mode == "wrap":
                q = Bin("floormod", q, maximum(n[k], Const(1)), "i64")
            else:
                period = maximum(mul(Const(2), last), Const(1))
                m = Bin("floormod", q, period, "i64")
                q = select(binop(">", m, last), sub(period, m), m)
            src.append(add(lo[k], minimum(maximum(q, Const(0)), maximum(last, Const(0)))))
        if mode == "constant":
            safe = [select(inside, j, Const(0)) for j in src]
            v = select(inside, x.load(ctx.index(x, safe)), value)
        else:
            v = x.load(ctx.index(x, src))
        return [Store(y.buf, ctx.index(y, idx), v)]
    loops = ctx.loops(y.shape, body)
    if mode != "constant":    # edge/reflect/wrap need data to repeat: nothing kept, nothing read
        ok = c(True, "bool")
        for k in range(r):
            ok = binop("&&", ok, binop(">", n[k], Const(0)))
        loops = [If(ok, loops)]
    return pre + loops


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


def lower_eye_like(ctx: LowerCtx):
    y = ctx.outputs[0]
    if y.rank != 2 or y.dtype not in ("f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32",
                                      "u64", "bool"):
        raise NotLowerable("EyeLike of rank other than 2")
    k = int(ctx.attrs["k"])
    return ctx.loops(y.shape, lambda idx: [Store(y.buf, ctx.index(y, idx), select(
        binop("==", sub(idx[1], idx[0]), Const(k)), c(1, y.dtype), c(0, y.dtype)))])


def lower_one_hot(ctx: LowerCtx):
    """values[1] where the new axis equals the index (negative ones counted from the depth),
    values[0] elsewhere; the depth is the planned output's."""
    ind, vals, y = ctx.inputs[0], ctx.inputs[2], ctx.outputs[0]
    axis = ctx.attrs["axis"] + y.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    if not 0 <= axis < y.rank or vals.dtype != y.dtype:
        raise NotLowerable("OneHot axis out of range")
    depth = y.shape[axis]

    def body(idx):
        i = cast(ind.load(ctx.index(ind, idx[:axis] + idx[axis + 1:])), "i64")
        i = select(binop("<", i, Const(0)), add(i, depth), i)
        return [Store(y.buf, ctx.index(y, idx), select(binop("==", i, idx[axis]), vals.load(Const(1)),
                                                       vals.load(Const(0))))]
    return ctx.loops(y.shape, body)


def _block_rearrange(to_space: bool):
    """DepthToSpace / SpaceToDepth as a gather over the output (N, C, H, W)."""
    def lower(ctx: LowerCtx):
        x, y = ctx.inputs[0], ctx.outputs[0]
        mode, b = ctx.attrs["mode"], int(ctx.attrs["blocksize"])
        if x.rank != 4 or mode not in ("DCR", "CRD") or b <= 0:
            raise NotLowerable("block rearrangement of rank other than 4")
        B = Const(b)
        div = lambda a, d: Bin("/", a, d, "i64")
        mod = lambda a, d: Bin("%", a, d, "i64")

        def body(idx):
            n, ch, h, w = idx
            if to_space:             # y (n, c, h*b + i, w*b + j) from x's channel block (i, j)
                C = y.shape[1]
                i, j = mod(h, B), mod(w, B)
                src_c = add(mul(add(mul(i, B), j), C), ch) if mode == "DCR" else \
                    add(mul(ch, Const(b * b)), add(mul(i, B), j))
                src = [n, src_c, div(h, B), div(w, B)]
            else:                    # y (n, channel block (i, j) of c, h, w) from x (c, h*b + i, w*b + j)
                C = x.shape[1]
                if mode == "DCR":
                    blk, cc = div(ch, C), mod(ch, C)
                else:
                    cc, blk = div(ch, Const(b * b)), mod(ch, Const(b * b))
                i, j = div(blk, B), mod(blk, B)
                src = [n, cc, add(mul(h, B), i), add(mul(w, B), j)]
            return [Store(y.buf, ctx.index(y, idx), x.load(ctx.index(x, src)))]
        return ctx.loops(y.shape, body)
    return lower


def lower_center_crop_pad(ctx: LowerCtx):
    """Output position o along a resized axis reads input o + (have - want) // 2 when cropping
    and o - (want - have) // 2 when padding (zero outside); want is the planned output size."""
    x, y = ctx.inputs[0], ctx.outputs[0]
    if x.rank != y.rank or x.rank == 0:
        raise NotLowerable("CenterCropPad of another rank")
    axes = ctx.attrs["axes"]
    axes = range(x.rank) if axes is None else [a + x.rank if a < 0 else a for a in axes]
    shift = [Const(0)] * x.rank
    for a in axes:
        have, want = x.shape[a], y.shape[a]
        crop = Bin("floordiv", sub(have, want), Const(2), "i64")
        pad = Bin("floordiv", sub(want, have), Const(2), "i64")
        shift[a] = select(binop("<", want, have), crop, sub(Const(0), pad))

    def body(idx):
        inside, src = c(True, "bool"), []
        for i, s, d in zip(idx, shift, x.shape):
            j = add(i, s)
            inside = binop("&&", inside, binop("&&", binop(">=", j, Const(0)), binop("<", j, d)))
            src.append(j)
        safe = [select(inside, j, Const(0)) for j in src]
        return [Store(y.buf, ctx.index(y, idx), select(inside, x.load(ctx.index(x, safe)), c(0, x.dtype)))]
    return ctx.loops(y.shape, body)


def lower_bit_cast(ctx: LowerCtx):
    """The bytes copied as they are: the kernel declares its input with the output's C type
    (same width), so the copy reinterprets them (the entry passes the buffer cast to that type)."""
    from ..backend.c import CTYPE
    x, y = ctx.inputs[0], ctx.outputs[0]
    width = {"f32": 4, "f64": 8, "i8": 1, "i16": 2, "i32": 4, "i64": 8, "u8": 1, "u16": 2,
             "u32": 4, "u64": 8, "bool": 1}
    if x.dtype not in width or y.dtype not in width or width[x.dtype] != width[y.dtype] or \
            y.dtype not in CTYPE or y.dtype == "bool":
        raise NotLowerable(f"BitCast from {x.dtype} to {y.dtype}")
    # the parameter list is built from ctx.inputs after lowering: retype the input in place
    ctx.inputs[0] = TensorRef(x.buf, y.dtype, x.shape, None)
    return ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, ctx.inputs[0].load(i))], "vector")


LOWER = {
    "EyeLike": lower_eye_like, "OneHot": lower_one_hot, "DepthToSpace": _block_rearrange(True),
    "SpaceToDepth": _block_rearrange(False), "CenterCropPad": lower_center_crop_pad,
    "BitCast": lower_bit_cast,
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

