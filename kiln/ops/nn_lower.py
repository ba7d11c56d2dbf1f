"""Native lowerings of convolution (nn.py): direct convolution in NCHW, 1-D and 2-D.

Loop order: (n, output channel) in parallel; for each input channel and kernel tap the whole output
plane is updated, with the valid output column range computed up front so the innermost loop has
no bounds checks (contiguous and vectorizable at stride 1). Fast schedules (blocked layouts,
packed weights, micro-kernels) come with the optimizer; this is the plain, correct starting point.
"""
from __future__ import annotations

from ..lower.context import NotLowerable, TensorRef
import numpy as np

from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Load, Store, Var, add, mul, product, sub


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
    wshape = w.static_shape()
    if wshape is None:
        raise NotLowerable("convolution weights need a static shape")
    a = ctx.attrs
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


def col_range(ctx, out_w, in_w, kw, stride, dil, pad):
    """Output columns whose input column ow*stride - pad + kw*dil lies inside [0, in_w)."""
    off = kw * dil - pad
    lo = maximum(c(0, "i64"), _ceil_div(Const(-off), stride)) if off < 0 else Const(0)
    hi = minimum(out_w, _ceil_div(sub(in_w, Const(off)), stride))
    return lo, hi, off


def lower_conv(ctx):
    x, w, y, kernel, strides, dil, begin, group = conv_geometry(ctx)
    b = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    dt = x.dtype
    N, C, H, W = x.shape
    M, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    cin = w.shape[1]                       # input channels per group
    m_per_g = Bin("floordiv", M, Const(group), "i64") if group != 1 else M
    n, m, ic, kh, kw_, oh, ow = (Var(ctx.fresh(s)) for s in ("n", "m", "ic", "kh", "kw", "oh", "ow"))
    kh_sz, kw_sz = kernel
    plane = mul(OH, OW)
    ybase = ctx.fresh("ybase")
    ybase_v = Var(ybase)
    init = b.load(m) if b is not None else c(0, dt)
    body = [Let(ybase, mul(add(mul(n, M), m), plane), "i64")]
    i0 = Var(ctx.fresh("p"))
    body.append(For(i0.name, plane, [Store(y.buf, add(ybase_v, i0), init)], "vector"))
    # taps: kernel rows/cols unrolled at compile time (their ranges need them as constants)
    cbase = ctx.fresh("cbase")
    g_in = mul(Bin("floordiv", m, m_per_g, "i64"), cin) if group != 1 else Const(0)
    taps = []
    for r in range(kh_sz):
        for s in range(kw_sz):
            wv = ctx.fresh("w")
            widx = add(mul(add(mul(m, cin), ic), Const(kh_sz * kw_sz)), Const(r * kw_sz + s))
            row_off = r * dil[0] - begin[0]
            ih = add(mul(oh, Const(strides[0])), Const(row_off))
            lo, hi, off = col_range(ctx, OW, W, s, strides[1], dil[1], begin[1])
            lo_v, hi_v = ctx.fresh("lo"), ctx.fresh("hi")
            iw = add(mul(ow, Const(strides[1])), Const(off))
            xi = add(add(Var(cbase), mul(ih, W)), iw)
            yi = add(add(ybase_v, mul(oh, OW)), ow)
            upd = Store(y.buf, yi, binop("+", Load(y.buf, yi, dt), binop("*", Var(wv, dt), x.load(xi))))
            row_lo = maximum(Const(0), _ceil_div(Const(-row_off), strides[0])) if row_off < 0 else Const(0)
            row_hi = minimum(OH, _ceil_div(sub(H, Const(row_off)), strides[0]))
            taps += [Let(wv, w.load(widx), dt), Let(lo_v, lo, "i64"), Let(hi_v, hi, "i64"),
                     For(oh.name, row_hi, [For(ow.name, Var(hi_v), [upd], "vector", Var(lo_v))],
                         "serial", row_lo)]
    chan = add(g_in, ic)
    body.append(For(ic.name, cin, [Let(cbase, mul(add(mul(n, C), chan), mul(H, W)), "i64")] + taps))
    # one parallel loop over (image, output channel) pairs
    nm = Var(ctx.fresh("nm"))
    split = [Let(n.name, Bin("/", nm, M, "i64"), "i64"), Let(m.name, Bin("%", nm, M, "i64"), "i64")]
    return [For(nm.name, mul(N, M), split + body, "parallel")]


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
        if kind == "max" and len(ctx.outputs) > 1 and ctx.outputs[1] is not None:
            raise NotLowerable("MaxPool with an Indices output")
        x, y, kernel, strides, dil, begin, end = pool_geometry(ctx)
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


