"""Quantization ops: QuantizeLinear, DequantizeLinear (per-tensor, per-axis and blocked; integer,
float8, float6 and float4 types), DynamicQuantizeLinear, QLinearMatMul, QLinearConv, ConvInteger.

Integer rounding is half to even; integer accumulations are exact.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from ..ir import dtypes
from .infer import TensorType, norm_axis
from .linalg import exact_int_matmul, infer_matmul
from .nn_window import channel_bias, conv_nd, infer_window_shape, resolve, spatial_attrs
from .registry import op

# Float types whose casts can overflow to inf/NaN: saturate=1 clips them to the largest finite.
SATURABLE = {dtypes.BY_NAME[n].numpy for n in ("f8e4m3fn", "f8e4m3fnuz", "f8e5m2", "f8e5m2fnuz")}
# Float types with no inf/NaN encoding: always clipped.
ALWAYS_CLIPPED = {dtypes.BY_NAME[n].numpy for n in ("f4e2m1", "f6e2m3", "f6e3m2")}


SMALL_INTS = {np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.int2,
                                     ml_dtypes.uint2)}


def int_range(dt: np.dtype):
    """(lowest, highest) of an integer numpy dtype, 2- and 4-bit ml_dtypes included."""
    info = ml_dtypes.iinfo(dt)
    return int(info.min), int(info.max)


def is_int_dtype(dt: np.dtype) -> bool:
    return dt.kind in "iu" or dt in SMALL_INTS


def expand_param(p, x_shape, axis: int, block_size: int):
    """A scale or zero point reshaped to broadcast against x: per-tensor, per-axis or blocked."""
    if p.size == 1 or len(x_shape) == 0:
        return p.reshape(())
    axis = norm_axis(axis, len(x_shape))
    if block_size > 0:
        p = np.repeat(p, block_size, axis=axis)
        return np.take(p, np.arange(x_shape[axis]), axis=axis)
    if p.ndim == 1:
        shape = [1] * len(x_shape)
        shape[axis] = p.shape[0]
        return p.reshape(shape)
    return p


def saturate_cast(q: np.ndarray, out: np.dtype, saturate: bool) -> np.ndarray:
    """Cast float values (already scaled) to the quantized type out."""
    if is_int_dtype(out):
        lo, hi = int_range(out)
        return np.clip(np.rint(q), lo, hi).astype(np.int64).astype(out)
    if out in ALWAYS_CLIPPED or (saturate and out in SATURABLE):
        top = float(ml_dtypes.finfo(out).max)
        q = np.clip(q, -top, top)
    return q.astype(out)


def division_dtype(precision: int, scale: np.ndarray):
    """The dtype x / scale is rounded to: `precision` if set, else the scale's type."""
    dt = np.dtype(dtypes.from_onnx(precision).np_type) if precision else scale.dtype
    return dt if dt in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)) else None


# --- QuantizeLinear / DequantizeLinear -----------------------------------------------------
def quantized_dtype(output_dtype: int, zero_point_dtype):
    if output_dtype:
        return dtypes.from_onnx(output_dtype)
    return zero_point_dtype if zero_point_dtype is not None else dtypes.u8


def infer_quantize(ctx):
    zp = ctx.dtype(2) if ctx.has(2) else None
    return [TensorType(quantized_dtype(ctx.attrs["output_dtype"], zp), ctx.shape(0))]


def quantize(x, y_scale, y_zero_point, axis=1, block_size=0, output_dtype=0, precision=0,
             saturate=1):
    """QuantizeLinear's computation."""
    zp_dtype = None if y_zero_point is None else dtypes.from_numpy(y_zero_point.dtype)
    out = quantized_dtype(output_dtype, zp_dtype).numpy
    dt = np.float64 if np.float64 in (x.dtype, y_scale.dtype) or x.dtype.kind in "iu" \
        else np.float32
    scale = expand_param(y_scale.astype(dt), x.shape, axis, block_size)
    q = x.astype(dt) / scale
    rounded_to = division_dtype(precision, y_scale)
    if rounded_to is not None:
        q = q.astype(rounded_to).astype(dt)
    if is_int_dtype(out):
        q = np.rint(q)
    if y_zero_point is not None:
        q = q + expand_param(y_zero_point.astype(dt), x.shape, axis, block_size)
    return saturate_cast(q, out, bool(saturate))


@op("QuantizeLinear", inputs=["x", "y_scale", "y_zero_point?"],
    attrs=dict(axis=1, block_size=0, output_dtype=0, precision=0, saturate=1),
    infer=infer_quantize)
