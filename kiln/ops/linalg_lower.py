"""Native lowerings of MatMul and Gemm (linalg.py): plain loop nests, rows in parallel.

MatMul: for each (batch, row): zero the output row, then for each k add A[m,k] * B[k,:] to it
(the innermost loop runs along contiguous rows of B and C: it vectorizes). Gemm with transB reads B
by rows as dot products instead. Blocked, packed micro-kernels arrive with the performance work.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable, TensorRef
from ..lower.exprs import binop, c, call, cast, select
from ..lower.loopir import Assign, Const, For, Let, Load, Store, Var, add, mul


def _as_matrix(t: TensorRef, is_a: bool) -> TensorRef:
    """numpy matmul's 1-D rule: a vector A is a 1 x K row, a vector B a K x 1 column."""
    if t.rank != 1:
        return t
    shape = [Const(1), t.shape[0]] if is_a else [t.shape[0], Const(1)]
    return TensorRef(t.buf, t.dtype, shape, t.data)


def lower_matmul(ctx: LowerCtx):
    a0, b0, y0 = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    if a0.dtype != y0.dtype or a0.dtype == "bool":
        raise NotLowerable("MatMul of mixed or bool dtypes")
    a, b = _as_matrix(a0, True), _as_matrix(b0, False)
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    dropped = (a0.rank == 1) + (b0.rank == 1)        # 1-D operands drop M or N from y0
    batch = list(y0.shape[:y0.rank - (2 - dropped)])
    # the output as [*batch, M, N] (1-D operands drop a dim in y0 but not in memory order)
    y = TensorRef(y0.buf, y0.dtype, batch + [M, N])
    bvars = [Var(ctx.fresh("b")) for _ in batch]
    m, k, n = Var(ctx.fresh("m")), Var(ctx.fresh("k")), Var(ctx.fresh("n"))
    a_base = _batch_offset(ctx, a, batch, bvars)
    b_base = _batch_offset(ctx, b, batch, bvars)
    y_row = add(mul(_flat(batch, bvars), mul(M, N)), mul(m, N))
    av = ctx.fresh("a")
    dt = y.dtype
    yrow = Var(ctx.fresh("yrow"))
    yi = add(yrow, n)
    body = [Let(yrow.name, y_row, "i64"),
            For(n.name, N, [Store(y.buf, yi, c(0, dt))], "vector"),
            For(k.name, K, [
                Let(av, a.load(add(a_base, add(mul(m, K), k))), dt),
                For(n.name, N, [Store(y.buf, yi, cast(binop("+", Load(y.buf, yi, dt), binop(
                    "*", Var(av, dt), b.load(add(b_base, add(mul(k, N), n))))), dt))], "vector")])]
    loops = body
    loops = [For(m.name, M, loops, "serial")]
    for k_ in reversed(range(len(batch))):
        loops = [For(bvars[k_].name, batch[k_], loops, "serial")]
    return _parallel_outer(loops)


def _parallel_outer(loops):
    loops[0].kind = "parallel"
    return loops


def _batch_offset(ctx, t: TensorRef, batch: list, bvars: list):
    """Element offset of t's matrix for batch index bvars (t's batch dims broadcast)."""
    tb = list(t.shape[:-2])
    mat = mul(t.shape[-2], t.shape[-1])
    lead = len(batch) - len(tb)
    off, stride = Const(0), mat
    for k in reversed(range(len(tb))):
        d, i = tb[k], bvars[k + lead]
        if isinstance(d, Const) and d.value == 1:
            pass
        elif d == batch[k + lead] or isinstance(d, Const):
            off = add(off, mul(i, stride))
        else:                 # both runtime dims: whether this one broadcasts is known only then
            off = add(off, mul(select(binop("==", d, Const(1)), Const(0), i), stride))
        stride = mul(stride, d)
    return off


def _flat(shape: list, vars_: list):
    idx = Const(0)
    for d, v in zip(shape, vars_):
        idx = add(mul(idx, d), v)
    return idx


