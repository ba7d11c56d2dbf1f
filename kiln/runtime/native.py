"""Running a compiled program: the shared library, weights, per-signature plans, host fallback.

With no host ops and a static plan, one inference is one native call (`kiln_run`) over a pointer
table: inputs, weights, the arena (intermediates, lifetime-packed) and the outputs. Host ops run
through their reference between native segments. When shapes depend on the data, the runtime steps
node by node (`kiln_node_<i>`), learning shapes as values appear.
"""
from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from ..errors import KilnError, OpError
from ..lower.program import Program
from .interpreter import Interpreter
from .validate import contiguous
from .plan import NoStaticPlan, Plan, allocate_outputs, static_plan


class _Static:
    """A plan for one input signature, with its arena and pointer table ready."""

    def __init__(self, plan: Plan, arena: np.ndarray, arrays: dict, table, program: Program, graph):
        self.plan, self.arena, self.arrays, self.table = plan, arena, arrays, table
        self.outputs: dict = {}          # output value -> the array the last run returned
        self.fed: dict = {}              # buffer id -> the input array whose address the table holds
        # the fast path (NativeModel._run_fast): every graph output is a distinct planned buffer
        # of its own producer, and no node runs on the host
        self.feed_slots = [(v, program.buffers[v]) for v in graph.inputs if v in program.buffers]
        self.out_slots = [(v, program.buffers[v]) for v in graph.outputs
                          if v in program.buffers and v in plan.shapes and v.producer is not None]
        self.dims = plan.dims.ctypes.data
        self.fast = (not program.host and len(self.out_slots) == len(graph.outputs) ==
                     len({v for v, _ in self.out_slots}))

    def output(self, v, bid: int) -> np.ndarray:
        """The array for output v (buffer bid): the last run's when nobody else holds it any
        more (this dict, the local and getrefcount's argument are its only references), else a
        new one, whose address goes into the table. A fresh 25 MB array (GPT-2's logits) costs
        thousands of page faults on every run."""
        a = self.outputs.get(v)
        if a is None or sys.getrefcount(a) > 3:
            a = np.empty(self.plan.shapes[v], v.type.dtype.numpy)
            self.outputs[v] = a
            self.table[bid] = a.ctypes.data
        return a

    def feed(self, bid: int, x) -> None:
        """Point buffer bid at input x (kept alive here until the next one replaces it)."""
        if x is not self.fed.get(bid):
            x = contiguous(x)
            self.fed[bid] = x
            self.table[bid] = x.ctypes.data


