"""Graph -> native program: decide which nodes run natively, lower each to a kernel, and emit
the C translation units with one entry per node, per segment, and for the whole model.

Runtime dims: every dim that is not a compile-time int becomes a slot in the `d` array every
kernel receives. A symbol (N) is one slot wherever it appears; an unknown dim gets its own slot.
The runtime (kiln/runtime/native.py) fills the slots for each input signature.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..backend.c import CTYPE, PRELUDE, CRenderer, comment, ident
from ..backend.fault import corrupt, fault_target
from ..backend.microkernel import support_code
from ..ir.graph import Graph, Node, Value
from ..ir.types import TensorType
from ..ops import REGISTRY
from .context import LowerCtx, NotLowerable, TensorRef, lower_elementwise
from .loopir import Const, Dim, Kernel, Param, c_calls

NATIVE_DTYPES = set(CTYPE)
KERNELS_PER_UNIT = 40


@dataclass
class NodeKernel:
    node: Node
    index: int                 # position in graph.nodes
    kernel: Kernel
    fn: str = ""               # the C function that implements it (after deduplication)
    buffers: list = field(default_factory=list)   # buffer ids, in kernel param order


@dataclass
class Program:
    graph: Graph
    slots: dict                # key (symbol str | (value name, axis)) -> slot index
    value_slots: dict          # Value -> [Const | Dim] per axis
    buffers: dict              # Value -> buffer id
    native: dict               # node index -> NodeKernel
    host: list                 # indices of host nodes
    host_reasons: dict         # node index -> why it runs on the host
    segments: list             # [(first node index, last node index)] of native runs
    sources: dict              # file name -> C text
    unique_kernels: int
    # reshape-like nodes whose output is a view of their input (same arena bytes, no kernel call
    # in the segments; kiln_node_<i> still copies, for runs with a buffer per value): out -> in
    views: dict = field(default_factory=dict)
    # elementwise nodes that write over an input read for the last time (same shape and dtype,
    # read at the output's own index only): out -> in; the kernel runs, in place
    inplace: dict = field(default_factory=dict)

    @property
    def n_slots(self) -> int:
        return len(self.slots)


class SlotTable:
    def __init__(self):
        self.slots: dict = {}

    def dim(self, v: Value, axis: int, d):
        if isinstance(d, int):
            return Const(d)
        key = d if isinstance(d, str) else (v.name, axis)
        if key not in self.slots:
            self.slots[key] = len(self.slots)
        return Dim(self.slots[key])


def _native_type(v: Value | None) -> bool:
    if v is None:
        return True
    t = v.type
    return (isinstance(t, TensorType) and t.dtype is not None and t.dtype.name in NATIVE_DTYPES
            and t.shape is not None)


def _param_names(d, n_in: int, n_out: int) -> tuple[list, list]:
    def names(sig, n):
        out = []
        for i in range(n):
            s = sig[min(i, len(sig) - 1)].rstrip("?*") if sig else f"a{i}"
            if sig and sig[-1].endswith("*") and i >= len(sig) - 1:
                s = f"{s}{i - len(sig) + 1}"
            out.append(ident(s, "p"))
        return out
    ins, outs = names(d.inputs, n_in), names(d.outputs, n_out)
    seen = set()
    res = []
    for n in ins + outs:
        while n in seen or n == "d":
            n = n + "_"
        seen.add(n)
        res.append(n)
    return res[:n_in], res[n_in:]


def lower_graph(graph: Graph, registry=REGISTRY, progress=None, profile: bool = False) -> Program:
    """`progress` (kiln/tools/progress.py) gets one step per node lowered. profile=True: the entry
    points time every kernel call (PROFILE_SUPPORT below); the normal build's C is unchanged."""
    slots = SlotTable()
    value_slots: dict = {}

    def ref_shape(v: Value):
        if v not in value_slots:
            value_slots[v] = [slots.dim(v, k, d) for k, d in enumerate(v.type.shape)]
        return value_slots[v]

    for v in graph.inputs:
        if _native_type(v):
            ref_shape(v)
    native: dict[int, NodeKernel] = {}
    host, reasons = [], {}
    if progress is not None:
        progress.stage("kernels", len(graph.nodes))
    for i, node in enumerate(graph.nodes):
        d = registry.get(node.op)
        why = None
        if d.lower is None and d.scalar is None:
            why = "no lowering"
        elif node.op != "Fused" and any(True for _ in node.subgraphs()):
            why = "has subgraphs"
        elif not all(_native_type(v) for v in node.inputs + node.outputs):
            why = "types not native (dtype, sequence or unknown rank)"
        if why is None:
            try:
                native[i] = _lower_node(node, i, d, ref_shape)
            except NotLowerable as e:
                why = str(e) or "not lowerable"
        if why is not None:
            host.append(i)
            reasons[i] = why
        if progress is not None:
            progress.advance(node.op)
    buffers: dict = {}
    for nk in native.values():
        for v in [v for v in nk.node.inputs if v is not None] + [v for v in nk.node.outputs if v is not None]:
            buffers.setdefault(v, len(buffers))
            nk.buffers.append(buffers[v])
    segments = _segments(len(graph.nodes), native)
    views = _views(graph, native)
    inplace = _inplace(graph, native, views)
    sources, n_unique = _emit(graph, native, segments, not host, profile, views)
    return Program(graph, dict(slots.slots), value_slots, buffers, native, host, reasons,
                   segments, sources, n_unique, views, inplace)


