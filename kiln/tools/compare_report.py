"""How `kiln compare` prints its findings: the first divergence with its error statistics, a table
of the nodes around it (rich), and the pass bisection."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text

AROUND = 3           # table rows before and after the first divergence


def _g(x: float) -> str:
    return f"{x:.3g}"


def print_comparison(console, run, title: str) -> None:
    say = lambda s="": console.print(s, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    r = run.result
    ins = ", ".join(f"{k} {x.dtype}{list(x.shape)}" for k, x in run.feeds.items())
    say(f"{title}; inputs: {ins}")
    skipped = f"; {len(r.skipped)} not comparable (shape changed)" if r.skipped else ""
    say(f"compared {len(r.checks)} values computed by {r.nodes} nodes{skipped}")
    first = r.first
    if first is None:
        if r.checks:
            worst = max(r.checks, key=lambda c: c.max_abs)
            scaled = max(c.max_abs / c.scale if c.scale else c.max_abs for c in r.checks)
            say(f"no divergence: max abs error {_g(worst.max_abs)} (%{worst.value}); the largest "
                f"error relative to its tensor's largest value is {_g(scaled)}")
        else:
            say("no divergence (nothing to compare)")
        return
    size = 1
    for n in first.shape:
        size *= n
    say(f"DIVERGENCE at node {first.index}: {first.kernel}")
    say(f"  source nodes: {', '.join(first.sources)}")
    say(f"  value %{first.value}: {first.dtype}{list(first.shape)}")
    say(f"  max abs {_g(first.max_abs)}, max rel {_g(first.max_rel)}, mean abs {_g(first.mean_abs)}, "
        f"mismatches {first.mismatches} of {size} (tolerance {_g(first.tolerance)})")
    say(f"  worst at {list(first.worst)}: got {first.got:.6g}, expected {first.expected:.6g}")
    say(f"  {len(r.diverged)} of {len(r.checks)} compared values diverge (later ones may only "
        "inherit the error)")
    k = r.checks.index(first)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col, right in (("node", True), ("kernel", False), ("value", False), ("shape", False),
                       ("max abs", True), ("max rel", True), ("mismatches", True), ("", False)):
        table.add_column(col, justify="right" if right else "left")
    for c in r.checks[max(0, k - AROUND): k + AROUND + 1]:
        mark = "<- first" if c is first else ("ok" if c.ok else "diverges")
        table.add_row(*(Text(s) for s in (str(c.index), c.kernel, "%" + c.value, str(list(c.shape)),
                                          _g(c.max_abs), _g(c.max_rel), str(c.mismatches), mark)),
                      style="red" if not c.ok else None)
    console.print(table)


def print_bisect(console, steps: list, culprits: list, opt_level: int) -> None:
    say = lambda s="": console.print(s, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"bisect: the -O{opt_level} pipeline compiled again with one pass switched off at a time")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("pass off", "result", "first divergence / why"):
        table.add_column(col)
    for s in steps:
        name = "all (-O0)" if s.disabled == "all" else s.disabled
        table.add_row(Text(name), Text(s.status), Text(s.detail))
    console.print(table)
    if culprits:
        say(f"the divergence disappears without: {', '.join(culprits)}")
    elif steps and steps[-1].status == "diverges":
        say("no single pass explains it, and it remains with every pass off: the lowering of the "
            "diverging node, not a pass")
    else:
        say("no single pass explains it: it disappears only with several passes off")
