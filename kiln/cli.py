"""The `kiln` command line.

    kiln compile MODEL -o OUT.kiln [--target cpu] [--c-shape N=1]
    kiln run OUT.kiln|MODEL --input name=file.npy [--target cpu]
    kiln ir MODEL [--kernels]     print the graph IR (or each kernel's loop IR and C)
    kiln ops                      list the op set (and which ops have a native lowering)
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = compile(a.model, target=a.target, c_shapes=_parse_shapes(a.c_shape))
    for w in caught:
        print(f"kiln: warning: {w.message}", file=sys.stderr)
    m.save(a.output)
    man = m.manifest
    print(f"{a.output}: target {man['target']}, {len(man['kernels'])} kernels, "
          f"{len(man['host_ops'])} host ops, weights {man['weights_bytes'] / 1e6:.1f} MB")
    return 0


def _load_or_compile(path: str, target: str):
    from .api import compile, load
    return load(path) if path.endswith(".kiln") else compile(path, target=target)


def _cmd_run(a) -> int:
    m = _load_or_compile(a.model, a.target)
    feeds = {}
    for item in a.input or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise KilnError(f"--input takes name=file.npy, got {item!r}")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise KilnError(f"cannot read input {name!r} from {path}: {e}") from None
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kiln", description="kiln, a deep learning compiler")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("compile", help="compile a model into a .kiln artifact")
    s.add_argument("model")
    s.add_argument("-o", "--output", required=True, help="the .kiln file to write")
    s.add_argument("--target", default="cpu", choices=["cpu", "interpret"])
    s.add_argument("--c-shape", action="append", metavar="SYMBOL=INT",
                   help="bind a symbolic dim for the C entry point (default 1)")
    s.set_defaults(fn=_cmd_compile)
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
    a = p.parse_args(argv)
    try:
        return a.fn(a)
    except KilnError as e:
        print(f"kiln: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
