"""kiln's main job, end to end: build a small CNN with random weights, import it, run it with kiln,
and check the result against onnxruntime."""
from __future__ import annotations

import sys
import time

import numpy as np

import kiln
from kiln.testing.models import small_cnn


def main() -> int:
    model = small_cnn()
    graph = kiln.import_onnx(model)
    print(f"imported {graph.name}: {len(graph.nodes)} nodes, {len(graph.constants)} constants")
    print(graph)

    m = kiln.compile(model, target="interpret")
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    t0 = time.perf_counter()
    (probs,) = m.run({"image": x})
    t_kiln = time.perf_counter() - t0

    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    t0 = time.perf_counter()
    (ref,) = sess.run(None, {"image": x})
    t_ort = time.perf_counter() - t0

    err = float(np.max(np.abs(probs - ref)))
    ok = np.allclose(probs, ref, rtol=1e-4, atol=1e-5)
    print(f"\nkiln ({m.target}): {t_kiln * 1e3:.1f} ms   onnxruntime: {t_ort * 1e3:.1f} ms   "
          f"max |diff| = {err:.2e}   {'MATCH' if ok else 'MISMATCH'}")
    print("top-1 per image:", probs.argmax(axis=1).tolist())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
