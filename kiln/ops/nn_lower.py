"""Native lowerings of convolution (nn.py): direct convolution in NCHW, 1-D and 2-D.

Loop order: (n, output channel) in parallel; for each input channel and kernel tap the whole output
plane is updated, with the valid output column range computed up front so the innermost loop has
no bounds checks (contiguous and vectorizable at stride 1). Fast schedules (blocked layouts,
packed weights, micro-kernels) come with the optimizer; this is the plain, correct starting point.
"""
from __future__ import annotations

from ..lower.context import NotLowerable, TensorRef
from ..lower.exprs import FLOAT, binop, c, maximum, minimum
from ..lower.loopir import Bin, Const, For, Let, Load, Store, Var, add, mul, sub


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


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]

