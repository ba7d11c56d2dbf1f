"""Native lowerings of the normalizations (nn_norm.py): BatchNormalization, LayerNormalization,
InstanceNormalization, RMS, group, mean-variance and Lp normalization, LRN. Statistics per row in
the stash type, then the affine map, one pass over each row while it sits in cache."""
from __future__ import annotations

from ..lower.context import NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, Let, Store, Var, add, mul, product, sub


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
    """For each row: mean, variance (vector reductions), then y = (x - mean) * inv_std, passed
    through affine(i, v)."""
    dt = x.dtype
    r, i = Var(ctx.fresh("r")), Var(ctx.fresh("j"))
    mean, var, inv = ctx.fresh("mean"), ctx.fresh("var"), ctx.fresh("inv")
    mv, vv, iv = Var(mean, dt), Var(var, dt), Var(inv, dt)
    base = mul(r, width)
    xi = x.load(add(base, i))
    d = binop("-", xi, mv)
    body = [Let(mean, c(0, dt), dt),
            For(i.name, width, [Assign(mean, binop("+", mv, xi))], "vector", reduce=(("+", mean),)),
            Assign(mean, binop("/", mv, cast(width, dt))),
            Let(var, c(0, dt), dt),
            For(i.name, width, [Assign(var, binop("+", vv, binop("*", d, d)))], "vector",
                reduce=(("+", var),)),
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


def _stash(ctx, x):
    """The float type statistics are computed in (stash_type, widened for float64 inputs)."""
    from ..ir import dtypes
    if x.dtype not in FLOAT:
        raise NotLowerable("normalization of non-floats")
    st = dtypes.from_onnx(ctx.attrs["stash_type"]).name if "stash_type" in ctx.attrs else "f32"
    if st not in FLOAT:
        raise NotLowerable(f"normalization statistics in {st}")
    return "f64" if x.dtype == "f64" else st


def _suffix_param(t, full_shape: list, flat):
    """Load of a parameter broadcast against full_shape at the flat position, when its shape
    (leading 1s aside) is a suffix of full_shape: it repeats every numel(t) elements."""
    dims = list(t.shape)
    while dims and isinstance(dims[0], Const) and dims[0].value == 1:
        dims.pop(0)
    if len(dims) > len(full_shape) or any(a != b for a, b in zip(dims[::-1], full_shape[::-1])):
        raise NotLowerable("a normalization parameter that broadcasts inside its dims")
    n = product(dims)
    if all(a == b for a, b in zip(dims, full_shape)) and len(dims) == len(full_shape):
        return t.load(flat)
    return t.load(Bin("%", flat, n, "i64"))


def lower_rms_norm(ctx):
    x, scale = ctx.inputs[0], ctx.inputs[1]
    y = ctx.outputs[0]
    st = _stash(ctx, x)
    dt = x.dtype
    if scale.dtype != dt:
        raise NotLowerable("RMSNormalization scale of another dtype")
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]
    if not 0 <= axis < x.rank:
        raise NotLowerable("RMSNormalization axis out of range")
    rows, width = product(x.shape[:axis]), product(x.shape[axis:])
    r, j = Var(ctx.fresh("r")), Var(ctx.fresh("j"))
    ss, inv = ctx.fresh("sumsq"), ctx.fresh("inv")
    flat = add(mul(r, width), j)
    xv = cast(x.load(flat), st)
    eps = c(ctx.attrs["epsilon"], st)
    rms = call("sqrt", binop("+", cast(binop("/", Var(ss, "f64"), cast(width, "f64")), st), eps))
    normalized = cast(binop("/", xv, Var(inv, st)), dt)
    body = [Let(ss, c(0, "f64"), "f64"),
            For(j.name, width, [Assign(ss, binop("+", Var(ss, "f64"), cast(binop("*", xv, xv), "f64")))]),
            Let(inv, rms, st),
            For(j.name, width, [Store(y.buf, flat, binop("*", normalized, _suffix_param(scale, x.shape, flat)))],
                "vector")]
    return [For(r.name, rows, body, "parallel")]


def lower_group_norm(ctx):
    x, scale, bias = ctx.inputs
    y = ctx.outputs[0]
    st = _stash(ctx, x)
    dt = x.dtype
    if st != dt or scale.dtype != dt or bias.dtype != dt or x.rank < 2:
        raise NotLowerable("GroupNormalization with statistics or parameters in another dtype")
    G = int(ctx.attrs["num_groups"])
    C = x.shape[1]
    if not isinstance(C, Const) or G <= 0 or C.value % G:
        raise NotLowerable("GroupNormalization needs a static channel count divisible by num_groups")
    per = C.value // G
    spatial = product(x.shape[2:])
    n_par = scale.static_shape()
    if n_par is None or bias.static_shape() != n_par or len(n_par) != 1 or n_par[0] not in (C.value, G):
        raise NotLowerable("GroupNormalization scale/bias per channel or per group")
    per_group = n_par[0] == G != C.value

    def affine(r, j, v):
        g = Bin("%", r, Const(G), "i64")
        ch = g if per_group else add(mul(g, Const(per)), Bin("/", j, spatial, "i64"))
        return binop("+", binop("*", v, scale.load(ch)), bias.load(ch))
    return _normalize_rows(ctx, x, y, mul(x.shape[0], Const(G)), mul(Const(per), spatial), None, affine,
                           c(ctx.attrs["epsilon"], dt))


