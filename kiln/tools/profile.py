"""`kiln profile`: where the time goes, kernel by kernel, measured inside the native code.

The model's optimized graph is lowered a second time with `profile=True` (kiln/lower/program.py):
the same kernels, but the entry points read CLOCK_MONOTONIC before and after every kernel call and
keep the pair in a static array (`kiln_profile_data`). An inference is still one native call;
Python reads the array once per run. The normal build is untouched, so it is also timed, end to
end, in turns with the instrumented one: the sum of the kernel times next to that latency shows
what the instrumentation and the runtime around the kernels cost.

    p = profile("model.onnx", runs=10)          # or a .kiln file, or a compiled kiln.Module
    p.kernels                                   # KernelRecord per native kernel, graph order
    p.e2e_ms, p.kernel_sum_ms                   # medians over the runs
"""
from __future__ import annotations

import ctypes
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import KilnError
from ..ir.types import TensorType
from .cost import node_cost
from .peak import Peak, machine_peak


@dataclass
class KernelRecord:
    index: int                 # node index in the optimized graph
    name: str                  # kernel name: k12_fused_conv_add_relu
    fn: str                    # the C function (kernels with the same code share one)
    op: str
    sources: list              # the graph nodes it came from ("Conv 'layer1/conv1'")
    shapes: dict               # {"inputs": ["f32[1,64,56,56]", ...], "outputs": [...]}
    flops: float | None
    bytes: float | None
    times_ns: list = field(default_factory=list)     # one per run
    starts_ns: list = field(default_factory=list)    # start, from the start of its run

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.times_ns) / 1e6 if self.times_ns else 0.0

    @property
    def gflops(self) -> float | None:
        return self.flops / (self.mean_ms * 1e6) if self.flops and self.mean_ms else None

    @property
    def gbps(self) -> float | None:
        return self.bytes / (self.mean_ms * 1e6) if self.bytes and self.mean_ms else None

    @property
    def intensity(self) -> float | None:
        return self.flops / self.bytes if self.flops and self.bytes else None

    def of_peak(self, peak: Peak) -> tuple[float, str] | None:
        """Achieved GFLOP/s over the roofline at this kernel's intensity, and the bound
        ("fma" or "mem"); data movement kernels (no FLOPs): GB/s over the copy bandwidth."""
        if self.gflops and self.intensity:
            roof = peak.roof(self.intensity)
            return self.gflops / roof, "fma" if roof >= peak.gflops else "mem"
        if self.gbps:
            return self.gbps / peak.gbps, "mem"
        return None


@dataclass
class Profile:
    model: str
    runs: int
    threads: int
    inputs: dict               # name -> shape
    kernels: list              # KernelRecord, graph order
    e2e_ns: list               # uninstrumented m.run(), one per run
    instrumented_ns: list      # the instrumented run, one per run
    run_starts_ns: list        # CLOCK_MONOTONIC at the start of each instrumented run
    peak: Peak
    host_nodes: list           # (node index, op, why it runs on the host)

    @property
    def e2e_ms(self) -> float:
        return statistics.median(self.e2e_ns) / 1e6

    @property
    def instrumented_ms(self) -> float:
        return statistics.median(self.instrumented_ns) / 1e6

    def kernel_sums_ns(self) -> list:
        """The sum of all kernel times, run by run."""
        return [sum(k.times_ns[r] for k in self.kernels) for r in range(self.runs)]

    @property
    def kernel_sum_ms(self) -> float:
        """The median over runs of the sum of all kernel times in that run."""
        return statistics.median(self.kernel_sums_ns()) / 1e6

    def by_time(self) -> list:
        return sorted(self.kernels, key=lambda k: -k.mean_ms)

    def share(self, k: KernelRecord) -> float:
        total = sum(x.mean_ms for x in self.kernels)
        return k.mean_ms / total if total else 0.0


def _module(model, opt_level: int, threads: int | None):
    from ..api import Module, compile, load
    if isinstance(model, Module):
        m = model
    elif isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".kiln"):
        m = load(model)
    else:
        m = compile(model, target="cpu", opt_level=opt_level, threads=threads)
    if m._native is None:
        raise KilnError(f"{m.name}: kiln profile needs a model compiled for target 'cpu'")
    return m


