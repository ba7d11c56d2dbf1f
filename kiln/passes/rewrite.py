"""Helpers the rewriting passes share: who uses a value, and redirecting uses.

A subgraph (If branch, Loop/Scan body) may read values of the graphs around it. For a graph `g`,
a node of `g` *uses* a value when it reads it as an input or when one of its subgraphs reads it
(at any depth): that node must stay after the value's definition, and the value must stay alive.

Rewrites redirect uses through a `Subst` (old value -> new value), applied to every node input and
to the outputs of nested subgraphs. A graph's own outputs are never redirected: they are the
graph's interface and keep their names, so a pass leaves the node that computes a graph output.
"""
from __future__ import annotations

from ..ir.graph import Graph, Node, Value


# --- reading ---------------------------------------------------------------------------------
def outer_reads(sub: Graph) -> set[Value]:
    """Values that `sub` (or a graph nested in it) reads but does not define itself."""
    defined: set[Value] = set()
    read: set[Value] = set()

    def walk(g: Graph):
        defined.update(g.values())
        for n in g.nodes:
            read.update(v for v in n.inputs if v is not None)
            for s in n.subgraphs():
                walk(s)
        read.update(g.outputs)

    walk(sub)
    return read - defined


def node_reads(node: Node) -> set[Value]:
    """Every value `node` uses: its inputs and what its subgraphs read from outside."""
    out = {v for v in node.inputs if v is not None}
    for s in node.subgraphs():
        out |= outer_reads(s)
    return out


def users(graph: Graph) -> dict[Value, list[Node]]:
    """Value -> the nodes of `graph` that use it (as an input or from inside a subgraph),
    in graph order."""
    out: dict[Value, list[Node]] = {}
    for n in graph.nodes:
        for v in node_reads(n):
            out.setdefault(v, []).append(n)
    return out


def input_at(node: Node, i: int) -> Value | None:
    """The node's i-th input, None when it is missing or left out at the end."""
    return node.inputs[i] if len(node.inputs) > i else None


def used_values(graph: Graph) -> set[Value]:
    """Values some node of `graph` uses, plus the graph's outputs."""
    return set(users(graph)) | set(graph.outputs)


def drop_constants(graph: Graph, replaced: set) -> None:
    """Remove from graph.constants those of `replaced` (weights a pass re-laid out) that nothing
    uses any more."""
    if replaced:
        live = used_values(graph)
        graph.constants = [c for c in graph.constants if c not in replaced or c in live]


# --- redirecting -----------------------------------------------------------------------------
class Subst:
    """Pending redirections old -> new, applied while a pass walks nodes in order.

    Chains resolve (a -> b and b -> c send a to c). `apply(node)` rewrites the node's inputs and,
    recursively, every node input and output inside its subgraphs.
    """

    def __init__(self):
        self.map: dict[Value, Value] = {}

    def __bool__(self) -> bool:
        return bool(self.map)

    def redirect(self, old: Value, new: Value):
        self.map[old] = self[new]

    def __getitem__(self, v):
        seen = 0
        while v in self.map:
            v = self.map[v]
            seen += 1
            if seen > len(self.map):
                raise AssertionError("cyclic value substitution")
        return v

    def apply(self, node: Node):
        if not self.map:
            return
        node.inputs = [None if v is None else self[v] for v in node.inputs]
        for s in node.subgraphs():
            self.apply_graph(s, outputs=True)

    def apply_graph(self, g: Graph, outputs: bool = False):
        """Every node of `g` (and its subgraphs); `g`'s own outputs too when `outputs`."""
        if not self.map:
            return
        for n in g.nodes:
            self.apply(n)
        if outputs:
            g.outputs = [self[v] for v in g.outputs]


def replace_all_uses(graph: Graph, old: Value, new: Value):
    """Make every node of `graph` (and its subgraphs) read `new` where it read `old`.
    `graph`'s own outputs are left alone (see the module docstring)."""
    s = Subst()
    s.redirect(old, new)
    s.apply_graph(graph)


def all_graphs(graph: Graph):
    """`graph` and every graph nested in it, outermost first."""
    yield graph
    for n in graph.nodes:
        for s in n.subgraphs():
            yield from all_graphs(s)


class Names:
    """Fresh value names for one pass over `root`: unique across it and all its subgraphs, so
    the printed text stays unambiguous."""

    def __init__(self, root: Graph):
        self.taken = {v.name for v in root.all_values()}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        return name
