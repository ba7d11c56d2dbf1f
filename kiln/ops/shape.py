"""Shape ops: views and rearrangements (Reshape, Transpose, Concat, Split, Slice-free ones), padding,
shape queries and tensor construction (Shape, ConstantOfShape, Range, EyeLike, OneHot).

Their shape inference is exact whenever the operands that decide the shape are constants, and keeps
symbolic dims flowing where it can (Reshape with 0/-1, Flatten, Concat, Expand ...).
Resize and Upsample live in resize.py and are registered through this module's OPS.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedError
from ..ir import dtypes
from ..ir.types import TensorType
from .infer import (broadcast_shapes, dim_mul, dim_prod, norm_axis, same_as, tensor_of)
from .registry import REQUIRED, op
from .resize import OPS as RESIZE_OPS


# --- helpers shared by several ops ---------------------------------------------------------
def ints(a) -> list[int]:
    """A numpy array (any rank, any int/float dtype) as a flat list of Python ints."""
    return [int(x) for x in np.asarray(a).reshape(-1)]


def scalar(a):
    """The single element of a scalar or 1-element operand, as a numpy scalar."""
    return np.asarray(a).reshape(-1)[0]


def const_ints(ctx, i: int):
    """Input i as a list of ints when it is a compile-time constant, else None."""
    c = ctx.const(i)
    return None if c is None else ints(c)


def vector_len(ctx, i: int):
    """The static length of 1-D input i (e.g. a shape operand), or None."""
    s = ctx.shape(i)
    if s is not None and len(s) == 1 and isinstance(s[0], int):
        return s[0]
    return None


def dim_add(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if a == 0:
        return b
    if b == 0:
        return a
    return None


def drop_attrs(node, *names):
    for name in names:
        node.attrs.pop(name, None)


def input_dtype_at_import(node, i: int):
    """The numpy dtype of a node's input as the model declares it, when known during import."""
    v = node.inputs[i] if i < len(node.inputs) else None
    t = getattr(v, "type", None)
    if isinstance(t, TensorType) and t.dtype is not None and t.dtype.np_type is not None:
        return t.dtype.numpy
    return None


# --- Identity ------------------------------------------------------------------------------
@op("Identity", inputs=["input"], outputs=["output"], infer=same_as(0))
def identity(x):
    """Identity(x): x unchanged (a tensor, a sequence or an optional)."""
    return x


# --- Reshape -------------------------------------------------------------------------------
def copy_zero_dims(in_shape, target, allowzero: int) -> list:
    """Reshape's target with each 0 replaced by the input dim at that position (unless allowzero)."""
    if allowzero:
        return list(target)
    return [(in_shape[i] if i < len(in_shape) else None) if d == 0 else d
            for i, d in enumerate(target)]


def reshape_target(in_shape, target, allowzero: int) -> list:
    """Reshape's output shape for inference: 0 copies the input dim (unless allowzero) and the -1
    dim is solved, also when symbols cancel out (N,T,4,8 -> 0,-1,32 gives N,T,32)."""
    out = copy_zero_dims(in_shape, target, allowzero)
    if -1 in out:
        k = out.index(-1)
        out[k] = solve_missing_dim(in_shape, [d for j, d in enumerate(out) if j != k])
    return out


def solve_missing_dim(in_shape, known):
    """in_shape's element count divided by the product of `known` (dims may be symbols)."""
    if any(d is None for d in in_shape) or any(d is None for d in known):
        return None
    symbols = [d for d in in_shape if isinstance(d, str)]
    num = math.prod(d for d in in_shape if isinstance(d, int))
    den = 1
    for d in known:
        if isinstance(d, str):
            if d not in symbols:
                return None
            symbols.remove(d)
        else:
            den *= d
    if den == 0 or num % den:
        return None
    rest = num // den
    if not symbols:
        return rest
    return symbols[0] if len(symbols) == 1 and rest == 1 else None