VIEW_OPS = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _inplace(graph: Graph, native: dict, views: dict) -> dict:
    """out -> in for native elementwise nodes (an op with a scalar form, or an elementwise Fused
    group) whose input of the output's shape and dtype is an intermediate read for the last time
    there (its views included): the planner gives the output that input's bytes. Safe because an
    elementwise kernel reads such an input only at the index it is writing."""
    ends = set(graph.inputs) | set(graph.outputs)
    _, last = graph.use_spans()

    def root(v):
        while v in views:
            v = views[v]
        return v
    readers: dict = {}                    # root -> last node reading it or any view of it
    for v, i in last.items():
        r = root(v)
        readers[r] = max(readers.get(r, -1), i)
    taken, out = set(), {}
    for i, nk in native.items():
        node = nk.node
        elementwise = REGISTRY.get(node.op).scalar is not None or \
            (node.op == "Fused" and node.attrs.get("kind") == "elementwise")
        y = node.outputs[0] if len(node.outputs) == 1 else None
        if not elementwise or y is None or y in ends or y in views:
            continue
        for x in node.inputs:
            if x is None or x.is_const or x in ends or x in taken or root(x) in ends:
                continue
            if x in views:
                continue                  # a view's bytes belong to its root
            if readers.get(x) != i or sum(v is x for v in node.inputs) != 1:
                continue
            if not (isinstance(x.type, TensorType) and x.type == y.type and None not in (y.type.shape or [None])):
                continue
            out[y] = x
            taken.add(x)
            break
    return out


def _views(graph: Graph, native: dict) -> dict:
    """out -> in for the native reshape-like nodes between two intermediates (not graph inputs,
    outputs or constants, whose buffers the caller or the weights own): the planner gives the
    output the input's bytes (kiln/runtime/plan.py), so the node costs nothing."""
    ends = set(graph.inputs) | set(graph.outputs)
    views = {}
    for i, nk in native.items():
        node = nk.node
        if node.op not in VIEW_OPS or not node.inputs or node.inputs[0] is None:
            continue
        x, y = node.inputs[0], node.outputs[0]
        if x in ends or y in ends or x.is_const or x.type.dtype != y.type.dtype:
            continue
        views[y] = x
    return views


def _lower_node(node: Node, index: int, d, ref_shape) -> NodeKernel:
    attrs = d.resolve_attrs(node.attrs, node.describe())
    n_in = len(node.inputs)
    n_out = len(node.outputs)
    in_names, out_names = _param_names(d, n_in, n_out)
    ins = [None if v is None else TensorRef(in_names[k], v.type.dtype.name, ref_shape(v),
                                           v.data if v.is_const else None)
           for k, v in enumerate(node.inputs)]
    outs = [None if v is None else TensorRef(out_names[k], v.type.dtype.name, ref_shape(v))
            for k, v in enumerate(node.outputs)]
    ctx = LowerCtx(node, d, attrs, ins, outs)
    body = d.lower(ctx) if d.lower is not None else lower_elementwise(ctx, d.scalar)
    params = [Param(t.buf, t.dtype, "in") for t in ins if t is not None]
    params += [Param(t.buf, t.dtype, "out") for t in outs if t is not None]
    if node.op == "Fused":         # name the kernel after what it fuses, list every source node
        members = attrs["body"].nodes
        ops = [n.op for n in members]
        labels = [f"{n.op} {n.name!r}" if n.name else n.op for n in members]
        k = Kernel(f"k{index}_fused_{ident('_'.join(o.lower() for o in ops))[:40]}", params, body,
                   labels, ops)
    else:
        label = f"{node.op} {node.name!r}" if node.name else node.op
        k = Kernel(f"k{index}_{ident(node.op)}", params, body, [label], [node.op])
    return NodeKernel(node, index, k)


def _segments(n: int, native: dict) -> list:
    segs, start = [], None
    for i in range(n + 1):
        if i < n and i in native:
            if start is None:
                start = i
        elif start is not None:
            segs.append((start, i - 1))
            start = None
    return segs


