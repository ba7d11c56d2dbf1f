"""`make bench` (benchmarks/bench.py): the report's ratios and geometric means, one process per cell,
and a failure or a timeout marking only its own cell."""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from benchmarks import bench, bench_report  # noqa: E402


def _cell(ms: float) -> dict:
    return {"median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.2, "runs": 20}


def _run(results: dict) -> dict:
    return {"date": "2026-01-01 00:00 UTC", "cpu": "test CPU", "threads": 2, "batches": [1], "seq": 128,
            "budget_s": 4.0, "min_runs": 5, "versions": {"kiln": "0.1.0"}, "results": {"1": results}}


def _row(text: str, first: str) -> list[str]:
    """The cells of the first table row of `text` whose first cell is `first`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == first:
            return cells[1:]
    raise AssertionError(f"no row {first!r} in\n{text}")


def test_ratios_and_geometric_mean_over_the_models():
    medians = {"mlp": (1.0, 2.0, 4.0), "resnet18": (30.0, 15.0, None), "bert": (100.0, 100.0, 50.0)}
    results = {}
    for model, (kiln_ms, ort_ms, ov_ms) in medians.items():
        results[model] = {"kiln": _cell(kiln_ms), "onnxruntime": _cell(ort_ms),
                          "openvino": _cell(ov_ms) if ov_ms else {"error": "timed out after 300 s"}}
    text = bench_report.render(_run(results))
    ratio_table = text.split("### kiln / peer")[1]
    kiln_ort = [k / o for k, o, _ in medians.values()]
    kiln_ov = [k / v for k, _, v in medians.values() if v]
    assert _row(ratio_table, "mlp")[:2] == [f"{kiln_ort[0]:.2f}x", f"{kiln_ov[0]:.2f}x"]
    assert _row(ratio_table, "resnet18")[:2] == [f"{kiln_ort[1]:.2f}x", "–"]
    geo = _row(ratio_table, "**geometric mean**")
    assert geo[0] == f"**{statistics.geometric_mean(kiln_ort):.2f}x**"
    assert geo[1] == f"**{statistics.geometric_mean(kiln_ov):.2f}x** (2 of 3)"
    assert geo[2] == "–"                                    # torch eager did not run
    latency = _row(text.split("### Latency")[1], "resnet18")
    assert latency[3] == "error: timed out after 300 s"      # the OpenVINO cell, and only it
    assert latency[2] == "15.00 (13.50–18.00)"


def test_openvino_outputs_that_differ_from_onnxruntime_are_flagged():
    results = {"mlp": {"openvino": {**_cell(1.0), "max_abs_diff_vs_onnxruntime": 0.5, "matches_onnxruntime": False}},
               "bert": {"openvino": {**_cell(2.0), "max_abs_diff_vs_onnxruntime": 1e-5, "matches_onnxruntime": True}}}
    text = bench_report.render(_run(results))
    assert _row(text, "mlp")[3].endswith("⚠") and not _row(text, "bert")[3].endswith("⚠")
    assert "differ from onnxruntime's by more than rtol = atol = 1e-3 on: mlp (largest |difference| 0.5)" in text


def test_a_timeout_kills_the_worker_and_its_children():
    # The worker starts a grandchild that holds its pipes, as torch.compile's compile workers do:
    # unless the whole process group dies, reading the pipes would wait for the grandchild.
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    t = time.perf_counter()
    status, out, err = bench.run_isolated([sys.executable, "-c", code], dict(os.environ), 1.0)
    assert status is None and time.perf_counter() - t < 10
    assert bench.parse_cell(status, out, err, 1.0) == {"error": "timed out after 1 s"}
    assert bench.parse_cell(-11, "", "", 1.0) == {"error": "killed by signal 11"}


def test_each_cell_keeps_its_fastest_round():
    ok = lambda m: {"median_ms": m, "p10_ms": m, "p90_ms": m, "runs": 5}
    cell = bench.best_round(None, {"error": "boom"})
    cell = bench.best_round(cell, ok(3.0))
    cell = bench.best_round(cell, ok(2.0))
    cell = bench.best_round(cell, ok(2.5))
    assert cell["median_ms"] == 2.0 and cell["round_medians"] == [None, 3.0, 2.0, 2.5]
    assert bench.best_round(ok(1.0), {"error": "boom"})["median_ms"] == 1.0


def test_both_batches_in_one_run_and_a_failing_runtime_marks_only_its_cell(tmp_path):
    out = tmp_path / "RESULTS.md"
    bench.main(["--models", "mlp", "--batch", "1,2", "--runtimes", "onnxruntime,no-such-runtime",
                "--budget", "0.2", "--out", str(out)])
    run = json.loads(out.with_suffix(".json").read_text())
    assert run["batches"] == [1, 2] and run["threads"] == 2
    for batch in ("1", "2"):
        cells = run["results"][batch]["mlp"]
        ort = cells["onnxruntime"]
        assert ort["runs"] >= 5 and 0 < ort["p10_ms"] <= ort["median_ms"] <= ort["p90_ms"]
        assert "unknown runtime 'no-such-runtime'" in cells["no-such-runtime"]["error"]
        assert len(ort["round_medians"]) == run["rounds"] == bench.ROUNDS
    assert run["versions"]["onnxruntime"]
    text = out.read_text()
    assert "## Batch 1" in text and "## Batch 2" in text
    assert _row(text.split("## Batch 2")[1], "mlp")[2] == bench_report.latency_cell(run["results"]["2"]["mlp"]["onnxruntime"])
