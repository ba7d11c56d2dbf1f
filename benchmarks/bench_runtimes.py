"""The runtimes `make bench` measures: how each one loads a model, and the timing loop they share.

One function per runtime takes a `Case` (the model, its ONNX file, the inputs) and returns the
call to time; it may record facts (compile time, versions, host ops) in `case.info`. Each runs in
its own process (`python -m benchmarks.bench --worker RUNTIME MODEL BATCH`), with THREADS threads.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

THREADS = 2
SEQ = 128               # BERT and GPT-2 at every batch
BUDGET_S = 4.0          # timed runs per (runtime, model, batch), after warm-up ...
MIN_RUNS = 5            # ... but at least this many (a slow case runs fewer times than a fast one)
MAX_RUNS = 20000
OV_TOLERANCE = 1e-3     # OpenVINO's outputs vs onnxruntime's, checked once (rtol and atol)


@dataclass
class Case:
    model: str
    batch: int
    path: str                                    # the ONNX file every ONNX runtime reads
    feeds: dict[str, np.ndarray]
    stack: contextlib.ExitStack                  # open while the runs are timed
    info: dict = field(default_factory=dict)     # what the runtime reports besides its times


def timed_runs(fn: Callable[[], object], budget_s: float = BUDGET_S, min_runs: int = MIN_RUNS,
               max_runs: int = MAX_RUNS) -> list[float]:
    """Two warm-up calls (one where a call takes over a second), then timed calls for about
    budget_s: at least min_runs, at most max_runs. Returns the seconds of each timed call."""
    t = time.perf_counter()
    fn()
    if time.perf_counter() - t < 1.0:
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def _kiln(case: Case, opt_level: int):
    import kiln
    cache = case.stack.enter_context(tempfile.TemporaryDirectory())
    os.environ["KILN_CACHE_DIR"] = cache           # a cold cache, then the same compile again
    t = time.perf_counter()
    m = kiln.compile(case.path, target="cpu", threads=THREADS, opt_level=opt_level)
    case.info["compile_cold_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m = kiln.compile(case.path, target="cpu", threads=THREADS, opt_level=opt_level)
    case.info["compile_cached_s"] = time.perf_counter() - t
    case.info.update(versions={"kiln": kiln.__version__}, host_ops=m.host_ops,
                     kernels=len(m.manifest["kernels"]))
    return lambda: m.run(case.feeds)


def _kiln_export(case: Case):
    """The PyTorch module through torch.export (no ONNX), batch and sequence dims symbolic."""
    import torch
    from torch.export import Dim

    import kiln
    from benchmarks.models import SPECS, example_inputs, torch_model
    torch.set_num_threads(THREADS)
    spec = SPECS[case.model]
    B, S = Dim("N"), Dim("S", max=spec.max_seq or None)
    dyn = tuple({i: (B if d == "B" else S) for i, d in enumerate(shape) if d in ("B", "S")}
                for _, _, shape in spec.inputs)
    ex = example_inputs(case.model, 2, 16)
    t = time.perf_counter()
    m = kiln.compile(torch_model(case.model), example_inputs=tuple(torch.from_numpy(v) for v in ex.values()),
                     dynamic_shapes=dyn, threads=THREADS)
    case.info["compile_cold_s"] = case.info["compile_cached_s"] = time.perf_counter() - t
    case.info.update(versions={"kiln": kiln.__version__, "torch": torch.__version__}, host_ops=m.host_ops)
    args = list(case.feeds.values())
    return lambda: m(*args)


def _ort_session(path: str):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _onnxruntime(case: Case):
    import onnxruntime as ort
    sess = _ort_session(case.path)
    case.info["versions"] = {"onnxruntime": ort.__version__}
    return lambda: sess.run(None, case.feeds)


def _openvino(case: Case):
    """OpenVINO's CPU plugin on the same ONNX file (symbolic dims kept), latency mode, fp32 even on
    CPUs with bf16/AMX units; its outputs are checked once against onnxruntime's."""
    import openvino as ov
    core = ov.Core()
    t = time.perf_counter()
    compiled = core.compile_model(core.read_model(case.path), "CPU", {
        "INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32"})
    case.info["compile_s"] = time.perf_counter() - t
    case.info["versions"] = {"openvino": ov.__version__.split("-")[0]}
    request = compiled.create_infer_request()
    result = request.infer(case.feeds)
    outs = [np.array(result[i]) for i in range(len(compiled.outputs))]
    try:
        ref = _ort_session(case.path).run(None, case.feeds)
    except Exception as e:                         # onnxruntime's failure is its own cell's
        case.info["vs_onnxruntime"] = f"not checked: {type(e).__name__}"
    else:
        case.info["max_abs_diff_vs_onnxruntime"] = max(float(np.abs(o - r).max()) for o, r in zip(outs, ref))
        case.info["matches_onnxruntime"] = all(
            np.allclose(o, r, rtol=OV_TOLERANCE, atol=OV_TOLERANCE) for o, r in zip(outs, ref))
    return lambda: request.infer(case.feeds, share_inputs=True, share_outputs=True)


def _torch(case: Case, backend: str | None):
    """PyTorch eager (backend None) or torch.compile with Inductor ("inductor") or kiln ("kiln")."""
    import torch

    from benchmarks.models import torch_model
    torch.set_num_threads(THREADS)
    mod = torch_model(case.model)
    case.info["versions"] = {"torch": torch.__version__}
    if backend == "inductor":
        mod = torch.compile(mod)
    elif backend == "kiln":
        import kiln  # the "kiln" backend
        mod = torch.compile(mod, backend="kiln", options={"threads": THREADS})
        case.info["versions"]["kiln"] = kiln.__version__
    case.stack.enter_context(torch.inference_mode())
    args = [torch.from_numpy(v) for v in case.feeds.values()]
    t = time.perf_counter()
    mod(*args)
    case.info["first_call_s"] = time.perf_counter() - t
    return lambda: mod(*args)


RUNNERS: dict[str, Callable[[Case], Callable[[], object]]] = {
    "kiln": lambda c: _kiln(c, opt_level=2),
    "kiln-O0": lambda c: _kiln(c, opt_level=0),
    "kiln-export": _kiln_export,
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "torch": lambda c: _torch(c, None),
    "torch-compile": lambda c: _torch(c, "inductor"),
    "kiln-torch-compile": lambda c: _torch(c, "kiln"),
}


def worker(runtime: str, model: str, batch: int, budget_s: float = BUDGET_S) -> dict:
    """Load `model` in `runtime`, time it at `batch` (text models at SEQ); the raw times in seconds
    are under "times"."""
    from benchmarks.models import example_inputs, get
    if runtime not in RUNNERS:
        raise SystemExit(f"unknown runtime {runtime!r}; known: {', '.join(RUNNERS)}")
    with contextlib.ExitStack() as stack:
        case = Case(model, batch, get(model), example_inputs(model, batch, SEQ), stack)
        fn = RUNNERS[runtime](case)
        case.info["times"] = timed_runs(fn, budget_s)
    return case.info