class NativeModel:
    def __init__(self, program: Program, lib_path: str, threads: int | None = None):
        self.program = program
        self.graph = program.graph
        self.lib_path = lib_path
        self.lib = _load(lib_path) if lib_path else None     # None: every node runs on the host
        proto = [ctypes.c_void_p, ctypes.c_void_p]
        self._node = {}
        for i in program.native:
            f = getattr(self.lib, f"kiln_node_{i}")
            f.argtypes, f.restype = proto, None
            self._node[i] = f
        self._segment = []
        for s in range(len(program.segments)):
            f = getattr(self.lib, f"kiln_segment_{s}")
            f.argtypes, f.restype = proto, None
            self._segment.append(f)
        if self.lib is not None:
            self._run = self.lib.kiln_run
            self._run.argtypes, self._run.restype = proto, ctypes.c_int
        self.threads = threads
        if threads:
            self._set_threads(threads)
        self.interp = Interpreter()
        self.plans: dict = {}
        self._last: _Static | None = None        # the plan of the last run
        self.last_arena_bytes = 0
        self._seg_of = {a: s for s, (a, _) in enumerate(program.segments)}
        self._weights = {c: contiguous(c.data) for c in self.graph.constants
                         if isinstance(c.data, np.ndarray)}

    def _set_threads(self, n: int):
        try:
            gomp = ctypes.CDLL("libgomp.so.1")
            gomp.omp_set_num_threads(int(n))
        except OSError:
            pass

    # --- planning -------------------------------------------------------------------------
    def _make_static(self, feeds: dict) -> _Static:
        prog = self.program
        shapes_in = {v: x.shape for v, x in feeds.items() if isinstance(x, np.ndarray)}
        plan = static_plan(self.program, shapes_in)
        offsets, total, shapes = plan.offsets, plan.arena_bytes, plan.shapes
        arena = np.empty(max(total, 64), np.uint8)
        arrays = {}
        for v, off in offsets.items():
            dt = v.type.dtype.numpy
            n = int(np.prod(shapes[v], dtype=np.int64))
            arrays[v] = np.frombuffer(arena, dt, count=n, offset=off).reshape(shapes[v])
        table = (ctypes.c_void_p * max(len(prog.buffers), 1))()
        for v, bid in prog.buffers.items():
            if v in arrays:
                table[bid] = arrays[v].ctypes.data
            elif v in self._weights:
                table[bid] = self._weights[v].ctypes.data
        st = _Static(plan, arena, arrays, table, prog, self.graph)
        st.fast = st.fast and self.lib is not None
        return st

    # --- running ---------------------------------------------------------------------------
    def run(self, feeds: dict, same_shapes: bool = False) -> list:
        """Run on bound feeds ({Value: array}); same_shapes: the caller checked that the feeds
        have the shapes of the last run, so its plan is reused without looking it up."""
        st = self._last if same_shapes else None
        if st is None:
            key = tuple((v.name, x.shape) for v, x in feeds.items() if isinstance(x, np.ndarray))
            st = self.plans.get(key)
            if st is None and key not in self.plans:
                try:
                    st = self._make_static(feeds)
                except NoStaticPlan:
                    st = None
                self.plans[key] = st
            self._last = st
        if st is None:
            return self._run_stepwise(feeds)
        if st.fast and len(feeds) == len(self.graph.inputs):     # (no fed parameters)
            return self._run_fast(st, feeds)
        return self._run_static(st, feeds)

    def _run_fast(self, st: _Static, feeds: dict) -> list:
        """One native call, table entries rewritten only for new input or output arrays."""
        self.last_arena_bytes = st.plan.arena_bytes
        for v, bid in st.feed_slots:
            st.feed(bid, feeds[v])
        outs = [st.output(v, bid) for v, bid in st.out_slots]
        if self._run(st.table, st.dims) != 0:
            raise KilnError("the compiled model refused to run (host ops present)")
        return outs

    def _run_static(self, st: _Static, feeds: dict) -> list:
        g, prog = self.graph, self.program
        self.last_arena_bytes = st.plan.arena_bytes
        for v, x in feeds.items():
            if v in prog.buffers:
                st.feed(prog.buffers[v], x)
        outs = {}
        for v in g.outputs:
            if v in prog.buffers and v in st.plan.shapes and v.producer is not None:
                outs[v] = st.output(v, prog.buffers[v])
        d = st.dims
        if not prog.host:
            if self.lib is not None and self._run(st.table, d) != 0:
                raise KilnError("the compiled model refused to run (host ops present)")
            # fast path: no host node needs the environment of every value
            env = _Chain(outs, feeds, st.arrays, self._weights)
            return [self._result(v, env) for v in g.outputs]
        env = dict(self._weights)
        env.update(st.arrays)
        env.update(feeds)
        env.update(outs)
        i, n = 0, len(g.nodes)
        while i < n:
            if i in self._seg_of:
                s = self._seg_of[i]
                self._segment[s](st.table, d)
                i = prog.segments[s][1] + 1
                continue
            self._host_node(i, env, st.plan.shapes)
            i += 1
        return [self._result(v, env) for v in g.outputs]

    def _host_node(self, i: int, env: dict, shapes: dict | None):
        node = self.graph.nodes[i]
        local = _Env(env)
        self.interp.run_node(node, local)
        for v in node.outputs:
            if v is None:
                continue
            r = local[v]
            if v in env and isinstance(env[v], np.ndarray) and env[v].dtype != object \
                    and v in self.program.buffers:
                dst = env[v]
                r = np.asarray(r)
                if r.shape != dst.shape:
                    raise OpError(f"{node.describe()}: produced shape {r.shape}, planned {dst.shape}")
                dst[...] = r
            else:
                env[v] = r

    def _run_stepwise(self, feeds: dict) -> list:
        """No static plan: run node by node, allocating each value when its shape is known."""
        g, prog = self.graph, self.program
        env = dict(self._weights)
        env.update(feeds)
        table = (ctypes.c_void_p * max(len(prog.buffers), 1))()
        dims = np.zeros(max(prog.n_slots, 1), np.int64)
        keep = []
        for v, x in env.items():
            if v in prog.buffers and isinstance(x, np.ndarray):
                x = contiguous(x)
                keep.append(x)
                env[v] = x
                table[prog.buffers[v]] = x.ctypes.data
        for i, node in enumerate(g.nodes):
            if i not in prog.native:
                self._host_node(i, env, None)
                for v in node.outputs:
                    if v is not None and v in prog.buffers:
                        x = contiguous(env[v])
                        env[v] = x
                        keep.append(x)
                        table[prog.buffers[v]] = x.ctypes.data
                continue
            allocate_outputs(node, prog, env, dims)
            for v in node.outputs:
                if v is not None:
                    table[prog.buffers[v]] = env[v].ctypes.data
            self._node[i](table, dims.ctypes.data)
        return [self._result(v, env) for v in g.outputs]

    @staticmethod
    def _result(v, env):
        x = env[v]
        if isinstance(x, np.ndarray) and (v.producer is None or x.base is not None):
            return x.copy()
        return x


def _load(path: str):
    try:
        return ctypes.CDLL(os.path.abspath(path))
    except OSError as e:
        raise KilnError(f"cannot load the compiled library {path}: {e}") from None


class _Chain:
    """Read-only lookup through several dicts, first hit wins (no merged copy per run)."""
    def __init__(self, *maps):
        self.maps = maps

    def __getitem__(self, v):
        for m in self.maps:
            if v in m:
                return m[v]
        raise KeyError(v)


class _Env(dict):
    def __init__(self, base: dict):
        super().__init__()
        self.base = base

    def __missing__(self, key):
        return self.base[key]
