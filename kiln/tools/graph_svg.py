"""A graph as an SVG picture, laid out by Graphviz (`dot -Tsvg`, Debian package `graphviz`).

One box per node (op, name, output type), edges along the values (weights and other constants are
left out: they would double the picture and say little). A Fused node is a cluster holding its body
ops, titled with its kernel name and kind, so the fusion groups show. Host nodes get a red border.
Graphs past MAX_NODES boxes are cut there, with a note: the layout of thousands of boxes is
neither fast nor readable.
"""
from __future__ import annotations

import re
import shutil
import subprocess

from ..errors import KilnError
from ..ops import REGISTRY

MAX_NODES = 900
ANCHORS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "PackedMatMul", "Attention"}
COLORS = {"anchor": "#f6c48f", "elementwise": "#cfe3f7", "movement": "#e4e4e4", "other": "#ffffff"}


class GraphvizMissing(KilnError):
    """`dot` is not installed."""


def _q(s: str) -> str:
    """A DOT string literal (model names are untrusted)."""
    lines = ["".join(c if c >= " " else " " for c in part) for part in str(s).split("\n")]
    return '"' + "\\n".join(x.replace("\\", "\\\\").replace('"', '\\"') for x in lines) + '"'


def _kind(op: str) -> str:
    if op in ANCHORS:
        return "anchor"
    d = REGISTRY.ops.get(op)
    if d is None:
        return "other"
    if d.scalar is not None:
        return "elementwise"
    if d.reference.__module__ in ("kiln.ops.shape", "kiln.ops.index"):
        return "movement"
    return "other"


def _short(name: str, n: int = 32) -> str:
    return name if len(name) <= n else "..." + name[-(n - 3):]


def graph_dot(graph, kernels: dict | None = None, host=(), title: str = "") -> tuple[str, int]:
    """DOT text of `graph` and the number of boxes drawn. `kernels`: node index -> kernel name
    (titles of the Fused clusters); `host`: indices of nodes that run on the host."""
    kernels, host = kernels or {}, set(host)
    lines = ["digraph G {", f"  graph [rankdir=TB, fontname=\"DejaVu Sans\", fontsize=11, "
             f"label={_q(title)}, labelloc=t, nodesep=0.25, ranksep=0.35];",
             "  node [shape=box, style=\"rounded,filled\", fontname=\"DejaVu Sans\", fontsize=9, "
             "height=0.3, margin=\"0.08,0.03\"];",
             "  edge [arrowsize=0.5, color=\"#777777\"];"]
    source: dict = {}                      # value -> DOT id of the box that makes it
    for k, v in enumerate(graph.inputs):
        source[v] = f"in{k}"
        lines.append(f"  in{k} [label={_q(f'{v.name}: {v.type}')}, shape=ellipse, fillcolor=\"#d9f2d9\"];")
    drawn, cut = 0, None
    for i, node in enumerate(graph.nodes):
        if drawn >= MAX_NODES:
            cut = i
            break
        if node.op == "Fused":
            drawn += _fused(lines, node, i, kernels.get(i, f"node {i}"), source, i in host)
        else:
            _box(lines, f"n{i}", node, i in host)
            _edges(lines, node, f"n{i}", source)
            for v in node.outputs:
                if v is not None:
                    source[v] = f"n{i}"
            drawn += 1
    for k, v in enumerate(graph.outputs):
        if v in source:
            lines.append(f"  out{k} [label={_q(f'{v.name}: {v.type}')}, shape=ellipse, "
                         "fillcolor=\"#f2d9d9\"];")
            lines.append(f"  {source[v]} -> out{k};")
    if cut is not None:
        lines.append(f"  cut [label={_q(f'... {len(graph.nodes) - cut} more nodes not drawn')}, "
                     "shape=note, fillcolor=\"#fff7c0\"];")
    lines.append("}")
    return "\n".join(lines) + "\n", drawn


def _box(lines: list, ident: str, node, on_host: bool) -> None:
    out = next((v for v in node.outputs if v is not None), None)
    label = node.op + (f"\n{_short(node.name)}" if node.name else "") + (f"\n{out.type}" if out else "")
    border = ", color=\"#cc0000\", penwidth=2" if on_host else ""
    lines.append(f"  {ident} [label={_q(label)}, fillcolor=\"{COLORS[_kind(node.op)]}\"{border}];")


def _edges(lines: list, node, ident: str, source: dict) -> None:
    seen = set()
    for v in node.inputs:
        if v is not None and v in source and source[v] not in seen:
            seen.add(source[v])
            lines.append(f"  {source[v]} -> {ident};")


def _fused(lines: list, node, i: int, kernel: str, source: dict, on_host: bool) -> int:
    body = node.attrs["body"]
    inner = dict(source)
    for bv, v in zip(body.inputs, node.inputs):
        if v is not None and v in source:
            inner[bv] = source[v]
    kind = node.attrs.get("kind", "elementwise")
    lines.append(f"  subgraph cluster_{i} {{")
    lines.append(f"    label={_q(f'{kernel} ({kind})')}; style=\"rounded,filled\"; "
                 "fillcolor=\"#fbf3e4\"; color=\"#c58b3c\"; fontsize=9;")
    edges: list = []          # after the cluster: an edge inside it would pull its ends in
    for j, bn in enumerate(body.nodes):
        ident = f"n{i}_{j}"
        _box(lines, ident, bn, on_host)
        _edges(edges, bn, ident, inner)
        for v in bn.outputs:
            if v is not None:
                inner[v] = ident
    lines.append("  }")
    lines += edges
    for bv, v in zip(body.outputs, node.outputs):
        if v is not None and bv in inner:
            source[v] = inner[bv]
    return len(body.nodes)


def render_svg(dot_text: str, prefix: str, timeout: float = 120) -> str:
    """The <svg> element Graphviz draws for `dot_text`; element ids get `prefix` so several
    pictures can share one page."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing("Graphviz's `dot` is not installed (Debian: apt-get install graphviz; "
                              "`make debs` does it)")
    try:
        r = subprocess.run([dot, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KilnError(f"Graphviz took more than {timeout:.0f} s to lay out the graph") from None
    if r.returncode != 0:
        raise KilnError(f"Graphviz failed: {r.stderr[-2000:]}")
    svg = r.stdout[r.stdout.index("<svg"):]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    return re.sub(r'\bid="', f'id="{prefix}-', svg)
