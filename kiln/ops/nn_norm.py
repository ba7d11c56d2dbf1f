"""Normalization ops: batch, instance, layer, group, RMS and mean-variance normalization, LRN and
LpNormalization.

Statistics are computed in float32 (or float64 for float64 inputs, or the `stash_type` where the
op has one); results come back in the input's dtype.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import UNKNOWN, TensorType, norm_axis, same_as
from .nn_window import compute_dtype
from .registry import REQUIRED, op

F32 = 1     # onnx.TensorProto.FLOAT, the default stash_type


def stash_dtype(stash_type: int, *arrays):
    """The numpy dtype statistics are computed in: the stash type, widened to float64 inputs."""
    st = np.dtype(dtypes.from_onnx(stash_type).np_type)
    return np.float64 if compute_dtype(*arrays) == np.float64 else st


def per_channel(p: np.ndarray, rank: int) -> np.ndarray:
    """A (C,) or (C, D...) parameter reshaped to broadcast over an (N, C, D...) tensor."""
    return p.reshape((1,) + p.shape + (1,) * (rank - 1 - p.ndim))


# --- BatchNormalization --------------------------------------------------------------------
def upgrade_batch_norm(node):
    """Drop consumed_inputs (opset < 6), is_test (< 7) and spatial (< 9); older opsets asked
    for training statistics by requesting the extra outputs."""
    for old in ("consumed_inputs", "is_test", "spatial"):
        node.attrs.pop(old, None)
    if node.opset < 14 and node.n_outputs > 1:
        node.attrs["training_mode"] = 1


def infer_batch_norm(ctx):
    types = [ctx.tensor(0), ctx.inputs[3] or UNKNOWN, ctx.inputs[4] or UNKNOWN]
    return types[:ctx.n_outputs]


@op("BatchNormalization", inputs=["X", "scale", "B", "input_mean", "input_var"],
    outputs=["Y", "running_mean?", "running_var?"],
    attrs=dict(epsilon=1e-5, momentum=0.9, training_mode=0), infer=infer_batch_norm,
    upgrade=upgrade_batch_norm)
def batch_normalization(X, scale, B, input_mean, input_var, *, epsilon, momentum,
                        training_mode, n_outputs):
    """Normalize each channel with running statistics (or batch statistics when training)."""
    dt = compute_dtype(X, scale, B, input_mean, input_var)
    x = X.astype(dt, copy=False)
    mean, var = input_mean.astype(dt), input_var.astype(dt)
    if training_mode:
        axes = (0,) + tuple(range(2, X.ndim))
        batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
        running_mean = mean * momentum + batch_mean * (1 - momentum)
        running_var = var * momentum + batch_var * (1 - momentum)
        mean, var = batch_mean, batch_var
    else:
        running_mean, running_var = mean, var
    inv = 1.0 / np.sqrt(per_channel(var, X.ndim) + epsilon)
    y = (x - per_channel(mean, X.ndim)) * inv * per_channel(scale.astype(dt), X.ndim) \
        + per_channel(B.astype(dt), X.ndim)
    y = y.astype(X.dtype, copy=False)
    if n_outputs == 1:
        return y
    return (y, running_mean.astype(input_mean.dtype, copy=False),
            running_var.astype(input_var.dtype, copy=False))


# --- instance, layer, group, RMS -----------------------------------------------------------
def drop_consumed_inputs(node):
    node.attrs.pop("consumed_inputs", None)


@op("InstanceNormalization", inputs=["input", "scale", "B"], attrs=dict(epsilon=1e-5),
    infer=same_as(0), upgrade=drop_consumed_inputs)
def instance_normalization(X, scale, B, *, epsilon):
    """Normalize each (instance, channel) over its spatial dims, then scale and shift."""
    dt = compute_dtype(X, scale, B)
    x = X.astype(dt, copy=False)
    axes = tuple(range(2, X.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon) * per_channel(scale.astype(dt), X.ndim) \
        + per_channel(B.astype(dt), X.ndim)
    return y.astype(X.dtype, copy=False)


def infer_layer_norm(ctx):
    x = ctx.tensor(0)
    stats_dtype = dtypes.from_onnx(ctx.attrs["stash_type"])
    if x.shape is None:
        stats = TensorType(stats_dtype, None)
    else:
        axis = norm_axis(ctx.attrs["axis"], len(x.shape), ctx)
        stats = TensorType(stats_dtype, tuple(x.shape[:axis]) + (1,) * (len(x.shape) - axis))
    return [x, stats, stats][:ctx.n_outputs]


@op("LayerNormalization", inputs=["X", "Scale", "B?"], outputs=["Y", "Mean?", "InvStdDev?"],
    attrs=dict(axis=-1, epsilon=1e-5, stash_type=F32), infer=infer_layer_norm)
def layer_normalization(X, Scale, B=None, *, axis, epsilon, stash_type):
    """Normalize over the dims from `axis` on, then scale and shift; also gives Mean, InvStdDev."""
    st = stash_dtype(stash_type, X)
    axes = tuple(range(norm_axis(axis, X.ndim), X.ndim))
    x = X.astype(st, copy=False)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    inv_std = 1.0 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + epsilon)
    y = (centered * inv_std).astype(X.dtype) * Scale
    if B is not None:
        y = y + B
    return y.astype(X.dtype, copy=False), mean, inv_std


@op("GroupNormalization", inputs=["X", "scale", "bias"],
    attrs=dict(epsilon=1e-5, num_groups=REQUIRED, stash_type=F32), infer=same_as(0))
def group_normalization(X, scale, bias, *, epsilon, num_groups, stash_type):
    """Normalize each group of channels per instance, then scale and shift per channel.

    Opset 18 gave scale and bias per group (length num_groups); such operands are spread over
    the channels of their group, which is what opset 21's per-channel form expresses."""
    n, c = X.shape[:2]
    st = stash_dtype(stash_type, X)
    x = X.astype(st, copy=False).reshape(n, num_groups, -1)
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    normalized = ((x - mean) / np.sqrt(var + epsilon)).reshape(X.shape).astype(X.dtype)
    if scale.size == num_groups != c:
        scale = np.repeat(scale, c // num_groups)
        bias = np.repeat(bias, c // num_groups)
    y = normalized * per_channel(scale, X.ndim) + per_channel(bias, X.ndim)
    return y.astype(X.dtype, copy=False)


@op("RMSNormalization", inputs=["X", "scale"], attrs=dict(axis=-1, epsilon=1e-5, stash_type=F32),
    infer=same_as(0))
def rms_normalization(X, scale, *, axis, epsilon, stash_type):
    """Divide by the root mean square over the dims from `axis` on, then scale."""
    st = stash_dtype(stash_type, X)
    axes = tuple(range(norm_axis(axis, X.ndim), X.ndim))
    x = X.astype(st, copy=False)
    rms = np.sqrt((x * x).mean(axis=axes, keepdims=True) + epsilon)
    return ((x / rms).astype(X.dtype) * scale).astype(X.dtype, copy=False)


@op("MeanVarianceNormalization", inputs=["X"], attrs=dict(axes=[0, 2, 3]), infer=same_as(0))
def mean_variance_normalization(X, *, axes):
    """(X - mean) / (std + 1e-9) over the given axes."""
    x = X.astype(compute_dtype(X), copy=False)
    axes = tuple(axes)
    mean = x.mean(axis=axes, keepdims=True)
    std = np.sqrt(np.maximum((x * x).mean(axis=axes, keepdims=True) - mean * mean, 0))
    return ((x - mean) / (std + 1e-9)).astype(X.dtype, copy=False)


# --- LRN and LpNormalization ---------------------------------------------------------------
@op("LRN", inputs=["X"], attrs=dict(alpha=1e-4, beta=0.75, bias=1.0, size=REQUIRED),
    infer=same_as(0))
def lrn(X, *, alpha, beta, bias, size):
    """Local response normalization across `size` neighbouring channels."""
    x = X.astype(compute_dtype(X), copy=False)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    widths = [(0, 0), (before, after)] + [(0, 0)] * (X.ndim - 2)
    squares = np.pad(x * x, widths)
    window_sum = np.lib.stride_tricks.sliding_window_view(squares, size, axis=1).sum(axis=-1)
    return (x / (bias + alpha / size * window_sum) ** beta).astype(X.dtype, copy=False)


@op("LpNormalization", inputs=["input"], attrs=dict(axis=-1, p=2), infer=same_as(0))
def lp_normalization(X, *, axis, p):
    """Divide by the p-norm (p = 1 or 2) along `axis`; all-zero slices stay 0."""
    x = X.astype(compute_dtype(X), copy=False)
    if p == 1:
        norm = np.abs(x).sum(axis=axis, keepdims=True)
    else:
        norm = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    y = x / np.where(norm == 0, 1, norm)
    return y.astype(X.dtype, copy=False)


OPS = [batch_normalization, instance_normalization, layer_normalization, group_normalization,
       rms_normalization, mean_variance_normalization, lrn, lp_normalization]
