"""`make bench`: kiln against its peers on the model set, every runtime measured in the same run.

Runtimes: kiln (opt 2 and opt 0, and through torch.export and torch.compile), onnxruntime,
OpenVINO, PyTorch eager and torch.compile (Inductor), at 2 threads and each batch of --batch.
Each (runtime, model, batch) runs in its own process (benchmarks/bench_runtimes.py), so thread
pools and caches do not interfere, and a crash or a timeout there only marks that cell. Latency:
warm-up, then timed runs for about --budget seconds; we report the median and the spread (10th-90th
percentile). The whole sweep runs --rounds times (2), interleaved, and each cell keeps its round
with the lowest median (all rounds' medians are in the JSON). Results go to benchmarks/RESULTS.md (one set of tables per batch, see
benchmarks/bench_report.py) and RESULTS.json beside it.

    python -m benchmarks.bench [--models mlp,resnet18] [--batch 1,8] [--runtimes kiln,onnxruntime,openvino] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.bench_report import VERSION_NAMES, render
from benchmarks.bench_runtimes import BUDGET_S, MIN_RUNS, RUNNERS, SEQ, THREADS

HERE = Path(__file__).resolve().parent
RUNTIMES = tuple(RUNNERS)
MODELS = "mlp,resnet18,resnet50,mobilenetv2,bert,gpt2"
TIMEOUT_S = 300           # per (runtime, model, batch): torch.compile of ResNet-50 takes ~45 s
# Passes over every cell. These machines are shared: another tenant's work only ever adds time, in
# bursts of seconds to minutes, so each cell keeps the round with the lowest median, and the rounds
# are interleaved (every runtime measured again after the others) rather than run back to back.
ROUNDS = 2
RESULT_MARK = "BENCH-RESULT "


def summarize(times: list[float]) -> dict:
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "runs": len(ms)}


def run_isolated(cmd: list[str], env: dict, timeout_s: float) -> tuple[int | None, str, str]:
    """Run cmd in a session of its own; past timeout_s kill its whole process group (torch.compile's
    compile workers too). Returns (exit status or None on timeout, stdout, stderr)."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return None, "", ""
    except BaseException:          # Ctrl-C: in a session of its own, the worker did not get it
        os.killpg(p.pid, signal.SIGKILL)
        raise
    return p.returncode, out, err


def parse_cell(status: int | None, out: str, err: str, timeout_s: float) -> dict:
    """A worker's outcome as one table cell: its result, or {"error": why}."""
    if status is None:
        return {"error": f"timed out after {timeout_s:g} s"}
    if status != 0:
        last = (err.strip().splitlines() or [""])[-1][:200]
        return {"error": last or (f"killed by signal {-status}" if status < 0 else f"exit status {status}")}
    marked = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if not marked:
        return {"error": "the worker printed no result"}
    res = json.loads(marked[-1][len(RESULT_MARK):])
    res.update(summarize(res.pop("times")))
    return res


def best_round(old: dict | None, new: dict) -> dict:
    """The cell kept over rounds: the round with the lowest median (a failed round only when no
    round succeeded), with every round's median in "round_medians" (None for a failed round)."""
    medians = (old or {}).get("round_medians", []) + [new.get("median_ms")]
    keep = new
    if old is not None and "median_ms" in old and ("median_ms" not in new or old["median_ms"] <= new["median_ms"]):
        keep = old
    return dict(keep, round_medians=medians)


def run_one(runtime: str, model: str, batch: int, timeout_s: float = TIMEOUT_S,
            budget_s: float = BUDGET_S) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "benchmarks.bench", "--worker", runtime, model, str(batch),
           "--budget", str(budget_s)]
    return parse_cell(*run_isolated(cmd, env, timeout_s), timeout_s)


def cpu_summary() -> str:
    """'AMD EPYC (family 25, model 17), 2 cores, AVX-512, AVX2, FMA' from /proc/cpuinfo where there is one."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    isa = [name for flag, name in [("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 BF16"),
                                   ("avx2", "AVX2"), ("fma", "FMA")] if flag in flags]
    ident = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    return ", ".join([fields.get("model name", platform.machine()) + ident, f"{os.cpu_count()} cores", *isa])


def versions(results: dict) -> dict:
    """The libraries' versions the cells reported, kiln's first: {"kiln": "0.1.0", ...}."""
    found: dict[str, str] = {}
    for per_model in results.values():
        for per in per_model.values():
            for cell in per.values():
                found.update(cell.get("versions", {}))
    return {lib: found[lib] for lib in VERSION_NAMES if lib in found}


def save(run: dict, out: Path) -> str:
    """Write the markdown report to `out` and the run as JSON beside it; returns the markdown."""
    run["versions"] = versions(run["results"])
    text = render(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(run, indent=1))
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=3, metavar=("RUNTIME", "MODEL", "BATCH"),
                    help="(internal) run one cell in this process and print its result")
    ap.add_argument("--models", default=MODELS, help=f"comma-separated (default {MODELS})")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"comma-separated (default: all, {','.join(RUNTIMES)})")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--budget", type=float, default=BUDGET_S,
                    help=f"seconds of timed runs per cell after warm-up (default {BUDGET_S:g})")
    ap.add_argument("--rounds", type=int, default=ROUNDS,
                    help=f"passes over the cells, interleaved; each cell keeps its fastest round (default {ROUNDS})")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S,
                    help=f"seconds before a cell is killed and marked (default {TIMEOUT_S})")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="markdown file; the JSON goes beside it")
    a = ap.parse_args(argv)
    if a.worker:
        from benchmarks.bench_runtimes import worker
        runtime, model, batch = a.worker
        print(RESULT_MARK + json.dumps(worker(runtime, model, int(batch), a.budget)))
        return 0
    batches = [int(b) for b in a.batch.split(",")]
    run = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_summary(),
           "threads": THREADS, "batches": batches, "seq": SEQ, "budget_s": a.budget, "min_runs": MIN_RUNS,
           "rounds": a.rounds,
           "cores": os.cpu_count(), "load_avg": os.getloadavg()[0], "results": {}}
    start = time.perf_counter()
    models = a.models.split(",")
    for batch in batches:
        results = run["results"][str(batch)] = {model: {} for model in models}
        for rnd in range(a.rounds):
            for model in models:
                for rt in a.runtimes.split(","):
                    print(f"batch {batch:<3} {model:12} {rt:19} round {rnd + 1}", end=" ", flush=True)
                    t = time.perf_counter()
                    r = run_one(rt, model, batch, a.timeout, a.budget)
                    results[model][rt] = best_round(results[model].get(rt), r)
                    took = f"[{time.perf_counter() - t:.0f} s]"
                    print(f"{r['median_ms']:10.2f} ms {took}" if "median_ms" in r else f"{r['error']} {took}", flush=True)
                    save(run, Path(a.out))           # after every cell: an interrupted run keeps what it has
    text = save(run, Path(a.out))
    print(f"\n{time.perf_counter() - start:.0f} s in all\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