def quantize_linear(x, y_scale, y_zero_point=None, *, axis, block_size, output_dtype, precision,
                    saturate):
    """y = saturate(round(x / y_scale) + y_zero_point), per tensor, per axis or per block."""
    return quantize(x, y_scale, y_zero_point, axis, block_size, output_dtype, precision, saturate)


def dequantized_dtype(output_dtype: int, scale_dtype):
    if output_dtype:
        return dtypes.from_onnx(output_dtype)
    if scale_dtype is None or scale_dtype.name == "f8e8m0":
        return dtypes.f32 if scale_dtype is not None else None
    return scale_dtype


def infer_dequantize(ctx):
    return [TensorType(dequantized_dtype(ctx.attrs["output_dtype"], ctx.dtype(1)), ctx.shape(0))]


def dequantize(x, x_scale, x_zero_point, axis=1, block_size=0, output_dtype=0):
    """DequantizeLinear's computation."""
    out = dequantized_dtype(output_dtype, dtypes.from_numpy(x_scale.dtype)).numpy
    dt = np.float64 if out == np.float64 else np.float32
    if is_int_dtype(x.dtype):
        centered = x.astype(np.int64)
        if x_zero_point is not None:
            centered = centered - expand_param(x_zero_point.astype(np.int64), x.shape, axis,
                                               block_size)
        centered = centered.astype(dt)
    else:
        centered = x.astype(dt)
        if x_zero_point is not None:
            centered = centered - expand_param(x_zero_point.astype(dt), x.shape, axis, block_size)
    y = centered * expand_param(x_scale.astype(dt), x.shape, axis, block_size)
    return y.astype(out)


@op("DequantizeLinear", inputs=["x", "x_scale", "x_zero_point?"],
    attrs=dict(axis=1, block_size=0, output_dtype=0), infer=infer_dequantize)
def dequantize_linear(x, x_scale, x_zero_point=None, *, axis, block_size, output_dtype):
    """y = (x - x_zero_point) * x_scale, per tensor, per axis or per block."""
    return dequantize(x, x_scale, x_zero_point, axis, block_size, output_dtype)


# --- DynamicQuantizeLinear -----------------------------------------------------------------
def infer_dynamic_quantize(ctx):
    return [TensorType(dtypes.u8, ctx.shape(0)), TensorType(dtypes.f32, ()),
            TensorType(dtypes.u8, ())][:ctx.n_outputs]


@op("DynamicQuantizeLinear", inputs=["x"], outputs=["y", "y_scale", "y_zero_point"],
    infer=infer_dynamic_quantize)
def dynamic_quantize_linear(x):
    """Quantize float x to uint8 with a scale and zero point spanning [min(x, 0), max(x, 0)].

    An all-zero x (empty range) gets scale 1, as in ONNX Runtime, rather than dividing by 0."""
    xf = x.astype(np.float32)
    lo = min(float(xf.min(initial=0.0)), 0.0)
    hi = max(float(xf.max(initial=0.0)), 0.0)
    scale = np.float32((hi - lo) / 255.0)
    if scale == 0:
        return np.zeros(x.shape, np.uint8), np.asarray(1.0, np.float32), np.asarray(0, np.uint8)
    zero_point = np.uint8(np.clip(np.rint(np.float32(0 - lo) / scale), 0, 255))
    y = np.clip(np.rint(xf / scale) + zero_point, 0, 255).astype(np.uint8)
    return y, np.asarray(scale, np.float32), np.asarray(zero_point, np.uint8)


# --- quantized matmul and convolution ------------------------------------------------------
def requantize(acc, real_scale, y_zero_point):
    """Integer accumulators times their real scale, quantized to y_zero_point's type."""
    zp = 0 if y_zero_point is None else y_zero_point.astype(np.float64)
    q = np.rint(acc.astype(np.float64) * real_scale) + zp
    out = np.dtype(np.uint8) if y_zero_point is None else y_zero_point.dtype
    return saturate_cast(q, out, True)


def centered_int(v, zero_point, reshape=None):
    """v - zero_point as int64 (zero point optionally reshaped to broadcast)."""
    c = v.astype(np.int64)
    if zero_point is not None:
        zp = zero_point.astype(np.int64)
        c = c - (reshape(zp) if reshape else zp)
    return c


def float32_product(*scales):
    """Product of scales computed in float32, the precision the scales are given in."""
    out = np.float32(1)
    for s in scales:
        out = out * s.astype(np.float32)
    return out


