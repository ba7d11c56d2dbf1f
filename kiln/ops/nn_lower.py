"""Native lowerings of convolution (nn.py): direct convolution in NCHW, 1-D and 2-D.

Ungrouped f32 2-D convolutions run as implicit GEMM (gemm_lower.py). This direct lowering serves
the rest, grouped and depthwise convolutions above all. Loop order: (n, output channel) in parallel,
then output rows; each row takes every input channel and kernel tap while it sits in L1, with the
valid output column range of each kernel column computed up front so the innermost loop has no
bounds checks (contiguous and vectorizable at stride 1), and the fused epilogue runs on it before
the next row. Pooling shares the row schedule; the N-d window ops gather per output element.
Normalizations live in norm_lower.py, spatial sampling in sample_lower.py.
"""
from __future__ import annotations

from ..lower.context import NotLowerable, TensorRef
import numpy as np

from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import (Assign, Bin, CallC, Const, For, If, Let, Load, Ref, Store, Var, add, mul,
                             product, sub)


def _ceil_div(a, b: int):
    """ceil(a / b) for b > 0 on runtime integers (a may be negative)."""
    return Bin("floordiv", add(a, Const(b - 1)), Const(b), "i64")


def conv_geometry(ctx):
    """(X, W, Y as 4-D refs, kernel, strides, dilations, begin pads, group)."""
    from .nn_window import resolve, spatial_attrs
    x, w, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if x.dtype not in FLOAT or x.rank not in (3, 4):
        raise NotLowerable("direct convolution handles 1-D and 2-D float convolutions")
    k = x.rank - 2
    a = ctx.attrs
    wshape = w.static_shape()
    if ctx.node.op == "PackedConv":           # weights packed as GEMM panels: geometry in attrs
        wshape = (a["m"], a["c"], *a["kernel_shape"])
    if wshape is None:
        raise NotLowerable("convolution weights need a static shape")
    kernel, strides, dilations = spatial_attrs(k, wshape[2:], a["strides"], a["dilations"])
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        spatial = [d.value if isinstance(d, Const) else None for d in x.shape[2:]]
        if None in spatial:
            raise NotLowerable("SAME padding over runtime spatial sizes")
        begin = resolve(spatial, kernel, strides, dilations, None, a["auto_pad"]).begin
    elif a["auto_pad"] == "VALID" or not a["pads"]:
        begin = (0,) * k
    else:
        begin = tuple(a["pads"][:k])
    if k == 1:           # a 1-D convolution is a 2-D one with a height of 1
        as4 = lambda t: TensorRef(t.buf, t.dtype, [t.shape[0], t.shape[1], Const(1), t.shape[2]], t.data)
        x, w, y = as4(x), as4(w), as4(y)
        kernel, strides, dilations, begin = (1,) + kernel, (1,) + strides, (1,) + dilations, (0,) + begin
    return x, w, y, kernel, strides, dilations, begin, a["group"]


def window_row(ctx, oh, H, W, OW, kernel, strides, dil, begin, tap) -> list:
    """The kernel taps of one output row `oh` of a 2-D window op: loops over kernel rows (input
    rows outside [0, H) skipped) and kernel columns, each column a check-free, vectorizable loop
    over the output columns whose input column lies in [0, W). `tap(r, s, ih, off, ow)` gives
    (statements before the column loop, its body), where the input column is ow*stride + off."""
    r, s, ow = (Var(ctx.fresh(v)) for v in ("r", "s", "ow"))
    ih, off, lo, hi = (Var(ctx.fresh(v)) for v in ("ih", "off", "lo", "hi"))
    sw = strides[1]
    pre, body = tap(r, s, ih, off, ow)
    cols = [Let(off.name, sub(mul(s, Const(dil[1])), Const(begin[1])), "i64"),
            Let(lo.name, maximum(Const(0), _ceil_div(sub(Const(0), off), sw)), "i64"),
            Let(hi.name, minimum(OW, _ceil_div(sub(W, off), sw)), "i64")]
    cols += pre + [For(ow.name, hi, body, "vector", lo)]
    inside = binop("&&", binop(">=", ih, Const(0)), binop("<", ih, H))
    rows = [Let(ih.name, add(mul(oh, Const(strides[0])), sub(mul(r, Const(dil[0])), Const(begin[0]))), "i64"),
            If(inside, [For(s.name, Const(kernel[1]), cols)])]
    return [For(r.name, Const(kernel[0]), rows)]


