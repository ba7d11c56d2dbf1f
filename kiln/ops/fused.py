"""Fused: a group of nodes the fusion pass (kiln/passes/fuse.py) made into one kernel.

The group lives in the `body` subgraph (its inputs are the group's inputs, its output the group's
result); `kind` says how it lowers: "elementwise" (a chain of elementwise ops, one loop nest) or
"epilogue" (an anchor op such as Conv/MatMul whose result goes through an elementwise chain before it
is stored). Its reference runs the body, so the interpreter and the oracle need nothing new.
"""
from __future__ import annotations

from .registry import REQUIRED, op


def infer_fused(ctx):
    """Infer through the body with the node's own input types (concrete shapes in, concrete out)."""
    from . import REGISTRY
    from .infer import InferContext
    body = ctx.attrs["body"]
    types = dict(zip(body.inputs, ctx.inputs))
    consts = {v: ctx.const(i) for i, v in enumerate(body.inputs)}
    for node in body.nodes:
        d = REGISTRY.get(node.op)
        in_types = [None if v is None else types.get(v, v.type) for v in node.inputs]
        in_consts = [None if v is None else consts.get(v) for v in node.inputs]
        sub = InferContext(node, d, in_types, d.resolve_attrs(node.attrs, node.describe()), in_consts)
        for v, t in zip(node.outputs, d.infer(sub)):
            if v is not None:
                types[v] = t
    return [types.get(v, v.type) for v in body.outputs]


@op("Fused", inputs=["inputs*"], outputs=["outputs*"], attrs=dict(body=REQUIRED, kind="elementwise"),
    infer=infer_fused)
def fused(*inputs, body, kind):
    """A fused group of nodes (see kiln/passes/fuse.py): runs its body subgraph."""
    outs = body(*inputs)
    return tuple(outs)