def row_scale(p, a):
    """A per-row scale or zero point (M,) of a (..., M, K) reshaped to (M, 1)."""
    if p is not None and p.ndim == 1 and p.size > 1 and a.ndim >= 2:
        return p[:, None]
    return p


@op("QLinearMatMul", inputs=["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point",
                             "y_scale", "y_zero_point"],
    infer=infer_matmul(b_input=3, dtype_input=7))
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """Quantized matmul: dequantize a and b (per tensor, per row of a, per column of b), multiply,
    requantize with y_scale and y_zero_point."""
    if not (is_int_dtype(a.dtype) and is_int_dtype(b.dtype)):
        real_a = dequantize(a, row_scale(a_scale, a), row_scale(a_zero_point, a), axis=-1)
        real_b = dequantize(b, b_scale, b_zero_point, axis=-1)
        real = np.matmul(real_a.astype(np.float32), real_b.astype(np.float32))
        return quantize(real, y_scale, y_zero_point)
    acc = exact_int_matmul(centered_int(a, a_zero_point, lambda z: row_scale(z, a)),
                           centered_int(b, b_zero_point))
    real_scale = float32_product(row_scale(a_scale, a), b_scale) / y_scale.astype(np.float32)
    return requantize(acc, real_scale.astype(np.float64), y_zero_point)


def infer_qconv(w_input: int, out_dtype=None):
    def rule(ctx):
        a = ctx.attrs
        w = ctx.shape(w_input)
        kernel = a["kernel_shape"] or (tuple(w[2:]) if w is not None else None)
        if kernel is not None and not all(isinstance(k, int) for k in kernel):
            kernel = None
        shape = infer_window_shape(ctx, w[0] if w is not None else None, kernel, a["strides"],
                                   a["dilations"], a["pads"], a["auto_pad"])
        dt = out_dtype if out_dtype is not None else ctx.dtype(7)
        return [TensorType(dt, shape)]
    return rule


def int_conv(x, w, attrs) -> np.ndarray:
    """Exact integer convolution of int64 operands x (N, C, D...), w (M, C/group, K...): for
    8-bit operands every partial sum is an integer below 2**53, so float64 BLAS is exact."""
    k = x.ndim - 2
    kernel, strides, dilations = spatial_attrs(k, w.shape[2:], attrs["strides"],
                                               attrs["dilations"])
    win = resolve(x.shape[2:], kernel, strides, dilations, attrs["pads"], attrs["auto_pad"])
    y = conv_nd(x.astype(np.float64), w.astype(np.float64), win, attrs["group"])
    return np.rint(y).astype(np.int64)


def per_output_channel(p, rank: int):
    """A per-output-channel parameter (M,) reshaped to broadcast over weights (M, C, K...)."""
    return p.reshape((-1,) + (1,) * (rank - 1)) if p.ndim == 1 else p


QCONV_ATTRS = dict(auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                   strides=None)


@op("ConvInteger", inputs=["x", "w", "x_zero_point?", "w_zero_point?"], attrs=QCONV_ATTRS,
    infer=infer_qconv(1, dtypes.i32))
def conv_integer(x, w, x_zero_point=None, w_zero_point=None, **attrs):
    """Convolution of (x - x_zero_point) and (w - w_zero_point), accumulated exactly in int32."""
    xi = centered_int(x, x_zero_point)
    wi = centered_int(w, w_zero_point, lambda z: per_output_channel(z, w.ndim))
    return int_conv(xi, wi, attrs).astype(np.int32)


@op("QLinearConv", inputs=["x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point",
                           "y_scale", "y_zero_point", "B?"], attrs=QCONV_ATTRS,
    infer=infer_qconv(3))
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                 B=None, **attrs):
    """Quantized convolution: integer conv of the centered operands plus int32 bias B, scaled by
    x_scale * w_scale / y_scale (w_scale may be per output channel) and requantized."""
    xi = centered_int(x, x_zero_point)
    wi = centered_int(w, w_zero_point, lambda z: per_output_channel(z, w.ndim))
    acc = int_conv(xi, wi, attrs)
    if B is not None:
        acc = acc + channel_bias(B.astype(np.int64), acc.ndim)
    real_scale = float32_product(x_scale, w_scale) / y_scale.astype(np.float32)
    if real_scale.ndim == 1:
        real_scale = channel_bias(real_scale, acc.ndim)
    return requantize(acc, real_scale.astype(np.float64), y_zero_point)


OPS = [quantize_linear, dequantize_linear, dynamic_quantize_linear, qlinear_matmul, conv_integer,
       qlinear_conv]