def _axis_passes(ctx, x, axes, body_fn):
    """Loops over the kept axes of x (parallel outside); body_fn(over, xi, yi_of) gives the body,
    where over(stmts) wraps statements in loops over the reduced axes and xi is x's flat index."""
    from ..lower.reduction import nest, split_loops
    kept, red, all_vars = split_loops(ctx, x, axes)
    kept_ext = [d for k, d in enumerate(x.shape) if k not in axes]
    red_ext = [d for k, d in enumerate(x.shape) if k in axes]
    over = lambda stmts: nest(red, red_ext, stmts)
    return nest(kept, kept_ext, body_fn(over, ctx.index(x, all_vars)), "parallel")


def lower_mvn(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    dt = x.dtype
    if dt not in FLOAT:
        raise NotLowerable("MeanVarianceNormalization of non-floats")
    axes = tuple(sorted({a + x.rank if a < 0 else a for a in ctx.attrs["axes"]}))
    if any(not 0 <= a < x.rank for a in axes):
        raise NotLowerable("MeanVarianceNormalization axes out of range")
    n = cast(product([x.shape[a] for a in axes]), dt)

    def body(over, xi):
        s, q, mean, std = (ctx.fresh(p) for p in ("s", "q", "mean", "std"))
        xv = x.load(xi)
        mv = Var(mean, dt)
        var = binop("-", binop("/", Var(q, dt), n), binop("*", mv, mv))
        return ([Let(s, c(0, dt), dt), Let(q, c(0, dt), dt)]
                + over([Assign(s, binop("+", Var(s, dt), xv)), Assign(q, binop("+", Var(q, dt), binop("*", xv, xv)))])
                + [Let(mean, binop("/", Var(s, dt), n), dt),
                   Let(std, call("sqrt", maximum(var, c(0, dt))), dt)]
                + over([Store(y.buf, xi, binop("/", binop("-", xv, mv), binop("+", Var(std, dt), c(1e-9, dt))))]))
    return _axis_passes(ctx, x, axes, body)


def lower_lp_norm(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    dt = x.dtype
    p = ctx.attrs["p"]
    if dt not in FLOAT or p not in (1, 2) or x.rank == 0:
        raise NotLowerable("LpNormalization of non-floats or p other than 1 and 2")
    axis = ctx.attrs["axis"] + x.rank if ctx.attrs["axis"] < 0 else ctx.attrs["axis"]

    def body(over, xi):
        norm = ctx.fresh("norm")
        nv = Var(norm, dt)
        xv = x.load(xi)
        term = call("fabs", xv) if p == 1 else binop("*", xv, xv)
        fin = [] if p == 1 else [Assign(norm, call("sqrt", nv))]
        return ([Let(norm, c(0, dt), dt)] + over([Assign(norm, binop("+", nv, term))]) + fin
                + [Assign(norm, select(binop("==", nv, c(0, dt)), c(1, dt), nv))]
                + over([Store(y.buf, xi, binop("/", xv, nv))]))
    return _axis_passes(ctx, x, (axis,), body)


def lower_lrn(ctx):
    x, y = ctx.inputs[0], ctx.outputs[0]
    dt = x.dtype
    if dt not in FLOAT or x.rank < 2:
        raise NotLowerable("LRN of non-floats")
    size = int(ctx.attrs["size"])
    before = (size - 1) // 2
    after = size - 1 - before
    C = x.shape[1]
    inner = product(x.shape[2:])
    n, ch, p, k = (Var(ctx.fresh(s)) for s in ("n", "c", "p", "k"))
    ssum = ctx.fresh("sq")
    sv = Var(ssum, dt)
    at = lambda cc: add(mul(add(mul(n, C), cc), inner), p)
    xv = x.load(at(k))
    lo = maximum(sub(ch, Const(before)), Const(0))
    hi = minimum(add(ch, Const(after + 1)), C)
    scale = binop("+", c(ctx.attrs["bias"], dt), binop("*", c(ctx.attrs["alpha"] / size, dt), sv))
    body = [Let(ssum, c(0, dt), dt), For(k.name, hi, [Assign(ssum, binop("+", sv, binop("*", xv, xv)))], "serial", lo),
            Store(y.buf, at(ch), binop("/", x.load(at(ch)), call("pow", scale, c(ctx.attrs["beta"], dt))))]
    return [For(n.name, x.shape[0], [For(ch.name, C, [For(p.name, inner, body)])], "parallel")]


LOWER = {
    "RMSNormalization": lower_rms_norm,
    "GroupNormalization": lower_group_norm,
    "MeanVarianceNormalization": lower_mvn,
    "LpNormalization": lower_lp_norm,
    "LRN": lower_lrn,
    "BatchNormalization": lower_batch_norm,
    "LayerNormalization": lower_layer_norm,
    "InstanceNormalization": lower_instance_norm,
}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
