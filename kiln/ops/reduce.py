"""Reductions: ReduceSum and its kin, ArgMax/ArgMin, CumSum/CumProd, TopK, and the normalizing ops
Softmax, LogSoftmax and Hardmax.

Each result keeps its input's dtype (ArgMax/ArgMin and TopK's indices are i64). Narrow floats
accumulate in f32; integers accumulate in integer arithmetic.
"""
from __future__ import annotations

import numpy as np

from .elementwise import divide, like, rank_at_import, wide
from .infer import dtypes, norm_axis, reduce_shape, same_as, tensor_of
from .registry import OpDef


# --- ReduceSum and kin -----------------------------------------------------------------------
def reduce_axes(axes, rank: int, noop_with_empty_axes: int):
    """The axes to reduce: None for all, () for none (noop_with_empty_axes and no axes)."""
    if axes is None or np.asarray(axes).size == 0:
        return () if noop_with_empty_axes else None
    return tuple(sorted({int(a) + rank if int(a) < 0 else int(a)
                         for a in np.asarray(axes).reshape(-1)}))


def lowest(dt):
    """The identity of max: -inf, the type's minimum, or False."""
    if dt == np.bool_:
        return False
    return -np.inf if np.issubdtype(dt, np.floating) else np.iinfo(dt).min


def highest(dt):
    """The identity of min: +inf, the type's maximum, or True."""
    if dt == np.bool_:
        return True
    return np.inf if np.issubdtype(dt, np.floating) else np.iinfo(dt).max


def r_sum(x, axes, keepdims):
    return np.sum(x, axis=axes, keepdims=keepdims)


def r_mean(x, axes, keepdims):
    """The mean; integers divide their exact sum, truncating toward zero."""
    if not np.issubdtype(x.dtype, np.integer):
        return np.mean(x, axis=axes, keepdims=keepdims)
    total = np.sum(x, axis=axes, keepdims=keepdims)
    count = x.size // max(total.size, 1) if x.size else 0
    return divide(total, np.asarray(count, dtype=total.dtype))


def r_max(x, axes, keepdims):
    return np.max(x, axis=axes, keepdims=keepdims, initial=lowest(x.dtype))


def r_min(x, axes, keepdims):
    return np.min(x, axis=axes, keepdims=keepdims, initial=highest(x.dtype))


def r_prod(x, axes, keepdims):
    return np.prod(x, axis=axes, keepdims=keepdims)


def r_l1(x, axes, keepdims):
    return np.sum(np.abs(x), axis=axes, keepdims=keepdims)


def r_l2(x, axes, keepdims):
    return np.sqrt(np.sum(np.square(x), axis=axes, keepdims=keepdims))


def r_log_sum(x, axes, keepdims):
    return np.log(np.sum(x, axis=axes, keepdims=keepdims))


