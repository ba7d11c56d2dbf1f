"""Lowering of Fused groups (fused.py): one kernel per group.

- "elementwise": every body node is elementwise (`scalar`); the chain becomes one loop nest whose body
  computes each intermediate as a local (`Let`) and stores only the group's result.
- "epilogue": the anchor (first body node) is lowered with the group's output buffer as its own
  output, then the elementwise chain is applied to that buffer in place. An anchor lowering that
  knows its tiles (e.g. one conv output plane) runs the chain right after each tile through
  `ctx.epilogue`; otherwise the chain runs as a loop over the whole output after the anchor.
"""
from __future__ import annotations

from types import SimpleNamespace

from ..lower.context import LowerCtx, NotLowerable, TensorRef, same_shape
from ..lower.loopir import Const, Let, Load, Store, Var


def _chain(ctx: LowerCtx, nodes, env: dict, out_ref: TensorRef, flat, idx) -> list:
    """Statements computing `nodes` (elementwise) at one output position; env maps body Values to
    expressions already available there. Ends with the store of the group's result."""
    from . import REGISTRY
    stmts = []
    for node in nodes:
        d = REGISTRY.get(node.op)
        if d.scalar is None:
            raise NotLowerable(f"{node.op} is not elementwise")
        args = [None if v is None else env[v] for v in node.inputs]
        sctx = SimpleNamespace(attrs=d.resolve_attrs(node.attrs, node.describe()), node=node)
        e = d.scalar(sctx, *args)
        name = ctx.fresh("v")
        dt = node.outputs[0].type.dtype.name
        stmts.append(Let(name, e, dt))
        env[node.outputs[0]] = Var(name, dt)
    stmts.append(Store(out_ref.buf, flat, env[nodes[-1].outputs[0]]))
    return stmts


def _input_env(ctx: LowerCtx, body, out_ref: TensorRef, flat, idx, only=None) -> dict:
    """Loads of the body inputs (those in `only`, if given) at one output position."""
    env = {}
    for v, ref in zip(body.inputs, ctx.inputs):
        if ref is None or (only is not None and v not in only):
            continue
        if ref.rank > out_ref.rank:
            raise NotLowerable("a fused input of higher rank than the result")
        if (value := _scalar(ref)) is not None and ref.dtype in ("f32", "f64"):
            env[v] = Const(value, ref.dtype)            # a scalar constant: a literal
        elif same_shape(ref, out_ref):
            env[v] = ref.load(flat)
        elif idx is None:
            raise NotLowerable("broadcast input without a multi-index")
        else:
            env[v] = ref.load(ctx.broadcast_index(ref, out_ref.shape, idx))
    return env


def lower_fused(ctx: LowerCtx):
    body = ctx.attrs["body"]
    out = ctx.outputs[0]
    if len(ctx.outputs) != 1 or len(body.outputs) != 1:
        raise NotLowerable("a fused group with several outputs")
    if ctx.attrs["kind"] == "elementwise":
        def loop_body(idx):
            flat = ctx.index(out, idx)
            env = _input_env(ctx, body, out, flat, idx)
            return _chain(ctx, body.nodes, env, out, flat, idx)
        if all(same_shape(r, out) for r in ctx.inputs if r is not None):
            return ctx.flat_loop(out.numel(), lambda i: _chain(
                ctx, body.nodes, _input_env(ctx, body, out, i, None), out, i, None))
        return ctx.loops(out.shape, loop_body) if out.rank else loop_body([])
    return _lower_epilogue(ctx, body, out)


def _lower_epilogue(ctx: LowerCtx, body, out: TensorRef):
    from . import REGISTRY
    anchors = [n for n in body.nodes if REGISTRY.get(n.op).scalar is None]
    if len(anchors) != 1:
        raise NotLowerable("an epilogue group needs exactly one anchor")
    anchor = anchors[0]
    chain = [n for n in body.nodes if n is not anchor]     # graph order: inputs before users
    d = REGISTRY.get(anchor.op)
    if d.lower is None and d.scalar is None:
        raise NotLowerable(f"{anchor.op} has no lowering")
    pos = {v: k for k, v in enumerate(body.inputs)}
    a_ins = [None if v is None else ctx.inputs[pos[v]] for v in anchor.inputs]
    a_out = TensorRef(out.buf, out.dtype, out.shape)
    actx = LowerCtx(anchor, d, d.resolve_attrs(anchor.attrs, anchor.describe()), a_ins, [a_out],
                    counter=ctx._counter)

    chain_reads = {v for n in chain for v in n.inputs if v is not None}

    def epilogue(flat, idx):
        env = _input_env(ctx, body, out, flat, idx, only=chain_reads)
        env[anchor.outputs[0]] = Load(out.buf, flat, out.dtype)
        return _chain(ctx, chain, env, out, flat, idx)
    actx.epilogue = epilogue
    actx.clamp = _clamp(chain, anchor, body, ctx)
    if d.lower is not None:
        stmts = d.lower(actx)
    else:
        from ..lower.context import lower_elementwise
        stmts = lower_elementwise(actx, d.scalar)
    if actx.epilogue_done:
        return stmts
    # the anchor did not apply the chain per tile: one more loop over the whole output
    if not out.rank:
        return stmts + epilogue(Const(0), [])
    return stmts + ctx.loops(out.shape, lambda idx: epilogue(ctx.index(out, idx), idx))


def _scalar(ref: TensorRef | None) -> float | None:
    """The value of a one-element compile-time constant input, else None."""
    if ref is None or ref.data is None or ref.data.size != 1:
        return None
    return float(ref.data.reshape(-1)[0])


def _clamp(chain, anchor, body, ctx) -> tuple[float, float] | None:
    """(lo, hi) when the chain is one Relu or a Clip with constant (or no) bounds on the anchor's
    result, else None."""
    if len(chain) != 1 or chain[0].inputs[0] is not anchor.outputs[0] or anchor.outputs[0].type.dtype.name != "f32":
        return None
    node = chain[0]
    if node.op == "Relu":
        return 0.0, float("inf")
    if node.op != "Clip":
        return None
    pos = {v: k for k, v in enumerate(body.inputs)}
    bounds = []
    for k, default in ((1, -float("inf")), (2, float("inf"))):
        v = node.inputs[k] if len(node.inputs) > k else None
        if v is None:
            bounds.append(default)
            continue
        value = _scalar(ctx.inputs[pos[v]]) if v in pos else None
        if value is None or value != value:
            return None
        bounds.append(value)
    return bounds[0], bounds[1]


LOWER = {"Fused": lower_fused}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
