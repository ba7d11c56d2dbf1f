"""The ONNX backend test suite (every case the `onnx` package ships) through the interpreter.

Every imported model's IR text must round-trip. Cases kiln cannot pass yet are listed, each with a
reason, in tests/onnx_expected_failures.txt; they are strict xfails, so a fixed case must be
removed from the list.
"""
import numpy as np
import pytest

import kiln
from kiln.ir import verify
from onnx_suite import cases, compare, expected_failures, load_case

XFAIL = expected_failures("onnx_expected_failures.txt")


def _params():
    out = []
    for name in sorted(cases()):
        marks = [pytest.mark.xfail(reason=XFAIL[name], strict=True)] if name in XFAIL else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params())
def test_case(name):
    case = cases()[name]
    model, data = load_case(case)
    if not data:
        pytest.skip("case ships no data")
    graph = verify(kiln.import_onnx(model))
    text = str(graph)
    assert str(kiln.parse_ir(text, graph.weights())) == text
    m = kiln.compile(graph, target="interpret")
    names = graph.meta.get("onnx_inputs", [v.name for v in graph.inputs])
    for ins, refs in data:
        feed_names = names if len(ins) == len(names) else [v.name for v in graph.inputs]
        outs = m.run(dict(zip(feed_names, ins)))
        compare(outs, refs, case.rtol, case.atol)
