"""pointwise-depthwise: a 1x1 BlockedConv, the Clip or Relu on its output, and the depthwise
BlockedConv reading that become one PointwiseDepthwise (kiln/ops/pointwise_depthwise.py), whose
kernel never writes the expanded tensor to memory. Runs after `layout` (it matches BlockedConvs)
and before `fuse` (the depthwise conv's own Clip fuses onto the new op). Mutates the graph.

Taken when: the 1x1 conv is stride 1, unpadded, reads a blocked input; the clamp's bounds are
constants; the depthwise conv reads the clamp's output; each intermediate value has that one
reader and is not a graph output; and the planes are not tiny (more than MIN_PIXELS pixels in the
depthwise conv's output: below that the unfused 1x1 kernel's whole-plane calls are faster).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from .manager import graph_pass
from .rewrite import users

F32_MAX = float(np.finfo(np.float32).max)
MIN_PIXELS = 64


def _pointwise(node: Node) -> bool:
    at = node.attrs
    return (node.op == "BlockedConv" and not at["depthwise"] and not at["plain"]
            and tuple(at["kernel_shape"]) == (1, 1) and tuple(at["strides"]) == (1, 1)
            and not any(at["pads"]))


def _scalar(node: Node, i: int, default: float) -> float | None:
    v = node.inputs[i] if len(node.inputs) > i else None
    if v is None:
        return default
    if not v.is_const or not isinstance(v.data, np.ndarray) or v.data.size != 1:
        return None
    return float(v.data.reshape(()))


def _bounds(node: Node) -> list[float] | None:
    """[lo, hi] of a Relu or a Clip with constant bounds, else None."""
    if node.op == "Relu":
        return [0.0, F32_MAX]
    if node.op == "Clip":
        lo, hi = _scalar(node, 1, -F32_MAX), _scalar(node, 2, F32_MAX)
        return None if lo is None or hi is None else [lo, hi]
    return None


@graph_pass("pointwise-depthwise")
def pointwise_depthwise(graph: Graph) -> Graph:
    """1x1 BlockedConv -> Clip/Relu -> depthwise BlockedConv => PointwiseDepthwise (mutates)."""
    use = users(graph)
    outputs = set(graph.outputs)

    def only_reader(v) -> Node | None:
        readers = use.get(v, [])
        return readers[0] if len(readers) == 1 and v not in outputs else None

    replace: dict[int, Node] = {}          # id(depthwise conv) -> the fused node
    gone: set[int] = set()
    for node in graph.nodes:
        if not _pointwise(node):
            continue
        act = only_reader(node.outputs[0])
        if act is None or act.inputs[0] is not node.outputs[0] or (clip := _bounds(act)) is None:
            continue
        dw = only_reader(act.outputs[0])
        if (dw is None or dw.op != "BlockedConv" or not dw.attrs["depthwise"]
                or dw.inputs[0] is not act.outputs[0] or dw.attrs["m"] != node.attrs["m"]):
            continue
        oh, ow = dw.attrs["out_hw"]
        if oh * ow <= MIN_PIXELS:
            continue
        at = {k: dw.attrs[k] for k in ("kernel_shape", "strides", "pads", "dilations", "out_hw")}
        fused = Node("PointwiseDepthwise", [node.inputs[0], node.inputs[1], node.inputs[2], dw.inputs[1],
                                            dw.inputs[2]], dw.outputs,
                     dict(at, c=node.attrs["c"], m=node.attrs["m"], clip=clip), dw.name)
        dw.outputs[0].producer = fused
        replace[id(dw)] = fused
        gone |= {id(node), id(act)}
    graph.nodes = [replace.get(id(n), n) for n in graph.nodes if id(n) not in gone]
    return graph
