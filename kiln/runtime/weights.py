"""Weights in safetensors form: written once, read back memory-mapped (no copy).

Dtypes safetensors knows are stored as themselves; others (fp8 fnuz, 4/2-bit ints, complex) are
stored as raw bytes (U8) with their kiln dtype and shape in the file's metadata.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from ..errors import KilnError
from ..ir import dtypes
from .validate import contiguous

ST_DTYPE = {"f32": "F32", "f64": "F64", "f16": "F16", "bf16": "BF16", "i8": "I8", "i16": "I16",
            "i32": "I32", "i64": "I64", "u8": "U8", "u16": "U16", "u32": "U32", "u64": "U64",
            "bool": "BOOL", "f8e4m3fn": "F8_E4M3", "f8e5m2": "F8_E5M2"}
FROM_ST = {v: k for k, v in ST_DTYPE.items()}


def layout(arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """Byte offset of each numeric array inside the data section `dump` writes (same order, no
    padding): compiled code that reads weights straight from the file relies on it."""
    out, offset = {}, 0
    for name, a in arrays.items():
        if a.dtype == object:
            continue
        out[name] = offset
        offset += a.nbytes
    return out


def dump(arrays: dict[str, np.ndarray]) -> bytes:
    """The safetensors bytes of {name: array} (header padded to 8 bytes, as the format asks)."""
    header, meta, blobs, offset = {}, {}, [], 0
    for name, a in arrays.items():
        a = contiguous(a)
        kd = dtypes.from_numpy(a.dtype).name
        st = ST_DTYPE.get(kd)
        if st is None:
            meta[name] = json.dumps({"dtype": kd, "shape": list(a.shape)})
            st, shape = "U8", [a.nbytes]
        else:
            shape = list(a.shape)
        raw = a.tobytes()
        header[name] = {"dtype": st, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * ((-len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def load_mapped(path: str, base: int = 0) -> dict[str, np.ndarray]:
    """Map the safetensors data that starts at byte `base` of `path` (read-only, zero-copy)."""
    try:
        with open(path, "rb") as f:
            f.seek(base)
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise KilnError(f"{path}: unreadable weights: {e}") from None
    meta = header.pop("__metadata__", {}) or {}
    data_start = base + 8 + n
    out = {}
    mm = np.memmap(path, np.uint8, mode="r")
    for name, h in header.items():
        a, b = h["data_offsets"]
        if data_start + b > mm.size:
            raise KilnError(f"{path}: weights are truncated ({name!r} runs past the end)")
        raw = mm[data_start + a: data_start + b]
        if name in meta:
            m = json.loads(meta[name])
            out[name] = raw.view(dtypes.from_name(m["dtype"]).numpy).reshape(m["shape"])
        else:
            out[name] = raw.view(dtypes.from_name(FROM_ST[h["dtype"]]).numpy).reshape(h["shape"])
    return out
