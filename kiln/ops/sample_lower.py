"""Native lowerings of spatial sampling (nn_sample.py and friends): GridSample, AffineGrid,
MaxUnpool."""
from __future__ import annotations

from ..lower.context import NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Store, Var, add, mul, product, sub
from .nn_lower import flat_index


def lower_grid_sample(ctx):
    """One output element (n, c, position) at a time, positions in parallel per image: for each
    spatial axis the grid coordinate is unnormalized, padded (border / reflection) and split
    into taps (nearest 1, linear 2, cubic 4) with their weights; taps outside the image weigh 0
    (zeros padding). Computed in the input's float type, as the reference."""
    x, grid, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    dt = x.dtype
    a = ctx.attrs
    mode, pad, align = a["mode"], a["padding_mode"], bool(a["align_corners"])
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    if dt not in FLOAT or grid.dtype != dt or x.rank < 3 or grid.rank != x.rank:
        raise NotLowerable("GridSample of non-floats or mixed dtypes")
    if mode not in ("nearest", "linear", "cubic") or pad not in ("zeros", "border", "reflection"):
        raise NotLowerable(f"GridSample mode {mode!r} / padding {pad!r}")
    k = x.rank - 2
    N, C, S = x.shape[0], x.shape[1], x.shape[2:]
    O = grid.shape[1:-1]
    f = lambda v: c(v, dt)
    nv, cv = Var(ctx.fresh("n")), Var(ctx.fresh("c"))
    ov = [Var(ctx.fresh("o")) for _ in range(k)]
    gbase = ctx.fresh("g")
    body = [Let(gbase, mul(flat_index([nv] + ov, [N] + list(O)), Const(k)), "i64")]
    size_f = [cast(sz, dt) for sz in S]

    def padded(v, i):
        """pad_coord of the reference: border clips, reflection mirrors then clips."""
        if pad == "zeros":
            return v
        hi = binop("-", size_f[i], f(1.0))
        if pad == "reflection":
            lo2, hi2 = (f(0.0), binop("*", f(2.0), hi)) if align else \
                (f(-1.0), binop("-", binop("*", f(2.0), size_f[i]), f(1.0)))
            low = binop("/", lo2, f(2.0))
            span = binop("/", binop("-", hi2, lo2), f(2.0))
            dist = call("fabs", binop("-", v, low))
            extra = binop("%", dist, span)
            flips = call("floor", binop("/", dist, span))
            even = binop("==", binop("%", flips, f(2.0)), f(0.0))
            r = select(even, binop("+", extra, low), binop("+", binop("-", span, extra), low))
            v = select(binop("==", lo2, hi2), f(0.0), r)
        return select(binop("<", v, f(0.0)), f(0.0), select(binop(">", v, hi), hi, v))
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    tv = [Var(ctx.fresh("t")) for _ in range(k)]
    pos_w = []
    for i in range(k):
        g = grid.load(add(Var(gbase), Const(k - 1 - i)))
        coord = binop("/", binop("*", binop("+", g, f(1.0)), binop("-", size_f[i], f(1.0))), f(2.0)) if align \
            else binop("/", binop("-", binop("*", binop("+", g, f(1.0)), size_f[i]), f(1.0)), f(2.0))
        cn = ctx.fresh("coord")
        body.append(Let(cn, coord if mode == "cubic" else padded(coord, i), dt))
        cvar = Var(cn, dt)
        t = tv[i]
        if mode == "nearest":
            pos, wt = call("round", cvar), f(1.0)
        elif mode == "linear":
            base, fr = ctx.fresh("base"), ctx.fresh("frac")
            body += [Let(base, call("floor", cvar), dt), Let(fr, binop("-", cvar, Var(base, dt)), dt)]
            pos = binop("+", Var(base, dt), cast(t, dt))
            wt = select(binop("==", t, Const(0)), binop("-", f(1.0), Var(fr, dt)), Var(fr, dt))
        else:
            base, fr = ctx.fresh("base"), ctx.fresh("frac")
            body += [Let(base, call("floor", cvar), dt), Let(fr, binop("-", cvar, Var(base, dt)), dt)]
            A = -0.75
            near = lambda u: binop("+", binop("*", binop("*", binop("-", binop("*", f(A + 2), u), f(A + 3)), u), u), f(1.0))
            far = lambda u: binop("-", binop("*", binop("+", binop("*", binop("-", binop("*", f(A), u), f(5 * A)), u),
                                                          f(8 * A)), u), f(4 * A))
            frv = Var(fr, dt)
            ws = [far(binop("+", frv, f(1.0))), near(frv), near(binop("-", f(1.0), frv)), far(binop("-", f(2.0), frv))]
            wt = select(binop("==", t, Const(0)), ws[0], select(binop("==", t, Const(1)), ws[1],
                                                                select(binop("==", t, Const(2)), ws[2], ws[3])))
            pos = padded(binop("+", Var(base, dt), cast(sub(t, Const(1)), dt)), i)
        pos_w.append((pos, wt))
    acc = ctx.fresh("acc")
    accv = Var(acc, dt)
    wn = [ctx.fresh("w") for _ in range(k)]
    pn = [ctx.fresh("p") for _ in range(k)]
    idx = []
    for i in range(k):
        pv = Var(pn[i], dt)
        last = binop("-", size_f[i], f(1.0))
        # clamped as floats before the cast (NaN lands on 0)
        idx.append(select(binop(">", pv, f(0.0)), select(binop(">", pv, last), sub(S[i], Const(1)), cast(pv, "i64")),
                          Const(0)))
    inner = [Assign(acc, binop("+", accv, binop("*", x.load(flat_index([nv, cv] + idx, [N, C] + list(S))),
                                                 Var(wn[-1], dt))))]
    for i in reversed(range(k)):
        pos, wt = pos_w[i]
        pv = Var(pn[i], dt)
        inside = binop("&&", binop(">=", pv, f(0.0)), binop("<=", pv, binop("-", size_f[i], f(1.0))))
        w = binop("*", wt, select(inside, f(1.0), f(0.0)))
        if i:
            w = binop("*", Var(wn[i - 1], dt), w)
        inner = [For(tv[i].name, Const(taps), [Let(pn[i], pos, dt), Let(wn[i], w, dt)] + inner)]
    body += [For(cv.name, C, [Let(acc, f(0.0), dt)] + inner +
                 [Store(y.buf, flat_index([nv, cv] + ov, [N, C] + list(O)), accv)])]
    loops = body
    for i in reversed(range(k)):
        loops = [For(ov[i].name, O[i], loops)]
    return [For(nv.name, N, loops, "parallel")]


