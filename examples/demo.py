"""kiln's main job, end to end: take ResNet-18 from the model set (random weights, exported from
PyTorch to ONNX), compile it to native code, run it, and check it against onnxruntime."""
from __future__ import annotations

import sys
import time

import numpy as np

import kiln
from benchmarks.models import example_inputs, get


def median_ms(fn, runs: int = 10) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main(name: str = "resnet18") -> int:
    path = get(name)
    graph = kiln.import_onnx(path)
    print(f"{name}: {len(graph.nodes)} nodes, {len(graph.constants)} constants, "
          f"input {graph.inputs[0].name}: {graph.inputs[0].type}")
    t = time.perf_counter()
    m = kiln.compile(path, target="cpu", threads=2)
    print(f"compiled in {time.perf_counter() - t:.1f} s: {len(m.manifest['kernels'])} kernels, "
          f"host ops: {', '.join(m.host_ops) or 'none'}")

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ok = True
    for batch in (1, 4):
        feeds = example_inputs(name, batch)
        (ours,) = m.run(feeds)
        (ref,) = sess.run(None, feeds)
        match = np.allclose(ours, ref, rtol=1e-3, atol=1e-4)
        ok &= match
        t_kiln = median_ms(lambda: m.run(feeds), 5)
        t_ort = median_ms(lambda: sess.run(None, feeds), 5)
        print(f"batch {batch}: kiln {t_kiln:8.1f} ms   onnxruntime {t_ort:8.1f} ms   "
              f"max |diff| {np.max(np.abs(ours - ref)):.1e}   {'MATCH' if match else 'MISMATCH'}   "
              f"top-1 {ours.argmax(axis=1).tolist()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
