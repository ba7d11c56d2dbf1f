"""Linear-algebra ops: MatMul, Gemm, MatMulInteger, Einsum, Det.

Float16 and bfloat16 operands are multiplied in float32 and rounded once at the end; integer
operands are multiplied exactly (in float64 only where every partial sum is an exact integer).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import TensorType, broadcast_dims, broadcast_shapes
from .registry import REQUIRED, op


def wide_float(*arrays):
    """The dtype to multiply floats in: float64 if any operand is, else float32."""
    return np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32


def is_float(a) -> bool:
    return not (a.dtype.kind in "iub")


def exact_int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matmul (numpy rules) returning int64; uses BLAS in float64 when that is exact."""
    k = a.shape[-1]
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * max(k, 1)
    if bound < 2.0 ** 53:
        return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def float_matmul(a: np.ndarray, b: np.ndarray, out_dtype) -> np.ndarray:
    dt = wide_float(a, b)
    return np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False)).astype(out_dtype,
                                                                               copy=False)


# --- MatMul --------------------------------------------------------------------------------
def matmul_shape(a, b, fail=None):
    """Result shape of numpy matmul on shapes a and b (1-d operands promoted then dropped)."""
    if a is None or b is None:
        return None
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if len(a2) < 2 or len(b2) < 2:
        if fail:
            fail("MatMul operands must have rank >= 1")
        return None
    k1, k2 = a2[-1], b2[-2]
    if isinstance(k1, int) and isinstance(k2, int) and k1 != k2 and fail:
        fail(f"inner dims differ: {k1} vs {k2}")
    batch = broadcast_shapes([a2[:-2], b2[:-2]], fail)
    out = tuple(batch) + (a2[-2], b2[-1])
    if len(b) == 1:
        out = out[:-1]
    if len(a) == 1:
        out = out[:-2] + out[-1:] if len(b) != 1 else out[:-1]
    return out


def infer_matmul(out_dtype=None, b_input: int = 1, dtype_input: int = 0):
    """Shape of input 0 times input b_input; dtype out_dtype or that of input dtype_input."""
    def rule(ctx):
        dt = out_dtype if out_dtype is not None else ctx.dtype(dtype_input)
        return [TensorType(dt, matmul_shape(ctx.shape(0), ctx.shape(b_input), ctx.fail))]
    return rule


@op("MatMul", inputs=["A", "B"], infer=infer_matmul())
def matmul(A, B):
    """Matrix product with numpy semantics: 1-d operands, broadcast batch dims."""
    if is_float(A):
        return float_matmul(A, B, A.dtype)
    return np.matmul(A, B).astype(A.dtype, copy=False)


# --- Gemm ----------------------------------------------------------------------------------
def upgrade_gemm(node):
    """Opsets before 7 had a `broadcast` flag; C always broadcasts now."""
    node.attrs.pop("broadcast", None)


def infer_gemm(ctx):
    a, b = ctx.shape(0), ctx.shape(1)
    m = a[1 if ctx.attrs["transA"] else 0] if a is not None and len(a) == 2 else None
    n = b[0 if ctx.attrs["transB"] else 1] if b is not None and len(b) == 2 else None
    return [TensorType(ctx.dtype(0), (m, n))]


def scaled(y, factor):
    """y * factor, staying integer when the factor is 1 (integer Gemm)."""
    if factor == 1:
        return y
    return y * factor


@op("Gemm", inputs=["A", "B", "C?"], attrs=dict(alpha=1.0, beta=1.0, transA=0, transB=0),
    infer=infer_gemm, upgrade=upgrade_gemm)
def gemm(A, B, C=None, *, alpha, beta, transA, transB):
    """alpha * A' @ B' + beta * C, where A' and B' are optionally transposed and C broadcasts."""
    a = A.T if transA else A
    b = B.T if transB else B
    if is_float(A):
        dt = wide_float(A, B)
        y = alpha * np.matmul(a.astype(dt, copy=False), b.astype(dt, copy=False))
        if C is not None and beta != 0:
            y = y + beta * C.astype(dt, copy=False)
        return y.astype(A.dtype, copy=False)
    y = scaled(np.matmul(a, b), alpha)
    if C is not None and beta != 0:
        y = y + scaled(C, beta)
    return np.asarray(y).astype(A.dtype)


