"""Local algebraic simplification: a table of small rewrites run to a fixed point.

Each rule looks at one node and returns
- a Value: the node's (first) output always equals that value; every use moves to it and the node
  goes (`forward` refuses when the output is a graph output: outputs keep their names);
- True: it rewrote the node in place (its outputs stay the same Values);
- None: it does not apply.
Nodes the rewrites leave unused (the inner Transpose of a pair, say) are left for "dce".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import KilnError
from ..ir import dtypes
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from .effects import const_data, dropout_in_training
from .manager import graph_pass
from .rewrite import Names, Subst, input_at, used_values

MAX_SWEEPS = 50


@dataclass
class Ctx:
    graph: Graph            # the graph being swept (new constants go here)
    names: Names            # fresh names, unique over the whole model
    used: set               # values used when the sweep began (a superset of those used now)
    outputs: set            # the graph's outputs
    before: list            # new nodes a rule adds: they go right before the node it looks at
    users: dict | None = None   # value -> number of uses when the sweep began


Rule = Callable[[Node, Ctx], "Value | bool | None"]


@graph_pass("simplify")
def simplify(graph: Graph) -> Graph:
    """Apply the local rewrites of RULES until none applies (mutates the graph, returns it):
    identities, inference Dropout, x+0 / x*1, no-op and round-trip Casts, Transpose pairs,
    Reshape pairs, reshapes to the input's own shape, Squeeze/Unsqueeze/Flatten/Reshape
    chains folded into one Reshape, Pow by 1/2/3 as multiplies, and a Gemm between a flattening
    and an unflattening Reshape as MatMul + bias."""
    _simplify(graph, Names(graph))
    return graph


def _simplify(g: Graph, names: Names):
    for _ in range(MAX_SWEEPS):
        if not _sweep(g, names):
            return


def _sweep(g: Graph, names: Names) -> bool:
    ctx = Ctx(g, names, used_values(g), set(g.outputs), [], _use_counts(g))
    subst, kept, changed = Subst(), [], False
    for node in g.nodes:
        subst.apply(node)
        for sub in node.subgraphs():
            _simplify(sub, names)
        result = None
        for rule in RULES.get(node.op, ()):
            result = rule(node, ctx)
            if result is not None:
                break
        kept += ctx.before
        ctx.before.clear()
        if isinstance(result, Value):
            subst.redirect(node.outputs[0], result)
            changed = True
            continue
        changed = changed or bool(result)
        kept.append(node)
    g.nodes = kept
    return changed


# --- helpers ---------------------------------------------------------------------------------
def _use_counts(g: Graph) -> dict:
    """value -> how many node inputs (and graph outputs) of `g` read it, when the sweep began."""
    n: dict = {}
    for node in g.nodes:
        for v in node.inputs:
            if v is not None:
                n[v] = n.get(v, 0) + 1
    for v in g.outputs:
        n[v] = n.get(v, 0) + 1
    return n


def new_node(ctx: Ctx, op: str, inputs: list, like: Value, type=None, attrs=None) -> Value:
    """Add `op(inputs)` before the node being rewritten; its output (named after `like`)."""
    out = Value(ctx.names.fresh(f"{like.name}_{op.lower()}"), type if type is not None else like.type)
    ctx.before.append(Node(op, inputs, [out], attrs or {}))
    return out


def forward(node: Node, ctx: Ctx, v: Value | None):
    """`v` as the node's replacement, unless the node computes a graph output."""
    if v is None or node.outputs[0] in ctx.outputs:
        return None
    return v


def producer(v: Value | None, *ops: str) -> Node | None:
    if v is None or v.producer is None or v.producer.op not in ops:
        return None
    return v.producer


def tensor_type(v: Value | None) -> TensorType | None:
    """The value's type when it is a tensor of known dtype and shape with no unknown dims."""
    t = None if v is None else v.type
    if isinstance(t, TensorType) and t.dtype is not None and t.shape is not None \
            and all(d is not None for d in t.shape):
        return t
    return None


