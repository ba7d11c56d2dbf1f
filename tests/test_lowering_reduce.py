"""Native lowerings of reductions and scans, compiled with native_only=True and compared with the
interpreter (the numpy references): Reduce* with axes read at run time, CumSum/CumProd, TopK,
Hardmax, bool ReduceMax/Min. Several nodes share one model so each test compiles once."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")

ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
        np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
        np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
        np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.uint64): TensorProto.UINT64}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "cache"))


def model(nodes, feeds: dict, outputs: list, inits: dict | None = None, shapes=None, opset=21,
          domains=()):
    ins = [helper.make_tensor_value_info(k, ONNX[v.dtype], v.shape) for k, v in feeds.items()]
    outs = [helper.make_tensor_value_info(n, 0, None if shapes is None else shapes[k])
            for k, n in enumerate(outputs)]
    init = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    g = helper.make_graph(nodes, "g", ins, outs, init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)] +
                          [helper.make_opsetid(d, v) for d, v in dict(domains).items()])
    m.ir_version = 10
    return m


def check(nodes, feeds: dict, outputs: list, inits=None, opset=21, rtol=1e-5, atol=1e-6, domains=()):
    """The compiled model (no host op allowed) against the interpreter. Output shapes are taken
    from the interpreter's results and declared, as exporters do."""
    ref = kiln.compile(model(nodes, feeds, outputs, inits, opset=opset, domains=domains),
                       target="interpret").run(feeds)
    shapes = [list(np.asarray(r).shape) for r in ref]
    m = model(nodes, feeds, outputs, inits, shapes, opset, domains)
    got = kiln.compile(m, target="cpu", native_only=True).run(feeds)
    for name, g, r in zip(outputs, got, ref):
        r = np.asarray(r)
        assert g.dtype == r.dtype and g.shape == r.shape, name
        if r.dtype.kind == "f":
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(g, r, err_msg=name)


REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_reductions_with_runtime_axes(dtype):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 2.0, (3, 4, 5)) if dtype == np.float32 else rng.integers(-5, 6, (3, 4, 5))
    x = x.astype(dtype)
    feeds = {"x": x}
    nodes, outs = [], []
    ops = REDUCE if dtype == np.float32 else ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
                                              "ReduceProd", "ReduceL1", "ReduceSumSquare"]
    axes_sets = {"a0": [1], "a1": [0, -1], "a2": [2, 0, 1], "a3": []}
    for k, v in axes_sets.items():
        feeds[k] = np.array(v, np.int64)
    for i, op in enumerate(ops):
        for k in axes_sets:
            for keep in (0, 1):
                for noop in ((0, 1) if k == "a3" else (0,)):
                    name = f"{op}_{k}_{keep}_{noop}"
                    nodes.append(helper.make_node(op, ["x", k], [name], keepdims=keep,
                                                  noop_with_empty_axes=noop))
                    outs.append(name)
    check(nodes, feeds, outs, rtol=1e-4)


def test_reductions_edge_values_and_bool():
    x = np.array([[-np.inf, -np.inf, 1.0], [np.inf, 2.0, np.nan], [-np.inf, 0.0, 3.0]], np.float32)
    b = np.array([[True, False, False], [False, False, False]])
    feeds = {"x": x, "b": b, "ax": np.array([1], np.int64)}
    nodes = [helper.make_node("ReduceLogSumExp", ["x", "ax"], ["lse"], keepdims=0),
             helper.make_node("ReduceLogSumExp", ["x"], ["lse_c"], keepdims=1),
             helper.make_node("ReduceMax", ["b", "ax"], ["bmax"], keepdims=0),
             helper.make_node("ReduceMin", ["b"], ["bmin"], keepdims=1),
             helper.make_node("ReduceMax", ["b"], ["bmax_c"], keepdims=0)]
    check(nodes, feeds, ["lse", "lse_c", "bmax", "bmin", "bmax_c"])


def test_cumulative_topk_hardmax():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    xi = rng.integers(-3, 4, (4, 6)).astype(np.int32)
    feeds = {"x": x, "xi": xi, "ax1": np.array(1, np.int64), "axm": np.array(-1, np.int32),
             "k": np.array([3], np.int64)}
    nodes, outs = [], []
    for op in ("CumSum", "CumProd"):
        for ex in (0, 1):
            for rev in (0, 1):
                for src, ax in (("x", "ax1"), ("xi", "axm"), ("x", "axm")):
                    name = f"{op}_{src}_{ax}_{ex}{rev}"
                    nodes.append(helper.make_node(op, [src, ax], [name], exclusive=ex, reverse=rev))
                    outs.append(name)
    for axis in (0, 1, -1):
        for largest in (0, 1):
            v, i = f"topv_{axis}_{largest}", f"topi_{axis}_{largest}"
            nodes.append(helper.make_node("TopK", ["x", "k"], [v, i], axis=axis, largest=largest))
            outs += [v, i]
            v, i = f"topiv_{axis}_{largest}", f"topii_{axis}_{largest}"
            if axis != 0:       # ties among small integers: lower index first
                nodes.append(helper.make_node("TopK", ["xi", "k"], [v, i], axis=axis, largest=largest))
                outs += [v, i]
    for axis in (0, 1, 2, -1):
        nodes.append(helper.make_node("Hardmax", ["x"], [f"hm{axis}"], axis=axis))
        outs.append(f"hm{axis}")
    nodes.append(helper.make_node("Hardmax", ["xi"], ["hmi"], axis=1))
    outs.append("hmi")
    check(nodes, feeds, outs, rtol=1e-5)
