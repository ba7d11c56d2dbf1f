"""Elementwise ops: unary math, binary arithmetic with numpy broadcasting, comparisons, logic,
bitwise ops, the variadic Max/Min/Sum/Mean, Where, Clip, and the conversions Cast, CastLike and
BitCast.

Narrow floats (f16, bf16, fp8) are computed in f32 and rounded back to their own dtype, so every
op returns the dtype ONNX specifies; integer ops stay in integer arithmetic.
"""
from __future__ import annotations

import math
from functools import reduce

import ml_dtypes
import numpy as np

from ..errors import UnsupportedError
from ..ir import dtypes
from ..ir.graph import Value
from .infer import broadcast, same_as, tensor_of
from .registry import REQUIRED, OpDef


# --- numeric helpers ---------------------------------------------------------------------------
def is_float(dt) -> bool:
    """True for every floating dtype, ml_dtypes' bf16/fp8/fp4 included."""
    dt = np.dtype(dt)
    return dt.kind == "f" or (dt.kind == "V" and dtypes.from_numpy(dt).is_float)


def wide(x: np.ndarray) -> np.ndarray:
    """x in a dtype numpy computes accurately: floats narrower than f32 become f32."""
    x = np.asarray(x)
    if is_float(x.dtype) and x.dtype.itemsize < 4:
        return x.astype(np.float32)
    return x


def like(y, x: np.ndarray) -> np.ndarray:
    """y rounded back to x's dtype."""
    return np.asarray(y).astype(x.dtype, copy=False)


def drop_consumed_inputs(node):
    """Opset 1 nodes carry `consumed_inputs` (an in-place hint): meaningless now."""
    node.attrs.pop("consumed_inputs", None)


# --- unary -------------------------------------------------------------------------------------
def unary(name: str, fn, doc: str = "") -> OpDef:
    """A unary op computed by fn (integers are computed as they are, narrow floats in f32)."""
    def reference(X):
        with np.errstate(all="ignore"):
            return like(fn(wide(X)), X)
    reference.__doc__ = doc or f"{name}(X), elementwise."
    return OpDef(name, ("X",), ("Y",), {}, reference, same_as(0), drop_consumed_inputs)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x):
    return _erf(x.astype(np.float64)) if x.size else x


def is_inf(X, *, detect_negative, detect_positive):
    """IsInf(X): true where X is +inf (detect_positive) or -inf (detect_negative)."""
    x = wide(X)
    pos = np.isposinf(x) if detect_positive else np.zeros(x.shape, bool)
    neg = np.isneginf(x) if detect_negative else np.zeros(x.shape, bool)
    return pos | neg


def is_nan(X):
    """IsNaN(X): true where X is NaN."""
    return np.isnan(wide(X))


def logical_not(X):
    """Not(X): logical negation of a bool tensor."""
    return np.logical_not(X)


def bool_like_input(ctx):
    return [tensor_of(dtypes.boolean, ctx.shape(0))]


UNARY = [
    unary("Abs", np.abs, "Abs(X): absolute value, elementwise."),
    unary("Neg", np.negative, "Neg(X): -X, elementwise."),
    unary("Sign", np.sign, "Sign(X): -1, 0 or 1 by the sign of X (NaN stays NaN)."),
    unary("Ceil", np.ceil),
    unary("Floor", np.floor),
    unary("Round", np.round, "Round(X): nearest integer, halves to even."),
    unary("Reciprocal", lambda x: 1 / x, "Reciprocal(X): 1/X, elementwise."),
    unary("Sqrt", np.sqrt),
    unary("Exp", np.exp),
    unary("Log", np.log),
    unary("Erf", erf, "Erf(X): the Gauss error function, elementwise."),
    unary("Sin", np.sin), unary("Cos", np.cos), unary("Tan", np.tan),
    unary("Asin", np.arcsin), unary("Acos", np.arccos), unary("Atan", np.arctan),
    unary("Sinh", np.sinh), unary("Cosh", np.cosh), unary("Tanh", np.tanh),
    unary("Asinh", np.arcsinh), unary("Acosh", np.arccosh), unary("Atanh", np.arctanh),
    unary("BitwiseNot", np.invert, "BitwiseNot(X): bitwise complement of an integer tensor."),
    OpDef("Not", ("X",), ("Y",), {}, logical_not, same_as(0)),
    OpDef("IsNaN", ("X",), ("Y",), {}, is_nan, bool_like_input),
    OpDef("IsInf", ("X",), ("Y",), dict(detect_negative=1, detect_positive=1), is_inf,
          bool_like_input),
]