# --- identities ------------------------------------------------------------------------------
def identity(node, ctx):
    """Identity(x) -> x."""
    return forward(node, ctx, node.inputs[0])


def dropout_at_inference(node, ctx):
    """Dropout(x) -> x when not training (no training_mode, or a constant false) and the mask is
    unused."""
    mask = node.outputs[1] if len(node.outputs) > 1 else None
    if dropout_in_training(node) or (mask is not None and mask in ctx.used):
        return None
    return forward(node, ctx, node.inputs[0])


def _neutral(c: Value | None, x: Value | None, out: Value, fill) -> bool:
    """`c` is a constant filled with `fill` whose broadcast leaves `x` as it is (and the output's
    type is x's)."""
    data, tx = const_data(c), tensor_type(x)
    if data is None or tx is None or tensor_type(out) != tx or data.dtype != tx.dtype.numpy:
        return False
    if data.ndim > len(tx.shape) or not np.all(data == fill):
        return False
    return all(n == 1 or n == d for n, d in zip(data.shape[::-1], tx.shape[::-1]))


def add_zero(node, ctx):
    """Add(x, 0) and Add(0, x) and Sub(x, 0) -> x (when the zeros do not broadcast x)."""
    a, b = node.inputs
    pairs = [(a, b), (b, a)] if node.op == "Add" else [(a, b)]
    for x, c in pairs:
        if _neutral(c, x, node.outputs[0], 0):
            return forward(node, ctx, x)
    return None


def mul_one(node, ctx):
    """Mul(x, 1) and Mul(1, x) and Div(x, 1) -> x (when the ones do not broadcast x)."""
    a, b = node.inputs
    pairs = [(a, b), (b, a)] if node.op == "Mul" else [(a, b)]
    for x, c in pairs:
        if _neutral(c, x, node.outputs[0], 1):
            return forward(node, ctx, x)
    return None


# --- casts -----------------------------------------------------------------------------------
def _cast_target(node):
    try:
        return dtypes.from_onnx(node.attrs["to"])
    except (KeyError, KilnError):
        return None


def _dtype(v: Value | None):
    t = None if v is None else v.type
    return t.dtype if isinstance(t, TensorType) else None


def cast_noop(node, ctx):
    """Cast(x) to x's own dtype -> x."""
    dt = _dtype(node.inputs[0])
    if dt is not None and dt == _cast_target(node):
        return forward(node, ctx, node.inputs[0])
    return None


_FLOAT_WIDENING = {"f16": {"f32", "f64"}, "bf16": {"f32", "f64"}, "f32": {"f64"}}
_MANTISSA = {"f16": 11, "bf16": 8, "f32": 24, "f64": 53}
_INTS = {"i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"}


def exact_widening(a, b) -> bool:
    """Every value of dtype `a` is exactly representable in dtype `b` (so b -> a gives it back)."""
    a, b = a.name, b.name
    if a == "bool":
        return b in _INTS or b in _MANTISSA
    if a in _FLOAT_WIDENING:
        return b in _FLOAT_WIDENING[a]
    if a not in _INTS:
        return False
    bits, signed = int(a[1:]), a[0] == "i"
    if b in _INTS:
        b_bits, b_signed = int(b[1:]), b[0] == "i"
        if b_signed and not signed:
            return b_bits > bits
        return signed == b_signed and b_bits >= bits
    if b in _MANTISSA:
        return _MANTISSA[b] >= (bits - 1 if signed else bits)
    return False


def cast_round_trip(node, ctx):
    """Cast(Cast(x) to a wider dtype) back to x's dtype -> x (exact widening only)."""
    inner = producer(node.inputs[0], "Cast")
    if inner is None:
        return None
    x = inner.inputs[0]
    dx, mid = _dtype(x), _cast_target(inner)
    if dx is None or mid is None or _cast_target(node) != dx or not exact_widening(dx, mid):
        return None
    return forward(node, ctx, x)