def r_log_sum_exp(x, axes, keepdims):
    """log(sum(exp(x))), shifted by the maximum so large inputs do not overflow."""
    m = np.max(x, axis=axes, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    if not keepdims:
        s = np.squeeze(s, axis=axes if axes is not None else tuple(range(x.ndim)))
    return s


def r_sum_square(x, axes, keepdims):
    return np.sum(np.square(x), axis=axes, keepdims=keepdims)


def infer_reduce(ctx):
    """Known axes (absent or constant) give the shape; otherwise only the rank when kept."""
    shape, keepdims = ctx.shape(0), ctx.attrs["keepdims"]
    axes = ctx.const(1) if ctx.has(1) else np.zeros(0, np.int64)
    if shape is None or axes is None:
        rank = None if shape is None or not keepdims else len(shape)
        return [tensor_of(ctx.dtype(0), None if rank is None else (None,) * rank)]
    chosen = reduce_axes(axes, len(shape), ctx.attrs["noop_with_empty_axes"])
    if chosen is None:
        chosen = range(len(shape))
    for a in chosen:
        norm_axis(a, len(shape), ctx)
    return [tensor_of(ctx.dtype(0), reduce_shape(shape, chosen, keepdims))]


def reduction(name: str, fn, axes_input_since: int, doc: str) -> OpDef:
    """A Reduce* op; `axes` is an input from `axes_input_since`, an attribute before."""
    def reference(data, axes=None, *, keepdims, noop_with_empty_axes):
        chosen = reduce_axes(axes, data.ndim, noop_with_empty_axes)
        with np.errstate(all="ignore"):
            return like(fn(wide(data), chosen, bool(keepdims)), data)

    def upgrade(node):
        if node.opset < axes_input_since:
            node.move_attr_to_input("axes", 1)

    reference.__doc__ = doc
    return OpDef(name, ("data", "axes?"), ("reduced",), dict(keepdims=1, noop_with_empty_axes=0),
                 reference, infer_reduce, upgrade)


REDUCTIONS = [
    reduction("ReduceSum", r_sum, 13, "ReduceSum(data, axes?): sum over axes (empty set: 0)."),
    reduction("ReduceMean", r_mean, 18, "ReduceMean(data, axes?): mean over axes."),
    reduction("ReduceMax", r_max, 18,
              "ReduceMax(data, axes?): maximum over axes (empty set: -inf or the lowest value)."),
    reduction("ReduceMin", r_min, 18,
              "ReduceMin(data, axes?): minimum over axes (empty set: +inf or the highest value)."),
    reduction("ReduceProd", r_prod, 18, "ReduceProd(data, axes?): product over axes (empty: 1)."),
    reduction("ReduceL1", r_l1, 18, "ReduceL1(data, axes?): sum of |data| over axes."),
    reduction("ReduceL2", r_l2, 18, "ReduceL2(data, axes?): sqrt of the sum of squares."),
    reduction("ReduceLogSum", r_log_sum, 18, "ReduceLogSum(data, axes?): log of the sum."),
    reduction("ReduceLogSumExp", r_log_sum_exp, 18,
              "ReduceLogSumExp(data, axes?): log of the sum of exp (empty set: -inf)."),
    reduction("ReduceSumSquare", r_sum_square, 18,
              "ReduceSumSquare(data, axes?): sum of squares over axes."),
]


# --- ArgMax, ArgMin ----------------------------------------------------------------------------
def arg_reduction(name: str, fn, doc: str) -> OpDef:
    """ArgMax/ArgMin: the index of the first (or last) extreme along one axis, as i64."""
    def reference(data, *, axis, keepdims, select_last_index):
        x = wide(data)
        ax = norm_axis(axis, x.ndim)
        if select_last_index:
            idx = x.shape[ax] - 1 - fn(np.flip(x, ax), axis=ax)
        else:
            idx = fn(x, axis=ax)
        if keepdims:
            idx = np.expand_dims(idx, ax)
        return np.asarray(idx, dtype=np.int64)

    def infer(ctx):
        shape = ctx.shape(0)
        if shape is not None:
            shape = reduce_shape(shape, [norm_axis(ctx.attrs["axis"], len(shape), ctx)],
                                 ctx.attrs["keepdims"])
        return [tensor_of(dtypes.i64, shape)]

    reference.__doc__ = doc
    return OpDef(name, ("data",), ("reduced",), dict(axis=0, keepdims=1, select_last_index=0),
                 reference, infer)


ARGS = [
    arg_reduction("ArgMax", np.argmax, "ArgMax(data): index of the maximum along `axis`."),
    arg_reduction("ArgMin", np.argmin, "ArgMin(data): index of the minimum along `axis`."),
]


# --- CumSum, CumProd ---------------------------------------------------------------------------
def shift_exclusive(acc: np.ndarray, axis: int, identity) -> np.ndarray:
    """acc moved one step along axis, the first slot filled with the identity."""
    out = np.full_like(acc, identity)
    dst = [slice(None)] * acc.ndim
    src = [slice(None)] * acc.ndim
    dst[axis], src[axis] = slice(1, None), slice(None, -1)
    out[tuple(dst)] = acc[tuple(src)]
    return out


def cumulative(name: str, fn, identity, doc: str) -> OpDef:
    """CumSum/CumProd along the axis given as input (optionally exclusive and/or reversed)."""
    def reference(x, axis, *, exclusive, reverse):
        ax = norm_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim)
        y = wide(x)
        if reverse:
            y = np.flip(y, ax)
        with np.errstate(all="ignore"):
            acc = fn(y, axis=ax)
        if exclusive:
            acc = shift_exclusive(acc, ax, identity)
        if reverse:
            acc = np.flip(acc, ax)
        return like(acc, x)

    reference.__doc__ = doc
    return OpDef(name, ("x", "axis"), ("y",), dict(exclusive=0, reverse=0), reference, same_as(0))


CUMULATIVE = [
    cumulative("CumSum", np.cumsum, 0, "CumSum(x, axis): running sum along axis."),
    cumulative("CumProd", np.cumprod, 1, "CumProd(x, axis): running product along axis."),
]