def infer_reshape(ctx):
    target = ctx.dims_value(1)         # constant, or known symbolically (Shape -> ... -> Concat)
    if target is not None:
        in_shape = ctx.shape(0)
        if in_shape is None:
            copies = not ctx.attrs["allowzero"]
            shape = [None if d == -1 or (d == 0 and copies) else d for d in target]
        else:
            shape = reshape_target(list(in_shape), target, ctx.attrs["allowzero"])
        return [tensor_of(ctx.dtype(0), shape)]
    n = vector_len(ctx, 1)
    return [tensor_of(ctx.dtype(0), None if n is None else [None] * n)]


def upgrade_reshape(node):
    drop_attrs(node, "consumed_inputs")
    node.move_attr_to_input("shape", 1)


@op("Reshape", inputs=["data", "shape"], outputs=["reshaped"], attrs=dict(allowzero=0),
    infer=infer_reshape, upgrade=upgrade_reshape)
def reshape(data, shape, *, allowzero):
    """Reshape(data, shape): a view with a new shape; 0 copies a dim (unless allowzero), -1 is inferred."""
    return data.reshape(copy_zero_dims(data.shape, ints(shape), allowzero))


# --- Flatten -------------------------------------------------------------------------------
def infer_flatten(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tensor_of(ctx.dtype(0), [None, None])]
    axis = ctx.attrs["axis"]
    if not -len(s) <= axis <= len(s):
        ctx.fail(f"axis {axis} out of range for rank {len(s)}")
    axis = axis + len(s) if axis < 0 else axis
    return [tensor_of(ctx.dtype(0), [dim_prod(s[:axis]), dim_prod(s[axis:])])]


@op("Flatten", inputs=["input"], outputs=["output"], attrs=dict(axis=1), infer=infer_flatten)
def flatten(x, *, axis):
    """Flatten(x): 2-D view, dims before `axis` make the rows and the rest the columns."""
    axis = axis + x.ndim if axis < 0 else axis
    rows = math.prod(x.shape[:axis])
    return x.reshape(rows, math.prod(x.shape[axis:]))


# --- Squeeze / Unsqueeze -------------------------------------------------------------------
def upgrade_axes_input(node):
    """Squeeze/Unsqueeze before opset 13 took `axes` as an attribute."""
    node.move_attr_to_input("axes", 1)


def infer_squeeze(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    if ctx.has(1):
        axes = const_ints(ctx, 1)
        if axes is None:
            n = vector_len(ctx, 1)
            return [tensor_of(ctx.dtype(0), None if n is None else [None] * (len(s) - n))]
        drop = {norm_axis(a, len(s), ctx) for a in axes}
    elif all(isinstance(d, int) for d in s):
        drop = {i for i, d in enumerate(s) if d == 1}
    else:
        return [tensor_of(ctx.dtype(0), None)]
    return [tensor_of(ctx.dtype(0), [d for i, d in enumerate(s) if i not in drop])]


@op("Squeeze", inputs=["data", "axes?"], outputs=["squeezed"], infer=infer_squeeze,
    upgrade=upgrade_axes_input)
def squeeze(data, axes=None):
    """Squeeze(data, axes): remove the given size-1 dims (all size-1 dims when axes is absent)."""
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(ints(axes)))


def unsqueeze_shape(shape, axes):
    rank = len(shape) + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)
    out, rest = [], iter(shape)
    for i in range(rank):
        out.append(1 if i in axes else next(rest))
    return out


def infer_unsqueeze(ctx):
    s, axes = ctx.shape(0), const_ints(ctx, 1)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    if axes is None:
        n = vector_len(ctx, 1)
        return [tensor_of(ctx.dtype(0), None if n is None else [None] * (len(s) + n))]
    return [tensor_of(ctx.dtype(0), unsqueeze_shape(s, axes))]


@op("Unsqueeze", inputs=["data", "axes"], outputs=["expanded"], infer=infer_unsqueeze,
    upgrade=upgrade_axes_input)
