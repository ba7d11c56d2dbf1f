"""The ONNX backend test suite (every case the `onnx` package ships) through kiln.

- target "interpret": every case. Every imported model is verified and its IR text must round-trip.
- target "cpu": a fixed, representative slice (every 6th case by name), compiled to native code.

Cases kiln cannot pass yet are listed, each with a reason, in tests/onnx_expected_failures.txt
(prefix `cpu:` for the compiled slice only); they are strict xfails, so a fixed case must be
removed from the list. The full suite runs with `make conformance` / `make conformance-cpu`.
"""
import warnings
import zlib

import pytest

import kiln
from kiln.ir import verify
from onnx_suite import cases, compare, expected_failures, load_case

XFAIL = expected_failures("onnx_expected_failures.txt")
CPU_SLICE = 6


def _params(target: str):
    out = []
    for name in sorted(cases()):
        if target == "cpu" and zlib.crc32(name.encode()) % CPU_SLICE:
            continue
        reason = XFAIL.get(name) or (XFAIL.get(f"cpu:{name}") if target == "cpu" else None)
        # an unseeded random op's few output bits can match the expected stream by chance
        strict = reason is not None and "random stream" not in reason
        marks = [pytest.mark.xfail(reason=reason, strict=strict)] if reason else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def run_case(name: str, target: str):
    case = cases()[name]
    model, data = load_case(case)
    if not data:
        pytest.skip("case ships no data")
    graph = verify(kiln.import_onnx(model))
    text = str(graph)
    assert str(kiln.parse_ir(text, graph.weights())) == text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = kiln.compile(graph, target=target)
    names = graph.meta.get("onnx_inputs", [v.name for v in graph.inputs])
    for ins, refs in data:
        feed_names = names if len(ins) == len(names) else [v.name for v in graph.inputs]
        outs = m.run(dict(zip(feed_names, ins)))
        compare(outs, refs, case.rtol, case.atol)


@pytest.mark.parametrize("name", _params("interpret"))
def test_interpret(name):
    run_case(name, "interpret")


@pytest.mark.parametrize("name", _params("cpu"))
def test_cpu(name):
    run_case(name, "cpu")
