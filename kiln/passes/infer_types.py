"""Type and shape inference over a whole graph (and its subgraphs), using each op's `infer`.

Types the graph already carries (e.g. declared by the ONNX model) fill in what inference leaves
unknown; inference wins where both know something.
"""
from __future__ import annotations

from ..errors import KilnError, OpError
from ..ir.graph import Graph
from ..ir.types import UNKNOWN, OptionalType, SequenceType, TensorType
from ..ops import REGISTRY
from ..ops.infer import InferContext
from .shape_values import propagate, value_of


def merge_types(ours, declared):
    """Combine an inferred type with a declared one, keeping the more precise part of each."""
    if ours is None or ours is UNKNOWN:
        return declared if declared is not None else UNKNOWN
    if declared is None or declared is UNKNOWN:
        return ours
    if isinstance(ours, TensorType) and isinstance(declared, TensorType):
        dt = ours.dtype if ours.dtype is not None else declared.dtype
        if ours.shape is None:
            shape = declared.shape
        elif declared.shape is None or len(declared.shape) != len(ours.shape):
            shape = ours.shape
        else:
            shape = tuple(a if a is not None else b for a, b in zip(ours.shape, declared.shape))
        return TensorType(dt, shape)
    if isinstance(ours, SequenceType) and isinstance(declared, SequenceType):
        return SequenceType(merge_types(ours.elem, declared.elem))
    if isinstance(ours, OptionalType) and isinstance(declared, OptionalType):
        return OptionalType(merge_types(ours.elem, declared.elem))
    return ours


def infer_node(node, registry=REGISTRY, strict: bool = False, known: dict | None = None):
    """Infer node's output types in place. `known` holds symbolic values of shape tensors
    (shape_values.py); it is read for the node's inputs and updated with its output."""
    d = registry.get(node.op)
    attrs = d.resolve_attrs(node.attrs, node.describe())
    consts = [v.data if v is not None and v.is_const else None for v in node.inputs]
    sym = [value_of(v, known) if known is not None else None for v in node.inputs]
    ctx = InferContext(node, d, [None if v is None else v.type for v in node.inputs], attrs, consts,
                       sym)
    try:
        types = d.infer(ctx)
    except KilnError:
        raise
    except Exception as e:                      # an infer rule tripped on odd input: stay unknown
        if strict:
            raise OpError(f"{node.describe()}: type inference failed: {e}") from e
        types = [UNKNOWN] * len(node.outputs)
    for v, t in zip(node.outputs, list(types) + [UNKNOWN] * len(node.outputs)):
        if v is not None:
            v.type = merge_types(t, v.type)
    if known is not None:
        propagate(node, known, attrs)


def infer_types(graph: Graph, registry=REGISTRY, known: dict | None = None) -> Graph:
    """Infer every node's output types in place (mutates the graph, returns it)."""
    known = {} if known is None else known
    for node in graph.nodes:
        for sub in node.subgraphs():
            infer_types(sub, registry, known)
        infer_node(node, registry, known=known)
    return graph
