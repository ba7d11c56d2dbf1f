"""Compile progress (a reporter passed down, one step per pass, node lowered and C unit) and the
summary `kiln compile` prints."""
import onnx
import pytest

import kiln
from kiln.cli import main
from kiln.passes.pipelines import pipeline
from kiln.runtime.plan import static_plan
from kiln.testing.models import small_cnn


class Recorder:
    """A progress reporter that writes down what the compiler tells it."""

    def __init__(self):
        self.stages = []                      # [name, total, [details], note]

    def stage(self, name, total=None):
        self.stages.append([name, total, [], None])

    def advance(self, detail=""):
        self.stages[-1][2].append(detail)

    def done(self, note=""):
        self.stages[-1][3] = note


@pytest.fixture()
def cnn(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), str(path))
    return str(path)


def test_progress_reports_every_stage(cnn):
    rec = Recorder()
    m = kiln.compile(cnn, progress=rec)
    names = [s[0] for s in rec.stages]
    assert names == ["import", "passes", "kernels", "cc"]
    _, total, passes, _ = rec.stages[1]
    assert passes == pipeline(2) and total == len(passes)
    _, total, ops, _ = rec.stages[2]
    assert ops == [n.op for n in m.graph.nodes] and total == len(ops)
    _, total, units, note = rec.stages[3]
    assert sorted(units) == sorted(m._native.program.sources) and total == len(units) and note is None
    again = Recorder()
    kiln.compile(cnn, progress=again)
    assert again.stages[3][2:] == [[], "cache hit"]


def test_compile_prints_a_summary_and_no_progress_when_not_a_terminal(cnn, tmp_path, capsys):
    assert main(["compile", cnn, "-o", str(tmp_path / "cnn.kiln")]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    m = kiln.compile(cnn)
    imported = kiln.import_onnx(cnn)
    plan = static_plan(m._native.program, {m.graph.inputs[0]: (1, 3, 32, 32)})
    lines = {ln.split()[0]: ln for ln in cap.out.splitlines()[1:]}
    assert f"{len(imported.nodes)} imported -> {len(m.graph.nodes)} optimized" in lines["nodes"]
    assert f"{len(m.manifest['kernels'])} ({m.compile_info['unique_kernels']} unique)" in lines["kernels"]
    assert f"({plan.arena_bytes:,} bytes)" in lines["arena"]
    assert f"({m.manifest['weights_bytes']:,} bytes)" in lines["weights"]
    for stage in ("import", "passes", "lower", "cc", "cache miss"):
        assert stage in lines["compile"]
    listed = [item.split() for item in lines["slowest"].split(None, 2)[2].split(", ")]
    assert len(listed) == 3 and all(name in pipeline(2) and unit == "s" for name, _, unit in listed)
    times = [float(t) for _, t, _ in listed]
    assert times == sorted(times, reverse=True)


def test_progress_flag_draws_the_bars(cnn, tmp_path, capsys):
    assert main(["compile", cnn, "-o", str(tmp_path / "cnn.kiln"), "--progress"]) == 0
    err = capsys.readouterr().err
    n = len(pipeline(2))
    bars = {ln.split()[0]: ln for ln in err.splitlines() if ln.strip()}
    assert set(bars) == {"import", "passes", "kernels", "cc"}
    assert f"{n}/{n}" in bars["passes"]
