"""Native lowerings of the blocked-layout ops (layout.py).

BlockedConv: one parallel loop over (image, pair of output-channel blocks, output row) (depthwise:
(image, channel block, output row)); each iteration calls the row function generated for this
convolution's geometry (kiln/backend/blocked.py) and then runs the fused epilogue on the finished,
L1-hot row. BlockedMaxPool: the same rows, a vector of channels per pixel. The reorders are plain
loop nests: they run only where a blocked region meets the rest of the graph.
"""
from __future__ import annotations

from ..backend.blocked import ConvRow, conv_row
from ..backend.microkernel import host_config, vector_registers
from ..lower.context import NotLowerable
from ..lower.exprs import c, maximum, select
from ..lower.loopir import Bin, CallC, Const, For, If, Let, Load, Ref, Store, Var, add, mul, product, sub

I64 = "i64"
PLANE_MAX = 64           # output planes up to this many pixels: one call per plane (all taps constant)


def _const(e, what: str) -> int:
    if not isinstance(e, Const):
        raise NotLowerable(f"{what} must be known at compile time")
    return int(e.value)


def _div(a, b):
    return Bin("/", a, Const(b) if isinstance(b, int) else b, I64)


def _mod(a, b):
    return Bin("%", a, Const(b) if isinstance(b, int) else b, I64)


def _f32(ctx):
    if any(t is not None and t.dtype != "f32" for t in ctx.inputs + ctx.outputs):
        raise NotLowerable("the blocked layout's kernels are f32")


