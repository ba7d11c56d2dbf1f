"""kiln compare: a fault injected into a kernel that only the `fuse` pass creates is found, named
with its source nodes and bisected to `fuse`; clean models show no divergence against both
references; the node-by-node run is the fast path's arithmetic; passes can be switched off."""
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kiln
from kiln.cli import main
from kiln.compiler import lower_for_cpu, optimize
from kiln.passes import pipelines
from kiln.runtime.debug_run import run_node_by_node
from kiln.runtime.validate import bind_inputs
from kiln.testing.models import small_cnn
from kiln.tools.compare import bisect_passes, compare, error_stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture()
def cnn(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", cache)
    monkeypatch.delenv("KILN_INJECT_FAULT", raising=False)
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), str(path))
    return str(path)


def test_injected_fault_is_named_and_bisected_to_fuse(cnn, monkeypatch, capsys):
    monkeypatch.setenv("KILN_INJECT_FAULT", "fused")
    run = compare(cnn)
    first = run.result.first
    node = run.module.graph.nodes[first.index]
    # the first Fused kernel of the graph, and nothing before it, is off
    fused = [i for i, n in enumerate(run.module.graph.nodes) if n.op == "Fused"]
    assert node.op == "Fused" and first.index == fused[0]
    assert all(c.ok for c in run.result.checks if c.index < first.index)
    assert "fused" in first.kernel and first.kernel == run.module._native.program.native[first.index].kernel.name
    assert [n.name for n in node.attrs["body"].nodes] == ["stem/Conv", "stem/Relu"]
    assert first.sources == ["BlockedConv 'stem/Conv'", "Relu 'stem/Relu'"]
    assert first.mismatches == 1 and first.worst == (0, 0, 0, 0)
    assert first.got - first.expected == pytest.approx(1.0, abs=1e-5)

    steps, culprits = bisect_passes(run, 2)
    assert culprits == ["fuse"]
    assert [s.disabled for s in steps] == pipelines.pipeline(2) + ["all"]
    assert {s.disabled: s.status for s in steps}["all"] == "no divergence"
    assert all(s.status == "diverges" for s in steps if s.disabled not in ("fuse", "all"))

    assert main(["compare", cnn, "--bisect-passes"]) == 1
    out = capsys.readouterr().out
    assert f"DIVERGENCE at node {first.index}: {first.kernel}" in out
    assert "source nodes: BlockedConv 'stem/Conv', Relu 'stem/Relu'" in out
    assert "the divergence disappears without: fuse" in out

    # a pass that another needs cannot be switched off alone: the bisection says so
    monkeypatch.setitem(pipelines.REQUIRES, "pack-weights", {"fuse"})
    steps, culprits = bisect_passes(run, 2)
    by_pass = {s.disabled: s for s in steps}
    assert by_pass["fuse"].status == "invalid" and "pack-weights needs it" in by_pass["fuse"].detail
    assert culprits == []


def test_fault_hook_changes_the_c_and_nothing_when_unset(cnn, monkeypatch):
    graph, _ = optimize(kiln.import_onnx(cnn), 2)
    clean = lower_for_cpu(graph).sources
    assert lower_for_cpu(graph).sources == clean
    monkeypatch.setenv("KILN_INJECT_FAULT", "no-such-kernel")
    assert lower_for_cpu(graph).sources == clean
    monkeypatch.setenv("KILN_INJECT_FAULT", "fused")
    faulty = lower_for_cpu(graph).sources
    assert faulty != clean
    assert sum(text.count("+ 1);  /* KILN_INJECT_FAULT */") for text in faulty.values()) == 1


def test_clean_model_shows_no_divergence(cnn, capsys):
    for reference in ("interpret", "onnxruntime"):
        assert main(["compare", cnn, "--reference", reference]) == 0
        assert "no divergence" in capsys.readouterr().out
    run = compare(cnn)
    # every value the optimized graph computes kept its name, so every one was compared
    computed = {v.name for n in run.module.graph.nodes for v in n.outputs if v is not None}
    assert {c.value for c in run.result.checks} == computed
    assert run.result.first is None and run.result.skipped == []


