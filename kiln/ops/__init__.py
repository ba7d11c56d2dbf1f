"""kiln's op set. Each op is defined once (registry.OpDef): signature, attribute defaults, type
and shape inference, numpy reference. `REGISTRY` is built here, explicitly, from this list."""
from __future__ import annotations

from . import (activation, attention, control, elementwise, index, linalg, ml, nn, quant, random,
               reduce, rnn, sequence, shape, signal, text, training)
from .registry import REQUIRED, OpDef, Registry, op

MODULES = [elementwise, activation, reduce, shape, index, nn, linalg, quant, rnn, attention,
           signal, text, random, ml, training, control, sequence]


def build_registry() -> Registry:
    reg = Registry()
    for mod in MODULES:
        reg.add_module(mod)
    return reg


REGISTRY = build_registry()

__all__ = ["REGISTRY", "REQUIRED", "OpDef", "Registry", "op", "build_registry", "MODULES"]
