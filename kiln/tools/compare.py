"""`kiln compare`: run the compiled model node by node next to a reference and find the first
intermediate tensor that diverges; `bisect_passes` then names the pass that introduced it.

What is compared: every value the optimized graph computes whose name is also a value of the
imported graph (passes keep the names of the values they keep, and name new ones afresh), which
includes the output of every Fused kernel (the end of each fused group). A value the layout pass
moved into the blocked channels layout (`NAME.blk`, [N, C/8, H, W, 8]) is compared, unblocked, with
the reference's NAME. The compiled values come
from kiln/runtime/debug_run.py (the real kernels over the real arena plan, one node at a time); the
reference ones from kiln/tools/reference.py. A value matches when no element is further from
the reference than atol + rtol * (the tensor's largest |expected|): see error_stats.
"""
from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import KilnError
from ..runtime.debug_run import run_node_by_node
from ..runtime.validate import bind_inputs
from .reference import reference_values

RTOL, ATOL = 1e-3, 1e-4          # the model checks' tolerances (benchmarks/check_models.py)


@dataclass
class ValueCheck:
    """One compiled value against its reference."""
    index: int                   # the node's position in the optimized graph
    kernel: str                  # the kernel (k3_fused_conv_relu) or "host <node>"
    sources: list                # the graph nodes it covers ("Conv 'conv1'", ...)
    value: str
    shape: tuple
    dtype: str
    max_abs: float
    max_rel: float
    mean_abs: float
    mismatches: int
    worst: tuple                 # the index of the worst element
    got: float
    expected: float
    scale: float                 # the largest finite |expected|
    tolerance: float             # atol + rtol * scale (0 for integers)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


@dataclass
class Comparison:
    checks: list                 # ValueCheck, in graph order
    skipped: list = field(default_factory=list)    # (value name, why) not comparable
    nodes: int = 0               # nodes in the optimized graph

    @property
    def first(self) -> ValueCheck | None:
        """The first value that diverges, None when all match."""
        return next((c for c in self.checks if not c.ok), None)

    @property
    def diverged(self) -> list:
        return [c for c in self.checks if not c.ok]


def error_stats(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> dict:
    """max abs, max rel, mean abs error, the number of elements off tolerance and the worst one.

    An element is off when |got - expected| > atol + rtol * scale, where scale is the largest
    finite |expected| of the whole tensor: float32 rounding grows with the magnitude of what was
    summed, not with the element itself (a near-zero sum of large terms is as uncertain as they
    are). Infinities and NaN must match exactly, integers and booleans everywhere. The relative error reported divides by
    |expected|, but never by less than atol (no infinities at 0)."""
    kind = np.complex128 if np.iscomplexobj(got) or np.iscomplexobj(expected) else np.float64
    g, w = np.asarray(got, kind), np.asarray(expected, kind)
    if g.size == 0:
        return dict(max_abs=0.0, max_rel=0.0, mean_abs=0.0, mismatches=0, worst=(), got=0.0,
                    expected=0.0, scale=0.0, tolerance=atol)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    mag = np.abs(w)
    finite = np.isfinite(mag)
    scale = float(mag[finite].max()) if finite.any() else 0.0
    tolerance = atol + rtol * scale
    if np.asarray(expected).dtype.kind in "biu" and np.asarray(got).dtype.kind in "biu":
        tolerance = 0.0                          # integers and booleans: exact
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.nan_to_num(np.abs(g - w), nan=np.inf, posinf=np.inf))
        rel = np.where(finite, diff / np.maximum(mag, atol or 1e-30), 0.0)
    bad = diff > tolerance
    flat = int(diff.argmax())
    worst = tuple(int(k) for k in np.unravel_index(flat, g.shape))
    return dict(max_abs=float(diff.max()), max_rel=float(rel.max()),
                mean_abs=float(np.where(np.isfinite(diff), diff, 0).mean()),
                mismatches=int(bad.sum()), worst=worst, got=_scalar(g.reshape(-1)[flat]),
                expected=_scalar(w.reshape(-1)[flat]), scale=scale, tolerance=tolerance)


def _scalar(x):
    return complex(x) if np.iscomplexobj(x) else float(x.real)


def _kernel_of(module, i: int, node) -> tuple[str, list]:
    nk = module._native.program.native.get(i)
    if nk is not None:
        return nk.kernel.name, list(nk.kernel.sources)
    members = node.attrs["body"].nodes if node.op == "Fused" else [node]
    return f"host {node.describe()}", [n.describe() for n in members]


def _blocked_twin(name: str, got: np.ndarray, reference: dict):
    """(reference, got unblocked) for a blocked value `NAME.blk` whose NAME the reference has, else
    (None, got)."""
    from ..ops.layout import from_blocked
    m = re.fullmatch(r"(.+)\.blk(_\d+)?", name)
    want = reference.get(m.group(1)) if m else None
    if want is None or got.ndim != 5 or np.ndim(want) != 4 or np.shape(want)[1] > got.shape[1] * got.shape[-1]:
        return None, got
    return want, from_blocked(got, np.shape(want)[1])


