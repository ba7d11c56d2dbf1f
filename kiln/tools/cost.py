"""FLOPs and bytes of one kernel at concrete shapes: the estimates behind GFLOP/s, GB/s and the
roofline in `kiln profile` and `kiln report`.

- MatMul, Gemm, PackedMatMul, Conv, PackedConv, BlockedConv, WinogradMatMul, ConvTranspose, Attention:
  2 FLOPs per multiply-accumulate (a Winograd convolution: those of its products, not the direct ones);
- elementwise ops (an op with a `scalar` lowering): one FLOP per output element;
- data movement (the shape and index families: Reshape, Transpose, Concat, Gather, ...): none;
- any other op (reductions, normalization, softmax, pooling, ...): one per element of its largest
  operand;
- a Fused kernel: the sum over its body.
Bytes: what the kernel reads and writes, the sizes of its inputs and outputs at their concrete
shapes (a fused group's intermediates stay in registers, so only the group's own inputs/outputs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.types import TensorType
from ..ops import REGISTRY
from ..runtime.plan import bind_shape, concrete, eval_shapes

MOVEMENT_MODULES = ("kiln.ops.shape", "kiln.ops.index")


@dataclass(frozen=True)
class Cost:
    flops: float | None          # None: some shape is not known
    bytes: float | None

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte."""
        if not self.flops or not self.bytes:
            return None
        return self.flops / self.bytes


def _numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape is not None else 0


def _nbytes(v, shapes: dict) -> int | None:
    shape = shapes.get(v)
    if shape is None or not isinstance(v.type, TensorType) or v.type.dtype is None:
        return None
    return _numel(shape) * v.type.dtype.numpy.itemsize


def node_flops(node, shapes: dict) -> float | None:
    """FLOPs of one node (see the module doc); `shapes` maps its values to concrete shapes."""
    if node.op == "Fused":
        body = node.attrs["body"]
        inner = body_shapes(node, shapes)
        parts = [node_flops(n, inner) for n in body.nodes]
        return None if any(p is None for p in parts) else float(sum(parts))
    ins = [shapes.get(v) if v is not None else () for v in node.inputs]
    outs = [shapes.get(v) if v is not None else () for v in node.outputs]
    if any(s is None for s in ins + outs):
        return None
    a = node.attrs
    if node.op == "MatMul":
        return 2.0 * _numel(outs[0]) * ins[0][-1]
    if node.op == "PackedMatMul":
        return 2.0 * _numel(outs[0]) * a["k"]
    if node.op == "Gemm":
        return 2.0 * _numel(outs[0]) * ins[0][0 if a.get("transA") else 1]
    if node.op == "Conv":
        return 2.0 * _numel(outs[0]) * _numel(ins[1][1:])
    if node.op == "PackedConv":           # weights packed as GEMM panels: geometry in attrs
        return 2.0 * _numel(outs[0]) * a["c"] * _numel(a["kernel_shape"])
    if node.op == "BlockedConv":          # blocked layout: real channels from attrs, not padded
        cin = 1 if a["depthwise"] else a["c"]
        return 2.0 * outs[0][0] * a["m"] * _numel(a["out_hw"]) * cin * _numel(a["kernel_shape"])
    if node.op == "WinogradMatMul":      # the products: V [N, A*A, ICb', T', b] times U [A*A, OCb, ICb, b, b]
        return 2.0 * ins[0][0] * (node.attrs.get("tiles") or ins[0][3]) * _numel(ins[1])
    if node.op == "ConvTranspose":
        return 2.0 * _numel(ins[0]) * _numel(ins[1][1:])
    if node.op == "Attention":            # Q K^T, then P V: 2 * (Q elements * kv length) each
        kv_len = ins[1][-2]
        return 2.0 * kv_len * (_numel(ins[0]) + _numel(outs[0]))
    d = REGISTRY.get(node.op)
    if d.scalar is not None:
        return float(_numel(outs[0]))
    if d.reference.__module__ in MOVEMENT_MODULES:
        return 0.0
    return float(max(_numel(s) for s in ins + outs))


def body_shapes(node, shapes: dict) -> dict:
    """Concrete shapes of a Fused node's body values, from the node's input shapes."""
    body = node.attrs["body"]
    given = {bv: shapes[v] for bv, v in zip(body.inputs, node.inputs) if v in shapes}
    try:
        types, _ = eval_shapes(body, given)
        return {v: concrete(t) for v, t in types.items() if concrete(t) is not None}
    except Exception:                    # fall back on the declared types, symbols bound
        symbols = {}
        for bv, v in zip(body.inputs, node.inputs):
            t = bv.type
            if isinstance(t, TensorType) and t.shape is not None and v in shapes:
                symbols.update({d: n for d, n in zip(t.shape, shapes[v]) if isinstance(d, str)})
        out = dict(given)
        for n in body.nodes:
            for v in n.outputs:
                if v is not None and isinstance(v.type, TensorType):
                    c = concrete(bind_shape(v.type, symbols))
                    if c is not None:
                        out[v] = c
        return out


def node_cost(node, shapes: dict) -> Cost:
    """FLOPs and bytes moved by the kernel of `node`."""
    sizes = [_nbytes(v, shapes) for v in list(node.inputs) + list(node.outputs) if v is not None]
    nbytes = None if any(s is None for s in sizes) else float(sum(sizes))
    return Cost(node_flops(node, shapes), nbytes)
