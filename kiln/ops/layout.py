"""Ops of the blocked channels layout (NCHW[b]c), made by the `layout` pass (kiln/passes/layout.py).

A blocked tensor [N, ceil(C/b), H, W, b] holds channel c of pixel (h, w) at [n, c // b, h, w, c % b];
the lanes past C (the last block's padding) hold zeros when made by ToBlocked. Ops that compute
those lanes (BlockedConv with zero weights and bias there, elementwise ops that map 0 to a finite
value) keep them finite, and every consumer ignores them: FromBlocked drops them, a BlockedConv
multiplies them by zero weights.

- ToBlocked(X) {block}: NC... -> NC...c.
- FromBlocked(X) {channels}: NC...c -> NC... (the first `channels` channels).
- BlockedConv(X, W, B) {kernel_shape, strides, pads, dilations, m, c, depthwise, plain, out_hw}: a 2-D
  convolution on a blocked X (or, with plain=1, an NCHW X: a first layer's few channels are read
  unpadded) giving a blocked Y [N, ceil(m/b), OH, OW, b]. Pads are explicit [top, left, bottom, right].
  W was re-laid out at compile time:
      ungrouped  [OCb, ICb, KH, KW, cb, b]    (cb = b, or C when plain; ICb = 1 when plain)
      depthwise  [Cb, KH, KW, b]              (group = C = m, one input channel per output channel)
  and B is padded with zeros to OCb*b.
- BlockedMaxPool(X) {kernel_shape, strides, pads, dilations, out_hw}: MaxPool on a blocked X.

The references unblock, run Conv/MaxPool's reference and block again: the interpreter, constant
folding and the accuracy tools need nothing else.
"""
from __future__ import annotations

import numpy as np

from . import nn, nn_pool
from .infer import TensorType
from .registry import REQUIRED, op


