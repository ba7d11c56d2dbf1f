"""The `kiln` command line.

    kiln compile MODEL -o OUT.kiln [--target cpu] [--c-shape N=1]
    kiln run OUT.kiln|MODEL --input name=file.npy [--target cpu]
    kiln ir MODEL [--kernels]     print the graph IR (or each kernel's loop IR and C)
    kiln ops                      list the op set (and which ops have a native lowering)
    kiln profile MODEL [--runs N] [--trace trace.json]
                                  time every kernel inside the native code (instrumented build)
    kiln report MODEL -o report.html
                                  one HTML page: graphs, passes, kernels, roofline, memory plan
    kiln compare MODEL [--reference interpret|onnxruntime] [--bisect-passes]
                                  find the first intermediate tensor that differs from a reference
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import KilnError


def _cmd_ir(a) -> int:
    from .api import to_graph
    graph = to_graph(a.model)
    if a.after:
        from .compiler import optimize
        from .passes.manager import Instrument
        wanted = set(a.after.split(","))
        graph, pm = optimize(graph, a.opt_level, Instrument(verify=True, print_after=wanted))
        known = {p.name for p in pm.passes} | {"all"}
        if not wanted <= known:
            raise KilnError(f"--after {a.after}: not in the opt_level {a.opt_level} pipeline "
                            f"({', '.join(p.name for p in pm.passes) or 'empty'})")
        if a.kernels:
            print("# --- kernels")
    elif not a.kernels:
        print(graph)
        return 0
    if not a.kernels:
        return 0
    from .backend.c import CRenderer
    from .lower.program import lower_graph
    program = lower_graph(graph)
    r = CRenderer()
    for i in sorted(program.native):
        nk = program.native[i]
        print(nk.kernel)
        print(r.kernel(nk.kernel, nk.fn))
        print()
    for i in program.host:
        print(f"# host: {graph.nodes[i].describe()}: {program.host_reasons[i]}")
    return 0


def _parse_shapes(items) -> dict:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise KilnError(f"--c-shape takes SYMBOL=INT, got {item!r}")
        out[name] = int(value)
    return out


def _cmd_compile(a) -> int:
    import warnings
    from .api import compile
    from .tools.progress import terminal_progress
    from .tools.summary import format_summary
    with warnings.catch_warnings(record=True) as caught, terminal_progress(a.progress) as progress:
        warnings.simplefilter("always")
        m = compile(a.model, target=a.target, c_shapes=_parse_shapes(a.c_shape), progress=progress)
    for w in caught:
        print(f"kiln: warning: {w.message}", file=sys.stderr)
    m.save(a.output)
    man = m.manifest
    print(f"{a.output}: target {man['target']}, {len(man['kernels'])} kernels, "
          f"{len(man['host_ops'])} host ops, weights {man['weights_bytes'] / 1e6:.1f} MB")
    print(format_summary(man))
    return 0


def _cmd_compare(a) -> int:
    from .tools.compare import main as compare_main
    return compare_main(a)


def _load_or_compile(path: str, target: str):
    from .api import compile, load
    return load(path) if path.endswith(".kiln") else compile(path, target=target)


def _cmd_run(a) -> int:
    from .tools.inputs import load_npy
    m = _load_or_compile(a.model, a.target)
    feeds = load_npy(a.input)
    for spec, out in zip(m.outputs, m.run(feeds)):
        arr = np.asarray(out)
        print(f"{spec.name}: {arr.dtype}{list(arr.shape)}")
        print(np.array2string(arr, threshold=20, edgeitems=3))
        if a.save:
            np.save(f"{a.save}{spec.name}.npy", arr)
    return 0


def _cmd_ops(a) -> int:
    from .ops import REGISTRY
    native = 0
    for d in REGISTRY:
        lowered = d.lower is not None or d.scalar is not None
        native += lowered
        print(f"{d.name:28} {'native' if lowered else 'host  '}  {d.doc}")
    print(f"{len(REGISTRY)} ops, {native} with a native lowering")
    return 0


def _cmd_profile(a) -> int:
    from .tools.inputs import load_npy
    from .tools.profile import profile
    from .tools.profile_table import print_profile
    p = profile(a.model, runs=a.runs, threads=a.threads, opt_level=a.opt_level,
                inputs=load_npy(a.input), measure_peak=a.measure_peak)
    print_profile(p, top=a.top)
    if a.trace:
        from .tools.trace import write_trace
        write_trace(p, a.trace)
        print(f"trace: {a.trace} ({len(p.kernels)} kernels x {p.runs} runs; open it in Perfetto "
              "or chrome://tracing)")
    return 0


def _cmd_report(a) -> int:
    from .tools.inputs import load_npy
    from .tools.report import write_report
    size = write_report(a.model, a.output, runs=a.runs, threads=a.threads, opt_level=a.opt_level,
                        inputs=load_npy(a.input), measure_peak=a.measure_peak)
    print(f"{a.output}: {size / 1e3:.0f} kB")
    return 0


def _tool_args(s) -> None:
    """The options kiln profile and kiln report share."""
    s.add_argument("model", help="an .onnx model (compiled now) or a .kiln artifact")
    s.add_argument("--runs", type=int, default=10, help="timed runs, after one warm-up (default 10)")
    s.add_argument("--threads", type=int, help="OpenMP threads (default: all cores)")
    s.add_argument("-O", "--opt-level", type=int, default=2, choices=[0, 1, 2, 3],
                   help="optimization level for an .onnx model (default 2)")
    s.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="an input (default: random, symbolic dims 1)")
    s.add_argument("--measure-peak", action="store_true",
                   help="measure the machine's peak again (it is measured once and cached)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kiln", description="kiln, a deep learning compiler")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("compile", help="compile a model into a .kiln artifact")
    s.add_argument("model")
    s.add_argument("-o", "--output", required=True, help="the .kiln file to write")
    s.add_argument("--target", default="cpu", choices=["cpu", "interpret"])
    s.add_argument("--c-shape", action="append", metavar="SYMBOL=INT",
                   help="bind a symbolic dim for the C entry point (default 1)")
    s.add_argument("--progress", action="store_true",
                   help="show the progress bars even when stderr is not a terminal")
    s.set_defaults(fn=_cmd_compile)
    s = sub.add_parser("compare", help="compare every intermediate tensor of the compiled model "
                       "with a reference; exit 1 on a divergence",
                       description="Run the compiled model (cpu) node by node and a reference on "
                       "the same inputs, compare every value both compute, and report the first "
                       "one off tolerance (exit status 1; 0 when all match).")
    s.add_argument("model", help="an ONNX model")
    s.add_argument("--reference", default="interpret", choices=["interpret", "onnxruntime"],
                   help="the interpreter on the unoptimized graph (default), or onnxruntime")
    s.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="an input (default: random: floats N(0,1), integers in [0,2), "
                   "symbolic dims 1)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    s.add_argument("--rtol", type=float, default=1e-3,
                   help="tolerance relative to each tensor's largest value (default 1e-3)")
    s.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    s.add_argument("--bisect-passes", action="store_true",
                   help="on a divergence, recompile with each pass switched off in turn and name "
                   "the pass whose removal makes it disappear")
    s.add_argument("-O", "--opt-level", type=int, default=2, choices=[0, 1, 2, 3],
                   help="optimization level of the compiled model (default 2)")
    s.add_argument("--progress", action="store_true",
                   help="show the progress bars even when stderr is not a terminal")
    s.set_defaults(fn=_cmd_compare)
    s = sub.add_parser("ir", help="print the graph IR of a model")
    s.add_argument("model")
    s.add_argument("--kernels", action="store_true", help="print each kernel's loop IR and C")
    s.add_argument("--after", metavar="PASS[,PASS]|all",
                   help="print the IR after these passes of the pipeline (verified after each pass)")
    s.add_argument("-O", "--opt-level", type=int, default=2, choices=[0, 1, 2, 3])
    s.set_defaults(fn=_cmd_ir)
    s = sub.add_parser("run", help="run a model (.onnx or .kiln) on inputs from .npy files")
    s.add_argument("model")
    s.add_argument("--input", action="append", metavar="NAME=FILE.npy")
    s.add_argument("--target", default="cpu", choices=["cpu", "interpret"])
    s.add_argument("--save", metavar="PREFIX", help="also save each output as PREFIX<name>.npy")
    s.set_defaults(fn=_cmd_run)
    s = sub.add_parser("ops", help="list the supported ops")
    s.set_defaults(fn=_cmd_ops)
    s = sub.add_parser("profile", help="time every kernel of a model (.onnx or .kiln)",
                       description="Build an instrumented variant of the model (timers around each "
                       "kernel in the native code), run it, and print the kernels sorted by time "
                       "with their achieved GFLOP/s, GB/s and fraction of the machine's peak.")
    _tool_args(s)
    s.add_argument("--trace", metavar="TRACE.json", help="also write a Chrome trace (Perfetto, "
                   "chrome://tracing): one event per kernel per run")
    s.add_argument("--top", type=int, default=25, help="kernels to list (default 25; 0: all)")
    s.set_defaults(fn=_cmd_profile)
    s = sub.add_parser("report", help="write one self-contained HTML report of a compiled model",
                       description="Compile and profile a model and write one HTML file (no network "
                       "needed to view it): the graph before and after optimization, each pass, "
                       "each kernel with its C and profile, a roofline plot, the memory plan, "
                       "the host ops.")
    _tool_args(s)
    s.add_argument("-o", "--output", required=True, help="the .html file to write")
    s.set_defaults(fn=_cmd_report)
    a = p.parse_args(argv)
    try:
        return a.fn(a)
    except KilnError as e:
        print(f"kiln: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
