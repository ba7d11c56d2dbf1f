"""The benchmark model set (benchmarks/models): exported ONNX matches PyTorch eager in
onnxruntime at several batch sizes, and imports into kiln with a symbolic batch dim.
Only the two quick models; needs the `models` extra (skipped without torch)."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import kiln  # noqa: E402
from benchmarks import models  # noqa: E402

QUICK = ["mlp", "resnet18"]


@pytest.fixture(scope="module", params=QUICK)
def built(request):
    name = request.param
    path = models.get(name)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return name, path, sess, models.torch_model(name)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_matches_torch_eager(built, batch):
    name, _, sess, module = built
    feeds = models.example_inputs(name, batch)
    with torch.no_grad():
        ref = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    (out,) = sess.run(None, feeds)
    assert out.shape == ref.shape and out.shape[0] == batch
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4)


def test_kiln_imports_with_symbolic_batch(built):
    name, path, _, _ = built
    g = kiln.import_onnx(path)
    (x,) = g.inputs
    assert x.name == "input"
    assert x.type.shape[0] == "N"
    assert x.type.shape[1:] == models.example_inputs(name, 1)["input"].shape[1:]
    assert g.outputs[0].type.shape[0] == "N"


def test_get_reuses_the_cached_file():
    path = models.get("mlp")
    mtime = os.stat(path).st_mtime_ns
    assert models.get("mlp") == path and os.stat(path).st_mtime_ns == mtime
    assert path.endswith(".onnx") and os.path.getsize(path) > 0


def test_example_inputs_are_valid():
    for name in models.NAMES:
        feeds = models.example_inputs(name, 3, seq=7)
        assert all(v.shape[0] == 3 for v in feeds.values())
    ids = models.example_inputs("bert", 4, seq=128)
    assert ids["input_ids"].dtype == np.int64 and ids["input_ids"].shape == (4, 128)
    assert 0 <= ids["input_ids"].min() and ids["input_ids"].max() < 30522
    mask = ids["attention_mask"]
    assert set(np.unique(mask)) <= {0, 1} and (mask[:, 0] == 1).all() and (mask[:, -1] == 0).all()
    # each row is ones then zeros (right padding)
    assert (np.diff(mask, axis=1) <= 0).all()
    with pytest.raises(ValueError):
        models.get("nope")


@pytest.mark.parametrize("batch", [1, 8])
def test_compiled_matches_onnxruntime(built, batch):
    """target="cpu" with no host ops, one library for every batch size, results as onnxruntime's."""
    name, path, sess, _ = built
    m = _compiled(path)
    assert m.host_ops == []
    feeds = models.example_inputs(name, batch)
    (ours,), (ref,) = m.run(feeds), sess.run(None, feeds)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4)


_MODULES = {}


def _compiled(path):
    if path not in _MODULES:
        _MODULES[path] = kiln.compile(path, target="cpu")
    return _MODULES[path]
