"""Build (export) every benchmark model: python -m benchmarks.models [NAME ...] [--force]."""
from __future__ import annotations

import argparse
import os
import sys

from . import NAMES, export, model_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.models", description=__doc__)
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"models to build (default: all of {', '.join(NAMES)})")
    ap.add_argument("--force", action="store_true", help="re-export even if cached")
    args = ap.parse_args(argv)
    names = args.names or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
    print(f"{'model':<12} {'MB':>8} {'export s':>9}  path")
    for name in names:
        path = model_path(name)
        if path.exists() and not args.force:
            secs = "cached"
        else:
            _, t = export(name)
            secs = f"{t:.1f}"
        size = os.path.getsize(path) / 1e6
        print(f"{name:<12} {size:8.1f} {secs:>9}  {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
