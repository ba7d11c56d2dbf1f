"""Shared access to the ONNX backend test suite shipped inside the `onnx` package."""
from __future__ import annotations

import glob
import os
import warnings
from functools import lru_cache

import numpy as np

KINDS = ("node", "pytorch-converted", "pytorch-operator", "simple")
HERE = os.path.dirname(__file__)


@lru_cache(maxsize=None)
def cases() -> dict:
    warnings.filterwarnings("ignore")
    from onnx.backend.test.loader import load_model_tests
    out = {}
    for kind in KINDS:
        for c in load_model_tests(kind=kind):
            out[f"{kind}/{c.name}"] = c
    return out


def load_case(case):
    """(model, [(inputs, expected_outputs), ...]) for one suite case."""
    import onnx
    from onnx import numpy_helper
    if case.model is not None:
        conv = lambda xs: [numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x for x in xs]
        return case.model, [(conv(i), conv(o)) for i, o in case.data_sets]
    model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
    data = []
    for d in sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*"))):
        ins = [_read(f) for f in sorted(glob.glob(os.path.join(d, "input_*.pb")))]
        outs = [_read(f) for f in sorted(glob.glob(os.path.join(d, "output_*.pb")))]
        data.append((ins, outs))
    return model, data


def _read(path):
    import onnx
    from onnx import numpy_helper
    for kind in (onnx.TensorProto, onnx.SequenceProto, onnx.OptionalProto):
        proto = kind()
        try:
            with open(path, "rb") as f:
                proto.ParseFromString(f.read())
        except Exception:
            continue
        if kind is onnx.TensorProto:
            if proto.data_type or proto.dims:
                return numpy_helper.to_array(proto)
            continue
        if kind is onnx.SequenceProto and proto.elem_type:
            return numpy_helper.to_list(proto)
        if kind is onnx.OptionalProto and proto.elem_type:
            return numpy_helper.to_optional(proto)
    import onnx as _o
    t = _o.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def compare(outs, refs, rtol, atol):
    """Same rule as ../shared/tools/onnx_conformance.py; raises AssertionError on mismatch."""
    assert len(outs) == len(refs), f"{len(outs)} outputs, expected {len(refs)}"
    for o, r in zip(outs, refs):
        if isinstance(r, list) or isinstance(o, list):
            assert isinstance(o, list) and len(o) == len(r), "sequence length differs"
            compare(o, r, rtol, atol)
            continue
        if r is None or o is None:
            assert r is None and o is None, "optional presence differs"
            continue
        o, r = np.asarray(o), np.asarray(r)
        if o.dtype == object or r.dtype == object:
            assert o.tolist() == r.tolist(), "object mismatch"
            continue
        assert o.shape == r.shape, f"shape {o.shape} != {r.shape}"
        if type(r.dtype.type).__module__ == "ml_dtypes" or r.dtype.type.__module__ == "ml_dtypes":
            # bf16 / fp8 from ml_dtypes: compare the values exactly, NaN == NaN
            assert o.dtype == r.dtype, f"dtype {o.dtype} != {r.dtype}"
            o, r = o.astype(np.float32), r.astype(np.float32)
        if np.issubdtype(r.dtype, np.floating) or np.issubdtype(r.dtype, np.complexfloating):
            np.testing.assert_allclose(o.astype(r.dtype) if o.dtype != r.dtype else o, r,
                                       rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(o, r)


def expected_failures(name: str) -> dict[str, str]:
    """`case  # reason` lines of tests/<name>; the reason is required."""
    out = {}
    with open(os.path.join(HERE, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            case, _, reason = line.partition("#")
            out[case.strip()] = reason.strip()
    return out