def instrumented(m, threads: int | None = None):
    """The NativeModel of `m`'s graph built with timers, and its (slots x 2) array of ns."""
    from ..backend.toolchain import build_library
    from ..compiler import lower_for_cpu
    from ..runtime.native import NativeModel
    program = lower_for_cpu(m.graph, m.compile_info.get("c_shapes") or None, profile=True)
    if not program.native:
        raise KilnError(f"{m.name}: no node runs natively, there is nothing to time")
    lib, _ = build_library(program.sources)
    nat = NativeModel(program, lib, threads)
    data = nat.lib.kiln_profile_data
    data.argtypes, data.restype = [], ctypes.c_void_p
    slots = nat.lib.kiln_profile_slots()
    arr = np.ctypeslib.as_array((ctypes.c_int64 * (2 * slots)).from_address(data()))
    return nat, arr.reshape(slots, 2)


def _type_text(v, shapes: dict) -> str:
    t = v.type
    dt = t.dtype.name if isinstance(t, TensorType) and t.dtype else "?"
    shape = shapes.get(v)
    return f"{dt}[{','.join(map(str, shape))}]" if shape is not None else f"{dt}[?]"


def value_shapes(graph, feeds: dict) -> dict:
    """{Value: concrete shape} at these inputs ({} when shapes depend on the data)."""
    from ..runtime.plan import NoStaticPlan, concrete, eval_shapes
    given = {v: np.shape(feeds[v.name]) for v in graph.inputs if v.name in feeds}
    try:
        types, _ = eval_shapes(graph, given)
    except (NoStaticPlan, KilnError):
        return {}
    return {v: concrete(t) for v, t in types.items() if concrete(t) is not None}


def profile(model, runs: int = 10, threads: int | None = None, opt_level: int = 2,
            inputs: dict | None = None, warmup: int = 1, seed: int = 0,
            measure_peak: bool = False) -> Profile:
    """Profile `model` (ONNX path, .kiln path, anything kiln.compile takes, or a cpu Module) on
    `inputs` (missing ones random, symbolic dims 1): `runs` timed runs after `warmup`.
    measure_peak: measure the machine's peak again instead of using the cached figures."""
    from ..runtime.validate import bind_inputs
    from .inputs import random_inputs
    if runs < 1:
        raise KilnError(f"--runs must be at least 1, got {runs}")
    m = _module(model, opt_level, threads)
    feeds = random_inputs(m.graph, inputs, seed)
    nat, clock = instrumented(m, threads)
    graph = nat.graph
    bound = bind_inputs(graph, feeds, m.name)
    shapes = value_shapes(graph, feeds)
    records = []
    for i in sorted(nat.program.native):
        nk = nat.program.native[i]
        if nk.node.outputs[0] in nat.program.views:
            continue                    # a view of its input: no kernel runs (lower/program.py)
        cost = node_cost(nk.node, shapes)
        records.append(KernelRecord(
            i, nk.kernel.name, nk.fn, nk.node.op, list(nk.kernel.sources),
            {"inputs": [_type_text(v, shapes) for v in nk.node.inputs if v is not None],
             "outputs": [_type_text(v, shapes) for v in nk.node.outputs if v is not None]},
            cost.flops, cost.bytes))
    e2e, inst, starts = [], [], []
    for r in range(warmup + runs):
        t = time.perf_counter_ns()
        m.run(feeds)
        t_e2e = time.perf_counter_ns() - t
        clock[:] = 0
        t0 = time.monotonic_ns()
        nat.run(bound)
        t_inst = time.monotonic_ns() - t0
        if r < warmup:
            continue
        snap = clock.copy()
        e2e.append(t_e2e)
        inst.append(t_inst)
        starts.append(t0)
        for k in records:
            a, z = snap[k.index]
            k.times_ns.append(int(z - a) if a else 0)
            k.starts_ns.append(int(a - t0) if a else 0)
    host = [(i, graph.nodes[i].op, nat.program.host_reasons[i]) for i in nat.program.host]
    peak = machine_peak(threads, refresh=measure_peak)
    return Profile(m.name, runs, peak.threads, {k: list(np.shape(v)) for k, v in feeds.items()},
                   records, e2e, inst, starts, peak, host)
