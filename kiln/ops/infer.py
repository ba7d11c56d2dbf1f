"""Type and shape inference: the context an op's `infer` sees, and helpers shared by many ops.

Dims are ints, symbols (str) or None (unknown); shapes are tuples or None (unknown rank).
Symbols flow through: broadcasting N with 1 gives N, N with N gives N, N with M gives None
unless one side is 1.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import OpError
from ..ir import dtypes
from ..ir.types import UNKNOWN, OptionalType, SequenceType, TensorType, Type


class InferContext:
    def __init__(self, node, opdef, input_types: list, attrs: dict, consts: list,
                 symbolic: list | None = None):
        self.node, self.opdef = node, opdef
        self.inputs: list[Type | None] = input_types    # None: optional input not given
        self.attrs: dict[str, Any] = attrs
        self._consts = consts
        self._symbolic = symbolic or []
        self.n_outputs = len(node.outputs)

    def const(self, i: int):
        """The value of input i when it is known at compile time (a constant), else None."""
        if i < len(self._consts):
            c = self._consts[i]
            return c if isinstance(c, np.ndarray) else None
        return None

    def dims_value(self, i: int):
        """Input i (a short int vector such as a reshape target) as a list of dims, each an int,
        a symbol or None, when known at compile time (constant or computed from shapes)."""
        c = self.const(i)
        if c is not None and c.dtype.kind in "iu" and c.ndim <= 1:
            return [int(x) for x in c.reshape(-1)]
        if i < len(self._symbolic) and self._symbolic[i] is not None:
            shape, dims = self._symbolic[i]
            return list(dims) if len(shape) == 1 else None
        return None

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def tensor(self, i: int) -> TensorType:
        t = self.inputs[i] if i < len(self.inputs) else None
        return t if isinstance(t, TensorType) else TensorType(None, None)

    def dtype(self, i: int):
        return self.tensor(i).dtype

    def shape(self, i: int):
        return self.tensor(i).shape

    def rank(self, i: int):
        s = self.shape(i)
        return None if s is None else len(s)

    def fail(self, msg: str):
        raise OpError(f"{self.node.describe()}: {msg}")


# --- dims ----------------------------------------------------------------------------------
def broadcast_dims(a, b, fail=None):
    if a == 1:
        return b
    if b == 1 or a == b:
        return a
    if isinstance(a, int) and isinstance(b, int):
        if fail:
            fail(f"shapes cannot broadcast: {a} vs {b}")
        return None
    if isinstance(a, int):      # a known (not 1), b symbolic or unknown: must equal a
        return a
    if isinstance(b, int):
        return b
    # a symbol against an unknown dim: the unknown is 1 or the same size (or the model is wrong)
    if a is None or b is None:
        return a if b is None else b
    return None


def broadcast_shapes(shapes, fail=None):
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        s = (1,) * (rank - len(s)) + tuple(s)
        out = [broadcast_dims(x, y, fail) for x, y in zip(out, s)]
    return tuple(out)


def dim_mul(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    if a == 1:
        return b
    if b == 1:
        return a
    return None


def dim_prod(dims):
    out = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def norm_axis(axis: int, rank: int, ctx: InferContext | None = None) -> int:
    if not -rank <= axis < max(rank, 1) and ctx is not None:
        ctx.fail(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


# --- common rules --------------------------------------------------------------------------
def same_as(i: int = 0, n: int | None = None):
    """Every output (or the first n) has the type of input i."""
    def rule(ctx: InferContext):
        t = ctx.inputs[i] if i < len(ctx.inputs) and ctx.inputs[i] is not None else UNKNOWN
        return [t] * (n or ctx.n_outputs)
    return rule


def broadcast(dtype=None, first: int = 0):
    """Numpy-style broadcasting of all tensor inputs; dtype of input `first` unless given."""
    def rule(ctx: InferContext):
        shapes = [ctx.shape(i) for i in range(len(ctx.inputs)) if ctx.has(i)]
        dt = dtype if dtype is not None else ctx.dtype(first)
        return [TensorType(dt, broadcast_shapes(shapes, ctx.fail))] * ctx.n_outputs
    return rule


def fixed(*types):
    """Outputs of fixed dtypes with unknown shape: fixed(dtypes.i64)."""
    def rule(ctx: InferContext):
        return [TensorType(t, None) if not isinstance(t, (TensorType, SequenceType, OptionalType))
                else t for t in types][: ctx.n_outputs]
    return rule


def unknown_shape(dtype_from: int = 0):
    """Fallback: dtype of input `dtype_from`, shape unknown, for every output."""
    def rule(ctx: InferContext):
        return [TensorType(ctx.dtype(dtype_from), None)] * ctx.n_outputs
    return rule


def reduce_shape(shape, axes, keepdims: bool):
    if shape is None or axes is None:
        return None
    r = len(shape)
    axes = {a + r if a < 0 else a for a in axes}
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def tensor_of(dtype, shape) -> TensorType:
    return TensorType(dtype, None if shape is None else tuple(shape))


__all__ = ["InferContext", "broadcast", "broadcast_dims", "broadcast_shapes", "dim_mul",
           "dim_prod", "fixed", "norm_axis", "reduce_shape", "same_as", "tensor_of",
           "unknown_shape", "dtypes", "UNKNOWN", "TensorType", "SequenceType", "OptionalType"]
