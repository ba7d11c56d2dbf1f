"""Activation functions. Each keeps its input's dtype (f16 in, f16 out); narrow floats are
computed in f32 and rounded back once."""
from __future__ import annotations

import math

import numpy as np

from .elementwise import append_unit_dims, drop_consumed_inputs, erf, like, rank_at_import, wide
from .infer import same_as
from .registry import OpDef

SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875


def activation(name: str, fn, attrs=None, doc: str = "") -> OpDef:
    """An elementwise activation Y = fn(X, **attrs), in X's dtype."""
    def reference(X, **kw):
        with np.errstate(all="ignore"):
            return like(fn(wide(X), **kw), X)
    reference.__doc__ = doc or f"{name}(X), elementwise."
    return OpDef(name, ("X",), ("Y",), dict(attrs or {}), reference, same_as(0),
                 drop_consumed_inputs)


def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x):
    """log(1 + exp(x)), without overflow for large x."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def relu(x):
    return np.maximum(x, 0)


def hard_sigmoid(x, alpha, beta):
    return np.clip(alpha * x + beta, 0, 1)


def elu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x, alpha, gamma):
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def celu(x, alpha):
    return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha))


def leaky_relu(x, alpha):
    return np.where(x >= 0, x, alpha * x)


def thresholded_relu(x, alpha):
    return np.where(x > alpha, x, 0)


def softsign(x):
    return x / (1 + np.abs(x))


def hard_swish(x):
    return x * np.clip(x / 6 + 0.5, 0, 1)


def mish(x):
    return x * np.tanh(softplus(x))


def gelu(x, approximate):
    """0.5 x (1 + erf(x / sqrt 2)), or its tanh approximation."""
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
        return 0.5 * x * (1 + np.tanh(inner))
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', not {approximate!r}")
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def swish(x, alpha):
    return x * sigmoid(alpha * x)


def shrink(x, bias, lambd):
    """x + bias below -lambd, x - bias above lambd, 0 between (integers stay integers)."""
    lo, hi = x < -lambd, x > lambd
    return np.where(lo, x + bias, np.where(hi, x - bias, 0))


def prelu(X, slope):
    """PRelu(X, slope): X where X >= 0, else slope * X (slope broadcasts to X)."""
    x, s = wide(X), wide(slope)
    return like(np.where(x >= 0, x, s * x), X)


def swiglu(A, B, *, alpha):
    """SwiGLU(A, B): Swish_alpha(A) * B, with A the gate and B the value."""
    with np.errstate(all="ignore"):
        return like(swish(wide(A), alpha) * wide(B), A)


def upgrade_prelu(node):
    """Before opset 7 a slope of shape [C] applied per channel (axis 1) of an N x C x ... input;
    numpy-style broadcasting needs it as [C, 1, ...]."""
    drop_consumed_inputs(node)
    if node.opset >= 7 or len(node.inputs) < 2 or node.inputs[1] is None:
        return
    x, slope = node.inputs
    if getattr(slope.type, "shape", None) == (1,):       # one slope shared by all channels
        return
    rank_x, rank_s = rank_at_import(x), rank_at_import(slope)
    if rank_s == 1 and rank_x is not None and rank_x > 2:
        node.inputs[1] = append_unit_dims(node, slope, rank_x - 2, 1)


OPS = [
    activation("Relu", relu, doc="Relu(X): max(X, 0)."),
    activation("Sigmoid", sigmoid, doc="Sigmoid(X): 1 / (1 + exp(-X))."),
    activation("HardSigmoid", hard_sigmoid, dict(alpha=0.2, beta=0.5),
               "HardSigmoid(X): max(0, min(1, alpha X + beta))."),
    activation("Elu", elu, dict(alpha=1.0), "Elu(X): X if X > 0 else alpha (exp(X) - 1)."),
    activation("Selu", selu, dict(alpha=SELU_ALPHA, gamma=SELU_GAMMA),
               "Selu(X): gamma (X if X > 0 else alpha (exp(X) - 1))."),
    activation("Celu", celu, dict(alpha=1.0),
               "Celu(X): max(0, X) + min(0, alpha (exp(X / alpha) - 1))."),
    activation("LeakyRelu", leaky_relu, dict(alpha=0.01),
               "LeakyRelu(X): X if X >= 0 else alpha X."),
    activation("ThresholdedRelu", thresholded_relu, dict(alpha=1.0),
               "ThresholdedRelu(X): X if X > alpha else 0."),
    activation("Softplus", softplus, doc="Softplus(X): log(1 + exp(X))."),
    activation("Softsign", softsign, doc="Softsign(X): X / (1 + |X|)."),
    activation("HardSwish", hard_swish, doc="HardSwish(X): X max(0, min(1, X / 6 + 1/2))."),
    activation("Mish", mish, doc="Mish(X): X tanh(softplus(X))."),
    activation("Gelu", gelu, dict(approximate="none"),
               "Gelu(X): X Phi(X), exactly (erf) or with the tanh approximation."),
    activation("Swish", swish, dict(alpha=1.0), "Swish(X): X sigmoid(alpha X)."),
    activation("Shrink", shrink, dict(bias=0.0, lambd=0.5),
               "Shrink(X): X + bias if X < -lambd, X - bias if X > lambd, else 0."),
    OpDef("PRelu", ("X", "slope"), ("Y",), {}, prelu, same_as(0), upgrade_prelu),
    OpDef("SwiGLU", ("A", "B"), ("Y",), dict(alpha=1.0), swiglu, same_as(0)),
]
