"""Native lowerings of MatMul and Gemm (linalg.py): plain loop nests, rows in parallel.

MatMul: for each (batch, row): zero the output row, then for each k add A[m,k] * B[k,:] to it
(the innermost loop runs along contiguous rows of B and C: it vectorizes). Gemm with transB reads B
by rows as dot products instead. Blocked, packed micro-kernels arrive with the performance work.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable, TensorRef
from ..lower.exprs import binop, c, cast, select
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


LOWER = {"MatMul": lower_matmul, "Gemm": lower_gemm}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