def lower_conv(ctx):
    if ctx.inputs[0].rank not in (3, 4):
        return lower_conv_nd(ctx)
    x, w, y, kernel, strides, dil, begin, group = conv_geometry(ctx)
    b = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    dt = x.dtype
    N, C, H, W = x.shape
    M, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    cin = w.shape[1]                       # input channels per group
    if dt == "f32" and group > 1 and cin == Const(1) and M == Const(group) and ctx.inputs[0].rank == 4:
        return _depthwise(ctx, x, w, y, b, kernel, strides, dil, begin)
    m_per_g = Bin("floordiv", M, Const(group), "i64") if group != 1 else M
    n, m, ic, oh = (Var(ctx.fresh(s)) for s in ("n", "m", "ic", "oh"))
    kh_sz, kw_sz = kernel
    ybase, row, cbase = (Var(ctx.fresh(s)) for s in ("ybase", "row", "cbase"))
    init = b.load(m) if b is not None else c(0, dt)
    g_in = mul(Bin("floordiv", m, m_per_g, "i64"), cin) if group != 1 else Const(0)

    def tap(r, s, ih, off, ow):
        wv = Var(ctx.fresh("w"), dt)
        widx = add(mul(add(mul(m, cin), ic), Const(kh_sz * kw_sz)), add(mul(r, Const(kw_sz)), s))
        xi = add(add(cbase, mul(ih, W)), add(mul(ow, Const(strides[1])), off))
        yi = add(row, ow)
        return [Let(wv.name, w.load(widx), dt)], \
            [Store(y.buf, yi, binop("+", Load(y.buf, yi, dt), binop("*", wv, x.load(xi))))]
    taps = [Let(cbase.name, mul(add(mul(n, C), add(g_in, ic)), mul(H, W)), "i64")]
    taps += window_row(ctx, oh, H, W, OW, kernel, strides, dil, begin, tap)
    p = Var(ctx.fresh("p"))
    per_row = [Let(row.name, add(ybase, mul(oh, OW)), "i64"),
               For(p.name, OW, [Store(y.buf, add(row, p), init)], "vector"),
               For(ic.name, cin, taps)]
    if ctx.epilogue is not None and ctx.outputs[0].rank == 4:
        # the fused elementwise chain (bias, residual, activation) on the finished, L1-hot row
        q = Var(ctx.fresh("q"))
        per_row.append(For(q.name, OW, ctx.epilogue(add(row, q), [n, m, oh, q]), "vector"))
        ctx.epilogue_done = True
    nm = Var(ctx.fresh("nm"))
    body = [Let(n.name, Bin("/", nm, M, "i64"), "i64"), Let(m.name, Bin("%", nm, M, "i64"), "i64"),
            Let(ybase.name, mul(add(mul(n, M), m), mul(OH, OW)), "i64"), For(oh.name, OH, per_row)]
    # one parallel loop over (image, output channel) pairs; each output row is finished (every
    # input channel and kernel tap) while it sits in L1
    return [For(nm.name, mul(N, M), body, "parallel")]


def _depthwise(ctx, x, w, y, b, kernel, strides, dil, begin):
    """One output channel per input channel: a plane per call of the depthwise kernel
    (kiln/backend/depthwise.py), then the fused epilogue over the plane while it is cache-hot."""
    from ..backend.depthwise import FN
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    nc, p = Var(ctx.fresh("nc")), Var(ctx.fresh("p"))
    c_ = Bin("%", nc, C, "i64")
    plane_in, plane_out = mul(nc, mul(H, W)), mul(nc, mul(OH, OW))
    bias = b.load(c_) if b is not None else c(0, "f32")
    geom = [Const(v) for v in (*kernel, *strides, *begin, *dil)]
    body = [CallC(FN, (Ref(x.buf, plane_in, "f32"), Ref(w.buf, mul(c_, Const(kernel[0] * kernel[1])), "f32"),
                       bias, Ref(y.buf, plane_out, "f32"), H, W, OH, OW, *geom))]
    if ctx.epilogue is not None:
        body.append(For(p.name, mul(OH, OW), ctx.epilogue(add(plane_out, p), [
            Bin("/", nc, C, "i64"), c_, Bin("/", p, OW, "i64"), Bin("%", p, OW, "i64")]), "vector"))
        ctx.epilogue_done = True
    return [For(nc.name, mul(N, C), body, "parallel")]


LOWER = {"Conv": lower_conv}