def to_blocked(x: np.ndarray, block: int) -> np.ndarray:
    """[N, C, *S] -> [N, ceil(C/block), *S, block], zeros past C."""
    n, c = x.shape[:2]
    cb = -(-c // block)
    padded = np.zeros((n, cb * block) + x.shape[2:], dtype=x.dtype)
    padded[:, :c] = x
    y = padded.reshape((n, cb, block) + x.shape[2:])
    return np.ascontiguousarray(np.moveaxis(y, 2, -1))


def from_blocked(x: np.ndarray, channels: int) -> np.ndarray:
    """[N, Cb, *S, b] -> [N, channels, *S]."""
    y = np.moveaxis(x, -1, 2)
    y = y.reshape((x.shape[0], x.shape[1] * x.shape[-1]) + x.shape[2:-1])
    return np.ascontiguousarray(y[:, :channels])


def block_conv_weights(w: np.ndarray, block: int, plain: bool, depthwise: bool) -> np.ndarray:
    """A Conv's [M, C/g, KH, KW] weights in the layout BlockedConv reads (zeros past M and C)."""
    m, c, kh, kw = w.shape
    ocb = -(-m // block)
    if depthwise:
        padded = np.zeros((ocb * block, kh, kw), dtype=w.dtype)
        padded[:m] = w[:, 0]
        return np.ascontiguousarray(padded.reshape(ocb, block, kh, kw).transpose(0, 2, 3, 1))
    cb = c if plain else block
    icb = 1 if plain else -(-c // block)
    padded = np.zeros((ocb * block, icb * cb, kh, kw), dtype=w.dtype)
    padded[:m, :c] = w
    t = padded.reshape(ocb, block, icb, cb, kh, kw).transpose(0, 2, 4, 5, 3, 1)
    return np.ascontiguousarray(t)


def unblock_conv_weights(wb: np.ndarray, m: int, c: int, depthwise: bool) -> np.ndarray:
    """The [M, C/g, KH, KW] weights of a blocked W (inverse of block_conv_weights)."""
    if depthwise:
        ocb, kh, kw, block = wb.shape
        return np.ascontiguousarray(wb.transpose(0, 3, 1, 2).reshape(ocb * block, 1, kh, kw)[:m])
    ocb, icb, kh, kw, cb, block = wb.shape
    t = wb.transpose(0, 5, 1, 4, 2, 3).reshape(ocb * block, icb * cb, kh, kw)
    return np.ascontiguousarray(t[:m, :c])


def _infer_to(ctx):
    s, b = ctx.shape(0), ctx.attrs["block"]
    if s is None or len(s) < 2:
        return [TensorType(ctx.dtype(0), None)]
    c = -(-s[1] // b) if isinstance(s[1], int) else None
    return [TensorType(ctx.dtype(0), (s[0], c, *s[2:], b))]


@op("ToBlocked", inputs=["X"], attrs=dict(block=REQUIRED), infer=_infer_to, domain="kiln")
def to_blocked_op(X, *, block):
    """NCHW -> NCHW[block]c, zeros in the lanes past C."""
    return to_blocked(X, block)


def _infer_from(ctx):
    s = ctx.shape(0)
    if s is None:
        return [TensorType(ctx.dtype(0), None)]
    return [TensorType(ctx.dtype(0), (s[0], ctx.attrs["channels"], *s[2:-1]))]


@op("FromBlocked", inputs=["X"], attrs=dict(channels=REQUIRED), infer=_infer_from, domain="kiln")
def from_blocked_op(X, *, channels):
    """NCHW[b]c -> NCHW, the first `channels` channels."""
    return from_blocked(X, channels)


def _infer_window(channels_of):
    def infer(ctx):
        s, at = ctx.shape(0), ctx.attrs
        block = ctx.shape(1)[-1] if len(ctx.node.inputs) > 1 else s[-1]
        n = s[0] if s is not None else None
        ch = channels_of(ctx)
        return [TensorType(ctx.dtype(0), (n, -(-ch // block), *at["out_hw"], block))]
    return infer


WINDOW_ATTRS = dict(kernel_shape=REQUIRED, strides=REQUIRED, pads=REQUIRED, dilations=REQUIRED,
                    out_hw=REQUIRED)


@op("BlockedConv", inputs=["X", "W", "B"],
    attrs=dict(WINDOW_ATTRS, m=REQUIRED, c=REQUIRED, depthwise=0, plain=0),
    infer=_infer_window(lambda ctx: ctx.attrs["m"]), domain="kiln")
def blocked_conv(X, W, B, *, kernel_shape, strides, pads, dilations, out_hw, m, c, depthwise, plain):
    """A 2-D Conv in the blocked layout (weights re-laid out at compile time)."""
    block = W.shape[-1]
    x = X if plain else from_blocked(X, c)
    w = unblock_conv_weights(W, m, c, bool(depthwise))
    y = nn.conv.reference(x, w, B[:m], auto_pad="NOTSET", dilations=list(dilations),
                          group=c if depthwise else 1, kernel_shape=list(kernel_shape),
                          pads=list(pads), strides=list(strides))
    return to_blocked(y, block)


@op("BlockedMaxPool", inputs=["X"], attrs=dict(WINDOW_ATTRS, channels=REQUIRED),
    infer=_infer_window(lambda ctx: ctx.attrs["channels"]), domain="kiln")
def blocked_max_pool(X, *, kernel_shape, strides, pads, dilations, out_hw, channels):
    """MaxPool in the blocked layout; the output has the blocked layout too."""
    y = nn_pool.max_pool.reference(from_blocked(X, channels), auto_pad="NOTSET", ceil_mode=1,
                                   dilations=list(dilations), kernel_shape=list(kernel_shape),
                                   pads=list(pads), storage_order=0, strides=list(strides),
                                   n_outputs=1)
    y = y[:, :, :out_hw[0], :out_hw[1]]
    return to_blocked(y, X.shape[-1])


OPS = [to_blocked_op, from_blocked_op, blocked_conv, blocked_max_pool]
