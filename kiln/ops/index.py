"""Indexing ops: gathers, scatters, slicing, selection (NonZero, Unique, Compress),
ReverseSequence and Col2Im.

Index operands may be negative (counting from the end of their axis) wherever ONNX allows it.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedError
from ..ir import dtypes
from .infer import dim_prod, norm_axis, same_as, tensor_of
from .registry import op


def ints(a) -> list[int]:
    return [int(x) for x in np.asarray(a).reshape(-1)]


def const_ints(ctx, i: int):
    c = ctx.const(i) if ctx.has(i) else None
    return None if c is None else ints(c)


def wrap_negative(indices, dim):
    """Indices as int64 with negative ones counted from the end of an axis of length `dim`."""
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + dim, idx)


# --- gathers -------------------------------------------------------------------------------
def infer_gather(ctx):
    s, q = ctx.shape(0), ctx.shape(1)
    if s is None or q is None:
        return [tensor_of(ctx.dtype(0), None)]
    axis = norm_axis(ctx.attrs["axis"], len(s), ctx)
    return [tensor_of(ctx.dtype(0), s[:axis] + q + s[axis + 1:])]


@op("Gather", inputs=["data", "indices"], outputs=["output"], attrs=dict(axis=0), infer=infer_gather)
def gather(data, indices, *, axis):
    """Gather(data, indices): take the entries `indices` of `data` along `axis`."""
    axis = axis + data.ndim if axis < 0 else axis
    return np.take(data, wrap_negative(indices, data.shape[axis]), axis=axis)


def infer_gather_elements(ctx):
    return [tensor_of(ctx.dtype(0), ctx.shape(1))]


@op("GatherElements", inputs=["data", "indices"], outputs=["output"], attrs=dict(axis=0),
    infer=infer_gather_elements)
def gather_elements(data, indices, *, axis):
    """GatherElements(data, indices): out[i][j] = data[indices[i][j]][j] (index replaces `axis`)."""
    axis = axis + data.ndim if axis < 0 else axis
    return np.take_along_axis(data, wrap_negative(indices, data.shape[axis]), axis=axis)


def infer_gather_nd(ctx):
    s, q, b = ctx.shape(0), ctx.shape(1), ctx.attrs["batch_dims"]
    if s is None or q is None or not isinstance(q[-1], int):
        return [tensor_of(ctx.dtype(0), None)]
    return [tensor_of(ctx.dtype(0), q[:-1] + s[b + q[-1]:])]


@op("GatherND", inputs=["data", "indices"], outputs=["output"], attrs=dict(batch_dims=0),
    infer=infer_gather_nd)
def gather_nd(data, indices, *, batch_dims):
    """GatherND(data, indices): each row of `indices` (last axis) addresses a slice of `data`;
    the first batch_dims axes of both are matched one to one."""
    b, k = batch_dims, indices.shape[-1]
    n_batch = math.prod(data.shape[:b])
    flat_data = data.reshape((n_batch,) + data.shape[b:])
    idx = wrap_negative(indices, np.array(data.shape[b:b + k], dtype=np.int64))
    flat_idx = idx.reshape((n_batch,) + idx.shape[b:])
    batch = np.arange(n_batch).reshape((n_batch,) + (1,) * (flat_idx.ndim - 2))
    picked = flat_data[(batch,) + tuple(flat_idx[..., j] for j in range(k))]
    return picked.reshape(indices.shape[:-1] + data.shape[b + k:])


# --- scatters ------------------------------------------------------------------------------
REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def scatter_into(data, where: tuple, updates, reduction: str):
    """A copy of data with updates written (or combined by `reduction`) at the index tuple."""
    out = np.array(data, copy=True)
    if reduction == "none":
        out[where] = updates
    elif reduction in REDUCTIONS:
        REDUCTIONS[reduction].at(out, where, updates)
    else:
        raise UnsupportedError(f"scatter reduction {reduction!r} (known: none, add, mul, max, min)")
    return out


def element_positions(indices, axis: int, dim: int) -> tuple:
    """Index tuple addressing data at `indices` along `axis` and at the indices' own position
    along every other axis."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = wrap_negative(indices, dim)
    return tuple(grid)


