"""The BLIS-style GEMM (kiln/ops/gemm_lower.py, kiln/backend/microkernel.py, pack-weights): compiled
MatMul/Gemm against numpy over ragged shapes, transposes, alpha/beta, broadcast C, batched MatMul
with broadcasting, 1-D operands, fused epilogues, constant (packed) and run-time B.

Many products go into one model per test, so each test compiles once."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from kiln.backend.microkernel import host_config
from kiln.lower.loopir import c_calls
from kiln.ops.gemm import pack_a, pack_b, unpack_a, unpack_b

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")

RNG = np.random.default_rng(0)
# (M, K, N): ragged in every dim, several k-blocks (KC), several row blocks (MC), one-vector tiles
SHAPES = [(1, 1, 1), (1, 7, 13), (7, 13, 65), (13, 1, 5), (6, 16, 16), (65, 300, 17), (2, 784, 100),
          (151, 513, 33), (128, 64, 160), (5, 600, 3100)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "gemm", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def check(y, ref, k):
    ref = np.asarray(ref, np.float64)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=2e-5 * max(1.0, k) ** 0.5 * 4)


def run_all(nodes, feeds: dict, consts: dict, refs: list, ks: list, opt_levels=(2,)):
    """One model holding every product; compares each output with its float64 reference."""
    inputs = [f32(n, list(v.shape)) for n, v in feeds.items()]
    outputs = [f32(f"y{i}", None) for i in range(len(refs))]
    inits = [numpy_helper.from_array(v, n) for n, v in consts.items()]
    mods = []
    for opt in opt_levels:
        mod = kiln.compile(model(nodes, inputs, outputs, inits), target="cpu", opt_level=opt)
        assert mod.host_ops == []
        outs = mod.run(feeds)
        for y, ref, k in zip(outs, refs, ks):
            check(y, ref, k)
        # every product went through the BLIS-style GEMM (C support calls), none through plain loops
        native = mod._native.program.native.values()
        assert all(c_calls(nk.kernel.body) for nk in native if nk.kernel.ops[0] != "Constant")
        mods.append(mod)
    return mods[0]


def test_pack_layout_roundtrip():
    nr, kc = host_config().nr, 8
    b = rand(37, 29)
    bp = pack_b(b, nr, kc)
    p = -(-29 // nr)
    assert bp.shape == (p * 37, nr) and bp.ctypes.data % 64 == 0
    np.testing.assert_array_equal(unpack_b(bp, 29, 37, kc), b)
    # block of rows 8..15, panel 1: contiguous kc x nr, zero past column 29
    blk = bp.reshape(-1)[8 * p * nr + 1 * kc * nr:][:kc * nr].reshape(kc, nr)
    np.testing.assert_array_equal(blk[:, :29 - nr], b[8:16, nr:])
    assert np.all(blk[:, 29 - nr:] == 0)


def test_pack_a_layout_roundtrip():
    """Conv weights as the A of their implicit GEMM: blocks of kc columns, row panels of mr."""
    mr, kc = host_config().mr, 8
    a = rand(13, 21)
    ap = pack_a(a, mr, kc)
    p = -(-13 // mr)
    assert ap.shape == (p * 21, mr) and ap.ctypes.data % 64 == 0
    np.testing.assert_array_equal(unpack_a(ap, 13, 21, kc), a)
    # block of columns 16..20 (kcb 5), row panel 2: kcb x mr, zero past row 13
    blk = ap.reshape(-1)[16 * p * mr + 2 * 5 * mr:][:5 * mr].reshape(5, mr)
    np.testing.assert_array_equal(blk[:, :13 - 2 * mr], a[2 * mr:, 16:].T)
    assert np.all(blk[:, 13 - 2 * mr:] == 0)


def test_packed_conv_round_trips_through_the_ir_text_artifact_and_interpreter(tmp_path):
    from kiln.ops import REGISTRY
    w, bias = rand(10, 4, 3, 3), rand(10)
    m = model([helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["t"], ["y"])],
              [f32("x", ["N", 4, 9, 8])], [f32("y", None)],
              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    mod = kiln.compile(m, target="cpu", disable=["layout"])      # NCHW: the implicit GEMM
    body = mod.graph.nodes[0].attrs["body"]
    assert [nd.op for nd in body.nodes] == ["PackedConv", "Relu"]
    text = str(mod.graph)
    assert str(kiln.parse_ir(text, mod.graph.weights())) == text
    path = str(tmp_path / "c.kiln")
    mod.save(path)
    x = rand(2, 4, 9, 8)
    ref = np.maximum(REGISTRY.get("Conv").reference(x, w, bias, auto_pad="NOTSET", dilations=None, group=1,
                                                    kernel_shape=None, pads=[1, 1, 1, 1], strides=None), 0)
    np.testing.assert_allclose(kiln.load(path).run({"x": x})[0], ref, rtol=1e-4, atol=1e-4)
    interp = kiln.compile(m, target="interpret", opt_level=2, disable=["layout"])
    np.testing.assert_allclose(interp.run({"x": x})[0], ref, rtol=1e-4, atol=1e-4)


def test_matmul_ragged_runtime_and_constant_b():
    nodes, feeds, consts, refs, ks = [], {}, {}, [], []
    for i, (m, k, n) in enumerate(SHAPES):
        a, b = rand(m, k), rand(k, n)
        feeds[f"a{i}"], feeds[f"b{i}"] = a, b
        consts[f"w{i}"] = b.copy()
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"b{i}"], [f"y{2 * i}"]))
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"y{2 * i + 1}"]))
        ref = a.astype(np.float64) @ b
        refs += [ref, ref]
        ks += [k, k]
    mod = run_all(nodes, feeds, consts, refs, ks, opt_levels=(2, 0))
    # opt_level 2 packed every constant B
    assert all(n.op != "MatMul" for n in mod.graph.nodes if n.inputs[1].is_const)


def test_gemm_transposes_alpha_beta_and_broadcast_c():
    nodes, feeds, consts, refs, ks = [], {}, {}, [], []
    cases = [(7, 13, 65), (65, 300, 17), (1, 784, 40), (33, 31, 16)]
    c_shapes = [None, "n", "1n", "m1", "mn", "scalar"]
    i = 0
    for (m, k, n) in cases:
        for ta in (0, 1):
            for tb in (0, 1):
                for cs in c_shapes:
                    for const_b in (False, True):
                        alpha, beta = (0.5, -1.5) if i % 3 else (1.0, 1.0)
                        a = rand(k, m) if ta else rand(m, k)
                        b = rand(n, k) if tb else rand(k, n)
                        names = [f"a{i}", f"b{i}"]
                        feeds[f"a{i}"] = a
                        (consts if const_b else feeds)[f"b{i}"] = b
                        c = {None: None, "n": rand(n), "1n": rand(1, n), "m1": rand(m, 1),
                             "mn": rand(m, n), "scalar": rand()}[cs]
                        if c is not None:
                            feeds[f"c{i}"] = np.asarray(c, np.float32)
                            names.append(f"c{i}")
                        nodes.append(helper.make_node("Gemm", names, [f"y{i}"], alpha=alpha,
                                                      beta=beta, transA=ta, transB=tb))
                        aa = a.T if ta else a
                        bb = b.T if tb else b
                        ref = alpha * (aa.astype(np.float64) @ bb)
                        if c is not None:
                            ref = ref + beta * np.asarray(c, np.float64)
                        refs.append(ref)
                        ks.append(k)
                        i += 1
    run_all(nodes, feeds, consts, refs, ks)


def test_batched_matmul_broadcasting_and_1d_operands():
    cases = [((2, 3, 7, 13), (3, 13, 17)), ((7, 13), (2, 13, 17)), ((2, 1, 5, 9), (1, 3, 9, 20)),
             ((13,), (2, 13, 17)), ((2, 7, 13), (13,)), ((13,), (13, 17)), ((13,), (13,)),
             ((4, 65, 64), (4, 64, 65)), ((12, 128, 64), (12, 64, 128)), ((3, 1, 300), (300, 19))]
    nodes, feeds, consts, refs, ks = [], {}, {}, [], []
    for i, (sa, sb) in enumerate(cases):
        a, b = rand(*sa), rand(*sb)
        feeds[f"a{i}"] = a
        feeds[f"b{i}"] = b
        consts[f"w{i}"] = b.copy()
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"b{i}"], [f"y{2 * i}"]))
        nodes.append(helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"y{2 * i + 1}"]))
        ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
        refs += [ref, ref]
        ks += [sa[-1], sa[-1]]
    run_all(nodes, feeds, consts, refs, ks, opt_levels=(2, 0))


def test_weights_past_the_last_level_cache_finish_each_column_panel_over_all_of_k(monkeypatch):
    """With the cache size set to 0 every packed product with KC < K <= the L2 bound takes the
    swapped loop order (A packed the whole K deep, kb inside jb): ragged M, N and K, several row
    blocks, a fused bias + Relu, and symbolic rows."""
    import kiln.ops.gemm_lower as gl
    monkeypatch.setattr(gl, "last_level_cache", lambda: 0)
    nodes, consts, refs, ks, feeds = [], {}, [], [], {}
    for i, (m, k, n) in enumerate([(7, 300, 33), (151, 513, 40), (128, 768, 100), (3, 880, 17)]):
        a, w, b = rand(m, k), rand(k, n), rand(n)
        feeds[f"a{i}"], consts[f"w{i}"], consts[f"b{i}"] = a, w, b
        nodes += [helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"t{i}"]),
                  helper.make_node("Add", [f"t{i}", f"b{i}"], [f"u{i}"]),
                  helper.make_node("Relu", [f"u{i}"], [f"y{i}"])]
        refs.append(np.maximum(a.astype(np.float64) @ w + b, 0))
        ks.append(k)
    spec_deep = []
    real = gl._deep
    monkeypatch.setattr(gl, "_deep", lambda spec, cfg: spec_deep.append(real(spec, cfg)) or spec_deep[-1])
    run_all(nodes, feeds, consts, refs, ks)
    assert spec_deep == [True] * 4


def gelu(x):
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def test_fused_epilogues_bias_gelu_residual_dynamic_rows():
    """MatMul + bias + GELU (erf) and Gemm + bias + residual + Relu as single kernels, one compile
    for every batch size (a symbolic M)."""
    k, n = 96, 72
    w1, b1 = rand(k, n), rand(n)
    w2, b2 = rand(n, k), rand(k)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["t1"]), helper.make_node("Add", ["t1", "b1"], ["t2"]),
             helper.make_node("Div", ["t2", "sqrt2"], ["t3"]), helper.make_node("Erf", ["t3"], ["t4"]),
             helper.make_node("Add", ["t4", "one"], ["t5"]), helper.make_node("Mul", ["t2", "t5"], ["t6"]),
             helper.make_node("Mul", ["t6", "half"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["g"], transB=1),
             helper.make_node("Add", ["g", "x"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    consts = {"w1": w1, "b1": b1, "w2": w2.T.copy(), "b2": b2, "sqrt2": np.float32(np.sqrt(2)),
              "one": np.float32(1), "half": np.float32(0.5)}
    inits = [numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items()]
    m = model(nodes, [f32("x", ["M", k])], [f32("h", ["M", n]), f32("y", ["M", k])], inits)
    mod = kiln.compile(m, target="cpu")
    assert mod.host_ops == []
    kinds = [nd.op for nd in mod.graph.nodes]
    assert kinds.count("Fused") == 2, kinds
    for rows in (1, 5, 13, 128):
        x = rand(rows, k)
        h, y = mod.run({"x": x})
        h_ref = gelu(x.astype(np.float64) @ w1 + b1)
        check(h, h_ref, k)
        check(y, np.maximum(h_ref @ w2 + b2 + x, 0), n)


def test_packed_matmul_round_trips_through_the_ir_text_and_artifact(tmp_path):
    w, w2, c = rand(50, 40), rand(24, 40), rand(24)
    m = model([helper.make_node("MatMul", ["x", "w"], ["h"]),
               helper.make_node("Gemm", ["h", "w2", "c"], ["y"], alpha=0.3, beta=0.7, transB=1)],
              [f32("x", ["N", 50])], [f32("y", None)],
              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w2, "w2"),
               numpy_helper.from_array(c, "c")])
    mod = kiln.compile(m, target="cpu")
    assert [nd.op for nd in mod.graph.nodes] == ["PackedMatMul", "PackedMatMul"]
    text = str(mod.graph)
    assert str(kiln.parse_ir(text, mod.graph.weights())) == text
    path = str(tmp_path / "m.kiln")
    mod.save(path)
    x = rand(3, 50)
    ref = 0.3 * (x.astype(np.float64) @ w @ w2.T) + 0.7 * c
    np.testing.assert_allclose(kiln.load(path).run({"x": x})[0], ref, rtol=1e-4, atol=1e-4)
    interp = kiln.compile(m, target="interpret", opt_level=2)
    np.testing.assert_allclose(interp.run({"x": x})[0], ref, rtol=1e-4, atol=1e-4)


def test_pointwise_convolutions_run_as_gemm_with_fused_epilogue():
    """1x1 stride-1 Conv (+ bias, + residual Add + Relu fused) through the GEMM, symbolic batch;
    a strided 1x1 conv too (its B gathered while packing)."""
    from kiln.ops import REGISTRY
    c, m, h, w = 24, 40, 9, 11
    wt, bias = rand(m, c, 1, 1), rand(m)
    w2 = rand(c, m, 1, 1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"]), helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["u"]), helper.make_node("Add", ["u", "x"], ["v"]),
             helper.make_node("Relu", ["v"], ["y"]),
             helper.make_node("Conv", ["x", "w"], ["z"], strides=[2, 2])]
    inits = [numpy_helper.from_array(v, n) for n, v in (("w", wt), ("b", bias), ("w2", w2))]
    mod = kiln.compile(model(nodes, [f32("x", ["N", c, h, w])], [f32("y", None), f32("z", None)], inits),
                       target="cpu", disable=["layout"])      # NCHW convs: the GEMM path
    assert mod.host_ops == []
    gemms = [nk.kernel.ops for nk in mod._native.program.native.values() if c_calls(nk.kernel.body)]
    assert len(gemms) == 3 and all(ops[0] == "PackedConv" for ops in gemms), gemms
    conv = REGISTRY.get("Conv").reference
    for n in (1, 3):
        x = rand(n, c, h, w)
        r = np.maximum(conv(x, wt, bias, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                            pads=None, strides=None), 0)
        u = conv(r, w2, None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                 strides=None)
        z = conv(x, wt, None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                 strides=[2, 2])
        y_out, z_out = mod.run({"x": x})
        check(y_out, np.maximum(u + x, 0), m)
        check(z_out, z, c)


# (C, M, H, W, attrs): k x k windows, strides, asymmetric pads, dilation, SAME padding, 1-D; sizes
# ragged against the 6 x 16 tile, K across several KC blocks, output rows across panel boundaries
CONVS = [(3, 16, 23, 23, dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3])),
         (16, 24, 9, 11, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
         (40, 7, 10, 9, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1])),
         (5, 13, 12, 14, dict(kernel_shape=[3, 2], dilations=[2, 3], pads=[2, 1, 0, 3])),
         (8, 9, 7, 8, dict(kernel_shape=[5, 5], auto_pad="SAME_UPPER")),
         (6, 11, 1, 30, dict(kernel_shape=[1, 4], strides=[1, 3])),
         (72, 33, 6, 5, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
         (12, 9, 5, 7, dict(kernel_shape=[1, 1]))]      # few rows: packed weights, B packed too


@pytest.mark.parametrize("n", [1, 3])
def test_kxk_convolutions_run_as_implicit_gemm(n):
    """Every ungrouped 2-D f32 conv goes through the GEMM (weights packed at compile time, im2col
    panels gathered while packing); each matches the reference conv, with the bias and a fused
    Relu."""
    from kiln.ops import REGISTRY
    conv = REGISTRY.get("Conv").reference
    nodes, inits, inputs, outputs, feeds, refs = [], [], [], [], {}, []
    for k, (c, m, h, w, attrs) in enumerate(CONVS):
        wt, bias, x = rand(m, c, *attrs["kernel_shape"]), rand(m), rand(n, c, h, w)
        nodes += [helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"t{k}"], **attrs),
                  helper.make_node("Relu", [f"t{k}"], [f"y{k}"])]
        inits += [numpy_helper.from_array(wt, f"w{k}"), numpy_helper.from_array(bias, f"b{k}")]
        inputs.append(f32(f"x{k}", ["N", c, h, w]))
        outputs.append(f32(f"y{k}", None))
        feeds[f"x{k}"] = x
        full = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                    strides=None)
        full.update(attrs)
        refs.append(np.maximum(conv(x, wt, bias, **full), 0))
    mod = kiln.compile(model(nodes, inputs, outputs, inits), target="cpu", native_only=True,
                       disable=["layout"])                     # NCHW convs: the GEMM path
    gemms = [nk.kernel.ops for nk in mod._native.program.native.values() if c_calls(nk.kernel.body)]
    assert len(gemms) == len(CONVS), gemms
    for got, ref in zip(mod.run(feeds), refs):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_epilogue_group_whose_anchor_is_not_its_first_node():
    """y = (s * t) + x @ W with the Mul first in graph order: still one fused kernel, W packed."""
    k, n = 40, 24
    w = rand(k, n)
    nodes = [helper.make_node("Mul", ["s", "t"], ["st"]), helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("Add", ["st", "xw"], ["y"])]
    m = model(nodes, [f32("x", ["M", k]), f32("s", ["M", n]), f32("t", ["M", n])], [f32("y", None)],
              [numpy_helper.from_array(w, "w")])
    mod = kiln.compile(m, target="cpu")
    assert [nd.op for nd in mod.graph.nodes] == ["Fused"]
    assert [nd.op for nd in mod.graph.nodes[0].attrs["body"].nodes] == ["Mul", "PackedMatMul", "Add"]
    x, s, t = rand(7, k), rand(7, n), rand(7, n)
    check(mod.run({"x": x, "s": s, "t": t})[0], s * t + x.astype(np.float64) @ w, k)
