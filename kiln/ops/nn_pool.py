"""Pooling ops: MaxPool, AveragePool, LpPool, their global forms, MaxUnpool, MaxRoiPool, RoiAlign.

Windows come from nn_window (strided views), so no reference loops over output pixels.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import TensorType
from .nn_window import (compute_dtype, infer_window_shape, resolve, spatial_attrs,
                        valid_counts, windows)
from .registry import REQUIRED, op

POOL_ATTRS = dict(auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=REQUIRED,
                  pads=None, strides=None)


def pool_window(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    k = X.ndim - 2
    kernel, strides, dilations = spatial_attrs(k, kernel_shape, strides, dilations)
    return resolve(X.shape[2:], kernel, strides, dilations, pads, auto_pad, bool(ceil_mode))


def infer_pool(*out_dtypes):
    """Pooled shape for every output; dtypes: input 0's, or the given ones per output."""
    def rule(ctx):
        a = ctx.attrs
        shape = ctx.shape(0)
        c = shape[1] if shape is not None and len(shape) > 1 else None
        out = infer_window_shape(ctx, c, a["kernel_shape"], a["strides"], a["dilations"],
                                 a["pads"], a["auto_pad"], bool(a.get("ceil_mode", 0)))
        types = [ctx.dtype(0)] + list(out_dtypes)
        return [TensorType(types[i] if i < len(types) else ctx.dtype(0), out)
                for i in range(ctx.n_outputs)]
    return rule


def lowest(dtype):
    dtype = np.dtype(dtype)
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


# --- MaxPool -------------------------------------------------------------------------------
def argmax_indices(view, X, win, storage_order):
    """Flat indices into X (with batch and channel offsets) of each window's maximum."""
    n, c = X.shape[:2]
    k = len(win.kernel)
    spatial = X.shape[2:]
    flat = view.reshape(view.shape[:2 + k] + (-1,))
    local = np.unravel_index(flat.argmax(axis=-1), win.kernel)
    coords = []
    for i in range(k):
        shape = [1] * (2 + k)
        shape[2 + i] = win.out[i]
        start = (np.arange(win.out[i]) * win.strides[i] - win.begin[i]).reshape(shape)
        coords.append(start + local[i] * win.dilations[i])
    if storage_order == 1:
        spatial_index = np.ravel_multi_index(coords[::-1], spatial[::-1], mode="clip")
    else:
        spatial_index = np.ravel_multi_index(coords, spatial, mode="clip")
    nc = np.arange(n * c, dtype=np.int64).reshape((n, c) + (1,) * k)
    return (nc * int(np.prod(spatial, dtype=np.int64)) + spatial_index).astype(np.int64)


@op("MaxPool", inputs=["X"], outputs=["Y", "Indices?"],
    attrs=dict(POOL_ATTRS, storage_order=0), infer=infer_pool(dtypes.i64))
