"""Native lowerings of data-movement, indexing and quantization ops, compiled with
native_only=True against the interpreter: Pad (pads/axes at run time, every mode), scatters and
GatherND, OneHot, EyeLike, DepthToSpace/SpaceToDepth, CenterCropPad, BitCast, Quantize/
DequantizeLinear, DynamicQuantizeLinear, Einsum."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from test_lowering_reduce import check, private_cache  # noqa: F401  (shared helper and fixture)

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")


def test_pad_modes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    xi = rng.integers(-9, 9, (3, 4)).astype(np.int32)
    feeds = {"x": x, "xi": xi, "p": np.array([0, 1, 2, 3, 1, 0, 3, 2], np.int64),
             "pc": np.array([0, -1, 2, -2, 1, 0, -1, 4], np.int64),
             "p2": np.array([2, -1, 1, 5], np.int64), "ax": np.array([-1, 1], np.int64),
             "v": np.array(1.5, np.float32), "pi": np.array([3, 5, 4, 6], np.int64)}
    nodes, outs = [], []
    for mode in ("constant", "edge", "reflect", "wrap"):
        for name, ins in ((f"{mode}_a", ["x", "p"]), (f"{mode}_b", ["x", "pc"]),
                          (f"{mode}_c", ["x", "p2", "", "ax"]), (f"{mode}_i", ["xi", "pi"])):
            if mode == "constant" and name.endswith("_a"):
                ins = ["x", "p", "v"]
            if mode == "reflect" and name.endswith("_b"):
                continue            # the reference cannot reflect a dim cropped to 1 element
            nodes.append(helper.make_node("Pad", ins, [name], mode=mode))
            outs.append(name)
    check(nodes, feeds, outs)


def test_scatter_gather():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((4, 5, 3)).astype(np.float32)
    ind = rng.integers(-4, 4, (2, 5, 3)).astype(np.int64)
    upd = rng.standard_normal((2, 5, 3)).astype(np.float32)
    nd_ind = np.array([[0, 1], [-1, 2], [0, 1]], np.int64)
    nd_upd = rng.standard_normal((3, 3)).astype(np.float32)
    nd_ind1 = np.array([[3], [1]], np.int64)
    nd_upd1 = rng.standard_normal((2, 5, 3)).astype(np.float32)
    g_ind = np.array([[[1, 2], [0, 4]], [[3, 0], [2, 2]]], np.int64)
    feeds = {"data": data, "ind": ind, "upd": upd, "ndi": nd_ind, "ndu": nd_upd, "ndi1": nd_ind1,
             "ndu1": nd_upd1, "gi": g_ind, "gb": np.array([[1], [4], [0], [2]], np.int64)}
    nodes, outs = [], []
    for red in ("none", "add", "mul", "max", "min"):
        nodes += [helper.make_node("ScatterElements", ["data", "ind", "upd"], [f"se_{red}"], axis=0, reduction=red),
                  helper.make_node("ScatterND", ["data", "ndi", "ndu"], [f"snd_{red}"], reduction=red),
                  helper.make_node("ScatterND", ["data", "ndi1", "ndu1"], [f"snd1_{red}"], reduction=red)]
        outs += [f"se_{red}", f"snd_{red}", f"snd1_{red}"]
    nodes += [helper.make_node("GatherND", ["data", "gi"], ["gnd"]),
              helper.make_node("GatherND", ["data", "gb"], ["gnd_b"], batch_dims=1)]
    outs += ["gnd", "gnd_b"]
    check(nodes, feeds, outs)


def test_one_hot_eye_blocks_crop_bitcast():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 8, 3, 4)).astype(np.float32)
    feeds = {"x": x, "idx": np.array([[0, -1, 3], [7, 2, 9]], np.int64),
             "fidx": np.array([1.7, -2.2, 4.0], np.float32), "depth": np.array(5, np.int64),
             "vals": np.array([-1.0, 2.0], np.float32), "ivals": np.array([0, 7], np.int32),
             "m": rng.integers(0, 9, (3, 5)).astype(np.int32), "b": np.array([True, False, True]),
             "sh": np.array([4, 7], np.int64), "sh3": np.array([1, 9, 2, 6], np.int64)}
    nodes = [helper.make_node("OneHot", ["idx", "depth", "vals"], ["oh_a"]),
             helper.make_node("OneHot", ["idx", "depth", "ivals"], ["oh_b"], axis=0),
             helper.make_node("OneHot", ["fidx", "depth", "vals"], ["oh_c"], axis=-2),
             helper.make_node("EyeLike", ["m"], ["eye_a"], k=2),
             helper.make_node("EyeLike", ["m"], ["eye_b"], dtype=TensorProto.FLOAT, k=-1),
             helper.make_node("DepthToSpace", ["x"], ["d2s_dcr"], blocksize=2),
             helper.make_node("DepthToSpace", ["x"], ["d2s_crd"], blocksize=2, mode="CRD"),
             helper.make_node("SpaceToDepth", ["d2s_dcr"], ["s2d"], blocksize=2),
             helper.make_node("CenterCropPad", ["x", "sh"], ["ccp_a"], axes=[1, -1]),
             helper.make_node("CenterCropPad", ["x", "sh3"], ["ccp_b"]),
             helper.make_node("BitCast", ["x"], ["bc_f"], to=TensorProto.INT32),
             helper.make_node("BitCast", ["m"], ["bc_i"], to=TensorProto.FLOAT),
             helper.make_node("BitCast", ["b"], ["bc_b"], to=TensorProto.UINT8)]
    outs = ["oh_a", "oh_b", "oh_c", "eye_a", "eye_b", "d2s_dcr", "d2s_crd", "s2d", "ccp_a", "ccp_b",
            "bc_f", "bc_i", "bc_b"]
    check(nodes, feeds, outs, opset=24)


def test_quantize_and_einsum():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 6, 4)) * 40).astype(np.float32)
    q8 = rng.integers(-128, 128, (2, 6, 4)).astype(np.int8)
    feeds = {"x": x, "q8": q8, "xs": np.array([0.0, 1.5, -3.0, 0.25], np.float32),
             "a": rng.standard_normal((3, 4, 5)).astype(np.float64),
             "b2": rng.standard_normal((3, 5, 2)).astype(np.float64),
             "sq": rng.standard_normal((2, 4, 4)).astype(np.float32)}
    inits = {"s": np.array(0.5, np.float32), "zp_u8": np.array(128, np.uint8),
             "zp_i16": np.array(-7, np.int16), "s_ax": rng.uniform(0.1, 2, 6).astype(np.float32),
             "zp_ax": rng.integers(-5, 5, 6).astype(np.int8),
             "s_blk": rng.uniform(0.1, 2, (2, 3, 4)).astype(np.float32),
             "zp_blk": rng.integers(0, 20, (2, 3, 4)).astype(np.uint8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp_u8"], ["q_u8"]),
             helper.make_node("QuantizeLinear", ["x", "s", "zp_i16"], ["q_i16"]),
             helper.make_node("QuantizeLinear", ["x", "s_ax", "zp_ax"], ["q_ax"], axis=1),
             helper.make_node("QuantizeLinear", ["x", "s_blk", "zp_blk"], ["q_blk"], axis=1, block_size=2),
             helper.make_node("QuantizeLinear", ["x", "s"], ["q_def"]),
             helper.make_node("DequantizeLinear", ["q8", "s_ax", "zp_ax"], ["dq_ax"], axis=1),
             helper.make_node("DequantizeLinear", ["q_blk", "s_blk", "zp_blk"], ["dq_blk"], axis=1, block_size=2),
             helper.make_node("DequantizeLinear", ["q_i16", "s", "zp_i16"], ["dq_i16"]),
             helper.make_node("DynamicQuantizeLinear", ["x"], ["dy", "dy_s", "dy_zp"]),
             helper.make_node("DynamicQuantizeLinear", ["xs"], ["dys", "dys_s", "dys_zp"]),
             helper.make_node("Einsum", ["a", "b2"], ["e_bmm"], equation="bij,bjk->bik"),
             helper.make_node("Einsum", ["a"], ["e_t"], equation="ijk->kji"),
             helper.make_node("Einsum", ["a"], ["e_sum"], equation="ijk"),
             helper.make_node("Einsum", ["sq"], ["e_diag"], equation="...ii->...i"),
             helper.make_node("Einsum", ["a", "a"], ["e_inner"], equation="ijk,ijk->"),
             helper.make_node("Einsum", ["a", "b2"], ["e_out"], equation="bij,bkl->bijkl")]
    outs = ["q_u8", "q_i16", "q_ax", "q_blk", "q_def", "dq_ax", "dq_blk", "dq_i16", "dy", "dy_s", "dy_zp",
            "dys", "dys_s", "dys_zp", "e_bmm", "e_t", "e_sum", "e_diag", "e_inner", "e_out"]
    check(nodes, feeds, outs, inits, opset=21, rtol=1e-6, atol=1e-6)


def test_integer_matmul_signal_and_sequences():
    rng = np.random.default_rng(4)
    feeds = {"a": rng.integers(0, 256, (2, 3, 5)).astype(np.uint8),
             "b": rng.integers(0, 256, (5, 4)).astype(np.uint8),
             "ai": rng.integers(-128, 128, (3, 5)).astype(np.int8),
             "bi": rng.integers(-128, 128, (2, 5, 4)).astype(np.int8),
             "sig": rng.standard_normal((2, 12, 1)).astype(np.float32),
             "csig": rng.standard_normal((1, 9, 2)).astype(np.float32),
             "x4": rng.standard_normal((2, 6, 5, 1)).astype(np.float32),
             "z4": rng.standard_normal((1, 6, 4, 2)).astype(np.float32),
             "ax1": np.array(1, np.int64), "axm": np.array(-2, np.int64), "len8": np.array(8, np.int64),
             "step": np.array(3, np.int64), "flen": np.array(6, np.int64), "win": np.hanning(6).astype(np.float32),
             "n7": np.array(7, np.int32),
             "seq": rng.standard_normal((5, 3, 2)).astype(np.float32), "lens": np.array([5, 0, 3], np.int64),
             "cols": rng.standard_normal((2, 6, 16)).astype(np.float32),
             "cols2": rng.standard_normal((2, 6, 15)).astype(np.float32),
             "img": np.array([4, 5], np.int64), "blk": np.array([2, 3], np.int64)}
    inits = {"az": np.array(120, np.uint8), "bz": rng.integers(100, 140, (4,)).astype(np.uint8),
             "as": rng.uniform(0.01, 0.1, (3,)).astype(np.float32), "bs": np.array(0.05, np.float32),
             "ys": np.array(0.4, np.float32), "yz": np.array(3, np.int8),
             "aiz": np.array(-3, np.int8), "biz": np.array(2, np.int8)}
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["mmi"]),
             helper.make_node("MatMulInteger", ["ai", "bi"], ["mmi0"]),
             helper.make_node("QLinearMatMul", ["ai", "as", "aiz", "bi", "bs", "biz", "ys", "yz"], ["qmm"]),
             helper.make_node("DFT", ["x4", "", "ax1"], ["dft_a"]),
             helper.make_node("DFT", ["x4", "len8", "axm"], ["dft_b"], onesided=1),
             helper.make_node("DFT", ["z4", "", "ax1"], ["dft_c"]),
             helper.make_node("DFT", ["z4", "len8", "ax1"], ["dft_d"], inverse=1, onesided=1),
             helper.make_node("STFT", ["sig", "step", "win"], ["stft_a"]),
             helper.make_node("STFT", ["sig", "step", "", "flen"], ["stft_b"], onesided=0),
             helper.make_node("STFT", ["csig", "step", "", "flen"], ["stft_c"]),
             helper.make_node("HannWindow", ["n7"], ["hann"]),
             helper.make_node("HammingWindow", ["n7"], ["hamming"], periodic=0),
             helper.make_node("BlackmanWindow", ["n7"], ["blackman"], output_datatype=TensorProto.DOUBLE),
             helper.make_node("ReverseSequence", ["seq", "lens"], ["rs"], batch_axis=1, time_axis=0),
             helper.make_node("Col2Im", ["cols", "img", "blk"], ["c2i"], pads=[1, 0, 0, 1], strides=[1, 1]),
             helper.make_node("Col2Im", ["cols2", "img", "blk"], ["c2i_b"], dilations=[2, 1], strides=[1, 2],
                              pads=[2, 1, 1, 2])]
    outs = ["mmi", "mmi0", "qmm", "dft_a", "dft_b", "dft_c", "dft_d", "stft_a", "stft_b", "stft_c", "hann",
            "hamming", "blackman", "rs", "c2i", "c2i_b"]
    check(nodes, feeds, outs, inits, opset=22, rtol=1e-4, atol=1e-4)


def test_optimizers_and_ml():
    rng = np.random.default_rng(5)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    feeds = {"R": np.array(0.1, np.float32), "T0": np.array(0, np.int64), "T3": np.array(3, np.int64),
             "X1": f(3), "X2": f(2, 2), "G1": f(3), "G2": f(2, 2), "V1": f(3), "V2": f(2, 2),
             "H1": np.abs(f(3)), "H2": np.abs(f(2, 2)), "x": f(3, 5), "idx": np.array([4, -1, 0], np.int64)}
    tr = "ai.onnx.preview.training"
    nodes, outs = [], []
    for t in ("T0", "T3"):
        for mode in ("standard", "nesterov"):
            names = [f"m_{t}_{mode}_{k}" for k in range(4)]
            nodes.append(helper.make_node("Momentum", ["R", t, "X1", "X2", "G1", "G2", "V1", "V2"], names,
                                          domain=tr, alpha=0.9, beta=0.3, mode=mode, norm_coefficient=0.01))
            outs += names
        names = [f"ag_{t}_{k}" for k in range(4)]
        nodes.append(helper.make_node("Adagrad", ["R", t, "X1", "X2", "G1", "G2", "H1", "H2"], names, domain=tr,
                                      decay_factor=0.1, epsilon=1e-5, norm_coefficient=0.01))
        names2 = [f"ad_{t}_{k}" for k in range(6)]
        nodes.append(helper.make_node("Adam", ["R", t, "X1", "X2", "G1", "G2", "V1", "V2", "H1", "H2"], names2,
                                      domain=tr, alpha=0.9, beta=0.99, norm_coefficient=0.01,
                                      norm_coefficient_post=0.02))
        outs += names + names2
    nodes += [helper.make_node("Binarizer", ["x"], ["bin"], domain="ai.onnx.ml", threshold=0.2),
              helper.make_node("ArrayFeatureExtractor", ["x", "idx"], ["afe"], domain="ai.onnx.ml")]
    outs += ["bin", "afe"]
    check(nodes, feeds, outs, opset=22, rtol=1e-5, atol=1e-6, domains={tr: 1, "ai.onnx.ml": 3})


@pytest.mark.parametrize("shape,perm", [((2, 37, 3, 20), (0, 2, 3, 1)), ((33, 17), (1, 0)),
                                        ((3, 5, 40), (2, 0, 1)), ((2, 3, 40, 19), (0, 3, 1, 2)),
                                        ((4, 18, 6), (0, 2, 1))])
def test_transposes_that_move_the_last_axis_copy_tiles(shape, perm):
    """The input's last axis moves: 16 x 16 tiles (kiln/ops/shape_lower.py), ragged at the edges;
    the result is exactly numpy's transpose."""
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    check([helper.make_node("Transpose", ["x"], ["y"], perm=list(perm))], {"x": x}, ["y"])
