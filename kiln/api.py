"""The public entry points: compile(), load(), import_onnx(), and the Module they return."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError, KilnError, UnsupportedError
from .ir.graph import Graph
from .ir.types import TensorType
from .runtime.interpreter import Interpreter
from .runtime.validate import bind_inputs

TARGETS = ("cpu", "interpret")      # "cuda" arrives with its backend


@dataclass(frozen=True)
class IOSpec:
    name: str
    dtype: str | None               # kiln dtype name ("f32"), None when unknown
    shape: tuple | None             # ints, symbolic dims as strings, None for unknown dims

    @classmethod
    def of(cls, v) -> "IOSpec":
        t = v.type
        if isinstance(t, TensorType):
            return cls(v.name, t.dtype.name if t.dtype else None, t.shape)
        return cls(v.name, str(t), None)


def to_graph(src, **kw) -> Graph:
    """A Graph from any source kiln reads: Graph, IR text, ONNX path/bytes/ModelProto, a
    torch.nn.Module (with example_inputs=, optional dynamic_shapes=; through torch.export) or a
    torch.export ExportedProgram."""
    if isinstance(src, Graph):
        return src
    if isinstance(src, (str, os.PathLike)) and str(src).lstrip().startswith("graph "):
        from .ir.parser import parse_ir
        return parse_ir(str(src), kw.get("weights"))
    if isinstance(src, (str, os.PathLike, bytes, bytearray)) or type(src).__name__ == "ModelProto":
        from .frontend.onnx_import import import_onnx
        return import_onnx(src)
    torch = sys.modules.get("torch")            # a torch object implies torch is imported already
    if torch is not None and isinstance(src, (torch.nn.Module, torch.export.ExportedProgram)):
        from .frontend.torch_import import export_module, import_torch
        ep = src
        if isinstance(src, torch.nn.Module):
            if kw.get("example_inputs") is None:
                raise KilnError("compiling a torch.nn.Module needs example_inputs=(...)")
            ep = export_module(src, kw["example_inputs"], kw.get("dynamic_shapes"))
        return import_torch(ep, name=type(src).__name__)
    raise KilnError(f"kiln cannot compile a {type(src).__name__}; give an ONNX path, "
                    "ModelProto, torch.nn.Module, ExportedProgram, kiln Graph or IR text")


class Module:
    """A compiled model: `run(dict) -> list`, `m(*arrays)`, `inputs`, `outputs`, `manifest`."""

    def __init__(self, graph: Graph, target: str, opt_level: int = 2, threads: int | None = None,
                 native=None, compile_info: dict | None = None):
        self.graph, self.target = graph, target
        self.opt_level, self.threads = opt_level, threads
        self.name = graph.meta.get("source", graph.name)
        self._interp = Interpreter()
        self._native = native                   # runtime.native.NativeModel for target "cpu"
        self.compile_info = compile_info or {}
        self._last_feeds: list | None = None    # (name, Value, dtype, shape) of the last run's feeds

    @property
    def inputs(self) -> list[IOSpec]:
        return [IOSpec.of(v) for v in self.graph.inputs]

    @property
    def outputs(self) -> list[IOSpec]:
        return [IOSpec.of(v) for v in self.graph.outputs]

    @property
    def host_ops(self) -> list[str]:
        """Ops that run through their numpy reference (all of them, when interpreting)."""
        if self._native is None:
            return sorted({n.op for _, n in self.graph.all_nodes()})
        prog = self._native.program
        return sorted({self.graph.nodes[i].op for i in prog.host})

    @property
    def manifest(self) -> dict:
        spec = lambda s: {"name": s.name, "dtype": s.dtype,
                          "shape": None if s.shape is None else list(s.shape)}
        weights = sum(c.data.nbytes for c in self.graph.constants if isinstance(c.data, np.ndarray))
        kernels, host_nodes, arena = [], [], 0
        if self._native is not None:
            prog = self._native.program
            for i in sorted(prog.native):
                nk = prog.native[i]
                members = nk.node.attrs["body"].nodes if nk.node.op == "Fused" else [nk.node]
                kernels.append({"name": nk.fn, "nodes": [n.name or n.op for n in members],
                                "ops": [n.op for n in members]})
            host_nodes = [{"node": self.graph.nodes[i].name, "op": self.graph.nodes[i].op,
                           "reason": prog.host_reasons[i]} for i in prog.host]
            arena = self._native.last_arena_bytes
        return {"target": self.target, "kernels": kernels, "host_ops": self.host_ops,
                "host_nodes": host_nodes, "arena_bytes": int(arena), "weights_bytes": int(weights),
                "inputs": [spec(s) for s in self.inputs], "outputs": [spec(s) for s in self.outputs],
                **self.compile_info}

    def run(self, feeds: dict[str, Any]) -> list:
        bound = self._bind_as_last(feeds)
        same = bound is not None
        if not same:
            bound = bind_inputs(self.graph, feeds, self.name)
            self._last_feeds = [(v.name, v, x.dtype, x.shape) for v, x in bound.items()
                                if type(x) is np.ndarray]
            if len(self._last_feeds) != len(bound):
                self._last_feeds = None
        if self._native is not None:
            outs = self._native.run(bound, same_shapes=same)
        else:
            outs = self._interp.run(self.graph, bound)
        return [np.asarray(o) if isinstance(o, np.generic) else o for o in outs]

    def _bind_as_last(self, feeds) -> dict | None:
        """{Value: array} when feeds are arrays of the last run's names, dtypes and shapes (all
        checked by bind_inputs then: nothing to check again), else None."""
        last = self._last_feeds
        if last is None or type(feeds) is not dict or len(feeds) != len(last):
            return None
        out = {}
        for name, v, dt, shape in last:
            x = feeds.get(name)
            if type(x) is not np.ndarray or x.dtype != dt or x.shape != shape:
                return None
            out[v] = x
        return out

    def __call__(self, *args):
        if len(args) != len(self.graph.inputs):
            raise InputError(f"{self.name}: expects {len(self.graph.inputs)} positional inputs "
                             f"({', '.join(v.name for v in self.graph.inputs)}), got {len(args)}")
        outs = self.run({v.name: a for v, a in zip(self.graph.inputs, args)})
        return outs[0] if len(outs) == 1 else tuple(outs)

    def save(self, path) -> None:
        """Write the module as one `.kiln` file; `kiln.load(path)` reads it back."""
        from .runtime.artifact import save
        save(self, path)

    def __repr__(self) -> str:
        return f"<kiln.Module {self.name} target={self.target} {len(self.graph.nodes)} nodes>"


def compile(src, target: str = "cpu", opt_level: int = 2, threads: int | None = None,
            **kw) -> Module:
    """Compile a model for `target`: "cpu" (native code) or "interpret" (numpy references).
    Also: disable=[pass names] switches passes off; progress=a reporter (kiln/tools/progress.py)."""
    if target not in TARGETS:
        raise UnsupportedError(f"unknown target {target!r}; kiln supports {', '.join(TARGETS)}")
    if not isinstance(opt_level, int) or not 0 <= opt_level <= 3:
        raise KilnError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    progress = kw.get("progress")
    if progress is not None:
        progress.stage("import")
    t0 = time.perf_counter()
    graph = to_graph(src, **kw)
    t_import = round(time.perf_counter() - t0, 4)
    if target == "cpu":
        from .compiler import compile_cpu
        m = compile_cpu(graph, opt_level=opt_level, threads=threads,
                        native_only=bool(kw.get("native_only", False)),
                        c_shapes=kw.get("c_shapes"), disable=kw.get("disable", ()), progress=progress)
        m.compile_info["compile_seconds"] = {"import": t_import, **m.compile_info["compile_seconds"]}
        return m
    return Module(graph, target, opt_level, threads,
                  compile_info={"compile_seconds": {"import": t_import},
                                "nodes": {"imported": len(graph.nodes)}})


def load(path) -> Module:
    """Load a `.kiln` artifact written by `Module.save`."""
    from .runtime.artifact import load as _load
    return _load(path)