def test_mlp_from_the_model_set_shows_no_divergence(cache, monkeypatch):
    pytest.importorskip("torch")
    from benchmarks import models
    monkeypatch.setenv("KILN_CACHE_DIR", cache)
    monkeypatch.delenv("KILN_INJECT_FAULT", raising=False)
    for reference in ("interpret", "onnxruntime"):
        run = compare(models.get("mlp"), reference=reference)
        assert run.result.first is None
        assert len(run.result.checks) == len(run.module.graph.nodes) == 3
        assert max(c.max_abs for c in run.result.checks) < 1e-4


def test_node_by_node_run_is_the_fast_path(cnn):
    m = kiln.compile(cnn)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (fast,) = m.run({"image": x})
    steps = list(run_node_by_node(m._native, bind_inputs(m.graph, {"image": x})))
    assert [i for i, _, _ in steps] == list(range(len(m.graph.nodes)))
    (last,) = steps[-1][2].values()
    np.testing.assert_array_equal(last, fast)


def _host_model(host_node, out_type):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), host_node,
             helper.make_node("Neg", ["h"], ["y"], name="neg")]
    g = helper.make_graph(nodes, "host", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", out_type, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("host_node,out_type", [
    (helper.make_node("GlobalLpPool", ["r"], ["h"], p=2, name="lp"), TensorProto.FLOAT),   # static plan
    (helper.make_node("NonZero", ["r"], ["h"], name="nz"), TensorProto.INT64),              # shapes from data
], ids=["static-plan", "data-dependent-shapes"])
def test_host_nodes_between_kernels(cnn, host_node, out_type):
    run = compare(_host_model(host_node, out_type))
    assert run.result.first is None
    assert [c.kernel.split()[0] for c in run.result.checks] == ["k0_Relu", "host", "k2_Neg"]
    m = run.module
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4)).astype(np.float32)
    steps = list(run_node_by_node(m._native, bind_inputs(m.graph, {"x": x})))
    (last,) = steps[-1][2].values()
    np.testing.assert_array_equal(last, m.run({"x": x})[0])


def test_disabled_passes(cnn):
    assert pipelines.pipeline(2, {"fuse"}) == [p for p in pipelines.PIPELINES[2] if p != "fuse"]
    with pytest.raises(kiln.KilnError, match="not in the opt_level 1 pipeline"):
        pipelines.pipeline(1, {"fuse"})
    m = kiln.compile(cnn, disable=["fuse"])
    assert m.manifest["disabled_passes"] == ["fuse"]
    assert "Fused" not in {n.op for n in m.graph.nodes}
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ref = kiln.compile(cnn, target="interpret").run({"image": x})[0]
    np.testing.assert_allclose(m.run({"image": x})[0], ref, rtol=1e-4, atol=1e-5)


def test_error_stats():
    want = np.array([0.0, 1.0, -2.0, np.inf, np.nan])
    s = error_stats(want.copy(), want, rtol=1e-3, atol=1e-4)
    assert s["mismatches"] == 0 and s["max_abs"] == 0
    got = np.array([0.0, 1.0015, -2.0, np.inf, np.nan])     # tolerance 1e-4 + 1e-3 * 2
    s = error_stats(got, want, rtol=1e-3, atol=1e-4)
    assert s["mismatches"] == 0 and s["max_abs"] == pytest.approx(0.0015)
    got[2] = -2.01
    got[3] = 5.0
    s = error_stats(got, want, rtol=1e-3, atol=1e-4)
    assert s["mismatches"] == 2 and s["worst"] == (3,) and s["max_abs"] == np.inf
    assert error_stats(np.array([70000]), np.array([70001]), 1e-3, 1e-4)["mismatches"] == 1
