"""Constant folding: run nodes whose inputs are all known at compile time."""
from __future__ import annotations

import math

import numpy as np

from ..errors import KilnError
from ..ir import dtypes
from ..ir.graph import Graph, Node
from ..ir.types import TensorType, UnknownType
from ..runtime.interpreter import Interpreter
from .effects import const_data, is_pure
from .manager import graph_pass

MAX_FOLDED_ELEMENTS = 4 * 1024 * 1024   # bigger results (a broadcast weight) are made at run time
# ops whose result has as many elements as their input: folded whatever the size (a transposed
# weight, say GPT-2's tied LM head, costs no more than the weight itself)
SAME_SIZE_OPS = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast"}


@graph_pass("fold-constants")
def fold_constants(graph: Graph) -> Graph:
    """Replace pure nodes whose inputs are all constants by their results (mutates the graph).

    The op's numpy reference computes the outputs (through the interpreter); the output Values
    become constants (same objects, same names) and the node goes. Shape and Size of a tensor with
    a fully static type fold too, and so do Gather/Slice of a Shape when the dims they pick are
    static (others may be symbolic). Nodes are visited in order, so chains fold in one run.
    Left alone: feedable inputs (`param`), impure ops, nodes with subgraphs, results over
    MAX_FOLDED_ELEMENTS elements (except the SAME_SIZE_OPS), nodes computing a graph output, and
    nodes whose reference fails (the error then comes at run time, as without folding).
    """
    _fold(graph, Interpreter())
    return graph


def _fold(g: Graph, interp: Interpreter):
    outputs = set(g.outputs)
    kept = []
    for node in g.nodes:
        for sub in node.subgraphs():
            _fold(sub, interp)
        results = None
        if not any(v in outputs for v in node.outputs if v is not None):
            results = (static_shape_results(node) or shape_part_results(node, interp)
                       or evaluate(node, interp))
        if results is None or not _fits(node, results):
            kept.append(node)
            continue
        for v, data in zip(node.outputs, results):
            if v is not None:
                if not data.flags.c_contiguous:      # a reference may return a strided view
                    data = data.copy()
                v.data, v.producer = data, None
                v.type = TensorType(dtypes.from_numpy(data.dtype), data.shape)
                g.constants.append(v)
    g.nodes = kept


def static_shape_results(node: Node):
    """Shape/Size of a tensor whose type has only int dims, from the type alone."""
    if node.op not in ("Shape", "Size") or not node.inputs or node.inputs[0] is None:
        return None
    t = node.inputs[0].type
    if not isinstance(t, TensorType) or not t.is_static:
        return None
    if node.op == "Size":
        return [np.array(math.prod(t.shape), dtype=np.int64)]
    start, end = node.attrs.get("start", 0), node.attrs.get("end")
    return [np.array(t.shape[start:end], dtype=np.int64)]


def shape_part_results(node: Node, interp: Interpreter):
    """Gather/Slice picking dims of a Shape(x) whose picked dims are static in x's type (other dims
    may be symbolic): `Slice(Shape(x: f32[N,S,768]), [-1], [9e18])` is [768]."""
    src = node.inputs[0] if node.op in ("Gather", "Slice") and node.inputs else None
    shape_node = src.producer if src is not None else None
    if shape_node is None or shape_node.op != "Shape":
        return None
    t = shape_node.inputs[0].type
    if not isinstance(t, TensorType) or t.shape is None:
        return None
    if any(v is not None and const_data(v) is None for v in node.inputs[1:]):
        return None
    dims = t.shape[shape_node.attrs.get("start", 0):shape_node.attrs.get("end")]
    env = {v: v.data for v in node.inputs[1:] if v is not None}
    env[src] = np.arange(len(dims), dtype=np.int64)      # run the op on dim positions
    try:
        interp.run_node(node, env)
    except KilnError:
        return None
    picked = env[node.outputs[0]]
    if not isinstance(picked, np.ndarray) or picked.dtype != np.int64:
        return None
    values = [dims[i] for i in picked.reshape(-1)]
    if not all(isinstance(d, int) for d in values):
        return None
    return [np.array(values, dtype=np.int64).reshape(picked.shape)]


def evaluate(node: Node, interp: Interpreter):
    """The node's outputs computed by its reference, or None when it cannot or must not fold."""
    if not is_pure(node) or any(True for _ in node.subgraphs()):
        return None
    if any(v is not None and const_data(v) is None for v in node.inputs):
        return None
    if _declared_elements(node) > MAX_FOLDED_ELEMENTS and node.op not in SAME_SIZE_OPS:
        return None
    env = {v: v.data for v in node.inputs if v is not None}
    try:
        with np.errstate(all="ignore"):
            interp.run_node(node, env)
    except KilnError:
        return None
    return [None if v is None else env[v] for v in node.outputs]


def _declared_elements(node: Node) -> int:
    """Elements the outputs' types promise (static ones only), to skip huge results unseen."""
    total = 0
    for v in node.outputs:
        if v is not None and isinstance(v.type, TensorType) and v.type.is_static:
            total += math.prod(v.type.shape)
    return total


def _fits(node: Node, results) -> bool:
    """Every result is an array that agrees with the output's declared type, and not too big."""
    total = 0
    for v, r in zip(node.outputs, results):
        if v is None:
            continue
        if not isinstance(r, np.ndarray) or r.dtype.kind == "V":
            return False
        try:
            dt = dtypes.from_numpy(r.dtype)
        except KilnError:
            return False
        t = v.type
        if isinstance(t, TensorType):
            if t.dtype is not None and t.dtype != dt:
                return False
            if t.shape is not None and (len(t.shape) != r.ndim or any(
                    isinstance(d, int) and d != n for d, n in zip(t.shape, r.shape))):
                return False
        elif not isinstance(t, UnknownType):
            return False                       # a sequence or optional type: not a constant
        total += r.size
    return total <= MAX_FOLDED_ELEMENTS or node.op in SAME_SIZE_OPS

