"""Fold inference BatchNormalization into the Conv or Gemm before it."""
from __future__ import annotations

import numpy as np

from ..errors import KilnError
from ..ir import dtypes
from ..ir.graph import Graph, Node
from .effects import const_data
from .manager import graph_pass
from .rewrite import Names, all_graphs, input_at, users


@graph_pass("fold-batchnorm")
def fold_batchnorm(graph: Graph) -> Graph:
    """Conv/Gemm with constant weights feeding only an inference BatchNormalization with constant
    parameters -> one Conv/Gemm with scaled weights and a new bias (mutates the graph).

    With a = scale / sqrt(var + eps) per output channel: W' = W * a, B' = (B - mean) * a + beta.
    For Gemm the channels are the columns of the result: B' scales B's columns (rows when transB)
    and C' = (beta * C - mean) * a + bn_beta. The BN output Value becomes the Conv/Gemm's output,
    so names survive. Other BatchNormalizations stay (they have their own lowering).
    """
    names = Names(graph)
    for g in list(all_graphs(graph)):
        _fold(g, names)
    return graph


def _fold(g: Graph, names: Names):
    uses, outputs = users(g), set(g.outputs)
    ours = {id(n) for n in g.nodes}
    dropped = set()
    for bn in g.nodes:
        if bn.op != "BatchNormalization":
            continue
        prev = bn.inputs[0].producer
        if prev is None or id(prev) not in ours or prev.op not in ("Conv", "Gemm"):
            continue
        mid = bn.inputs[0]
        if mid in outputs or uses.get(mid) != [bn] or not _inference_bn(bn, uses, outputs):
            continue
        params = [const_data(v) for v in bn.inputs[1:5]]
        if any(p is None for p in params):
            continue
        folded = (_fold_conv if prev.op == "Conv" else _fold_gemm)(prev, params, bn)
        if folded is None:
            continue
        w, b = folded
        wv, bv = prev.inputs[1], input_at(prev, 2)
        new_w = g.add_const(names.fresh(f"{wv.name}_bn"), w)
        b_name = f"{bv.name}_bn" if bv is not None else f"{wv.name}_bn_bias"
        new_b = g.add_const(names.fresh(b_name), b)
        prev.inputs = [prev.inputs[0], new_w, new_b]
        if prev.op == "Gemm":
            prev.attrs.pop("beta", None)        # beta is folded into the new C
        prev.outputs = [bn.outputs[0]]
        bn.outputs[0].producer = prev
        dropped.add(id(bn))
    g.nodes = [n for n in g.nodes if id(n) not in dropped]


def _inference_bn(bn: Node, uses, outputs) -> bool:
    """Inference mode, and only the Y output in use."""
    if bn.attrs.get("training_mode", 0):
        return False
    return all(v is None or (v not in outputs and v not in uses) for v in bn.outputs[1:])


def _is_float(a: np.ndarray) -> bool:
    try:
        return dtypes.from_numpy(a.dtype).is_float
    except KilnError:
        return False


def _bias(node: Node, n: int):
    """The node's constant bias input (zeros when absent), or None when it is not constant."""
    v = input_at(node, 2)
    if v is None:
        return np.zeros(n)
    return const_data(v)


def _fold_conv(conv: Node, params, bn: Node):
    w = const_data(conv.inputs[1])
    if w is None or not _is_float(w) or w.ndim < 3:
        return None
    m = w.shape[0]
    b = _bias(conv, m)
    a, mean, beta = _scale(params, bn, m)
    if a is None or b is None or b.shape != (m,):
        return None
    new_w = w.astype(np.float64) * a.reshape((m,) + (1,) * (w.ndim - 1))
    new_b = (b.astype(np.float64) - mean) * a + beta
    return new_w.astype(w.dtype), new_b.astype(w.dtype)


def _fold_gemm(gemm: Node, params, bn: Node):
    w = const_data(gemm.inputs[1])
    if w is None or not _is_float(w) or w.ndim != 2:
        return None
    trans_b = gemm.attrs.get("transB", 0)
    n = w.shape[0] if trans_b else w.shape[1]
    c = _bias(gemm, n)
    a, mean, beta = _scale(params, bn, n)
    if a is None or c is None or c.ndim > 2:
        return None
    try:
        shape = np.broadcast_shapes(c.shape, (n,))
    except ValueError:
        return None
    new_w = w.astype(np.float64) * (a[:, None] if trans_b else a[None, :])
    c = float(gemm.attrs.get("beta", 1.0)) * c.astype(np.float64)
    new_c = (np.broadcast_to(c, shape) - mean) * a + beta
    return new_w.astype(w.dtype), new_c.astype(w.dtype)


def _scale(params, bn: Node, n: int):
    """(a, mean, beta) in float64 for n channels, or Nones when the parameters do not fit."""
    scale, beta, mean, var = params
    if any(p.shape != (n,) or not _is_float(p) for p in params):
        return None, None, None
    eps = float(bn.attrs.get("epsilon", 1e-5))
    a = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return a, mean.astype(np.float64), beta.astype(np.float64)
