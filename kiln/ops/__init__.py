"""kiln's op set. Each op is defined once (registry.OpDef): signature, attribute defaults, type
and shape inference, numpy reference. `REGISTRY` is built here, explicitly, from this list."""
from __future__ import annotations

from . import (activation, attention, control, detection, elementwise, fused, gemm, image, index, linalg,
               layout, ml, nn, pointwise_depthwise, quant, random, reduce, rnn, sequence, shape, signal,
               text, training, winograd)
from . import (activation_lower, elementwise_lower, fused_lower, index_lower, linalg_lower, nn_lower,
               reduce_lower, shape_lower)
from . import (attention_lower, nn_loss_lower, norm_lower, quant_lower, resize_lower, rnn_lower,
               sample_lower, signal_lower, training_lower)
from . import gemm_lower, layout_lower, pointwise_depthwise_lower, winograd_lower
from .registry import REQUIRED, OpDef, Registry, op

MODULES = [elementwise, activation, reduce, shape, index, nn, linalg, quant, rnn, attention,
           signal, detection, image, text, random, ml, training, control, sequence, fused, gemm,
           layout, winograd, pointwise_depthwise]


# Native lowerings, kept beside each family in <family>_lower.py; each gives ops of the registry
# their `lower` or `scalar` function.
LOWERINGS = [fused_lower, elementwise_lower, activation_lower, reduce_lower, shape_lower, index_lower, nn_lower,
             norm_lower, sample_lower,
             linalg_lower, nn_loss_lower, resize_lower, quant_lower, attention_lower, signal_lower, rnn_lower,
             training_lower,
             gemm_lower,       # after linalg_lower: replaces its MatMul/Gemm loops
             layout_lower, winograd_lower, pointwise_depthwise_lower]


def build_registry() -> Registry:
    reg = Registry()
    for mod in MODULES:
        reg.add_module(mod)
    for mod in LOWERINGS:
        mod.attach(reg)
    return reg


REGISTRY = build_registry()

__all__ = ["REGISTRY", "REQUIRED", "OpDef", "Registry", "op", "build_registry", "MODULES"]