def check_module(module, reference: dict, feeds: dict, rtol: float = RTOL, atol: float = ATOL,
                 progress=None) -> Comparison:
    """Run the compiled `module` (target cpu) node by node on `feeds` ({input name: array}) and
    compare each value that `reference` ({name: array}) has."""
    g = module.graph
    bound = bind_inputs(g, feeds, module.name)
    result = Comparison([], nodes=len(g.nodes))
    if progress is not None:
        progress.stage("compare", len(g.nodes))
    for i, node, outs in run_node_by_node(module._native, bound):
        for v, got in outs.items():
            want = reference.get(v.name)
            if want is None:
                want, got = _blocked_twin(v.name, got, reference)
            if want is None:
                continue
            if np.shape(want) != got.shape:
                result.skipped.append((v.name, f"shape {got.shape}, reference {np.shape(want)}"))
                continue
            kernel, sources = _kernel_of(module, i, node)
            result.checks.append(ValueCheck(i, kernel, sources, v.name, got.shape, str(got.dtype),
                                            **error_stats(got, want, rtol, atol)))
        if progress is not None:
            progress.advance(node.op)
    return result


def compile_quietly(graph, opt_level: int, disable=(), progress=None):
    """compile_cpu with its host-op warnings collected: (module, warning messages)."""
    from ..compiler import compile_cpu
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = compile_cpu(graph, opt_level, disable=disable, progress=progress)
    return m, [str(w.message) for w in caught]


@dataclass
class Run:
    """Everything `kiln compare` computed: the imported graph, the inputs, the reference values,
    the compiled module and the comparison."""
    graph: object
    feeds: dict
    reference: dict
    module: object
    result: Comparison
    warnings: list


def compare(src, reference: str = "interpret", feeds: dict | None = None, rtol: float = RTOL,
            atol: float = ATOL, opt_level: int = 2, seed: int = 0, progress=None) -> Run:
    """Compile `src` for the cpu and compare it with `reference`; inputs not in `feeds` are random."""
    from ..api import to_graph
    from .inputs import random_inputs
    if progress is not None:
        progress.stage("import")
    graph = to_graph(src)
    feeds = random_inputs(graph, feeds, seed)
    module, caught = compile_quietly(graph, opt_level, progress=progress)
    # every value of the imported graph: other pipelines (bisect_passes) keep other values
    wanted = {v.name for n in graph.nodes for v in n.outputs if v is not None}
    ref = reference_values(reference, graph, feeds, wanted, src, progress)
    return Run(graph, feeds, ref, module, check_module(module, ref, feeds, rtol, atol, progress),
               caught)


@dataclass
class BisectStep:
    disabled: str                # the pass switched off ("all" for the empty pipeline, -O0)
    status: str                  # "diverges" | "no divergence" | "invalid"
    detail: str                  # the first divergence, or why the pipeline is invalid


def bisect_passes(run: Run, opt_level: int, rtol: float = RTOL, atol: float = ATOL,
                  progress=None) -> tuple[list, list]:
    """Recompile with each pass of the pipeline switched off in turn (and with all of them off),
    compare again; returns (steps, the passes whose removal makes the divergence disappear)."""
    from ..passes.pipelines import pipeline
    names = pipeline(opt_level)
    steps = []
    for off in names + ["all"]:
        disable = names if off == "all" else [off]
        try:
            module, _ = compile_quietly(run.graph, opt_level, disable, progress)
            result = check_module(module, run.reference, run.feeds, rtol, atol)
        except Exception as e:   # a pipeline left invalid fails anywhere in the compiler
            steps.append(BisectStep(off, "invalid", f"{type(e).__name__}: {e}"))
            continue
        first = result.first
        steps.append(BisectStep(off, "diverges" if first else "no divergence",
                                describe(first) if first else ""))
    culprits = [s.disabled for s in steps if s.status == "no divergence" and s.disabled != "all"]
    return steps, culprits


def describe(c: ValueCheck) -> str:
    return f"node {c.index} {c.kernel} (%{c.value})"


def main(a) -> int:
    """`kiln compare` (arguments parsed by kiln/cli.py): 0 when nothing diverges, 1 when something
    does (KilnError, exit 2, for the rest)."""
    try:
        from rich.console import Console
    except ImportError:
        raise KilnError("kiln compare needs the rich package: pip install 'kiln[tools]'") from None

    from .compare_report import print_bisect, print_comparison
    from .inputs import load_npy
    from .progress import terminal_progress
    with terminal_progress(a.progress) as progress:
        run = compare(a.model, a.reference, load_npy(a.input), a.rtol, a.atol, a.opt_level, a.seed,
                      progress)
    for w in run.warnings:
        print(f"kiln: warning: {w}", file=sys.stderr)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    print_comparison(console, run, f"{a.model}: cpu -O{a.opt_level} vs {a.reference}, "
                                   f"rtol {a.rtol:g}, atol {a.atol:g}")
    if run.result.first is None:
        return 0
    if a.bisect_passes:
        with terminal_progress(a.progress) as progress:
            steps, culprits = bisect_passes(run, a.opt_level, a.rtol, a.atol, progress)
        print_bisect(console, steps, culprits, a.opt_level)
    return 1
