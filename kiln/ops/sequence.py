"""Sequences and optionals.

A sequence is a Python list of numpy arrays (references never mutate a list they are given: they
build a new one); an optional holds a value (tensor or sequence) or is empty (None).
"""
from __future__ import annotations

import numpy as np

from ..errors import OpError
from ..ir import dtypes
from ..ir.types import UNKNOWN, OptionalType, SequenceType, TensorType
from .control import insert_dim, join_types, output_types
from .registry import REQUIRED, op


# --- helpers ---------------------------------------------------------------------------------
def elem_type(t):
    """The element type of a sequence (or optional) type; unknown otherwise."""
    if isinstance(t, (SequenceType, OptionalType)):
        return t.elem
    return UNKNOWN


def seq_of_input(i: int = 0):
    """Rule: a sequence whose elements have the type of input i's elements."""
    def rule(ctx):
        return [SequenceType(elem_type(ctx.inputs[i]))]
    return rule


def position(pos, length: int, allow_end: bool) -> int:
    """A sequence position in [-n, n-1] (or [-n, n] where inserting at the end is allowed)."""
    p = int(np.asarray(pos).reshape(-1)[0])
    hi = length if allow_end else length - 1
    if not -length <= p <= hi:
        raise OpError(f"sequence position {p} is out of range for a sequence of length {length}")
    return p + length if p < 0 else p


# --- construction and access -----------------------------------------------------------------
def infer_sequence_empty(ctx):
    return [SequenceType(TensorType(dtypes.from_onnx(ctx.attrs["dtype"]), None))]


@op("SequenceEmpty", inputs=(), outputs=("output",), attrs=dict(dtype=1),
    infer=infer_sequence_empty)
def sequence_empty(*, dtype):
    """An empty sequence of tensors of the given ONNX element type (default float)."""
    return []


def infer_sequence_construct(ctx):
    elem = None
    for t in ctx.inputs:
        elem = t if elem is None else join_types(elem, t)
    return [SequenceType(elem if elem is not None else UNKNOWN)]


@op("SequenceConstruct", inputs=("inputs*",), outputs=("output_sequence",),
    infer=infer_sequence_construct)
def sequence_construct(*inputs):
    """A sequence of the input tensors, in order."""
    return list(inputs)


def infer_sequence_insert(ctx):
    return [SequenceType(join_types(elem_type(ctx.inputs[0]), ctx.inputs[1]))]


@op("SequenceInsert", inputs=("input_sequence", "tensor", "position?"),
    outputs=("output_sequence",), infer=infer_sequence_insert)
def sequence_insert(input_sequence, tensor, pos=None):
    """A new sequence with tensor inserted at position (default: at the end)."""
    out = list(input_sequence)
    if pos is None:
        out.append(tensor)
    else:
        out.insert(position(pos, len(out), allow_end=True), tensor)
    return out


def infer_sequence_at(ctx):
    return [elem_type(ctx.inputs[0])]


@op("SequenceAt", inputs=("input_sequence", "position"), outputs=("tensor",),
    infer=infer_sequence_at)
def sequence_at(input_sequence, pos):
    """The tensor at position in the sequence (negative counts from the back)."""
    return input_sequence[position(pos, len(input_sequence), allow_end=False)]


@op("SequenceErase", inputs=("input_sequence", "position?"), outputs=("output_sequence",),
    infer=seq_of_input(0))
def sequence_erase(input_sequence, pos=None):
    """A new sequence without the tensor at position (default: the last one)."""
    out = list(input_sequence)
    if not out:
        raise OpError("SequenceErase on an empty sequence")
    del out[-1 if pos is None else position(pos, len(out), allow_end=False)]
    return out


def infer_sequence_length(ctx):
    return [TensorType(dtypes.i64, ())]


@op("SequenceLength", inputs=("input_sequence",), outputs=("length",),
    infer=infer_sequence_length)
def sequence_length(input_sequence):
    """The number of tensors in the sequence, as an int64 scalar."""
    return np.array(len(input_sequence), np.int64)


# --- SequenceMap -----------------------------------------------------------------------------
def infer_sequence_map(ctx):
    return [SequenceType(t) for t in output_types(ctx.attrs["body"])][: ctx.n_outputs]


@op("SequenceMap", inputs=("input_sequence", "additional_inputs*"), outputs=("out_sequence*",),
    attrs=dict(body=REQUIRED), infer=infer_sequence_map)
def sequence_map(input_sequence, *additional_inputs, body):
    """Apply body to each element of the sequence (and the same-position element of each extra
    sequence input, or the whole of each extra tensor input); one output sequence per body output."""
    n = len(input_sequence)
    for extra in additional_inputs:
        if isinstance(extra, list) and len(extra) != n:
            raise OpError(f"SequenceMap: sequence inputs have lengths {n} and {len(extra)}")
    outs: list[list] = [[] for _ in range(body.n_outputs)]
    for i in range(n):
        args = [x[i] if isinstance(x, list) else x for x in additional_inputs]
        for acc, y in zip(outs, body(input_sequence[i], *args)):
            acc.append(y)
    return tuple(outs)


