"""Native lowerings of QuantizeLinear and DequantizeLinear (quant.py) for the integer types the C
backend has (int8/uint8, int16/uint16, int32/uint32) and float32/float64 real values; per tensor,
per axis (a 1-D scale along `axis`) and blocked (`block_size` consecutive elements along `axis`
share a scale). Rounding is half to even (`nearbyint`), as the reference's np.rint.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import FLOAT, INT_RANGE, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, Let, Store, Var

INTS = {k: INT_RANGE[k] for k in ("i8", "u8", "i16", "u16", "i32", "u32")}   # quantized types


def _param(ctx: LowerCtx, p, x, idx):
    """The load of scale/zero point p at x's multi-index idx: per tensor, per axis or blocked."""
    n = p.static_numel()
    if n is None:
        raise NotLowerable("quantization parameters of unknown shape")
    if n == 1 or x.rank == 0:
        return p.load(Const(0))
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    if not 0 <= axis < x.rank:
        raise NotLowerable("quantization axis out of range")
    block = ctx.attrs["block_size"]
    if block > 0:
        if p.rank != x.rank:
            raise NotLowerable("blocked quantization parameters of another rank")
        pidx = list(idx)
        pidx[axis] = Bin("/", idx[axis], Const(block), "i64")
        return p.load(ctx.index(p, pidx))
    if p.rank == 1:
        return p.load(idx[axis])
    raise NotLowerable("quantization parameters of this shape")


def lower_quantize(ctx: LowerCtx):
    x, scale = ctx.inputs[0], ctx.inputs[1]
    zp = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    y = ctx.outputs[0]
    if y.dtype not in INTS or x.dtype not in FLOAT or scale.dtype not in FLOAT:
        raise NotLowerable(f"QuantizeLinear from {x.dtype} to {y.dtype}")
    if ctx.attrs["precision"] or (zp is not None and zp.dtype != y.dtype):
        raise NotLowerable("QuantizeLinear with a precision or a zero point of another type")
    dt = "f64" if "f64" in (x.dtype, scale.dtype) else "f32"
    lo, hi = INTS[y.dtype]

    def body(idx):
        q = call("round", binop("/", cast(x.load(ctx.index(x, idx)), dt), cast(_param(ctx, scale, x, idx), dt)))
        if zp is not None:
            q = binop("+", q, cast(_param(ctx, zp, x, idx), dt))
        return [Store(y.buf, ctx.index(y, idx), saturate(q, lo, hi, y.dtype))]
    return ctx.loops(y.shape, body) if y.rank else body([])


def saturate(q, lo, hi, out: str):
    """Float q clamped into [lo, hi] and cast to the integer type out through int64, as the
    reference does; NaN gives lo (a cast of NaN or of an out-of-range float is undefined in C)."""
    dt = q.dtype
    clamped = select(binop(">", q, c(lo, dt)), select(binop("<", q, c(hi, dt)), q, c(hi, dt)), c(lo, dt))
    return cast(cast(clamped, "i64"), out)


def lower_dequantize(ctx: LowerCtx):
    x, scale = ctx.inputs[0], ctx.inputs[1]
    zp = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    y = ctx.outputs[0]
    if x.dtype not in INTS or y.dtype not in FLOAT or scale.dtype not in FLOAT:
        raise NotLowerable(f"DequantizeLinear from {x.dtype} to {y.dtype}")
    if zp is not None and zp.dtype not in INTS:
        raise NotLowerable("DequantizeLinear zero point of a non-integer type")
    dt = "f64" if y.dtype == "f64" else "f32"

    def body(idx):
        centered = cast(x.load(ctx.index(x, idx)), "i64")
        if zp is not None:
            centered = binop("-", centered, cast(_param(ctx, zp, x, idx), "i64"))
        v = binop("*", cast(centered, dt), cast(_param(ctx, scale, x, idx), dt))
        return [Store(y.buf, ctx.index(y, idx), cast(v, y.dtype))]
    return ctx.loops(y.shape, body) if y.rank else body([])


def lower_dynamic_quantize(ctx: LowerCtx):
    """uint8 quantization spanning [min(x, 0), max(x, 0)]: a serial min/max pass, the scale and
    zero point (scale 1, zero point 0 for an all-zero x), then the elements in parallel."""
    x = ctx.inputs[0]
    y, ys, yz = (ctx.outputs + [None, None])[:3]
    if x.dtype != "f32":
        raise NotLowerable("DynamicQuantizeLinear of non-float32")
    lo, hi, scale, zp = (ctx.fresh(p) for p in ("lo", "hi", "scale", "zp"))
    lov, hiv, sv, zv = Var(lo, "f32"), Var(hi, "f32"), Var(scale, "f32"), Var(zp, "f32")
    f = lambda v: c(v, "f32")
    pre = [Let(lo, f(0.0), "f32"), Let(hi, f(0.0), "f32")]
    pre += ctx.flat_loop(x.numel(), lambda i: [Assign(lo, minimum(lov, x.load(i))),
                                               Assign(hi, maximum(hiv, x.load(i)))], "serial")
    pre += [Let(scale, cast(binop("/", binop("-", cast(hiv, "f64"), cast(lov, "f64")), c(255.0, "f64")), "f32"), "f32"),
            Let(zp, select(binop("==", sv, f(0.0)), f(0.0),
                           minimum(maximum(call("round", binop("/", binop("-", f(0.0), lov), sv)), f(0.0)), f(255.0))),
                "f32")]
    q = lambda i: binop("+", call("round", binop("/", x.load(i), sv)), zv)
    body = ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, select(
        binop("==", sv, f(0.0)), c(0, "u8"), saturate(q(i), 0, 255, "u8")))])
    if ys is not None:
        body.append(Store(ys.buf, Const(0), select(binop("==", sv, f(0.0)), f(1.0), sv)))
    if yz is not None:
        body.append(Store(yz.buf, Const(0), cast(zv, "u8")))
    return pre + body


LOWER = {"QuantizeLinear": lower_quantize, "DequantizeLinear": lower_dequantize,
         "DynamicQuantizeLinear": lower_dynamic_quantize}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
