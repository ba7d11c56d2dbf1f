"""Value types: tensors with (possibly symbolic) shapes, sequences and optionals.

A dim is an int, a symbol (a str such as "N" or "batch"), or None (unknown, printed `?`).
A tensor's shape is a tuple of dims, or None when even the rank is unknown (printed `*`).

Text forms:  f32[N,3,224,224]   i64[]   f32[*]   seq<f16[?,4]>   opt<seq<i64[3]>>   ?
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from . import dtypes
from .dtypes import DType

Dim = Union[int, str, None]
Shape = Union[tuple, None]


@dataclass(frozen=True)
class TensorType:
    dtype: DType | None          # None: element type unknown
    shape: Shape = None          # None: rank unknown

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, None if shape is None else tuple(shape))

    def with_dtype(self, dtype) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        dt = "?" if self.dtype is None else self.dtype.name
        if self.shape is None:
            return f"{dt}[*]"
        return f"{dt}[{','.join(dim_str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class SequenceType:
    elem: "Type"

    def __str__(self) -> str:
        return f"seq<{self.elem}>"


@dataclass(frozen=True)
class OptionalType:
    elem: "Type"

    def __str__(self) -> str:
        return f"opt<{self.elem}>"


@dataclass(frozen=True)
class UnknownType:
    def __str__(self) -> str:
        return "?"


Type = Union[TensorType, SequenceType, OptionalType, UnknownType]
UNKNOWN = UnknownType()


def dim_str(d: Dim) -> str:
    if d is None:
        return "?"
    if isinstance(d, int):
        return str(d)
    if is_plain_symbol(d):
        return d
    return '"' + d.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_plain_symbol(s: str) -> bool:
    return bool(s) and (s[0].isalpha() or s[0] == "_") and all(c.isalnum() or c == "_" for c in s)


def tensor(dtype: DType | str, shape) -> TensorType:
    if isinstance(dtype, str):
        dtype = dtypes.from_name(dtype)
    return TensorType(dtype, None if shape is None else tuple(shape))
