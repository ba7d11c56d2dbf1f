"""Graph -> text. The parser (parser.py) reads exactly this form back.

    graph main(%x: f32[N,4]) {
      %w: f32[4,4] = const @w                  # large constant: a reference, data kept aside
      %b: f32[4] = const [0.5, 0.5, 0.5, 0.5]  # small constant: inline, row-major
      %y: f32[N,4] = Gemm(%x, %w, %b) {transB=1} loc("fc1")
      return %y
    }
"""
from __future__ import annotations

import math

import numpy as np

from .graph import Graph, MissingData, Node, Value
from .types import TensorType, is_plain_symbol

INLINE_LIMIT = 16      # constants with more elements print as references
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")


def quote(s: str) -> str:
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def name_str(name: str) -> str:
    """A value name as written after `%` or `@`: bare when it is simple, else quoted."""
    if name and all(c in _NAME_CHARS for c in name) and not name[0] == "-":
        return name
    return quote(name)


def scalar_str(x, dtype=None) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (str, bytes)):
        return quote(x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    f = float(x)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    # shortest text that reads back to the same value: f64 needs repr, the rest fit in f32
    if isinstance(x, np.float64) or float(np.float32(f)) != f:
        s = repr(f)
    else:
        s = str(np.float32(f))
    if "e" not in s and "." not in s and "n" not in s:
        s += ".0"
    return s


def array_items(a: np.ndarray) -> str:
    flat = a.reshape(-1)
    if str(flat.dtype) in _ML_FLOATS or flat.dtype == np.float16:
        flat = flat.astype(np.float32)
    return "[" + ", ".join(scalar_str(x) for x in flat) + "]"


_ML_FLOATS = {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
              "float4_e2m1fn", "float8_e8m0fnu", "float6_e2m3fn", "float6_e3m2fn"}


def can_inline(a) -> bool:
    return (isinstance(a, np.ndarray) and a.size <= INLINE_LIMIT and a.dtype.kind != "c"
            and str(a.dtype) not in ("int4", "uint4", "int2", "uint2"))


class Printer:
    def __init__(self):
        self.lines: list[str] = []

    def graph(self, g: Graph, indent: str = "") -> str:
        params = ", ".join(f"%{name_str(v.name)}: {v.type}" for v in g.inputs)
        gname = g.name if is_plain_symbol(g.name) else quote(g.name)
        lines = [f"graph {gname}({params}) {{"]
        inner = indent + "  "
        for c in g.constants:
            kw = "param" if c.feedable else "const"
            data = f"@{name_str(c.name)}" if not can_inline(c.data) else array_items(c.data)
            lines.append(f"{inner}%{name_str(c.name)}: {c.type} = {kw} {data}")
        for n in g.nodes:
            lines.append(inner + self.node(n, inner))
        lines.append(f"{inner}return " + ", ".join(f"%{name_str(v.name)}" for v in g.outputs))
        lines.append(indent + "}")
        return "\n".join(lines)

    def node(self, n: Node, indent: str) -> str:
        outs = ", ".join("_" if v is None else f"%{name_str(v.name)}: {v.type}" for v in n.outputs)
        ins = ", ".join("_" if v is None else f"%{name_str(v.name)}" for v in n.inputs)
        text = f"{outs} = {n.op}({ins})"
        if n.attrs:
            parts = [f"{k}={self.attr(v, indent)}" for k, v in sorted(n.attrs.items())]
            text += " {" + ", ".join(parts) + "}"
        if n.name:
            text += f" loc({quote(n.name)})"
        return text

    def attr(self, v, indent: str) -> str:
        if isinstance(v, Graph):
            return self.graph(v, indent + "  ")
        if isinstance(v, np.ndarray):
            t = f"tensor<{TensorType(_dtype_of(v), v.shape)}>"
            return t + (array_items(v) if can_inline(v) else f" @{name_str(_attr_ref(v))}")
        if isinstance(v, MissingData):
            raise AssertionError("attribute tensors print from their TensorAttr wrapper")
        if isinstance(v, TensorAttrRef):
            return f"tensor<{v.type}> @{name_str(v.ref)}"
        if isinstance(v, list):
            return "[" + ", ".join(self.attr(x, indent) for x in v) + "]"
        if hasattr(v, "__dataclass_fields__"):    # a Type
            return f"type<{v}>"
        return scalar_str(v)


class TensorAttrRef:
    """A large tensor attribute read from text by reference (`tensor<f32[100]> @ref`)."""

    def __init__(self, type, ref):
        self.type, self.ref = type, ref


def _dtype_of(a: np.ndarray):
    from . import dtypes
    return dtypes.from_numpy(a.dtype)


def _attr_ref(a: np.ndarray) -> str:
    import hashlib
    return "tensor_" + hashlib.sha1(a.tobytes()).hexdigest()[:12]


def print_graph(g: Graph) -> str:
    return Printer().graph(g)


def value_ref(v: Value) -> str:
    return f"%{name_str(v.name)}"
