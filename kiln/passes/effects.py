"""Which nodes are pure: the one place passes ask whether a node may be merged, folded or moved.

An impure op draws random numbers: two calls give different results, so CSE must not merge them
and constant folding must not run them at compile time. Dropout is random only in training mode.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Node, Value

IMPURE = frozenset({"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike",
                    "Bernoulli", "Multinomial"})


def const_data(v: Value | None):
    """The array of a compile-time constant (one the caller cannot feed), else None."""
    if v is None or v.feedable or not isinstance(v.data, np.ndarray):
        return None
    return v.data


def dropout_in_training(node: Node) -> bool:
    """A Dropout whose training_mode input is present and not a constant false."""
    mode = node.inputs[2] if len(node.inputs) > 2 else None
    if mode is None:
        return False
    data = const_data(mode)
    return data is None or bool(np.any(data))


def is_pure(node: Node) -> bool:
    """Same inputs give the same outputs (no random draws). Says nothing about subgraphs."""
    if node.op in IMPURE:
        return False
    if node.op == "Dropout":
        return not dropout_in_training(node)
    return True
