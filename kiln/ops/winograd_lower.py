"""Native lowerings of the Winograd convolution ops (winograd.py): each is one parallel loop whose
iterations call C generated for the geometry.

- WinogradInput: over (image, input block, tile row), kiln/backend/winograd.py's input transform.
- WinogradMatMul: over (image, point xi, pair of output blocks, run of tiles), the 1x1 blocked
  convolution kernel of kiln/backend/blocked.py with V[n][xi] as its input plane of T "pixels"
  and U[xi] as its weights (sums from zero: no bias), summed SUM_BLOCKS input blocks at a time:
  each chunk's sum starts at zero and is then added to M. In the Winograd domain the products are
  large against the output they cancel to, so one running sum over all the channels is the
  transforms' largest error; chunks of 4 blocks halve F(4, 3)'s (RMS over a 128-channel sum,
  fp64 reference: 1.3e-6 -> 7.1e-7; 512 channels: 2.4e-6 -> 8.5e-7) at no measurable cost.
- WinogradOutput: over (image, output block, tile row), the output transform, then the fused
  epilogue on the tile row's finished output rows.
"""
from __future__ import annotations

from ..backend.blocked import ConvRow, conv_row
from ..backend.microkernel import vector_registers
from ..backend.winograd import WinoGeometry, input_transform, output_transform
from ..lower.loopir import Bin, CallC, Const, For, Ref, Var, add, mul, sub
from .layout_lower import _chunk, _const, _div, _f32, _mod
from .winograd import tiles

I64 = "i64"
SUM_BLOCKS = 4          # input blocks (of 8 channels) per chunk of the products' sums


def _run(t: int) -> int:
    """Tiles per call of the products: _chunk's pick, else the largest divisor of t up to 96."""
    return _chunk(t) or max(d for d in range(1, 97) if t % d == 0)


def lower_winograd_input(ctx):
    _f32(ctx)
    x, vv = ctx.inputs[0], ctx.outputs[0]
    at = ctx.attrs
    icb, H, W, v = (_const(d, "input channel blocks and plane") for d in x.shape[1:])
    blocks, T = (_const(d, "the transformed tiles' slab") for d in vv.shape[2:4])
    m = at["m"]
    g = WinoGeometry(m, H, W, *at["out_hw"], *at["pads"], xi_stride=blocks * T * v, vw=v)
    th_n, tw_n = g.grid
    fn = input_transform(g)
    t = Var(ctx.fresh("t"))
    plane = _div(t, th_n)                                   # n*ICb + ib
    n, ib = _div(plane, icb), _mod(plane, icb)
    voff = mul(add(mul(n, Const((m + 2) ** 2 * blocks)), ib), Const(T * v))
    call = CallC(fn, (Ref(x.buf, mul(plane, Const(H * W * v)), "f32"), Ref(vv.buf, voff, "f32"),
                      _mod(t, th_n)))
    return [For(t.name, mul(x.shape[0], Const(icb * th_n)), [call], "parallel")]


def lower_winograd_matmul(ctx):
    _f32(ctx)
    vv, u, mm = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    a2, vblocks, vt, v = (_const(d, "Winograd tile sizes") for d in vv.shape[1:])
    mblocks, mt = (_const(d, "Winograd tile sizes") for d in mm.shape[2:4])
    ocb, icb = (_const(d, "channel blocks") for d in u.shape[1:3])
    T = ctx.attrs.get("tiles") or vt                        # the real tiles; the slabs may have more
    run = _run(T)
    g = ConvRow(False, icb, v, xs_cb=vt * v, xs_h=0, xs_w=v, xs_c=1, H=1, W=run, KH=1, KW=1, SH=1, SW=1,
                PH=0, PW=0, DH=1, DW=1, OH=1, OW=run, vw=v, ys_b=mt * v, regs=vector_registers(), bias=False,
                prefetch=True, sum_blocks=SUM_BLOCKS)
    fn = conv_row(g)
    NB = g.shapes[0][0]
    groups, runs = -(-ocb // NB), T // run
    t = Var(ctx.fresh("t"))
    r = _mod(t, runs)
    nx = _div(t, groups * runs)                             # n*A2 + xi
    ob = mul(_mod(_div(t, runs), groups), Const(NB))
    p0 = mul(r, Const(run * v))
    xoff = add(mul(nx, Const(vblocks * vt * v)), p0)
    woff = mul(add(mul(_mod(nx, a2), Const(ocb)), ob), Const(icb * v * v))
    yoff = add(mul(add(mul(nx, Const(mblocks)), ob), Const(mt * v)), p0)
    nb = Bin("min", Const(NB), sub(Const(ocb), ob), I64)
    wref = Ref(u.buf, woff, "f32")
    call = CallC(fn, (Ref(vv.buf, xoff, "f32"), wref, wref, Ref(mm.buf, yoff, "f32"), Const(0), nb))
    return [For(t.name, mul(vv.shape[0], Const(a2 * groups * runs)), [call], "parallel")]


def lower_winograd_output(ctx):
    _f32(ctx)
    mm, b, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    at = ctx.attrs
    m = at["m"]
    OH, OW = at["out_hw"]
    ocb, v = _const(y.shape[1], "output channel blocks"), _const(mm.shape[-1], "the block")
    blocks, T = (_const(d, "the products' slab") for d in mm.shape[2:4])
    g = WinoGeometry(m, 0, 0, OH, OW, 0, 0, xi_stride=blocks * T * v, vw=v, clamp=ctx.clamp)
    th_n, tw_n = g.grid
    fn = output_transform(g)
    t = Var(ctx.fresh("t"))
    plane = _div(t, th_n)                                   # n*OCb + ob
    n, ob, th = _div(plane, ocb), _mod(plane, ocb), _mod(t, th_n)
    moff = mul(add(mul(n, Const((m + 2) ** 2 * blocks)), ob), Const(T * v))
    ybase = add(mul(plane, Const(OH * OW * v)), mul(th, Const(m * OW * v)))
    body = [CallC(fn, (Ref(mm.buf, moff, "f32"), Ref(b.buf, mul(ob, Const(v)), "f32"),
                       Ref(y.buf, mul(plane, Const(OH * OW * v)), "f32"), th))]
    if ctx.clamp is not None:           # a fused Relu / Clip: in the transform, before the stores
        ctx.epilogue_done = True
    elif ctx.epilogue is not None:
        # the fused chain on the tile row's finished output rows
        q = Var(ctx.fresh("q"))
        rows = Bin("min", Const(m), sub(Const(OH), mul(th, Const(m))), I64)
        pix = _div(q, v)
        idx = [n, ob, add(mul(th, Const(m)), _div(pix, OW)), _mod(pix, OW), _mod(q, v)]
        body.append(For(q.name, mul(rows, Const(OW * v)), ctx.epilogue(add(ybase, q), idx), "vector"))
        ctx.epilogue_done = True
    return [For(t.name, mul(y.shape[0], Const(ocb * th_n)), body, "parallel")]


LOWER = {"WinogradInput": lower_winograd_input, "WinogradMatMul": lower_winograd_matmul,
         "WinogradOutput": lower_winograd_output}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
