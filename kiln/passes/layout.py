"""layout: run chains of 2-D f32 convolutions in the blocked channels layout NCHW[v]c (v = the
target's vector width, 8 floats on AVX2; kiln/ops/layout.py), with the fewest reorders. Mutates
the graph.

Walking the graph in order, a node moves into the blocked layout when:
- it is a Conv (2-D, f32, static channel and spatial sizes, constant weights and bias) that is
  ungrouped or depthwise: it becomes a BlockedConv whose weights are re-laid out now, at compile
  time. Its input is the blocked twin of X when X is already blocked; otherwise one ToBlocked
  per value, shared by every conv that reads it; a first layer with at most 4 input channels reads
  its NCHW input directly (plain=1) instead of padding 3 channels to 8; a strided 1x1 conv without
  padding reads a Slice of every stride-th pixel and runs at stride 1 (`_subsampling`);
- it is an elementwise op that keeps zeros finite (Relu, Clip, Add, Mul, Sigmoid, ...: the padding
  lanes past C stay harmless) whose tensor inputs are blocked values of the output's shape or scalar
  constants;
- it is a 2-D MaxPool with a blocked input (BlockedMaxPool).
A value moved into the blocked layout keeps its name for its NCHW form, which one FromBlocked,
placed right after the blocked producer, computes only when something else reads it (any other
op, a subgraph, a graph output). So a ResNet runs blocked from its first conv to its global
pooling with one reorder in all, and the fuse pass (which runs after this one) sees BlockedConv
+ Add + Relu chains as ordinary anchored epilogues.
"""
from __future__ import annotations

import numpy as np

from ..backend.microkernel import host_config
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops.layout import block_conv_weights
from ..ops.nn_window import resolve
from .manager import graph_pass
from .rewrite import drop_constants, node_reads

# elementwise ops under which the padding lanes (zeros out of ToBlocked and BlockedConv) stay finite
KEEP_FINITE = {"Relu", "Clip", "Add", "Sub", "Mul", "Max", "Min", "Sum", "Neg", "Abs", "Identity",
               "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu", "Selu", "Celu",
               "Softplus", "Softsign", "Gelu", "Mish", "ThresholdedRelu"}
PLAIN_MAX_CHANNELS = 4


def _static(v: Value | None, rank: int) -> tuple | None:
    t = v.type if v is not None else None
    if not isinstance(t, TensorType) or t.dtype is None or t.dtype.name != "f32" or t.shape is None:
        return None
    if len(t.shape) != rank or not all(isinstance(d, int) for d in t.shape[1:]):
        return None
    return t.shape


def _const(v: Value | None) -> np.ndarray | None:
    if v is None or not v.is_const or v.feedable or not isinstance(v.data, np.ndarray):
        return None
    return v.data if v.data.dtype == np.float32 else None


def _window(node: Node, xs: tuple, kernel: tuple) -> tuple | None:
    """(strides, dilations, pads [t, l, b, r]) with auto_pad resolved, or None."""
    at = node.attrs
    strides = tuple(at.get("strides") or (1, 1))
    dil = tuple(at.get("dilations") or (1, 1))
    if len(strides) != 2 or len(dil) != 2:
        return None
    win = resolve(list(xs[2:]), kernel, strides, dil, at.get("pads"), at.get("auto_pad", "NOTSET"))
    if any(p < 0 for p in (*win.begin, *win.end)):
        return None
    return strides, dil, [*win.begin, *win.end]


