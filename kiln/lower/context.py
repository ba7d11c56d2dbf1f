"""What an op's lowering sees: the node's tensors as flat buffers with (possibly runtime) shapes,
its attributes, and helpers to build loop nests and index arithmetic.

An op's lowering is `lower(ctx: LowerCtx) -> list[Stmt]` (on its OpDef, next to its definition);
an elementwise op may instead give `scalar(ctx, *input_exprs) -> Expr` and share the generic
broadcasting loop nest. A lowering raises `NotLowerable` for a case it does not handle; the node then
runs on the host through its reference implementation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .loopir import Bin, Const, Dim, Expr, For, Load, Select, Store, Var, add, mul, product


class NotLowerable(Exception):
    """This node (with these attributes/types) has no native lowering; run it on the host."""


@dataclass
class TensorRef:
    buf: str                      # the kernel parameter name
    dtype: str                    # kiln dtype name
    shape: list                   # [Expr]: Const or Dim
    data: np.ndarray | None = None   # the value, when it is a compile-time constant

    @property
    def rank(self) -> int:
        return len(self.shape)

    def numel(self) -> Expr:
        return product(self.shape)

    def strides(self) -> list:
        out, acc = [], Const(1)
        for d in reversed(self.shape):
            out.append(acc)
            acc = mul(acc, d)
        return list(reversed(out))

    def static_numel(self) -> int | None:
        """The element count when the shape is static, else None."""
        shape = self.static_shape()
        return None if shape is None else math.prod(shape)

    def static_shape(self) -> tuple | None:
        if all(isinstance(d, Const) for d in self.shape):
            return tuple(int(d.value) for d in self.shape)
        return None

    def load(self, index: Expr) -> Load:
        return Load(self.buf, index, self.dtype)


class LowerCtx:
    def __init__(self, node, opdef, attrs, inputs, outputs, counter: list | None = None):
        self.node, self.opdef, self.attrs = node, opdef, attrs
        self.inputs: list[TensorRef | None] = inputs
        self.outputs: list[TensorRef | None] = outputs
        self._counter = counter if counter is not None else [0]   # shared by nested contexts
        # Fusion: epilogue(flat_index, multi_index) -> statements that finish one output element
        # in place. An anchor lowering that applies it per tile sets epilogue_done.
        self.epilogue = None
        self.epilogue_done = False
        # the epilogue when it is only a clamp (Relu, Clip with constant bounds): (lo, hi), which
        # an anchor may apply to its results in registers instead (it then sets epilogue_done)
        self.clamp: tuple[float, float] | None = None

    def fresh(self, prefix: str = "t") -> str:
        self._counter[0] += 1
        return f"{prefix}{self._counter[0]}"

    def const_input(self, i: int) -> np.ndarray | None:
        """The value of input i when it is a compile-time constant."""
        if i < len(self.inputs) and self.inputs[i] is not None:
            return self.inputs[i].data
        return None

    def require_const(self, i: int, what: str) -> np.ndarray:
        v = self.const_input(i)
        if v is None:
            raise NotLowerable(f"{what} must be a compile-time constant")
        return v

    # --- loop nests ------------------------------------------------------------------------
    def loops(self, shape: list, body: Callable[[list], list], kind_outer: str = "parallel") -> list:
        """Nested loops over `shape`; body(index_vars) gives the innermost statements."""
        idx = [Var(self.fresh("i")) for _ in shape]
        stmts = body(idx)
        for k in reversed(range(len(shape))):
            kind = kind_outer if k == 0 else "serial"
            stmts = [For(idx[k].name, shape[k], stmts, kind)]
        return stmts

    def flat_loop(self, extent: Expr, body: Callable[[Var], list], kind: str = "parallel") -> list:
        i = Var(self.fresh("i"))
        return [For(i.name, extent, body(i), kind)]

    @staticmethod
    def index(ref: TensorRef, idx: list) -> Expr:
        """Row-major flat index of ref at multi-index idx (same rank)."""
        out: Expr = Const(0)
        for i, s in zip(idx, ref.strides()):
            out = add(out, mul(i, s))
        return out

    @staticmethod
    def broadcast_index(ref: TensorRef, out_shape: list, idx: list) -> Expr:
        """Flat index into ref for output multi-index idx, numpy broadcasting (ref's dims align
        with the trailing dims of the output; a dim of 1 repeats)."""
        offset = len(out_shape) - ref.rank
        out: Expr = Const(0)
        for k, (d, s) in enumerate(zip(ref.shape, ref.strides())):
            o = out_shape[k + offset]
            i = idx[k + offset]
            if isinstance(d, Const) and d.value == 1:
                continue
            if d == o or isinstance(d, Const):
                out = add(out, mul(i, s))
            else:     # both runtime dims: broadcast decided at run time
                out = add(out, mul(Select(Bin("==", d, Const(1), "bool"), Const(0), i, "i64"), s))
        return out


def same_shape(a: TensorRef, b: TensorRef) -> bool:
    return a.rank == b.rank and all(x == y for x, y in zip(a.shape, b.shape))


def lower_elementwise(ctx: LowerCtx, scalar) -> list:
    """The generic lowering of an elementwise op: out[i] = scalar(in_0[...], in_1[...], ...)."""
    out = ctx.outputs[0]
    ins = [t for t in ctx.inputs]
    if all(t is None or same_shape(t, out) for t in ins):
        def flat(i):
            args = [None if t is None else t.load(i) for t in ins]
            return [Store(out.buf, i, scalar(ctx, *args))]
        return ctx.flat_loop(out.numel(), flat)

    def nested(idx):
        args = [None if t is None else t.load(ctx.broadcast_index(t, out.shape, idx)) for t in ins]
        return [Store(out.buf, ctx.index(out, idx), scalar(ctx, *args))]
    if out.rank == 0:
        return nested([])
    return ctx.loops(out.shape, nested)


__all__ = ["NotLowerable", "TensorRef", "LowerCtx", "lower_elementwise", "same_shape", "Dim"]