# --- legacy broadcasting (opsets 1-6) ------------------------------------------------------------
def _known_rank(v: Value | None):
    if v is None:
        return None
    if v.is_const and isinstance(v.data, np.ndarray):
        return v.data.ndim
    shape = getattr(v.type, "shape", None)
    return None if shape is None else len(shape)


def _infer_producers(v: Value):
    """Infer the types of the nodes v depends on whose output ranks are still unknown, inputs
    before users (the importer infers the whole graph only once it is read)."""
    from ..passes.infer_types import infer_node
    seen, stack = set(), [(v.producer, False)]
    while stack:
        n, ready = stack.pop()
        if ready:
            infer_node(n)
        elif id(n) not in seen:
            seen.add(id(n))
            stack.append((n, True))
            stack += [(i.producer, False) for i in n.inputs
                      if i is not None and i.producer is not None and _known_rank(i) is None]


def rank_at_import(v: Value | None):
    """The rank of v while the model is being imported (None when it cannot be known yet)."""
    rank = _known_rank(v)
    if rank is None and v is not None and v.producer is not None:
        _infer_producers(v)
        rank = _known_rank(v)
    return rank


def dtype_at_import(v: Value | None):
    """The element type of v while the model is being imported (None when unknown)."""
    if v is None:
        return None
    if getattr(v.type, "dtype", None) is None and v.producer is not None:
        _infer_producers(v)
    return getattr(v.type, "dtype", None)


def append_unit_dims(node, v: Value, count: int, rank: int) -> Value:
    """v with `count` trailing dims of size 1: a reshaped constant, or an Unsqueeze node (for a
    computed value, or a parameter the caller may feed)."""
    if v.is_const and not v.feedable and isinstance(v.data, np.ndarray):
        return node.const(v.data.reshape(v.data.shape + (1,) * count), "bcast")
    axes = node.const(np.arange(rank, rank + count, dtype=np.int64), "bcast_axes")
    return node.add_node("Unsqueeze", [v, axes], hint="bcast")


def upgrade_legacy_broadcast(node):
    """Before opset 7, binary ops broadcast only with `broadcast=1`, B aligned with A at `axis`.

    kiln's binary ops broadcast numpy-style (B aligned with A's trailing dims), so B gets as many
    trailing unit dims as the legacy alignment leaves after it; without `axis` the legacy rule is
    already numpy's suffix alignment.
    """
    drop_consumed_inputs(node)
    enabled = node.attrs.pop("broadcast", 0)
    axis = node.attrs.pop("axis", None)
    if not enabled or axis is None or len(node.inputs) < 2:
        return
    a, b = node.inputs[0], node.inputs[1]
    rank_a, rank_b = rank_at_import(a), rank_at_import(b)
    if rank_a is None or rank_b is None:
        raise UnsupportedError(f"{node.describe()}: legacy broadcasting with axis={axis} needs "
                               f"the ranks of both inputs, which are unknown here")
    if axis < 0:
        axis += rank_a
    trailing = rank_a - axis - rank_b
    if trailing > 0:
        node.inputs[1] = append_unit_dims(node, b, trailing, rank_b)


