"""Native lowerings of NN ops, compiled with native_only=True against the interpreter: losses,
RMS/group/mean-variance/Lp normalization, LRN, 3-D convolution, ConvTranspose, N-d pooling
(LpPool, MaxPool with Indices, integer MaxPool)."""
import numpy as np
import pytest
from onnx import helper

from test_lowering_reduce import check, private_cache  # noqa: F401  (shared helper and fixture)

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")


def test_losses():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2, 4)).astype(np.float32)
    t = rng.integers(0, 5, (3, 2, 4)).astype(np.int64)
    tn = t.copy()
    tn[0, 0, :2] = -1                      # only read with ignore_index=-1
    w = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    x2 = rng.standard_normal((4, 6)).astype(np.float32)
    t2 = rng.integers(0, 6, (4,)).astype(np.int32)
    feeds = {"x": x, "t": t, "tn": tn, "w": w, "x2": x2, "t2": t2}
    nodes, outs = [], []
    for red in ("none", "sum", "mean"):
        for ii in (None, -1, 2):
            kw = dict(reduction=red) if ii is None else dict(reduction=red, ignore_index=ii)
            for weighted in (False, True):
                tgt = "tn" if ii == -1 else "t"
                ins = ["x", tgt, "w"] if weighted else ["x", tgt]
                n = f"nll_{red}_{ii}_{weighted}"
                nodes.append(helper.make_node("NegativeLogLikelihoodLoss", ins, [n], **kw))
                s, lp = f"sce_{red}_{ii}_{weighted}", f"lp_{red}_{ii}_{weighted}"
                nodes.append(helper.make_node("SoftmaxCrossEntropyLoss", ins, [s, lp], **kw))
                outs += [n, s, lp]
        n = f"sce2_{red}"
        nodes.append(helper.make_node("SoftmaxCrossEntropyLoss", ["x2", "t2"], [n], reduction=red))
        outs.append(n)
    check(nodes, feeds, outs, rtol=1e-5, atol=1e-6)


def test_normalizations():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 3, 4)).astype(np.float32)
    x64 = rng.standard_normal((3, 5)).astype(np.float64)
    feeds = {"x": x, "x64": x64}
    inits = {"s4": rng.standard_normal((4,)).astype(np.float32),
             "s34": rng.standard_normal((3, 4)).astype(np.float32),
             "s634": rng.standard_normal((6, 3, 4)).astype(np.float32),
             "s5": rng.standard_normal((5,)).astype(np.float64),
             "g6": rng.standard_normal((6,)).astype(np.float32),
             "b6": rng.standard_normal((6,)).astype(np.float32),
             "g3": rng.standard_normal((3,)).astype(np.float32),
             "b3": rng.standard_normal((3,)).astype(np.float32)}
    nodes = [helper.make_node("RMSNormalization", ["x", "s4"], ["rms_a"], epsilon=0.1),
             helper.make_node("RMSNormalization", ["x", "s34"], ["rms_b"], axis=-2),
             helper.make_node("RMSNormalization", ["x", "s634"], ["rms_c"], axis=1),
             helper.make_node("RMSNormalization", ["x", "s4"], ["rms_d"], axis=0),
             helper.make_node("RMSNormalization", ["x64", "s5"], ["rms_e"]),
             helper.make_node("GroupNormalization", ["x", "g6", "b6"], ["gn_a"], num_groups=3, epsilon=0.01),
             helper.make_node("GroupNormalization", ["x", "g6", "b6"], ["gn_b"], num_groups=6),
             helper.make_node("MeanVarianceNormalization", ["x"], ["mvn_a"]),
             helper.make_node("MeanVarianceNormalization", ["x"], ["mvn_b"], axes=[1, 3]),
             helper.make_node("LRN", ["x"], ["lrn_a"], size=3),
             helper.make_node("LRN", ["x"], ["lrn_b"], size=4, alpha=0.001, beta=0.6, bias=2.0)]
    outs = ["rms_a", "rms_b", "rms_c", "rms_d", "rms_e", "gn_a", "gn_b", "mvn_a", "mvn_b", "lrn_a", "lrn_b"]
    for axis in (0, 1, -1):
        for p in (1, 2):
            nodes.append(helper.make_node("LpNormalization", ["x"], [f"lp_{axis}_{p}"], axis=axis, p=p))
            outs.append(f"lp_{axis}_{p}")
    check(nodes, feeds, outs, inits, rtol=1e-4, atol=1e-5)
    # opset 18 GroupNormalization: scale and bias per group
    check([helper.make_node("GroupNormalization", ["x", "g3", "b3"], ["gn18"], num_groups=3)],
          {"x": x}, ["gn18"], {k: inits[k] for k in ("g3", "b3")}, opset=18, rtol=1e-4, atol=1e-5)