# --- transposes and reshapes -----------------------------------------------------------------
def _perm(node: Node, rank: int | None):
    p = node.attrs.get("perm")
    if p is None:
        return None if rank is None else list(range(rank))[::-1]
    return [int(i) for i in p]


def transpose_pair(node, ctx):
    """Transpose(Transpose(x, p1), p2) -> Transpose(x, p1∘p2), or x when that is the identity."""
    inner = producer(node.inputs[0], "Transpose")
    if inner is None:
        return None
    x = inner.inputs[0]
    rank = None
    if isinstance(x.type, TensorType) and x.type.shape is not None:
        rank = len(x.type.shape)
    for n in (inner, node):
        if rank is None and n.attrs.get("perm") is not None:
            rank = len(n.attrs["perm"])
    p1, p2 = _perm(inner, rank), _perm(node, rank)
    if p1 is None or p2 is None or len(p1) != len(p2):
        return None
    composed = [p1[i] for i in p2]
    if composed == list(range(len(composed))) and node.outputs[0] not in ctx.outputs:
        return x
    node.inputs = [x]
    node.attrs["perm"] = composed
    return True


def reshape_pair(node, ctx):
    """Reshape(Reshape(x), s) -> Reshape(x, s) when s is a constant without 0 entries (0 would copy
    a dim of the inner result) or allowzero is set."""
    inner = producer(node.inputs[0], "Reshape")
    if inner is None:
        return None
    shape = const_data(node.inputs[1])
    if not node.attrs.get("allowzero", 0) and (shape is None or np.any(shape == 0)):
        return None
    node.inputs = [inner.inputs[0], node.inputs[1]]
    return True


SHAPE_OPS = ("Squeeze", "Unsqueeze", "Flatten", "Reshape")


def _constant_target(node: Node) -> bool:
    if node.op == "Flatten":
        return True
    target = input_at(node, 1)
    if target is None:
        return node.op == "Squeeze"
    return const_data(target) is not None


