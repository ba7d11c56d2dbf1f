"""kiln as an `onnx.backend.base.Backend`, so the ONNX backend test suite runs against it:

    python ../shared/tools/onnx_conformance.py kiln.onnx_backend --kw target=interpret
"""
from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from . import api

DEFAULT_TARGET = "cpu"


class KilnRep(BackendRep):
    def __init__(self, module: api.Module):
        self.module = module
        g = module.graph
        self._names = [v.name for v in g.inputs]
        self._all_names = g.meta.get("onnx_inputs", self._names)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            names = self._all_names if len(inputs) == len(self._all_names) else self._names
            feeds = dict(zip(names, inputs))
        return tuple(self.module.run(feeds))


def _kw(kw: dict) -> dict:
    out = dict(kw)
    if "opt_level" in out:
        out["opt_level"] = int(out["opt_level"])
    if "threads" in out and out["threads"] is not None:
        out["threads"] = int(out["threads"])
    if "native_only" in out:
        out["native_only"] = str(out["native_only"]).lower() in ("1", "true", "yes")
    out.setdefault("target", DEFAULT_TARGET)
    return out


class KilnBackend(Backend):
    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs):
        return KilnRep(api.compile(model, **_kw(kwargs)))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")


Backend = KilnBackend
prepare = KilnBackend.prepare
run_model = KilnBackend.run_model
run_node = KilnBackend.run_node
supports_device = KilnBackend.supports_device
