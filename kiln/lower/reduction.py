"""Loop nests shared by reductions: an accumulator per output position, loops over the reduced
axes inside. Used by Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax (and later by norms)."""
from __future__ import annotations

from .context import LowerCtx, TensorRef
from .loopir import Assign, Const, For, Let, Var, add, mul, product


def split_loops(ctx: LowerCtx, x: TensorRef, axes: tuple):
    """Loop variables for x's axes: (kept vars, reduced vars, all vars in axis order)."""
    all_vars = [Var(ctx.fresh("i")) for _ in range(x.rank)]
    kept = [v for k, v in enumerate(all_vars) if k not in axes]
    red = [v for k, v in enumerate(all_vars) if k in axes]
    return kept, red, all_vars


def nest(vars_, extents, body, outer_kind="serial"):
    for k in reversed(range(len(vars_))):
        body = [For(vars_[k].name, extents[k], body, outer_kind if k == 0 else "serial")]
    return body


def reduce_loops(ctx: LowerCtx, x: TensorRef, axes: tuple, init, combine, finalize, store):
    """for each kept position: acc = init; for reduced: acc = combine(acc, x[...]);
    store(kept_vars, finalize(acc))."""
    kept, red, all_vars = split_loops(ctx, x, axes)
    kept_ext = [d for k, d in enumerate(x.shape) if k not in axes]
    red_ext = [d for k, d in enumerate(x.shape) if k in axes]
    acc = ctx.fresh("acc")
    accv = Var(acc, init.dtype)
    xi = x.load(ctx.index(x, all_vars))
    inner = nest(red, red_ext, [Assign(acc, combine(accv, xi))])
    body = [Let(acc, init, init.dtype)] + inner + store(kept, finalize(accv))
    return nest(kept, kept_ext, body, "parallel")


def count(x: TensorRef, axes: tuple):
    return product([d for k, d in enumerate(x.shape) if k in axes])


def out_index(x: TensorRef, axes: tuple, kept_vars: list):
    """Flat output index of a reduction over `axes` of x, the output holding the kept axes only
    (the size-1 dims of keepdims do not change flat indices)."""
    dims = [d for k, d in enumerate(x.shape) if k not in axes]
    strides, acc = [], Const(1)
    for d in reversed(dims):
        strides.append(acc)
        acc = mul(acc, d)
    strides.reverse()
    idx = Const(0)
    for v, s in zip(kept_vars, strides):
        idx = add(idx, mul(v, s))
    return idx
