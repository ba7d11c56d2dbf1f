"""`kiln report MODEL -o report.html`: one self-contained HTML page about a compiled model.

Sections: a summary; the graph before and after optimization (Graphviz, fusion groups as clusters);
each pass with its time and what it changed (node count, ops added and removed); each kernel with
its profile figures and its generated C; a roofline plot; the memory plan of the arena over time;
the host ops. The pipeline is run a pass at a time on a copy of the imported graph for the pass
table; the model itself is compiled as `kiln.compile` does and profiled by kiln/tools/profile.py.
"""
from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from html import escape

from ..errors import KilnError
from .graph_svg import ANCHORS, graph_dot, render_svg
from .profile import Profile, profile
from .profile_table import fmt_peak, fmt_rate, fmt_time, sources_text, threads
from .report_page import page, table, zoom_box
from .svg_plots import fmt_bytes, memory_plan, roofline


@dataclass
class PassStep:
    name: str
    doc: str
    seconds: float
    nodes_before: int
    nodes_after: int
    added: Counter
    removed: Counter


def pass_steps(graph, opt_level: int) -> list[PassStep]:
    """The opt_level pipeline, one pass at a time on a copy of `graph`: time and op-count diff."""
    from ..passes.manager import PASSES, PassManager
    from ..passes.pipelines import pipeline
    g, steps = graph.clone(), []
    for name in pipeline(opt_level):
        before = Counter(n.op for n in g.nodes)
        pm = PassManager([name])
        g = pm.run(g)
        after = Counter(n.op for n in g.nodes)
        steps.append(PassStep(name, PASSES[name].doc, pm.timings[0][1], sum(before.values()),
                              sum(after.values()), after - before, before - after))
    return steps


def build_report(model, runs: int = 10, threads: int | None = None, opt_level: int = 2,
                 inputs: dict | None = None, measure_peak: bool = False) -> str:
    """The report's HTML for `model` (an ONNX path or anything kiln.compile takes, or a .kiln)."""
    from ..api import compile, load, to_graph
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).endswith(".kiln"):
        imported, m = None, load(model)        # the artifact holds the optimized graph only
        steps = []
    else:
        t = time.perf_counter()
        imported = to_graph(model)
        t_import = time.perf_counter() - t
        steps = pass_steps(imported, opt_level)
        m = compile(imported, target="cpu", opt_level=opt_level, threads=threads)
        m.compile_info["compile_seconds"] = {**m.compile_info.get("compile_seconds", {}),
                                             "import": round(t_import, 4)}
    if m._native is None:
        raise KilnError(f"{m.name}: kiln report needs a model compiled for target 'cpu'")
    prof = profile(m, runs=runs, threads=threads, inputs=inputs, measure_peak=measure_peak)
    program = m._native.program
    kernels = {i: nk.kernel.name for i, nk in program.native.items()}
    sections = [
        ("summary", "Summary", _summary(m, imported, prof)),
        ("graphs", "Graph before and after optimization", _graphs(imported, m.graph, kernels,
                                                                 program.host)),
        ("passes", "Passes", _passes(steps, m)),
        ("kernels", "Kernels", _kernels(program, prof)),
        ("roofline", "Roofline", _roofline(prof)),
        ("memory", "Memory plan", _memory(program, prof)),
        ("host", "Host ops", _host(m.graph, program)),
    ]
    subtitle = (f"opt_level {m.opt_level}, {len(program.native)} kernels, inputs "
                + ", ".join(f"{k}{v}" for k, v in prof.inputs.items()))
    return page(f"kiln report: {m.name}", subtitle, sections)


def write_report(model, path, **kw) -> int:
    """Write the report to `path`; returns its size in bytes."""
    html = build_report(model, **kw)
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    return len(html.encode("utf-8"))


