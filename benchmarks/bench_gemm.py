"""`make bench-gemm`: GFLOP/s of kiln's generated GEMM next to numpy's BLAS and the FMA peak.

Shapes: squares (256..2048) and transformer / MLP shapes (M=128 with BERT's K,N; M=1 MLP). kiln
compiles one MatMul per shape, with B a constant (weights: packed at compile time) and, for a
second column, with B an input (packed at run time). Times are of the native call alone (the
GEMM kernel; `m.run`'s Python overhead is a few microseconds and reported separately), 2 threads.

Every runtime runs in its own process (OpenBLAS and OpenMP thread pools would fight), several
rounds alternating kiln and numpy so both see the same machine; per shape we take the median over
rounds of each round's median, and the best run. numpy runs with OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE unset (they are set for other tools on these machines). The FMA peak is measured
with 12 independent FMA chains per thread (C compiled with kiln's toolchain flags).

    python -m benchmarks.bench_gemm [--shapes 1024,2048,128x768x768] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SQUARES = [256, 512, 1024, 2048]
TRANSFORMER = [(128, 768, 768), (128, 768, 3072), (128, 3072, 768), (1, 784, 1024)]


def parse_shapes(text: str) -> list:
    out = []
    for s in text.split(","):
        parts = [int(x) for x in s.lower().split("x")]
        out.append(tuple(parts * 3) if len(parts) == 1 else tuple(parts))
    return out


def time_fn(fn, flops: float, budget_s: float = 1.0, min_reps: int = 5) -> dict:
    """GFLOP/s of fn: calls batched so each sample lasts >= ~2 ms; median and best sample."""
    for _ in range(3):
        fn()
    t = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t, 1e-7)
    inner = max(1, int(0.002 / one))
    samples = []
    start = time.perf_counter()
    while len(samples) < min_reps or (time.perf_counter() - start < budget_s and len(samples) < 200):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner)
    s = np.array(samples)
    return {"median": flops / float(np.median(s)) / 1e9, "best": flops / float(s.min()) / 1e9,
            "us": float(np.median(s)) * 1e6}


def _model(m, k, n, const_b: bool, rng):
    from onnx import TensorProto, helper, numpy_helper
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])
    ins, inits = [a], []
    if const_b:
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "b"))
    else:
        ins.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n]))
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "gemm", ins,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                          initializer=inits)
    mod = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mod.ir_version = 8
    return mod


def native_call(mod, feeds: dict):
    """The compiled model's one native call (kiln_run) over buffers we own: inputs from `feeds`,
    fresh outputs (returned, to keep them alive) -- m.run() without its Python work."""
    nat = mod._native
    prog = nat.program
    st = next(s for s in nat.plans.values() if s is not None)
    keep = []
    for v in mod.graph.inputs:
        x = np.ascontiguousarray(feeds[v.name])
        keep.append(x)
        st.table[prog.buffers[v]] = x.ctypes.data
    for v in mod.graph.outputs:
        y = np.empty(st.plan.shapes[v], v.type.dtype.numpy)
        keep.append(y)
        st.table[prog.buffers[v]] = y.ctypes.data
    run, table, d = nat._run, st.table, st.plan.dims.ctypes.data
    return (lambda: run(table, d)), keep


def kiln_worker(shapes, threads: int) -> dict:
    import kiln
    rng = np.random.default_rng(0)
    out = {}
    for (m, k, n) in shapes:
        flops = 2.0 * m * n * k
        res = {}
        for label, const_b in (("kiln", True), ("kiln_rtb", False)):
            mod = kiln.compile(_model(m, k, n, const_b, rng), target="cpu", threads=threads)
            feeds = {"a": rng.standard_normal((m, k)).astype(np.float32)}
            if not const_b:
                feeds["b"] = rng.standard_normal((k, n)).astype(np.float32)
            y = mod.run(feeds)[0]                  # check, and make the static plan
            b = mod.graph.constants[0].data if const_b else feeds["b"]
            if const_b:
                from kiln.ops.gemm import unpack_b
                b = unpack_b(b, n) if b.ndim == 3 else b
            ref = feeds["a"].astype(np.float64) @ b.astype(np.float64)
            err = float(np.abs(y - ref).max() / (np.abs(ref).max() + 1e-30))
            call, keep = native_call(mod, feeds)
            res[label] = time_fn(call, flops)
            res[label]["rel_err"] = err
            if const_b:
                res["kiln_run_us"] = time_fn(lambda: mod.run(feeds), flops)["us"]
        out[f"{m}x{k}x{n}"] = res
    return out


def numpy_worker(shapes) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for (m, k, n) in shapes:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        out[f"{m}x{k}x{n}"] = {"blas": time_fn(lambda: np.matmul(a, b, out=c), 2.0 * m * n * k)}
    return out


PEAK_C = r"""
#include <stdint.h>
typedef float v8 __attribute__((vector_size(32)));
double kiln_fma_peak(int64_t iters, float x) {
  double total = 0;
  #pragma omp parallel reduction(+:total)
  {
    v8 a0 = (v8){0} + 0.f, a1 = (v8){0} + 1.f, a2 = (v8){0} + 2.f, a3 = (v8){0} + 3.f;
    v8 a4 = (v8){0} + 4.f, a5 = (v8){0} + 5.f, a6 = (v8){0} + 6.f, a7 = (v8){0} + 7.f;
    v8 a8 = (v8){0} + 8.f, a9 = (v8){0} + 9.f, a10 = (v8){0} + 10.f, a11 = (v8){0} + 11.f;
    v8 m = (v8){0} + x, s = (v8){0} + 1e-7f;
    for (int64_t i = 0; i < iters; ++i) {
      a0 = a0 * m + s; a1 = a1 * m + s; a2 = a2 * m + s; a3 = a3 * m + s;
      a4 = a4 * m + s; a5 = a5 * m + s; a6 = a6 * m + s; a7 = a7 * m + s;
      a8 = a8 * m + s; a9 = a9 * m + s; a10 = a10 * m + s; a11 = a11 * m + s;
      __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
      __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    v8 t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
    total = (double)t[0] + (double)iters * 12 * 8 * 2;
  }
  return total;
}
"""


def peak_worker(threads: int) -> dict:
    """FMA peak GFLOP/s with `threads` threads (best of a few runs)."""
    from kiln.backend.toolchain import find_toolchain
    tc = find_toolchain()
    with tempfile.TemporaryDirectory() as d:
        src, lib = os.path.join(d, "peak.c"), os.path.join(d, "peak.so")
        Path(src).write_text(PEAK_C)
        subprocess.run([tc.cc, *tc.flags, "-shared", src, "-o", lib], check=True)
        f = ctypes.CDLL(lib).kiln_fma_peak
        f.argtypes, f.restype = [ctypes.c_int64, ctypes.c_float], ctypes.c_double
        best = 0.0
        for _ in range(7):
            t = time.perf_counter()
            flops = f(50_000_000, 0.999999)
            best = max(best, flops / (time.perf_counter() - t) / 1e9)
    return {"peak": best}


def run_worker(kind: str, shapes, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS="1")      # kiln's process: no spinning BLAS threads
    if kind == "numpy":
        for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            env.pop(v, None)
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    spec = ",".join("x".join(map(str, s)) for s in shapes)
    cmd = [sys.executable, "-m", "benchmarks.bench_gemm", "--worker", kind, "--shapes", spec,
           "--threads", str(threads)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=["kiln", "numpy", "peak1", "peak"])
    ap.add_argument("--shapes", default=",".join([str(s) for s in SQUARES] +
                                                 ["x".join(map(str, s)) for s in TRANSFORMER]))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    a = ap.parse_args(argv)
    shapes = parse_shapes(a.shapes)
    if a.worker:
        res = {"kiln": lambda: kiln_worker(shapes, a.threads), "numpy": lambda: numpy_worker(shapes),
               "peak": lambda: peak_worker(a.threads), "peak1": lambda: peak_worker(1)}[a.worker]()
        print(json.dumps(res))
        return 0
    rounds: list = []
    peak = run_worker("peak", shapes, a.threads)["peak"]
    peak1 = run_worker("peak1", shapes, 1)["peak"]
    for r in range(a.rounds):
        print(f"round {r + 1}/{a.rounds} ...", flush=True)
        rounds.append((run_worker("kiln", shapes, a.threads), run_worker("numpy", shapes, a.threads)))
    table = {}
    for (m, k, n) in shapes:
        key = f"{m}x{k}x{n}"
        row = {}
        for col, src in (("kiln", 0), ("kiln_rtb", 0), ("blas", 1)):
            meds = [rd[src][key][col]["median"] for rd in rounds]
            bests = [rd[src][key][col]["best"] for rd in rounds]
            row[col] = {"median": float(np.median(meds)), "best": max(bests),
                        "spread": [min(meds), max(meds)]}
        row["rel_err"] = max(rd[0][key][c]["rel_err"] for rd in rounds for c in ("kiln", "kiln_rtb"))
        row["run_overhead_us"] = float(np.median([rd[0][key]["kiln_run_us"] - rd[0][key]["kiln"]["us"]
                                                  for rd in rounds]))
        table[key] = row
    lines = [f"# kiln GEMM vs numpy BLAS — fp32, {a.threads} threads, {a.rounds} rounds",
             "",
             f"FMA peak measured now: {peak:.0f} GFLOP/s ({a.threads} threads), {peak1:.0f} (1 thread).",
             "GFLOP/s: median over rounds of per-round medians (best run in brackets). kiln = B constant",
             "(packed at compile time), kiln rt-B = B an input (packed at run time). Native call only.",
             "",
             "| M x K x N | kiln | kiln rt-B | OpenBLAS (numpy) | kiln / BLAS | kiln % of peak | "
             "round spread kiln / BLAS | m.run() overhead (us) |",
             "|---|---|---|---|---|---|---|---|"]
    for key, row in table.items():
        k, rt, bl = row["kiln"], row["kiln_rtb"], row["blas"]
        lines.append(
            f"| {key} | {k['median']:.1f} ({k['best']:.1f}) | {rt['median']:.1f} ({rt['best']:.1f}) | "
            f"{bl['median']:.1f} ({bl['best']:.1f}) | {k['median'] / bl['median']:.2f} | "
            f"{100 * k['median'] / peak:.0f}% | {k['spread'][0]:.0f}-{k['spread'][1]:.0f} / "
            f"{bl['spread'][0]:.0f}-{bl['spread'][1]:.0f} | {row['run_overhead_us']:.1f} |")
    worst = max(row["rel_err"] for row in table.values())
    lines += ["", f"max relative error vs float64: {worst:.1e}"]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(json.dumps({"peak": peak, "peak1": peak1, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
