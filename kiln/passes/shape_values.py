"""Symbolic values of small integer tensors that hold shapes, for type inference.

Exporters compute reshape targets from the input's own shape: `Shape -> Gather -> Unsqueeze ->
Concat -> Reshape`. When the shape has symbolic dims (N, S) none of these values is a constant, but
each element is still known symbolically. This module tracks such values as (shape, [dims]) with
dims ints, symbols (str) or None, so Reshape/Expand/ConstantOfShape infer exact output shapes.
"""
from __future__ import annotations

import numpy as np

from ..ir.types import TensorType

MAX = 16          # only short vectors are tracked


def _ints(a) -> list | None:
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or a.size > MAX or a.ndim > 1:
        return None
    return [int(x) for x in a.reshape(-1)]


def value_of(v, known: dict):
    """(shape, dims) of v when known: a constant or a tracked value."""
    if v is None:
        return None
    if v in known:
        return known[v]
    if v.is_const and isinstance(v.data, np.ndarray):
        dims = _ints(v.data)
        return None if dims is None else (v.data.shape, dims)
    return None


def propagate(node, known: dict, attrs: dict) -> None:
    """Record the symbolic value of node's output when the op is one that moves shape values."""
    op = node.op
    ins = [value_of(v, known) for v in node.inputs]
    out = None
    if op == "Shape":
        t = node.inputs[0].type
        if isinstance(t, TensorType) and t.shape is not None:
            dims = list(t.shape)[slice(attrs.get("start", 0), attrs.get("end"))]
            out = ((len(dims),), dims)
    elif op in ("Identity", "Cast") and ins and ins[0] is not None:
        if op == "Cast" and attrs.get("to") not in (6, 7):       # int32 / int64 only
            return
        out = ins[0]
    elif op == "Gather" and len(ins) == 2 and ins[0] is not None and ins[1] is not None:
        (dshape, dims), (ishape, idx) = ins
        if len(dshape) == 1 and attrs.get("axis", 0) in (0, -1):
            n = len(dims)
            picked = [dims[i + n if i < 0 else i] if -n <= i < n else None for i in idx]
            out = (tuple(ishape), picked)
    elif op == "Unsqueeze" and ins and ins[0] is not None and ins[0][0] == ():
        out = ((1,), ins[0][1])
    elif op == "Squeeze" and ins and ins[0] is not None and ins[0][0] == (1,):
        out = ((), ins[0][1])
    elif op == "Concat" and ins and all(x is not None and len(x[0]) == 1 for x in ins):
        dims = [d for x in ins for d in x[1]]
        out = ((len(dims),), dims)
    elif op == "Slice" and len(ins) >= 3 and ins[0] is not None and len(ins[0][0]) == 1:
        if all(x is not None and None not in x[1] and all(isinstance(d, int) for d in x[1])
               for x in ins[1:]):
            starts, ends = ins[1][1], ins[2][1]
            steps = ins[4][1] if len(ins) > 4 and ins[4] is not None else [1]
            if len(starts) == 1:
                dims = ins[0][1][slice(starts[0], ends[0], steps[0])]
                out = ((len(dims),), dims)
    elif op in ("Mul", "Add", "Sub", "Div") and len(ins) == 2 and None not in ins:
        (sa, a), (sb, b) = ins
        if sa == sb or len(a) == 1 or len(b) == 1:
            n = max(len(a), len(b))
            a, b = (a * n if len(a) == 1 else a), (b * n if len(b) == 1 else b)
            dims = [_arith(op, x, y) for x, y in zip(a, b)]
            out = (sa if len(sa) >= len(sb) else sb, dims)
    if out is not None and node.outputs and node.outputs[0] is not None:
        known[node.outputs[0]] = (tuple(out[0]), list(out[1]))


def _arith(op: str, x, y):
    if isinstance(x, int) and isinstance(y, int):
        if op == "Mul":
            return x * y
        if op == "Add":
            return x + y
        if op == "Sub":
            return x - y
        return x // y if y else None
    if op == "Mul" and (x == 1 or y == 1):
        return y if x == 1 else x
    if op in ("Add", "Sub") and y == 0:
        return x
    if op == "Div" and y == 1:
        return x
    return None
