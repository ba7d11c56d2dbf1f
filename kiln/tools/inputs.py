"""Inputs for the tools that run a model: .npy files named on the command line, or random ones."""
from __future__ import annotations

import numpy as np

from ..errors import KilnError
from ..ir.types import TensorType


def load_npy(items) -> dict[str, np.ndarray]:
    """{name: array} from `name=file.npy` items (the --input options)."""
    feeds = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise KilnError(f"--input takes name=file.npy, got {item!r}")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise KilnError(f"cannot read input {name!r} from {path}: {e}") from None
    return feeds


def random_inputs(graph, given: dict | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """An array for every graph input not in `given` (which is kept): symbolic and unknown dims 1,
    floats N(0, 1), integers in [0, 2) (valid token ids, masks and class indices), random bools."""
    rng = np.random.default_rng(seed)
    feeds = dict(given or {})
    for v in graph.inputs:
        if v.name in feeds:
            continue
        t = v.type
        if not isinstance(t, TensorType) or t.dtype is None or t.shape is None:
            raise KilnError(f"input {v.name!r} has type {t}: give it with --input {v.name}=file.npy")
        shape = tuple(d if isinstance(d, int) else 1 for d in t.shape)
        dt = t.dtype.numpy
        if t.dtype.name == "bool":
            feeds[v.name] = rng.integers(0, 2, shape).astype(bool)
        elif t.dtype.is_float or t.dtype.is_complex:
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif t.dtype.is_int:
            feeds[v.name] = rng.integers(0, 2, shape).astype(dt)
        else:
            raise KilnError(f"no random {t.dtype} inputs: give {v.name!r} with --input {v.name}=file.npy")
    return feeds