def test_conv3d_and_conv_transpose():
    rng = np.random.default_rng(2)
    x3 = rng.standard_normal((2, 4, 5, 6, 5)).astype(np.float32)
    x2 = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    x1 = rng.standard_normal((2, 4, 7)).astype(np.float32)
    feeds = {"x3": x3, "x2": x2, "x1": x1}
    inits = {"w3": rng.standard_normal((6, 2, 2, 3, 2)).astype(np.float32),
             "b6": rng.standard_normal((6,)).astype(np.float32),
             "wt2": rng.standard_normal((4, 3, 3, 2)).astype(np.float32),
             "wt1": rng.standard_normal((4, 2, 3)).astype(np.float32),
             "wt3": rng.standard_normal((4, 2, 2, 2, 3)).astype(np.float32),
             "b3": rng.standard_normal((3,)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x3", "w3", "b6"], ["c3a"], group=2, pads=[1, 0, 1, 0, 1, 1]),
        helper.make_node("Conv", ["x3", "w3"], ["c3b"], group=2, strides=[2, 1, 2], dilations=[1, 2, 1]),
        helper.make_node("Conv", ["x3", "w3"], ["c3c"], group=2, auto_pad="SAME_UPPER"),
        helper.make_node("ConvTranspose", ["x2", "wt2", "b3"], ["t2a"]),
        helper.make_node("ConvTranspose", ["x2", "wt2"], ["t2b"], strides=[2, 3], pads=[1, 0, 0, 1],
                         output_padding=[1, 1]),
        helper.make_node("ConvTranspose", ["x2", "wt2"], ["t2c"], strides=[2, 2], dilations=[2, 1],
                         auto_pad="SAME_LOWER"),
        helper.make_node("ConvTranspose", ["x2", "wt2"], ["t2d"], strides=[2, 2], output_shape=[10, 11]),
        helper.make_node("ConvTranspose", ["x1", "wt1"], ["t1a"], group=2, strides=[3]),
        helper.make_node("ConvTranspose", ["x3", "wt3"], ["t3a"], strides=[1, 2, 1], pads=[0, 1, 1, 0, 0, 1]),
    ]
    check(nodes, feeds, ["c3a", "c3b", "c3c", "t2a", "t2b", "t2c", "t2d", "t1a", "t3a"], inits,
          rtol=1e-4, atol=1e-4)


def test_nd_pooling():
    rng = np.random.default_rng(3)
    x3 = rng.standard_normal((2, 3, 6, 5, 7)).astype(np.float32)
    x2 = rng.standard_normal((1, 2, 7, 6)).astype(np.float32)
    x2[0, 0, :2, :2] = -np.inf
    xu = rng.integers(0, 255, (1, 2, 5, 6)).astype(np.uint8)
    feeds = {"x3": x3, "x2": x2, "xu": xu}
    nodes, outs = [], []

    def add(op, src, name, n_out=1, **kw):
        names = [name] + [name + "_i"] * (n_out > 1)
        nodes.append(helper.make_node(op, [src], names, **kw))
        outs.extend(names)
    add("MaxPool", "x3", "mp3", kernel_shape=[2, 3, 2], strides=[2, 1, 2], pads=[1, 1, 0, 0, 1, 1])
    add("AveragePool", "x3", "ap3", kernel_shape=[3, 2, 3], count_include_pad=1, pads=[1, 1, 1, 1, 0, 1])
    add("AveragePool", "x3", "ap3c", kernel_shape=[3, 3, 3], strides=[2, 2, 2], ceil_mode=1)
    add("AveragePool", "x3", "ap3d", kernel_shape=[2, 2, 2], dilations=[2, 1, 2], ceil_mode=1,
        count_include_pad=1, pads=[1, 0, 1, 1, 1, 0])
    add("LpPool", "x3", "lp3", kernel_shape=[2, 2, 2], p=3)
    add("LpPool", "x2", "lp2", kernel_shape=[3, 2], p=2, pads=[1, 1, 1, 0], strides=[2, 1])
    add("LpPool", "x2", "lp2s", kernel_shape=[3, 3], auto_pad="SAME_LOWER")
    add("MaxPool", "x2", "mpi", 2, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    add("MaxPool", "x2", "mpj", 2, kernel_shape=[2, 3], storage_order=1, dilations=[2, 1])
    add("MaxPool", "xu", "mpu", kernel_shape=[2, 2], pads=[0, 1, 1, 0])
    add("MaxPool", "xu", "mpu_idx", 2, kernel_shape=[3, 2], strides=[1, 2], ceil_mode=1)
    check(nodes, feeds, outs, rtol=1e-5, atol=1e-6)


def test_sampling_and_integer_convolution():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    x3 = rng.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)
    grid = rng.uniform(-1.3, 1.3, (2, 4, 7, 2)).astype(np.float32)
    grid3 = rng.uniform(-1.2, 1.2, (1, 2, 3, 4, 3)).astype(np.float32)
    xq = rng.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8)
    feeds = {"x": x, "x3": x3, "grid": grid, "grid3": grid3, "xq": xq,
             "theta": rng.standard_normal((2, 2, 3)).astype(np.float32),
             "theta3": rng.standard_normal((2, 3, 4)).astype(np.float32),
             "size": np.array([2, 3, 4, 5], np.int64), "size3": np.array([2, 1, 3, 2, 4], np.int64),
             "xv": rng.standard_normal((1, 2, 2, 3)).astype(np.float32),
             "xi": np.array([[[[0, 5, 10], [13, 19, 23]], [[1, 2, 3], [30, 31, 34]]]], np.int64),
             "osh": np.array([1, 2, 6, 7], np.int64),
             "offd": rng.uniform(-1.5, 1.5, (2, 12, 4, 4)).astype(np.float32),
             "maskd": rng.uniform(0, 1, (2, 6, 4, 4)).astype(np.float32),
             "x4c": rng.standard_normal((1, 4, 5, 5)).astype(np.float32),
             "offd2": rng.uniform(-2, 2, (1, 24, 3, 3)).astype(np.float32)}
    inits = {"wq": rng.integers(0, 256, (6, 2, 3, 2)).astype(np.uint8),
             "xz": np.array(128, np.uint8), "wz": rng.integers(100, 150, (6,)).astype(np.uint8),
             "xs": np.array(0.05, np.float32), "ws": rng.uniform(0.01, 0.03, (6,)).astype(np.float32),
             "ys": np.array(0.2, np.float32), "yz": np.array(5, np.int8),
             "bq": rng.integers(-500, 500, (6,)).astype(np.int32),
             "wd": rng.standard_normal((4, 3, 2, 3)).astype(np.float32), "bd": rng.standard_normal(4).astype(np.float32),
             "wd2": rng.standard_normal((4, 2, 2, 3)).astype(np.float32)}
    nodes, outs = [], []
    for mode in ("nearest", "linear", "cubic"):
        for pad in ("zeros", "border", "reflection"):
            for align in (0, 1):
                n = f"gs_{mode}_{pad}_{align}"
                nodes.append(helper.make_node("GridSample", ["x", "grid"], [n], mode=mode, padding_mode=pad,
                                              align_corners=align))
                outs.append(n)
                if mode != "cubic":
                    nodes.append(helper.make_node("GridSample", ["x3", "grid3"], [n + "_3d"], mode=mode,
                                                  padding_mode=pad, align_corners=align))
                    outs.append(n + "_3d")
    for align in (0, 1):
        nodes += [helper.make_node("AffineGrid", ["theta", "size"], [f"ag{align}"], align_corners=align),
                  helper.make_node("AffineGrid", ["theta3", "size3"], [f"ag3_{align}"], align_corners=align)]
        outs += [f"ag{align}", f"ag3_{align}"]
    nodes += [helper.make_node("ConvInteger", ["xq", "wq", "xz", "wz"], ["ci"], group=2, pads=[1, 0, 1, 1]),
              helper.make_node("ConvInteger", ["xq", "wq"], ["ci0"], group=2, strides=[2, 1]),
              helper.make_node("QLinearConv", ["xq", "xs", "xz", "wq", "ws", "wz", "ys", "yz", "bq"], ["qc"],
                               group=2, pads=[1, 1, 0, 0]),
              helper.make_node("MaxUnpool", ["xv", "xi"], ["mu"], kernel_shape=[2, 2], strides=[2, 2]),
              helper.make_node("MaxUnpool", ["xv", "xi", "osh"], ["mu_o"], kernel_shape=[2, 2], strides=[2, 2])]
    outs += ["ci", "ci0", "qc", "mu", "mu_o"]
    nodes += [helper.make_node("DeformConv", ["x", "wd", "offd", "bd", "maskd"], ["dc"]),
              helper.make_node("DeformConv", ["x4c", "wd2", "offd2"], ["dc2"], group=2, offset_group=2,
                               pads=[1, 0, 0, 0], strides=[2, 1])]
    outs += ["dc", "dc2"]
    check(nodes, feeds, outs, inits, opset=22, rtol=1e-4, atol=1e-5)