# --- pooling ---------------------------------------------------------------------------------
def pool_geometry(ctx):
    """(X, Y as 4-D refs, kernel, strides, dilations, begin pads, end pads)."""
    from .nn_window import resolve, spatial_attrs
    x, y = ctx.inputs[0], ctx.outputs[0]
    if x.dtype not in FLOAT or x.rank not in (3, 4):
        raise NotLowerable("pooling lowers for 1-D and 2-D float inputs")
    k = x.rank - 2
    a = ctx.attrs
    kernel, strides, dilations = spatial_attrs(k, a["kernel_shape"], a["strides"], a["dilations"])
    spatial = [d.value if isinstance(d, Const) else None for d in x.shape[2:]]
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER") or a.get("ceil_mode"):
        if None in spatial:
            raise NotLowerable("SAME padding or ceil_mode over runtime spatial sizes")
        win = resolve(spatial, kernel, strides, dilations, a["pads"], a["auto_pad"], bool(a.get("ceil_mode")))
        begin, end = win.begin, win.end
    elif a["auto_pad"] == "VALID" or not a["pads"]:
        begin = end = (0,) * k
    else:
        begin, end = tuple(a["pads"][:k]), tuple(a["pads"][k:])
    if k == 1:
        as4 = lambda t: TensorRef(t.buf, t.dtype, [t.shape[0], t.shape[1], Const(1), t.shape[2]])
        x, y = as4(x), as4(y)
        kernel, strides, dilations = (1,) + kernel, (1,) + strides, (1,) + dilations
        begin, end = (0,) + tuple(begin), (0,) + tuple(end)
    return x, y, kernel, strides, dilations, begin, end


def lower_pool(kind: str):
    def lower(ctx):
        x0 = ctx.inputs[0]
        if (kind == "max" and len(ctx.outputs) > 1 and ctx.outputs[1] is not None) or \
                x0.rank not in (3, 4) or x0.dtype not in FLOAT:
            return lower_pool_nd(ctx, kind)
        x, y, kernel, strides, dil, begin, end = pool_geometry(ctx)
        if kind == "max":
            return _max_pool_rows(ctx, x, y, kernel, strides, dil, begin)
        dt = x.dtype
        N, C, H, W = x.shape
        OH, OW = y.shape[2], y.shape[3]
        nc, oh, ow = Var(ctx.fresh("nc")), Var(ctx.fresh("oh")), Var(ctx.fresh("ow"))
        acc, cnt = ctx.fresh("acc"), ctx.fresh("cnt")
        accv, cntv = Var(acc, dt), Var(cnt, "i64")
        include_pad = kind == "avg" and ctx.attrs.get("count_include_pad")
        body = [Let(acc, c(float("-inf"), dt) if kind == "max" else c(0, dt), dt), Let(cnt, Const(0), "i64")]
        for r in range(kernel[0]):
            for s in range(kernel[1]):
                ih = add(mul(oh, Const(strides[0])), Const(r * dil[0] - begin[0]))
                iw = add(mul(ow, Const(strides[1])), Const(s * dil[1] - begin[1]))
                inside = binop("&&", binop("&&", binop(">=", ih, Const(0)), binop("<", ih, H)),
                               binop("&&", binop(">=", iw, Const(0)), binop("<", iw, W)))
                xi = add(mul(add(mul(nc, H), ih), W), iw)
                if kind == "max":
                    upd = [Assign(acc, maximum(accv, x.load(xi)))]
                else:
                    upd = [Assign(acc, binop("+", accv, x.load(xi))), Assign(cnt, add(cntv, Const(1)))]
                if include_pad:       # padded positions count, positions past the pads do not
                    in_pads = binop("&&", binop("&&", binop(">=", ih, Const(-begin[0])),
                                                binop("<", ih, add(H, Const(end[0])))),
                                    binop("&&", binop(">=", iw, Const(-begin[1])),
                                          binop("<", iw, add(W, Const(end[1])))))
                    body.append(If(inside, [upd[0]]))
                    body.append(If(in_pads, [Assign(cnt, add(cntv, Const(1)))]))
                else:
                    body.append(If(inside, upd))
        out = accv if kind == "max" else binop("/", accv, select(binop(">", cntv, Const(0)), cast(cntv, dt), c(1, dt)))
        body.append(Store(y.buf, add(mul(add(mul(nc, OH), oh), OW), ow), out))
        return [For(nc.name, mul(N, C), [For(oh.name, OH, [For(ow.name, OW, body)])], "parallel")]
    return lower


