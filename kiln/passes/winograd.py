"""winograd: run 3x3 stride-1 blocked convolutions as Winograd F(m x m, 3 x 3) (kiln/ops/winograd.py):
WinogradInput -> WinogradMatMul -> WinogradOutput, the weights transformed now, at compile time.
Runs after `layout` (it rewrites BlockedConv) and before `fuse` (epilogues fuse onto
WinogradOutput). Mutates the graph.

Which convolutions, and which m (`choose`, a cost model): F(m, 3) trades multiplications for
weights and memory traffic. F(2, 3) does 2.25x fewer multiplications than the direct convolution
(F(4, 3) 4x), but its transformed weights are 16/9 of the kernel's (F(4, 3): 36/9), streamed from
memory once per run (a network's weights do not stay in cache between runs), and the transformed
tiles V and M go through the cache between the three ops. Each option is priced as FLOPs at the
GEMM's sustained rate plus weight bytes at memory bandwidth plus V/M bytes at cache bandwidth; the
cheapest of direct and the allowed tile sizes (TILE_SIZES, below; F(4, 3) only where at most
F4_MAX_LAYERS_AFTER mixing layers follow, for its rounding error) wins.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops.winograd import padded_slab, tiles, transform_weights
from .manager import graph_pass
from .rewrite import drop_constants

# F(4, 3)'s fp32 error is about twice F(2, 3)'s per convolution (kiln/ops/winograd.py; the products
# sum in chunks of input blocks, WinogradMatMul's SUM_BLOCKS, without which it is 3x), and what a
# layer rounds passes through every later layer. ResNet-50 with F(4, 3) in its first stage (41-47
# mixing layers after it) missed onnxruntime's rtol 1e-3 / atol 1e-4 at batch 8 (logits up to 5.4);
# ResNet-18's first two stages (9-16 after) take it 20x inside that tolerance, 13% faster.
TILE_SIZES = (2, 4)
F4_MAX_LAYERS_AFTER = 24     # F(4, 3) only where at most this many mixing layers follow (layers_after)
MIXING = {"BlockedConv", "Conv", "ConvTranspose", "MatMul", "Gemm", "PackedMatMul", "PointwiseDepthwise",
          "WinogradMatMul"}
MIN_CHANNELS = 32            # input and output channels: below this the transforms dominate
FLOPS = 200e9                # sustained GEMM rate, 2 threads (the cost model's units: seconds)
MEMORY_BW = 20e9             # bytes/s for weights streamed from memory
CACHE_BW = 60e9              # bytes/s for V and M through the last-level cache
DIRECT_EFFICIENCY = 0.85     # the direct kernels' rate against the GEMM's (border taps, shapes)


def cost(m: int | None, n: int, c: int, k: int, out_hw) -> float:
    """Estimated seconds of a 3x3 convolution of n images, c -> k channels, at output size out_hw:
    direct (m None) or Winograd F(m x m, 3 x 3)."""
    if m is None:
        return 2 * n * out_hw[0] * out_hw[1] * 9 * c * k / (FLOPS * DIRECT_EFFICIENCY) + 9 * c * k * 4 / MEMORY_BW
    th, tw = tiles(out_hw, m)
    points = (m + 2) ** 2
    return (2 * n * points * th * tw * c * k / FLOPS + points * c * k * 4 / MEMORY_BW +
            2 * n * points * th * tw * (c + k) * 4 / CACHE_BW)


def layers_after(graph: Graph) -> dict[Node, int]:
    """For each node, the most channel-mixing layers (convolutions, matrix products) on any path
    from its output to the graph's outputs: how many layers its rounding error passes through."""
    users = graph.users()
    after: dict[Node, int] = {}
    for node in reversed(graph.nodes):
        after[node] = max((after.get(u, 0) + (u.op in MIXING) for o in node.outputs if o is not None
                           for u in users.get(o, ())), default=0)
    return after


def choose(node: Node, after: int = 0) -> int | None:
    """The tile size m for a BlockedConv with `after` mixing layers after it, or None to keep it
    direct."""
    at = node.attrs
    if at["depthwise"] or at["plain"] or tuple(at["kernel_shape"]) != (3, 3):
        return None
    if tuple(at["strides"]) != (1, 1) or tuple(at["dilations"]) != (1, 1):
        return None
    if min(at["m"], at["c"]) < MIN_CHANNELS or not node.inputs[1].is_const:
        return None
    batch = node.inputs[0].type.shape[0]
    n = batch if isinstance(batch, int) else 1
    c, k = (-(-x // 8) * 8 for x in (at["c"], at["m"]))      # padded to whole channel blocks
    sizes = [m for m in TILE_SIZES if m != 4 or after <= F4_MAX_LAYERS_AFTER]
    return min((None, *sizes), key=lambda m: cost(m, n, c, k, at["out_hw"]))


@graph_pass("winograd")
def winograd(graph: Graph) -> Graph:
    """3x3 stride-1 BlockedConv -> WinogradInput, WinogradMatMul, WinogradOutput (mutates the graph)."""
    out: list[Node] = []
    dropped = set()
    after = layers_after(graph)
    for node in graph.nodes:
        m = choose(node, after[node]) if node.op == "BlockedConv" else None
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
        vslab, mslab = (list(padded_slab(blocks, th * tw, a2, block)) for blocks in (icb, ocb))
        v = Value(graph.fresh_name(f"{node.name}.wino_in"), TensorType(dt, (n, a2, *vslab, block)))
        p = Value(graph.fresh_name(f"{node.name}.wino_mul"), TensorType(dt, (n, a2, *mslab, block)))
        u = graph.add_const(graph.fresh_name(f"{w.name}.wino"), transform_weights(w.data, m))
        first = Node("WinogradInput", [x], [v], dict(m=m, pads=list(at["pads"][:2]), out_hw=list(at["out_hw"]),
                                                     slab=vslab), graph.fresh_name(f"{node.name}.wino_in"))
        mul = Node("WinogradMatMul", [v, u], [p], dict(tiles=th * tw, slab=mslab),
                   graph.fresh_name(f"{node.name}.wino_mul"))
        last = Node("WinogradOutput", [p, b], [y], dict(m=m, out_hw=list(at["out_hw"])), node.name)
        v.producer, p.producer, y.producer = first, mul, last
        out += [first, mul, last]
        dropped.add(w)
    graph.nodes = out
    drop_constants(graph, dropped)
    return graph
