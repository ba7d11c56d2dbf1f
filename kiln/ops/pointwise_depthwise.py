"""PointwiseDepthwise: a 1x1 convolution, a clamp, then a depthwise convolution, in the blocked
layout: the first two convolutions of an inverted-residual block (MobileNetV2, EfficientNet),
made by the `pointwise-depthwise` pass (kiln/passes/pointwise_depthwise.py) from two BlockedConvs
and the Clip or Relu between them.

    PointwiseDepthwise(X, W1, B1, W2, B2) {c, m, clip, kernel_shape, strides, pads, dilations, out_hw}
        E = clamp(X * W1 + B1, clip[0], clip[1])     1x1, stride 1: c -> m channels, H x W
        Y = depthwise(E, W2) + B2                    the window attrs: H x W -> out_hw

X: blocked [N, ceil(c/b), H, W, b]; W1, B1: BlockedConv's 1x1 weights [ceil(m/b), ceil(c/b), 1, 1,
b, b] and padded bias; W2, B2: its depthwise weights [ceil(m/b), KH, KW, b] and padded bias.
Y: blocked [N, ceil(m/b), OH, OW, b]. The expanded E (6x the block's channels at full resolution)
is the point: the native kernel (kiln/ops/pointwise_depthwise_lower.py) keeps a band of its rows
in a buffer per thread and never writes E to memory.
"""
from __future__ import annotations

import numpy as np

from . import layout
from .infer import TensorType
from .registry import REQUIRED, op


def _infer(ctx):
    s, at = ctx.shape(0), ctx.attrs
    block = ctx.shape(1)[-1]
    return [TensorType(ctx.dtype(0), (s[0], -(-at["m"] // block), *at["out_hw"], block))]


@op("PointwiseDepthwise", inputs=["X", "W1", "B1", "W2", "B2"],
    attrs=dict(c=REQUIRED, m=REQUIRED, clip=REQUIRED, kernel_shape=REQUIRED, strides=REQUIRED,
               pads=REQUIRED, dilations=REQUIRED, out_hw=REQUIRED),
    infer=_infer, domain="kiln")
def pointwise_depthwise(X, W1, B1, W2, B2, *, c, m, clip, kernel_shape, strides, pads, dilations, out_hw):
    """The 1x1 conv, the clamp and the depthwise conv, each by its BlockedConv reference."""
    h, w = X.shape[2:4]
    e = layout.blocked_conv.reference(X, W1, B1, kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0],
                                      dilations=[1, 1], out_hw=[h, w], m=m, c=c, depthwise=0, plain=0)
    e = np.clip(e, np.float32(clip[0]), np.float32(clip[1]))
    return layout.blocked_conv.reference(e, W2, B2, kernel_shape=kernel_shape, strides=strides, pads=pads,
                                         dilations=dilations, out_hw=out_hw, m=m, c=m, depthwise=1, plain=0)


OPS = [pointwise_depthwise]