def test_recurrent_layers():
    rng = np.random.default_rng(5)
    f = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)
    S, B, I, H = 4, 3, 5, 3
    feeds = {"x": f(S, B, I), "xb": f(B, S, I), "lens": np.array([4, 1, 3], np.int32),
             "h1": f(1, B, H), "h2": f(2, B, H), "c2": f(2, B, H), "hb": f(B, 2, H)}
    inits = {}
    nodes, outs = [], []
    for kind, gates in (("RNN", 1), ("GRU", 3), ("LSTM", 4)):
        for dirs in (1, 2):
            inits[f"W{kind}{dirs}"] = f(dirs, gates * H, I)
            inits[f"R{kind}{dirs}"] = f(dirs, gates * H, H)
            inits[f"B{kind}{dirs}"] = f(dirs, 2 * gates * H)
        inits[f"P{kind}"] = f(2, 3 * H)

        def add(n_out, ins, **kw):
            name = f"{kind}{len(nodes)}"
            names = [f"{name}_{k}" for k in range(n_out)]
            nodes.append(helper.make_node(kind, ins, names, hidden_size=H, **kw))
            outs.extend(n for n in names if n)
        extra = {"GRU": dict(linear_before_reset=1), "LSTM": dict(input_forget=1), "RNN": {}}[kind]
        n_out = 3 if kind == "LSTM" else 2
        add(n_out, ["x", f"W{kind}1", f"R{kind}1"])
        add(n_out, ["x", f"W{kind}1", f"R{kind}1", f"B{kind}1", "lens", "h1"], direction="reverse", clip=0.8)
        ins = ["x", f"W{kind}2", f"R{kind}2", f"B{kind}2", "lens", "h2"] + (["c2", f"P{kind}"] if kind == "LSTM" else [])
        add(n_out, ins, direction="bidirectional", **extra)
        add(n_out, ["xb", f"W{kind}2", f"R{kind}2", "", "", "hb"], direction="bidirectional", layout=1)
        acts = {"RNN": ["Relu", "LeakyRelu"], "GRU": ["HardSigmoid", "Softsign", "Sigmoid", "ScaledTanh"],
                "LSTM": ["Sigmoid", "Elu", "Softplus", "HardSigmoid", "Tanh", "Affine"]}[kind]
        add(n_out, ["x", f"W{kind}2", f"R{kind}2", f"B{kind}2"], direction="bidirectional", activations=acts,
            activation_alpha=[0.3, 0.4, 0.5], activation_beta=[0.6, 0.7])
    check(nodes, feeds, outs, inits, opset=22, rtol=1e-4, atol=1e-5)


