"""The graph verifier: the invariants every pass must keep.

- SSA: every value is defined once (input, constant or node output) and used only after its
  definition, in its own graph or a graph nested inside it.
- Every node's op exists; its input/output counts fit the op's signature; its attributes are ones the
  op knows, with the required ones present.
- Every constant's data matches its declared type; graph outputs are defined.
"""
from __future__ import annotations

import numpy as np

from ..errors import KilnError, VerifyError
from .graph import Graph, MissingData
from .types import TensorType


def verify(graph: Graph, registry=None) -> Graph:
    """Raise VerifyError listing every broken invariant; return the graph when it is sound."""
    if registry is None:
        from ..ops import REGISTRY as registry
    problems: list[str] = []
    _verify(graph, registry, set(), set(), problems, graph.name)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise VerifyError(f"graph {graph.name!r} is not valid:\n  {shown}{more}")
    return graph


def _verify(g: Graph, registry, visible: set, defined_anywhere: set, problems: list, path: str):
    visible = set(visible)

    def define(v, what):
        if id(v) in defined_anywhere:
            problems.append(f"{path}: %{v.name} ({what}) is defined more than once")
        defined_anywhere.add(id(v))
        visible.add(id(v))

    for v in g.inputs:
        define(v, "input")
    for c in g.constants:
        define(c, "constant")
        if c.data is None:
            problems.append(f"{path}: constant %{c.name} has no data")
        elif isinstance(c.data, np.ndarray) and isinstance(c.type, TensorType):
            t = c.type
            if t.shape is not None and tuple(c.data.shape) != tuple(t.shape):
                problems.append(f"{path}: constant %{c.name} has shape {c.data.shape}, type says {t}")
            if t.dtype is not None and c.data.dtype != t.dtype.numpy and not (
                    t.dtype.name == "str" and c.data.dtype == object):
                problems.append(f"{path}: constant %{c.name} has dtype {c.data.dtype}, type says {t}")
        elif not isinstance(c.data, (np.ndarray, MissingData)):
            problems.append(f"{path}: constant %{c.name} holds a {type(c.data).__name__}")
    for node in g.nodes:
        where = f"{path}: node {node.describe()}"
        for i, v in enumerate(node.inputs):
            if v is not None and id(v) not in visible:
                problems.append(f"{where}: input {i} %{v.name} is not defined before use")
        try:
            d = registry.get(node.op)
            d.check_arity(len(node.inputs), len(node.outputs), where)
            d.resolve_attrs(node.attrs, where)
        except KilnError as e:
            problems.append(str(e))
        for sub in node.subgraphs():
            _verify(sub, registry, visible, defined_anywhere, problems, f"{path}/{sub.name}")
        for v in node.outputs:
            if v is not None:
                if v.producer is not node:
                    problems.append(f"{where}: output %{v.name} does not point back to its node")
                define(v, f"output of {node.describe()}")
    for v in g.outputs:
        if id(v) not in visible:
            problems.append(f"{path}: graph output %{v.name} is not defined")