def max_pool(X, *, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides,
             n_outputs):
    """Max over sliding windows; the optional Indices output gives each max's flat position."""
    win = pool_window(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    view = windows(X, win, lowest(X.dtype))
    k = len(win.kernel)
    y = view.max(axis=tuple(range(-k, 0))) if view.size else np.zeros(view.shape[:2 + k], X.dtype)
    if n_outputs < 2:
        return y
    return y, argmax_indices(view, X, win, storage_order)


# --- AveragePool and LpPool ----------------------------------------------------------------
@op("AveragePool", inputs=["X"], attrs=dict(POOL_ATTRS, count_include_pad=0),
    infer=infer_pool())
def average_pool(X, *, auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads,
                 strides):
    """Mean over sliding windows; padding counts in the divisor only with count_include_pad."""
    win = pool_window(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    dt = compute_dtype(X)
    k = len(win.kernel)
    total = windows(X.astype(dt, copy=False), win, 0).sum(axis=tuple(range(-k, 0)))
    counts = valid_counts(X.shape[2:], win, bool(count_include_pad))
    return (total / counts).astype(X.dtype, copy=False)


def upgrade_lp_pool(node):
    """Opset 1 gave p as a float."""
    if "p" in node.attrs:
        node.attrs["p"] = int(round(node.attrs["p"]))


@op("LpPool", inputs=["X"], attrs=dict(POOL_ATTRS, p=2), infer=infer_pool(),
    upgrade=upgrade_lp_pool)
def lp_pool(X, *, auto_pad, ceil_mode, dilations, kernel_shape, p, pads, strides):
    """p-norm over sliding windows: (sum |x|^p)^(1/p), padding reads 0."""
    win = pool_window(X, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    dt = compute_dtype(X)
    k = len(win.kernel)
    powered = np.abs(X.astype(dt, copy=False)) ** p
    total = windows(powered, win, 0).sum(axis=tuple(range(-k, 0)))
    return (total ** (1.0 / p)).astype(X.dtype, copy=False)


# --- global pools --------------------------------------------------------------------------
def infer_global(ctx):
    shape = ctx.shape(0)
    if shape is None:
        return [TensorType(ctx.dtype(0), None)]
    return [TensorType(ctx.dtype(0), tuple(shape[:2]) + (1,) * (len(shape) - 2))]


def spatial_axes(X):
    return tuple(range(2, X.ndim))


@op("GlobalAveragePool", inputs=["X"], infer=infer_global)
def global_average_pool(X):
    """Mean over all spatial dims, kept as size-1 dims."""
    y = X.astype(compute_dtype(X), copy=False).mean(axis=spatial_axes(X), keepdims=True)
    return y.astype(X.dtype, copy=False)


@op("GlobalMaxPool", inputs=["X"], infer=infer_global)
def global_max_pool(X):
    """Max over all spatial dims, kept as size-1 dims."""
    return X.max(axis=spatial_axes(X), keepdims=True)


@op("GlobalLpPool", inputs=["X"], attrs=dict(p=2), infer=infer_global, upgrade=upgrade_lp_pool)
def global_lp_pool(X, *, p):
    """p-norm over all spatial dims, kept as size-1 dims."""
    x = np.abs(X.astype(compute_dtype(X), copy=False))
    y = (x ** p).sum(axis=spatial_axes(X), keepdims=True) ** (1.0 / p)
    return y.astype(X.dtype, copy=False)


# --- MaxUnpool -----------------------------------------------------------------------------
def unpooled_shape(x_shape, kernel_shape, strides, pads):
    k = len(x_shape) - 2
    strides = strides or [1] * k
    pads = pads or [0] * (2 * k)
    return tuple(x_shape[:2]) + tuple((x_shape[2 + i] - 1) * strides[i] + kernel_shape[i]
                                      - pads[i] - pads[i + k] for i in range(k))


def infer_max_unpool(ctx):
    a = ctx.attrs
    shape = ctx.shape(0)
    if ctx.has(2):
        given = ctx.const(2)
        if given is not None:
            return [TensorType(ctx.dtype(0), tuple(int(d) for d in given))]
        n = ctx.shape(2)
        rank = n[0] if n is not None and isinstance(n[0], int) else None
        return [TensorType(ctx.dtype(0), None if rank is None else (None,) * rank)]
    if shape is None:
        return [TensorType(ctx.dtype(0), None)]
    if not all(isinstance(d, int) for d in shape[2:]):
        return [TensorType(ctx.dtype(0), tuple(shape[:2]) + (None,) * (len(shape) - 2))]
    return [TensorType(ctx.dtype(0), unpooled_shape(shape, a["kernel_shape"], a["strides"],
                                                    a["pads"]))]


@op("MaxUnpool", inputs=["X", "I", "output_shape?"],
    attrs=dict(kernel_shape=REQUIRED, pads=None, strides=None), infer=infer_max_unpool)
def max_unpool(X, I, output_shape=None, *, kernel_shape, pads, strides):
    """Inverse of MaxPool: scatter values to the positions given by MaxPool's Indices."""
    pooled_from = unpooled_shape(X.shape, kernel_shape, strides, pads)
    shape = tuple(int(d) for d in output_shape) if output_shape is not None else pooled_from
    coords = np.unravel_index(I.astype(np.int64).ravel(), pooled_from)
    flat = np.ravel_multi_index(coords, shape)
    y = np.zeros(int(np.prod(shape, dtype=np.int64)), X.dtype)
    y[flat] = X.ravel()
    return y.reshape(shape)


# --- region-of-interest pooling ------------------------------------------------------------
def infer_roi(out_h, out_w):
    def rule(ctx):
        x, rois = ctx.shape(0), ctx.shape(1)
        r = rois[0] if rois is not None else None
        c = x[1] if x is not None and len(x) > 1 else None
        h, w = out_h(ctx.attrs), out_w(ctx.attrs)
        return [TensorType(ctx.dtype(0), (r, c, h, w))]
    return rule


@op("MaxRoiPool", inputs=["X", "rois"], attrs=dict(pooled_shape=REQUIRED, spatial_scale=1.0),
    infer=infer_roi(lambda a: a["pooled_shape"][0], lambda a: a["pooled_shape"][1]))
def max_roi_pool(X, rois, *, pooled_shape, spatial_scale):
    """Max over a pooled_shape grid of bins in each region (batch, x1, y1, x2, y2)."""
    ph, pw = pooled_shape
    h, w = X.shape[2:]
    y = np.zeros((len(rois), X.shape[1], ph, pw), X.dtype)
    for r, roi in enumerate(rois):
        b = int(roi[0])
        x1, y1, x2, y2 = (int(np.round(v * spatial_scale)) for v in roi[1:5])
        bin_h = max(y2 - y1 + 1, 1) / ph
        bin_w = max(x2 - x1 + 1, 1) / pw
        for i in range(ph):
            hs = min(max(int(np.floor(i * bin_h)) + y1, 0), h)
            he = min(max(int(np.ceil((i + 1) * bin_h)) + y1, 0), h)
            for j in range(pw):
                ws = min(max(int(np.floor(j * bin_w)) + x1, 0), w)
                we = min(max(int(np.ceil((j + 1) * bin_w)) + x1, 0), w)
                if he > hs and we > ws:
                    y[r, :, i, j] = X[b, :, hs:he, ws:we].max(axis=(1, 2))
    return y


def upgrade_roi_align(node):
    """Opset 10 sampled without the half-pixel shift (today's "output_half_pixel")."""
    if node.opset < 16:
        node.attrs.setdefault("coordinate_transformation_mode", "output_half_pixel")


def roi_taps(start, size, bins: int, grid: int, extent: int):
    """Bilinear taps along one axis of one region: low index, high index, low weight, high
    weight and whether the sample is inside the image, each of shape (bins, grid). Positions
    are computed in start's float type, in the order ONNX Runtime uses, so that samples landing
    exactly on the image border agree."""
    dt = type(start)
    bin_size = size / dt(bins)
    offsets = (np.arange(grid, dtype=dt) + dt(0.5)) * bin_size / dt(grid)
    pos = start + np.arange(bins, dtype=dt)[:, None] * bin_size + offsets[None, :]
    inside = (pos >= -1.0) & (pos <= extent)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    at_edge = low >= extent - 1
    low = np.where(at_edge, extent - 1, low)
    high = np.where(at_edge, extent - 1, low + 1)
    w_high = np.where(at_edge, 0.0, pos - low).astype(dt)
    return low, high, dt(1) - w_high, w_high, inside


def roi_align_one(img, box, out_h, out_w, sampling_ratio, mode, aligned):
    """RoiAlign of one region box = (x1, y1, x2, y2) (scaled) over img (C, H, W)."""
    h, w = img.shape[1:]
    shift = box.dtype.type(0.5 if aligned else 0.0)
    x1, y1 = box[0] - shift, box[1] - shift
    rw, rh = box[2] - shift - x1, box[3] - shift - y1
    if not aligned:
        rw, rh = max(rw, rw.dtype.type(1)), max(rh, rh.dtype.type(1))
    gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rh / out_h))
    gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rw / out_w))
    ylo, yhi, wylo, wyhi, yin = roi_taps(y1, rh, out_h, gh, h)
    xlo, xhi, wxlo, wxhi, xin = roi_taps(x1, rw, out_w, gw, w)

    def term(yi, wy, xi, wx):        # (C, out_h, gh, out_w, gw)
        vals = img[:, yi[:, :, None, None], xi[None, None, :, :]]
        return vals * (wy[:, :, None, None] * wx[None, None, :, :])

    terms = [term(ylo, wylo, xlo, wxlo), term(ylo, wylo, xhi, wxhi),
             term(yhi, wyhi, xlo, wxlo), term(yhi, wyhi, xhi, wxhi)]
    inside = yin[:, :, None, None] & xin[None, None, :, :]
    if mode == "max":
        return np.where(inside, np.maximum.reduce(terms), 0.0).max(axis=(2, 4))
    return np.where(inside, sum(terms), 0.0).sum(axis=(2, 4)) / max(gh * gw, 1)