# --- split and concat ------------------------------------------------------------------------
def _split_dim(split, length):
    """The size every piece has along the split axis, when it is the same for all pieces."""
    if split is None:
        return None
    sizes = split.reshape(-1)
    if split.ndim == 0:
        step = int(sizes[0])
        return step if isinstance(length, int) and step > 0 and length % step == 0 else None
    if sizes.size and np.all(sizes == sizes[0]):
        return int(sizes[0])
    return None


def infer_split_to_sequence(ctx):
    t = ctx.tensor(0)
    if t.shape is None:
        return [SequenceType(TensorType(t.dtype, None))]
    axis = ctx.attrs["axis"]
    axis = axis + len(t.shape) if axis < 0 else axis
    shape = list(t.shape)
    if ctx.has(1):
        shape[axis] = _split_dim(ctx.const(1), shape[axis])
    elif ctx.attrs["keepdims"]:
        shape[axis] = 1
    else:
        del shape[axis]
    return [SequenceType(TensorType(t.dtype, tuple(shape)))]


def _split_sizes(split, length: int) -> list[int]:
    if split is None:
        return [1] * length
    split = np.asarray(split)
    if split.ndim == 0:
        step = int(split)
        if step <= 0:
            raise OpError(f"SplitToSequence: split must be positive, got {step}")
        return [min(step, length - start) for start in range(0, length, step)]
    sizes = [int(s) for s in split.reshape(-1)]
    if sum(sizes) != length or any(s < 0 for s in sizes):
        raise OpError(f"SplitToSequence: split sizes {sizes} do not sum to the axis length {length}")
    return sizes


@op("SplitToSequence", inputs=("input", "split?"), outputs=("output_sequence",),
    attrs=dict(axis=0, keepdims=1), infer=infer_split_to_sequence)
def split_to_sequence(x, split=None, *, axis, keepdims):
    """Split a tensor along axis into a sequence: by the sizes in a 1-D split, in chunks of a
    scalar split (the last may be shorter), or into single slices (squeezed unless keepdims)."""
    axis = axis + x.ndim if axis < 0 else axis
    offsets = np.cumsum([0] + _split_sizes(split, x.shape[axis]))
    parts = [np.take(x, np.arange(a, b), axis=axis) for a, b in zip(offsets[:-1], offsets[1:])]
    if split is None and not keepdims:
        parts = [np.squeeze(p, axis=axis) for p in parts]
    return parts


def infer_concat_from_sequence(ctx):
    elem = elem_type(ctx.inputs[0])
    if not isinstance(elem, TensorType) or elem.shape is None:
        return [TensorType(elem.dtype if isinstance(elem, TensorType) else None, None)]
    axis = ctx.attrs["axis"]
    if ctx.attrs["new_axis"]:
        return [insert_dim(elem, axis, None)]
    shape = list(elem.shape)
    shape[axis + len(shape) if axis < 0 else axis] = None
    return [TensorType(elem.dtype, tuple(shape))]


@op("ConcatFromSequence", inputs=("input_sequence",), outputs=("concat_result",),
    attrs=dict(axis=REQUIRED, new_axis=0), infer=infer_concat_from_sequence)
def concat_from_sequence(input_sequence, *, axis, new_axis):
    """Concatenate the sequence's tensors along axis, or stack them along a new axis at axis."""
    if not input_sequence:
        raise OpError("ConcatFromSequence of an empty sequence")
    if new_axis:
        return np.stack(input_sequence, axis=axis)
    return np.concatenate(input_sequence, axis=axis)


# --- optionals -------------------------------------------------------------------------------
def infer_optional(ctx):
    if ctx.has(0):
        return [OptionalType(ctx.inputs[0])]
    t = ctx.attrs["type"]
    if t is None:
        ctx.fail("an empty Optional needs its `type` attribute")
    return [OptionalType(t)]


@op("Optional", inputs=("input?",), outputs=("output",), attrs=dict(type=None),
    infer=infer_optional)
def optional(value=None, *, type):
    """An optional holding the input, or an empty optional (of `type`) when there is none."""
    return value


def infer_optional_has_element(ctx):
    return [TensorType(dtypes.boolean, ())]


@op("OptionalHasElement", inputs=("input?",), outputs=("output",),
    infer=infer_optional_has_element)
def optional_has_element(value=None):
    """True when the input is given and is not an empty optional."""
    return np.array(value is not None)


def infer_optional_get_element(ctx):
    t = ctx.inputs[0]
    return [t.elem if isinstance(t, OptionalType) else t]


@op("OptionalGetElement", inputs=("input",), outputs=("output",),
    infer=infer_optional_get_element)
def optional_get_element(value):
    """The value an optional holds (a tensor or sequence input passes through unchanged)."""
    if value is None:
        raise OpError("OptionalGetElement of an empty optional")
    return value