def unsqueeze(data, axes):
    """Unsqueeze(data, axes): insert size-1 dims at `axes` (positions in the output)."""
    return data.reshape(unsqueeze_shape(list(data.shape), ints(axes)))


# --- Transpose -----------------------------------------------------------------------------
def infer_transpose(ctx):
    s, perm = ctx.shape(0), ctx.attrs["perm"]
    if s is None:
        return [tensor_of(ctx.dtype(0), None if perm is None else [None] * len(perm))]
    perm = list(range(len(s)))[::-1] if perm is None else perm
    return [tensor_of(ctx.dtype(0), [s[p] for p in perm])]


@op("Transpose", inputs=["data"], outputs=["transposed"], attrs=dict(perm=None),
    infer=infer_transpose)
def transpose(data, *, perm):
    """Transpose(data): permute the dims by `perm` (reverse them by default)."""
    return np.transpose(data, perm)


# --- Concat --------------------------------------------------------------------------------
def merge_dims(dims):
    """The one dim several inputs agree on: the first known int, else the first symbol."""
    for d in dims:
        if isinstance(d, int):
            return d
    return next((d for d in dims if d is not None), None)


def infer_concat(ctx):
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    known = [s for s in shapes if s is not None]
    if not known:
        return [tensor_of(ctx.dtype(0), None)]
    rank = len(known[0])
    axis = norm_axis(ctx.attrs["axis"], rank, ctx)
    out = []
    for k in range(rank):
        if k == axis:
            total = 0
            for s in shapes:
                total = dim_add(total, None if s is None else s[k])
            out.append(total)
        else:
            out.append(merge_dims([s[k] for s in known]))
    return [tensor_of(ctx.dtype(0), out)]


def upgrade_concat(node):
    """Concat-1 had an optional axis defaulting to 1."""
    if node.opset < 4:
        node.attrs.setdefault("axis", 1)


@op("Concat", inputs=["inputs*"], outputs=["concat_result"], attrs=dict(axis=REQUIRED),
    infer=infer_concat, upgrade=upgrade_concat)
def concat(*inputs, axis):
    """Concat(inputs...): join the inputs along `axis`."""
    return np.concatenate(inputs, axis=axis)


# --- Split ---------------------------------------------------------------------------------
def split_sizes(dim: int, split, num_outputs, n_outputs: int) -> list[int]:
    """Part sizes: the `split` input, else `num_outputs` parts of ceil(dim/n) (the last one
    smaller), else n_outputs equal parts."""
    if split is not None:
        return split
    n = num_outputs or n_outputs
    chunk = -(-dim // n)
    return [max(0, min(chunk, dim - i * chunk)) for i in range(n)]


def infer_split(ctx):
    s, n = ctx.shape(0), ctx.n_outputs
    if s is None:
        return [tensor_of(ctx.dtype(0), None)] * n
    axis = norm_axis(ctx.attrs["axis"], len(s), ctx)
    split = const_ints(ctx, 1) if ctx.has(1) else None
    if split is None and (ctx.has(1) or not isinstance(s[axis], int)):
        sizes = [None] * n
    else:
        sizes = split_sizes(s[axis], split, ctx.attrs["num_outputs"], n)
    return [tensor_of(ctx.dtype(0), s[:axis] + (d,) + s[axis + 1:]) for d in sizes[:n]]


def upgrade_split(node):
    """`split` was an attribute from opset 2 to 12 (Split-1 allowed either form)."""
    if node.opset < 13:
        node.move_attr_to_input("split", 1)


@op("Split", inputs=["input", "split?"], outputs=["outputs*"], attrs=dict(axis=0, num_outputs=None),
    infer=infer_split, upgrade=upgrade_split)
def split(x, split=None, *, axis, num_outputs, n_outputs):
    """Split(input, split): cut `input` along `axis` into parts of the given sizes (or equal parts)."""
    axis = axis + x.ndim if axis < 0 else axis
    sizes = split_sizes(x.shape[axis], None if split is None else ints(split), num_outputs, n_outputs)
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, bounds, axis=axis))