def scatter_elements_impl(data, indices, updates, axis: int, reduction: str):
    axis = axis + data.ndim if axis < 0 else axis
    where = element_positions(indices, axis, data.shape[axis])
    return scatter_into(data, where, updates, reduction)


@op("ScatterElements", inputs=["data", "indices", "updates"], outputs=["output"],
    attrs=dict(axis=0, reduction="none"), infer=same_as(0))
def scatter_elements(data, indices, updates, *, axis, reduction):
    """ScatterElements(data, indices, updates): out[indices[i][j]][j] = updates[i][j] (along
    `axis`), or combined with the reduction add/mul/max/min."""
    return scatter_elements_impl(data, indices, updates, axis, reduction)


@op("Scatter", inputs=["data", "indices", "updates"], outputs=["output"], attrs=dict(axis=0),
    infer=same_as(0))
def scatter(data, indices, updates, *, axis):
    """Scatter(data, indices, updates): the deprecated form of ScatterElements (no reduction)."""
    return scatter_elements_impl(data, indices, updates, axis, "none")


@op("ScatterND", inputs=["data", "indices", "updates"], outputs=["output"],
    attrs=dict(reduction="none"), infer=same_as(0))
def scatter_nd(data, indices, updates, *, reduction):
    """ScatterND(data, indices, updates): each row of `indices` (last axis) addresses a slice of
    `data` that receives (or is combined with) the matching slice of `updates`."""
    k = indices.shape[-1]
    idx = wrap_negative(indices, np.array(data.shape[:k], dtype=np.int64))
    where = tuple(idx[..., j] for j in range(k))
    return scatter_into(data, where, updates, reduction)


@op("TensorScatter", inputs=["past_cache", "update", "write_indices?"], outputs=["present_cache"],
    attrs=dict(axis=-2, mode="linear"), infer=same_as(0))
def tensor_scatter(past, update, write_indices=None, *, axis, mode):
    """TensorScatter(past_cache, update, write_indices): write `update` into the cache along the
    sequence `axis`, from write_indices[b] for batch b (wrapping around in circular mode)."""
    if mode not in ("linear", "circular"):
        raise UnsupportedError(f"TensorScatter mode {mode!r} (known: linear, circular)")
    axis = axis + past.ndim if axis < 0 else axis
    out = np.array(past, copy=True)
    max_len, seq_len = past.shape[axis], update.shape[axis]
    starts = np.zeros(past.shape[0], np.int64) if write_indices is None else ints(write_indices)
    lead = (slice(None),) * (axis - 1)
    for b, start in enumerate(starts):
        positions = start + np.arange(seq_len)
        if mode == "circular":
            positions %= max_len
        out[b][lead + (positions,)] = update[b]
    return out