def lower_gemm(ctx: LowerCtx):
    a, b, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    cc = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    if a.dtype not in ("f32", "f64"):
        raise NotLowerable("Gemm on integers")
    at = ctx.attrs
    dt = y.dtype
    M, N = y.shape
    K = a.shape[0] if at["transA"] else a.shape[1]
    m, n, k = Var(ctx.fresh("m")), Var(ctx.fresh("n")), Var(ctx.fresh("k"))
    a_at = lambda mm, kk: a.load(add(mul(kk, M), mm) if at["transA"] else add(mul(mm, K), kk))
    b_at = lambda kk, nn: b.load(add(mul(nn, K), kk) if at["transB"] else add(mul(kk, N), nn))
    alpha, beta = c(at["alpha"], dt), c(at["beta"], dt)
    yi = add(mul(m, N), n)
    if cc is not None and at["beta"] != 0:
        cidx = ctx.broadcast_index(cc, [M, N], [m, n])
        init = binop("*", beta, cc.load(cidx))
    else:
        init = c(0, dt)
    if at["transB"]:          # dot products along contiguous rows of B
        acc = ctx.fresh("acc")
        body = [For(n.name, N, [
            Let(acc, c(0, dt), dt),
            For(k.name, K, [Assign(acc, binop("+", Var(acc, dt), binop("*", a_at(m, k), b_at(k, n))))]),
            Store(y.buf, yi, binop("+", binop("*", alpha, Var(acc, dt)), init))])]
    else:
        av = ctx.fresh("a")
        body = [For(n.name, N, [Store(y.buf, yi, init)], "vector"),
                For(k.name, K, [Let(av, binop("*", alpha, a_at(m, k)), dt),
                                For(n.name, N, [Store(y.buf, yi, binop(
                                    "+", Load(y.buf, yi, dt), binop("*", Var(av, dt), b_at(k, n))))],
                                    "vector")])]
    return [For(m.name, M, body, "parallel")]


def lower_einsum(ctx: LowerCtx):
    """Einsum as one loop nest: output positions in parallel, the summed letters inside, the sum
    of the operands' product. An ellipsis becomes letters of its own (right-aligned across
    operands); an operand dim of 1 under a longer letter broadcasts."""
    from .linalg import split_equation
    ins, y = ctx.inputs, ctx.outputs[0]
    dt = y.dtype
    if any(t.dtype != dt for t in ins) or dt == "bool":
        raise NotLowerable("Einsum of mixed or bool dtypes")
    try:
        terms, rhs = split_equation(ctx.attrs["equation"], len(ins))
    except ValueError:
        raise NotLowerable("Einsum equation") from None
    ell = max((t.rank - len(term.replace("...", "")) for t, term in zip(ins, terms) if "..." in term),
              default=0)

    def letters(term: str, rank: int) -> list:
        head, dots, tail = term.partition("...")
        if not dots:
            return list(head)
        n = rank - len(head) - len(tail)
        return list(head) + [f"...{k}" for k in range(ell - n, ell)] + list(tail)
    names = [letters(term, t.rank) for term, t in zip(terms, ins)]
    out_names = letters(rhs, y.rank) if "..." not in rhs else \
        list(rhs.partition("...")[0]) + [f"...{k}" for k in range(ell)] + list(rhs.partition("...")[2])
    if any(len(n) != t.rank for n, t in zip(names, ins)) or len(out_names) != y.rank or \
            any(not (ch.isalpha() or ch.startswith("...")) for n in names for ch in n):
        raise NotLowerable("Einsum term and rank disagree")
    size = {}
    for n, t in zip(names, ins):
        for ch, d in zip(n, t.shape):
            if ch not in size or (isinstance(size[ch], Const) and size[ch].value == 1):
                size[ch] = d
    for ch, d in zip(out_names, y.shape):
        size.setdefault(ch, d)
    summed = [ch for ch in dict.fromkeys(ch for n in names for ch in n) if ch not in out_names]
    var = {ch: Var(ctx.fresh("i")) for ch in list(dict.fromkeys(out_names)) + summed}
    acc = ctx.fresh("acc")
    accv = Var(acc, dt)
    term = None
    for n, t in zip(names, ins):
        idx = [Const(0) if isinstance(d, Const) and d.value == 1 and size[ch] != d else var[ch]
               for ch, d in zip(n, t.shape)]
        v = t.load(ctx.index(t, idx))
        term = v if term is None else cast(binop("*", term, v), dt)
    inner = [Assign(acc, cast(binop("+", accv, term), dt))]
    for ch in reversed(summed):
        inner = [For(var[ch].name, size[ch], inner)]
    if len(set(out_names)) != len(out_names):
        raise NotLowerable("Einsum output with a repeated letter")

    def body(idx):
        return [Let(acc, c(0, dt), dt)] + inner + [Store(y.buf, ctx.index(y, idx), accv)]
    if y.rank == 0:
        return body([])
    outs = [var[ch] for ch in out_names]
    stmts = body(outs)
    for k in reversed(range(y.rank)):
        stmts = [For(outs[k].name, y.shape[k], stmts, "parallel" if k == 0 else "serial")]
    return stmts


