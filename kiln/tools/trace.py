"""A profile as Chrome trace JSON (the "traceEvents" format that Perfetto and chrome://tracing open).

One complete event ("ph": "X") per kernel per run, nested inside one event per run; times in
microseconds from the start of the first run (the clock is CLOCK_MONOTONIC, the native timers'
own); pid 1 is the model, tid 1 the thread that called it (the kernels' own OpenMP threads work
inside each event).
"""
from __future__ import annotations

import json

from .profile import Profile


def chrome_trace(p: Profile) -> dict:
    events = []
    origin = p.run_starts_ns[0] if p.run_starts_ns else 0
    for r, start in enumerate(p.run_starts_ns):
        base = (start - origin) / 1e3
        events.append({"name": f"run {r}", "cat": "run", "ph": "X", "ts": base,
                       "dur": p.instrumented_ns[r] / 1e3, "pid": 1, "tid": 1,
                       "args": {"model": p.model, "inputs": p.inputs}})
        for k in sorted(p.kernels, key=lambda k: k.starts_ns[r]):
            if not k.times_ns[r]:
                continue               # did not run (not reached on this run)
            events.append({"name": k.name, "cat": k.op, "ph": "X",
                           "ts": base + k.starts_ns[r] / 1e3, "dur": k.times_ns[r] / 1e3,
                           "pid": 1, "tid": 1,
                           "args": {"sources": k.sources, "inputs": k.shapes["inputs"],
                                    "outputs": k.shapes["outputs"], "function": k.fn,
                                    "node": k.index, "run": r}})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"model": p.model, "runs": p.runs, "threads": p.threads}}


def write_trace(p: Profile, path) -> None:
    with open(path, "w") as f:
        json.dump(chrome_trace(p), f)