# --- Slice ---------------------------------------------------------------------------------
def slice_spec(rank: int, starts, ends, axes, steps) -> list[slice]:
    """Python slices per dim; Python's clamping matches ONNX's, also for negative steps."""
    axes = range(len(starts)) if axes is None else [a + rank if a < 0 else a for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    spec = [slice(None)] * rank
    for a, st, en, sp in zip(axes, starts, ends, steps):
        if sp == 0:
            raise UnsupportedError("Slice step 0")
        spec[a] = slice(st, en, sp)
    return spec


BIG = 2**31 - 1     # starts/ends at least this large (or small) mean "to the end"


def covers_whole_dim(sl: slice) -> bool:
    step = 1 if sl.step is None else sl.step
    if step == 1:
        return sl.start in (None, 0) and (sl.stop is None or sl.stop >= BIG)
    if step == -1:
        return (sl.start in (None, -1) or sl.start >= BIG) and (sl.stop is None or sl.stop <= -BIG)
    return False


def sliced_dim(d, sl: slice):
    """The length of dim d after slicing; symbolic dims survive a slice that keeps them whole."""
    if isinstance(d, int):
        return len(range(d)[sl])
    return d if covers_whole_dim(sl) else None


def infer_slice(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    starts, ends = const_ints(ctx, 1), const_ints(ctx, 2)
    axes, steps = const_ints(ctx, 3), const_ints(ctx, 4)
    if starts is None or ends is None or (ctx.has(3) and axes is None) or \
            (ctx.has(4) and steps is None):
        if axes is None:
            return [tensor_of(ctx.dtype(0), [None] * len(s))]
        touched = {norm_axis(a, len(s)) for a in axes}
        return [tensor_of(ctx.dtype(0), [None if i in touched else d for i, d in enumerate(s)])]
    spec = slice_spec(len(s), starts, ends, axes, steps)
    return [tensor_of(ctx.dtype(0), [sliced_dim(d, sl) for d, sl in zip(s, spec)])]


def upgrade_slice(node):
    """Before opset 10, starts/ends/axes were attributes."""
    if node.opset < 10:
        node.move_attr_to_input("starts", 1)
        node.move_attr_to_input("ends", 2)
        node.move_attr_to_input("axes", 3)


@op("Slice", inputs=["data", "starts", "ends", "axes?", "steps?"], outputs=["output"],
    infer=infer_slice, upgrade=upgrade_slice)
def slice_(data, starts, ends, axes=None, steps=None):
    """Slice(data, starts, ends, axes, steps): data[starts:ends:steps] on the given axes."""
    spec = slice_spec(data.ndim, ints(starts), ints(ends),
                      None if axes is None else ints(axes), None if steps is None else ints(steps))
    return data[tuple(spec)]


# --- selection -----------------------------------------------------------------------------
def infer_nonzero(ctx):
    return [tensor_of(dtypes.i64, [ctx.rank(0), None])]


@op("NonZero", inputs=["X"], outputs=["Y"], infer=infer_nonzero)
def nonzero(x):
    """NonZero(X): the indices of the non-zero elements, one row per dim (int64 [rank, count])."""
    if x.ndim == 0:
        return np.zeros((0, int(bool(x))), dtype=np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def infer_unique(ctx):
    s, axis = ctx.shape(0), ctx.attrs["axis"]
    if axis is None:
        y_shape, n_inverse = [None], None if s is None else dim_prod(s)
    elif s is None:
        y_shape, n_inverse = None, None
    else:
        axis = norm_axis(axis, len(s), ctx)
        y_shape = [None if i == axis else d for i, d in enumerate(s)]
        n_inverse = s[axis]
    i64 = dtypes.i64
    types = [tensor_of(ctx.dtype(0), y_shape), tensor_of(i64, [None]), tensor_of(i64, [n_inverse]),
             tensor_of(i64, [None])]
    return types[: ctx.n_outputs]


def first_occurrence_order(values, first, inverse, counts, axis):
    """Reorder np.unique's sorted results by where each value first occurs."""
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    values = np.take(values, order, axis=0 if axis is None else axis)
    return values, first[order], rank[inverse], counts[order]


@op("Unique", inputs=["X"], outputs=["Y", "indices?", "inverse_indices?", "counts?"],
    attrs=dict(axis=None, sorted=1), infer=infer_unique)
def unique(x, *, axis, sorted):
    """Unique(X): the distinct values (or slices along `axis`), sorted or in order of first
    occurrence, with first indices, inverse indices and counts."""
    if axis is not None:
        axis = axis + x.ndim if axis < 0 else axis
    values, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True,
                                               return_counts=True, axis=axis)
    inverse = inverse.reshape(-1)
    if not sorted:
        values, first, inverse, counts = first_occurrence_order(values, first, inverse, counts, axis)
    i64 = lambda a: a.astype(np.int64)
    return values, i64(first), i64(inverse), i64(counts)


def infer_compress(ctx):
    s, axis = ctx.shape(0), ctx.attrs["axis"]
    cond = ctx.const(1)
    kept = None if cond is None else int(np.count_nonzero(cond))
    if axis is None:
        return [tensor_of(ctx.dtype(0), [kept])]
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    axis = norm_axis(axis, len(s), ctx)
    return [tensor_of(ctx.dtype(0), s[:axis] + (kept,) + s[axis + 1:])]


@op("Compress", inputs=["input", "condition"], outputs=["output"], attrs=dict(axis=None),
    infer=infer_compress)
def compress(x, condition, *, axis):
    """Compress(input, condition): keep the slices along `axis` (of the flattened input when no
    axis) where condition is true."""
    return np.compress(np.asarray(condition).astype(bool).reshape(-1), x, axis=axis)


@op("ReverseSequence", inputs=["input", "sequence_lens"], outputs=["Y"],
    attrs=dict(batch_axis=1, time_axis=0), infer=same_as(0))
def reverse_sequence(x, sequence_lens, *, batch_axis, time_axis):
    """ReverseSequence(input, sequence_lens): reverse the first sequence_lens[b] time steps of
    every batch entry b."""
    out = np.array(x, copy=True)
    for b, n in enumerate(ints(sequence_lens)):
        if n <= 0:
            continue
        dst = [slice(None)] * x.ndim
        dst[batch_axis], dst[time_axis] = b, slice(0, n)
        src = list(dst)
        src[time_axis] = slice(n - 1, None, -1)
        out[tuple(dst)] = x[tuple(src)]
    return out


# --- Col2Im --------------------------------------------------------------------------------
def infer_col2im(ctx):
    s, image, block = ctx.shape(0), const_ints(ctx, 1), const_ints(ctx, 2)
    n_spatial = len(image) if image is not None else len(block) if block is not None else None
    if n_spatial is None:
        return [tensor_of(ctx.dtype(0), None)]
    batch = None if s is None else s[0]
    channels = None
    if s is not None and block is not None and isinstance(s[1], int):
        channels = s[1] // math.prod(block)
    dims = image if image is not None else [None] * n_spatial
    return [tensor_of(ctx.dtype(0), [batch, channels] + list(dims))]


@op("Col2Im", inputs=["input", "image_shape", "block_shape"], outputs=["output"],
    attrs=dict(dilations=None, pads=None, strides=None), infer=infer_col2im)
def col2im(x, image_shape, block_shape, *, dilations, pads, strides):
    """Col2Im(input, image_shape, block_shape): sum sliding blocks (columns of `input`) back into
    an image; the inverse of im2col."""
    image, block = ints(image_shape), ints(block_shape)
    n = len(image)
    dilations = dilations or [1] * n
    strides = strides or [1] * n
    pads = pads or [0] * (2 * n)
    padded = [image[i] + pads[i] + pads[i + n] for i in range(n)]
    counts = [(padded[i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1 for i in range(n)]
    batch, channels = x.shape[0], x.shape[1] // math.prod(block)
    cols = x.reshape([batch, channels] + block + counts)
    out = np.zeros([batch, channels] + padded, dtype=x.dtype)
    for pos in np.ndindex(*block):
        window = tuple(slice(pos[i] * dilations[i], pos[i] * dilations[i] +
                             strides[i] * (counts[i] - 1) + 1, strides[i]) for i in range(n))
        out[(slice(None), slice(None)) + window] += cols[(slice(None), slice(None)) + pos]
    crop = tuple(slice(pads[i], pads[i] + image[i]) for i in range(n))
    return out[(slice(None), slice(None)) + crop]


OPS = [gather, gather_elements, gather_nd, scatter_elements, scatter, scatter_nd, tensor_scatter,
       slice_, nonzero, unique, compress, reverse_sequence, col2im]
