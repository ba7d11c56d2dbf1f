"""Per input signature: the concrete shape of every value, the runtime dims, and the arena layout.

Shapes come from each op's `infer` with the input shapes bound; values that depend only on
shapes and constants (Shape -> Gather -> Concat -> Reshape chains) are evaluated with the reference
implementations so ops that read a shape from a tensor get it. When some shape depends on the data
itself (NonZero, or a Reshape whose target is a model input), there is no static plan: the runtime
then steps node by node and learns shapes as values appear.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import KilnError
from ..ir.types import TensorType
from ..ops import REGISTRY
from ..ops.infer import InferContext

ALIGN = 64
SMALL = 4096          # plan-time evaluation only for values up to this many elements


class NoStaticPlan(Exception):
    """Some shape depends on the data, not only on the input shapes."""


def concrete(t) -> tuple | None:
    if isinstance(t, TensorType) and t.shape is not None and all(isinstance(d, int) for d in t.shape):
        return tuple(t.shape)
    return None


def infer_concrete(node, in_types, in_values, registry=REGISTRY):
    d = registry.get(node.op)
    attrs = d.resolve_attrs(node.attrs, node.describe())
    ctx = InferContext(node, d, in_types, attrs, in_values)
    return d.infer(ctx)


def bind_shape(t: TensorType, symbols: dict) -> TensorType:
    if t.shape is None:
        return t
    return TensorType(t.dtype, tuple(symbols.get(x, x) if isinstance(x, str) else x for x in t.shape))


def eval_shapes(graph, input_shapes: dict, known_values: dict | None = None, registry=REGISTRY):
    """{Value: shape} for every tensor value, given the input shapes. Raises NoStaticPlan."""
    from .interpreter import Interpreter
    symbols: dict = {}
    for v in graph.inputs:
        if isinstance(v.type, TensorType) and v.type.shape is not None and v in input_shapes:
            for d, n in zip(v.type.shape, input_shapes[v]):
                if isinstance(d, str):
                    symbols[d] = n
    types: dict = {}
    values: dict = dict(known_values or {})
    for v in graph.inputs:
        if v in input_shapes:
            types[v] = TensorType(getattr(v.type, "dtype", None), tuple(input_shapes[v]))
        else:
            types[v] = v.type
    for c in graph.constants:
        types[c] = c.type
        if isinstance(c.data, np.ndarray):
            values[c] = c.data
    interp = Interpreter(registry)
    for node in graph.nodes:
        in_types = [None if v is None else types.get(v, v.type) for v in node.inputs]
        in_vals = [None if v is None else values.get(v) for v in node.inputs]
        if node.op in ("Shape", "Size") and concrete(in_types[0]) is not None and in_vals[0] is None:
            # only the shape matters: a zero-strided stand-in of that shape, no memory
            in_vals[0] = np.broadcast_to(np.zeros((), np.float32), concrete(in_types[0]))
        if all(v is None or x is not None for v, x in zip(node.inputs, in_vals)) and \
                all(x is None or _small(x) for x in in_vals):
            env = _MiniEnv({v: x for v, x in zip(node.inputs, in_vals) if v is not None})
            try:
                interp.run_node(node, env)
                for v in node.outputs:
                    if v is not None and isinstance(env.get(v), np.ndarray):
                        values[v] = env[v]
                        types[v] = TensorType(v.type.dtype if isinstance(v.type, TensorType) else None,
                                              env[v].shape)
                if all(v is None or v in types for v in node.outputs):
                    continue
            except KilnError:
                pass
        try:
            outs = infer_concrete(node, in_types, in_vals, registry)
        except KilnError:
            raise
        except Exception as e:
            raise NoStaticPlan(f"{node.describe()}: {e}") from None
        for v, t in zip(node.outputs, list(outs) + [None] * len(node.outputs)):
            if v is None:
                continue
            t = bind_shape(t, symbols) if isinstance(t, TensorType) else t
            if isinstance(v.type, TensorType) and concrete(t) is None:
                declared = bind_shape(v.type, symbols)
                if concrete(declared) is not None and (not isinstance(t, TensorType) or t.shape is None
                                                       or len(t.shape) == len(declared.shape)):
                    t = declared
            types[v] = t
    return types, values


def _small(x) -> bool:
    return isinstance(x, np.ndarray) and (x.size <= SMALL or x.strides == (0,) * x.ndim) \
        and x.dtype != object


class _MiniEnv(dict):
    def __missing__(self, key):
        raise KilnError(f"value %{key.name} is not known at plan time")


@dataclass
class Plan:
    dims: np.ndarray           # int64 slot values
    shapes: dict               # Value -> tuple
    offsets: dict              # Value -> arena offset (bytes), for arena-resident values
    arena_bytes: int


def plan_arena(order: list, sizes: dict, lifetimes: dict) -> tuple[dict, int]:
    """Lifetime-based packing: values whose lifetimes overlap get disjoint byte ranges.
    order: values in definition order; lifetimes: value -> (first step, last step)."""
    placed: list = []        # (offset, size, start, end)
    offsets = {}
    top = 0
    for v in sorted(order, key=lambda v: -sizes[v]):
        size = (sizes[v] + ALIGN - 1) // ALIGN * ALIGN or ALIGN
        s, e = lifetimes[v]
        busy = sorted((o, o + sz) for o, sz, a, b in placed if not (b < s or e < a))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        placed.append((off, size, s, e))
        offsets[v] = off
        top = max(top, off + size)
    return offsets, top


def bind_dims(v, dexprs, shape, dims: np.ndarray) -> None:
    """Fill the runtime-dim slots of value v from its concrete shape; compile-time dims must match."""
    from ..lower.loopir import Const
    if len(shape) != len(dexprs):
        raise KilnError(f"%{v.name}: rank {len(shape)} at run time, {len(dexprs)} when compiled")
    for k, (e, n) in enumerate(zip(dexprs, shape)):
        if isinstance(e, Const):
            if e.value != n:
                raise KilnError(f"%{v.name}: dim {k} is {n} at run time but was compiled as {e.value}")
        else:
            dims[e.slot] = n


def static_plan(program, input_shapes: dict) -> Plan:
    """Shapes, runtime dims and arena offsets for one input signature; NoStaticPlan when some
    shape depends on the data. The arena holds node outputs that are not graph outputs."""
    g = program.graph
    types, _ = eval_shapes(g, input_shapes)
    shapes = {v: concrete(t) for v, t in types.items() if concrete(t) is not None}
    dims = np.zeros(max(program.n_slots, 1), np.int64)
    for v, dexprs in program.value_slots.items():
        if v not in shapes:
            raise NoStaticPlan(f"shape of %{v.name} depends on the data")
        bind_dims(v, dexprs, shapes[v], dims)
    outputs = set(g.outputs)
    first, last_use = g.use_spans()          # a value a subgraph reads lives until its node runs
    for v in outputs:
        last_use[v] = len(g.nodes)
    # a view (program.views: a reshape between intermediates) shares its root's bytes, which
    # live until the last use of the root or any view of it
    # an in-place output (program.inplace) takes over its input's bytes the same way
    views = {**getattr(program, "views", {}), **getattr(program, "inplace", {})}

    def root(v):
        while v in views:
            v = views[v]
        return v
    for v in views:
        r = root(v)
        last_use[r] = max(last_use.get(r, first.get(r, 0)), last_use.get(v, first[v]))
    arena_vals = [v for v in first if v not in outputs and v in program.buffers and v in shapes
                  and v not in views]
    sizes = {v: int(np.prod(shapes[v], dtype=np.int64)) * v.type.dtype.numpy.itemsize
             for v in arena_vals}
    life = {v: (first[v], last_use.get(v, first[v])) for v in arena_vals}
    offsets, total = plan_arena(arena_vals, sizes, life)
    for v in views:
        if root(v) in offsets:
            offsets[v] = offsets[root(v)]
    return Plan(dims, shapes, offsets, total)


def allocate_outputs(node, prog, env: dict, dims: np.ndarray) -> None:
    """No static plan: arrays for the node's outputs, shaped from its inputs' arrays (env), with
    the runtime dims of inputs and outputs bound in `dims` (stepwise runs, kiln compare)."""
    in_types = [None if v is None else TensorType(v.type.dtype, env[v].shape) for v in node.inputs]
    in_vals = [None if v is None else env[v] for v in node.inputs]
    for v in node.inputs:
        if v is not None and v in prog.value_slots:
            bind_dims(v, prog.value_slots[v], env[v].shape, dims)
    for v, t in zip(node.outputs, infer_concrete(node, in_types, in_vals)):
        if v is None:
            continue
        shape = concrete(t)
        if shape is None:
            raise KilnError(f"{node.describe()}: cannot tell the output shape of %{v.name}")
        bind_dims(v, prog.value_slots[v], shape, dims)
        env[v] = np.empty(shape, v.type.dtype.numpy)