# --- MatMulInteger -------------------------------------------------------------------------
def row_zero_point(zp, a):
    """A per-row zero point given as a vector (M,) applies along the rows of a (..., M, K)."""
    zp = zp.astype(np.int64)
    if zp.ndim == 1 and zp.size > 1 and a.ndim >= 2:
        return zp[:, None]
    return zp


@op("MatMulInteger", inputs=["A", "B", "a_zero_point?", "b_zero_point?"],
    infer=infer_matmul(dtypes.i32))
def matmul_integer(A, B, a_zero_point=None, b_zero_point=None):
    """(A - a_zero_point) @ (B - b_zero_point) on 8-bit integers, accumulated exactly in int32."""
    a = A.astype(np.int64)
    b = B.astype(np.int64)
    if a_zero_point is not None:
        a = a - row_zero_point(a_zero_point, A)
    if b_zero_point is not None:
        b = b - b_zero_point.astype(np.int64)
    return exact_int_matmul(a, b).astype(np.int32)


# --- Einsum --------------------------------------------------------------------------------
def split_equation(equation: str, n_inputs: int):
    """(input terms, output term) with the implicit output made explicit."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != n_inputs:
        raise ValueError(f"einsum equation {equation!r} has {len(terms)} terms for "
                         f"{n_inputs} inputs")
    if not arrow:
        letters = "".join(t.replace("...", "") for t in terms)
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        rhs = ("..." if any("..." in t for t in terms) else "") + "".join(once)
    return terms, rhs


def einsum_shape(equation: str, shapes):
    terms, rhs = split_equation(equation, len(shapes))
    if any(s is None for s in shapes):
        return None
    sizes: dict = {}
    ellipsis = ()
    for term, shape in zip(terms, shapes):
        head, dots, tail = term.partition("...")
        n_ell = len(shape) - len(head) - len(tail) if dots else 0
        if dots:
            ellipsis = tuple(broadcast_shapes([ellipsis, shape[len(head):len(head) + n_ell]]))
        named = list(zip(head, shape[:len(head)])) + list(zip(tail, shape[len(head) + n_ell:]))
        for letter, dim in named:
            sizes[letter] = broadcast_dims(sizes[letter], dim) if letter in sizes else dim
    head, dots, tail = rhs.partition("...")
    return tuple(sizes.get(c) for c in head) + (ellipsis if dots else ()) + \
        tuple(sizes.get(c) for c in tail)


def infer_einsum(ctx):
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    return [TensorType(ctx.dtype(0), einsum_shape(ctx.attrs["equation"], shapes))]


@op("Einsum", inputs=["Inputs*"], outputs=["Output"], attrs=dict(equation=REQUIRED),
    infer=infer_einsum)
def einsum(*Inputs, equation):
    """Einstein summation over the inputs as the equation says (ellipsis broadcasting)."""
    terms, rhs = split_equation(equation, len(Inputs))
    eq = ",".join(terms) + "->" + rhs
    out_dtype = Inputs[0].dtype
    if is_float(Inputs[0]):
        dt = wide_float(*Inputs)
        ins = [x.astype(dt, copy=False) for x in Inputs]
    else:
        ins = list(Inputs)
    return np.asarray(np.einsum(eq, *ins, optimize=len(ins) > 1)).astype(out_dtype, copy=False)


# --- Det -----------------------------------------------------------------------------------
def infer_det(ctx):
    shape = ctx.shape(0)
    return [TensorType(ctx.dtype(0), None if shape is None else tuple(shape[:-2]))]


@op("Det", inputs=["X"], infer=infer_det)
def det(X):
    """Determinant of each square matrix in the last two dims."""
    return np.asarray(np.linalg.det(X.astype(wide_float(X), copy=False))).astype(X.dtype)


OPS = [matmul, gemm, matmul_integer, einsum, det]
