"""Whole models built in code with random weights, run by kiln and checked against onnxruntime."""
import numpy as np
import onnx
import pytest

import kiln
from kiln.errors import InputError
from kiln.testing.models import small_cnn

ort = pytest.importorskip("onnxruntime")


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.fixture(scope="module")
def cnn():
    return small_cnn()


@pytest.fixture(scope="module")
def cnn_module(cnn):
    return kiln.compile(cnn, target="interpret")


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_small_cnn_matches_onnxruntime(cnn, cnn_module, batch):
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    (ours,) = cnn_module.run({"image": x})
    (ref,) = run_ort(cnn, {"image": x})
    assert ours.shape == (batch, 10) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_symbolic_batch_flows_through_inference(cnn):
    g = kiln.import_onnx(cnn)
    assert g.inputs[0].type.shape == ("N", 3, 32, 32)
    assert g.outputs[0].type.shape == ("N", 10)
    by_name = {v.name: v for v in g.all_values()}
    assert by_name["stem.out"].type.shape == ("N", 16, 32, 32)
    assert by_name["block2.out"].type.shape == ("N", 64, 4, 4)
    text = str(g)
    assert str(kiln.parse_ir(text, g.weights())) == text


def test_module_describes_its_io(cnn_module):
    (i,), (o,) = cnn_module.inputs, cnn_module.outputs
    assert (i.name, i.dtype, i.shape) == ("image", "f32", ("N", 3, 32, 32))
    assert (o.name, o.dtype, o.shape) == ("probs", "f32", ("N", 10))
    man = cnn_module.manifest
    assert man["target"] == "interpret" and man["inputs"][0]["shape"] == ["N", 3, 32, 32]
    assert man["weights_bytes"] > 0 and "Conv" in man["host_ops"]


def test_external_data(tmp_path, cnn):
    path = tmp_path / "cnn.onnx"
    copy = onnx.ModelProto()
    copy.CopyFrom(cnn)                     # save_model moves the weights out of the proto it gets
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="cnn.weights", size_threshold=0)
    assert (tmp_path / "cnn.weights").exists()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    (ours,) = kiln.compile(str(path), target="interpret").run({"image": x})
    (ref,) = run_ort(cnn, {"image": x})
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    (tmp_path / "cnn.weights").unlink()
    with pytest.raises(kiln.KilnError, match="external data"):
        kiln.import_onnx(str(path))


def test_initializer_listed_as_input_is_a_feedable_constant(cnn):
    m = onnx.ModelProto()
    m.CopyFrom(cnn)
    m.graph.input.append(onnx.helper.make_tensor_value_info("fc.b", onnx.TensorProto.FLOAT, [10]))
    g = kiln.import_onnx(m)
    assert [v.name for v in g.inputs] == ["image"]
    const = next(c for c in g.constants if c.name == "fc.b")
    assert const.feedable and "%fc.b: f32[10] = param" in str(g)
    mod = kiln.compile(m, target="interpret")
    x = np.zeros((1, 3, 32, 32), np.float32)
    default = mod.run({"image": x})[0]
    bias = np.zeros(10, np.float32)
    bias[3] = 50.0
    fed = mod.run({"image": x, "fc.b": bias})[0]
    assert fed.argmax() == 3 and not np.allclose(default, fed)


def test_save_and_load(tmp_path, cnn, cnn_module):
    path = tmp_path / "cnn.kiln"
    cnn_module.save(path)
    m2 = kiln.load(path)
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(m2.run({"image": x})[0], cnn_module.run({"image": x})[0], rtol=1e-5, atol=1e-6)
    assert m2.inputs == cnn_module.inputs
    data = path.read_bytes()
    (tmp_path / "cut.kiln").write_bytes(data[: len(data) // 2])
    with pytest.raises(kiln.KilnError, match="corrupt or truncated"):
        kiln.load(tmp_path / "cut.kiln")
    with pytest.raises(kiln.KilnError, match="not found"):
        kiln.load(tmp_path / "none.kiln")


@pytest.mark.parametrize("opt_level", [0, 1, 2, 3])
def test_every_opt_level_matches_the_interpreter(cnn, cnn_module, opt_level, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    m = kiln.compile(cnn, target="cpu", opt_level=opt_level)
    x = np.random.default_rng(opt_level).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(m.run({"image": x})[0], cnn_module.run({"image": x})[0],
                               rtol=1e-4, atol=1e-5)
    ops = {op for k in m.manifest["kernels"] for op in k["ops"]}
    if opt_level >= 2:       # BN folded into the convs, each ReLU fused into its conv's epilogue,
        # the convs blocked (NCHW8c) with one reorder before the global pooling
        assert "BatchNormalization" not in ops and len(m.manifest["kernels"]) == 9
        assert ops >= {"BlockedConv", "FromBlocked"} and "ToBlocked" not in ops
    else:
        assert "BatchNormalization" in ops


def test_returned_outputs_are_never_overwritten_while_held(cnn, tmp_path, monkeypatch):
    """A run may reuse the array it returned last time only once the caller has dropped it (and
    every view of it); a held result keeps its values."""
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    m = kiln.compile(cnn, target="cpu")
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((2, 3, 32, 32)).astype(np.float32) for _ in range(2))
    (a,) = m.run({"image": x1})
    kept = a.copy()
    (b,) = m.run({"image": x2})
    assert b is not a and np.array_equal(a, kept) and not np.allclose(a, b)
    view = b[0]
    del b
    (c,) = m.run({"image": x1})
    assert not np.shares_memory(c, view)
    ident = id(c)
    del c, view
    (d,) = m.run({"image": x2})
    assert id(d) == ident                # dropped: its memory serves the next run
    np.testing.assert_array_equal(d, m.run({"image": x2})[0])


def test_repeated_runs_see_each_runs_inputs(cnn, cnn_module, tmp_path, monkeypatch):
    """Runs with the last run's input names, dtypes and shapes skip validation and plan lookup,
    and rewrite a table entry only for a new array: the same array changed in place, a new array,
    a non-contiguous one, another batch size and a wrong dtype are each seen (or refused) as such."""
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    m = kiln.compile(cnn, target="cpu")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)

    def check(feed):
        np.testing.assert_allclose(m.run({"image": feed})[0], cnn_module.run({"image": feed})[0],
                                   rtol=1e-4, atol=1e-5)
    check(x)
    x *= -1.5                                           # same object, new values
    check(x)
    check(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    check(np.asfortranarray(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)))
    check(rng.standard_normal((3, 3, 32, 32)).astype(np.float32))
    check(x)
    with pytest.raises(InputError, match="dtype"):
        m.run({"image": x.astype(np.float64)})
    with pytest.raises(InputError, match="missing"):
        m.run({})
