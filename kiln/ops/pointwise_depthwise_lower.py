"""Native lowering of PointwiseDepthwise (pointwise_depthwise.py): one parallel loop over (image,
group of two channel blocks); each iteration calls the function generated for the geometry
(kiln/backend/pointwise_depthwise.py), then runs the fused epilogue on the group's output planes.
"""
from __future__ import annotations

from ..backend.blocked import ConvRow
from ..backend.microkernel import host_config, vector_registers
from ..backend.pointwise_depthwise import PwDwGeometry, pointwise_depthwise
from ..lower.context import NotLowerable
from ..lower.loopir import Bin, CallC, Const, For, Ref, Var, add, mul, sub
from .layout_lower import _const, _div, _f32, _mod, block_epilogue

I64 = "i64"
NB = 2            # channel blocks per call: the 1x1 row kernel's register tile


def lower_pointwise_depthwise(ctx):
    _f32(ctx)
    x, w1, b1, w2, b2 = ctx.inputs
    y = ctx.outputs[0]
    at = ctx.attrs
    v = host_config().vw
    if _const(y.shape[-1], "the block") != v:
        raise NotLowerable(f"blocked by {y.shape[-1]}, the target's vectors hold {v}")
    icb, H, W = (_const(d, "input channel and spatial sizes") for d in x.shape[1:4])
    OCb = _const(y.shape[1], "output channels")
    KH, KW = at["kernel_shape"]
    OH, OW = at["out_hw"]
    # the depthwise conv as lower_blocked_conv would run it, row by row over the expanded plane
    dw = ConvRow(True, OCb, v, H * W * v, W * v, v, 1, H, W, KH, KW, *at["strides"], *at["pads"][:2],
                 *at["dilations"], OH, OW, v, regs=vector_registers(), clamp=ctx.clamp)
    fn = pointwise_depthwise(PwDwGeometry(icb, dw, float(at["clip"][0]), float(at["clip"][1]), nb=NB))
    groups = -(-OCb // NB)
    t = Var(ctx.fresh("t"))
    n, ob = _div(t, groups), mul(_mod(t, groups), Const(NB))
    nb = Bin("min", Const(NB), sub(Const(OCb), ob), I64)
    ybase = mul(add(mul(n, Const(OCb)), ob), Const(OH * OW * v))
    body = [CallC(fn, (Ref(x.buf, mul(n, Const(icb * H * W * v)), "f32"),
                       Ref(w1.buf, mul(ob, Const(icb * v * v)), "f32"), Ref(b1.buf, mul(ob, Const(v)), "f32"),
                       Ref(w2.buf, mul(ob, Const(KH * KW * v)), "f32"), Ref(b2.buf, mul(ob, Const(v)), "f32"),
                       Ref(y.buf, ybase, "f32"), nb))]
    if ctx.clamp is not None:           # a fused Relu / Clip: in the depthwise rows' registers
        ctx.epilogue_done = True
    else:   # the fused chain on the group's finished output planes (nb blocks of OH x OW pixels)
        body += block_epilogue(ctx, n, ob, nb, ybase, Const(0), OH * OW, (OH, OW), v)
    return [For(t.name, mul(y.shape[0], Const(groups)), body, "parallel")]

LOWER = {"PointwiseDepthwise": lower_pointwise_depthwise}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
