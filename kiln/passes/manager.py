"""The pass manager: named Graph -> Graph passes run as an explicit pipeline, with instrumentation.

A pass is a function `fn(graph) -> graph`, registered with `@graph_pass("name")`; passes may mutate
the graph they get and return it (every kiln pass documents that it does). Pipelines per opt_level
are plain lists of names in pipelines.py.

Instrumentation (one `Instrument` object, passed in, no globals):
- timing of every pass (`PassManager.timings`, shown in the compile summary);
- `verify=True` runs the IR verifier after every pass;
- `dump_dir` (or the KILN_DUMP_IR environment variable, read once by the caller) writes the IR
  after each pass as `NNN_<pass>.kir`;
- `print_after` = a set of pass names (or {"all"}) prints the IR after those passes.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import KilnError
from ..ir.graph import Graph

PASSES: dict[str, "Pass"] = {}


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[Graph], Graph]
    doc: str = ""

    def __call__(self, graph: Graph) -> Graph:
        return self.fn(graph)


def graph_pass(name: str):
    """Register a pass under `name` (each name once)."""
    def wrap(fn):
        if name in PASSES:
            raise AssertionError(f"pass {name!r} registered twice")
        p = Pass(name, fn, (fn.__doc__ or "").strip().split("\n")[0])
        PASSES[name] = p
        return p
    return wrap


@dataclass
class Instrument:
    verify: bool = False
    dump_dir: str | None = None
    print_after: set = field(default_factory=set)
    out: Callable[[str], None] = print


class PassManager:
    def __init__(self, names: list[str], instrument: Instrument | None = None):
        unknown = [n for n in names if n not in PASSES]
        if unknown:
            raise KilnError(f"unknown pass {', '.join(unknown)}; known: {', '.join(sorted(PASSES))}")
        self.passes = [PASSES[n] for n in names]
        self.instrument = instrument or Instrument()
        self.timings: list[tuple[str, float]] = []

    def run(self, graph: Graph, progress=None) -> Graph:
        """Run the pipeline; `progress` (kiln/tools/progress.py) gets one step per pass."""
        from ..ir.verify import verify
        ins = self.instrument
        if ins.dump_dir:
            os.makedirs(ins.dump_dir, exist_ok=True)
            self._dump(graph, 0, "input")
        if progress is not None:
            progress.stage("passes", len(self.passes))
        for k, p in enumerate(self.passes, 1):
            t = time.perf_counter()
            graph = p(graph)
            self.timings.append((p.name, time.perf_counter() - t))
            if progress is not None:
                progress.advance(p.name)
            if ins.verify:
                verify(graph)
            if ins.dump_dir:
                self._dump(graph, k, p.name)
            if p.name in ins.print_after or "all" in ins.print_after:
                ins.out(f"# --- IR after {p.name}\n{graph}")
        return graph

    def _dump(self, graph: Graph, k: int, name: str):
        path = os.path.join(self.instrument.dump_dir, f"{k:03d}_{name}.kir")
        with open(path, "w") as f:
            f.write(str(graph) + "\n")
