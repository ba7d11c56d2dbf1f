"""fuse: group nodes into Fused kernels (kiln/ops/fused.py). Mutates the graph.

The rule, applied from the last node backwards, each group growing towards its inputs:
- a group starts at any node that has a native lowering;
- an **elementwise** producer (its op has `scalar`) joins the group of its consumer when its single
  output is used only inside that group (not by other nodes, subgraphs, or as a graph output) and has
  the same shape as the group's output (so the group stays one loop nest; smaller operands that
  broadcast are group inputs, not members);
- an **anchor** producer (an op with a loop-nest lowering: Conv, MatMul, Gemm, pooling, ...) joins
  the same way when the group so far is only elementwise and has the same dtype: the elementwise chain
  becomes its epilogue. The anchor's own inputs stay outside.
Groups of one node stay plain nodes.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops import REGISTRY
from .manager import graph_pass

EPILOGUE_ANCHORS = {"Conv", "MatMul", "Gemm", "ConvTranspose", "MaxPool", "AveragePool",
                    "GlobalAveragePool", "BatchNormalization", "LayerNormalization",
                    "InstanceNormalization", "Softmax", "ReduceMean", "ReduceSum", "BlockedConv",
                    "BlockedMaxPool", "WinogradOutput", "PointwiseDepthwise"}


def _shape(v: Value):
    t = v.type
    return t.shape if isinstance(t, TensorType) and t.shape is not None and None not in t.shape else None


OUTSIDE = object()      # a use by a graph output or from inside a subgraph


def _users(graph: Graph) -> dict:
    """value -> list of the nodes of this graph that read it (OUTSIDE for other kinds of use)."""
    users: dict = {}
    for n in graph.nodes:
        for v in n.inputs:
            if v is not None:
                users.setdefault(v, []).append(n)
        for _, inner in (x for g in n.subgraphs() for x in g.all_nodes()):
            for v in inner.inputs:
                if v is not None:
                    users.setdefault(v, []).append(OUTSIDE)
    for v in graph.outputs:
        users.setdefault(v, []).append(OUTSIDE)
    return users


def _elementwise(node: Node) -> bool:
    d = REGISTRY.get(node.op)
    return d.scalar is not None and len(node.outputs) == 1 and node.outputs[0] is not None


def _groups(graph: Graph) -> list[list[Node]]:
    users = _users(graph)
    taken: set = set()
    groups = []
    for root in reversed(graph.nodes):
        if id(root) in taken or any(True for _ in root.subgraphs()):
            continue
        if not (_elementwise(root) and _shape(root.outputs[0]) is not None):
            continue
        group, anchored = [root], False
        out_shape, out_dtype = _shape(root.outputs[0]), root.outputs[0].type.dtype
        grew = True
        while grew:                     # a value read twice joins once all its readers have
            grew = False
            for node in list(group):
                if not _elementwise(node):      # the anchor's own inputs stay outside
                    continue
                for v in node.inputs:
                    p = v.producer if v is not None else None
                    if p is None or id(p) in taken or p in group:
                        continue
                    if len(p.outputs) != 1 or _shape(v) != out_shape:
                        continue
                    if not all(u is not OUTSIDE and u in group for u in users.get(v, [])):
                        continue
                    if _elementwise(p):
                        group.append(p)
                        grew = True
                    elif not anchored and p.op in EPILOGUE_ANCHORS and v.type.dtype == out_dtype \
                            and not any(True for _ in p.subgraphs()):
                        group.append(p)
                        anchored = grew = True
        if len(group) > 1:
            order = {id(n): i for i, n in enumerate(graph.nodes)}
            group.sort(key=lambda n: order[id(n)])
            taken.update(id(n) for n in group)
            groups.append(group)
    return groups


def _make_fused(graph: Graph, group: list[Node], index: int) -> Node:
    members = {id(n) for n in group}
    inner = {v for n in group for v in n.outputs if v is not None}
    root = group[-1]
    result = root.outputs[0]
    ext: list[Value] = []
    for n in group:
        for v in n.inputs:
            if v is not None and v not in inner and v not in ext:
                ext.append(v)
    mapping = {v: Value(f"{v.name}.f{index}", v.type) for v in ext}
    body_out = Value(f"{result.name}.f{index}", result.type)
    for n in group:
        n.inputs = [None if v is None else mapping.get(v, v) for v in n.inputs]
    root.outputs = [body_out]
    body_out.producer = root
    kind = "elementwise" if all(_elementwise(n) for n in group) else "epilogue"
    body = Graph(f"fused_{index}", [mapping[v] for v in ext], [body_out], list(group))
    name = root.name or f"fused_{index}"
    fused = Node("Fused", ext, [result], {"body": body, "kind": kind}, name)
    del members
    return fused


@graph_pass("fuse")
def fuse(graph: Graph) -> Graph:
    """Group elementwise chains, and elementwise epilogues of anchor ops, into Fused nodes."""
    groups = _groups(graph)
    if not groups:
        return graph
    first = {id(g[-1]): g for g in groups}          # the Fused node takes the root's place
    grouped = {id(n) for g in groups for n in g}
    nodes, k = [], 0
    for n in graph.nodes:
        if id(n) in first:
            nodes.append(_make_fused(graph, first[id(n)], k))
            k += 1
        elif id(n) not in grouped:
            nodes.append(n)
    graph.nodes = nodes
    return graph
