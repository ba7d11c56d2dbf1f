"""Optimizer steps of the ai.onnx.preview.training domain: Momentum, Adagrad, Adam.

Each takes the learning rate R, the update count T, then groups of n tensors (the variables X,
their gradients G, then each optimizer state) and returns the updated variables followed by the
updated states, group by group. (`Gradient` needs automatic differentiation and is not defined.)
"""
from __future__ import annotations

import numpy as np

from .infer import UNKNOWN, InferContext
from .registry import REQUIRED, op

DOMAIN = "ai.onnx.preview.training"


def _groups(tensors, k: int):
    """Split the variadic inputs into k equal groups (X, G, states...)."""
    if len(tensors) % k:
        raise ValueError(f"expected a multiple of {k} tensors after R and T, got {len(tensors)}")
    n = len(tensors) // k
    return [list(tensors[i * n:(i + 1) * n]) for i in range(k)]


def _infer_updates(ctx: InferContext):
    """Output i has the type of variadic input i (X_new like X, states like states)."""
    return [ctx.inputs[2 + i] if 2 + i < len(ctx.inputs) and ctx.inputs[2 + i] is not None
            else UNKNOWN for i in range(ctx.n_outputs)]


def _scalar(x) -> float:
    return float(np.asarray(x, np.float64).reshape(-1)[0])


@op("training.Momentum", inputs=["R", "T", "inputs*"], outputs=["outputs*"],
    attrs=dict(alpha=REQUIRED, beta=REQUIRED, mode=REQUIRED, norm_coefficient=REQUIRED),
    infer=_infer_updates, domain=DOMAIN)
def momentum(R, T, *inputs, alpha, beta, mode, norm_coefficient):
    """One step of SGD with standard or Nesterov momentum over (X..., G..., V...)."""
    xs, gs, vs = _groups(inputs, 3)
    r, t = _scalar(R), _scalar(T)
    beta_adj = beta if t > 0 else 1.0
    new_x, new_v = [], []
    for x, g, v in zip(xs, gs, vs):
        g_reg = norm_coefficient * x + g
        v_new = alpha * v + beta_adj * g_reg
        step = g_reg + alpha * v_new if mode == "nesterov" else v_new
        new_x.append((x - r * step).astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
    return tuple(new_x + new_v)


@op("training.Adagrad", inputs=["R", "T", "inputs*"], outputs=["outputs*"],
    attrs=dict(decay_factor=0.0, epsilon=1e-6, norm_coefficient=0.0), infer=_infer_updates,
    domain=DOMAIN)
def adagrad(R, T, *inputs, decay_factor, epsilon, norm_coefficient):
    """One ADAGRAD step over (X..., G..., H...), H the accumulated squared gradient."""
    xs, gs, hs = _groups(inputs, 3)
    r = _scalar(R) / (1 + _scalar(T) * decay_factor)
    new_x, new_h = [], []
    for x, g, h in zip(xs, gs, hs):
        g_reg = norm_coefficient * x + g
        h_new = h + g_reg * g_reg
        x_new = x - r * g_reg / (np.sqrt(h_new) + epsilon)
        new_x.append(x_new.astype(x.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_h)


@op("training.Adam", inputs=["R", "T", "inputs*"], outputs=["outputs*"],
    attrs=dict(alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.0,
               norm_coefficient_post=0.0),
    infer=_infer_updates, domain=DOMAIN)
def adam(R, T, *inputs, alpha, beta, epsilon, norm_coefficient, norm_coefficient_post):
    """One Adam step over (X..., G..., V..., H...), V and H the running moments."""
    xs, gs, vs, hs = _groups(inputs, 4)
    r, t = _scalar(R), _scalar(T)
    if t > 0:
        r = r * np.sqrt(1 - beta ** t) / (1 - alpha ** t)
    new_x, new_v, new_h = [], [], []
    for x, g, v, h in zip(xs, gs, vs, hs):
        g_reg = norm_coefficient * x + g
        v_new = alpha * v + (1 - alpha) * g_reg
        h_new = beta * h + (1 - beta) * g_reg * g_reg
        x_new = (x - r * v_new / (np.sqrt(h_new) + epsilon)) * (1 - norm_coefficient_post)
        new_x.append(x_new.astype(x.dtype))
        new_v.append(v_new.astype(v.dtype))
        new_h.append(h_new.astype(h.dtype))
    return tuple(new_x + new_v + new_h)
