"""The graph IR: SSA values, nodes with attributes, graphs with constants and subgraphs.

- A `Value` is defined exactly once: as a graph input, as a constant (it then holds `data`), or as
  an output of one node. Nodes refer to Values directly; names exist for printing and debugging.
- A `Node` applies an op from kiln's op set (`kiln.ops`) to inputs; a missing optional input or an
  unused optional output is `None`. Attributes are plain data: int, float, str, numpy array, Type,
  Graph (a subgraph, e.g. an If branch or a Loop body), or lists of those.
- A `Graph` lists its inputs, constants, nodes (in a valid execution order) and outputs. A
  subgraph may read values of the graphs around it (ONNX's outer-scope references).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from .types import Type, UNKNOWN


class MissingData:
    """Stands in for a constant's data when IR text referenced it (`@w`) and none was supplied."""

    def __init__(self, ref: str):
        self.ref = ref

    def __repr__(self) -> str:
        return f"MissingData({self.ref!r})"


class Value:
    __slots__ = ("name", "type", "producer", "data", "feedable")

    def __init__(self, name: str, type: Type = UNKNOWN, data=None, feedable: bool = False):
        self.name = name
        self.type = type
        self.producer: Node | None = None
        self.data = data            # np.ndarray (or MissingData) for constants, else None
        self.feedable = feedable    # a constant the caller may override by feeding its name

    @property
    def is_const(self) -> bool:
        return self.data is not None

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Node:
    __slots__ = ("op", "inputs", "outputs", "attrs", "name")

    def __init__(self, op: str, inputs: Iterable[Value | None], outputs: Iterable[Value | None],
                 attrs: dict[str, Any] | None = None, name: str = ""):
        self.op = op
        self.inputs: list[Value | None] = list(inputs)
        self.outputs: list[Value | None] = list(outputs)
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.name = name
        for v in self.outputs:
            if v is not None:
                v.producer = self

    def subgraphs(self) -> Iterator["Graph"]:
        for a in self.attrs.values():
            if isinstance(a, Graph):
                yield a
            elif isinstance(a, list):
                yield from (g for g in a if isinstance(g, Graph))

    def describe(self) -> str:
        """`Conv 'conv1'` — how errors name a node."""
        return f"{self.op} {self.name!r}" if self.name else self.op

    def __repr__(self) -> str:
        return f"<Node {self.describe()}>"


class Graph:
    def __init__(self, name: str = "main", inputs=(), outputs=(), nodes=(), constants=()):
        self.name = name
        self.inputs: list[Value] = list(inputs)
        self.outputs: list[Value] = list(outputs)
        self.nodes: list[Node] = list(nodes)
        self.constants: list[Value] = list(constants)
        self.meta: dict[str, Any] = {}   # model-level facts (source file, opsets); not printed

    # --- building --------------------------------------------------------------------------
    def add_const(self, name: str, data, type: Type | None = None, feedable: bool = False) -> Value:
        from .types import TensorType
        from . import dtypes
        if type is None:
            data = np.asarray(data)
            type = TensorType(dtypes.from_numpy(data.dtype), data.shape)
        v = Value(name, type, data=data, feedable=feedable)
        self.constants.append(v)
        return v

    def add_node(self, op: str, inputs, n_outputs: int = 1, attrs=None, name: str = "",
                 output_names=None, types=None) -> Node:
        names = output_names or [self.fresh_name(f"{name or op}_out{i}") for i in range(n_outputs)]
        outs = [Value(nm, (types[i] if types else UNKNOWN)) for i, nm in enumerate(names)]
        node = Node(op, inputs, outs, attrs, name)
        self.nodes.append(node)
        return node

    def fresh_name(self, base: str) -> str:
        """A value name not used in this graph or its subgraphs (a subgraph's caller must make
        sure enclosing graphs do not use it either)."""
        taken = {v.name for v in self.all_values()}
        name, i = base, 1
        while name in taken:
            name = f"{base}_{i}"
            i += 1
        return name

    # --- reading ---------------------------------------------------------------------------
    def values(self) -> Iterator[Value]:
        """Every value defined in this graph (not in its subgraphs)."""
        yield from self.inputs
        yield from self.constants
        for n in self.nodes:
            yield from (v for v in n.outputs if v is not None)

    def all_values(self) -> Iterator[Value]:
        """Every value defined in this graph and in all subgraphs, recursively."""
        yield from self.values()
        for n in self.nodes:
            for g in n.subgraphs():
                yield from g.all_values()

    def all_nodes(self) -> Iterator[tuple["Graph", Node]]:
        for n in self.nodes:
            yield self, n
            for g in n.subgraphs():
                yield from g.all_nodes()

    def use_spans(self) -> tuple[dict, dict]:
        """(value -> index of the node defining it, value -> index of the last node reading it) over
        this graph's nodes; a read inside a node's subgraphs counts as a read by that node."""
        first: dict = {}
        last: dict = {}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if v is not None:
                    last[v] = i
            for g in n.subgraphs():
                for _, inner in g.all_nodes():
                    for v in inner.inputs:
                        if v is not None:
                            last[v] = i
            for v in n.outputs:
                if v is not None:
                    first.setdefault(v, i)
        return first, last

    def users(self) -> dict[Value, list[Node]]:
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    out.setdefault(v, []).append(n)
        return out

    def weights(self) -> dict[str, np.ndarray]:
        """Data of every constant (here and in subgraphs), keyed by the reference the text uses."""
        out = {}
        for v in self.all_values():
            if isinstance(v.data, np.ndarray):
                out[v.name] = v.data
        return out

    def clone(self) -> "Graph":
        """An independent copy (through the text form; constants share their arrays)."""
        from .parser import parse_ir
        g = parse_ir(str(self), self.weights())
        g.meta = dict(self.meta)
        return g

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        return (f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, "
                f"{len(self.constants)} constants, {len(self.outputs)} outputs>")