# --- binary ------------------------------------------------------------------------------------
def binary(name: str, fn, out_dtype=None, doc: str = "", attrs=None) -> OpDef:
    """A broadcasting binary op; the result has A's dtype unless out_dtype is given."""
    def reference(A, B, **kw):
        with np.errstate(all="ignore"):
            y = np.asarray(fn(wide(A), wide(B), **kw))
        return y.astype(bool) if out_dtype is not None else like(y, A)
    reference.__doc__ = doc or f"{name}(A, B), elementwise with numpy broadcasting."
    return OpDef(name, ("A", "B"), ("C",), dict(attrs or {}), reference, broadcast(out_dtype),
                 upgrade_legacy_broadcast)


def divide(a, b):
    """Float division, or integer division truncating toward zero (as in C)."""
    if not np.issubdtype(a.dtype, np.integer):
        return a / b
    q = np.floor_divide(a, b)
    inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return q + inexact.astype(q.dtype)


def modulo(a, b, fmod=0):
    """fmod=0: remainder with the sign of the divisor; fmod=1: with the sign of the dividend."""
    return np.fmod(a, b) if fmod else np.mod(a, b)


def power(a, b):
    """A ** B in A's dtype; integer powers stay exact, other mixes go through float64."""
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer) \
            and not np.any(b < 0):
        return np.power(a, b.astype(a.dtype))
    if np.issubdtype(a.dtype, np.integer):
        return np.power(a.astype(np.float64), b.astype(np.float64))
    return np.power(a, b.astype(a.dtype))


def bit_shift(x, s, direction="LEFT"):
    """X shifted by S bits; shifts < 0 or >= the width give only the sign fill (0 or -1)."""
    if direction not in ("LEFT", "RIGHT"):
        raise ValueError(f"direction must be LEFT or RIGHT, not {direction!r}")
    bits = x.dtype.itemsize * 8
    amount = s.astype(np.int64)
    outside = (amount < 0) | (amount >= bits)
    clipped = np.clip(amount, 0, bits - 1).astype(x.dtype)
    if direction == "LEFT":
        shifted, fill = np.left_shift(x, clipped), 0
    else:
        shifted = np.right_shift(x, clipped)
        fill = np.where(x < 0, -1, 0) if np.issubdtype(x.dtype, np.signedinteger) else 0
    return np.where(outside, fill, shifted).astype(x.dtype)


BINARY = [
    binary("Add", np.add),
    binary("Sub", np.subtract),
    binary("Mul", np.multiply),
    binary("Div", divide, doc="Div(A, B): A / B; integers truncate toward zero."),
    binary("Pow", power, doc="Pow(A, B): A ** B, in A's dtype."),
    binary("Mod", modulo, attrs=dict(fmod=0),
           doc="Mod(A, B): remainder; fmod=0 takes the divisor's sign, fmod=1 the dividend's."),
    binary("BitShift", bit_shift, attrs=dict(direction="LEFT"),
           doc="BitShift(X, Y): X shifted LEFT or RIGHT (arithmetic for signed X) by Y bits."),
    binary("BitwiseAnd", np.bitwise_and),
    binary("BitwiseOr", np.bitwise_or),
    binary("BitwiseXor", np.bitwise_xor),
    binary("And", np.logical_and, dtypes.boolean),
    binary("Or", np.logical_or, dtypes.boolean),
    binary("Xor", np.logical_xor, dtypes.boolean),
    binary("Equal", np.equal, dtypes.boolean),
    binary("Greater", np.greater, dtypes.boolean),
    binary("GreaterOrEqual", np.greater_equal, dtypes.boolean),
    binary("Less", np.less, dtypes.boolean),
    binary("LessOrEqual", np.less_equal, dtypes.boolean),
]


# --- variadic ----------------------------------------------------------------------------------
def variadic(name: str, fn, doc: str, mean: bool = False) -> OpDef:
    """An op folding any number of broadcasting inputs with the binary fn."""
    def reference(*inputs):
        with np.errstate(all="ignore"):
            y = reduce(fn, [wide(x) for x in inputs])
            if mean:
                y = y / len(inputs)
        return like(y, inputs[0])
    reference.__doc__ = doc
    return OpDef(name, ("X", "others*"), ("Y",), {}, reference, broadcast(), drop_consumed_inputs)


