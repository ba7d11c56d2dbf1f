"""The summary `kiln compile` prints at the end, as aligned text, from a module's manifest (which
carries compile_info: node counts, stage and pass timings, cache hit, the C entry's arena)."""
from __future__ import annotations

SLOWEST = 3          # passes listed


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} bytes)"
    return f"{n} bytes"


def summary_rows(man: dict) -> list[tuple[str, str]]:
    rows = []
    nodes = man.get("nodes", {})
    if "optimized" in nodes:
        rows.append(("nodes", f"{nodes['imported']} imported -> {nodes['optimized']} optimized"))
    elif nodes:
        rows.append(("nodes", f"{nodes['imported']} (not optimized: target {man['target']})"))
    if man["target"] == "cpu":
        rows.append(("kernels", f"{len(man['kernels'])} ({man.get('unique_kernels', '?')} unique)"))
        hosts = man.get("host_nodes", [])
        rows.append(("host ops", f"{len(hosts)} nodes: {', '.join(man['host_ops'])}" if hosts else "none"))
        arena = man.get("static_arena_bytes")
        dims = ", ".join(f"{k}={v}" for k, v in man.get("c_shapes", {}).items()) or "symbolic dims = 1"
        rows.append(("arena", f"{_bytes(arena)} (the C entry's plan, {dims})" if arena is not None
                     else "no static plan for the C entry"))
    rows.append(("weights", _bytes(man["weights_bytes"])))
    stages = man.get("compile_seconds", {})
    if stages:
        cache = {True: ", C compiler cache hit", False: ", C compiler cache miss"}.get(man.get("cache_hit"), "")
        rows.append(("compile time", f"{sum(stages.values()):.2f} s: "
                     + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()) + cache))
    passes = sorted(man.get("pass_seconds", {}).items(), key=lambda kv: -kv[1])[:SLOWEST]
    if passes:
        rows.append(("slowest passes", ", ".join(f"{n} {t:.3f} s" for n, t in passes)))
    return rows


def format_summary(man: dict) -> str:
    rows = summary_rows(man)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