def lower_affine_grid(ctx):
    """grid[n, d..., i] = sum_j theta[n, i, j] * (x, y[, z], 1)_j over the base coordinates of the
    planned output (align_corners: linspace(-1, 1), else pixel centers)."""
    theta, y = ctx.inputs[0], ctx.outputs[0]
    dt = theta.dtype
    if dt not in FLOAT or y.rank < 4:
        raise NotLowerable("AffineGrid of non-floats")
    k = y.rank - 2
    N, S = y.shape[0], y.shape[1:-1]
    align = bool(ctx.attrs["align_corners"])
    nv = Var(ctx.fresh("n"))
    ov = [Var(ctx.fresh("o")) for _ in range(k)]
    iv = Var(ctx.fresh("i"))

    def base(o, size):                 # in float64, as np.linspace / the pixel-center formula
        of, sf = cast(o, "f64"), cast(size, "f64")
        if align:
            v = select(binop("==", o, sub(size, Const(1))), c(1.0, "f64"),
                       binop("+", c(-1.0, "f64"), binop("*", of, binop("/", c(2.0, "f64"), binop("-", sf, c(1.0, "f64"))))))
        else:
            v = binop("-", binop("/", binop("+", binop("*", of, c(2.0, "f64")), c(1.0, "f64")), sf), c(1.0, "f64"))
        return cast(select(binop("<=", size, Const(1)), c(0.0, "f64"), v), dt)
    coords = [base(ov[k - 1 - j], S[k - 1 - j]) for j in range(k)] + [c(1.0, dt)]   # x first
    acc = None
    for j, cj in enumerate(coords):
        term = binop("*", cj, theta.load(flat_index([nv, iv, Const(j)], [N, Const(k), Const(k + 1)])))
        acc = term if acc is None else binop("+", acc, term)
    body = [Store(y.buf, flat_index([nv] + ov + [iv], [N] + list(S) + [Const(k)]), acc)]
    body = [For(iv.name, Const(k), body)]
    for i in reversed(range(k)):
        body = [For(ov[i].name, S[i], body)]
    return [For(nv.name, N, body, "parallel")]


def lower_max_unpool(ctx):
    """Zeros, then each x element written at its index: the index is a flat position in the shape
    MaxPool came from (N, C, (in - 1) * stride + kernel - pads), moved to the output's shape;
    positions outside the output are skipped. Serial: later writes win, as the reference."""
    x, ind, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    a = ctx.attrs
    k = x.rank - 2
    if k < 1 or ind.dtype not in ("i32", "i64") or y.rank != x.rank or y.dtype == "bool":
        raise NotLowerable("MaxUnpool of this layout")
    kernel = a["kernel_shape"]
    strides = a["strides"] or [1] * k
    pads = a["pads"] or [0] * (2 * k)
    src = list(x.shape[:2]) + [add(mul(sub(x.shape[2 + i], Const(1)), Const(strides[i])),
                                   Const(kernel[i] - pads[i] - pads[i + k])) for i in range(k)]
    stmts = ctx.flat_loop(y.numel(), lambda i: [Store(y.buf, i, c(0, y.dtype))], "vector")
    i = Var(ctx.fresh("i"))
    flat, rest, coords = ctx.fresh("flat"), ctx.fresh("rest"), []
    body = [Let(flat, cast(ind.load(i), "i64"), "i64"), Let(rest, Var(flat), "i64")]
    for d in reversed(range(x.rank)):        # unravel in the pooled-from shape
        cd = ctx.fresh("c")
        body += [Let(cd, Bin("%", Var(rest), src[d], "i64"), "i64"), Assign(rest, Bin("/", Var(rest), src[d], "i64"))]
        coords.insert(0, Var(cd))
    ok = binop("&&", binop(">=", Var(flat), Const(0)), binop("<", Var(flat), product(src)))
    at = Const(0)
    for cd, d in zip(coords, y.shape):
        ok = binop("&&", ok, binop("<", cd, d))
        at = add(mul(at, d), cd)
    stmts.append(For(i.name, x.numel(), body + [If(ok, [Store(y.buf, at, x.load(i))])]))
    return stmts


LOWER = {
    "MaxUnpool": lower_max_unpool,
    "GridSample": lower_grid_sample,
    "AffineGrid": lower_affine_grid,
}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