def _summary(m, imported, p: Profile) -> str:
    man = m.manifest
    info = m.compile_info
    secs = info.get("compile_seconds", {})
    rows = [("model", m.name),
            ("nodes", (f"{len(imported.nodes)} imported -> " if imported else "") +
             f"{len(m.graph.nodes)} after optimization"),
            ("kernels", f"{len(man['kernels'])} ({info.get('unique_kernels', '?')} distinct C functions)"),
            ("host ops", ", ".join(man["host_ops"]) or "none"),
            ("weights", fmt_bytes(man["weights_bytes"])),
            ("arena", fmt_bytes(m._native.last_arena_bytes)),
            ("compile time", ", ".join(f"{k} {v:.2f} s" for k, v in secs.items()) or "-"),
            ("end to end", f"{fmt_time(p.e2e_ms)} (median of {p.runs} runs, {threads(p.threads)})"),
            ("kernels summed", f"{fmt_time(p.kernel_sum_ms)} ({100 * p.kernel_sum_ms / p.e2e_ms:.1f}% "
                               "of end to end, instrumented build)"),
            ("machine peak", f"{p.peak.gflops:.0f} GFLOP/s FMA, {p.peak.gbps:.0f} GB/s copy")]
    return table(["", ""], [[escape(k), escape(str(v))] for k, v in rows], cls="kv")


def _graphs(imported, graph, kernels: dict, host: list) -> str:
    parts = []
    if imported is not None:
        dot, n = graph_dot(imported, title=f"imported: {len(imported.nodes)} nodes")
        parts.append(("before", f"Before ({len(imported.nodes)} nodes)", render_svg(dot, "before")))
    dot, n = graph_dot(graph, kernels, host, title=f"optimized: {len(graph.nodes)} nodes")
    parts.append(("after", f"After ({len(graph.nodes)} nodes; fused groups are the boxed clusters, "
                           "named after their kernel)", render_svg(dot, "after")))
    legend = ('<p class="note">Orange: GEMM/conv anchors, blue: elementwise, grey: data movement; '
              'a red border: runs on the host. Constants (weights) are not drawn.</p>')
    cols = "".join(f'<div><h3>{escape(head)}</h3>{zoom_box("graph-" + key, svg)}</div>'
                   for key, head, svg in parts)
    return legend + f'<div class="cols">{cols}</div>'


