"""Random ops: RandomUniform(Like), RandomNormal(Like), Bernoulli, Multinomial.

With a `seed` attribute the draws come from `numpy.random.default_rng(int(seed))` and are
reproducible; without one each run draws fresh values. These ops are not pure: a pass must not
constant-fold or deduplicate them.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import InferContext, TensorType
from .registry import REQUIRED, op


def _rng(seed):
    return np.random.default_rng(None if seed is None else int(seed))


def _np_dtype(onnx_id):
    return dtypes.from_onnx(onnx_id).numpy


# --- shape inference -----------------------------------------------------------------------------
def _infer_from_attrs(ctx: InferContext):
    return [TensorType(dtypes.from_onnx(ctx.attrs["dtype"]), tuple(ctx.attrs["shape"]))]


def _infer_like(ctx: InferContext):
    dt = ctx.attrs["dtype"]
    return [TensorType(ctx.dtype(0) if dt is None else dtypes.from_onnx(dt), ctx.shape(0))]


def _like_dtype(x, dtype):
    return x.dtype if dtype is None else _np_dtype(dtype)


# --- uniform and normal --------------------------------------------------------------------------
@op("RandomUniform", inputs=[], outputs=["output"],
    attrs=dict(dtype=1, high=1.0, low=0.0, seed=None, shape=REQUIRED), infer=_infer_from_attrs)
def random_uniform(*, dtype, high, low, seed, shape):
    """Values drawn uniformly from [low, high), of the given shape and dtype."""
    return _rng(seed).uniform(low, high, tuple(shape)).astype(_np_dtype(dtype))


@op("RandomNormal", inputs=[], outputs=["output"],
    attrs=dict(dtype=1, mean=0.0, scale=1.0, seed=None, shape=REQUIRED), infer=_infer_from_attrs)
def random_normal(*, dtype, mean, scale, seed, shape):
    """Values drawn from a normal distribution N(mean, scale^2)."""
    return _rng(seed).normal(mean, scale, tuple(shape)).astype(_np_dtype(dtype))


@op("RandomUniformLike", inputs=["input"], outputs=["output"],
    attrs=dict(dtype=None, high=1.0, low=0.0, seed=None), infer=_infer_like)
def random_uniform_like(input, *, dtype, high, low, seed):
    """Uniform values in [low, high) with the shape of the input (and its dtype by default)."""
    return _rng(seed).uniform(low, high, input.shape).astype(_like_dtype(input, dtype))


@op("RandomNormalLike", inputs=["input"], outputs=["output"],
    attrs=dict(dtype=None, mean=0.0, scale=1.0, seed=None), infer=_infer_like)
def random_normal_like(input, *, dtype, mean, scale, seed):
    """Normal values N(mean, scale^2) with the shape of the input (and its dtype by default)."""
    return _rng(seed).normal(mean, scale, input.shape).astype(_like_dtype(input, dtype))


# --- Bernoulli and Multinomial -------------------------------------------------------------------
@op("Bernoulli", inputs=["input"], outputs=["output"], attrs=dict(dtype=None, seed=None),
    infer=_infer_like)
def bernoulli(input, *, dtype, seed):
    """1 with probability input[i], else 0 (input holds probabilities in [0, 1])."""
    p = np.asarray(input, np.float64)
    draws = _rng(seed).uniform(0.0, 1.0, p.shape) < p
    return draws.astype(_like_dtype(input, dtype))


def _infer_multinomial(ctx: InferContext):
    shape = ctx.shape(0)
    batch = shape[0] if shape is not None and len(shape) == 2 else None
    return [TensorType(dtypes.from_onnx(ctx.attrs["dtype"]), (batch, ctx.attrs["sample_size"]))]


@op("Multinomial", inputs=["input"], outputs=["output"],
    attrs=dict(dtype=6, sample_size=1, seed=None), infer=_infer_multinomial)
def multinomial(input, *, dtype, sample_size, seed):
    """Class indices sampled from [batch, classes] unnormalized log-probabilities."""
    logits = np.asarray(input, np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    u = _rng(seed).uniform(0.0, 1.0, (logits.shape[0], sample_size))
    out = np.empty(u.shape, np.int64)
    for b in range(logits.shape[0]):
        out[b] = np.searchsorted(cdf[b], u[b], side="right")
    return np.minimum(out, logits.shape[1] - 1).astype(_np_dtype(dtype))
