"""The reference interpreter (target "interpret"): runs a graph node by node with each op's numpy
reference. It is the oracle the compiled code is checked against, and what constant folding uses.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KilnError, OpError
from ..ir.graph import Graph, MissingData, Node, Value
from ..ops import REGISTRY


class Subgraph:
    """A subgraph attribute as an op's reference sees it: call it with the subgraph's inputs."""

    def __init__(self, interp: "Interpreter", graph: Graph, env: dict):
        self.interp, self.graph, self.env = interp, graph, env

    @property
    def n_inputs(self) -> int:
        return len(self.graph.inputs)

    @property
    def n_outputs(self) -> int:
        return len(self.graph.outputs)

    def __call__(self, *args) -> list:
        if len(args) != len(self.graph.inputs):
            raise OpError(f"subgraph {self.graph.name!r} takes {len(self.graph.inputs)} inputs, "
                          f"got {len(args)}")
        return self.interp.run(self.graph, dict(zip(self.graph.inputs, args)), self.env)


class Interpreter:
    def __init__(self, registry=REGISTRY):
        self.registry = registry

    def run(self, graph: Graph, feeds: dict[Value, Any], outer: dict | None = None) -> list:
        env = _Env(outer)
        for c in graph.constants:
            if c not in feeds:
                if isinstance(c.data, MissingData):
                    raise KilnError(f"constant %{c.name} has no data (IR text referenced "
                                    f"@{c.data.ref}; pass weights= to parse_ir)")
                env[c] = c.data
        for v, x in feeds.items():
            env[v] = x
        for node in graph.nodes:
            self.run_node(node, env)
        return [env[v] for v in graph.outputs]

    def run_node(self, node: Node, env: "_Env"):
        d = self.registry.get(node.op)
        attrs = d.resolve_attrs(node.attrs, node.describe())
        kw = {k: self._attr_value(v, env) for k, v in attrs.items()}
        if d.wants_n_outputs:
            kw["n_outputs"] = len(node.outputs)
        args = [None if v is None else env[v] for v in node.inputs]
        if not d.variadic_inputs and len(args) < len(d.inputs):
            args += [None] * (len(d.inputs) - len(args))    # trailing optional inputs left out
        try:
            result = d.reference(*args, **kw)
        except KilnError:
            raise
        except Exception as e:
            raise OpError(f"{node.describe()}: {type(e).__name__}: {e}") from e
        if d.max_outputs() == 1:
            result = (result,)
        elif not isinstance(result, (tuple, list)):
            result = (result,)
        for v, r in zip(node.outputs, result):
            if v is not None:
                env[v] = _normalize(r)
        missing = [v.name for v in node.outputs[len(result):] if v is not None]
        if missing:
            raise OpError(f"{node.describe()}: reference returned {len(result)} outputs; "
                          f"{', '.join(missing)} not produced")

    def _attr_value(self, a, env):
        if isinstance(a, Graph):
            return Subgraph(self, a, env)
        if isinstance(a, list) and a and isinstance(a[0], Graph):
            return [Subgraph(self, g, env) for g in a]
        return a


def _normalize(r):
    if isinstance(r, (np.generic, int, float, bool)) :
        return np.asarray(r)
    return r


class _Env(dict):
    """Values by identity; looks outward into enclosing graphs' environments."""

    def __init__(self, outer):
        super().__init__()
        self.outer = outer

    def __missing__(self, key):
        if self.outer is not None:
            return self.outer[key]
        raise KilnError(f"value %{key.name} is used before it is computed")