def _emit(graph: Graph, native: dict, segments: list, whole: bool,
          profile: bool = False, views: dict | None = None) -> tuple[dict, int]:
    r = CRenderer()
    by_body: dict[str, str] = {}
    units: list[list[str]] = [[]]
    calls: list[set] = [set()]            # C support functions (CallC) each unit's kernels call
    fault = fault_target(native)          # test-only (backend/fault.py): None unless asked for
    for i in sorted(native):
        nk = native[i]
        text = _render(r, nk, "KERNEL", fault)
        body = text.split("\n", 1)[1]            # structure only: not the source-node comment
        h = hashlib.sha1(body.encode()).hexdigest()[:10]
        if h in by_body:
            nk.fn = by_body[h]
            continue
        nk.fn = f"{nk.kernel.name}_{h[:6]}"
        by_body[h] = nk.fn
        if len(units[-1]) >= KERNELS_PER_UNIT:
            units.append([])
            calls.append(set())
        units[-1].append(_render(r, nk, nk.fn, fault).replace("static void", "void", 1))
        calls[-1] |= c_calls(nk.kernel.body)
    decls, declared = [], set()
    for i in sorted(native):
        nk = native[i]
        if nk.fn in declared:
            continue
        declared.add(nk.fn)
        params = [f"{'const ' if p.role == 'in' else ''}{CTYPE[p.dtype]}* restrict {p.name}"
                  for p in nk.kernel.params] + ["const int64_t* restrict d"]
        decls.append(f"void {nk.fn}({', '.join(params)});")
    header = PRELUDE + "\n".join(decls) + "\n"
    # the entry points share the last unit with kernels: a small model is one translation unit
    sources = {f"kernels_{u}.c": header + support_code(sorted(calls[u])) + "\n\n".join(kernels) + "\n"
               for u, kernels in enumerate(units[:-1])}
    lines = [header + support_code(sorted(calls[-1])), "\n\n".join(units[-1]),
             f"/* model {comment(graph.name)}: {len(native)} native nodes */",
             "KILN_EXPORT int kiln_abi_version(void) { return 1; }"]
    if profile:
        lines.append(PROFILE_SUPPORT.replace("NSLOTS", str(max(len(graph.nodes), 1))))
    for i in sorted(native):
        call = _timed(i, native[i], profile)
        lines.append(f"KILN_EXPORT void kiln_node_{i}(void** b, const int64_t* d) {{ {call} }}")
    for s, (a, z) in enumerate(segments):
        lines.append(f"KILN_EXPORT void kiln_segment_{s}(void** b, const int64_t* d) {{")
        for i in range(a, z + 1):
            if native[i].node.outputs[0] in (views or {}):
                lines.append(f"  /* {comment(native[i].kernel.sources[0])}: a view, no copy */")
                continue
            lines.append(f"  /* {comment(native[i].kernel.sources[0])} */")
            lines.append(f"  {_timed(i, native[i], profile)}")
        lines.append("}")
    lines.append("KILN_EXPORT int kiln_run(void** b, const int64_t* d) {")
    if whole:
        lines += [f"  kiln_segment_{s}(b, d);" for s in range(len(segments))]
        lines.append("  return 0;")
    else:
        lines.append("  (void)b; (void)d;\n  return -1;  /* the model has host ops: run it from Python */")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    sources[f"kernels_{len(units) - 1}.c"] = PROFILE_DEFINE + text if profile else text
    return sources, len(by_body)


def _render(r: CRenderer, nk: NodeKernel, name: str, fault: int | None) -> str:
    text = r.kernel(nk.kernel, name)
    return text if nk.index != fault else corrupt(text, nk.kernel)


def _call(nk: NodeKernel) -> str:
    args = [f"({'const ' if p.role == 'in' else ''}{CTYPE[p.dtype]}*)b[{bid}]"
            for p, bid in zip(nk.kernel.params, nk.buffers)]
    return f"{nk.fn}({', '.join(args + ['d'])});"


# --- the instrumented build (kiln profile) -------------------------------------------------------
# clock_gettime needs POSIX declarations under -std=c11; the define opens the unit, before PRELUDE.
PROFILE_DEFINE = "#define _POSIX_C_SOURCE 199309L\n"
PROFILE_SUPPORT = r"""#include <time.h>
/* profiling build: start and end (ns, CLOCK_MONOTONIC) of the last call of each node's kernel */
static int64_t kiln_prof_ns[2 * NSLOTS];
static inline int64_t kiln_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
KILN_EXPORT int64_t* kiln_profile_data(void) { return kiln_prof_ns; }
KILN_EXPORT int kiln_profile_slots(void) { return NSLOTS; }"""


def _timed(i: int, nk: NodeKernel, profile: bool) -> str:
    """The kernel call of node i; in the profiling build, between two clock reads."""
    if not profile:
        return _call(nk)
    return f"kiln_prof_ns[{2 * i}] = kiln_now_ns(); {_call(nk)} kiln_prof_ns[{2 * i + 1}] = kiln_now_ns();"
