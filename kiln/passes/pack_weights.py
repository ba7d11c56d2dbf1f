"""pack-weights: pack the constant B of fp32 MatMul/Gemm once, at compile time, into the column
panels the GEMM micro-kernel reads (kiln/ops/gemm.py: PackedMatMul), and the weights of ungrouped
2-D f32 convolutions, the A of their implicit GEMM, into its row panels (PackedConv). Mutates the
graph.

Runs after `fuse`: a Fused epilogue group whose anchor is such a MatMul/Gemm gets the packed
constant as its input and a PackedMatMul anchor. Left alone: feedable constants (callers may feed
them), B of rank other than 2, non-f32 operands, and nodes inside control-flow subgraphs. A weight
used by several nodes is packed once (per orientation); the unpacked constant goes when nothing
else reads it.
"""
from __future__ import annotations

import numpy as np

from ..backend.microkernel import host_config
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops import REGISTRY
from ..ops.gemm import pack_a, pack_b
from .manager import graph_pass
from .rewrite import users

OPS = ("MatMul", "Gemm", "Conv")


def _f32(v: Value | None) -> bool:
    t = v.type if v is not None else None
    return isinstance(t, TensorType) and t.dtype is not None and t.dtype.name == "f32"


def _packable(node: Node, b: Value | None) -> bool:
    """node (MatMul/Gemm) may read its B = `b` (a top-level value) packed."""
    if b is None or not b.is_const or b.feedable or not isinstance(b.data, np.ndarray):
        return False
    if b.data.dtype != np.float32 or b.data.ndim != 2 or 0 in b.data.shape:
        return False
    a = node.inputs[0]
    if not (_f32(a) and _f32(node.outputs[0])) or a.type.shape is None:
        return False
    if node.op == "Gemm":
        return len(a.type.shape) == 2
    return len(a.type.shape) >= 1


def _conv_packable(node: Node, w: Value | None) -> bool:
    """An ungrouped 2-D f32 Conv with constant weights whose geometry the lowering can resolve
    (kiln/ops/gemm_lower.py: lower_conv_gemm runs it as an implicit GEMM)."""
    if w is None or not w.is_const or w.feedable or not isinstance(w.data, np.ndarray):
        return False
    if w.data.dtype != np.float32 or w.data.ndim != 4 or 0 in w.data.shape:
        return False
    x, at = node.inputs[0], node.attrs
    if not (_f32(x) and _f32(node.outputs[0])) or x.type.shape is None or len(x.type.shape) != 4:
        return False
    if at.get("group", 1) != 1:
        return False
    ks = at.get("kernel_shape")
    if ks and tuple(ks) != w.data.shape[2:]:
        return False
    return at.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") or \
        all(isinstance(d, int) for d in x.type.shape[2:])


def _rewrite_conv(node: Node, packed: Value, shape: tuple, kc: int):
    """Turn Conv `node` into PackedConv reading `packed` (in place)."""
    at = dict(node.attrs)
    at.update(kernel_shape=list(shape[2:]), m=shape[0], c=shape[1], kc=kc)
    node.attrs = at
    node.inputs = [node.inputs[0], packed] + node.inputs[2:]
    node.op = "PackedConv"


def _rewrite(node: Node, packed: Value, k: int, n: int, kc: int):
    """Turn MatMul/Gemm `node` into PackedMatMul reading `packed` (in place)."""
    if node.op == "Gemm":
        at = node.attrs
        c = node.inputs[2] if len(node.inputs) > 2 else None
        node.attrs = {"k": k, "n": n, "kc": kc, "gemm": 1, "trans_a": int(at.get("transA", 0)),
                      "alpha": at.get("alpha", 1.0), "beta": at.get("beta", 1.0)}
        node.inputs = [node.inputs[0], packed] + ([c] if c is not None else [])
    else:
        node.attrs = {"k": k, "n": n, "kc": kc}
        node.inputs = [node.inputs[0], packed]
    node.op = "PackedMatMul"


@graph_pass("pack-weights")
def pack_weights(graph: Graph) -> Graph:
    """Pack constant fp32 MatMul/Gemm weights into GEMM panels (PackedMatMul) and ungrouped 2-D
    Conv weights into the row panels of their implicit GEMM (PackedConv); mutates the graph."""
    cfg = host_config()
    nr, kc = cfg.nr, cfg.kc
    packed: dict = {}             # (id(constant), transposed) -> packed constant
    replaced: set = set()

    def get(b: Value, trans: bool) -> tuple[Value, int, int, int]:
        key = (id(b), trans)
        data = b.data.T if trans else b.data
        k, n = data.shape
        if key not in packed:
            packed[key] = graph.add_const(graph.fresh_name(f"{b.name}.packed"), pack_b(data, nr, kc))
        replaced.add(b)
        return packed[key], k, n, kc

    def get_a(w: Value) -> Value:
        key = (id(w), "a")
        if key not in packed:
            mat = w.data.reshape(w.data.shape[0], -1)
            packed[key] = graph.add_const(graph.fresh_name(f"{w.name}.packed"), pack_a(mat, cfg.mr, kc))
        replaced.add(w)
        return packed[key]

    def pack(node: Node, w: Value, inner: Value | None = None) -> Value | None:
        """Rewrite `node` (top level, or an anchor reading `inner` in a Fused body) to read
        the packed `w`; the packed constant, or None when it does not apply."""
        if node.op == "Conv":
            if not _conv_packable(node, w):
                return None
            pv = get_a(w)
            _rewrite_conv(node, inner or pv, w.data.shape, kc)
            return pv
        if not _packable(node, w):
            return None
        trans = node.op == "Gemm" and bool(node.attrs.get("transB", 0))
        pv, k, n, kc_ = get(w, trans)
        _rewrite(node, inner or pv, k, n, kc_)
        return pv

    for node in graph.nodes:
        if node.op in OPS:
            pack(node, node.inputs[1])
        elif node.op == "Fused" and node.attrs.get("kind") == "epilogue":
            body = node.attrs["body"]
            anchors = [n_ for n_ in body.nodes if REGISTRY.get(n_.op).scalar is None]
            if len(anchors) != 1:
                continue
            anchor = anchors[0]
            if anchor.op not in OPS or anchor.inputs[1] not in body.inputs:
                continue
            pos = body.inputs.index(anchor.inputs[1])
            b = node.inputs[pos]
            reads = sum(v is anchor.inputs[1] for n_ in body.nodes for v in n_.inputs)
            if reads != 1 or body.outputs[0] is anchor.inputs[1]:
                continue
            inner = Value(graph.fresh_name(f"{b.name}.packed.in"))
            pv = pack(anchor, b, inner)
            if pv is None:
                continue
            inner.type = pv.type
            body.inputs[pos] = inner
            node.inputs[pos] = pv
    if replaced:
        live = set(users(graph)) | set(graph.outputs)
        graph.constants = [c for c in graph.constants if c not in replaced or c in live]
    return graph
