"""Element types: one table maps kiln's short names to numpy and to ONNX's TensorProto ids.

bf16, fp8, fp6, fp4 and the 2/4-bit integers come from ml_dtypes.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str            # short name used in IR text: f32, i64, bf16 ...
    onnx_id: int         # onnx.TensorProto.DataType value
    np_type: type | None # numpy scalar type (object for strings)
    bits: int

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"DType({self.name})"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.np_type)

    @property
    def is_float(self) -> bool:
        return self.name.startswith(("f", "bf"))

    @property
    def is_int(self) -> bool:
        return self.name.startswith(("i", "u"))

    @property
    def is_signed(self) -> bool:
        return self.name.startswith("i") or self.is_float

    @property
    def is_complex(self) -> bool:
        return self.name.startswith("c")


_TABLE = [
    # name,    onnx id, numpy type,                  bits
    ("f32", 1, np.float32, 32),
    ("u8", 2, np.uint8, 8),
    ("i8", 3, np.int8, 8),
    ("u16", 4, np.uint16, 16),
    ("i16", 5, np.int16, 16),
    ("i32", 6, np.int32, 32),
    ("i64", 7, np.int64, 64),
    ("str", 8, np.object_, 0),
    ("bool", 9, np.bool_, 8),
    ("f16", 10, np.float16, 16),
    ("f64", 11, np.float64, 64),
    ("u32", 12, np.uint32, 32),
    ("u64", 13, np.uint64, 64),
    ("c64", 14, np.complex64, 64),
    ("c128", 15, np.complex128, 128),
    ("bf16", 16, ml_dtypes.bfloat16, 16),
    ("f8e4m3fn", 17, ml_dtypes.float8_e4m3fn, 8),
    ("f8e4m3fnuz", 18, ml_dtypes.float8_e4m3fnuz, 8),
    ("f8e5m2", 19, ml_dtypes.float8_e5m2, 8),
    ("f8e5m2fnuz", 20, ml_dtypes.float8_e5m2fnuz, 8),
    ("u4", 21, ml_dtypes.uint4, 4),
    ("i4", 22, ml_dtypes.int4, 4),
    ("f4e2m1", 23, ml_dtypes.float4_e2m1fn, 4),
    ("f8e8m0", 24, ml_dtypes.float8_e8m0fnu, 8),
    ("u2", 25, ml_dtypes.uint2, 2),
    ("i2", 26, ml_dtypes.int2, 2),
    ("f6e2m3", 27, ml_dtypes.float6_e2m3fn, 6),
    ("f6e3m2", 28, ml_dtypes.float6_e3m2fn, 6),
]

ALL: tuple[DType, ...] = tuple(DType(*row) for row in _TABLE)
BY_NAME = {d.name: d for d in ALL}
BY_ONNX = {d.onnx_id: d for d in ALL}
_BY_NUMPY = {}
for _d in ALL:
    _BY_NUMPY.setdefault(np.dtype(_d.np_type), _d)

f32, f16, f64, bf16 = BY_NAME["f32"], BY_NAME["f16"], BY_NAME["f64"], BY_NAME["bf16"]
i8, i16, i32, i64 = BY_NAME["i8"], BY_NAME["i16"], BY_NAME["i32"], BY_NAME["i64"]
u8, u16, u32, u64 = BY_NAME["u8"], BY_NAME["u16"], BY_NAME["u32"], BY_NAME["u64"]
boolean, string = BY_NAME["bool"], BY_NAME["str"]


def from_numpy(dt) -> DType:
    """The kiln DType of a numpy dtype (strings of any width map to `str`)."""
    dt = np.dtype(dt)
    if dt.kind in "USO":
        return string
    try:
        return _BY_NUMPY[dt]
    except KeyError:
        from ..errors import UnsupportedError
        raise UnsupportedError(f"numpy dtype {dt} has no kiln equivalent") from None


def from_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        from ..errors import UnsupportedError
        raise UnsupportedError(f"unknown dtype {name!r}; known: {', '.join(BY_NAME)}") from None


def from_onnx(onnx_id: int) -> DType:
    try:
        return BY_ONNX[onnx_id]
    except KeyError:
        from ..errors import UnsupportedError
        raise UnsupportedError(f"ONNX tensor element type {onnx_id} is not supported") from None
