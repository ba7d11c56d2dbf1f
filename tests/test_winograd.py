"""Winograd convolution (kiln/passes/winograd.py, kiln/ops/winograd.py, kiln/backend/winograd.py):
the three ops' references against a direct convolution, which convolutions the pass takes, and
compiled F(4, 3) / F(2, 3) convolutions with fused epilogues against the reference."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln.ops import REGISTRY
from kiln.ops.layout import block_conv_weights, from_blocked, to_blocked
from kiln.ops.winograd import matrices, padded_slab, tiles, transform_weights, winograd_input, winograd_matmul, winograd_output

RNG = np.random.default_rng(0)
pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def conv_ref(x, w, b, pads):
    return REGISTRY.get("Conv").reference(x, w, b, auto_pad="NOTSET", dilations=[1, 1], group=1,
                                          kernel_shape=[3, 3], pads=pads, strides=[1, 1])


@pytest.mark.parametrize("m", [2, 4])
def test_one_tile_is_the_direct_convolution_exactly_in_float64(m):
    bt, g, at = matrices(m)
    d, k = RNG.standard_normal((m + 2, m + 2)), RNG.standard_normal((3, 3))
    direct = np.array([[np.sum(d[r:r + 3, s:s + 3] * k) for s in range(m)] for r in range(m)])
    np.testing.assert_allclose(at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T, direct, rtol=0, atol=1e-12)


# (C, M, H, W, pads, m): planes that tiles cut at the right and bottom edges, asymmetric and no
# padding, channel counts that leave a block part-filled
GEOMETRIES = [(16, 24, 9, 11, [1, 1, 1, 1], 4), (8, 8, 14, 14, [1, 1, 1, 1], 2),
              (16, 8, 7, 7, [0, 0, 0, 0], 4), (8, 16, 6, 5, [1, 0, 2, 1], 4), (12, 20, 5, 9, [2, 2, 0, 1], 2)]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("c, m_out, h, w, pads, m", GEOMETRIES)
def test_the_three_ops_compute_the_convolution(c, m_out, h, w, pads, m, padded):
    x, wt, b = rand(2, c, h, w), rand(m_out, c, 3, 3), rand(m_out)
    ref = conv_ref(x, wt, b, pads)
    out_hw = list(ref.shape[2:])
    bias = np.zeros(-(-m_out // 8) * 8, np.float32)
    bias[:m_out] = b
    th, tw = tiles(out_hw, m)
    # padded: V and M with extra blocks and tiles after the real ones (what the pass does)
    vslab, mslab = ([-(-ch // 8) + 1, th * tw + 3] if padded else None for ch in (c, m_out))
    v = winograd_input.reference(to_blocked(x, 8), m=m, pads=pads[:2], out_hw=out_hw, slab=vslab)
    prod = winograd_matmul.reference(v, transform_weights(block_conv_weights(wt, 8, False, False), m),
                                     tiles=th * tw, slab=mslab)
    y = winograd_output.reference(prod, bias, m=m, out_hw=out_hw)
    np.testing.assert_allclose(from_blocked(y, m_out), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("blocks, t", [(8, 784), (16, 196), (32, 49), (64, 16), (12, 784), (7, 100)])
def test_padded_slab_puts_a_tiles_points_in_distinct_l1_sets(blocks, t):
    """ResNet's 64 channels x 56x56 has a 4 KiB multiple between a tile's points unpadded."""
    for points in (16, 36):
        b, tp = padded_slab(blocks, t, points)
        assert blocks <= b <= blocks + 2 and t <= tp <= t + 16
        stride = b * tp * 8 * 4
        assert len({x * stride % 4096 // 64 for x in range(points)}) == points


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def model_of(convs, residual=False):
    """x_k -> Conv(3x3, pads) -> [+ x_k] -> Relu -> y_k for each (C, M, H, W, pads, strides, group)."""
    nodes, inits, inputs, outputs = [], [], [], []
    for k, (c, m, h, w, pads, strides, group) in enumerate(convs):
        inits += [numpy_helper.from_array(rand(m, c // group, 3, 3, scale=(9 * c / group) ** -0.5), f"w{k}"),
                  numpy_helper.from_array(rand(m), f"b{k}")]
        nodes.append(helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"t{k}"], pads=pads,
                                      strides=strides, group=group))
        if residual:
            nodes.append(helper.make_node("Add", [f"t{k}", f"x{k}"], [f"s{k}"]))
        nodes.append(helper.make_node("Relu", [f"s{k}" if residual else f"t{k}"], [f"y{k}"]))
        inputs.append(f32(f"x{k}", ["N", c, h, w]))
        outputs.append(f32(f"y{k}", None))
    g = helper.make_graph(nodes, "convs", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def kernels(mod):
    return [nd.attrs["body"].nodes[0].op if nd.op == "Fused" else nd.op for nd in mod.graph.nodes]


# F(4, 3) and F(2, 3) (as the cost model picks: planes cut by the tiles, 15 x 17 and 9 x 12), with
# partial channel blocks (36, 44) and more input blocks than one L1 chunk of the products' weights
TAKEN = [(32, 32, 14, 14, [1] * 4, [1, 1], 1), (36, 44, 15, 17, [1] * 4, [1, 1], 1),
         (40, 32, 9, 12, [1] * 4, [1, 1], 1), (48, 40, 18, 16, [0, 0, 0, 0], [1, 1], 1),
         (64, 64, 7, 7, [1] * 4, [1, 1], 1), (384, 32, 8, 8, [1] * 4, [1, 1], 1)]


def check_against_interpreter(model, convs, n):
    mod = kiln.compile(model, target="cpu", opt_level=2, native_only=True)
    ref = kiln.compile(model, target="interpret", opt_level=0)
    feeds = {f"x{k}": rand(n, c, h, w) for k, (c, _, h, w, *_r) in enumerate(convs)}
    for got, want in zip(mod.run(feeds), ref.run(feeds)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return mod


@pytest.mark.parametrize("n", [1, 3])
def test_compiled_winograd_convolutions_match_the_reference(n):
    """Each conv + bias + Relu becomes WinogradInput, WinogradMatMul and a WinogradOutput with the
    Relu fused, natively; the result matches the direct convolution within a few ulps of the sums
    (the 384-channel products sum in several chunks of input blocks)."""
    mod = check_against_interpreter(model_of(TAKEN), TAKEN, n)
    ops = kernels(mod)
    assert {nd.attrs["m"] for nd in mod.graph.nodes if nd.op == "WinogradInput"} == {2, 4}
    assert ops.count("WinogradInput") == ops.count("WinogradMatMul") == ops.count("WinogradOutput") == len(TAKEN)
    assert not [o for o in ops if o in ("BlockedConv", "Relu", "Conv")]


def test_residual_add_and_relu_fuse_onto_the_output_transform():
    convs = [(32, 32, 14, 14, [1] * 4, [1, 1], 1), (48, 48, 10, 10, [1] * 4, [1, 1], 1)]
    ops = kernels(check_against_interpreter(model_of(convs, residual=True), convs, 2))
    assert ops.count("WinogradOutput") == 2 and "Add" not in ops and "Relu" not in ops


# what stays a direct BlockedConv: stride 2, grouped (depthwise), too few channels, and a tiny plane
# with many channels (the transformed weights would cost more memory traffic than the FMAs saved)
LEFT = [(32, 32, 14, 14, [1] * 4, [2, 2], 1), (32, 32, 14, 14, [1] * 4, [1, 1], 32),
        (16, 32, 14, 14, [1] * 4, [1, 1], 1), (512, 512, 3, 3, [1] * 4, [1, 1], 1)]


def test_convolutions_the_pass_leaves_direct():
    ops = kernels(check_against_interpreter(model_of(LEFT), LEFT, 1))
    assert "WinogradInput" not in ops and ops.count("BlockedConv") == len(LEFT)


def test_disable_keeps_the_direct_kernels():
    mod = kiln.compile(model_of(TAKEN[:1]), target="cpu", opt_level=2, disable=["winograd"])
    assert "WinogradInput" not in kernels(mod) and "BlockedConv" in kernels(mod)


def chain(convs: int, c: int, hw: int):
    """x -> (Conv 3x3 c -> c, Relu) x convs -> y."""
    nodes, inits = [], []
    for k in range(convs):
        inits += [numpy_helper.from_array(rand(c, c, 3, 3, scale=(9 * c) ** -0.5), f"w{k}"),
                  numpy_helper.from_array(rand(c), f"b{k}")]
        nodes += [helper.make_node("Conv", [f"y{k}" if k else "x", f"w{k}", f"b{k}"], [f"t{k}"], pads=[1] * 4),
                  helper.make_node("Relu", [f"t{k}"], [f"y{k + 1}"])]
    g = helper.make_graph(nodes, "chain", [f32("x", [1, c, hw, hw])], [f32(f"y{convs}", None)],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_layers_after_counts_the_mixing_layers_on_the_longest_path():
    from kiln.frontend.onnx_import import import_onnx
    from kiln.passes.winograd import layers_after
    g = import_onnx(chain(3, 8, 4))
    after = layers_after(g)
    assert [after[n] for n in g.nodes if n.op == "Conv"] == [2, 1, 0]
    assert [after[n] for n in g.nodes if n.op == "Relu"] == [2, 1, 0]


def test_f4_only_where_few_layers_follow(monkeypatch):
    """F(4, 3)'s larger rounding error is allowed only where at most F4_MAX_LAYERS_AFTER mixing
    layers follow: the first convolutions of a chain stay F(2, 3), the last ones take F(4, 3)."""
    import kiln.passes.winograd
    monkeypatch.setattr(kiln.passes.winograd, "F4_MAX_LAYERS_AFTER", 1)
    model = chain(4, 64, 28)
    mod = kiln.compile(model, target="cpu", opt_level=2, native_only=True)
    assert [nd.attrs["m"] for nd in mod.graph.nodes if nd.op == "WinogradInput"] == [2, 2, 4, 4]
    ref = kiln.compile(model, target="interpret", opt_level=0)
    x = {"x": rand(1, 64, 28, 28)}
    np.testing.assert_allclose(mod.run(x)[0], ref.run(x)[0], rtol=1e-4, atol=1e-4)
