"""benchmarks/RESULTS.md from one `make bench` run: per batch, a latency table, a table of
kiln / peer ratios with their geometric mean over the models, and the PyTorch paths.

`run` is what benchmarks.bench writes to RESULTS.json: {"date", "cpu", "cores", "load_avg", "threads",
"batches", "seq", "budget_s", "min_runs", "versions", "results": {batch (str): {model: {runtime: cell}}}}, a
cell being {"median_ms", "p10_ms", "p90_ms", "runs", ...} or {"error": message}.
"""
from __future__ import annotations

import math

PEERS = {"onnxruntime": "onnxruntime", "openvino": "OpenVINO", "torch": "torch eager",
         "torch-compile": "torch.compile"}
VERSION_NAMES = {"kiln": "kiln", "onnxruntime": "onnxruntime", "openvino": "OpenVINO", "torch": "torch"}


def median(cell: dict) -> float | None:
    return cell.get("median_ms")


def ratio(per: dict, a: str, b: str) -> float | None:
    """median(a) / median(b) for one model, None where either did not run."""
    ma, mb = median(per.get(a, {})), median(per.get(b, {}))
    return ma / mb if ma is not None and mb else None


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _error(cell: dict) -> str:
    return "error: " + cell["error"][:60].replace("|", "/")


def latency_cell(cell: dict) -> str:
    if "error" in cell:
        return _error(cell)
    if median(cell) is None:
        return "–"
    text = f"{cell['median_ms']:.2f} ({cell['p10_ms']:.2f}–{cell['p90_ms']:.2f})"
    return text + (" ⚠" if cell.get("matches_onnxruntime") is False else "")


def short_cell(cell: dict) -> str:
    if "error" in cell:
        return _error(cell)
    return f"{cell['median_ms']:.2f}" if median(cell) is not None else "–"


def ratio_text(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.2g}x"          # 0.0041x, not 0.00x


def geomean_text(results: dict, a: str, b: str) -> str:
    values = [r for per in results.values() if (r := ratio(per, a, b)) is not None]
    if not values:
        return "–"
    text = f"**{geomean(values):.2f}x**"
    return text if len(values) == len(results) else f"{text} ({len(values)} of {len(results)})"


def load_line(load: float | None, cores: int) -> list[str]:
    """The machine's load when the run started: busy cores make thread pools wait for a time slice."""
    if load is None:
        return []
    note = " (other work was running: expect noisy numbers and wide spreads)" if load > 0.5 else ""
    return [f"- Load average (1 min) at the start: {load:.2f} on {cores} cores{note}"]


def rounds_line(rounds: int) -> list[str]:
    if rounds <= 1:
        return []
    return [f"- Rounds: the whole sweep ran {rounds} times, interleaved; each cell is its round with the "
            "lowest median (another tenant's load only adds time; every round's median is in the JSON)"]


def header(run: dict) -> list[str]:
    versions = ", ".join(f"{VERSION_NAMES[rt]} {v}" for rt, v in run["versions"].items())
    batches = " and ".join(str(b) for b in run["batches"])
    return [
        f"# kiln vs peers — fp32, {run['threads']} threads, batch {batches}", "",
        f"- CPU: {run['cpu']}",
        f"- Threads: {run['threads']} per runtime; each (runtime, model, batch) runs in its own process",
        f"- Date: {run['date']}. **All numbers below come from this one run**; compare only within a run",
        *load_line(run.get("load_avg"), run.get("cores", run["threads"])),
        f"- Versions: {versions}",
        f"- Timing: warm-up, then timed runs for about {run['budget_s']:g} s (at least {run['min_runs']}); "
        f"median and 10th–90th percentile in ms. BERT and GPT-2 at sequence length {run['seq']}",
        *rounds_line(run.get("rounds", 1)), "",
        "kiln (opt 2): the ONNX model compiled at opt_level 2; kiln opt 0: at opt_level 0; onnxruntime: "
        "CPU execution provider; OpenVINO: CPU plugin, LATENCY hint, f32 inference precision, the same "
        "ONNX file; torch eager; torch.compile: Inductor; kiln (torch.export): the PyTorch module "
        "through torch.export; torch.compile(backend=\"kiln\"). A ratio below 1.00x: kiln is faster.", ""]