# --- Expand / Tile -------------------------------------------------------------------------
def infer_expand(ctx):
    s, target = ctx.shape(0), ctx.dims_value(1)
    if s is not None and target is not None:
        return [tensor_of(ctx.dtype(0), broadcast_shapes([s, tuple(target)], ctx.fail))]
    n = vector_len(ctx, 1)
    if s is None or n is None:
        return [tensor_of(ctx.dtype(0), None)]
    rank = max(len(s), n)
    padded = (1,) * (rank - len(s)) + tuple(s)
    # where the input dim is not 1 it decides the output dim; elsewhere the shape input does
    return [tensor_of(ctx.dtype(0), [None if d == 1 else d for d in padded])]


@op("Expand", inputs=["input", "shape"], outputs=["output"], infer=infer_expand)
def expand(x, shape):
    """Expand(input, shape): broadcast `input` to the numpy broadcast of its shape and `shape`."""
    out_shape = np.broadcast_shapes(x.shape, tuple(ints(shape)))
    return np.array(np.broadcast_to(x, out_shape))


def infer_tile(ctx):
    s, reps = ctx.shape(0), const_ints(ctx, 1)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    if reps is None:
        return [tensor_of(ctx.dtype(0), [None] * len(s))]
    return [tensor_of(ctx.dtype(0), [dim_mul(d, r) if r != 0 else 0 for d, r in zip(s, reps)])]


def upgrade_tile(node):
    """Tile-1 took (input, tiles, axis): repeat along one axis. Rewritten to a `repeats` vector
    when tiles and axis are constants and the input's rank is declared."""
    if node.opset >= 6:
        return
    tiles, axis = node.inputs[1], node.inputs[2]
    t = node.inputs[0].type
    if not (tiles.is_const and axis.is_const and isinstance(t, TensorType) and t.rank is not None):
        raise UnsupportedError("Tile-1 needs constant `tiles` and `axis` and an input of known rank")
    repeats = np.ones(t.rank, np.int64)
    repeats[int(scalar(axis.data))] = int(scalar(tiles.data))
    node.inputs[1:] = [node.const(repeats, "repeats")]


@op("Tile", inputs=["input", "repeats"], outputs=["output"], infer=infer_tile, upgrade=upgrade_tile)
def tile(x, repeats):
    """Tile(input, repeats): repeat the input repeats[i] times along dim i."""
    return np.tile(x, ints(repeats))


# --- Pad -----------------------------------------------------------------------------------
def pad_widths(rank: int, pads: list[int], axes) -> list[list[int]]:
    """[[before, after], ...] for every dim from ONNX's [b0, b1, ..., e0, e1, ...] over `axes`."""
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    n = len(axes)
    widths = [[0, 0] for _ in range(rank)]
    for k, a in enumerate(axes):
        widths[a] = [pads[k], pads[k + n]]
    return widths


def infer_pad(ctx):
    s, pads = ctx.shape(0), const_ints(ctx, 1)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    axes = const_ints(ctx, 3) if ctx.has(3) else None
    if pads is None or (ctx.has(3) and axes is None):
        return [tensor_of(ctx.dtype(0), [None] * len(s))]
    widths = pad_widths(len(s), pads, axes)
    return [tensor_of(ctx.dtype(0), [dim_add(dim_add(d, b), e) for d, (b, e) in zip(s, widths)])]


