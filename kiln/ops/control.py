"""Control flow: If, Loop and Scan. Their bodies are subgraph attributes.

A subgraph reaches a reference as a `Subgraph` (call it with the body's inputs to get the list of
its outputs); type inference reads the body `Graph` in `ctx.attrs` and derives the outputs' types
from the body's output types. Loop-carried values and scan outputs may be tensors; If outputs may
also be sequences or optionals.
"""
from __future__ import annotations

import numpy as np

from ..errors import OpError, UnsupportedError
from ..ir.graph import Graph, Node, Value
from ..ir.types import UNKNOWN, OptionalType, SequenceType, TensorType, UnknownType
from .registry import REQUIRED, OpDef


# --- type helpers (shared with sequence.py) ------------------------------------------------
def join_dims(a, b):
    """The dim that covers both a and b: equal dims stay, different ones become unknown."""
    return a if a == b else None


def join_types(a, b):
    """A type covering values of type a and of type b (e.g. the two branches of an If).
    An unknown side gives the other side; a tensor shape keeps only the dims both agree on.
    Different kinds (an optional carried into a loop whose body makes a sequence) give b."""
    if a is None or isinstance(a, UnknownType):
        return b if b is not None else UNKNOWN
    if b is None or isinstance(b, UnknownType):
        return a
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        dtype = a.dtype if a.dtype is not None else b.dtype
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(dtype, None)
        return TensorType(dtype, tuple(join_dims(x, y) for x, y in zip(a.shape, b.shape)))
    if isinstance(a, SequenceType) and isinstance(b, SequenceType):
        return SequenceType(join_types(a.elem, b.elem))
    if isinstance(a, OptionalType) and isinstance(b, OptionalType):
        return OptionalType(join_types(a.elem, b.elem))
    return b


def with_leading_dim(t, dim):
    """Tensor type t with a new axis of size `dim` in front (a stacked scan output)."""
    return insert_dim(t, 0, dim)


def insert_dim(t, axis: int, dim):
    """Tensor type t with a new axis of size `dim` at `axis` (negative counts from the end of
    the result's rank)."""
    if not isinstance(t, TensorType):
        return TensorType(None, None)
    if t.shape is None:
        return t
    rank = len(t.shape) + 1
    axis = axis + rank if axis < 0 else axis
    shape = list(t.shape)
    shape.insert(axis, dim)
    return TensorType(t.dtype, tuple(shape))


def drop_dim(t, axis: int):
    """Tensor type t without `axis` (the element a scan iterates over)."""
    if not isinstance(t, TensorType) or t.shape is None:
        return t if isinstance(t, TensorType) else TensorType(None, None)
    axis = axis + len(t.shape) if axis < 0 else axis
    return TensorType(t.dtype, t.shape[:axis] + t.shape[axis + 1:])


def output_types(body: Graph) -> list:
    return [v.type for v in body.outputs]


def truth(cond) -> bool:
    """The boolean a condition tensor (a scalar or one element) holds."""
    a = np.asarray(cond)
    if a.size != 1:
        raise OpError(f"a condition must hold one element, got shape {a.shape}")
    return bool(a.reshape(-1)[0])


def stack(items: list, axis: int, like) -> np.ndarray:
    """Stack per-iteration values along a new axis; an empty list gives an empty tensor of the
    body output's type `like` (when its shape is known)."""
    if items:
        return np.stack(items, axis=axis)
    dtype = like.dtype.numpy if isinstance(like, TensorType) and like.dtype is not None else np.float32
    if isinstance(like, TensorType) and like.is_static:
        shape = list(like.shape)
        shape.insert(axis + len(shape) + 1 if axis < 0 else axis, 0)
        return np.zeros(shape, dtype)
    return np.zeros((0,), dtype)


# --- If --------------------------------------------------------------------------------------
def infer_if(ctx):
    then_types = output_types(ctx.attrs["then_branch"])
    else_types = output_types(ctx.attrs["else_branch"])
    if len(then_types) != len(else_types):
        ctx.fail(f"then_branch has {len(then_types)} outputs, else_branch {len(else_types)}")
    return [join_types(a, b) for a, b in zip(then_types, else_types)]


def if_(cond, *, then_branch, else_branch):
    """Run then_branch when cond is true, else else_branch; the outputs are the branch's outputs."""
    branch = then_branch if truth(cond) else else_branch
    return tuple(branch())


If = OpDef("If", ("cond",), ("outputs*",), dict(then_branch=REQUIRED, else_branch=REQUIRED),
           if_, infer_if)


# --- Loop ------------------------------------------------------------------------------------
def infer_loop(ctx):
    body_types = output_types(ctx.attrs["body"])
    initial = ctx.inputs[2:]
    n_carried = len(initial)
    if len(body_types) < 1 + n_carried:
        ctx.fail(f"the body has {len(body_types)} outputs; it needs the condition and "
                 f"{n_carried} loop-carried values")
    carried = [join_types(t0, t) for t0, t in zip(initial, body_types[1:1 + n_carried])]
    scans = [with_leading_dim(t, None) for t in body_types[1 + n_carried:]]
    return (carried + scans)[: ctx.n_outputs]


