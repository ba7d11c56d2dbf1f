"""The terminal view of a profile (rich): kernels sorted by time, then the end-to-end lines."""
from __future__ import annotations

import os

from ..errors import KilnError
from .profile import KernelRecord, Profile


def fmt_time(ms: float) -> str:
    return f"{ms:.2f} ms" if ms >= 1 else f"{ms * 1000:.1f} us"


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if x >= 10 else f"{x:.2f}"


def fmt_peak(k: KernelRecord, p: Profile) -> str:
    f = k.of_peak(p.peak)
    return "-" if f is None else f"{100 * f[0]:.0f}% {f[1]}"


def threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def sources_text(k: KernelRecord, n: int = 2) -> str:
    names = [s.split(" ", 1)[1].strip("'") if " " in s else s for s in k.sources]
    text = ", ".join(names[:n])
    return text + (f" +{len(names) - n}" if len(names) > n else "")


def summary_lines(p: Profile) -> list[str]:
    e2e, ks = p.e2e_ms, p.kernel_sum_ms
    lines = [f"end to end: {fmt_time(e2e)} uninstrumented (median of {p.runs} runs, best "
             f"{fmt_time(min(p.e2e_ns) / 1e6)})",
             f"kernels:    {fmt_time(ks)} summed, {100 * ks / e2e:.1f}% of end to end (best "
             f"{fmt_time(min(p.kernel_sums_ns()) / 1e6)}; instrumented run {fmt_time(p.instrumented_ms)})",
             f"peak:       {p.peak.gflops:.0f} GFLOP/s FMA ({threads(p.peak.threads)}, "
             f"{p.peak.vector_bits}-bit), {p.peak.gbps:.0f} GB/s copy (measured once, cached)"]
    if p.host_nodes:
        ops = sorted({op for _, op, _ in p.host_nodes})
        lines.append(f"host ops:   {len(p.host_nodes)} nodes ({', '.join(ops)}), timed only in "
                     "the end-to-end figure")
    return lines


def print_profile(p: Profile, top: int = 25, console=None) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        raise KilnError("kiln profile prints with rich: pip install 'kiln[tools]'") from None
    if console is None:
        console = Console()
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console = Console(width=150)          # a pipe or a file: keep the table's rows whole
    inputs = ", ".join(f"{k}{v}" for k, v in p.inputs.items())
    t = Table(title=f"{p.model}: {len(p.kernels)} kernels, inputs {inputs}, {p.runs} runs, "
                    f"{threads(p.threads)}", title_justify="left")
    ranked = p.by_time()
    shown = ranked if top <= 0 else ranked[:top]
    rows = [[str(n), k.name, sources_text(k), fmt_time(k.mean_ms), f"{100 * p.share(k):.1f}%",
             fmt_rate(k.gflops), fmt_rate(k.gbps), fmt_peak(k, p)] for n, k in enumerate(shown, 1)]
    rest = ranked[len(shown):]
    if rest:
        rows.append(["", f"... {len(rest)} more kernels", "", fmt_time(sum(k.mean_ms for k in rest)),
                     f"{100 * sum(p.share(k) for k in rest):.1f}%", "", "", ""])
    headers = ["#", "kernel", "source nodes", "time", "share", "GFLOP/s", "GB/s", "of peak"]
    widths = [max([len(h)] + [len(r[c]) for r in rows]) for c, h in enumerate(headers)]
    # on a narrow terminal only the source nodes column gives up room
    widths[2] = max(12, min(48, console.width - 3 * len(headers) - 1 - sum(widths) + widths[2]))
    for c, head in enumerate(headers):
        t.add_column(head, justify="left" if c in (1, 2) else "right", no_wrap=True,
                     overflow="ellipsis", min_width=widths[c], max_width=widths[c])
    for r in rows:
        t.add_row(*r)
    console.print(t)
    for line in summary_lines(p):
        console.print(line, highlight=False)