VARIADIC = [
    variadic("Max", np.maximum, "Max(inputs...): elementwise maximum, NaN propagates."),
    variadic("Min", np.minimum, "Min(inputs...): elementwise minimum, NaN propagates."),
    variadic("Sum", np.add, "Sum(inputs...): elementwise sum."),
    variadic("Mean", np.add, "Mean(inputs...): elementwise mean.", mean=True),
]


# --- Where, Clip -------------------------------------------------------------------------------
def where(C, X, Y):
    """Where(C, X, Y): X where C is true, else Y (broadcasting all three)."""
    return np.where(C, X, Y).astype(X.dtype, copy=False)


def clip(X, lo=None, hi=None):
    """Clip(X, min?, max?): X limited to [min, max]; where min > max everything becomes max."""
    y = wide(X)
    if lo is not None:
        y = np.maximum(y, np.asarray(lo).astype(y.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi).astype(y.dtype))
    return like(y, X)


def upgrade_clip(node):
    """Before opset 11 the bounds were float attributes; now they are inputs of X's dtype."""
    drop_consumed_inputs(node)
    dtype = dtype_at_import(node.inputs[0]) if node.inputs else None
    np_dtype = dtype.numpy if dtype is not None else np.float32
    node.move_attr_to_input("min", 1, np_dtype)
    node.move_attr_to_input("max", 2, np_dtype)


OTHER = [
    OpDef("Where", ("C", "X", "Y"), ("Z",), {}, where, broadcast(first=1)),
    OpDef("Clip", ("X", "min?", "max?"), ("Y",), {}, clip, same_as(0), upgrade_clip),
]

# --- Cast, CastLike, BitCast -------------------------------------------------------------------
FLOAT8 = {"f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz"}
SMALL_INTS = {"i4", "u4", "i2", "u2"}
E8M0_MAX_EXPONENT = 254              # biased exponents 0..254 are values, 255 is NaN


def _parse_int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        return int(float(s))


def strings_to_numbers(x: np.ndarray, target) -> np.ndarray:
    """Parse strings ('3', '1e-5', 'INF', '-inf', 'NaN') into float64, or int64/uint64."""
    items = [str(s).strip() for s in x.ravel()]
    if target.is_float or target is dtypes.boolean:
        return np.array([float(s) for s in items], np.float64).reshape(x.shape)
    carrier = np.uint64 if target.name == "u64" else np.int64
    return np.array([_parse_int(s) for s in items], carrier).reshape(x.shape)


def _number_to_string(v) -> str:
    if isinstance(v, np.floating):
        if np.isnan(v):
            return "NaN"
        if np.isinf(v):
            return "INF" if v > 0 else "-INF"
    return str(v)


def numbers_to_strings(x: np.ndarray) -> np.ndarray:
    """Plain decimal text of each element (shortest round-trip form of floats)."""
    x = wide(x)
    out = np.empty(x.shape, dtype=object)
    out.ravel()[:] = [_number_to_string(v) for v in x.ravel()]
    return out


def to_float8(x: np.ndarray, target, saturate: int) -> np.ndarray:
    """Round to nearest even; out-of-range values clamp to +-max when saturating, else become
    inf/NaN as the format allows."""
    if saturate:
        limit = float(ml_dtypes.finfo(target.numpy).max)
        x = np.clip(x, -limit, limit)
    return x.astype(target.numpy)


def to_e8m0(x: np.ndarray, saturate: int, round_mode: str) -> np.ndarray:
    """float8e8m0 (a bare power of two): round the exponent `up`, `down` or to `nearest`."""
    if round_mode not in ("up", "down", "nearest"):
        raise ValueError(f"round_mode must be up, down or nearest, not {round_mode!r}")
    x = np.abs(x.astype(np.float64))
    mantissa, exponent = np.frexp(x)            # x = mantissa * 2**exponent, mantissa in [0.5, 1)
    biased = exponent.astype(np.int64) - 1 + 127
    if round_mode == "up":
        biased += mantissa > 0.5
    elif round_mode == "nearest":
        biased += mantissa >= 0.75
    bad = np.isnan(x)
    if saturate:
        biased = np.where(np.isinf(x), E8M0_MAX_EXPONENT, biased)
        biased = np.where(x == 0, 0, biased)
        biased = np.clip(biased, 0, E8M0_MAX_EXPONENT)
    else:
        bad |= np.isinf(x) | (x == 0) | (biased < 0) | (biased > E8M0_MAX_EXPONENT)
    bits = np.where(bad, 255, np.clip(biased, 0, 255)).astype(np.uint8)
    return bits.view(dtypes.BY_NAME["f8e8m0"].numpy)


