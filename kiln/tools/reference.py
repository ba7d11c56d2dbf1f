"""Reference values of every intermediate tensor, by name, for `kiln compare`: the interpreter on
the imported (unoptimized) graph, or onnxruntime with every intermediate made a graph output."""
from __future__ import annotations

import os

import numpy as np

from ..errors import KilnError
from ..runtime.interpreter import Interpreter
from ..runtime.validate import bind_inputs

REFERENCES = ("interpret", "onnxruntime")


def reference_values(kind: str, graph, feeds: dict, wanted: set, src=None,
                     progress=None) -> dict[str, np.ndarray]:
    """{value name: array} for the names in `wanted` that the reference computes. `graph` is the
    imported graph, `feeds` {input name: array}, `src` the ONNX model (for onnxruntime)."""
    if kind == "interpret":
        return _interpret(graph, feeds, wanted, progress)
    if kind == "onnxruntime":
        return _onnxruntime(src, feeds, wanted)
    raise KilnError(f"unknown reference {kind!r}; known: {', '.join(REFERENCES)}")


def _interpret(graph, feeds: dict, wanted: set, progress) -> dict:
    env: dict = {c: c.data for c in graph.constants}
    env.update(bind_inputs(graph, feeds, graph.meta.get("source", graph.name)))
    interp = Interpreter()
    if progress is not None:
        progress.stage("reference", len(graph.nodes))
    out = {}
    for node in graph.nodes:
        interp.run_node(node, env)
        for v in node.outputs:
            if v is not None and v.name in wanted and isinstance(env[v], np.ndarray):
                out[v.name] = env[v]
        if progress is not None:
            progress.advance(node.op)
    return out


def _onnxruntime(src, feeds: dict, wanted: set) -> dict:
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        raise KilnError("--reference onnxruntime needs the onnxruntime package "
                        "(pip install onnxruntime)") from None
    if isinstance(src, (str, os.PathLike)) and os.path.exists(src):
        model = onnx.load(os.fspath(src))
    elif type(src).__name__ == "ModelProto":
        model = onnx.ModelProto()
        model.CopyFrom(src)
    else:
        raise KilnError("--reference onnxruntime needs an ONNX model file")
    listed = {o.name for o in model.graph.output}
    names = [t for n in model.graph.node for t in n.output if t and t in wanted]
    for t in names:
        if t not in listed:
            model.graph.output.append(onnx.ValueInfoProto(name=t))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        values = sess.run(names, {k: np.asarray(x) for k, x in feeds.items()})
    except Exception as e:          # onnxruntime raises its own exception types
        raise KilnError(f"onnxruntime could not run the model: {e}") from None
    return {t: np.asarray(x) for t, x in zip(names, values)}
