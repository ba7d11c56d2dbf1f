"""`make bench`: kiln against its peers on the model set, every runtime measured in the same run.

Each (model, runtime) pair runs in its own process with 2 threads, so thread pools and caches do
not interfere. Latency: warm-up runs, then timed runs; we report the median and the spread
(10th-90th percentile). kiln also reports its compile time with a cold cache and a warm one.
Results go to benchmarks/RESULTS.md (table) and benchmarks/results.json.

    python -m benchmarks.bench [--models mlp,resnet18] [--batch 1] [--runtimes kiln,onnxruntime,torch]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNTIMES = ("kiln", "kiln-O0", "kiln-export", "onnxruntime", "torch", "torch-compile",
            "kiln-torch-compile")
THREADS = 2


def timed_runs(fn, min_runs: int = 5, max_runs: int = 50, budget_s: float = 6.0) -> list[float]:
    for _ in range(2):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (len(times) < max_runs and time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def worker(runtime: str, model: str, batch: int) -> dict:
    from benchmarks.models import example_inputs, get
    path = get(model)
    feeds = example_inputs(model, batch)
    out: dict = {}
    if runtime in ("kiln", "kiln-O0"):
        import kiln
        opt = 0 if runtime == "kiln-O0" else 2
        with tempfile.TemporaryDirectory() as cache:
            os.environ["KILN_CACHE_DIR"] = cache
            t = time.perf_counter()
            m = kiln.compile(path, target="cpu", threads=THREADS, opt_level=opt)
            out["compile_cold_s"] = time.perf_counter() - t
            t = time.perf_counter()
            m = kiln.compile(path, target="cpu", threads=THREADS, opt_level=opt)
            out["compile_cached_s"] = time.perf_counter() - t
            out["host_ops"] = m.host_ops
            out["kernels"] = len(m.manifest["kernels"])
            fn = lambda: m.run(feeds)
            out["times"] = timed_runs(fn)
    elif runtime == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        out["times"] = timed_runs(lambda: sess.run(None, feeds))
    elif runtime == "kiln-export":             # PyTorch -> torch.export -> kiln (no ONNX)
        import torch
        from torch.export import Dim

        import kiln
        from benchmarks.models import SPECS, torch_model
        torch.set_num_threads(THREADS)
        spec = SPECS[model]
        B, S = Dim("N"), Dim("S", max=spec.max_seq or None)
        dyn = tuple({i: (B if d == "B" else S) for i, d in enumerate(shape) if d in ("B", "S")}
                    for _, _, shape in spec.inputs)
        ex = example_inputs(model, 2, 16)
        t = time.perf_counter()
        m = kiln.compile(torch_model(model), example_inputs=tuple(torch.from_numpy(v) for v in ex.values()),
                         dynamic_shapes=dyn, threads=THREADS)
        out["compile_cold_s"] = out["compile_cached_s"] = time.perf_counter() - t
        out["host_ops"] = m.host_ops
        args = list(feeds.values())
        out["times"] = timed_runs(lambda: m(*args))
    elif runtime in ("torch", "torch-compile", "kiln-torch-compile"):
        import torch

        from benchmarks.models import torch_model
        torch.set_num_threads(THREADS)
        mod = torch_model(model)
        if runtime == "torch-compile":
            mod = torch.compile(mod)                       # Inductor
        elif runtime == "kiln-torch-compile":
            import kiln  # noqa: F401  (the "kiln" backend)
            mod = torch.compile(mod, backend="kiln", options={"threads": THREADS})
        args = [torch.from_numpy(v) for v in feeds.values()]
        with torch.inference_mode():
            t = time.perf_counter()
            mod(*args)
            out["first_call_s"] = time.perf_counter() - t
            out["times"] = timed_runs(lambda: mod(*args))
    else:
        raise SystemExit(f"unknown runtime {runtime}")
    return out


def summarize(times: list[float]) -> dict:
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def run_one(runtime: str, model: str, batch: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "benchmarks.bench", "--worker", runtime, model, str(batch)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update(summarize(res.pop("times")))
    return res


def write_report(results: dict, batch: int, path: Path) -> str:
    lines = [f"# kiln vs peers — batch {batch}, {THREADS} threads, fp32", "",
             "kiln: ONNX model compiled at opt_level 2 (and 0); kiln-export: the PyTorch module through "
             "torch.export; torch.compile: Inductor; kiln via torch.compile: `backend=\"kiln\"`.", "",
             "Median latency in ms (10th–90th percentile); ratio = kiln / onnxruntime. "
             "All numbers from one `make bench` run on this machine; compare only within a run.", "",
             "| model | kiln (opt 2) | kiln opt 0 | onnxruntime | torch eager | kiln/ort | kiln/torch | opt 2 / opt 0 | kiln compile cold / cached (s) | host ops |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, per in results.items():
        def cell(rt):
            r = per.get(rt, {})
            if "error" in r:
                return f"error: {r['error'][:40]}"
            if "median_ms" not in r:
                return "–"
            return f"{r['median_ms']:.2f} ({r['p10_ms']:.2f}–{r['p90_ms']:.2f})"

        def ratio(a, b):
            ra, rb = per.get(a, {}), per.get(b, {})
            if "median_ms" in ra and "median_ms" in rb:
                return f"{ra['median_ms'] / rb['median_ms']:.2f}x"
            return "–"
        k = per.get("kiln", {})
        comp = f"{k['compile_cold_s']:.1f} / {k['compile_cached_s']:.2f}" if "compile_cold_s" in k else "–"
        host = ", ".join(k.get("host_ops", [])) or "none"
        lines.append(f"| {model} | {cell('kiln')} | {cell('kiln-O0')} | {cell('onnxruntime')} | "
                     f"{cell('torch')} | {ratio('kiln', 'onnxruntime')} | {ratio('kiln', 'torch')} | "
                     f"{ratio('kiln', 'kiln-O0')} | {comp} | {host} |")
    lines += ["", "## PyTorch paths", "",
              "| model | kiln (ONNX) | kiln (torch.export) | export / ONNX | torch.compile (Inductor) | "
              "torch.compile(backend=\"kiln\") | kiln / Inductor |", "|---|---|---|---|---|---|---|"]
    for model, per in results.items():
        if not any(rt in per for rt in ("kiln-export", "torch-compile", "kiln-torch-compile")):
            continue
        def c2(rt):
            r = per.get(rt, {})
            return f"{r['median_ms']:.2f}" if "median_ms" in r else (f"error: {r['error'][:40]}" if "error" in r else "–")

        def q(a, b):
            ra, rb = per.get(a, {}), per.get(b, {})
            return f"{ra['median_ms'] / rb['median_ms']:.2f}x" if "median_ms" in ra and "median_ms" in rb else "–"
        lines.append(f"| {model} | {c2('kiln')} | {c2('kiln-export')} | {q('kiln-export', 'kiln')} | "
                     f"{c2('torch-compile')} | {c2('kiln-torch-compile')} | {q('kiln-torch-compile', 'torch-compile')} |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=3, metavar=("RUNTIME", "MODEL", "BATCH"))
    ap.add_argument("--models", default="mlp,resnet18,resnet50,mobilenetv2,bert,gpt2")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    a = ap.parse_args(argv)
    if a.worker:
        runtime, model, batch = a.worker
        print(json.dumps(worker(runtime, model, int(batch))))
        return 0
    results: dict = {}
    for model in a.models.split(","):
        results[model] = {}
        for rt in a.runtimes.split(","):
            print(f"{model:12} {rt:12} ...", end=" ", flush=True)
            r = run_one(rt, model, a.batch)
            results[model][rt] = r
            print(f"{r['median_ms']:.2f} ms" if "median_ms" in r else r.get("error"), flush=True)
    print()
    print(write_report(results, a.batch, Path(a.out)))
    (Path(a.out).with_suffix(".json")).write_text(json.dumps(
        {"batch": a.batch, "threads": THREADS, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