def cast_array(x: np.ndarray, target, saturate: int = 1, round_mode: str = "up") -> np.ndarray:
    """x converted to the kiln dtype `target` with ONNX Cast semantics."""
    x = np.asarray(x)
    if target is dtypes.string:
        return numbers_to_strings(x) if x.dtype != object else x.copy()
    if x.dtype == object or x.dtype.kind in "US":
        x = strings_to_numbers(x, target)
    x = wide(x)
    with np.errstate(all="ignore"):
        if target.name == "f8e8m0":
            return to_e8m0(x, saturate, round_mode)
        if target.name in FLOAT8:
            return to_float8(x, target, saturate)
        if target.name in SMALL_INTS:           # wrap around like the other integer casts
            return x.astype(np.int64).astype(target.numpy)
        return x.astype(target.numpy)


def cast(X, *, to, saturate, round_mode):
    """Cast(X): X converted to the element type `to` (an ONNX TensorProto data type)."""
    return cast_array(X, dtypes.from_onnx(to), saturate, round_mode)


def cast_like(X, target_type, *, saturate, round_mode):
    """CastLike(X, target_type): X converted to the element type of target_type."""
    return cast_array(X, dtypes.from_numpy(target_type.dtype), saturate, round_mode)


def _view_small(x: np.ndarray, src, target) -> np.ndarray:
    """Bit-reinterpret sub-byte types (stored one per byte): keep the low bits, re-extend."""
    raw = np.array(x, order="C").view(np.uint8) & ((1 << src.bits) - 1)
    if target.is_float:
        return raw.view(target.numpy)
    if target.is_signed:
        sign = (raw >> (src.bits - 1)).astype(np.int8)
        return (raw.astype(np.int8) - (sign << src.bits)).astype(target.numpy)
    return raw.astype(target.numpy)


def bit_cast(X, *, to):
    """BitCast(X): the bits of X reinterpreted as type `to` of the same width."""
    src, target = dtypes.from_numpy(X.dtype), dtypes.from_onnx(to)
    if src.bits != target.bits or target is dtypes.string or src is dtypes.string:
        raise ValueError(f"cannot bit-cast {src} to {target}: widths {src.bits} and {target.bits}")
    if src.bits < 8:
        return _view_small(X, src, target)
    return np.array(X, order="C").view(target.numpy)


def infer_to(ctx):
    return [tensor_of(dtypes.from_onnx(ctx.attrs["to"]), ctx.shape(0))]


def infer_cast_like(ctx):
    return [tensor_of(ctx.dtype(1), ctx.shape(0))]


def upgrade_cast(node):
    """Opset 1 named the target type by string ("FLOAT"); later opsets by TensorProto id."""
    to = node.attrs.get("to")
    if isinstance(to, str):
        from onnx import TensorProto
        node.attrs["to"] = int(TensorProto.DataType.Value(to.upper()))


CASTS = [
    OpDef("Cast", ("X",), ("Y",), dict(to=REQUIRED, saturate=1, round_mode="up"), cast,
          infer_to, upgrade_cast),
    OpDef("CastLike", ("X", "target_type"), ("Y",), dict(saturate=1, round_mode="up"), cast_like,
          infer_cast_like),
    OpDef("BitCast", ("X",), ("Y",), dict(to=REQUIRED), bit_cast, infer_to),
]

OPS = UNARY + BINARY + VARIADIC + OTHER + CASTS
