"""Running a compiled program one node at a time, for the debugging tools (`kiln compare`).

The same kernels as an inference (`kiln_node_<i>`, the functions `kiln_run` calls) over the same
static arena plan, with each node's outputs copied out right after it runs (later nodes reuse the
arena). Host nodes run through their reference as they do in NativeModel. When some shape depends
on the data (no static plan), every value gets its own buffer once its shape is known. The normal
run path (kiln/runtime/native.py) is untouched and pays nothing for this.
"""
from __future__ import annotations

import ctypes
from collections import ChainMap
from typing import Iterator

import numpy as np

from ..ir.graph import Node
from .interpreter import Interpreter
from .plan import NoStaticPlan, allocate_outputs, static_plan
from .validate import contiguous


def run_node_by_node(native, feeds: dict) -> Iterator[tuple[int, Node, dict]]:
    """For each node of `native.graph` (a NativeModel) in order: (index, node, {Value: copy of the
    array it produced}). `feeds` maps graph input Values to arrays (as validate.bind_inputs gives)."""
    prog, g = native.program, native.graph
    env: dict = {c: contiguous(c.data) for c in g.constants if isinstance(c.data, np.ndarray)}
    env.update({v: contiguous(x) if isinstance(x, np.ndarray) else x for v, x in feeds.items()})
    try:
        plan = static_plan(prog, {v: x.shape for v, x in feeds.items() if isinstance(x, np.ndarray)})
    except NoStaticPlan:
        plan = None
    if plan is not None:
        dims = plan.dims
        arena = np.zeros(max(plan.arena_bytes, 64), np.uint8)
        for v, off in plan.offsets.items():
            n = int(np.prod(plan.shapes[v], dtype=np.int64))
            env[v] = np.frombuffer(arena, v.type.dtype.numpy, count=n, offset=off).reshape(plan.shapes[v])
        for v in g.outputs:
            if v.producer is not None and v in prog.buffers and v in plan.shapes and v not in env:
                env[v] = np.empty(plan.shapes[v], v.type.dtype.numpy)
    else:
        dims = np.zeros(max(prog.n_slots, 1), np.int64)
    table = (ctypes.c_void_p * max(len(prog.buffers), 1))()

    def point(v):
        if v in prog.buffers and isinstance(env.get(v), np.ndarray):
            table[prog.buffers[v]] = env[v].ctypes.data

    for v in list(env):
        point(v)
    interp = Interpreter()
    for i, node in enumerate(g.nodes):
        if i in prog.native:
            if plan is None:
                allocate_outputs(node, prog, env, dims)
                for v in node.outputs:
                    if v is not None:
                        point(v)
            if plan is None or node.outputs[0] not in prog.views:   # a planned view has its
                fn = getattr(native.lib, f"kiln_node_{i}")           # input's bytes already
                fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p], None
                fn(table, dims.ctypes.data)
        else:
            local: dict = {}
            interp.run_node(node, ChainMap(local, env))
            for v in node.outputs:
                if v is None:
                    continue
                r = local[v]
                if isinstance(env.get(v), np.ndarray) and v in prog.buffers:
                    env[v][...] = r             # a planned buffer: native readers point at it
                else:
                    env[v] = contiguous(r) if isinstance(r, np.ndarray) else r
                    point(v)
        yield i, node, {v: np.array(env[v]) for v in node.outputs
                        if v is not None and isinstance(env[v], np.ndarray)}