def lower_blocked_conv(ctx):
    _f32(ctx)
    x, w, b, y = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.outputs[0]
    at = ctx.attrs
    v = host_config().vw
    ws = w.static_shape()
    if ws is None or ws[-1] != v:
        raise NotLowerable(f"weights blocked by {ws[-1] if ws else '?'}, the target's vectors hold {v}")
    KH, KW = at["kernel_shape"]
    SH, SW = at["strides"]
    DH, DW = at["dilations"]
    PH, PW = at["pads"][:2]
    OH, OW = at["out_hw"]
    N, OCb = y.shape[0], _const(y.shape[1], "output channels")
    if at["plain"]:
        C, H, W = (_const(d, "input channel and spatial sizes") for d in x.shape[1:])
        icb, cb, strides = 1, C, (0, W, 1, H * W)
        image = C * H * W
    else:
        icb, H, W = (_const(d, "input channel and spatial sizes") for d in x.shape[1:4])
        cb, strides = v, (H * W * v, W * v, v, 1)
        image = icb * H * W * v
    depthwise = bool(at["depthwise"])
    pointwise = (KH, KW, SH, SW) == (1, 1, 1, 1) and not any(at["pads"]) and not at["plain"]
    chunk = _chunk(OH * OW) if pointwise and not depthwise else None
    plane = not depthwise and chunk is None and OH * OW <= PLANE_MAX
    if chunk:
        # a 1x1 stride-1 convolution is one long row: runs of `chunk` pixels, no borders
        rows = OH * OW // chunk
        g = ConvRow(False, icb, cb, xs_cb=strides[0], xs_h=0, xs_w=v, xs_c=1, H=1, W=chunk, KH=1, KW=1,
                    SH=1, SW=1, PH=0, PW=0, DH=1, DW=1, OH=1, OW=chunk, vw=v, ys_b=OH * OW * v,
                    regs=vector_registers(), prefetch=_ahead(rows), clamp=ctx.clamp)
    else:
        rows = 1 if plane else OH
        g = ConvRow(depthwise, icb, cb, *strides, H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW, v,
                    plane=plane, regs=vector_registers(), prefetch=not depthwise and _ahead(rows),
                    clamp=ctx.clamp)
    fn = conv_row(g)
    t = Var(ctx.fresh("t"))
    width = g.OW * (OH if plane else 1)             # pixels per call
    NB = g.shapes[0][0]                             # output blocks per call
    groups = OCb if depthwise else -(-OCb // NB)    # channel blocks (groups of NB) per image
    n = _div(t, groups * rows)
    r = _mod(t, rows)
    p0 = mul(r, Const(width))                       # the call's first output pixel
    if depthwise:
        ob = _mod(_div(t, rows), OCb)
        ybase = mul(t, Const(width * v))            # t = (n*OCb + ob)*OH + oh
        call = CallC(fn, (Ref(x.buf, add(mul(n, Const(image)), mul(ob, Const(H * W * v))), "f32"),
                          Ref(w.buf, mul(ob, Const(KH * KW * v)), "f32"), Ref(b.buf, mul(ob, Const(v)), "f32"),
                          Ref(y.buf, ybase, "f32"), r))
        nb = Const(1)
    else:
        ob = mul(_mod(_div(t, rows), groups), Const(NB))
        nb = Bin("min", Const(NB), sub(Const(OCb), ob), I64)
        ybase = add(mul(add(mul(n, Const(OCb)), ob), Const(OH * OW * v)), mul(p0, Const(v)))
        wstride = icb * KH * KW * cb * v
        xoff = mul(n, Const(image))
        if chunk:
            xoff = add(xoff, mul(p0, Const(v)))
        call = CallC(fn, (Ref(x.buf, xoff, "f32"), Ref(w.buf, mul(ob, Const(wstride)), "f32"),
                          Ref(b.buf, mul(ob, Const(v)), "f32"), Ref(y.buf, ybase, "f32"),
                          Const(0) if chunk else r, nb))
    if ctx.clamp is not None:           # the fused Relu / Clip ran in the kernel's registers
        ctx.epilogue_done = True
        body = [call]
    else:
        body = [call] + block_epilogue(ctx, n, ob, nb, ybase, p0, width, (OH, OW), v)
    return [For(t.name, mul(N, Const(groups * rows)), body, "parallel")]


def block_epilogue(ctx, n, ob, nb, ybase, p0, width: int, out_hw, v: int) -> list:
    """The fused chain (if any) on pixels p0.. p0+width of output blocks ob.. ob+nb of image n, just
    finished by a blocked kernel (ybase: the flat index of block ob's pixel p0)."""
    if ctx.epilogue is None:
        return []
    OH, OW = out_hw
    k, q, yk = Var(ctx.fresh("k")), Var(ctx.fresh("q")), Var(ctx.fresh("yk"))
    pix = add(p0, _div(q, v))
    idx = [n, add(ob, k), _div(pix, OW), _mod(pix, OW), _mod(q, v)]
    ctx.epilogue_done = True
    return [For(k.name, nb, [Let(yk.name, add(ybase, mul(k, Const(OH * OW * v))), I64),
                             For(q.name, Const(width * v), ctx.epilogue(add(yk, q), idx), "vector")])]


def _ahead(rows: int) -> bool:
    """ConvRow.prefetch: with one call per (image, pair of output blocks), the next call works on
    the next pair, whose weights each call prefetches (a small plane uses each weight a few times,
    so streaming the weights from memory bounds it: ResNet's 7x7 stage)."""
    return rows == 1


def _chunk(pixels: int) -> int | None:
    """Pixels per call of a 1x1 convolution's long row: the whole plane when small, else a
    divisor of it near 48 (a multiple of the 6-column tile when there is one), None if none."""
    if pixels <= 96:
        return pixels
    divs = [d for d in range(32, 97) if pixels % d == 0]
    if not divs:
        return None
    return min(divs, key=lambda d: (d % 6 != 0, abs(d - 48)))

def lower_blocked_max_pool(ctx):
    _f32(ctx)
    x, y = ctx.inputs[0], ctx.outputs[0]
    at = ctx.attrs
    v = _const(x.shape[-1], "the block")
    Cb, H, W = (_const(d, "channel and spatial sizes") for d in x.shape[1:4])
    KH, KW = at["kernel_shape"]
    SH, SW = at["strides"]
    DH, DW = at["dilations"]
    PH, PW = at["pads"][:2]
    OH, OW = at["out_hw"]
    t, ow, kh, kw, l, q = (Var(ctx.fresh(s)) for s in ("t", "ow", "kh", "kw", "l", "q"))
    ih, iw, yo = Var(ctx.fresh("ih")), Var(ctx.fresh("iw")), Var(ctx.fresh("yo"))
    plane = _div(t, OH)                                   # n*Cb + cb
    oh = _mod(t, OH)
    yrow = mul(t, Const(OW * v))
    yi = add(yo, l)
    xi = add(mul(add(mul(plane, Const(H)), ih), Const(W * v)), add(mul(iw, Const(v)), l))
    inside = lambda e, hi: Bin("&&", Bin(">=", e, Const(0), "bool"), Bin("<", e, Const(hi), "bool"), "bool")
    taps = For(kh.name, Const(KH), [
        Let(ih.name, add(sub(mul(oh, Const(SH)), Const(PH)), mul(kh, Const(DH))), I64),
        If(inside(ih, H), [For(kw.name, Const(KW), [
            Let(iw.name, add(sub(mul(ow, Const(SW)), Const(PW)), mul(kw, Const(DW))), I64),
            If(inside(iw, W), [For(l.name, Const(v), [
                Store(y.buf, yi, maximum(Load(y.buf, yi, "f32"), x.load(xi)))], "vector")])])])])
    per_col = [Let(yo.name, add(yrow, mul(ow, Const(v))), I64),
               For(l.name, Const(v), [Store(y.buf, yi, c(float("-inf"), "f32"))], "vector"), taps]
    body = [For(ow.name, Const(OW), per_col)]
    if ctx.epilogue is not None:
        n, cb = _div(plane, Cb), _mod(plane, Cb)
        body.append(For(q.name, Const(OW * v), ctx.epilogue(
            add(yrow, q), [n, cb, oh, _div(q, v), _mod(q, v)]), "vector"))
        ctx.epilogue_done = True
    return [For(t.name, mul(y.shape[0], Const(Cb * OH)), body, "parallel")]


def _plain_at(n, C, ch, S, s):
    """Flat index of (n, channel ch, pixel s) in NC... with C channels and S pixels."""
    return add(mul(add(mul(n, C), ch), S), s)


def _blocked_at(n, Cb, cb, S, s, v: int, lane):
    """Flat index of (n, block cb, pixel s, lane) in NC...c with Cb blocks of v lanes."""
    return add(mul(_plain_at(n, Cb, cb, S, s), Const(v)), lane)


def lower_to_blocked(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    v = _const(y.shape[-1], "the block")
    C = x.shape[1]
    S = product(x.shape[2:])

    def body(idx):
        n, cb, lane = idx[0], idx[1], idx[-1]
        s = Var(ctx.fresh("s"))
        ch = add(mul(cb, Const(v)), lane)
        src, dst = _plain_at(n, C, ch, S, s), _blocked_at(n, y.shape[1], cb, S, s, v, lane)
        return [For(s.name, S, [Store(y.buf, dst, select(Bin("<", ch, C, "bool"), x.load(src),
                                                          c(0, y.dtype)))])]
    # (n, block, lane) outside, pixels inside: each lane's reads run along one input channel
    return ctx.loops([y.shape[0], y.shape[1], Const(v)], body)


def lower_from_blocked(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    v = _const(x.shape[-1], "the block")
    C = y.shape[1]
    S = product(y.shape[2:])

    def body(idx):
        n, ch = idx
        s = Var(ctx.fresh("s"))
        src = _blocked_at(n, x.shape[1], _div(ch, v), S, s, v, _mod(ch, v))
        return [For(s.name, S, [Store(y.buf, _plain_at(n, C, ch, S, s), x.load(src))], "vector")]
    return ctx.loops([y.shape[0], C], body)


LOWER = {"BlockedConv": lower_blocked_conv, "BlockedMaxPool": lower_blocked_max_pool,
         "ToBlocked": lower_to_blocked, "FromBlocked": lower_from_blocked}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
