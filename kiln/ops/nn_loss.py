"""Loss ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss."""
from __future__ import annotations

import numpy as np

from .infer import TensorType
from .nn_window import compute_dtype
from .registry import op

LOSS_ATTRS = dict(ignore_index=None, reduction="mean")


def nll(log_prob, target, weight, ignore_index, reduction):
    """Weighted negative log likelihood of log_prob (N, C, D...) at target (N, D...)."""
    c = log_prob.shape[1]
    target = target.astype(np.int64)
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    safe = np.where(keep, target, 0)
    if keep.any() and (safe.min() < 0 or safe.max() >= c):
        raise ValueError(f"target class out of range [0, {c})")
    picked = np.take_along_axis(log_prob, safe[:, None], axis=1)[:, 0]
    w = np.ones(c, log_prob.dtype) if weight is None else weight.astype(log_prob.dtype)
    w = np.where(keep, w[safe], 0)
    loss = -picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / w.sum()
    raise ValueError(f"unknown reduction {reduction!r}")


def infer_loss(target_input: int, with_log_prob: bool = False):
    def rule(ctx):
        dt = ctx.dtype(0)
        shape = ctx.shape(target_input) if ctx.attrs["reduction"] == "none" else ()
        types = [TensorType(dt, None if shape is None else tuple(shape))]
        if with_log_prob:
            types.append(ctx.tensor(0))
        return types[:ctx.n_outputs]
    return rule


@op("NegativeLogLikelihoodLoss", inputs=["input", "target", "weight?"], outputs=["loss"],
    attrs=LOSS_ATTRS, infer=infer_loss(1))
def negative_log_likelihood_loss(input, target, weight=None, *, ignore_index, reduction):
    """-input[n, target, d...] * weight[target], reduced by none, sum or (weighted) mean."""
    dt = compute_dtype(input, weight)
    loss = nll(input.astype(dt, copy=False), target, weight, ignore_index, reduction)
    return np.asarray(loss).astype(input.dtype)


def log_softmax(x, axis: int):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@op("SoftmaxCrossEntropyLoss", inputs=["scores", "labels", "weights?"],
    outputs=["output", "log_prob?"], attrs=LOSS_ATTRS, infer=infer_loss(1, with_log_prob=True))
def softmax_cross_entropy_loss(scores, labels, weights=None, *, ignore_index, reduction):
    """Negative log likelihood of softmax(scores) over axis 1; also gives the log-probabilities."""
    dt = compute_dtype(scores, weights)
    log_prob = log_softmax(scores.astype(dt, copy=False), axis=1)
    loss = nll(log_prob, labels, weights, ignore_index, reduction)
    return np.asarray(loss).astype(scores.dtype), log_prob.astype(scores.dtype)


OPS = [negative_log_likelihood_loss, softmax_cross_entropy_loss]
