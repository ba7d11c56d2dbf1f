"""PackedMatMul: a MatMul or Gemm whose constant B was packed at compile time into the layout the
GEMM micro-kernel reads (kiln/passes/pack_weights.py, kiln/backend/microkernel.py): blocks of kc
rows of B, one after the other; inside a block, column panels of nr, each kc x nr row-major:

    Bp.flat[pc*Np + j*kcb*nr + k*nr + c] = B[pc + k, j*nr + c]
        pc = 0, kc, 2kc, ...; kcb = min(kc, K - pc); Np = ceil(N/nr)*nr (columns past N are zero)

so the B block a (kc x nc) step of the GEMM reads is one contiguous run of memory (no cache-set
aliasing between panels, whatever K is). Bp has shape (K * Np / nr, nr).

`gemm=0`: numpy matmul semantics for A (..., M, K) or (K,) against the K x N matrix;
`gemm=1`: ONNX Gemm, Y = alpha * A' @ B + beta * C with A' = A.T when trans_a (A is 2-D).
The reference unpacks B and runs the MatMul/Gemm reference, so the interpreter and constant folding
need nothing else.
"""
from __future__ import annotations

import numpy as np

from . import linalg, nn
from .infer import TensorType
from .linalg import matmul_shape
from .nn_window import infer_window_shape
from .registry import REQUIRED, op


def _aligned(size: int, dtype) -> np.ndarray:
    raw = np.empty(size + 64 // np.dtype(dtype).itemsize, dtype=dtype)
    skip = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[skip:skip + size]


def pack_b(b: np.ndarray, nr: int, kc: int) -> np.ndarray:
    """K x N -> the blocked panel layout above; the array starts on a 64-byte boundary (panel rows
    are whole cache lines for the micro-kernel's loads)."""
    k, n = b.shape
    p = -(-n // nr)
    padded = np.zeros((k, p * nr), dtype=b.dtype)
    padded[:, :n] = b
    out = _aligned(p * k * nr, b.dtype)
    for pc in range(0, k, kc):
        kcb = min(kc, k - pc)
        blk = padded[pc:pc + kcb].reshape(kcb, p, nr).transpose(1, 0, 2)
        out[pc * p * nr:(pc + kcb) * p * nr] = blk.reshape(-1)
    return out.reshape(p * k, nr)


def unpack_b(bp: np.ndarray, n: int, k: int, kc: int) -> np.ndarray:
    """The K x N matrix of a packed B (inverse of pack_b)."""
    nr = bp.shape[-1]
    p = bp.size // (k * nr)
    flat = bp.reshape(-1)
    out = np.empty((k, p * nr), dtype=bp.dtype)
    for pc in range(0, k, kc):
        kcb = min(kc, k - pc)
        blk = flat[pc * p * nr:(pc + kcb) * p * nr].reshape(p, kcb, nr)
        out[pc:pc + kcb] = blk.transpose(1, 0, 2).reshape(kcb, p * nr)
    return out[:, :n]


def _infer(ctx):
    at = ctx.attrs
    a = ctx.shape(0)
    k, n = at["k"], at["n"]
    if at["gemm"]:
        m = None if a is None or len(a) != 2 else a[1 if at["trans_a"] else 0]
        return [TensorType(ctx.dtype(0), (m, n))]
    return [TensorType(ctx.dtype(0), matmul_shape(a, (k, n), ctx.fail))]


@op("PackedMatMul", inputs=["A", "Bp", "C?"],
    attrs=dict(k=REQUIRED, n=REQUIRED, kc=REQUIRED, gemm=0, trans_a=0, alpha=1.0, beta=1.0),
    infer=_infer, domain="kiln")
def packed_matmul(A, Bp, C=None, *, k, n, kc, gemm, trans_a, alpha, beta):
    """MatMul/Gemm with B pre-packed into column panels (kiln/passes/pack_weights.py)."""
    b = unpack_b(Bp, n, k, kc)
    if gemm:
        return linalg.gemm.reference(A, b, C, alpha=alpha, beta=beta, transA=trans_a, transB=0)
    return linalg.matmul.reference(A, b)


# --- PackedConv: a Conv whose weights, seen as the M x (C*KH*KW) matrix A of its implicit GEMM,
# were packed at compile time into the row panels the micro-kernel reads:
#     Ap.flat[pc*Mp + p*kcb*mr + k*mr + r] = A[p*mr + r, pc + k]      (rows past M are zero)
# the A-side twin of pack_b (Mp = ceil(M/mr)*mr), so a run packs only the activations.
def pack_a(a: np.ndarray, mr: int, kc: int) -> np.ndarray:
    """M x K -> the row-panel layout above, 64-byte aligned, shape (Mp*K/mr, mr): A's row panels
    are B's column panels of A transposed."""
    return pack_b(a.T, mr, kc)


def unpack_a(ap: np.ndarray, m: int, k: int, kc: int) -> np.ndarray:
    """The M x K matrix of a packed A (inverse of pack_a)."""
    return np.ascontiguousarray(unpack_b(ap, m, k, kc).T)


def _infer_conv(ctx):
    a = ctx.attrs
    shape = infer_window_shape(ctx, a["m"], tuple(a["kernel_shape"]), a["strides"], a["dilations"],
                               a["pads"], a["auto_pad"])
    return [TensorType(ctx.dtype(0), shape)]


@op("PackedConv", inputs=["X", "Wp", "B?"],
    attrs=dict(nn.CONV_ATTRS, kernel_shape=REQUIRED, m=REQUIRED, c=REQUIRED, kc=REQUIRED),
    infer=_infer_conv, domain="kiln")
def packed_conv(X, Wp, B=None, *, m, c, kc, auto_pad, dilations, group, kernel_shape, pads, strides):
    """Conv with its weights pre-packed into GEMM row panels (kiln/passes/pack_weights.py)."""
    taps = int(np.prod(kernel_shape))
    w = unpack_a(Wp, m, c * taps, kc).reshape(m, c, *kernel_shape)
    return nn.conv.reference(X, w, B, auto_pad=auto_pad, dilations=dilations, group=group,
                             kernel_shape=kernel_shape, pads=pads, strides=strides)


OPS = [packed_matmul, packed_conv]
