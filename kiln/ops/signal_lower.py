"""Native lowerings of the signal ops (signal.py): DFT and STFT as direct transforms (O(n^2) per
line, accumulated in float64: exact enough for the short signals they are used on), and the
Hann / Hamming / Blackman windows.

Complex values are a trailing dim of 2 (real, imaginary); a real signal has a trailing dim of 1.
Angles are 2 pi ((k j) mod n) / n, the product reduced in integers first so long transforms keep
their accuracy.
"""
from __future__ import annotations

import math

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Store, Var, add, mul, sub

F64 = "f64"
TWO_PI = 2 * math.pi


def _angle(k, j, n):
    """2 pi ((k j) mod n) / n in float64 (k, j, n: i64 expressions, n > 0)."""
    return binop("/", binop("*", c(TWO_PI, F64), cast(Bin("%", mul(k, j), n, "i64"), F64)), cast(n, F64))


def _scalar_input(ctx, i, default):
    if i < len(ctx.inputs) and ctx.inputs[i] is not None:
        t = ctx.inputs[i]
        if t.dtype not in ("i32", "i64"):
            raise NotLowerable("DFT length / axis of a non-integer type")
        return cast(t.load(Const(0)), "i64")
    return default


def lower_dft(ctx: LowerCtx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    dt = x.dtype
    inverse, onesided = bool(ctx.attrs["inverse"]), bool(ctx.attrs["onesided"])
    if dt not in FLOAT or y.dtype != dt or x.rank < 2 or x.rank != y.rank:
        raise NotLowerable("DFT of non-floats")
    if inverse and not onesided:
        # the direct sum is exact where an FFT leaves rounding noise (ONNX's expected data for
        # a complex inverse holds ~1e-7 instead of 0): keep the reference's FFT
        raise NotLowerable("complex inverse DFT (runs through numpy's FFT)")
    r = x.rank
    c_in, c_out = x.shape[-1], y.shape[-1]
    if not isinstance(c_in, Const) or c_in.value not in (1, 2) or not isinstance(c_out, Const):
        raise NotLowerable("DFT needs a static trailing complex dim")
    ax, L, n_out, inner, n = (ctx.fresh(p) for p in ("ax", "len", "nout", "inner", "n"))
    axv, Lv, nov, iv, nv = Var(ax), Var(L), Var(n_out), Var(inner), Var(n)
    raw = _scalar_input(ctx, 2, Const(-2))
    pre = [Let(ax, select(binop("<", raw, Const(0)), add(raw, Const(r)), raw), "i64"),
           Let(L, Const(1), "i64"), Let(n_out, Const(1), "i64"), Let(inner, Const(1), "i64")]
    for k in range(r - 1):       # the signal axis' length in x and y, and the dims after it
        pre += [If(binop("==", axv, Const(k)), [Assign(L, x.shape[k]), Assign(n_out, y.shape[k])]),
                If(binop("<", axv, Const(k)), [Assign(inner, mul(iv, x.shape[k]))])]
    length = _scalar_input(ctx, 1, None)
    if onesided and inverse:
        default = mul(Const(2), sub(Lv, Const(1)))
    else:
        default = Lv
    pre.append(Let(n, maximum(length if length is not None else default, Const(1)), "i64"))
    # every (outer, bin, inner) output position in parallel
    o, kk, p, j = (Var(ctx.fresh(s)) for s in ("o", "k", "p", "j"))
    pos = Var(ctx.fresh("pos"))
    outer = Bin("/", x.numel(), maximum(mul(mul(Lv, iv), c_in), Const(1)), "i64")
    def xin(jj, comp):
        base = add(mul(add(mul(o, Lv), jj), iv), p)
        return cast(x.load(add(mul(base, c_in), Const(comp))), F64)
    re, im = ctx.fresh("re"), ctx.fresh("im")
    rev, imv = Var(re, F64), Var(im, F64)
    split = [Let(o.name, Bin("/", pos, mul(nov, iv), "i64"), "i64"),
             Let(kk.name, Bin("%", Bin("/", pos, iv, "i64"), nov, "i64"), "i64"),
             Let(p.name, Bin("%", pos, iv, "i64"), "i64"),
             Let(re, c(0.0, F64), F64), Let(im, c(0.0, F64), F64)]
    th = ctx.fresh("theta")
    thv = Var(th, F64)
    cos_, sin_ = call("cos", thv), call("sin", thv)
    if onesided and inverse:      # irfft: the Hermitian extension of bins 0 .. n/2, real output
        bins = minimum(Lv, add(Bin("/", nv, Const(2), "i64"), Const(1)))
        zr, zi = xin(j, 0), (xin(j, 1) if c_in.value == 2 else c(0.0, F64))
        weight = select(binop("||", binop("==", j, Const(0)),
                              binop("==", mul(j, Const(2)), nv)), c(1.0, F64), c(2.0, F64))
        loop = [For(j.name, bins, [Let(th, _angle(kk, j, nv), F64),
                                   Assign(re, binop("+", rev, binop("*", weight, binop(
                                       "-", binop("*", zr, cos_), binop("*", zi, sin_)))))])]
        out = [Store(y.buf, pos, cast(binop("/", rev, cast(nv, F64)), dt))]
        if c_out.value != 1:
            raise NotLowerable("irfft output with a complex dim")
    else:
        sign = 1.0 if inverse else -1.0
        zr, zi = xin(j, 0), (xin(j, 1) if c_in.value == 2 else c(0.0, F64))
        s_ = binop("*", c(sign, F64), sin_)
        loop = [For(j.name, minimum(Lv, nv), [Let(th, _angle(kk, j, nv), F64),
                                               Assign(re, binop("+", rev, binop("-", binop("*", zr, cos_), binop("*", zi, s_)))),
                                               Assign(im, binop("+", imv, binop("+", binop("*", zr, s_), binop("*", zi, cos_))))])]
        scale = (lambda v: binop("/", v, cast(nv, F64))) if inverse else (lambda v: v)
        if c_out.value != 2:
            raise NotLowerable("DFT output without a complex dim")
        out = [Store(y.buf, mul(pos, Const(2)), cast(scale(rev), dt)),
               Store(y.buf, add(mul(pos, Const(2)), Const(1)), cast(scale(imv), dt))]
    total = mul(mul(outer, nov), iv)
    return pre + [For(pos.name, total, split + loop + out, "parallel")]


def lower_stft(ctx: LowerCtx):
    sig, y = ctx.inputs[0], ctx.outputs[0]
    step = _scalar_input(ctx, 1, None)
    window = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    length = _scalar_input(ctx, 3, None)
    dt = sig.dtype
    if dt not in FLOAT or sig.rank != 3 or y.rank != 4 or (window is not None and
                                                         (window.dtype != dt or window.rank != 1)):
        raise NotLowerable("STFT of this layout")
    c_in = sig.shape[2]
    if not isinstance(c_in, Const) or c_in.value not in (1, 2):
        raise NotLowerable("STFT needs a static trailing complex dim")
    B, Ls = sig.shape[0], sig.shape[1]
    F, K = y.shape[1], y.shape[2]
    n = ctx.fresh("n")
    nv = Var(n)
    frame = length if length is not None else (window.shape[0] if window is not None else Ls)
    pre = [Let(n, maximum(frame, Const(1)), "i64")]
    b, f, k, j = (Var(ctx.fresh(s)) for s in ("b", "f", "k", "j"))
    re, im, th = ctx.fresh("re"), ctx.fresh("im"), ctx.fresh("theta")
    rev, imv, thv = Var(re, F64), Var(im, F64), Var(th, F64)
    t = add(mul(f, step), j)
    inside = binop("&&", binop(">=", t, Const(0)), binop("<", t, Ls))
    at = lambda comp: add(mul(add(mul(b, Ls), select(inside, t, Const(0))), c_in), Const(comp))
    w = cast(window.load(minimum(j, sub(window.shape[0], Const(1)))), F64) if window is not None else c(1.0, F64)
    zr = select(inside, binop("*", cast(sig.load(at(0)), F64), w), c(0.0, F64))
    zi = select(inside, binop("*", cast(sig.load(at(1)), F64), w), c(0.0, F64)) if c_in.value == 2 else c(0.0, F64)
    cos_, sin_ = call("cos", thv), call("sin", thv)
    loop = [For(j.name, nv, [Let(th, _angle(k, j, nv), F64),
                             Assign(re, binop("+", rev, binop("+", binop("*", zr, cos_), binop("*", zi, sin_)))),
                             Assign(im, binop("+", imv, binop("-", binop("*", zi, cos_), binop("*", zr, sin_))))])]
    yi = lambda comp: add(mul(add(mul(add(mul(b, F), f), K), k), Const(2)), Const(comp))
    body = [Let(re, c(0.0, F64), F64), Let(im, c(0.0, F64), F64)] + loop + \
        [Store(y.buf, yi(0), cast(rev, dt)), Store(y.buf, yi(1), cast(imv, dt))]
    return pre + [For(b.name, B, [For(f.name, F, [For(k.name, K, body)])], "parallel")]


def _window(coeffs):
    def lower(ctx: LowerCtx):
        y = ctx.outputs[0]
        if y.dtype not in FLOAT + ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"):
            raise NotLowerable(f"window of {y.dtype}")
        size = y.shape[0]
        denom = size if ctx.attrs["periodic"] else sub(size, Const(1))
        i = Var(ctx.fresh("i"))
        phase = binop("/", binop("*", c(TWO_PI, F64), cast(i, F64)), cast(denom, F64))
        phase = select(binop(">", denom, Const(0)), phase, c(0.0, F64))
        w = None
        for k, a in enumerate(coeffs):
            term = binop("*", c((-1) ** k * a, F64), call("cos", binop("*", c(float(k), F64), phase)))
            w = term if w is None else binop("+", w, term)
        return [For(i.name, size, [Store(y.buf, i, cast(w, y.dtype))], "parallel")]
    return lower


LOWER = {"DFT": lower_dft, "STFT": lower_stft, "HannWindow": _window((0.5, 0.5)),
         "HammingWindow": _window((25 / 46, 21 / 46)), "BlackmanWindow": _window((0.42, 0.5, 0.08))}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