def _max_pool_rows(ctx, x, y, kernel, strides, dil, begin):
    """MaxPool row by row (the schedule of the direct convolution): each output row starts at -inf
    and takes the max over the kernel taps, each tap a check-free, vectorizable column range."""
    dt = x.dtype
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    nc, oh, p = (Var(ctx.fresh(s)) for s in ("nc", "oh", "p"))
    row, xbase = Var(ctx.fresh("row")), Var(ctx.fresh("xbase"))

    def tap(r, s, ih, off, ow):
        xi = add(add(xbase, mul(ih, W)), add(mul(ow, Const(strides[1])), off))
        yi = add(row, ow)
        return [], [Store(y.buf, yi, maximum(Load(y.buf, yi, dt), x.load(xi)))]
    per_row = [Let(row.name, mul(add(mul(nc, OH), oh), OW), "i64"),
               For(p.name, OW, [Store(y.buf, add(row, p), c(float("-inf"), dt))], "vector")]
    per_row += window_row(ctx, oh, H, W, OW, kernel, strides, dil, begin, tap)
    body = [Let(xbase.name, mul(nc, mul(H, W)), "i64"), For(oh.name, OH, per_row)]
    return [For(nc.name, mul(N, C), body, "parallel")]


def lower_global_pool(kind: str):
    from .reduce_lower import reduction

    def lower(ctx):
        if ctx.inputs[0].dtype not in FLOAT:
            raise NotLowerable("global pooling of non-floats")
        ctx.attrs = {"noop_with_empty_axes": 0, "keepdims": 1}
        axes = list(range(2, ctx.inputs[0].rank))
        ctx.inputs = [ctx.inputs[0], TensorRef("axes", "i64", [Const(len(axes))], np.array(axes))]
        return reduction(kind)(ctx)
    return lower


# --- N-d windows in gather form: 3-D convolution and pooling, ConvTranspose, LpPool, Indices ----
def window_pads(ctx, x, kernel, strides, dilations):
    """(begin, end) pads of a window op over x's spatial dims; SAME and ceil_mode need static
    spatial sizes (the output sizes themselves come from the plan)."""
    from .nn_window import resolve
    a = ctx.attrs
    k = x.rank - 2
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER") or a.get("ceil_mode"):
        spatial = [d.value if isinstance(d, Const) else None for d in x.shape[2:]]
        if None in spatial:
            raise NotLowerable("SAME padding or ceil_mode over runtime spatial sizes")
        win = resolve(spatial, kernel, strides, dilations, a["pads"], a["auto_pad"], bool(a.get("ceil_mode")))
        return tuple(win.begin), tuple(win.end)
    if a["auto_pad"] == "VALID" or not a["pads"]:
        return (0,) * k, (0,) * k
    return tuple(a["pads"][:k]), tuple(a["pads"][k:2 * k])


def _nest(vars_, extents, body, kind="serial"):
    for v, e in zip(reversed(vars_), reversed(extents)):
        body = [For(v.name, e, body, kind)]
    return body


def flat_index(idx, dims):
    out = Const(0)
    for i, d in zip(idx, dims):
        out = add(mul(out, d), i)
    return out


def lower_conv_nd(ctx):
    """Direct N-d convolution, one output element at a time: (image, channel) pairs in parallel;
    taps outside the input are skipped."""
    x, w, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    b = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    dt = x.dtype
    if dt not in FLOAT or x.rank < 3 or w.dtype != dt or (b is not None and b.dtype != dt):
        raise NotLowerable("convolution of non-floats or mixed dtypes")
    return conv_gather(ctx, x, w, y, lambda v, m: v, lambda v, m: v, dt,
                       lambda m: b.load(m) if b is not None else c(0, dt), lambda acc, m: acc)


