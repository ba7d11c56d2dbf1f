"""Resize and Upsample: nearest, N-linear and N-cubic resampling.

Resampling is separable: each resized axis gets, for every output position, a few input indices
and their weights (`AxisPlan`); the axes are then applied one after another. Nearest mode gathers
(exact for every dtype); linear and cubic accumulate in float64 and cast back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedError
from .infer import norm_axis, tensor_of
from .registry import op

COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


# --- output sizes and scales ---------------------------------------------------------------
def present(a):
    """An optional operand as a float64 vector, or None when absent or empty."""
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return a if a.size else None


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def output_geometry(in_shape, scales, sizes, axes, policy):
    """(out_shape, scale per dim). scales/sizes cover `axes`; other dims keep size and scale 1."""
    out, scale = list(in_shape), [1.0] * len(in_shape)
    if scales is not None:
        for a, s in zip(axes, scales):
            scale[a] = float(s)
            out[a] = int(math.floor(in_shape[a] * float(s)))
        return out, scale
    if sizes is None:
        raise UnsupportedError("Resize needs `scales` or `sizes`")
    sizes = [int(s) for s in sizes]
    if policy == "stretch":
        for a, n in zip(axes, sizes):
            out[a], scale[a] = n, n / in_shape[a]
        return out, scale
    ratios = [n / in_shape[a] for a, n in zip(axes, sizes)]
    if policy == "not_larger":
        common = min(ratios)
    elif policy == "not_smaller":
        common = max(ratios)
    else:
        raise UnsupportedError(f"Resize keep_aspect_ratio_policy {policy!r}")
    for a in axes:
        out[a], scale[a] = round_half_up(common * in_shape[a]), common
    return out, scale


# --- coordinates ---------------------------------------------------------------------------
def source_coords(n_out: int, n_in: int, scale: float, mode: str, roi=(0.0, 1.0)):
    """For each output index, its (fractional) coordinate in the input. The resized length in
    the formulas is n_in * scale, fractional when the output size came from a scale."""
    x = np.arange(n_out, dtype=np.float64)
    resized = n_out if math.isclose(n_in * scale, n_out) else n_in * scale
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = n_out / (n_in * scale)
        offset = n_in / 2 * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if resized > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return x * (n_in - 1) / (resized - 1) if resized > 1 else np.zeros(n_out)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if resized > 1:
            return start * (n_in - 1) + x * (end - start) * (n_in - 1) / (resized - 1)
        return np.full(n_out, 0.5 * (start + end) * (n_in - 1))
    raise UnsupportedError(f"Resize coordinate_transformation_mode {mode!r} "
                           f"(known: {', '.join(COORD_MODES)})")


def nearest_index(x, rounding: str):
    if rounding == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if rounding == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if rounding == "floor":
        return np.floor(x)
    if rounding == "ceil":
        return np.ceil(x)
    raise UnsupportedError(f"Resize nearest_mode {rounding!r} (known: {', '.join(NEAREST_MODES)})")


# --- interpolation kernels -----------------------------------------------------------------
def linear_kernel(t):
    return np.maximum(0.0, 1.0 - np.abs(t))


def cubic_kernel(a: float):
    def kernel(t):
        t = np.abs(t)
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return np.where(t <= 1, near, np.where(t < 2, far, 0.0))
    return kernel


@dataclass
class AxisPlan:
    index: np.ndarray            # (n_out, K) input indices, already inside [0, n_in)
    weight: np.ndarray | None    # (n_out, K) weights; None for nearest (K == 1, plain gather)
    outside: np.ndarray | None   # (n_out,) bool: gets extrapolation_value (tf_crop_and_resize)


def nearest_plan(x, n_in: int, rounding: str) -> AxisPlan:
    idx = np.clip(nearest_index(x, rounding), 0, n_in - 1).astype(np.int64)
    return AxisPlan(idx[:, None], None, None)


def filter_plan(x, n_in: int, kernel, radius: int, scale: float, antialias: bool,
                exclude_outside: bool, clamp_coords: bool) -> AxisPlan:
    """Weights kernel((j - x) * s) over the taps j near x, normalized to sum 1. With antialias
    and downscaling the kernel is stretched by 1/scale (s = scale). Taps outside the input read
    the edge, or are dropped with exclude_outside."""
    stretch = antialias and scale < 1
    s = scale if stretch else 1.0
    if clamp_coords and not stretch:
        x = np.clip(x, 0, n_in - 1)
    support = radius / s
    first = np.floor(x - support) + 1 if stretch else np.floor(x) - radius + 1
    taps = int(math.ceil(2 * support)) + (1 if stretch else 0)
    j = first[:, None] + np.arange(taps)[None, :]
    w = kernel((j - x[:, None]) * s)
    if exclude_outside:
        w = np.where((j >= 0) & (j <= n_in - 1), w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total == 0, 1.0, total)
    return AxisPlan(np.clip(j, 0, n_in - 1).astype(np.int64), w, None)


def axis_plan(n_in, n_out, scale, roi, attrs) -> AxisPlan | None:
    """How one axis is resampled, or None when it is left as it is."""
    coord = attrs["coordinate_transformation_mode"]
    x = source_coords(n_out, n_in, scale, coord, roi)
    if n_out == n_in and np.array_equal(x, np.arange(n_in)):
        return None
    mode = attrs["mode"]
    if mode == "nearest":
        plan = nearest_plan(x, n_in, attrs["nearest_mode"])
    elif mode == "linear":
        plan = filter_plan(x, n_in, linear_kernel, 1, scale, bool(attrs["antialias"]),
                           False, clamp_coords=True)
    elif mode == "cubic":
        plan = filter_plan(x, n_in, cubic_kernel(attrs["cubic_coeff_a"]), 2, scale,
                           bool(attrs["antialias"]), bool(attrs["exclude_outside"]),
                           clamp_coords=False)
    else:
        raise UnsupportedError(f"Resize mode {mode!r} (known: nearest, linear, cubic)")
    if coord == "tf_crop_and_resize":
        plan.outside = (x < 0) | (x > n_in - 1)
    return plan


def apply_plan(y, axis: int, plan: AxisPlan):
    if plan.weight is None:
        return np.take(y, plan.index[:, 0], axis=axis)
    shape = [1] * y.ndim
    shape[axis] = -1
    out = 0.0
    for k in range(plan.index.shape[1]):
        out = out + np.take(y, plan.index[:, k], axis=axis) * plan.weight[:, k].reshape(shape)
    return out


def cast_back(y, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(dtype)
    return np.asarray(y).astype(dtype)


def resample(x, out_shape, scale, rois, attrs):
    """Resample x to out_shape, axis by axis."""
    y = x if attrs["mode"] == "nearest" else x.astype(np.float64)
    crop_mode = attrs["coordinate_transformation_mode"] == "tf_crop_and_resize"
    outside = np.zeros(out_shape, dtype=bool) if crop_mode else None
    for a in range(x.ndim):
        plan = axis_plan(x.shape[a], out_shape[a], scale[a], rois[a], attrs)
        if plan is None:
            continue
        y = apply_plan(y, a, plan)
        if outside is not None and plan.outside is not None:
            shape = [1] * x.ndim
            shape[a] = -1
            outside = outside | plan.outside.reshape(shape)
    y = cast_back(y, x.dtype)
    if outside is not None and outside.any():
        y = np.where(outside, np.asarray(attrs["extrapolation_value"]).astype(x.dtype), y)
    return y


# --- Resize --------------------------------------------------------------------------------
RESIZE_ATTRS = dict(mode="nearest", coordinate_transformation_mode="half_pixel",
                    nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=0,
                    extrapolation_value=0.0, antialias=0, axes=None,
                    keep_aspect_ratio_policy="stretch")


def resize_axes(rank: int, axes):
    return list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]


def per_dim_rois(rank: int, axes, roi):
    rois = [(0.0, 1.0)] * rank
    if roi is not None:
        n = len(axes)
        for k, a in enumerate(axes):
            rois[a] = (float(roi[k]), float(roi[k + n]))
    return rois


def upgrade_resize(node):
    """Resize-10 took (X, scales) and sampled asymmetrically (nearest: floor)."""
    if node.opset >= 11:
        return
    node.inputs[1:] = [None] + node.inputs[1:2]
    node.attrs["coordinate_transformation_mode"] = "asymmetric"
    if node.attrs.get("mode", "nearest") == "nearest":
        node.attrs["nearest_mode"] = "floor"


def infer_resize(ctx):
    s = ctx.shape(0)
    if s is None:
        return [tensor_of(ctx.dtype(0), None)]
    axes = [norm_axis(a, len(s), ctx) for a in resize_axes(len(s), ctx.attrs["axes"])]
    scales = present(ctx.const(2)) if ctx.has(2) else None
    sizes = present(ctx.const(3)) if ctx.has(3) else None
    out = [None if i in axes else d for i, d in enumerate(s)]
    if scales is not None:
        for a, k in zip(axes, scales):
            d = s[a]
            out[a] = int(math.floor(d * k)) if isinstance(d, int) else (d if k == 1 else None)
    elif sizes is not None:
        if ctx.attrs["keep_aspect_ratio_policy"] == "stretch":
            for a, n in zip(axes, sizes):
                out[a] = int(n)
        elif all(isinstance(s[a], int) for a in axes):
            out = output_geometry(list(s), None, sizes, axes, ctx.attrs["keep_aspect_ratio_policy"])[0]
    return [tensor_of(ctx.dtype(0), out)]


@op("Resize", inputs=["X", "roi?", "scales?", "sizes?"], outputs=["Y"], attrs=RESIZE_ATTRS,
    infer=infer_resize, upgrade=upgrade_resize)
def resize(x, roi=None, scales=None, sizes=None, **attrs):
    """Resize(X, roi, scales, sizes): resample X (nearest, linear or cubic) to new sizes."""
    axes = resize_axes(x.ndim, attrs["axes"])
    out_shape, scale = output_geometry(list(x.shape), present(scales), present(sizes), axes,
                                       attrs["keep_aspect_ratio_policy"])
    return resample(x, out_shape, scale, per_dim_rois(x.ndim, axes, present(roi)), attrs)


# --- Upsample (deprecated since opset 10) ----------------------------------------------------
def upgrade_upsample(node):
    """Upsample-1 took height_scale/width_scale (NCHW) and called linear 'bilinear';
    Upsample-7 took `scales` as an attribute."""
    if "height_scale" in node.attrs or "width_scale" in node.attrs:
        h = node.attrs.pop("height_scale", 1.0)
        w = node.attrs.pop("width_scale", 1.0)
        node.attrs["scales"] = [1.0, 1.0, h, w]
    if node.attrs.get("mode") == "bilinear":
        node.attrs["mode"] = "linear"
    node.move_attr_to_input("scales", 1, np.float32)


def infer_upsample(ctx):
    s, scales = ctx.shape(0), present(ctx.const(1))
    if s is None or scales is None:
        return [tensor_of(ctx.dtype(0), None if s is None else [None] * len(s))]
    return [tensor_of(ctx.dtype(0), [int(math.floor(d * k)) if isinstance(d, int) else
                                     (d if k == 1 else None) for d, k in zip(s, scales)])]


@op("Upsample", inputs=["X", "scales"], outputs=["Y"], attrs=dict(mode="nearest"),
    infer=infer_upsample, upgrade=upgrade_upsample)
def upsample(x, scales, *, mode):
    """Upsample(X, scales): nearest or linear resampling by `scales` (asymmetric coordinates)."""
    out_shape, scale = output_geometry(list(x.shape), present(scales), None,
                                       list(range(x.ndim)), "stretch")
    attrs = dict(RESIZE_ATTRS, mode=mode, coordinate_transformation_mode="asymmetric",
                 nearest_mode="floor")
    return resample(x, out_shape, scale, [(0.0, 1.0)] * x.ndim, attrs)


OPS = [resize, upsample]