# (C, H, W, attrs): 3x3 and 5x5 windows, stride 1 and 2, dilation, asymmetric pads, rows narrower
# than a vector, and widths whose interior ends mid-vector
DEPTHWISE = [(8, 13, 37, dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
             (5, 14, 29, dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
             (3, 9, 40, dict(kernel_shape=[5, 5], strides=[2, 2], pads=[2, 1, 2, 0])),
             (4, 11, 21, dict(kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2])),
             (6, 5, 5, dict(kernel_shape=[3, 3])),
             (2, 7, 33, dict(kernel_shape=[3, 2], strides=[1, 3], pads=[0, 1, 1, 0]))]


def test_depthwise_convolutions():
    """Depthwise convs (group = channels) with a bias and a fused Clip (ReLU6), against the
    interpreter; in NCHW through kiln/backend/depthwise.py."""
    import kiln
    from kiln.lower.loopir import c_calls
    from test_lowering_reduce import model
    rng = np.random.default_rng(5)
    nodes, feeds, outs, inits = [], {}, [], {}
    for k, (ch, h, w, attrs) in enumerate(DEPTHWISE):
        feeds[f"x{k}"] = rng.standard_normal((2, ch, h, w)).astype(np.float32)
        inits[f"w{k}"] = rng.standard_normal((ch, 1, *attrs["kernel_shape"])).astype(np.float32)
        inits[f"b{k}"] = rng.standard_normal(ch).astype(np.float32)
        nodes += [helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"t{k}"], group=ch, **attrs),
                  helper.make_node("Clip", [f"t{k}", "lo", "hi"], [f"y{k}"])]
        outs.append(f"y{k}")
    inits["lo"], inits["hi"] = np.array(0, np.float32), np.array(6, np.float32)
    check(nodes, feeds, outs, inits, rtol=1e-5, atol=1e-5)
    # opt_level 2 runs them blocked (tests/test_layout.py); in NCHW they take the plane kernel
    mod = kiln.compile(model(nodes, feeds, outs, inits), target="cpu", disable=["layout"])
    dw = [nk for nk in mod._native.program.native.values() if "kiln_dwconv_f32" in c_calls(nk.kernel.body)]
    assert len(dw) == len(DEPTHWISE)
