"""Bad models and bad inputs raise KilnError subclasses whose messages name model, node and op."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import kiln
from kiln.errors import InputError, ModelLoadError, OpError, UnsupportedError


def model(nodes, inputs=None, outputs=None, opset=17, domains=(), name="m"):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    g = helper.make_graph(nodes, name, inputs, outputs)
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 8
    return m


RELU = model([helper.make_node("Relu", ["x"], ["y"], name="act")])


def save(tmp_path, m, name="model.onnx"):
    p = tmp_path / name
    p.write_bytes(m.SerializeToString() if isinstance(m, onnx.ModelProto) else m)
    return str(p)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found.*nope.onnx"):
        kiln.import_onnx(str(tmp_path / "nope.onnx"))


def test_directory_and_empty_file(tmp_path):
    with pytest.raises(ModelLoadError, match="directory"):
        kiln.import_onnx(str(tmp_path))
    with pytest.raises(ModelLoadError, match="empty"):
        kiln.import_onnx(save(tmp_path, b""))


def test_non_onnx_files(tmp_path):
    for junk in (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, b"hello, I am a text file\n",
                 b"\xff" * 100):
        with pytest.raises(ModelLoadError, match="model.onnx"):
            kiln.import_onnx(save(tmp_path, junk))


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_file(tmp_path, frac):
    from kiln.testing.models import small_cnn
    data = small_cnn().SerializeToString()
    with pytest.raises(kiln.KilnError):
        kiln.import_onnx(save(tmp_path, data[: int(len(data) * frac)]))


def test_unknown_op_names_node_and_op():
    m = model([helper.make_node("FancyOp", ["x"], ["y"], name="n7")])
    with pytest.raises(UnsupportedError, match=r"node 'n7' \(FancyOp\).*'FancyOp'.*not supported"):
        kiln.import_onnx(m)


def test_unknown_domain():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="r", domain="com.example")],
              domains=["com.example"])
    with pytest.raises(UnsupportedError, match="node 'r'.*domain 'com.example'"):
        kiln.import_onnx(m)


def test_unsupported_opset():
    m = model([helper.make_node("Relu", ["x"], ["y"])], opset=999)
    with pytest.raises(UnsupportedError, match="opset 999"):
        kiln.import_onnx(m)


def test_wrong_attribute():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="act", alpha=0.5)])
    with pytest.raises(OpError, match=r"node 'act' \(Relu\).*no attribute 'alpha'"):
        kiln.import_onnx(m)


def test_wrong_arity():
    m = model([helper.make_node("Add", ["x"], ["y"], name="plus")])
    with pytest.raises(OpError, match=r"plus.*Add takes 2 inputs, got 1"):
        kiln.import_onnx(m)


def test_undefined_input_and_missing_output():
    m = model([helper.make_node("Relu", ["ghost"], ["y"], name="act")])
    with pytest.raises(kiln.KilnError, match="'ghost' is not defined"):
        kiln.import_onnx(m)
    m = model([helper.make_node("Relu", ["x"], ["z"], name="act")])
    with pytest.raises(kiln.KilnError, match="output 'y' is never produced"):
        kiln.import_onnx(m)


def test_the_model_name_is_in_the_message(tmp_path):
    path = save(tmp_path, model([helper.make_node("FancyOp", ["x"], ["y"])]), "resnet_x.onnx")
    with pytest.raises(UnsupportedError, match="resnet_x.onnx"):
        kiln.import_onnx(path)


class TestInputs:
    m = kiln.compile(RELU, target="interpret")

    def test_good(self):
        x = np.array([[-1, 2, -3, 4]], np.float32)
        np.testing.assert_array_equal(self.m.run({"x": x})[0], np.maximum(x, 0))
        np.testing.assert_array_equal(self.m(x), np.maximum(x, 0))

    def test_wrong_name(self):
        with pytest.raises(InputError, match="unknown input 'X'.*inputs are 'x'"):
            self.m.run({"X": np.zeros((1, 4), np.float32)})

    def test_missing(self):
        with pytest.raises(InputError, match="missing input 'x'"):
            self.m.run({})

    def test_wrong_dtype(self):
        with pytest.raises(InputError, match="'x' expects dtype f32, got f64"):
            self.m.run({"x": np.zeros((1, 4))})

    def test_wrong_rank_and_shape(self):
        with pytest.raises(InputError, match="expects rank 2"):
            self.m.run({"x": np.zeros((4,), np.float32)})
        with pytest.raises(InputError, match=r"dim 1 must be 4"):
            self.m.run({"x": np.zeros((1, 5), np.float32)})

    def test_not_an_array(self):
        with pytest.raises(InputError, match="numpy array"):
            self.m.run({"x": object()})
        with pytest.raises(InputError, match="dict"):
            self.m.run([np.zeros((1, 4), np.float32)])

    def test_positional_count(self):
        with pytest.raises(InputError, match="expects 1 positional"):
            self.m()


def test_symbolic_dims_must_agree():
    m = model([helper.make_node("Add", ["a", "b"], ["y"])],
              inputs=[helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N"]),
                      helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N"])])
    mod = kiln.compile(m, target="interpret")
    with pytest.raises(InputError, match="dim 'N' is 3 here but 2"):
        mod.run({"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)})


def test_failure_inside_an_op_names_the_node():
    m = model([helper.make_node("Add", ["a", "b"], ["y"], name="plus")],
              inputs=[helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N"]),
                      helper.make_tensor_value_info("b", TensorProto.FLOAT, ["M"])])
    mod = kiln.compile(m, target="interpret")
    with pytest.raises(OpError, match="Add 'plus'"):
        mod.run({"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)})


def test_unknown_target_and_source():
    with pytest.raises(kiln.KilnError, match="unknown target"):
        kiln.compile(RELU, target="tpu")
    with pytest.raises(kiln.KilnError, match="cannot compile a int"):
        kiln.compile(42)
