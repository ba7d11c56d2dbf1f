"""Small ONNX models built in code (fixed seed, random weights, no downloads)."""
from __future__ import annotations

import numpy as np


def small_cnn(batch="N", seed: int = 0, opset: int = 17):
    """A small CNN: conv-bn-relu, maxpool, two residual-free conv blocks, global pool, gemm, softmax.
    Input `image: f32[batch,3,32,32]`, output `probs: f32[batch,10]`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def w(name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        a = (rng.standard_normal(shape) * (scale or np.sqrt(2.0 / fan_in))).astype(np.float32)
        inits.append(numpy_helper.from_array(a, name))
        return name

    def conv_bn_relu(x, cin, cout, k, stride, tag):
        pad = k // 2
        nodes.append(helper.make_node("Conv", [x, w(f"{tag}.w", cout, cin, k, k)], [f"{tag}.conv"],
                                      kernel_shape=[k, k], strides=[stride, stride],
                                      pads=[pad] * 4, name=f"{tag}/Conv"))
        for nm, lo, hi in (("gamma", 0.5, 1.5), ("beta", -0.1, 0.1), ("mean", -0.1, 0.1), ("var", 0.5, 1.5)):
            inits.append(numpy_helper.from_array(rng.uniform(lo, hi, cout).astype(np.float32), f"{tag}.{nm}"))
        nodes.append(helper.make_node("BatchNormalization",
                                      [f"{tag}.conv", f"{tag}.gamma", f"{tag}.beta", f"{tag}.mean", f"{tag}.var"],
                                      [f"{tag}.bn"], epsilon=1e-5, name=f"{tag}/BatchNormalization"))
        nodes.append(helper.make_node("Relu", [f"{tag}.bn"], [f"{tag}.out"], name=f"{tag}/Relu"))
        return f"{tag}.out"

    x = conv_bn_relu("image", 3, 16, 3, 1, "stem")
    nodes.append(helper.make_node("MaxPool", [x], ["pool1"], kernel_shape=[2, 2], strides=[2, 2],
                                  name="pool1/MaxPool"))
    x = conv_bn_relu("pool1", 16, 32, 3, 2, "block1")
    x = conv_bn_relu(x, 32, 64, 3, 2, "block2")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="head/GlobalAveragePool"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="head/Flatten"))
    nodes.append(helper.make_node("Gemm", ["flat", w("fc.w", 10, 64), w("fc.b", 10, scale=0.1)],
                                  ["logits"], transB=1, name="head/Gemm"))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="head/Softmax"))
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="kiln.testing")
    model.ir_version = 8
    return model