# --- normalization -----------------------------------------------------------------------------
def lower_batch_norm(ctx):
    x = ctx.inputs[0]
    if ctx.attrs["training_mode"] or len([o for o in ctx.outputs if o is not None]) > 1:
        raise NotLowerable("BatchNormalization in training mode")
    if x.dtype not in FLOAT or x.rank < 2 or any(t.dtype != x.dtype for t in ctx.inputs[1:]):
        raise NotLowerable("BatchNormalization needs float tensors of one dtype")
    scale, bias, mean, var = ctx.inputs[1:5]
    y = ctx.outputs[0]
    eps = c(ctx.attrs["epsilon"], x.dtype)
    N, C = x.shape[0], x.shape[1]
    spatial = product(x.shape[2:])
    nc, p = Var(ctx.fresh("nc")), Var(ctx.fresh("p"))
    ch = ctx.fresh("ch")
    chv = Var(ch)
    a, b = ctx.fresh("a"), ctx.fresh("b")
    body = [Let(ch, Bin("%", nc, C, "i64"), "i64"),
            Let(a, binop("/", scale.load(chv), call("sqrt", binop("+", var.load(chv), eps))), x.dtype),
            Let(b, binop("-", bias.load(chv), binop("*", mean.load(chv), Var(a, x.dtype))), x.dtype),
            For(p.name, spatial, [Store(y.buf, add(mul(nc, spatial), p), binop(
                "+", binop("*", x.load(add(mul(nc, spatial), p)), Var(a, x.dtype)), Var(b, x.dtype)))], "vector")]
    return [For(nc.name, mul(N, C), body, "parallel")]


def _normalize_rows(ctx, x, y, rows, width, row_of, affine, eps, stats=None):
    """For each row: mean, variance, then y = (x - mean) * inv_std, passed through affine(i, v)."""
    dt = x.dtype
    r, i = Var(ctx.fresh("r")), Var(ctx.fresh("j"))
    mean, var, inv = ctx.fresh("mean"), ctx.fresh("var"), ctx.fresh("inv")
    mv, vv, iv = Var(mean, dt), Var(var, dt), Var(inv, dt)
    base = mul(r, width)
    xi = x.load(add(base, i))
    d = binop("-", xi, mv)
    body = [Let(mean, c(0, dt), dt),
            For(i.name, width, [Assign(mean, binop("+", mv, xi))]),
            Assign(mean, binop("/", mv, cast(width, dt))),
            Let(var, c(0, dt), dt),
            For(i.name, width, [Assign(var, binop("+", vv, binop("*", d, d)))]),
            Let(inv, binop("/", c(1, dt), call("sqrt", binop("+", binop("/", vv, cast(width, dt)), eps))), dt),
            For(i.name, width, [Store(y.buf, add(base, i), affine(r, i, binop("*", d, iv)))], "vector")]
    if stats:
        m_out, inv_out = stats
        if m_out is not None:
            body.append(Store(m_out.buf, r, mv))
        if inv_out is not None:
            body.append(Store(inv_out.buf, r, iv))
    return [For(r.name, rows, body, "parallel")]


def lower_layer_norm(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    scale = ctx.inputs[1]
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    if x.dtype not in FLOAT or scale.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise NotLowerable("LayerNormalization needs float tensors of one dtype")
    outs = ctx.outputs + [None] * (3 - len(ctx.outputs))
    if any(o is not None and o.dtype != x.dtype for o in outs[1:]):
        raise NotLowerable("LayerNormalization statistics in another dtype")
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    rows, width = product(x.shape[:axis]), product(x.shape[axis:])
    inner = list(x.shape[axis:])
    for t in (scale, bias):
        if t is not None and (t.rank > len(inner) or any(not (d == e or (isinstance(d, Const) and d.value == 1))
                                                         for d, e in zip(t.shape[::-1], inner[::-1]))):
            raise NotLowerable("LayerNormalization scale/bias that broadcast over rows")

    def param(t, j):
        if t.rank == len(inner) and all(a == b for a, b in zip(t.shape, inner)):
            return t.load(j)
        raise NotLowerable("broadcast LayerNormalization scale")

    def affine(r, j, v):
        out = binop("*", v, param(scale, j))
        return binop("+", out, param(bias, j)) if bias is not None else out
    return _normalize_rows(ctx, x, y, rows, width, None, affine, c(ctx.attrs["epsilon"], x.dtype),
                           (outs[1], outs[2]))


def lower_instance_norm(ctx):
    x, scale, bias = ctx.inputs
    y = ctx.outputs[0]
    if x.dtype not in FLOAT or x.rank < 3:
        raise NotLowerable("InstanceNormalization of non-floats")
    C = x.shape[1]
    rows, width = mul(x.shape[0], C), product(x.shape[2:])

    def affine(r, j, v):
        ch = Bin("%", r, C, "i64")
        return binop("+", binop("*", v, scale.load(ch)), bias.load(ch))
    return _normalize_rows(ctx, x, y, rows, width, None, affine, c(ctx.attrs["epsilon"], x.dtype))


LOWER.update({
    "MaxPool": lower_pool("max"), "AveragePool": lower_pool("avg"),
    "GlobalAveragePool": lower_global_pool("mean"), "GlobalMaxPool": lower_global_pool("max"),
    "BatchNormalization": lower_batch_norm, "LayerNormalization": lower_layer_norm,
    "InstanceNormalization": lower_instance_norm,
})


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
