"""`make check-models`: every model of the set compiled once with target="cpu", then run at several
batch sizes (and sequence lengths) without recompiling, each result checked against onnxruntime
(rtol 1e-3, atol 1e-4). Prints one line per run and exits non-zero on any mismatch or host op.

    python -m benchmarks.check_models [--models bert,gpt2]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

RUNS = {   # model -> [(batch, seq)]
    "mlp": [(1, 0), (3, 0), (8, 0), (16, 0)],
    "resnet18": [(1, 0), (3, 0), (8, 0), (16, 0)],
    "resnet50": [(1, 0), (3, 0), (8, 0), (16, 0)],
    "mobilenetv2": [(1, 0), (3, 0), (8, 0), (16, 0)],
    "bert": [(1, 128), (3, 128), (8, 128), (16, 128), (1, 7), (1, 384)],
    "gpt2": [(1, 128), (3, 128), (8, 128), (16, 128), (1, 7), (1, 384)],
}


def main(argv=None) -> int:
    import onnxruntime as ort

    import kiln
    from benchmarks.models import example_inputs, get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(RUNS))
    a = ap.parse_args(argv)
    bad = 0
    for name in a.models.split(","):
        path = get(name)
        t = time.perf_counter()
        m = kiln.compile(path, target="cpu")
        compile_s = time.perf_counter() - t
        lib = m._native.lib
        host = m.host_ops
        print(f"{name}: compiled in {compile_s:.1f} s, {len(m.manifest['kernels'])} kernels, "
              f"host ops: {', '.join(host) or 'none'}", flush=True)
        bad += bool(host)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for batch, seq in RUNS[name]:
            feeds = example_inputs(name, batch, seq or 128)
            t = time.perf_counter()
            outs = m.run(feeds)
            kiln_ms = (time.perf_counter() - t) * 1e3
            refs = sess.run(None, feeds)
            err = max(float(np.max(np.abs(o - r))) for o, r in zip(outs, refs))
            ok = all(o.shape == r.shape and np.allclose(o, r, rtol=1e-3, atol=1e-4)
                     for o, r in zip(outs, refs))
            bad += not ok
            where = f"batch {batch}" + (f" seq {seq}" if seq else "")
            print(f"  {where:18} max |diff| {err:.2e}  {'match' if ok else 'MISMATCH'}  "
                  f"({kiln_ms:.0f} ms)", flush=True)
        assert m._native.lib is lib      # one library served every shape: no recompilation
    print("all match" if not bad else f"{bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