def latency_table(results: dict) -> list[str]:
    lines = ["| model | kiln (opt 2) | kiln opt 0 | onnxruntime | OpenVINO | torch eager | torch.compile "
             "| kiln compile cold / cached (s) | host ops |", "|---|---|---|---|---|---|---|---|---|"]
    for model, per in results.items():
        k = per.get("kiln", {})
        comp = f"{k['compile_cold_s']:.1f} / {k['compile_cached_s']:.2f}" if "compile_cold_s" in k else "–"
        host = ", ".join(k.get("host_ops", [])) or ("none" if "host_ops" in k else "–")
        cells = [latency_cell(per.get(rt, {})) for rt in ("kiln", "kiln-O0", *PEERS)]
        lines.append(f"| {model} | {' | '.join(cells)} | {comp} | {host} |")
    return lines + [""] + openvino_check(results)


def openvino_check(results: dict) -> list[str]:
    """One line on the check of OpenVINO's outputs against onnxruntime's."""
    checked = {m: per["openvino"] for m, per in results.items()
               if "max_abs_diff_vs_onnxruntime" in per.get("openvino", {})}
    if not checked:
        return []
    bad = [m for m, c in checked.items() if not c["matches_onnxruntime"]]
    worst = max(c["max_abs_diff_vs_onnxruntime"] for c in checked.values())
    if bad:
        return [f"⚠ OpenVINO's outputs differ from onnxruntime's by more than rtol = atol = 1e-3 on: "
                f"{', '.join(bad)} (largest |difference| {worst:.2g}).", ""]
    return [f"OpenVINO's outputs match onnxruntime's within rtol = atol = 1e-3 on "
            f"{', '.join(checked)} (largest |difference| {worst:.2g}).", ""]


def ratio_table(results: dict) -> list[str]:
    cols = [("kiln", peer) for peer in PEERS] + [("kiln", "kiln-O0")]
    names = [f"kiln / {name}" for name in PEERS.values()] + ["opt 2 / opt 0"]
    lines = [f"| model | {' | '.join(names)} |", "|---|" + "---|" * len(cols)]
    for model, per in results.items():
        lines.append(f"| {model} | " + " | ".join(ratio_text(ratio(per, a, b)) for a, b in cols) + " |")
    lines.append("| **geometric mean** | " + " | ".join(geomean_text(results, a, b) for a, b in cols) + " |")
    return lines + [""]


def pytorch_table(results: dict) -> list[str]:
    """kiln's PyTorch paths next to Inductor; nothing where none of them ran."""
    lines = ["| model | kiln (ONNX) | kiln (torch.export) | export / ONNX | torch.compile (Inductor) | "
             "torch.compile(backend=\"kiln\") | kiln / Inductor |", "|---|---|---|---|---|---|---|"]
    for model, per in results.items():
        if not any(rt in per for rt in ("kiln-export", "torch-compile", "kiln-torch-compile")):
            continue
        c = {rt: short_cell(per.get(rt, {})) for rt in ("kiln", "kiln-export", "torch-compile", "kiln-torch-compile")}
        lines.append(f"| {model} | {c['kiln']} | {c['kiln-export']} | {ratio_text(ratio(per, 'kiln-export', 'kiln'))} | "
                     f"{c['torch-compile']} | {c['kiln-torch-compile']} | "
                     f"{ratio_text(ratio(per, 'kiln-torch-compile', 'torch-compile'))} |")
    return ["### PyTorch paths", "", *lines, ""] if len(lines) > 2 else []


def render(run: dict) -> str:
    lines = header(run)
    for batch in run["batches"]:
        results = run["results"].get(str(batch))
        if not results:                                    # not reached yet
            continue
        lines += [f"## Batch {batch}", "", "### Latency, ms: median (10th–90th percentile)", "",
                  *latency_table(results),
                  "### kiln / peer (median / median)", "", *ratio_table(results),
                  *pytorch_table(results)]
    return "\n".join(lines).rstrip("\n") + "\n"
