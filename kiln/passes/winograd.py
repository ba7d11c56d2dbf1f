"""winograd: run 3x3 stride-1 blocked convolutions as Winograd F(m x m, 3 x 3) (kiln/ops/winograd.py):
WinogradInput -> WinogradMatMul -> WinogradOutput, the weights transformed now, at compile time.
Runs after `layout` (it rewrites BlockedConv) and before `fuse` (epilogues fuse onto
WinogradOutput). Mutates the graph.

Which convolutions, and which m (`choose`): F(4, 3) does 4x fewer multiplications than the direct
convolution, but its transformed weights are 4x the size of the kernel's (36 points against 9
taps) and are streamed once per image, and the transforms cost memory traffic of their own. It
pays where the plane is large enough to reuse the weights over many tiles and there are enough
channels for the products to dominate the transforms.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops.winograd import tiles, transform_weights
from .manager import graph_pass
from .rewrite import users

MIN_CHANNELS = 32            # input and output channels: below this the transforms dominate
MIN_PLANE_F4 = 14            # output side from which F(4, 3) beats the direct convolution
MIN_PLANE_F2 = 7             # F(2, 3) below that: 2.25x fewer multiplications, a quarter of F(4, 3)'s weights


def choose(node: Node) -> int | None:
    """The tile size m for a BlockedConv, or None to keep it direct."""
    at = node.attrs
    if at["depthwise"] or at["plain"] or tuple(at["kernel_shape"]) != (3, 3):
        return None
    if tuple(at["strides"]) != (1, 1) or tuple(at["dilations"]) != (1, 1):
        return None
    if min(at["m"], at["c"]) < MIN_CHANNELS or not node.inputs[1].is_const:
        return None
    side = min(at["out_hw"])
    if side >= MIN_PLANE_F4:
        return 4
    if side >= MIN_PLANE_F2:
        return 2
    return None


@graph_pass("winograd")
def winograd(graph: Graph) -> Graph:
    """3x3 stride-1 BlockedConv -> WinogradInput, WinogradMatMul, WinogradOutput (mutates the graph)."""
    out: list[Node] = []
    dropped = set()
    for node in graph.nodes:
        m = choose(node) if node.op == "BlockedConv" else None
        if m is None:
            out.append(node)
            continue
        x, w, b = node.inputs
        y = node.outputs[0]
        at = node.attrs
        n, icb, _, _, block = x.type.shape
        ocb = y.type.shape[1]
        th, tw = tiles(at["out_hw"], m)
        a2 = (m + 2) ** 2
        dt = y.type.dtype
        v = Value(graph.fresh_name(f"{node.name}.wino_in"), TensorType(dt, (n, a2, icb, th * tw, block)))
        p = Value(graph.fresh_name(f"{node.name}.wino_mul"), TensorType(dt, (n, a2, ocb, th * tw, block)))
        u = graph.add_const(graph.fresh_name(f"{w.name}.wino"), transform_weights(w.data, m))
        first = Node("WinogradInput", [x], [v], dict(m=m, pads=list(at["pads"][:2]), out_hw=list(at["out_hw"])),
                     graph.fresh_name(f"{node.name}.wino_in"))
        mul = Node("WinogradMatMul", [v, u], [p], {}, graph.fresh_name(f"{node.name}.wino_mul"))
        last = Node("WinogradOutput", [p, b], [y], dict(m=m, out_hw=list(at["out_hw"])), node.name)
        v.producer, p.producer, y.producer = first, mul, last
        out += [first, mul, last]
        dropped.add(w)
    graph.nodes = out
    if dropped:
        live = set(users(graph)) | set(graph.outputs)
        graph.constants = [c for c in graph.constants if c not in dropped or c in live]
    return graph