def _passes(steps: list, m) -> str:
    if not steps:
        secs = m.compile_info.get("pass_seconds", {})
        rows = [[escape(k), f"{1e3 * v:.1f}"] for k, v in secs.items()]
        return ('<p class="note">A .kiln artifact holds the optimized graph only: the passes\' '
                'changes are not known, their times are from the manifest.</p>'
                + table(["pass", "time (ms)"], rows, num_cols=(1,)))

    def ops(c: Counter, cls: str, sign: str) -> str:
        return " ".join(f'<span class="{cls}">{sign}{n} {escape(op)}</span>'
                        for op, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
    rows = [[f"<b>{escape(s.name)}</b><br><span class=\"note\">{escape(s.doc)}</span>",
             f"{1e3 * s.seconds:.1f}", str(s.nodes_before), str(s.nodes_after),
             ops(s.added, "added", "+") + " " + ops(s.removed, "removed", "-") or "no change"]
            for s in steps]
    return table(["pass", "time (ms)", "nodes before", "nodes after", "ops added / removed"], rows,
                 num_cols=(1, 2, 3), table_id="pass-table")


def _kernels(program, p: Profile) -> str:
    from ..backend.c import CRenderer
    r = CRenderer()
    first_of: dict = {}
    rows = []
    for rank, k in enumerate(p.by_time(), 1):
        nk = program.native[k.index]
        if k.fn in first_of:
            code = f'<p class="note">same C function as {escape(first_of[k.fn])}</p>'
        else:
            first_of[k.fn] = k.name
            code = f'<pre class="code">{escape(r.kernel(nk.kernel, nk.fn))}</pre>'
        detail = (f"<details><summary>{escape(k.name)}</summary>"
                  f"<p class=\"note\">{escape('; '.join(k.sources))}<br>in: "
                  f"{escape(', '.join(k.shapes['inputs']))}<br>out: "
                  f"{escape(', '.join(k.shapes['outputs']))}</p>{code}</details>")
        ai = f"{k.intensity:.2f}" if k.intensity else "-"
        rows.append([str(rank), detail, escape(sources_text(k)), escape(fmt_time(k.mean_ms)),
                     f"{100 * p.share(k):.1f}%", fmt_rate(k.gflops), fmt_rate(k.gbps), ai,
                     escape(fmt_peak(k, p))])
    return ('<p class="note">Sorted by time (mean of the profiled runs, instrumented build); click '
            'a kernel for its source nodes, shapes and generated C. "of peak": achieved GFLOP/s '
            'over the roofline at the kernel\'s intensity (fma: compute bound, mem: memory bound).'
            '</p><input id="kernel-filter" class="filter" type="search" placeholder="filter kernels">'
            + table(["#", "kernel", "source nodes", "time", "share", "GFLOP/s", "GB/s",
                     "FLOP/byte", "of peak"], rows, num_cols=(0, 3, 4, 5, 6, 7, 8),
                    table_id="kernel-table"))


def _family(k) -> str:
    ops = [s.split(" ", 1)[0] for s in k.sources]
    anchor = next((op for op in ops if op in ANCHORS), None)
    return anchor or (ops[0] if len(ops) == 1 else "fused elementwise")


def _roofline(p: Profile) -> str:
    pts = [(f"{k.name}: {fmt_time(k.mean_ms)}, {fmt_rate(k.gflops)} GFLOP/s, "
            f"{k.intensity:.2f} FLOP/byte", k.intensity, k.gflops, p.share(k), _family(k))
           for k in p.kernels if k.gflops and k.intensity]
    if not pts:
        return '<p class="note">No kernel with a FLOP count and a time.</p>'
    return ('<p class="note">Each kernel at its arithmetic intensity (FLOPs over the bytes of its '
            'inputs and outputs) and achieved GFLOP/s; the area of a dot is its share of the time. '
            'The red lines are the measured peaks: copy bandwidth times intensity, and the FMA peak. '
            'Dots above the memory line read their data from cache.</p>'
            + roofline(pts, p.peak.gflops, p.peak.gbps))


def _memory(program, p: Profile) -> str:
    from ..runtime.plan import NoStaticPlan, static_plan
    g = program.graph
    shapes_in = {v: tuple(p.inputs[v.name]) for v in g.inputs if v.name in p.inputs}
    try:
        plan = static_plan(program, shapes_in)
    except NoStaticPlan as e:
        return f'<p class="note">No static plan at these inputs: {escape(str(e))}</p>'
    first, last = g.use_spans()
    blocks = []
    for v, off in sorted(plan.offsets.items(), key=lambda kv: first[kv[0]]):
        size = v.type.dtype.numpy.itemsize * math.prod(plan.shapes[v])
        a, z = first[v], last.get(v, first[v])
        label = (f"%{v.name}: {v.type.dtype.name}{list(plan.shapes[v])}, {fmt_bytes(size)} at "
                 f"offset {off}, nodes {a}..{z}")
        blocks.append((label, off, size, a, z))
    return (f'<p class="note">The arena: {fmt_bytes(plan.arena_bytes)} for {len(blocks)} intermediate '
            'values, placed by lifetime (kiln/runtime/plan.py); each rectangle is one value, from '
            'the node that writes it to its last reader. Inputs, outputs and weights live outside '
            'the arena.</p>' + memory_plan(blocks, len(g.nodes), plan.arena_bytes))


def _host(graph, program) -> str:
    if not program.host:
        return '<p id="host-none">None: every node runs in the native library.</p>'
    rows = [[str(i), escape(graph.nodes[i].op), escape(graph.nodes[i].name or ""),
             escape(program.host_reasons[i])] for i in program.host]
    return ('<p class="note">These nodes run through their numpy reference between native '
            'segments.</p>' + table(["node", "op", "name", "why"], rows, table_id="host-table"))
