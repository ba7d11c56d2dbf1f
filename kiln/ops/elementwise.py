"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, comparisons, logic."""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import broadcast, same_as
from .registry import OpDef


def unary(name: str, fn, doc: str = "") -> OpDef:
    def reference(X):
        return np.asarray(fn(X)).astype(X.dtype, copy=False)
    reference.__doc__ = doc or f"{name}(X), elementwise."
    return OpDef(name, ("X",), ("Y",), {}, reference, same_as(0))


def binary(name: str, fn, out_dtype=None, doc: str = "") -> OpDef:
    def reference(A, B):
        y = np.asarray(fn(A, B))
        return y if out_dtype is not None else y.astype(A.dtype, copy=False)
    reference.__doc__ = doc or f"{name}(A, B), elementwise with numpy broadcasting."
    return OpDef(name, ("A", "B"), ("C",), {}, reference, broadcast(out_dtype))


OPS = [
    unary("Relu", lambda x: np.maximum(x, 0)),
    unary("Neg", np.negative),
    binary("Add", np.add),
    binary("Sub", np.subtract),
    binary("Mul", np.multiply),
    binary("Equal", np.equal, dtypes.boolean),
]