def _int_matmul(ctx: LowerCtx, a0, b0, y0, a_value, b_value, finish):
    """y[..., m, n] = finish(sum_k a_value(a[..., m, k], m) * b_value(b[..., k, n], n), m, n), the
    sum in int64 (exact); batch dims broadcast as MatMul's."""
    a, b = _as_matrix(a0, True), _as_matrix(b0, False)
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    dropped = (a0.rank == 1) + (b0.rank == 1)
    batch = list(y0.shape[:y0.rank - (2 - dropped)])
    bvars = [Var(ctx.fresh("b")) for _ in batch]
    m, k, n = Var(ctx.fresh("m")), Var(ctx.fresh("k")), Var(ctx.fresh("n"))
    a_base, b_base = _batch_offset(ctx, a, batch, bvars), _batch_offset(ctx, b, batch, bvars)
    acc = ctx.fresh("acc")
    accv = Var(acc, "i64")
    term = binop("*", a_value(a.load(add(a_base, add(mul(m, K), k))), m),
                 b_value(b.load(add(b_base, add(mul(k, N), n))), n))
    yi = add(mul(_flat(batch, bvars), mul(M, N)), add(mul(m, N), n))
    loops = [For(m.name, M, [For(n.name, N, [Let(acc, Const(0), "i64"),
                                             For(k.name, K, [Assign(acc, binop("+", accv, term))]),
                                             Store(y0.buf, yi, finish(accv, m, n))])])]
    for k_ in reversed(range(len(batch))):
        loops = [For(bvars[k_].name, batch[k_], loops)]
    return _parallel_outer(loops)


def _vector_param(p, pick):
    """A scale or zero point: one value, or a vector indexed by pick (a row or a column)."""
    if p is None:
        return None
    shape = p.static_shape()
    if shape is None or len(shape) > 1:
        raise NotLowerable("quantization parameters of this shape")
    return p.load(Const(0)) if not shape or shape[0] == 1 else p.load(pick)


def lower_matmul_integer(ctx: LowerCtx):
    a, b, y = ctx.inputs[0], ctx.inputs[1], ctx.outputs[0]
    az = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    bz = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    ints = ("i8", "u8", "i16", "u16", "i32", "u32")
    if a.dtype not in ints or b.dtype not in ints or y.dtype != "i32":
        raise NotLowerable("MatMulInteger of these types")
    centered = lambda z: (lambda v, i: binop("-", cast(v, "i64"), cast(_vector_param(z, i), "i64"))
                          if z is not None else cast(v, "i64"))
    return _int_matmul(ctx, a, b, y, centered(az), centered(bz), lambda acc, m, n: cast(acc, "i32"))


def lower_qlinear_matmul(ctx: LowerCtx):
    from .quant_lower import INTS, saturate
    a, a_s, a_z, b, b_s, b_z, y_s, y_z = ctx.inputs[:8]
    y = ctx.outputs[0]
    if a.dtype not in INTS or b.dtype not in INTS or y.dtype not in INTS or \
            any(t.dtype != "f32" for t in (a_s, b_s, y_s)):
        raise NotLowerable("QLinearMatMul of these types")
    lo, hi = INTS[y.dtype]
    centered = lambda z: (lambda v, i: binop("-", cast(v, "i64"), cast(_vector_param(z, i), "i64")))

    def finish(acc, m, n):           # float32 scale product / y_scale, then float64 as requantize
        scale = cast(binop("/", binop("*", _vector_param(a_s, m), _vector_param(b_s, n)),
                           _vector_param(y_s, Const(0))), "f64")
        q = binop("+", call("round", binop("*", cast(acc, "f64"), scale)), cast(_vector_param(y_z, Const(0)), "f64"))
        return saturate(q, lo, hi, y.dtype)
    return _int_matmul(ctx, a, b, y, centered(a_z), centered(b_z), finish)


LOWER = {"MatMul": lower_matmul, "Gemm": lower_gemm, "Einsum": lower_einsum,
         "MatMulInteger": lower_matmul_integer, "QLinearMatMul": lower_qlinear_matmul}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
