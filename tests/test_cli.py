"""The `kiln` command line: compile, run, ir, ops, and clean errors."""
import numpy as np
import onnx
import pytest

from kiln.cli import main
from kiln.testing.models import small_cnn


@pytest.fixture()
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), str(path))
    return path


def test_compile_then_run(model, tmp_path, capsys):
    out = tmp_path / "cnn.kiln"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    assert "0 host ops" in capsys.readouterr().out
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(out), "--input", f"image={tmp_path / 'x.npy'}", "--save", str(tmp_path / "o_")]) == 0
    assert "probs: float32[2, 10]" in capsys.readouterr().out
    y = np.load(tmp_path / "o_probs.npy")
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)


def test_ir_kernels_and_ops(model, capsys):
    assert main(["ir", str(model)]) == 0
    assert "= Conv(%image" in capsys.readouterr().out
    assert main(["ir", str(model), "--kernels"]) == 0
    text = capsys.readouterr().out
    assert "kernel k0_Conv" in text and "/* Conv 'stem/Conv' */" in text
    assert main(["ops"]) == 0
    assert "with a native lowering" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.onnx")]) == 2
    assert "kiln: error: model file not found" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.kiln")]) == 2
    assert "artifact not found" in capsys.readouterr().err
