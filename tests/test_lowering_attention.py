"""Native lowerings of the attention family, compiled with native_only=True against the
interpreter: Attention (3-D/4-D, GQA, KV cache, masks, causal and window masking, softcap,
non-padded key counts, qk_matmul_output modes), FlexAttention, LinearAttention, RotaryEmbedding,
CausalConvWithState."""
import numpy as np
import pytest
from onnx import helper

from test_lowering_reduce import check, private_cache  # noqa: F401  (shared helper and fixture)

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")


def test_attention_variants():
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    feeds = {"q4": f(2, 4, 3, 8), "k4": f(2, 2, 5, 8), "v4": f(2, 2, 5, 6),
             "pk": f(2, 2, 4, 8), "pv": f(2, 2, 4, 6),
             "q3": f(2, 3, 16), "k3": f(2, 5, 8), "v3": f(2, 5, 12), "k31": f(2, 5, 4), "v31": f(2, 5, 6),
             "mb": rng.random((3, 9)) > 0.3, "mf": f(2, 1, 3, 4), "m2": f(3, 5),
             "np": np.array([4, 2], np.int64), "npp": np.array([8, 6], np.int64)}
    feeds["mb"][1] = False                 # a fully masked row
    feeds["mb5"] = feeds["mb"][:, :5].copy()
    nodes, outs = [], []

    def add(ins, n_out=1, **kw):
        name = f"att{len(nodes)}"
        names = [f"{name}_{k}" for k in range(n_out)]
        nodes.append(helper.make_node("Attention", ins, names, **kw))
        outs.extend(names)
    add(["q4", "k4", "v4"])
    add(["q4", "k4", "v4"], is_causal=1, scale=0.3)
    add(["q4", "k4", "v4", "", "pk", "pv"], 4, is_causal=1, qk_matmul_output_mode=1, softcap=2.0)
    add(["q4", "k4", "v4", "mb", "pk", "pv"], 4, qk_matmul_output_mode=3)
    add(["q4", "k4", "v4", "mf"], 4, qk_matmul_output_mode=2, left_window_size=1, right_window_size=2)
    add(["q4", "k4", "v4", "", "", "", "np"], is_causal=1)
    add(["q4", "k4", "v4", "", "pk", "pv", "npp"], 3, is_causal=1)
    add(["q3", "k3", "v3"], q_num_heads=4, kv_num_heads=2)
    add(["q3", "k3", "v3", "m2"], 4, q_num_heads=4, kv_num_heads=2, qk_matmul_output_mode=0, softcap=1.5)
    add(["q3", "k31", "v31", "mb5"], q_num_heads=4, kv_num_heads=1, is_causal=1, left_window_size=2)
    nodes.append(helper.make_node("FlexAttention", ["q4", "k4", "v4"], ["flex_a"], domain="ai.onnx.preview"))
    nodes.append(helper.make_node("FlexAttention", ["q4", "k4", "v4"], ["flex_b"], scale=0.2,
                                  domain="ai.onnx.preview"))
    outs += ["flex_a", "flex_b"]
    check(nodes, feeds, outs, opset=24, rtol=1e-4, atol=1e-5, domains={"ai.onnx.preview": 1})


def test_linear_attention_rotary_causal_conv():
    rng = np.random.default_rng(1)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    feeds = {"q": f(2, 5, 16), "k": f(2, 5, 8), "v": f(2, 5, 12), "st": f(2, 2, 4, 6),
             "dk": -np.abs(f(2, 5, 8)), "dh": -np.abs(f(2, 5, 2)), "beta": np.abs(f(2, 5, 2)),
             "b1": np.abs(f(2, 5, 1)),
             "x4": f(2, 3, 5, 8), "x3": f(2, 5, 12), "cos": f(5, 4), "sin": f(5, 4),
             "cos3": f(2, 5, 2), "sin3": f(2, 5, 2), "pos": np.array([[0, 2, 4, 1, 3], [4, 3, 2, 1, 0]], np.int64),
             "cx": f(2, 3, 7), "cps": f(2, 3, 2)}
    inits = {"cw": f(3, 1, 3), "cb": f(3)}
    nodes, outs = [], []
    for i, (rule, extra) in enumerate([("linear", []), ("gated", ["dk"]), ("gated", ["dh"]),
                                       ("delta", ["", "beta"]), ("gated_delta", ["dk", "beta"]),
                                       ("gated_delta", ["dh", "b1"])]):
        past = "st" if i % 2 else ""
        nodes.append(helper.make_node("LinearAttention", ["q", "k", "v", past] + extra, [f"la{i}", f"ls{i}"],
                                      q_num_heads=4, kv_num_heads=2, update_rule=rule, scale=0.0 if i < 3 else 0.3))
        outs += [f"la{i}", f"ls{i}"]
    nodes += [helper.make_node("RotaryEmbedding", ["x4", "cos", "sin", "pos"], ["r0"]),
              helper.make_node("RotaryEmbedding", ["x4", "cos", "sin", "pos"], ["r1"], interleaved=1),
              helper.make_node("RotaryEmbedding", ["x3", "cos3", "sin3"], ["r2"], num_heads=3, rotary_embedding_dim=4),
              helper.make_node("RotaryEmbedding", ["x3", "cos3", "sin3"], ["r3"], num_heads=3, interleaved=1,
                               rotary_embedding_dim=4),
              helper.make_node("CausalConvWithState", ["cx", "cw", "cb", "cps"], ["cc0", "cs0"]),
              helper.make_node("CausalConvWithState", ["cx", "cw"], ["cc1", "cs1"], activation="silu")]
    outs += ["r0", "r1", "r2", "r3", "cc0", "cs0", "cc1", "cs1"]
    check(nodes, feeds, outs, inits, opset=24, rtol=1e-4, atol=1e-5)
