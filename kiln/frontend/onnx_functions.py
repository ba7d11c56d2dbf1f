"""Model-local ONNX functions are inlined before import, so the graph holds only kiln ops."""
from __future__ import annotations

from ..errors import UnsupportedError


def inline_functions(model) -> None:
    try:
        from onnx import inliner
    except ImportError as e:  # pragma: no cover
        raise UnsupportedError("this model uses ONNX functions; inlining needs onnx >= 1.16") from e
    inlined = inliner.inline_local_functions(model)
    model.CopyFrom(inlined)
    del model.functions[:]
