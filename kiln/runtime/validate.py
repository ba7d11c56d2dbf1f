"""Check the inputs a caller feeds against the graph before anything runs."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..ir import dtypes
from ..ir.graph import Graph, Value
from ..ir.types import OptionalType, SequenceType, TensorType


def bind_inputs(graph: Graph, feeds: dict[str, Any], model: str = "model") -> dict[Value, Any]:
    """Map named feeds onto the graph's inputs (and feedable params), validating each.
    Returns {Value: array}; symbolic dims must bind consistently across inputs."""
    if not isinstance(feeds, dict):
        raise InputError(f"{model}: inputs must be a dict of name -> array, got {type(feeds).__name__}")
    by_name = {v.name: v for v in graph.inputs}
    params = {v.name: v for v in graph.constants if v.feedable}
    unknown = [k for k in feeds if k not in by_name and k not in params]
    if unknown:
        raise InputError(f"{model}: unknown input {', '.join(map(repr, unknown))}; "
                         f"the model's inputs are {', '.join(repr(v.name) for v in graph.inputs) or 'none'}")
    missing = [n for n in by_name if n not in feeds]
    if missing:
        raise InputError(f"{model}: missing input {', '.join(map(repr, missing))}")
    symbols: dict[str, int] = {}
    out = {}
    for name, x in feeds.items():
        v = by_name.get(name) or params[name]
        out[v] = check_value(v, x, symbols, model)
    return out


def check_value(v: Value, x, symbols: dict, model: str):
    t = v.type
    where = f"{model}: input {v.name!r}"
    if isinstance(t, SequenceType):
        if not isinstance(x, (list, tuple)):
            raise InputError(f"{where} expects a sequence (list of arrays), got {type(x).__name__}")
        return [check_value(Value(v.name, t.elem), e, {}, model) for e in x]
    if isinstance(t, OptionalType):
        return None if x is None else check_value(Value(v.name, t.elem), x, symbols, model)
    if not isinstance(t, TensorType):
        return x
    if x is None:
        raise InputError(f"{where} is None; expected an array of type {t}")
    if isinstance(x, (list, tuple, int, float, bool, str, np.generic)):
        x = np.asarray(x, dtype=t.dtype.numpy if t.dtype is not None else None)
    if not isinstance(x, np.ndarray):
        raise InputError(f"{where} expects a numpy array, got {type(x).__name__}")
    if t.dtype is not None:
        if t.dtype == dtypes.string:
            if x.dtype.kind not in "USO":
                raise InputError(f"{where} expects strings, got dtype {x.dtype}")
            x = x.astype(object)
        elif x.dtype != t.dtype.numpy:
            got = dtypes.from_numpy(x.dtype).name if x.dtype.kind not in "USOV" else str(x.dtype)
            raise InputError(f"{where} expects dtype {t.dtype.name}, got {got}")
    if t.shape is not None:
        if x.ndim != len(t.shape):
            raise InputError(f"{where} expects rank {len(t.shape)} {t}, got shape {x.shape}")
        for i, (d, n) in enumerate(zip(t.shape, x.shape)):
            if isinstance(d, int) and d != n:
                raise InputError(f"{where} expects {t}, got shape {x.shape} (dim {i} must be {d})")
            if isinstance(d, str):
                if symbols.setdefault(d, n) != n:
                    raise InputError(f"{where}: dim {d!r} is {n} here but {symbols[d]} in another input")
    return x


def contiguous(x):
    """x as a C-contiguous array, keeping its rank (np.ascontiguousarray turns 0-d into 1-d)."""
    if isinstance(x, np.ndarray) and x.flags.c_contiguous:
        return x
    return np.array(x, order="C", copy=True) if isinstance(x, np.ndarray) else x
