"""PackedMatMul: a MatMul or Gemm whose constant B was packed at compile time into the panel layout
the GEMM micro-kernel reads (kiln/passes/pack_weights.py, kiln/backend/microkernel.py).

    Bp[j, k, c] = B[k, j*nr + c]        (shape (ceil(N/nr), K, nr); columns past N are zero)

`gemm=0`: numpy matmul semantics for A (..., M, K) or (K,) against the K x N matrix;
`gemm=1`: ONNX Gemm, Y = alpha * A' @ B + beta * C with A' = A.T when trans_a (A is 2-D).
The reference unpacks B and runs the MatMul/Gemm reference, so the interpreter and constant folding
need nothing else.
"""
from __future__ import annotations

import numpy as np

from . import linalg
from .infer import TensorType
from .linalg import matmul_shape
from .registry import REQUIRED, op


def pack_b(b: np.ndarray, nr: int) -> np.ndarray:
    """K x N -> (ceil(N/nr), K, nr) column panels, zero padded."""
    k, n = b.shape
    p = -(-n // nr)
    padded = np.zeros((k, p * nr), dtype=b.dtype)
    padded[:, :n] = b
    return np.ascontiguousarray(padded.reshape(k, p, nr).transpose(1, 0, 2))


def unpack_b(bp: np.ndarray, n: int) -> np.ndarray:
    p, k, nr = bp.shape
    return bp.transpose(1, 0, 2).reshape(k, p * nr)[:, :n]


def _infer(ctx):
    at = ctx.attrs
    a = ctx.shape(0)
    k, n = at["k"], at["n"]
    if at["gemm"]:
        m = None if a is None or len(a) != 2 else a[1 if at["trans_a"] else 0]
        return [TensorType(ctx.dtype(0), (m, n))]
    return [TensorType(ctx.dtype(0), matmul_shape(a, (k, n), ctx.fail))]


@op("PackedMatMul", inputs=["A", "Bp", "C?"],
    attrs=dict(k=REQUIRED, n=REQUIRED, gemm=0, trans_a=0, alpha=1.0, beta=1.0),
    infer=_infer, domain="kiln")
def packed_matmul(A, Bp, C=None, *, k, n, gemm, trans_a, alpha, beta):
    """MatMul/Gemm with B pre-packed into column panels (kiln/passes/pack_weights.py)."""
    b = unpack_b(Bp, n)
    if gemm:
        return linalg.gemm.reference(A, b, C, alpha=alpha, beta=beta, transA=trans_a, transB=0)
    return linalg.matmul.reference(A, b)


OPS = [packed_matmul]
