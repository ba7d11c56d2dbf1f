"""PointwiseDepthwise (kiln/passes/pointwise_depthwise.py, kiln/ops/pointwise_depthwise.py,
kiln/backend/pointwise_depthwise.py): an inverted-residual block's 1x1 expansion, clamp and
depthwise conv as one kernel whose expanded rows stay in a buffer, against the interpreter."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
import kiln.backend.pointwise_depthwise as backend

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def block_model(blocks):
    """x_k -> 1x1 conv (c -> e) -> act -> depthwise kxk conv -> Clip(0, 6) -> y_k for each
    (c, e, h, w, act, dw attrs); act is "relu6", "relu" or "clip-low" (Clip with only a min)."""
    nodes, inits, inputs, outputs = [], [], [], []
    inits.append(numpy_helper.from_array(np.array(0, np.float32), "zero"))
    inits.append(numpy_helper.from_array(np.array(6, np.float32), "six"))
    inits.append(numpy_helper.from_array(np.array(-0.25, np.float32), "low"))
    for k, (c, e, h, w, act, dw) in enumerate(blocks):
        kh, kw = dw["kernel_shape"]
        inits += [numpy_helper.from_array(rand(e, c, 1, 1, scale=c ** -0.5), f"w{k}"),
                  numpy_helper.from_array(rand(e), f"b{k}"),
                  numpy_helper.from_array(rand(e, 1, kh, kw, scale=0.3), f"d{k}"),
                  numpy_helper.from_array(rand(e), f"c{k}")]
        nodes.append(helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"e{k}"]))
        if act == "relu":
            nodes.append(helper.make_node("Relu", [f"e{k}"], [f"a{k}"]))
        elif act == "clip-low":
            nodes.append(helper.make_node("Clip", [f"e{k}", "low"], [f"a{k}"]))
        else:
            nodes.append(helper.make_node("Clip", [f"e{k}", "zero", "six"], [f"a{k}"]))
        nodes.append(helper.make_node("Conv", [f"a{k}", f"d{k}", f"c{k}"], [f"t{k}"], group=e, **dw))
        nodes.append(helper.make_node("Clip", [f"t{k}", "zero", "six"], [f"y{k}"]))
        inputs.append(f32(f"x{k}", ["N", c, h, w]))
        outputs.append(f32(f"y{k}", None))
    g = helper.make_graph(nodes, "blocks", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


S1 = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
S2 = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
# MobileNetV2's shapes (an odd count of expanded blocks, stride 1 and 2, odd planes), channel
# counts that leave blocks part-filled, a 5x5 window with asymmetric pads, other clamps
BLOCKS = [(16, 96, 24, 24, "relu6", S2), (24, 144, 13, 13, "relu6", S1), (12, 40, 19, 21, "relu", S2),
          (8, 20, 10, 14, "clip-low", dict(kernel_shape=[5, 5], pads=[2, 1, 2, 3])),
          (32, 64, 12, 12, "relu6", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], dilations=[2, 2]))]


@pytest.mark.parametrize("n", [1, 3])
def test_fused_blocks_match_the_interpreter(n):
    model = block_model(BLOCKS)
    mod = kiln.compile(model, target="cpu", opt_level=2, native_only=True)
    anchors = [nd.attrs["body"].nodes[0].op if nd.op == "Fused" else nd.op for nd in mod.graph.nodes]
    assert anchors.count("PointwiseDepthwise") == len(BLOCKS)
    assert "BlockedConv" not in anchors and "Relu" not in anchors and "Clip" not in anchors
    ref = kiln.compile(model, target="interpret", opt_level=0)
    feeds = {f"x{k}": rand(n, c, h, w) for k, (c, _, h, w, *_r) in enumerate(BLOCKS)}
    for got, want in zip(mod.run(feeds), ref.run(feeds)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_small_bands_carry_rows_over_between_bands(monkeypatch):
    """A buffer of a few rows: many bands, each reusing the rows the last one expanded."""
    monkeypatch.setattr(backend, "BUFFER_BYTES", 6 * 2 * 24 * 8 * 4)
    blocks = [BLOCKS[0], BLOCKS[1], BLOCKS[3]]
    model = block_model(blocks)
    mod = kiln.compile(model, target="cpu", opt_level=2, native_only=True)
    ref = kiln.compile(model, target="interpret", opt_level=0)
    feeds = {f"x{k}": rand(2, c, h, w) for k, (c, _, h, w, *_r) in enumerate(blocks)}
    for got, want in zip(mod.run(feeds), ref.run(feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_what_the_pass_leaves_alone():
    """A tiny plane (7x7 output), an expansion whose output something else reads too, and one
    without a clamp between the convolutions stay two BlockedConvs."""
    small = block_model([(32, 64, 7, 7, "relu6", S1)])
    mod = kiln.compile(small, target="cpu", opt_level=2, native_only=True)
    assert not [nd for nd in mod.graph.nodes if "PointwiseDepthwise" in str(nd.attrs.get("body", nd.op))
                or nd.op == "PointwiseDepthwise"]
    nodes = [helper.make_node("Conv", ["x", "w"], ["e"]), helper.make_node("Relu", ["e"], ["a"]),
             helper.make_node("Conv", ["a", "d"], ["y"], group=16, **S1),
             helper.make_node("Conv", ["x", "w"], ["e2"]),
             helper.make_node("Conv", ["e2", "d"], ["y2"], group=16, **S1),
             helper.make_node("Relu", ["e"], ["z"])]
    g = helper.make_graph(nodes, "g", [f32("x", [1, 8, 12, 12])], [f32("y", None), f32("y2", None), f32("z", None)],
                          initializer=[numpy_helper.from_array(rand(16, 8, 1, 1), "w"),
                                       numpy_helper.from_array(rand(16, 1, 3, 3), "d")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mod = kiln.compile(model, target="cpu", opt_level=2, native_only=True, disable=["cse"])
    ops = [nd.attrs["body"].nodes[0].op if nd.op == "Fused" else nd.op for nd in mod.graph.nodes]
    assert "PointwiseDepthwise" not in ops
    x = rand(1, 8, 12, 12)
    ref = kiln.compile(model, target="interpret", opt_level=0).run({"x": x})
    for got, want in zip(mod.run({"x": x}), ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_disable_keeps_the_two_convolutions():
    model = block_model(BLOCKS[:1])
    mod = kiln.compile(model, target="cpu", opt_level=2, disable=["pointwise-depthwise"])
    ops = [nd.attrs["body"].nodes[0].op if nd.op == "Fused" else nd.op for nd in mod.graph.nodes]
    assert "PointwiseDepthwise" not in ops and ops.count("BlockedConv") == 2