def conv_gather(ctx, x, w, y, x_value, w_value, acc_dt, init, finish):
    """The N-d convolution loop nest shared by Conv, ConvInteger and QLinearConv: acc = init(m);
    acc += x_value(x[...], m) * w_value(w[...], m) over the taps inside the input; y = finish(acc, m)."""
    from .nn_window import spatial_attrs
    wshape = w.static_shape()
    if wshape is None or len(wshape) != x.rank or x.rank < 3:
        raise NotLowerable("convolution weights need a static shape")
    k = x.rank - 2
    kernel, strides, dil = spatial_attrs(k, wshape[2:], ctx.attrs["strides"], ctx.attrs["dilations"])
    if ctx.attrs["kernel_shape"] and tuple(ctx.attrs["kernel_shape"]) != tuple(kernel):
        raise NotLowerable("kernel_shape differs from the weights")
    begin, _ = window_pads(ctx, x, kernel, strides, dil)
    group = ctx.attrs["group"]
    M, cin = wshape[0], wshape[1]
    if M % group:
        raise NotLowerable("output channels not divisible by group")
    N, C, S, O = x.shape[0], x.shape[1], x.shape[2:], y.shape[2:]
    nm, n, m, ic = (Var(ctx.fresh(p)) for p in ("nm", "n", "m", "ic"))
    ov = [Var(ctx.fresh("o")) for _ in range(k)]
    tv = [Var(ctx.fresh("t")) for _ in range(k)]
    acc = ctx.fresh("acc")
    accv = Var(acc, acc_dt)
    coords = [add(add(mul(o, Const(s)), Const(-bg)), mul(t, Const(d)))
              for o, t, s, bg, d in zip(ov, tv, strides, begin, dil)]
    inside = c(True, "bool")
    for ci, sz in zip(coords, S):
        inside = binop("&&", inside, binop("&&", binop(">=", ci, Const(0)), binop("<", ci, sz)))
    chan = add(mul(Bin("/", m, Const(M // group), "i64"), Const(cin)), ic) if group != 1 else ic
    xi = flat_index([n, chan] + coords, [N, C] + list(S))
    wi = flat_index([m, ic] + tv, [Const(M), Const(cin)] + [Const(kk) for kk in kernel])
    prod = binop("*", x_value(x.load(xi), m), w_value(w.load(wi), m))
    tap = [If(inside, [Assign(acc, binop("+", accv, prod))])]
    inner = [For(ic.name, Const(cin), _nest(tv, [Const(kk) for kk in kernel], tap))]
    body = [Let(acc, init(m), acc_dt)] + inner + \
        [Store(y.buf, flat_index([nm] + ov, [mul(N, Const(M))] + list(O)), finish(accv, m))]
    split = [Let(n.name, Bin("/", nm, Const(M), "i64"), "i64"), Let(m.name, Bin("%", nm, Const(M), "i64"), "i64")]
    return [For(nm.name, mul(N, Const(M)), split + _nest(ov, list(O), body), "parallel")]


INT8 = ("i8", "u8", "i16", "u16", "i32", "u32")


def _zero_point(zp, m):
    """A zero point: per tensor, or per output channel m (1-D of length M)."""
    if zp is None:
        return Const(0)
    n = zp.static_numel()
    if n is None:
        raise NotLowerable("zero point of unknown shape")
    return cast(zp.load(Const(0) if n == 1 else m), "i64")


def lower_conv_integer(ctx):
    x, w, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    xz = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    wz = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    if x.dtype not in INT8 or w.dtype not in INT8 or y.dtype != "i32":
        raise NotLowerable("ConvInteger of these types")
    if xz is not None and xz.static_shape() not in ((), (1,)):
        raise NotLowerable("ConvInteger x_zero_point per channel")
    return conv_gather(ctx, x, w, y, lambda v, m: binop("-", cast(v, "i64"), _zero_point(xz, m)),
                       lambda v, m: binop("-", cast(v, "i64"), _zero_point(wz, m)), "i64",
                       lambda m: Const(0), lambda acc, m: cast(acc, "i32"))


def lower_qlinear_conv(ctx):
    from .quant_lower import INTS, saturate
    x, xs, xz, w, ws, wz, ys, yz = ctx.inputs[:8]
    b = ctx.inputs[8] if len(ctx.inputs) > 8 else None
    y = ctx.outputs[0]
    if x.dtype not in INTS or w.dtype not in INTS or y.dtype not in INTS or yz is None or \
            any(t.dtype != "f32" for t in (xs, ws, ys)) or (b is not None and b.dtype != "i32"):
        raise NotLowerable("QLinearConv of these types")
    if xz is not None and xz.static_shape() not in ((), (1,)):
        raise NotLowerable("QLinearConv x_zero_point per channel")
    lo, hi = INTS[y.dtype]

    def per_m(t, m):               # one value, or one per output channel
        n = t.static_numel()
        if n is None:
            raise NotLowerable("QLinearConv scale of unknown shape")
        return t.load(Const(0) if n == 1 else m)

    def finish(acc, m):            # f32 scale product / y_scale, then in float64 as requantize
        scale = cast(binop("/", binop("*", per_m(xs, m), per_m(ws, m)), per_m(ys, Const(0))), "f64")
        q = binop("+", call("round", binop("*", cast(acc, "f64"), scale)), cast(yz.load(Const(0)), "f64"))
        return saturate(q, lo, hi, y.dtype)
    return conv_gather(ctx, x, w, y, lambda v, m: binop("-", cast(v, "i64"), _zero_point(xz, m)),
                       lambda v, m: binop("-", cast(v, "i64"), _zero_point(wz, m)), "i64",
                       lambda m: cast(b.load(m), "i64") if b is not None else Const(0), finish)


def lower_deform_conv(ctx):
    """Deformable convolution gathered per output element: each tap of each input channel is a
    multilinear sample of x (zero outside) at the tap's position moved by its offset (and scaled
    by its mask); (image, output channel) pairs in parallel."""
    import itertools
    from .nn_window import spatial_attrs
    ins = ctx.inputs + [None] * (5 - len(ctx.inputs))
    x, w, off, b, mask = ins[:5]
    y = ctx.outputs[0]
    dt = x.dtype
    if dt not in FLOAT or any(t is not None and t.dtype != dt for t in (w, off, b, mask)) or x.rank < 3:
        raise NotLowerable("DeformConv of non-floats or mixed dtypes")
    wshape = w.static_shape()
    if wshape is None or len(wshape) != x.rank:
        raise NotLowerable("DeformConv weights need a static shape")
    a = ctx.attrs
    k = x.rank - 2
    kernel, strides, dil = spatial_attrs(k, wshape[2:], a["strides"], a["dilations"])
    begin = tuple(a["pads"][:k]) if a["pads"] else (0,) * k
    group, og = a["group"], a["offset_group"]
    M, cin = wshape[0], wshape[1]
    C = x.shape[1]
    if not isinstance(C, Const) or M % group or C.value % og:
        raise NotLowerable("DeformConv channel counts")
    c_per_og = C.value // og
    taps = 1
    for kk in kernel:
        taps *= kk
    N, S, O = x.shape[0], x.shape[2:], y.shape[2:]
    nm, n, m, ic = (Var(ctx.fresh(p)) for p in ("nm", "n", "m", "ic"))
    ov = [Var(ctx.fresh("o")) for _ in range(k)]
    tv = [Var(ctx.fresh("t")) for _ in range(k)]
    acc, pos_names = ctx.fresh("acc"), [ctx.fresh("pos") for _ in range(k)]
    accv = Var(acc, dt)
    chan = add(mul(Bin("/", m, Const(M // group), "i64"), Const(cin)), ic) if group != 1 else ic
    g = Bin("/", chan, Const(c_per_og), "i64")
    tap = flat_index(tv, [Const(kk) for kk in kernel])
    f = lambda v: c(v, dt)
    lets = []
    for i in range(k):     # offset[n, g, tap, i, o...], offset channel = (g * taps + tap) * k + i
        oc = add(mul(add(mul(g, Const(taps)), tap), Const(k)), Const(i))
        start = add(add(mul(ov[i], Const(strides[i])), Const(-begin[i])), mul(tv[i], Const(dil[i])))
        lets.append(Let(pos_names[i], binop("+", cast(start, dt), off.load(flat_index([n, oc] + ov, [N, off.shape[1]] + list(O)))), dt))
    sample = None
    for corner in itertools.product((0, 1), repeat=k):
        weight, inside, idx = None, c(True, "bool"), []
        for i, bit in enumerate(corner):
            p = Var(pos_names[i], dt)
            fl = call("floor", p)
            ii = binop("+", fl, f(float(bit)))
            wi = binop("-", f(1.0), call("fabs", binop("-", p, ii)))
            weight = wi if weight is None else binop("*", weight, wi)
            inside = binop("&&", inside, binop("&&", binop(">=", ii, f(0.0)), binop("<", ii, cast(S[i], dt))))
            # clamped as floats before the cast (a huge or NaN position must not index outside)
            idx.append(select(binop(">=", ii, f(0.0)), select(binop(">", ii, cast(sub(S[i], Const(1)), dt)),
                                                              sub(S[i], Const(1)), cast(ii, "i64")), Const(0)))
        term = select(inside, binop("*", x.load(flat_index([n, chan] + idx, [N, C] + list(S))), weight), f(0.0))
        sample = term if sample is None else binop("+", sample, term)
    if mask is not None:
        sample = binop("*", sample, mask.load(flat_index([n, add(mul(g, Const(taps)), tap)] + ov, [N, mask.shape[1]] + list(O))))
    wi = flat_index([m, ic] + tv, [Const(M), Const(cin)] + [Const(kk) for kk in kernel])
    body_tap = lets + [Assign(acc, binop("+", accv, binop("*", w.load(wi), sample)))]
    inner = [For(ic.name, Const(cin), _nest(tv, [Const(kk) for kk in kernel], body_tap))]
    body = [Let(acc, b.load(m) if b is not None else f(0.0), dt)] + inner + \
        [Store(y.buf, flat_index([nm] + ov, [mul(N, Const(M))] + list(O)), accv)]
    split = [Let(n.name, Bin("/", nm, Const(M), "i64"), "i64"), Let(m.name, Bin("%", nm, Const(M), "i64"), "i64")]
    return [For(nm.name, mul(N, Const(M)), split + _nest(ov, list(O), body), "parallel")]


def lower_conv_transpose(ctx):
    """Transposed convolution gathered per output element: output position o (full coordinate
    o + begin) takes x[i] * w[tap] wherever o + begin = i * stride + tap * dilation."""
    from .nn import transpose_pads
    from .nn_window import spatial_attrs
    x, w, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    b = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    dt = x.dtype
    if dt not in FLOAT or x.rank < 3 or w.dtype != dt or (b is not None and b.dtype != dt):
        raise NotLowerable("ConvTranspose of non-floats or mixed dtypes")
    wshape = w.static_shape()
    if wshape is None or len(wshape) != x.rank:
        raise NotLowerable("ConvTranspose weights need a static shape")
    a = ctx.attrs
    k = x.rank - 2
    kernel, strides, dil = spatial_attrs(k, wshape[2:], a["strides"], a["dilations"])
    if a["kernel_shape"] and tuple(a["kernel_shape"]) != tuple(kernel):
        raise NotLowerable("kernel_shape differs from the weights")
    if a["output_shape"] or a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        spatial = [d.value if isinstance(d, Const) else None for d in x.shape[2:]]
        if None in spatial:
            raise NotLowerable("ConvTranspose output_shape/SAME over runtime spatial sizes")
        begin = transpose_pads(spatial, kernel, strides, dil, a["output_padding"] or [0] * k, a["pads"],
                               a["output_shape"], a["auto_pad"])[0]
    elif a["auto_pad"] == "VALID" or not a["pads"]:
        begin = [0] * k
    else:
        begin = list(a["pads"][:k])
    group = a["group"]
    C, Mg = wshape[0], wshape[1]
    if C % group:
        raise NotLowerable("input channels not divisible by group")
    Cg, M = C // group, Mg * group
    N, S, O = x.shape[0], x.shape[2:], y.shape[2:]
    nm, n, m, cc = (Var(ctx.fresh(p)) for p in ("nm", "n", "m", "cc"))
    ov = [Var(ctx.fresh("o")) for _ in range(k)]
    tv = [Var(ctx.fresh("t")) for _ in range(k)]
    acc = ctx.fresh("acc")
    accv = Var(acc, dt)
    full = [ctx.fresh("f") for _ in range(k)]
    ok = c(True, "bool")
    src = []
    for f, sz, s in zip(full, S, strides):
        fv = Var(f)
        cond = binop(">=", fv, Const(0))
        if s != 1:
            cond = binop("&&", cond, binop("==", Bin("%", fv, Const(s), "i64"), Const(0)))
        i = Bin("/", fv, Const(s), "i64") if s != 1 else fv
        ok = binop("&&", ok, binop("&&", cond, binop("<", i, sz)))
        src.append(i)
    chan = add(mul(Bin("/", m, Const(Mg), "i64"), Const(Cg)), cc) if group != 1 else cc
    m_local = Bin("%", m, Const(Mg), "i64") if group != 1 else m
    xi = flat_index([n, chan] + src, [N, Const(C)] + list(S))
    wi = flat_index([chan, m_local] + tv, [Const(C), Const(Mg)] + [Const(kk) for kk in kernel])
    lets = [Let(f, sub(add(o, Const(bg)), mul(t, Const(d))), "i64")
            for f, o, t, bg, d in zip(full, ov, tv, begin, dil)]
    tap = lets + [If(ok, [Assign(acc, binop("+", accv, binop("*", x.load(xi), w.load(wi))))])]
    inner = [For(cc.name, Const(Cg), _nest(tv, [Const(kk) for kk in kernel], tap))]
    body = [Let(acc, b.load(m) if b is not None else c(0, dt), dt)] + inner + \
        [Store(y.buf, flat_index([nm] + ov, [mul(N, Const(M))] + list(O)), accv)]
    split = [Let(n.name, Bin("/", nm, Const(M), "i64"), "i64"), Let(m.name, Bin("%", nm, Const(M), "i64"), "i64")]
    return [For(nm.name, mul(N, Const(M)), split + _nest(ov, list(O), body), "parallel")]


def lower_pool_nd(ctx, kind: str):
    """MaxPool (any numeric dtype, with Indices), AveragePool and LpPool over N-d windows, one
    output element at a time; (image, channel) pairs in parallel."""
    from .nn_window import spatial_attrs
    from .reduce_lower import _lowest
    x, y = ctx.inputs[0], ctx.outputs[0]
    ind = ctx.outputs[1] if kind == "max" and len(ctx.outputs) > 1 else None
    dt = x.dtype
    if x.rank < 3 or dt == "bool" or (kind != "max" and dt not in FLOAT):
        raise NotLowerable(f"{kind} pooling of {dt} or rank {x.rank}")
    a = ctx.attrs
    k = x.rank - 2
    kernel, strides, dil = spatial_attrs(k, a["kernel_shape"], a["strides"], a["dilations"])
    if kernel is None or len(kernel) != k:
        raise NotLowerable("pooling kernel_shape of another rank")
    begin, end = window_pads(ctx, x, kernel, strides, dil)
    N, C, S, O = x.shape[0], x.shape[1], x.shape[2:], y.shape[2:]
    nc = Var(ctx.fresh("nc"))
    ov = [Var(ctx.fresh("o")) for _ in range(k)]
    tv = [Var(ctx.fresh("t")) for _ in range(k)]
    coords = [add(add(mul(o, Const(s)), Const(-bg)), mul(t, Const(d)))
              for o, t, s, bg, d in zip(ov, tv, strides, begin, dil)]
    inside = c(True, "bool")
    for ci, sz in zip(coords, S):
        inside = binop("&&", inside, binop("&&", binop(">=", ci, Const(0)), binop("<", ci, sz)))
    xv = x.load(flat_index([nc] + coords, [mul(N, C)] + list(S)))
    acc, cnt = ctx.fresh("acc"), ctx.fresh("cnt")
    accv, cntv = Var(acc, dt), Var(cnt, "i64")
    body = [Let(acc, _lowest(dt) if kind == "max" else c(0, dt), dt)]
    if kind == "max" and ind is None:
        tap = [If(inside, [Assign(acc, maximum(accv, xv))])]
    elif kind == "max":            # the first maximum in window order; padding reads the lowest value
        clipped = [minimum(maximum(ci, Const(0)), sub(sz, Const(1))) for ci, sz in zip(coords, S)]
        if a["storage_order"]:
            spatial_at = flat_index(clipped[::-1], list(S)[::-1])
        else:
            spatial_at = flat_index(clipped, list(S))
        at, v = ctx.fresh("at"), ctx.fresh("v")
        vv = Var(v, dt)
        better = binop(">", vv, accv)
        if dt in FLOAT:
            better = binop("||", better, binop("&&", binop("!=", vv, vv), binop("==", accv, accv)))
        first = binop("==", flat_index(tv, [Const(kk) for kk in kernel]), Const(0))
        tap = [Let(v, select(inside, xv, _lowest(dt)), dt),
               If(binop("||", first, better), [Assign(acc, vv), Assign(at, spatial_at)])]
        body.append(Let(at, Const(0), "i64"))
    else:
        term = xv if kind == "avg" else call("pow", call("fabs", xv), c(float(a["p"]), dt))
        tap = [If(inside, [Assign(acc, binop("+", accv, term)), Assign(cnt, add(cntv, Const(1)))])]
        if kind == "avg" and a.get("count_include_pad"):
            in_pads = c(True, "bool")
            for ci, sz, bg, e in zip(coords, S, begin, end):
                in_pads = binop("&&", in_pads, binop("&&", binop(">=", ci, Const(-bg)), binop("<", ci, add(sz, Const(e)))))
            tap = [If(inside, [Assign(acc, binop("+", accv, xv))]), If(in_pads, [Assign(cnt, add(cntv, Const(1)))])]
        body.append(Let(cnt, Const(0), "i64"))
    body += _nest(tv, [Const(kk) for kk in kernel], tap)
    if kind == "avg":
        result = cast(binop("/", cast(accv, "f64"), cast(cntv, "f64")), dt)
    elif kind == "lp":
        result = call("pow", accv, c(1.0 / a["p"], dt))
    else:
        result = accv
    yi = flat_index([nc] + ov, [mul(N, C)] + list(O))
    body.append(Store(y.buf, yi, result))
    if ind is not None:
        body.append(Store(ind.buf, yi, add(mul(nc, product(S)), Var(at))))
    return [For(nc.name, mul(N, C), _nest(ov, list(O), body), "parallel")]


LOWER.update({
    "DeformConv": lower_deform_conv, "ConvInteger": lower_conv_integer, "QLinearConv": lower_qlinear_conv,
    "ConvTranspose": lower_conv_transpose, "LpPool": lambda ctx: lower_pool_nd(ctx, "lp"),
    "MaxPool": lower_pool("max"), "AveragePool": lower_pool("avg"),
    "GlobalAveragePool": lower_global_pool("mean"), "GlobalMaxPool": lower_global_pool("max"),
})


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