def upgrade_pad(node):
    """Before opset 11, `pads` (`paddings` in Pad-1) and `value` were attributes."""
    if node.opset >= 11:
        return
    if "paddings" in node.attrs:
        node.attrs["pads"] = node.attrs.pop("paddings")
    node.move_attr_to_input("pads", 1)
    value = node.attrs.pop("value", 0.0)
    if value != 0.0:
        dtype = input_dtype_at_import(node, 0) or np.float32
        node.inputs.append(node.const(np.asarray(value, dtype=dtype), "value"))


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@op("Pad", inputs=["data", "pads", "constant_value?", "axes?"], outputs=["output"],
    attrs=dict(mode="constant"), infer=infer_pad, upgrade=upgrade_pad)
def pad(data, pads, constant_value=None, axes=None, *, mode):
    """Pad(data, pads): pad (or crop, for negative pads) each dim; constant/reflect/edge/wrap."""
    if mode not in PAD_MODES:
        raise UnsupportedError(f"Pad mode {mode!r} (known: {', '.join(PAD_MODES)})")
    widths = pad_widths(data.ndim, ints(pads), None if axes is None else ints(axes))
    crop = tuple(slice(max(-b, 0), data.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths))
    data = data[crop]
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        value = 0 if constant_value is None else scalar(constant_value)
        return np.pad(data, grow, mode="constant", constant_values=np.asarray(value, data.dtype))
    return np.pad(data, grow, mode=PAD_MODES[mode])


# --- Shape / Size --------------------------------------------------------------------------
def infer_shape(ctx):
    rank = ctx.rank(0)
    if rank is None:
        return [tensor_of(dtypes.i64, [None])]
    return [tensor_of(dtypes.i64, [len(range(rank)[slice(ctx.attrs["start"], ctx.attrs["end"])])])]


@op("Shape", inputs=["data"], outputs=["shape"], attrs=dict(start=0, end=None), infer=infer_shape)
def shape(data, *, start, end):
    """Shape(data): the dims of `data` (those in [start, end)) as an int64 vector."""
    return np.array(data.shape[start:end], dtype=np.int64)


@op("Size", inputs=["data"], outputs=["size"], infer=lambda ctx: [tensor_of(dtypes.i64, [])])
def size(data):
    """Size(data): the number of elements of `data` as an int64 scalar."""
    return np.array(data.size, dtype=np.int64)


# --- ConstantOfShape / Range / EyeLike / OneHot ----------------------------------------------
def fill_value(value) -> np.ndarray:
    return np.zeros((), np.float32) if value is None else np.asarray(value).reshape(-1)[:1].reshape(())


def infer_constant_of_shape(ctx):
    dt = dtypes.from_numpy(fill_value(ctx.attrs["value"]).dtype)
    dims = ctx.dims_value(0)
    if dims is not None:
        return [tensor_of(dt, dims)]
    n = vector_len(ctx, 0)
    return [tensor_of(dt, None if n is None else [None] * n)]


@op("ConstantOfShape", inputs=["input"], outputs=["output"], attrs=dict(value=None),
    infer=infer_constant_of_shape)
def constant_of_shape(shape, *, value):
    """ConstantOfShape(shape): a tensor of that shape filled with `value` (float32 0 by default)."""
    v = fill_value(value)
    return np.full(ints(shape), v, dtype=v.dtype)


