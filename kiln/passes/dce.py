"""Dead code elimination."""
from __future__ import annotations

from ..ir.graph import Graph
from .manager import graph_pass
from .rewrite import node_reads


@graph_pass("dce")
def dce(graph: Graph) -> Graph:
    """Remove nodes whose outputs nobody uses and unused constants (mutates the graph, returns it).

    A value is used when a later node reads it (directly or from inside a subgraph) or when it is a
    graph output. Feedable constants (`param`) stay: callers may feed them by name. Subgraphs are
    cleaned first, so what they no longer read can go from the graphs around them.
    """
    _dce(graph)
    return graph


def _dce(g: Graph):
    for node in g.nodes:
        for sub in node.subgraphs():
            _dce(sub)
    live = set(g.outputs)
    kept = []
    for node in reversed(g.nodes):
        if any(v is not None and v in live for v in node.outputs):
            kept.append(node)
            live |= node_reads(node)
    g.nodes = kept[::-1]
    g.constants = [c for c in g.constants if c.feedable or c in live]
