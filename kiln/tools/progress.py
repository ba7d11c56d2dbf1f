"""Compile progress: what the compiler reports as it goes, and a rich progress bar that shows it.

The compiler never prints. A caller that wants progress passes a reporter down,
`kiln.compile(src, progress=p)`, and the stages call it:

    p.stage(name, total)   a stage begins: "import", "passes" (one step per pass), "kernels" (one
                           per graph node lowered), "cc" (one per C translation unit compiled);
                           total is None when unknown. The previous stage ends.
    p.advance(detail)      one step of the current stage is done (the C compiler's worker threads
                           call it too); detail names it (the pass, the op, the unit).
    p.done(note)           the current stage ends early ("cache hit").

Library use passes nothing and gets no output and no cost. `kiln compile` (and compare) show a
`RichProgress` on stderr when stderr is a terminal, or always with --progress.
"""
from __future__ import annotations

import importlib.util
import sys
import threading
from contextlib import contextmanager

from ..errors import KilnError


class RichProgress:
    """A reporter drawing one bar per stage (rich.progress); use it as a context manager."""

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)
        self.console = console or Console(stderr=True)
        self._bar = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                             console=self.console)
        self._task = None
        self._lock = threading.Lock()

    def __enter__(self) -> "RichProgress":
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done()
        self._bar.stop()

    def stage(self, name: str, total: int | None = None) -> None:
        with self._lock:
            self._end("")
            self._task = self._bar.add_task(name, total=total, detail="")

    def advance(self, detail: str = "") -> None:
        with self._lock:
            if self._task is not None:
                self._bar.update(self._task, advance=1, detail=detail)

    def done(self, note: str = "") -> None:
        with self._lock:
            self._end(note)

    def _end(self, note: str) -> None:
        if self._task is None:
            return
        task = next(t for t in self._bar.tasks if t.id == self._task)
        n = task.total or task.completed or 1
        self._bar.update(self._task, total=n, completed=n, detail=note)
        self._task = None


@contextmanager
def terminal_progress(force: bool = False):
    """A RichProgress on stderr when stderr is a terminal (or `force`), else None (also when rich
    is not installed, unless forced)."""
    if not (force or sys.stderr.isatty()):
        yield None
        return
    if importlib.util.find_spec("rich") is None:
        if force:
            raise KilnError("--progress needs the rich package: pip install 'kiln[tools]'")
        yield None
        return
    with RichProgress() as p:
        yield p