def range_count(start, limit, delta) -> int:
    """max(ceil((limit - start) / delta), 0), exact for integers."""
    start, limit, delta = scalar(start), scalar(limit), scalar(delta)
    if np.issubdtype(start.dtype, np.integer):
        s, l, d = int(start), int(limit), int(delta)
        return max(0, -((s - l) // d))
    return max(0, int(math.ceil((float(limit) - float(start)) / float(delta))))


def infer_range(ctx):
    c = [ctx.const(i) for i in range(3)]
    n = range_count(*c) if all(x is not None for x in c) else None
    return [tensor_of(ctx.dtype(0), [n])]


@op("Range", inputs=["start", "limit", "delta"], outputs=["output"], attrs=dict(stash_type=1),
    infer=infer_range)
def range_(start, limit, delta, *, stash_type):
    """Range(start, limit, delta): start + i * delta for i in [0, ceil((limit - start) / delta))."""
    dtype = start.dtype
    n = range_count(start, limit, delta)
    work = dtype
    if dtype in (np.dtype(np.float16), np.dtype(dtypes.bf16.np_type)) and stash_type == 1:
        work = np.dtype(np.float32)
    steps = np.arange(n).astype(work)
    return (scalar(start).astype(work) + steps * scalar(delta).astype(work)).astype(dtype)


def infer_eye_like(ctx):
    dt = ctx.attrs["dtype"]
    return [tensor_of(ctx.dtype(0) if dt is None else dtypes.from_onnx(dt), ctx.shape(0))]


@op("EyeLike", inputs=["input"], outputs=["output"], attrs=dict(dtype=None, k=0),
    infer=infer_eye_like)
def eye_like(x, *, dtype, k):
    """EyeLike(input): a 2-D tensor of the input's shape with ones on diagonal k, zeros elsewhere."""
    dt = x.dtype if dtype is None else dtypes.from_onnx(dtype).numpy
    return np.eye(x.shape[0], x.shape[1], k=k, dtype=dt)


def infer_one_hot(ctx):
    s = ctx.shape(0)
    dt = ctx.dtype(2)
    if s is None:
        return [tensor_of(dt, None)]
    depth = ctx.const(1)
    d = None if depth is None else int(scalar(depth))
    axis = norm_axis(ctx.attrs["axis"], len(s) + 1, ctx)
    return [tensor_of(dt, s[:axis] + (d,) + s[axis:])]


@op("OneHot", inputs=["indices", "depth", "values"], outputs=["output"], attrs=dict(axis=-1),
    infer=infer_one_hot)
def one_hot(indices, depth, values, *, axis):
    """OneHot(indices, depth, values): values[1] where the new `axis` equals the index, else values[0]."""
    depth = int(scalar(depth))
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    axis = axis + idx.ndim + 1 if axis < 0 else axis
    classes = np.arange(depth).reshape((-1,) + (1,) * (idx.ndim - axis))
    hot = np.expand_dims(idx, axis) == classes
    off, on = values.reshape(-1)[0], values.reshape(-1)[1]
    return np.where(hot, on, off).astype(values.dtype)


# --- Trilu ---------------------------------------------------------------------------------
@op("Trilu", inputs=["input", "k?"], outputs=["output"], attrs=dict(upper=1), infer=same_as(0))
def trilu(x, k=None, *, upper):
    """Trilu(input, k): keep the upper (or lower) triangle of the last two dims from diagonal k."""
    k = 0 if k is None else int(scalar(k))
    return np.triu(x, k) if upper else np.tril(x, k)


# --- DepthToSpace / SpaceToDepth ------------------------------------------------------------
def infer_block_rearrange(to_space: bool):
    def rule(ctx):
        s, b = ctx.shape(0), ctx.attrs["blocksize"]
        if s is None or len(s) != 4:
            return [tensor_of(ctx.dtype(0), None if s is None else [None] * 4)]
        n, c, h, w = s
        if to_space:
            c = c // (b * b) if isinstance(c, int) else None
            return [tensor_of(ctx.dtype(0), [n, c, dim_mul(h, b), dim_mul(w, b)])]
        div = lambda d: d // b if isinstance(d, int) else None
        return [tensor_of(ctx.dtype(0), [n, dim_mul(c, b * b), div(h), div(w)])]
    return rule


def check_mode(mode: str):
    if mode not in ("DCR", "CRD"):
        raise UnsupportedError(f"block rearrangement mode {mode!r} (known: DCR, CRD)")


@op("DepthToSpace", inputs=["input"], outputs=["output"], attrs=dict(blocksize=REQUIRED, mode="DCR"),
    infer=infer_block_rearrange(True))
def depth_to_space(x, *, blocksize, mode):
    """DepthToSpace(input): move blocks of channels into blocksize x blocksize spatial blocks."""
    check_mode(mode)
    b, (n, c, h, w) = blocksize, x.shape
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth", inputs=["input"], outputs=["output"], attrs=dict(blocksize=REQUIRED, mode="DCR"),
    infer=infer_block_rearrange(False))
def space_to_depth(x, *, blocksize, mode):
    """SpaceToDepth(input): move blocksize x blocksize spatial blocks into channels."""
    check_mode(mode)
    b, (n, c, h, w) = blocksize, x.shape
    t = x.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * b * b, h // b, w // b)


# --- CenterCropPad -------------------------------------------------------------------------
def infer_center_crop_pad(ctx):
    s, target = ctx.shape(0), const_ints(ctx, 1)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    if target is None:
        axes = ctx.attrs["axes"]
        keep = set(range(len(s))) - {norm_axis(a, len(s)) for a in (axes or range(len(s)))}
        return [tensor_of(ctx.dtype(0), [d if i in keep else None for i, d in enumerate(s)])]
    out = list(s)
    for a, d in zip(ctx.attrs["axes"] or range(len(s)), target):
        out[norm_axis(a, len(s), ctx)] = d
    return [tensor_of(ctx.dtype(0), out)]


@op("CenterCropPad", inputs=["input_data", "shape"], outputs=["output_data"], attrs=dict(axes=None),
    infer=infer_center_crop_pad)
def center_crop_pad(x, shape, *, axes):
    """CenterCropPad(input, shape): crop or zero-pad the given axes to `shape`, keeping the center."""
    axes = range(x.ndim) if axes is None else [a + x.ndim if a < 0 else a for a in axes]
    crop = [slice(None)] * x.ndim
    widths = [(0, 0)] * x.ndim
    for a, want in zip(axes, ints(shape)):
        have = x.shape[a]
        if want < have:
            start = (have - want) // 2
            crop[a] = slice(start, start + want)
        elif want > have:
            before = (want - have) // 2
            widths[a] = (before, want - have - before)
    return np.pad(x[tuple(crop)], widths)


# --- Dropout -------------------------------------------------------------------------------
def infer_dropout(ctx):
    t = ctx.tensor(0)
    return [t, tensor_of(dtypes.boolean, t.shape)][: ctx.n_outputs]


def upgrade_dropout(node):
    """Before opset 12 `ratio` was an attribute. Dropout before opset 7 had `is_test`; kiln reads
    such nodes in inference mode whatever its value (as runtimes do), so the model stays
    deterministic."""
    drop_attrs(node, "consumed_inputs", "is_test")
    if node.opset < 12 and "ratio" in node.attrs:
        node.inputs[1:] = [node.const(np.asarray(node.attrs.pop("ratio"), np.float32), "ratio")]


@op("Dropout", inputs=["data", "ratio?", "training_mode?"], outputs=["output", "mask?"],
    attrs=dict(seed=None), infer=infer_dropout, upgrade=upgrade_dropout)
def dropout(x, ratio=None, training_mode=None, *, seed):
    """Dropout(data): identity at inference; in training mode, zero elements with probability
    `ratio` and scale the rest by 1/(1-ratio). The mask output marks the kept elements."""
    ratio = 0.5 if ratio is None else float(scalar(ratio))
    if training_mode is None or not bool(scalar(training_mode)) or ratio == 0:
        return x, np.ones(x.shape, dtype=bool)
    rng = np.random.RandomState(seed) if seed is not None else np.random.RandomState()
    mask = rng.uniform(0.0, 1.0, x.shape) >= ratio
    scale = 1.0 / (1.0 - ratio)
    return (x * mask * scale).astype(x.dtype), mask


OPS = [identity, reshape, flatten, squeeze, unsqueeze, transpose, concat, split, expand, tile, pad,
       shape, size, constant_of_shape, range_, eye_like, one_hot, trilu, depth_to_space,
       space_to_depth, center_crop_pad, dropout] + list(RESIZE_OPS)
