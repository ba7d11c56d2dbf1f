"""The compile driver for native targets: graph -> kernels -> C -> shared library -> Module."""
from __future__ import annotations

import ctypes
import time
import warnings

from .errors import KilnError
from .backend.toolchain import build_library
from .lower.program import lower_graph


class HostOpWarning(UserWarning):
    """Some ops have no native lowering yet and run through their reference implementation."""


class HostOpsError(KilnError):
    """Raised with native_only=True when some nodes would run on the host."""


def lower_for_cpu(graph, c_shapes: dict | None = None, progress=None, profile: bool = False):
    """The graph's kernels plus the C entry points for callers without Python (c_static.py).
    profile=True: the instrumented variant that `kiln profile` runs (timers around each kernel)."""
    from .backend.c_static import static_entry
    program = lower_graph(graph, progress=progress, profile=profile)
    if program.native:
        program.sources["static.c"] = static_entry(program, c_shapes)
    return program


def optimize(graph, opt_level: int, instrument=None, disable=(), progress=None):
    """The graph after the pass pipeline of `opt_level` less the passes named in `disable` (on a
    copy; the input graph is untouched), and the pass manager (for its timings).
    KILN_DUMP_IR=dir dumps the IR after every pass."""
    import os

    from .passes.manager import Instrument, PassManager
    from .passes.pipelines import pipeline
    if instrument is None and os.environ.get("KILN_DUMP_IR"):
        instrument = Instrument(verify=True, dump_dir=os.environ["KILN_DUMP_IR"])
    pm = PassManager(pipeline(opt_level, disable), instrument)
    if not pm.passes:
        return graph, pm
    return pm.run(graph.clone(), progress), pm


def compile_cpu(graph, opt_level: int = 2, threads: int | None = None, native_only: bool = False,
                c_shapes: dict | None = None, disable=(), progress=None):
    """`disable`: pass names switched off; `progress`: a reporter (kiln/tools/progress.py)."""
    from .api import Module
    from .runtime.native import NativeModel
    n_imported = len(graph.nodes)
    t0 = time.perf_counter()
    graph, pm = optimize(graph, opt_level, disable=disable, progress=progress)
    tp = time.perf_counter()
    program = lower_for_cpu(graph, c_shapes, progress)
    t1 = time.perf_counter()
    lib, cached = build_library(program.sources, progress=progress) if program.native else (None, False)
    t2 = time.perf_counter()
    if program.host:
        ops = sorted({graph.nodes[i].op for i in program.host})
        if native_only:
            raise HostOpsError(f"{graph.meta.get('source', graph.name)}: no native lowering for "
                               f"{', '.join(ops)} (native_only=True)")
        warnings.warn(f"{graph.meta.get('source', graph.name)}: {len(program.host)} nodes run on the "
                      f"host (no native lowering yet): {', '.join(ops)}", HostOpWarning, stacklevel=3)
    info = {"compile_seconds": {"passes": round(tp - t0, 4), "lower": round(t1 - tp, 4),
                                "cc": round(t2 - t1, 4)},
            "pass_seconds": {name: round(t, 4) for name, t in pm.timings},
            "cache_hit": cached, "unique_kernels": program.unique_kernels,
            "c_shapes": dict(c_shapes or {}),
            "nodes": {"imported": n_imported, "optimized": len(graph.nodes)}}
    if disable:
        info["disabled_passes"] = sorted(disable)
    native = NativeModel(program, lib, threads)
    info["static_arena_bytes"] = _static_arena_bytes(native)
    return Module(graph, "cpu", opt_level, threads, native=native, compile_info=info)


def _static_arena_bytes(native) -> int | None:
    """The arena the C entry point plans for (symbolic dims bound by c_shapes, 1 by default)."""
    if native.lib is None:
        return None
    f = native.lib.kiln_static_arena_bytes
    f.restype = ctypes.c_int64
    n = f()
    return int(n) if n >= 0 else None


def module_from_library(graph, lib_bytes: bytes | None, manifest: dict, where: str):
    """A cpu Module from a saved artifact: the graph re-lowered, the saved library reused."""
    import hashlib
    import os
    import tempfile

    from .api import Module
    from .backend.toolchain import cache_dir
    from .runtime.artifact import source_hash
    from .runtime.native import NativeModel
    program = lower_for_cpu(graph, manifest.get("c_shapes") or None)
    if source_hash(program.sources) != manifest.get("source_hash"):
        raise KilnError(f"{where}: the saved library does not match its graph (damaged artifact, "
                        "or saved by a different kiln): recompile the model")
    lib = None
    if program.native:
        if not lib_bytes:
            raise KilnError(f"{where}: the artifact has no compiled library")
        folder = os.path.join(cache_dir(), "artifacts")
        os.makedirs(folder, exist_ok=True)
        lib = os.path.join(folder, hashlib.sha256(lib_bytes).hexdigest()[:32] + ".so")
        if not os.path.exists(lib):
            fd, tmp = tempfile.mkstemp(dir=folder)
            with os.fdopen(fd, "wb") as f:
                f.write(lib_bytes)
            os.replace(tmp, lib)
    info = {k: manifest[k] for k in ("compile_seconds", "unique_kernels", "c_shapes") if k in manifest}
    return Module(graph, "cpu", native=NativeModel(program, lib), compile_info=info)