def loop(M=None, cond=None, *v_initial, body):
    """A loop: run body(i, cond, carried...) while i < M (if given) and cond (if given); the
    outputs are the final carried values, then each scan output stacked along a new axis 0."""
    n_carried = len(v_initial)
    n_scans = body.n_outputs - 1 - n_carried
    if n_scans < 0:
        raise OpError(f"Loop body has {body.n_outputs} outputs; it needs the condition and "
                      f"{n_carried} loop-carried values")
    trip_count = None if M is None else int(np.asarray(M).reshape(-1)[0])
    keep_going = True if cond is None else truth(cond)
    carried = list(v_initial)
    scans: list[list] = [[] for _ in range(n_scans)]
    i = 0
    while keep_going and (trip_count is None or i < trip_count):
        outs = body(np.array(i, np.int64), np.array(keep_going), *carried)
        if cond is not None:        # without a cond input the body's condition is ignored
            keep_going = truth(outs[0])
        carried = list(outs[1:1 + n_carried])
        for k, acc in enumerate(scans):
            acc.append(outs[1 + n_carried + k])
        i += 1
    like = output_types(body.graph)[1 + n_carried:]
    return tuple(carried + [stack(acc, 0, t) for acc, t in zip(scans, like)])


Loop = OpDef("Loop", ("M?", "cond?", "v_initial*"), ("v_final_and_scan_outputs*",),
             dict(body=REQUIRED), loop, infer_loop)


# --- Scan ------------------------------------------------------------------------------------
def _per_input(values, n: int, default: int, what: str) -> list[int]:
    if values is None:
        return [default] * n
    if len(values) != n:
        raise OpError(f"Scan: {what} has {len(values)} entries, expected {n}")
    return [int(v) for v in values]


def infer_scan(ctx):
    body, m = ctx.attrs["body"], ctx.attrs["num_scan_inputs"]
    n_state = len(ctx.inputs) - m
    body_types = output_types(body)
    in_axes = _per_input(ctx.attrs["scan_input_axes"], m, 0, "scan_input_axes")
    out_axes = _per_input(ctx.attrs["scan_output_axes"], len(body_types) - n_state, 0,
                          "scan_output_axes")
    seq_len = None
    if m:
        shape, axis = ctx.shape(n_state), in_axes[0]
        if shape is not None and -len(shape) <= axis < len(shape):
            seq_len = shape[axis]
    states = [join_types(t0, t) for t0, t in zip(ctx.inputs[:n_state], body_types[:n_state])]
    scans = [insert_dim(t, axis, seq_len) for t, axis in zip(body_types[n_state:], out_axes)]
    return (states + scans)[: ctx.n_outputs]


def _scan_slices(xs, axes, directions):
    """For each iteration t, the elements of every scan input at t (or at the end for reverse)."""
    lengths = {x.shape[a] for x, a in zip(xs, axes)}
    if len(lengths) > 1:
        raise OpError(f"Scan inputs have different sequence lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    for t in range(n):
        yield [np.take(x, n - 1 - t if d else t, axis=a) for x, a, d in zip(xs, axes, directions)]


def scan(*inputs, body, num_scan_inputs, scan_input_axes, scan_input_directions,
         scan_output_axes, scan_output_directions):
    """Scan: iterate body(states..., elements...) over axis slices of the scan inputs; the
    outputs are the final states, then the scan outputs stacked along their axes."""
    m = num_scan_inputs
    n_state = len(inputs) - m
    n_out = body.n_outputs - n_state
    xs = inputs[n_state:]
    in_axes = [a + x.ndim if a < 0 else a
               for a, x in zip(_per_input(scan_input_axes, m, 0, "scan_input_axes"), xs)]
    in_dirs = _per_input(scan_input_directions, m, 0, "scan_input_directions")
    out_axes = _per_input(scan_output_axes, n_out, 0, "scan_output_axes")
    out_dirs = _per_input(scan_output_directions, n_out, 0, "scan_output_directions")
    states = list(inputs[:n_state])
    scans: list[list] = [[] for _ in range(n_out)]
    for elements in _scan_slices(xs, in_axes, in_dirs):
        outs = body(*states, *elements)
        states = list(outs[:n_state])
        for k, acc in enumerate(scans):
            acc.append(outs[n_state + k])
    like = output_types(body.graph)[n_state:]
    results = []
    for acc, axis, reverse, t in zip(scans, out_axes, out_dirs, like):
        results.append(stack(acc[::-1] if reverse else acc, axis, t))
    return tuple(states + results)


def upgrade_scan(node):
    """Opset 8 Scan had a batch axis 0 (scanning axis 1), a leading `sequence_lens` input and
    `directions`. It becomes a Scan over the batch whose body is an opset-9 Scan over time."""
    if node.opset >= 9:
        return
    if node.inputs and node.inputs[0] is not None:
        raise UnsupportedError(f"{node.describe()}: opset-8 Scan with sequence_lens is not supported")
    inputs = node.inputs[1:]
    body = node.attrs.pop("body")
    directions = node.attrs.pop("directions", None)
    m = node.attrs["num_scan_inputs"]
    inner_attrs = dict(body=body, num_scan_inputs=m)
    if directions is not None:
        inner_attrs["scan_input_directions"] = list(directions)
    per_batch = Graph(node.fresh(f"{node.name or 'scan'}_batch"))
    per_batch.inputs = [Value(node.fresh(f"{v.name}_b"), drop_dim(v.type, 0)) for v in inputs]
    outs = [Value(node.fresh(f"{v.name}_b")) for v in body.outputs]
    per_batch.nodes.append(Node("Scan", per_batch.inputs, outs, inner_attrs, node.name))
    per_batch.outputs = outs
    node.inputs[:] = inputs
    node.attrs.update(body=per_batch, num_scan_inputs=len(inputs))


Scan = OpDef("Scan", ("initial_state_and_scan_inputs*",), ("final_state_and_scan_outputs*",),
             dict(body=REQUIRED, num_scan_inputs=REQUIRED, scan_input_axes=None,
                  scan_input_directions=None, scan_output_axes=None, scan_output_directions=None),
             scan, infer_scan, upgrade_scan)


OPS = [If, Loop, Scan]
