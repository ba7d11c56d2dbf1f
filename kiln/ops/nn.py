"""Neural-network ops: convolutions here; pooling, normalization, sampling and losses in the
nn_*.py modules, whose ops this module's OPS list gathers so the registry sees them as one family.
"""
from __future__ import annotations

import itertools

import numpy as np

from . import nn_loss, nn_norm, nn_pool, nn_sample
from .infer import TensorType
from .nn_window import (Window, channel_bias, compute_dtype, conv_nd, infer_window_shape,
                        resolve, spatial_attrs)
from .registry import op

CONV_ATTRS = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                  strides=None)


# --- Conv ----------------------------------------------------------------------------------
def infer_conv(ctx):
    w = ctx.shape(1)
    m = w[0] if w is not None else None
    kernel = ctx.attrs["kernel_shape"] or (tuple(w[2:]) if w is not None else None)
    if kernel is not None and not all(isinstance(k, int) for k in kernel):
        kernel = None
    a = ctx.attrs
    shape = infer_window_shape(ctx, m, kernel, a["strides"], a["dilations"], a["pads"],
                               a["auto_pad"])
    return [TensorType(ctx.dtype(0), shape)]


def conv_window(x_shape, w_shape, kernel_shape, strides, dilations, pads, auto_pad) -> Window:
    k = len(x_shape) - 2
    kernel, strides, dilations = spatial_attrs(k, tuple(w_shape[2:]), strides, dilations)
    if kernel_shape and tuple(kernel_shape) != kernel:
        raise ValueError(f"kernel_shape {list(kernel_shape)} does not match weights {w_shape}")
    return resolve(x_shape[2:], kernel, strides, dilations, pads, auto_pad)


@op("Conv", inputs=["X", "W", "B?"], attrs=CONV_ATTRS, infer=infer_conv)
def conv(X, W, B=None, *, auto_pad, dilations, group, kernel_shape, pads, strides):
    """N-d convolution (cross-correlation) with groups, dilations and padding (auto_pad)."""
    win = conv_window(X.shape, W.shape, kernel_shape, strides, dilations, pads, auto_pad)
    dt = compute_dtype(X, W, B)
    y = conv_nd(X.astype(dt, copy=False), W.astype(dt, copy=False), win, group)
    if B is not None:
        y += channel_bias(B.astype(dt, copy=False), y.ndim)
    return y.astype(X.dtype, copy=False)


# --- ConvTranspose -------------------------------------------------------------------------
def transpose_pads(in_sizes, kernel, strides, dilations, output_padding, pads, output_shape,
                   auto_pad):
    """(begin pads, end pads, output sizes) of a transposed convolution."""
    k = len(in_sizes)
    full = [s * (i - 1) + op_ + (kk - 1) * d + 1 for i, kk, s, d, op_
            in zip(in_sizes, kernel, strides, dilations, output_padding)]
    if output_shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape:
            out = list(output_shape[-k:])
        else:
            out = [i * s for i, s in zip(in_sizes, strides)]
        begin, end = [], []
        for f, o in zip(full, out):
            total = f - o
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        return begin, end, out
    if auto_pad == "VALID" or not pads:
        return [0] * k, [0] * k, full
    begin, end = list(pads[:k]), list(pads[k:])
    return begin, end, [f - b - e for f, b, e in zip(full, begin, end)]


def infer_conv_transpose(ctx):
    a = ctx.attrs
    x, w = ctx.shape(0), ctx.shape(1)
    m = w[1] * a["group"] if w is not None and isinstance(w[1], int) else None
    if x is None:
        return [TensorType(ctx.dtype(0), None)]
    k = len(x) - 2
    kernel = a["kernel_shape"] or (tuple(w[2:]) if w is not None else None)
    spatial = x[2:]
    if kernel is None or not all(isinstance(d, int) for d in tuple(spatial) + tuple(kernel)):
        if a["output_shape"]:
            return [TensorType(ctx.dtype(0), (x[0], m) + tuple(a["output_shape"][-k:]))]
        return [TensorType(ctx.dtype(0), (x[0], m) + (None,) * k)]
    kernel, strides, dilations = spatial_attrs(k, kernel, a["strides"], a["dilations"])
    _, _, out = transpose_pads(spatial, kernel, strides, dilations,
                               a["output_padding"] or [0] * k, a["pads"], a["output_shape"],
                               a["auto_pad"])
    return [TensorType(ctx.dtype(0), (x[0], m) + tuple(out))]


def scatter_windows(cols, in_sizes, kernel, strides, dilations, begin, out):
    """Sum kernel-offset contributions cols (N, M, K..., I...) into an (N, M, O...) output whose
    position o holds full coordinate o + begin, full coordinate = i * stride + k * dilation."""
    full = [(i - 1) * s + (kk - 1) * d + 1 for i, kk, s, d in zip(in_sizes, kernel, strides,
                                                                    dilations)]
    lo = [min(0, b) for b in begin]
    hi = [max(f, b + o) for f, b, o in zip(full, begin, out)]
    buf = np.zeros(cols.shape[:2] + tuple(h - low for h, low in zip(hi, lo)), cols.dtype)
    for offs in np.ndindex(*kernel):
        dst = tuple(slice(o * d - low, o * d - low + (i - 1) * s + 1, s)
                    for o, d, low, i, s in zip(offs, dilations, lo, in_sizes, strides))
        buf[(slice(None), slice(None)) + dst] += cols[(slice(None), slice(None)) + offs]
    crop = tuple(slice(b - low, b - low + o) for b, low, o in zip(begin, lo, out))
    return buf[(slice(None), slice(None)) + crop]


