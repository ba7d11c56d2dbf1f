"""`kiln report`: the HTML page loads in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) with no console or page errors and no network request, its sections render with the
content the model implies, and the test leaves a screenshot in build/ (report_<model>.png)."""
import ctypes
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)                                   # the repo root, for benchmarks

import kiln  # noqa: E402
from kiln.cli import main  # noqa: E402
from kiln.passes.pipelines import pipeline  # noqa: E402
from kiln.runtime.plan import static_plan  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(ROOT, "build")
MAX_SHOT = 5000               # px: a big model's page is ~24000 px tall; its top 5000 show the graphs
SECTIONS = ["summary", "graphs", "passes", "kernels", "roofline", "memory", "host"]

FACTS_JS = """() => {
  const size = (el) => {
    if (!el) return 0;
    const r = el.getBoundingClientRect();
    return r.width * r.height;
  };
  const count = (sel) => document.querySelectorAll(sel).length;
  const sections = {};
  for (const id of %s) sections[id] = size(document.getElementById(id));
  return {
    sections,
    beforeNodes: count('#graph-before svg g.node'), afterNodes: count('#graph-after svg g.node'),
    afterClusters: count('#graph-after svg g.cluster'), afterEdges: count('#graph-after svg g.edge'),
    graphSize: size(document.querySelector('#graph-after svg')),
    passRows: count('#pass-table tbody tr'), kernelRows: count('#kernel-table tbody tr'),
    rooflinePoints: count('#roofline circle.point'), roofLines: count('#roofline .roof'),
    memoryBlocks: count('#memory rect.block'), memorySize: size(document.querySelector('#memory svg')),
    hostRows: count('#host-table tbody tr'), hostNone: !!document.getElementById('host-none'),
  };
}""" % SECTIONS


def open_report(path: str, shot: str) -> dict:
    """Load the page, collect errors, facts and the effect of the zoom and filter controls."""
    from playwright.sync_api import sync_playwright
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto("file://" + os.path.abspath(path))
        page.wait_for_load_state("load")
        facts = page.evaluate(FACTS_JS)
        width = lambda: page.evaluate(
            "document.querySelector('#graph-after svg').getBoundingClientRect().width")
        w0 = width()
        page.click("button[data-target='graph-after'][data-op='in']")
        facts["zoomed"] = width() / w0
        page.click("button[data-target='graph-after'][data-op='reset']")
        page.locator("#kernel-table details summary").first.click()
        facts["code"] = page.locator("#kernel-table details pre.code").first.inner_text()
        page.fill("#kernel-filter", "k0_")
        facts["filtered"] = page.evaluate(
            "[...document.querySelectorAll('#kernel-table tbody tr')]"
            ".filter(t => t.style.display !== 'none').length")
        page.fill("#kernel-filter", "")
        page.evaluate("window.scrollTo(0, 0)")
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_SHOT)
        page.screenshot(path=shot, full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": height})
        browser.close()
    facts["errors"], facts["requests"] = errors, requests
    return facts


def check(facts: dict, path: str, imported, m) -> None:
    prog = m._native.program
    assert facts["errors"] == []
    assert all(u.startswith("file://") for u in facts["requests"]), facts["requests"]
    assert all(facts["sections"][s] > 0 for s in SECTIONS), facts["sections"]
    g = m.graph
    fused = [n for n in g.nodes if n.op == "Fused"]
    boxes = sum(len(n.attrs["body"].nodes) for n in fused) + len(g.nodes) - len(fused)
    assert facts["beforeNodes"] == len(imported.nodes) + len(imported.inputs) + len(imported.outputs)
    assert facts["afterNodes"] == boxes + len(g.inputs) + len(g.outputs)
    assert facts["afterClusters"] == len(fused) and facts["afterEdges"] >= len(g.nodes)
    assert facts["graphSize"] > 0 and facts["memorySize"] > 0
    assert facts["passRows"] == len(pipeline(2))
    kernels = [nk for nk in prog.native.values() if nk.node.outputs[0] not in prog.views]
    assert facts["kernelRows"] == len(kernels)         # views (no-copy reshapes) run no kernel
    assert 0 < facts["rooflinePoints"] <= len(kernels) and facts["roofLines"] == 1
    assert facts["hostNone"] == (not prog.host) and facts["hostRows"] == len(prog.host)
    assert facts["zoomed"] == pytest.approx(1.5, rel=0.01)
    assert facts["code"].startswith("/*") and "void k" in facts["code"]
    assert facts["filtered"] == sum(1 for nk in kernels if "k0_" in nk.kernel.name)
    assert os.path.getsize(path) > 10_000


def arena_values(m, feeds: dict) -> int:
    prog = m._native.program
    plan = static_plan(prog, {v: feeds[v.name].shape for v in prog.graph.inputs})
    return len(plan.offsets)


@pytest.fixture()
def restore_threads():
    yield
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(os.cpu_count() or 1)
    except OSError:
        pass


def test_report_of_mlp_in_chromium(tmp_path, capsys):
    pytest.importorskip("torch")
    from benchmarks import models
    from kiln.tools.inputs import random_inputs
    path = models.get("mlp")
    out = tmp_path / "report.html"
    assert main(["report", path, "-o", str(out), "--runs", "2"]) == 0
    assert f"{out}:" in capsys.readouterr().out
    html = out.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    facts = open_report(str(out), os.path.join(SHOTS, "report_mlp.png"))
    imported, m = kiln.import_onnx(path), kiln.compile(path)
    check(facts, str(out), imported, m)
    assert facts["memoryBlocks"] == arena_values(m, random_inputs(m.graph))
    assert os.path.getsize(os.path.join(SHOTS, "report_mlp.png")) > 10_000


@pytest.mark.big
@pytest.mark.parametrize("name", ["resnet50", "bert"])
def test_report_of_big_models_in_chromium(name, tmp_path, restore_threads):
    pytest.importorskip("torch")
    from benchmarks import models
    path = models.get(name)
    out = tmp_path / f"{name}.html"
    assert main(["report", path, "-o", str(out), "--runs", "1", "--threads", "1"]) == 0
    facts = open_report(str(out), os.path.join(SHOTS, f"report_{name}.png"))
    check(facts, str(out), kiln.import_onnx(path), kiln.compile(path))


def host_op_model():
    """Conv -> Relu -> GlobalLpPool (no native lowering: a host op) -> Sigmoid."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    w = np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalLpPool", ["r"], ["p"], p=2),
             helper.make_node("Sigmoid", ["p"], ["y"])]
    g = helper.make_graph(nodes, "hostdemo",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")
def test_report_shows_host_ops_and_fusion_clusters():
    from kiln.tools.graph_svg import graph_dot
    from kiln.tools.report import build_report
    html = build_report(host_op_model(), runs=1)
    assert '<table id="host-table">' in html
    assert "<td>GlobalLpPool</td><td></td><td>no lowering</td>" in html
    assert html.count('stroke="#cc0000"') == 1                   # the host node's red border
    assert "k0_fused_blockedconv_relu (epilogue)" in html
    # the cluster holds the fused body only: edges into it are drawn outside its block
    m = kiln.compile(host_op_model(), disable=["layout"])     # no reorder node in the picture
    dot, boxes = graph_dot(m.graph, {0: "k0"})
    cluster = dot[dot.index("subgraph cluster_0"):]
    cluster = cluster[:cluster.index("\n  }")]
    assert "->" not in cluster and "in0" not in cluster and cluster.count("[label=") == 2
    assert boxes == 4 and "in0 -> n0_0;" in dot and "n0_1 -> n1;" in dot
