"""The `kiln` command line. Subcommands arrive with the parts they drive; today:

    kiln ir MODEL                 print the graph IR of a model
    kiln run MODEL --input name=file.npy [--target interpret]
    kiln ops                      list the op set
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import KilnError


def _cmd_ir(a) -> int:
    from .api import to_graph
    print(to_graph(a.model))
    return 0


def _cmd_run(a) -> int:
    from .api import compile
    m = compile(a.model, target=a.target)
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
    for d in REGISTRY:
        print(f"{d.name:28} {d.doc}")
    print(f"{len(REGISTRY)} ops")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kiln", description="kiln, a deep learning compiler")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ir", help="print the graph IR of a model")
    s.add_argument("model")
    s.set_defaults(fn=_cmd_ir)
    s = sub.add_parser("run", help="run a model on inputs from .npy files")
    s.add_argument("model")
    s.add_argument("--input", action="append", metavar="NAME=FILE.npy")
    s.add_argument("--target", default="interpret")
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