@op("RoiAlign", inputs=["X", "rois", "batch_indices"],
    attrs=dict(coordinate_transformation_mode="half_pixel", mode="avg", output_height=1,
               output_width=1, sampling_ratio=0, spatial_scale=1.0),
    infer=infer_roi(lambda a: a["output_height"], lambda a: a["output_width"]),
    upgrade=upgrade_roi_align)
def roi_align(X, rois, batch_indices, *, coordinate_transformation_mode, mode, output_height,
              output_width, sampling_ratio, spatial_scale):
    """Bilinearly sampled average (or max) over a grid of bins in each region (x1, y1, x2, y2)."""
    dt = compute_dtype(X, rois)
    img = X.astype(dt, copy=False)
    aligned = coordinate_transformation_mode == "half_pixel"
    y = np.zeros((len(rois), X.shape[1], output_height, output_width), dt)
    for r in range(len(rois)):
        box = rois[r].astype(dt) * dt(spatial_scale)
        y[r] = roi_align_one(img[int(batch_indices[r])], box, output_height, output_width,
                             sampling_ratio, mode, aligned)
    return y.astype(X.dtype, copy=False)


OPS = [max_pool, average_pool, lp_pool, global_average_pool, global_max_pool, global_lp_pool,
       max_unpool, max_roi_pool, roi_align]
