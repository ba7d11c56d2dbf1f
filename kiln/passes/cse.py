"""Common subexpression elimination."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from .effects import is_pure
from .manager import graph_pass
from .rewrite import Subst


@graph_pass("cse")
def cse(graph: Graph) -> Graph:
    """Merge nodes that compute the same values (mutates the graph, returns it).

    Two nodes match when they have the same op, the same inputs (the same Value objects), equal
    attributes (arrays by value) and the same outputs present. The first stays; uses of the later
    one's outputs move to the first's, and it goes. Impure ops and nodes with subgraphs never merge;
    a node computing a graph output stays (outputs keep their names). A node inside a subgraph may
    merge with an earlier one of the graphs around it.
    """
    _cse(graph, {}, Subst())
    return graph


def _cse(g: Graph, seen: dict, subst: Subst):
    outputs = set(g.outputs)
    kept = []
    for node in g.nodes:
        subst.apply(node)
        subs = list(node.subgraphs())
        for sub in subs:
            _cse(sub, dict(seen), subst)
        if subs or not is_pure(node):
            kept.append(node)
            continue
        key = node_key(node)
        first = seen.get(key)
        if first is None or any(v in outputs for v in node.outputs if v is not None):
            seen.setdefault(key, node)
            kept.append(node)
            continue
        for old, new in zip(node.outputs, first.outputs):
            if old is not None:
                subst.redirect(old, new)
    g.nodes = kept


def node_key(node: Node):
    return (node.op, tuple(id(v) if v is not None else None for v in node.inputs),
            tuple(v is None for v in node.outputs),
            tuple(sorted((k, attr_key(a)) for k, a in node.attrs.items())))


def attr_key(a):
    """A hashable stand-in for an attribute value: equal keys mean equal attributes."""
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return ("array", a.shape, tuple(a.reshape(-1).tolist()))
        return ("array", str(a.dtype), a.shape, a.tobytes())
    if isinstance(a, list):
        return ("list", tuple(attr_key(x) for x in a))
    if isinstance(a, float):
        return ("float", repr(a))          # nan equals nan; 0.0 and -0.0 differ
    try:
        hash(a)
    except TypeError:
        return ("object", id(a))           # an attribute we cannot compare: never equal
    return (type(a).__name__, a)
