"""The blocked channels layout (kiln/passes/layout.py, kiln/ops/layout.py, kiln/backend/blocked.py):
IR text in -> layout -> IR text out, the cases it must leave alone, and compiled BlockedConv /
BlockedMaxPool kernels against the reference convolution over strides, pads, dilations, ragged
channel counts, depthwise, plain (3-channel) inputs and fused epilogues."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln.ops import REGISTRY
from kiln.ops.layout import block_conv_weights, from_blocked, to_blocked, unblock_conv_weights

from test_passes import ir, run_pass

RNG = np.random.default_rng(0)
pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# --- the pass, as IR text -------------------------------------------------------------------
def layout_ir(text: str, weights: dict) -> str:
    from kiln.ir.verify import verify
    from kiln.passes import PASSES
    return str(verify(PASSES["layout"](kiln.parse_ir(ir(text), weights))))


CHAIN = '''
    graph g(%x: f32[N,8,6,6]) {
      %w1: f32[16,8,3,3] = const @w1
      %b1: f32[16] = const @b1
      %w2: f32[8,16,1,1] = const @w2
      %t: f32[N,16,6,6] = Conv(%x, %w1, %b1) {pads=[1, 1, 1, 1]}
      %r: f32[N,16,6,6] = Relu(%t)
      %u: f32[N,8,6,6] = Conv(%r, %w2)
      %v: f32[N,8,6,6] = Add(%u, %x)
      %p: f32[N,8,1,1] = GlobalAveragePool(%v)
      return %p, %r
    }'''


def chain_weights():
    return {"w1": rand(16, 8, 3, 3), "b1": np.full(16, 0.5, np.float32), "w2": rand(8, 16, 1, 1)}


def test_conv_chain_goes_blocked_with_one_reorder_per_boundary_value():
    """x is blocked once (both the conv and the residual Add read the copy); r is a graph output
    and v feeds a global pooling, so each gets one FromBlocked; the Relu and Add stay blocked."""
    got = layout_ir(CHAIN, chain_weights())
    assert got == ir('''
        graph g(%x: f32[N,8,6,6]) {
          %w1.blk: f32[2,1,3,3,8,8] = const @w1.blk
          %w1.blk_bias: f32[16] = const [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
          %w2.blk: f32[1,2,1,1,8,8] = const @w2.blk
          %w2.blk_bias: f32[8] = const [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
          %x.blk: f32[N,1,6,6,8] = ToBlocked(%x) {block=8} loc("x.to_blocked")
          %t.blk: f32[N,2,6,6,8] = BlockedConv(%x.blk, %w1.blk, %w1.blk_bias) {c=8, depthwise=0, dilations=[1, 1], kernel_shape=[3, 3], m=16, out_hw=[6, 6], pads=[1, 1, 1, 1], plain=0, strides=[1, 1]}
          %r.blk: f32[N,2,6,6,8] = Relu(%t.blk)
          %r: f32[N,16,6,6] = FromBlocked(%r.blk) {channels=16} loc("r.from_blocked")
          %u.blk: f32[N,1,6,6,8] = BlockedConv(%r.blk, %w2.blk, %w2.blk_bias) {c=16, depthwise=0, dilations=[1, 1], kernel_shape=[1, 1], m=8, out_hw=[6, 6], pads=[0, 0, 0, 0], plain=0, strides=[1, 1]}
          %v.blk: f32[N,1,6,6,8] = Add(%u.blk, %x.blk)
          %v: f32[N,8,6,6] = FromBlocked(%v.blk) {channels=8} loc("v.from_blocked")
          %p: f32[N,8,1,1] = GlobalAveragePool(%v)
          return %p, %r
        }''')


def test_strided_1x1_convs_read_one_shared_subsampling_slice():
    """A strided 1x1 conv without padding runs as a Slice of every 2nd pixel and a stride-1 conv
    (the long-row 1x1 kernel); two such convs of one input share the Slice; results unchanged."""
    text = '''
        graph g(%x: f32[N,8,7,7]) {
          %w1: f32[16,8,1,1] = const @w1
          %w2: f32[8,8,1,1] = const @w2
          %a: f32[N,16,4,4] = Conv(%x, %w1) {strides=[2, 2]}
          %b: f32[N,8,4,4] = Conv(%x, %w2) {strides=[2, 2]}
          return %a, %b
        }'''
    w = {"w1": rand(16, 8, 1, 1), "w2": rand(8, 8, 1, 1)}
    from kiln.passes import PASSES
    from kiln.runtime.interpreter import Interpreter
    after = PASSES["layout"](kiln.parse_ir(ir(text), w))
    ops = [n.op for n in after.nodes]
    assert ops.count("Slice") == 1 and ops.count("BlockedConv") == 2
    assert all(n.attrs["strides"] == [1, 1] for n in after.nodes if n.op == "BlockedConv")
    before = kiln.parse_ir(ir(text), w)
    x = rand(2, 8, 7, 7)
    for got, ref in zip(Interpreter().run(after, {after.inputs[0]: x}), Interpreter().run(before, {before.inputs[0]: x})):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_layout_keeps_the_interpreters_results():
    w = chain_weights()
    before = kiln.parse_ir(ir(CHAIN), w)
    from kiln.passes import PASSES
    after = PASSES["layout"](kiln.parse_ir(ir(CHAIN), w))
    from kiln.runtime.interpreter import Interpreter
    x = rand(3, 8, 6, 6)
    ref = Interpreter().run(before, {before.inputs[0]: x})
    got = Interpreter().run(after, {after.inputs[0]: x})
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_first_layer_reads_its_few_channels_unpadded_and_pool_stays_blocked():
    text = '''
        graph g(%x: f32[1,3,12,12]) {
          %w: f32[8,3,3,3] = const @w
          %t: f32[1,8,6,6] = Conv(%x, %w) {pads=[1, 1, 1, 1], strides=[2, 2]}
          %r: f32[1,8,6,6] = Relu(%t)
          %m: f32[1,8,3,3] = MaxPool(%r) {kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]}
          return %m
        }'''
    got = layout_ir(text, {"w": rand(8, 3, 3, 3)})
    assert "ToBlocked" not in got and "plain=1" in got
    assert got.count("FromBlocked") == 1 and "BlockedMaxPool(%r.blk)" in got


LEFT_ALONE = [
    # grouped, not depthwise
    '''
    graph g(%x: f32[1,8,5,5]) {
      %w: f32[8,4,3,3] = const @w
      %y: f32[1,8,3,3] = Conv(%x, %w) {group=2}
      return %y
    }''',
    # weights known only at run time
    '''
    graph g(%x: f32[1,8,5,5], %w: f32[8,8,3,3]) {
      %y: f32[1,8,3,3] = Conv(%x, %w)
      return %y
    }''',
    # f64
    '''
    graph g(%x: f64[1,8,5,5]) {
      %w: f64[8,8,3,3] = const @w
      %y: f64[1,8,3,3] = Conv(%x, %w)
      return %y
    }''',
    # an elementwise op that turns the zero padding lanes into infinities stays NCHW, and a
    # MaxPool on an NCHW input is not blocked
    '''
    graph g(%x: f32[1,8,5,5]) {
      %y: f32[1,8,5,5] = Log(%x)
      %m: f32[1,8,2,2] = MaxPool(%y) {kernel_shape=[2, 2], strides=[2, 2]}
      return %m
    }''',
]


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_layout_leaves_alone(text):
    shapes = {"w": (8, 4, 3, 3) if "group=2" in text else (8, 8, 3, 3)}
    dt = np.float64 if "f64" in text else np.float32
    w = {k: RNG.standard_normal(s).astype(dt) for k, s in shapes.items()} if "@w" in text else {}
    assert layout_ir(text, w) == ir(text)


def test_weight_and_activation_layouts_round_trip():
    x = rand(2, 13, 4, 5)
    assert np.array_equal(from_blocked(to_blocked(x, 8), 13), x)
    assert np.all(to_blocked(x, 8)[:, 1, ..., 5:] == 0)
    for shape, plain, dw in (((20, 13, 3, 2), False, False), ((9, 3, 7, 7), True, False),
                             ((21, 1, 3, 3), False, True)):
        w = rand(*shape)
        c = 21 if dw else shape[1]
        assert np.array_equal(unblock_conv_weights(block_conv_weights(w, 8, plain, dw), shape[0], c, dw), w)


# --- compiled kernels -------------------------------------------------------------------------
def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# (C, M, H, W, attrs): row tiles with borders on both sides, strides, asymmetric pads, dilation,
# rectangular kernels, SAME padding, an odd count of output blocks (one block left for the last
# pair), 1x1 convs in long-row chunks (144 pixels), whole planes (7x7) and plain rows (11x13: no
# chunk divides it), depthwise at strides 1 and 2, a 3-channel first layer read unpadded, and input
# channels past one L1 chunk of weights (partial sums kept in the output between chunks)
CONVS = [(16, 24, 13, 15, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
         (12, 16, 14, 14, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1])),
         (8, 17, 12, 14, dict(kernel_shape=[3, 2], dilations=[2, 3], pads=[2, 1, 0, 3])),
         (9, 8, 9, 8, dict(kernel_shape=[5, 5], auto_pad="SAME_UPPER")),
         (24, 40, 12, 12, dict(kernel_shape=[1, 1])),
         (32, 48, 7, 7, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
         (32, 24, 7, 7, dict(kernel_shape=[1, 1], strides=[2, 2])),
         (16, 16, 11, 13, dict(kernel_shape=[1, 1])),
         (24, 24, 13, 13, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=24)),
         (20, 20, 15, 17, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], group=20)),
         (16, 16, 10, 10, dict(kernel_shape=[5, 5], dilations=[2, 2], pads=[4, 4, 4, 4], group=16)),
         (3, 16, 23, 23, dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3])),
         (40, 16, 9, 10, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
         (288, 16, 5, 6, dict(kernel_shape=[1, 1]))]


def conv_ref(x, w, b, attrs):
    full = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None)
    full.update(attrs)
    return REGISTRY.get("Conv").reference(x, w, b, **full)


@pytest.mark.parametrize("n, regs", [(1, 16), (3, 16), (1, 32), (3, 32)])
def test_blocked_convolutions_match_the_reference(n, regs, monkeypatch):
    """Each conv + bias + Relu runs as one fused BlockedConv kernel (opt_level 3, the direct kernels:
    tests/test_winograd.py has the 3x3 convs that pass would take), natively, with
    the register tiles of an AVX2 machine (16 vector registers) and of an AVX-512VL one (32)."""
    import kiln.ops.layout_lower
    monkeypatch.setattr(kiln.ops.layout_lower, "vector_registers", lambda: regs)
    nodes, inits, inputs, outputs, feeds, refs = [], [], [], [], {}, []
    for k, (c, m, h, w, attrs) in enumerate(CONVS):
        g = attrs.get("group", 1)
        wt, bias, x = rand(m, c // g, *attrs["kernel_shape"]), rand(m), rand(n, c, h, w)
        nodes += [helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"t{k}"], **attrs),
                  helper.make_node("Relu", [f"t{k}"], [f"y{k}"])]
        inits += [numpy_helper.from_array(wt, f"w{k}"), numpy_helper.from_array(bias, f"b{k}")]
        inputs.append(f32(f"x{k}", ["N", c, h, w]))
        outputs.append(f32(f"y{k}", None))
        feeds[f"x{k}"] = x
        refs.append(np.maximum(conv_ref(x, wt, bias, attrs), 0))
    g = helper.make_graph(nodes, "convs", inputs, outputs, initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mod = kiln.compile(model, target="cpu", opt_level=3, native_only=True, disable=["winograd"])
    anchors = [nd.attrs["body"].nodes[0].op for nd in mod.graph.nodes if nd.op == "Fused"]
    assert anchors == ["BlockedConv"] * len(CONVS)
    for got, ref, (c, *_rest) in zip(mod.run(feeds), refs, CONVS):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1, c) ** 0.5)


def test_residual_block_with_max_pool_runs_blocked_end_to_end():
    """stem conv (plain) -> relu -> max pool -> conv -> relu -> conv + residual -> relu -> global
    pool: every op but the global pool runs blocked, one reorder in all; the result matches the
    interpreter at opt 0."""
    c = 16
    w0, w1, w2 = rand(c, 3, 5, 5), rand(c, c, 3, 3) * 0.2, rand(c, c, 3, 3) * 0.2
    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[2, 2, 2, 2], strides=[2, 2]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MaxPool", ["b"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["p", "w1"], ["q"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["q"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["s"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["s", "p"], ["t"]),
             helper.make_node("Relu", ["t"], ["u"]),
             helper.make_node("GlobalAveragePool", ["u"], ["y"])]
    inits = [numpy_helper.from_array(v, k) for k, v in (("w0", w0), ("w1", w1), ("w2", w2))]
    g = helper.make_graph(nodes, "block", [f32("x", ["N", 3, 33, 31])], [f32("y", None)], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mod = kiln.compile(model, target="cpu", opt_level=3, native_only=True)
    ops = [nd.op if nd.op != "Fused" else nd.attrs["body"].nodes[0].op for nd in mod.graph.nodes]
    assert ops.count("FromBlocked") == 1 and "ToBlocked" not in ops
    assert "BlockedMaxPool" in ops and ops.count("BlockedConv") == 3
    x = rand(2, 3, 33, 31)
    ref = kiln.compile(model, target="interpret", opt_level=0).run({"x": x})[0]
    np.testing.assert_allclose(mod.run({"x": x})[0], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lo, hi", [(0.0, 6.0), (-0.5, None), (None, 0.25)])
def test_a_fused_clip_runs_in_the_kernels_registers(lo, hi):
    """Conv + Clip (constant bounds) fuse into one BlockedConv kernel that clamps its results
    before the final store (ConvRow.clamp; no separate pass): depthwise, a whole-plane tile and
    input channels past one L1 chunk (the clamp only on the finished sums). NaN stays NaN and
    huge values are cut to the bound, as numpy's clip does."""
    convs = [(24, 24, 13, 13, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=24)),
             (32, 48, 7, 7, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
             (288, 16, 5, 6, dict(kernel_shape=[1, 1]))]
    nodes, inits, inputs, outputs, feeds, refs = [], [], [], [], {}, []
    bounds = []
    for name, v in (("lo", lo), ("hi", hi)):
        if v is not None:
            inits.append(numpy_helper.from_array(np.array(v, np.float32), name))
        bounds.append(name if v is not None else "")
    for k, (c, m, h, w, attrs) in enumerate(convs):
        g = attrs.get("group", 1)
        wt, bias, x = rand(m, c // g, *attrs["kernel_shape"]), rand(m), rand(1, c, h, w)
        x[0, 0, 2, 3], x[0, 1, 4, 4] = np.nan, 1e30
        nodes += [helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"t{k}"], **attrs),
                  helper.make_node("Clip", [f"t{k}", *bounds], [f"y{k}"])]
        inits += [numpy_helper.from_array(wt, f"w{k}"), numpy_helper.from_array(bias, f"b{k}")]
        inputs.append(f32(f"x{k}", [1, c, h, w]))
        outputs.append(f32(f"y{k}", None))
        feeds[f"x{k}"] = x
        with np.errstate(invalid="ignore", over="ignore"):
            refs.append(np.clip(conv_ref(x, wt, bias, attrs), lo, hi))
    model = helper.make_model(helper.make_graph(nodes, "clips", inputs, outputs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    mod = kiln.compile(model, target="cpu", opt_level=3, native_only=True, disable=["winograd"])
    assert [nd.attrs["body"].nodes[0].op for nd in mod.graph.nodes if nd.op == "Fused"] == ["BlockedConv"] * 3
    for got, ref in zip(mod.run(feeds), refs):
        assert np.isnan(ref).any() and np.array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)