# --- TopK --------------------------------------------------------------------------------------
def sort_order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """Indices sorting x along axis; equal values keep their index order (lower first)."""
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    n = x.shape[axis]
    ascending_of_flipped = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
    return n - 1 - np.flip(ascending_of_flipped, axis)


def top_k(X, K, *, axis, largest, sorted):
    """TopK(X, K): the K largest (or smallest) values along axis and their indices (i64)."""
    k = int(np.asarray(K).reshape(-1)[0])
    ax = norm_axis(axis, X.ndim)
    if not 0 <= k <= X.shape[ax]:
        raise ValueError(f"k={k} is out of range for axis {ax} of size {X.shape[ax]}")
    order = sort_order(wide(X), ax, bool(largest))
    indices = np.take(order, np.arange(k), axis=ax)
    return np.take_along_axis(X, indices, axis=ax), indices.astype(np.int64)


def infer_top_k(ctx):
    shape, k = ctx.shape(0), ctx.const(1)
    if shape is not None:
        ax = norm_axis(ctx.attrs["axis"], len(shape), ctx)
        dim = int(k.reshape(-1)[0]) if k is not None else None
        shape = shape[:ax] + (dim,) + shape[ax + 1:]
    return [tensor_of(ctx.dtype(0), shape), tensor_of(dtypes.i64, shape)][: ctx.n_outputs]


def upgrade_top_k(node):
    """Before opset 10, k was an attribute; now it is a 1-element i64 input."""
    if "k" in node.attrs:
        node.inputs.append(node.const(np.array([node.attrs.pop("k")], np.int64), "k"))


TOPK = OpDef("TopK", ("X", "K"), ("Values", "Indices"), dict(axis=-1, largest=1, sorted=1),
             top_k, infer_top_k, upgrade_top_k)


# --- Softmax, LogSoftmax, Hardmax --------------------------------------------------------------
def normalized_axes(x: np.ndarray, axis: int, flatten: int) -> tuple:
    """The axes normalized over: `axis` alone, or with flatten=1 every axis from `axis` on."""
    ax = norm_axis(axis, x.ndim)
    return tuple(range(ax, x.ndim)) if flatten else (ax,)


def softmax(X, *, axis, flatten):
    """Softmax(X): exp(X) / sum(exp(X)) along `axis` (see the family's note on `flatten`)."""
    x = wide(X)
    axes = normalized_axes(x, axis, flatten)
    with np.errstate(all="ignore"):
        e = np.exp(x - np.max(x, axis=axes, keepdims=True))
        return like(e / np.sum(e, axis=axes, keepdims=True), X)


def log_softmax(X, *, axis, flatten):
    """LogSoftmax(X): X - log(sum(exp(X))) along `axis`."""
    x = wide(X)
    axes = normalized_axes(x, axis, flatten)
    with np.errstate(all="ignore"):
        shifted = x - np.max(x, axis=axes, keepdims=True)
        return like(shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True)), X)


def hardmax(X, *, axis, flatten):
    """Hardmax(X): 1 at the first maximum along `axis`, 0 elsewhere."""
    ax = norm_axis(axis, X.ndim)
    moved = X if flatten else np.moveaxis(X, ax, -1)
    width = int(np.prod(X.shape[ax:])) if flatten else X.shape[ax]
    rows = wide(moved).reshape(-1, width)
    onehot = np.zeros(rows.shape, dtype=X.dtype)
    onehot[np.arange(rows.shape[0]), np.argmax(rows, axis=1)] = 1
    onehot = onehot.reshape(moved.shape)
    return onehot if flatten else np.moveaxis(onehot, -1, ax)


def upgrade_normalize(node):
    """Before opset 13 these ops flattened the input to 2-D at `axis` (default 1) and normalized
    each row, i.e. over every axis from `axis` on. That is kept as `flatten=1`, unless `axis` is
    known to be the last axis, where both readings agree."""
    if node.opset >= 13:
        return
    axis = node.attrs.setdefault("axis", 1)
    rank = rank_at_import(node.inputs[0]) if node.inputs else None
    if rank is None or norm_axis(axis, rank) != rank - 1:
        node.attrs["flatten"] = 1


def normalizer(name: str, fn) -> OpDef:
    return OpDef(name, ("X",), ("Y",), dict(axis=-1, flatten=0), fn, same_as(0),
                 upgrade_normalize)


NORMALIZERS = [
    normalizer("Softmax", softmax),
    normalizer("LogSoftmax", log_softmax),
    normalizer("Hardmax", hardmax),
]

OPS = REDUCTIONS + ARGS + CUMULATIVE + [TOPK] + NORMALIZERS