def reshape_target(x: Value, y: Value):
    """A Reshape target (allowzero 0) taking x's shape to y's, from their types, or None: int dims
    as they are; a symbolic dim as 0 (copy) where x has the same symbol at the same place, or as
    -1 when it is the only symbolic dim (the rest being ints, -1 is never ambiguous)."""
    tx, ty = x.type, y.type
    if not (isinstance(tx, TensorType) and isinstance(ty, TensorType)) \
            or tx.shape is None or ty.shape is None:
        return None
    symbolic = [d for d in ty.shape if not isinstance(d, int)]
    out = []
    for i, d in enumerate(ty.shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif len(symbolic) == 1 and isinstance(d, str):
            out.append(-1)
        elif isinstance(d, str) and i < len(tx.shape) and tx.shape[i] == d:
            out.append(0)
        else:
            return None
    return out


def shape_noop(node, ctx):
    """Squeeze/Unsqueeze/Flatten/Reshape whose result has its input's type -> its input."""
    t = tensor_type(node.outputs[0])
    if t is not None and t == tensor_type(node.inputs[0]):
        return forward(node, ctx, node.inputs[0])
    return None


def shape_chain(node, ctx):
    """Two of Squeeze/Unsqueeze/Flatten/Reshape in a row, with constant targets -> one Reshape."""
    inner = producer(node.inputs[0], *SHAPE_OPS)
    if inner is None or not (_constant_target(inner) and _constant_target(node)):
        return None
    x = inner.inputs[0]
    target = reshape_target(x, node.outputs[0])
    if target is None:
        return None
    shape = ctx.graph.add_const(ctx.names.fresh(f"{node.outputs[0].name}_shape"),
                                np.array(target, dtype=np.int64))
    node.op, node.inputs, node.attrs = "Reshape", [x, shape], {}
    return True


# --- arithmetic ------------------------------------------------------------------------------
def pow_small_int(node, ctx):
    """Pow(x, 1) -> x, Pow(x, 2) -> x*x, Pow(x, 3) -> x*x*x, for float x and a scalar exponent that
    does not broadcast x (GPT-2's GELU cubes; a multiply vectorizes, powf does not)."""
    x, e = node.inputs[0], node.inputs[1]
    c = const_data(e)
    tx, ty = tensor_type(x), tensor_type(node.outputs[0])
    if c is None or c.size != 1 or tx is None or tx != ty or tx.dtype.name not in ("f32", "f64", "f16", "bf16"):
        return None
    k = float(c.reshape(-1)[0])
    if k == 1:
        return forward(node, ctx, x)
    if k not in (2, 3):
        return None
    if k == 3:
        x2 = new_node(ctx, "Mul", [x, x], node.outputs[0])
        node.op, node.inputs, node.attrs = "Mul", [x2, x], {}
    else:
        node.op, node.inputs, node.attrs = "Mul", [x, x], {}
    return True


def gemm_between_reshapes(node, ctx):
    """Reshape(Gemm(Reshape(h, [-1, K]), W, b), h.shape[:-1] + [N]) -> MatMul(h, W) + b: the
    flattening (as torch's Linear on 3-D inputs exports, GPT-2's Conv1D) goes, so the product
    takes the epilogue that follows it (bias, activation) in one kernel."""
    g = producer(node.inputs[0], "Gemm")
    if g is None or ctx.users.get(g.outputs[0], 0) != 1 or g.outputs[0] in ctx.outputs:
        return None
    a = producer(g.inputs[0], "Reshape", "Flatten")
    if a is None:
        return None
    h, w = a.inputs[0], g.inputs[1]
    b = g.inputs[2] if len(g.inputs) > 2 else None
    at = g.attrs
    if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or (b is not None and at.get("beta", 1.0) != 1.0):
        return None
    th, tw, ty = h.type, w.type, node.outputs[0].type
    if not (isinstance(th, TensorType) and isinstance(tw, TensorType) and isinstance(ty, TensorType)) \
            or th.shape is None or tw.shape is None or ty.shape is None or len(th.shape) < 2 \
            or len(tw.shape) != 2 or th.dtype != ty.dtype:
        return None
    k, n = (tw.shape[1], tw.shape[0]) if at.get("transB", 0) else tw.shape
    if th.shape[-1] != k or not isinstance(k, int) or list(ty.shape) != list(th.shape[:-1]) + [n] \
            or None in ty.shape:
        return None
    if b is not None:
        tb = b.type
        if not isinstance(tb, TensorType) or tb.shape is None or len(tb.shape) > 1:
            return None
    if at.get("transB", 0):
        w = new_node(ctx, "Transpose", [w], node.outputs[0], TensorType(tw.dtype, (k, n)))
    if b is None:
        node.op, node.inputs, node.attrs = "MatMul", [h, w], {}
        return True
    m = new_node(ctx, "MatMul", [h, w], node.outputs[0])
    node.op, node.inputs, node.attrs = "Add", [m, b], {}
    return True


RULES: dict[str, list[Rule]] = {
    "Identity": [identity],
    "Dropout": [dropout_at_inference],
    "Add": [add_zero],
    "Sub": [add_zero],
    "Mul": [mul_one],
    "Div": [mul_one],
    "Cast": [cast_noop, cast_round_trip],
    "Transpose": [transpose_pair],
    "Reshape": [shape_noop, gemm_between_reshapes, reshape_pair, shape_chain],
    "Pow": [pow_small_int],
    "Squeeze": [shape_noop, shape_chain],
    "Unsqueeze": [shape_noop, shape_chain],
    "Flatten": [shape_noop, shape_chain],
}