def _conv_plan(node: Node) -> dict | None:
    """BlockedConv attributes (less plain) for a Conv that can run blocked, or None."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    xs, ys, wd = _static(x, 4), _static(y, 4), _const(w)
    if xs is None or ys is None or wd is None or wd.ndim != 4 or 0 in wd.shape:
        return None
    if b is not None and (_const(b) is None or _const(b).shape != (wd.shape[0],)):
        return None
    m, cg, kh, kw = wd.shape
    group, c = node.attrs.get("group", 1), xs[1]
    depthwise = group > 1 and group == c == m and cg == 1
    if not (group == 1 and cg == c) and not depthwise:
        return None
    ks = node.attrs.get("kernel_shape")
    if ks and tuple(ks) != (kh, kw):
        return None
    geom = _window(node, xs, (kh, kw))
    if geom is None:
        return None
    strides, dil, pads = geom
    return dict(kernel_shape=[kh, kw], strides=list(strides), pads=pads, dilations=list(dil),
                out_hw=list(ys[2:]), m=m, c=c, depthwise=int(depthwise))


def _pool_plan(node: Node) -> dict | None:
    at = node.attrs
    if len(node.outputs) > 1 and node.outputs[1] is not None:
        return None
    xs, ys = _static(node.inputs[0], 4), _static(node.outputs[0], 4)
    ks = tuple(at.get("kernel_shape") or ())
    if xs is None or ys is None or len(ks) != 2:
        return None
    geom = _window(node, xs, ks)
    if geom is None:
        return None
    strides, dil, pads = geom
    return dict(kernel_shape=list(ks), strides=list(strides), pads=pads, dilations=list(dil),
                out_hw=list(ys[2:]), channels=xs[1])


def _blocked_type(v: Value, shape: tuple, block: int) -> TensorType:
    n, c = shape[:2]
    return TensorType(v.type.dtype, (n, -(-c // block), *shape[2:], block))


@graph_pass("layout")
def layout(graph: Graph) -> Graph:
    """Move 2-D f32 conv chains (with their elementwise epilogues and max pooling) into the
    blocked channels layout NCHW[v]c, weights re-laid out at compile time; mutates the graph."""
    v = host_config().vw
    twin: dict[Value, Value] = {}          # NCHW value -> its blocked twin (made here or by ToBlocked)
    made: set = set()                      # the blocked nodes (they read twins, not NCHW values)
    dropped: set = set()                   # weights replaced by blocked copies
    nodes: list[Node] = []

    def blocked_out(node: Node, old: Value) -> Value:
        shape = old.type.shape
        nv = Value(graph.fresh_name(f"{old.name}.blk"), _blocked_type(old, shape, v))
        nv.producer = node
        twin[old] = nv
        return nv

    def blocked_in(x: Value) -> Value:
        if x not in twin:
            tb = Value(graph.fresh_name(f"{x.name}.blk"), _blocked_type(x, x.type.shape, v))
            node = Node("ToBlocked", [x], [tb], {"block": v}, graph.fresh_name(f"{x.name}.to_blocked"))
            tb.producer = node
            nodes.append(node)
            made.add(id(node))
            twin[x] = tb
        return twin[x]

    def subsample(xb: Value, plan: dict) -> Value:
        """xb[:, :, ::sh, ::sw]: a strided Slice of the blocked value, shared by every strided 1x1
        conv that reads xb"""
        key = (xb, tuple(plan["strides"]))
        if key not in strided:
            n, cb, _, _, vw = xb.type.shape
            consts = [graph.add_const(graph.fresh_name(f"{xb.name}.{what}"), np.array(a, np.int64))
                      for what, a in (("starts", [0, 0]), ("ends", [2 ** 62] * 2), ("axes", [2, 3]),
                                      ("steps", plan["strides"]))]
            sv = Value(graph.fresh_name(f"{xb.name}.strided"), TensorType(xb.type.dtype, (n, cb, *plan["out_hw"], vw)))
            node = Node("Slice", [xb, *consts], [sv], {}, graph.fresh_name(f"{xb.name}.subsample"))
            sv.producer = node
            nodes.append(node)
            made.add(id(node))
            strided[key] = sv
        return strided[key]

    strided: dict = {}
    for node in graph.nodes:
        if node.op == "Conv" and (plan := _conv_plan(node)) is not None:
            x, w = node.inputs[0], node.inputs[1]
            b = node.inputs[2] if len(node.inputs) > 2 else None
            plain = x not in twin and not plan["depthwise"] and plan["c"] <= PLAIN_MAX_CHANNELS
            wb = graph.add_const(graph.fresh_name(f"{w.name}.blk"),
                                 block_conv_weights(w.data, v, plain, bool(plan["depthwise"])))
            bias = np.zeros(-(-plan["m"] // v) * v, np.float32)
            if b is not None:
                bias[:plan["m"]] = b.data
                dropped.add(b)
            bb = graph.add_const(graph.fresh_name(f"{w.name}.blk_bias"), bias)
            dropped.add(w)
            xb = x if plain else blocked_in(x)
            if not plain and _subsampling(plan):
                xb, plan = subsample(xb, plan), dict(plan, strides=[1, 1])
            new = Node("BlockedConv", [xb, wb, bb], [], dict(plan, plain=int(plain)), node.name)
            new.outputs = [blocked_out(new, node.outputs[0])]
        elif node.op == "MaxPool" and node.inputs[0] in twin and (plan := _pool_plan(node)) is not None:
            new = Node("BlockedMaxPool", [twin[node.inputs[0]]], [], plan, node.name)
            new.outputs = [blocked_out(new, node.outputs[0])]
        elif _elementwise_ok(node, twin):
            node.inputs = [twin.get(i, i) if i is not None else None for i in node.inputs]
            node.outputs = [blocked_out(node, node.outputs[0])]
            new = node
        else:
            nodes.append(node)
            continue
        made.add(id(new))
        nodes.append(new)

    # the NCHW form of a blocked value, for whatever still reads it
    plain_reads = {val for n in nodes if id(n) not in made for val in node_reads(n)}
    plain_reads |= set(graph.outputs)
    wanted = {id(nv.producer): (old, nv) for old, nv in twin.items()
              if old in plain_reads and nv.producer.op != "ToBlocked"}
    out: list[Node] = []
    for n in nodes:
        out.append(n)
        if id(n) in wanted:
            old, nv = wanted[id(n)]
            fb = Node("FromBlocked", [nv], [old], {"channels": old.type.shape[1]},
                      graph.fresh_name(f"{old.name}.from_blocked"))
            old.producer = fb
            out.append(fb)
    graph.nodes = out
    drop_constants(graph, dropped)
    return graph


def _subsampling(plan: dict) -> bool:
    """A strided 1x1 convolution without padding: it runs as a Slice taking every stride-th pixel,
    then a stride-1 1x1 convolution, whose kernel runs the plane as one long row of pixels in
    tiles of the best width (ResNet-50's downsampling convs: 7-14% faster, the Slice included)."""
    return (not plan["depthwise"] and tuple(plan["kernel_shape"]) == (1, 1) and
            tuple(plan["strides"]) != (1, 1) and not any(plan["pads"]) and
            tuple(plan["dilations"]) == (1, 1))


def _elementwise_ok(node: Node, twin: dict) -> bool:
    """An elementwise op that keeps padding lanes finite, reading at least one blocked value, all
    its tensor inputs blocked values of its output's shape or scalar constants."""
    if node.op not in KEEP_FINITE or len(node.outputs) != 1 or any(True for _ in node.subgraphs()):
        return False
    shape = _static(node.outputs[0], 4)
    if shape is None:
        return False
    seen = False
    for x in node.inputs:
        if x is None:
            continue
        if x in twin:
            if x.type.shape != shape:
                return False
            seen = True
        elif not (x.is_const and isinstance(x.data, np.ndarray) and x.data.size == 1):
            return False
    return seen