@op("ConvTranspose", inputs=["X", "W", "B?"],
    attrs=dict(CONV_ATTRS, output_padding=None, output_shape=None), infer=infer_conv_transpose)
def conv_transpose(X, W, B=None, *, auto_pad, dilations, group, kernel_shape, output_padding,
                   output_shape, pads, strides):
    """Transposed convolution (the gradient of Conv) with groups, output_padding, output_shape."""
    n, c = X.shape[:2]
    k = X.ndim - 2
    kernel, strides, dilations = spatial_attrs(k, W.shape[2:], strides, dilations)
    output_padding = list(output_padding) if output_padding else [0] * k
    in_sizes = X.shape[2:]
    begin, _, out = transpose_pads(in_sizes, kernel, strides, dilations, output_padding, pads,
                                   output_shape, auto_pad)
    dt = compute_dtype(X, W, B)
    cg, mg = c // group, W.shape[1]
    w = W.astype(dt, copy=False).reshape(group, cg, -1).transpose(0, 2, 1)   # (G, Mg*K, Cg)
    x = X.astype(dt, copy=False).reshape(n, group, cg, -1)
    cols = np.matmul(w[None], x).reshape((n, group * mg) + tuple(kernel) + tuple(in_sizes))
    y = scatter_windows(cols, in_sizes, kernel, strides, dilations, begin, out)
    if B is not None:
        y = y + channel_bias(B.astype(dt, copy=False), y.ndim)
    return np.ascontiguousarray(y).astype(X.dtype, copy=False)


# --- DeformConv ----------------------------------------------------------------------------
def sample_linear_zero(img, positions):
    """Multilinear samples of img (N, G, C, D1..Dk) at float positions, one (N, G, P...) array
    per spatial dim; taps outside the image read 0. Returns (N, G, C, P...)."""
    n, g = img.shape[:2]
    spatial = img.shape[3:]
    lead = positions[0].ndim - 2
    ni = np.arange(n).reshape((n, 1) + (1,) * lead)
    gi = np.arange(g).reshape((1, g) + (1,) * lead)
    floors = [np.floor(p) for p in positions]
    out = 0
    for corner in itertools.product((0, 1), repeat=len(spatial)):
        weight, inside, index = 1.0, True, []
        for p, f, bit, size in zip(positions, floors, corner, spatial):
            i = f + bit
            weight = weight * (1 - np.abs(p - i))
            inside = inside & (i >= 0) & (i < size)
            index.append(np.clip(i, 0, size - 1).astype(np.int64))
        vals = img[(ni, gi, slice(None)) + tuple(index)]          # (N, G, P..., C)
        out = out + vals * (weight * inside)[..., None]
    return np.moveaxis(out, -1, 2)


def infer_deform_conv(ctx):
    w = ctx.shape(1)
    kernel = ctx.attrs["kernel_shape"] or (tuple(w[2:]) if w is not None else None)
    if kernel is not None and not all(isinstance(k, int) for k in kernel):
        kernel = None
    a = ctx.attrs
    shape = infer_window_shape(ctx, w[0] if w is not None else None, kernel, a["strides"],
                               a["dilations"], a["pads"], "NOTSET")
    return [TensorType(ctx.dtype(0), shape)]


@op("DeformConv", inputs=["X", "W", "offset", "B?", "mask?"],
    attrs=dict(dilations=None, group=1, kernel_shape=None, offset_group=1, pads=None,
               strides=None), infer=infer_deform_conv)
def deform_conv(X, W, offset, B=None, mask=None, *, dilations, group, kernel_shape,
                offset_group, pads, strides):
    """Deformable N-d convolution: kernel taps move by learned offsets, optionally masked."""
    n, c = X.shape[:2]
    m, cg = W.shape[:2]
    k = X.ndim - 2
    win = conv_window(X.shape, W.shape, kernel_shape, strides, dilations, pads, "NOTSET")
    taps = int(np.prod(win.kernel))
    og = offset_group
    dt = compute_dtype(X, W, offset, B, mask)
    off = offset.astype(dt, copy=False).reshape((n, og, taps, k) + win.out)
    kernel_pos = np.indices(win.kernel).reshape(k, taps)            # (k, taps)
    positions = []
    for i in range(k):
        out_shape = [1] * (1 + k)
        out_shape[1 + i] = win.out[i]
        start = (np.arange(win.out[i]) * win.strides[i] - win.begin[i]).reshape(out_shape)
        tap = (kernel_pos[i] * win.dilations[i]).reshape((taps,) + (1,) * k)
        positions.append(start + tap + off[:, :, :, i])             # (N, OG, taps, O...)
    img = X.astype(dt, copy=False).reshape((n, og, c // og) + X.shape[2:])
    vals = sample_linear_zero(img, positions)                       # (N, OG, C/OG, taps, O...)
    if mask is not None:
        vals = vals * mask.astype(dt, copy=False).reshape((n, og, 1, taps) + win.out)
    out_size = int(np.prod(win.out))
    cols = vals.reshape(n, group, cg * taps, out_size)
    y = np.matmul(W.astype(dt, copy=False).reshape(group, m // group, -1)[None], cols)
    y = y.reshape((n, m) + win.out)
    if B is not None:
        y = y + channel_bias(B.astype(dt, copy=False), y.ndim)
    return y.astype(X.dtype, copy=False)


OPS = [conv, conv_transpose, deform_conv] + nn_pool.OPS + nn_norm.OPS + nn_sample.OPS + nn_loss.OPS
