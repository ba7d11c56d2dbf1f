"""The ATen op table of the PyTorch importer: one handler per ATen op (or family), each
emitting the kiln ops that compute it. `FXImporter` (torch_import.py) looks ops up in `HANDLERS`."""
from __future__ import annotations

import math
import operator
from typing import Callable

import numpy as np

from ..errors import UnsupportedError
from ..ir import dtypes
from ..ir.graph import Value
from .torch_import import (INT64_MAX, FXImporter, Multi, Sym, _expr_of, _is_symint, _torch, kiln_dtype,
                           op_name)


# --- handlers --------------------------------------------------------------------------------
HANDLERS: dict[str, Callable] = {}


def handles(*names):
    def wrap(fn):
        for nm in names:
            HANDLERS[nm] = fn
        return fn
    return wrap


def _result_dtype(imp: FXImporter, a, b) -> dtypes.DType:
    torch = _torch()
    va, vb = imp.val(a), imp.val(b)
    va = int(va) if _is_symint(va) else va
    vb = int(vb) if _is_symint(vb) else vb
    # torch.result_type needs one tensor; two scalars promote like python numbers
    if not isinstance(va, torch.Tensor) and not isinstance(vb, torch.Tensor):
        return dtypes.f32 if isinstance(va, float) or isinstance(vb, float) else dtypes.i64
    return kiln_dtype(torch.result_type(va, vb))


def _binary(op: str, compare: bool = False):
    def h(imp: FXImporter, a):
        x, y = a["self"], a["other"]
        dt = _result_dtype(imp, x, y) if compare else imp.out_dtype()
        alpha = a.get("alpha", 1)
        X, Y = imp.tensor(x, dt), imp.tensor(y, dt)
        if alpha is not None and alpha != 1:
            Y = imp.emit("Mul", [Y, imp.tensor(alpha, dt)])
        return imp.emit(op, [X, Y])
    return h


for _n, _op in [("add", "Add"), ("sub", "Sub"), ("mul", "Mul"), ("maximum", "Max"),
                ("minimum", "Min")]:
    handles(f"aten.{_n}.Tensor", f"aten.{_n}.Scalar", f"aten.{_n}.default")(_binary(_op))
for _n, _op in [("eq", "Equal"), ("lt", "Less"), ("le", "LessOrEqual"), ("gt", "Greater"),
                ("ge", "GreaterOrEqual")]:
    handles(f"aten.{_n}.Tensor", f"aten.{_n}.Scalar")(_binary(_op, compare=True))


@handles("aten.ne.Tensor", "aten.ne.Scalar")
def _ne(imp, a):
    return imp.emit("Not", [_binary("Equal", compare=True)(imp, a)])


@handles("aten.rsub.Tensor", "aten.rsub.Scalar")
def _rsub(imp, a):
    dt = imp.out_dtype()
    X, Y = imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)
    alpha = a.get("alpha", 1)
    if alpha != 1:
        X = imp.emit("Mul", [X, imp.tensor(alpha, dt)])
    return imp.emit("Sub", [Y, X])


@handles("aten.div.Tensor", "aten.div.Scalar", "aten.true_divide.Tensor")
def _div(imp, a):
    dt = imp.out_dtype()
    return imp.emit("Div", [imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)])


def _floor_div(imp, X, Y, dt):
    if dt.is_float:
        return imp.emit("Floor", [imp.emit("Div", [X, Y])])
    q = imp.emit("Div", [X, Y])                        # truncates toward zero
    r = imp.emit("Mod", [X, Y], {"fmod": 1})
    zero = imp.const(np.zeros((), dt.numpy))
    inexact = imp.emit("Not", [imp.emit("Equal", [r, zero])])
    signs = imp.emit("Xor", [imp.emit("Less", [X, zero]), imp.emit("Less", [Y, zero])])
    adj = imp.cast(imp.emit("And", [inexact, signs]), dt)
    return imp.emit("Sub", [q, adj])


def _trunc(imp, X):
    zero = imp.const(np.zeros((), imp.dtype(X).numpy))
    return imp.emit("Where", [imp.emit("Less", [X, zero]), imp.emit("Ceil", [X]), imp.emit("Floor", [X])])


@handles("aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div_mode(imp, a):
    dt = imp.out_dtype()
    X, Y = imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)
    mode = a.get("rounding_mode")
    if mode is None:
        return imp.emit("Div", [X, Y])
    if mode == "floor":
        return _floor_div(imp, X, Y, dt)
    if dt.is_float:
        return _trunc(imp, imp.emit("Div", [X, Y]))
    return imp.emit("Div", [X, Y])


@handles("aten.floor_divide.default", "aten.floor_divide.Scalar")
def _floordiv(imp, a):
    dt = imp.out_dtype()
    return _floor_div(imp, imp.tensor(a["self"], dt), imp.tensor(a["other"], dt), dt)


@handles("aten.remainder.Tensor", "aten.remainder.Scalar")
def _remainder(imp, a):
    dt = imp.out_dtype()
    X, Y = imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)
    if dt.is_float:       # x - floor(x / y) * y, the sign of the divisor
        return imp.emit("Sub", [X, imp.emit("Mul", [imp.emit("Floor", [imp.emit("Div", [X, Y])]), Y])])
    return imp.emit("Mod", [X, Y], {"fmod": 0})


@handles("aten.fmod.Tensor", "aten.fmod.Scalar")
def _fmod(imp, a):
    dt = imp.out_dtype()
    return imp.emit("Mod", [imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)], {"fmod": 1})


@handles("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(imp, a):
    dt = imp.out_dtype()
    base, exp = a["self"], a["exponent"]
    X = imp.tensor(base, dt)
    if isinstance(exp, (int, float)) and not isinstance(exp, bool):
        if exp == 1:
            return imp.emit("Identity", [X])
        if exp == 2:
            return imp.emit("Mul", [X, X])
        if exp == 0.5:
            return imp.emit("Sqrt", [X])
    return imp.emit("Pow", [X, imp.tensor(exp, dt)])


def _logical(op):
    def h(imp, a):
        b = dtypes.boolean
        return imp.emit(op, [imp.tensor(a["self"], b), imp.tensor(a["other"], b)])
    return h


handles("aten.logical_and.default")(_logical("And"))
handles("aten.logical_or.default")(_logical("Or"))
handles("aten.logical_xor.default")(_logical("Xor"))


def _bitwise(bool_op, int_op):
    def h(imp, a):
        dt = imp.out_dtype()
        X, Y = imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)
        return imp.emit(bool_op if dt == dtypes.boolean else int_op, [X, Y])
    return h


handles("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(_bitwise("And", "BitwiseAnd"))
handles("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(_bitwise("Or", "BitwiseOr"))
handles("aten.bitwise_xor.Tensor", "aten.bitwise_xor.Scalar")(_bitwise("Xor", "BitwiseXor"))


@handles("aten.logical_not.default")
def _lnot(imp, a):
    return imp.emit("Not", [imp.tensor(a["self"], dtypes.boolean)])


@handles("aten.bitwise_not.default")
def _bnot(imp, a):
    X = imp.tensor(a["self"])
    return imp.emit("Not" if imp.dtype(X) == dtypes.boolean else "BitwiseNot", [X])


def _unary(op, attrs=None, float_in: bool = False):
    def h(imp, a):
        dt = imp.out_dtype() if float_in else None
        return imp.emit(op, [imp.tensor(a["self"], dt)], attrs)
    return h


for _n, _op in [("abs", "Abs"), ("neg", "Neg"), ("relu", "Relu"), ("sign", "Sign"),
                ("sgn", "Sign"), ("floor", "Floor"), ("ceil", "Ceil"), ("isnan", "IsNaN"),
                ("isinf", "IsInf")]:
    handles(f"aten.{_n}.default")(_unary(_op))
for _n, _op in [("exp", "Exp"), ("log", "Log"), ("sqrt", "Sqrt"), ("reciprocal", "Reciprocal"),
                ("sigmoid", "Sigmoid"), ("tanh", "Tanh"), ("sin", "Sin"), ("cos", "Cos"),
                ("tan", "Tan"), ("asin", "Asin"), ("acos", "Acos"), ("atan", "Atan"),
                ("sinh", "Sinh"), ("cosh", "Cosh"), ("asinh", "Asinh"), ("acosh", "Acosh"),
                ("atanh", "Atanh"), ("erf", "Erf")]:
    handles(f"aten.{_n}.default")(_unary(_op, float_in=True))


@handles("aten.round.default")
def _round(imp, a):
    return imp.emit("Round", [imp.tensor(a["self"])])


@handles("aten.trunc.default")
def _trunc_h(imp, a):
    return _trunc(imp, imp.tensor(a["self"]))


@handles("aten.rsqrt.default")
def _rsqrt(imp, a):
    return imp.emit("Reciprocal", [imp.emit("Sqrt", [imp.tensor(a["self"], imp.out_dtype())])])


@handles("aten.log1p.default")
def _log1p(imp, a):
    X = imp.tensor(a["self"], imp.out_dtype())
    return imp.emit("Log", [imp.emit("Add", [X, imp.tensor(1.0, imp.dtype(X))])])


@handles("aten.expm1.default")
def _expm1(imp, a):
    X = imp.tensor(a["self"], imp.out_dtype())
    return imp.emit("Sub", [imp.emit("Exp", [X]), imp.tensor(1.0, imp.dtype(X))])


@handles("aten.log2.default", "aten.log10.default")
def _logb(imp, a):
    X = imp.tensor(a["self"], imp.out_dtype())
    k = 1 / math.log(2) if "log2" in op_name(imp.cur.target) else 1 / math.log(10)
    return imp.emit("Mul", [imp.emit("Log", [X]), imp.tensor(k, imp.dtype(X))])


@handles("aten.exp2.default")
def _exp2(imp, a):
    X = imp.tensor(a["self"], imp.out_dtype())
    return imp.emit("Pow", [imp.tensor(2.0, imp.dtype(X)), X])


@handles("aten.gelu.default")
def _gelu(imp, a):
    return imp.emit("Gelu", [imp.tensor(a["self"])], {"approximate": a.get("approximate") or "none"})


@handles("aten.silu.default")
def _silu(imp, a):
    return imp.emit("Swish", [imp.tensor(a["self"])], {"alpha": 1.0})


@handles("aten.mish.default")
def _mish(imp, a):
    return imp.emit("Mish", [imp.tensor(a["self"])])


@handles("aten.hardtanh.default", "aten.clamp.default", "aten.clamp_min.default",
         "aten.clamp_max.default")
def _clip(imp, a):
    X = imp.tensor(a["self"])
    dt = imp.out_dtype()
    X = imp.cast(X, dt)
    name = op_name(imp.cur.target)
    if "hardtanh" in name:
        lo, hi = a["min_val"], a["max_val"]
    elif "clamp_min" in name:
        lo, hi = a["min"], None
    elif "clamp_max" in name:
        lo, hi = None, a["max"]
    else:
        lo, hi = a["min"], a["max"]
    ins = [X, None if lo is None else imp.tensor(lo, dt), None if hi is None else imp.tensor(hi, dt)]
    return imp.emit("Clip", ins)


@handles("aten.clamp.Tensor")
def _clamp_t(imp, a):
    dt = imp.out_dtype()
    X = imp.tensor(a["self"], dt)
    if a.get("min") is not None:
        X = imp.emit("Max", [X, imp.tensor(a["min"], dt)])
    if a.get("max") is not None:
        X = imp.emit("Min", [X, imp.tensor(a["max"], dt)])
    return X


@handles("aten.hardsigmoid.default")
def _hsig(imp, a):
    return imp.emit("HardSigmoid", [imp.tensor(a["self"])], {"alpha": 1.0 / 6, "beta": 0.5})


@handles("aten.hardswish.default")
def _hswish(imp, a):
    return imp.emit("HardSwish", [imp.tensor(a["self"])])


@handles("aten.leaky_relu.default")
def _lrelu(imp, a):
    return imp.emit("LeakyRelu", [imp.tensor(a["self"])], {"alpha": float(a["negative_slope"])})


@handles("aten.elu.default")
def _elu(imp, a):
    X = imp.tensor(a["self"])
    alpha, scale, iscale = float(a["alpha"]), float(a["scale"]), float(a["input_scale"])
    dt = imp.dtype(X)
    if iscale != 1:
        X = imp.emit("Mul", [X, imp.tensor(iscale, dt)])
    y = imp.emit("Elu", [X], {"alpha": alpha})
    if iscale != 1:    # elu(x) = scale * (x if x > 0 else alpha (exp(x * input_scale) - 1))
        pos = imp.emit("Greater", [X, imp.tensor(0.0, dt)])
        y = imp.emit("Where", [pos, imp.emit("Div", [X, imp.tensor(iscale, dt)]), y])
    if scale != 1:
        y = imp.emit("Mul", [y, imp.tensor(scale, dt)])
    return y


@handles("aten.softplus.default")
def _softplus(imp, a):
    X = imp.tensor(a["self"])
    beta, thr = float(a["beta"]), float(a["threshold"])
    dt = imp.dtype(X)
    bx = X if beta == 1 else imp.emit("Mul", [X, imp.tensor(beta, dt)])
    y = imp.emit("Softplus", [bx])
    if beta != 1:
        y = imp.emit("Div", [y, imp.tensor(beta, dt)])
    lin = imp.emit("Greater", [bx, imp.tensor(thr, dt)])
    return imp.emit("Where", [lin, X, y])


@handles("aten._prelu_kernel.default", "aten.prelu.default")
def _prelu(imp, a):
    X = imp.tensor(a["self"])
    W = imp.tensor(a["weight"])
    r = imp.rank(X)
    if imp.rank(W) == 1 and r is not None and r >= 2:      # per channel (dim 1)
        W = imp.emit("Reshape", [W, imp.i64([-1] + [1] * (r - 2))])
    return imp.emit("PRelu", [X, W])


@handles("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(imp, a):
    dt = imp.out_dtype()
    C = imp.tensor(a["condition"], dtypes.boolean)
    return imp.emit("Where", [C, imp.tensor(a["self"], dt), imp.tensor(a["other"], dt)])


@handles("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(imp, a):
    dt = imp.out_dtype()
    C = imp.tensor(a["mask"], dtypes.boolean)
    return imp.emit("Where", [C, imp.tensor(a["value"], dt), imp.tensor(a["self"], dt)])


# --- no-ops and casts ---------------------------------------------------------------------
@handles("aten.clone.default", "aten.alias.default", "aten.detach.default",
         "aten.lift_fresh_copy.default", "aten.contiguous.default", "aten.alias_copy.default")
def _identity(imp, a):
    return imp.get(a["self"] if "self" in a else a["input"])


@handles("aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
         "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default",
         "aten._assert_async.msg", "aten._assert_async.default", "aten._functional_assert_async.msg",
         "aten._functional_sym_constrain_range_for_size.default",
         "aten._functional_sym_constrain_range.default")
def _drop(imp, a):
    return None


@handles("aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout")
def _to_copy(imp, a):
    X = imp.tensor(a["self"])
    dt = imp.out_dtype()
    return imp.cast(X, dt)


@handles("aten.copy.default")
def _copy(imp, a):
    dt = imp.out_dtype()
    src = imp.tensor(a["src"], dt)
    dst = imp.tensor(a["self"])
    if imp.val(a["src"]).shape == imp.val(a["self"]).shape:
        return src
    return imp.emit("Expand", [src, imp.emit("Shape", [dst])])


# --- shapes --------------------------------------------------------------------------------
def _reshape_target(imp, x, size):
    """Reshape target for `size`: constant where possible (0 copies an unchanged dim, one -1 for
    a dim that is only known symbolically), else computed from the symbolic sizes."""
    kind, v = imp.int_list(size)
    if kind == "static":
        return imp.i64(v)
    ex = imp.exprs(size)
    in_ex = imp.in_shape_exprs(x) or []
    zero_ok = all(e != 0 for e in ex)
    target, unknown = [], []
    for i, e in enumerate(ex):
        if isinstance(e, int):
            target.append(e)
        elif zero_ok and i < len(in_ex) and in_ex[i] is not None and e == in_ex[i]:
            target.append(0)
        else:
            target.append(None)
            unknown.append(i)
    if -1 in target:
        unknown.append(None)
    if len(unknown) == 1 and unknown[0] is not None:
        target[unknown[0]] = -1
        return imp.i64(target)
    if not unknown:
        return imp.i64(target)
    return v


@handles("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default",
         "aten.view_copy.default")
def _view(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    size = a["size"] if "size" in a else a["shape"]
    ex = imp.exprs(size)
    if ex == imp.in_shape_exprs(x):
        return X
    return imp.emit("Reshape", [X, _reshape_target(imp, x, size)])


def _norm_dims(dims, rank):
    if isinstance(dims, int):
        dims = [dims]
    return [d + rank if d < 0 else d for d in dims]


@handles("aten.permute.default", "aten.permute_copy.default")
def _permute(imp, a):
    X = imp.tensor(a["self"])
    perm = _norm_dims(list(a["dims"]), imp.rank(X))
    if perm == list(range(len(perm))):
        return X
    return imp.emit("Transpose", [X], {"perm": perm})


@handles("aten.transpose.int")
def _transpose(imp, a):
    X = imp.tensor(a["self"])
    r = imp.rank(X)
    d0, d1 = _norm_dims([a["dim0"], a["dim1"]], r)
    perm = list(range(r))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    if d0 == d1:
        return X
    return imp.emit("Transpose", [X], {"perm": perm})


@handles("aten.t.default")
def _t(imp, a):
    X = imp.tensor(a["self"])
    if imp.rank(X) < 2:
        return X
    return imp.emit("Transpose", [X], {"perm": [1, 0]})


@handles("aten.unsqueeze.default", "aten.unsqueeze_copy.default")
def _unsqueeze(imp, a):
    X = imp.tensor(a["self"])
    d = a["dim"]
    d = d + imp.rank(X) + 1 if d < 0 else d
    return imp.emit("Unsqueeze", [X, imp.i64([d])])


@handles("aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default", "aten.squeeze_copy.dim",
         "aten.squeeze_copy.dims")
def _squeeze(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    shape = imp.in_shape_exprs(x)
    r = len(shape)
    dims = a.get("dim", a.get("dims"))
    dims = list(range(r)) if dims is None else _norm_dims(dims, r)
    axes = [d for d in dims if shape[d] == 1]
    if not axes:
        return X
    return imp.emit("Squeeze", [X, imp.i64(axes)])


@handles("aten.expand.default", "aten.expand_copy.default")
def _expand(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    size = list(a["size"])
    ex = imp.exprs(size)
    in_ex = imp.in_shape_exprs(x) or []
    off = len(ex) - len(in_ex)
    target, dynamic = [], False
    for i, e in enumerate(ex):
        j = i - off
        if isinstance(e, int):
            target.append(1 if e == -1 else e)
        elif j >= 0 and in_ex[j] is not None and e == in_ex[j]:
            target.append(1)                   # broadcasting keeps the input's own dim
        else:
            target.append(None)
            dynamic = True
    if not dynamic:
        if off == 0 and all(t == 1 or (isinstance(f, int) and t == f) for t, f in zip(target, in_ex)):
            return X
        return imp.emit("Expand", [X, imp.i64(target)])
    size = [1 if isinstance(e, int) and e == -1 else s for e, s in zip(ex, size)]
    return imp.emit("Expand", [X, imp.int_list(size)[1]])


@handles("aten.cat.default", "aten.concat.default")
def _cat(imp, a):
    dt = imp.out_dtype()
    xs = [x for x in a["tensors"] if not (tuple(imp.val(x).shape) == (0,) and imp.val(x).dim() == 1)]
    r = imp.out_val().dim()
    vals = [imp.tensor(x, dt) for x in xs]
    if len(vals) == 1:
        return vals[0]
    axis = a["dim"] + r if a["dim"] < 0 else a["dim"]
    return imp.emit("Concat", vals, {"axis": axis})


@handles("aten.stack.default")
def _stack(imp, a):
    dt = imp.out_dtype()
    r = imp.out_val().dim()
    axis = a["dim"] + r if a["dim"] < 0 else a["dim"]
    vals = [imp.emit("Unsqueeze", [imp.tensor(x, dt), imp.i64([axis])]) for x in a["tensors"]]
    return vals[0] if len(vals) == 1 else imp.emit("Concat", vals, {"axis": axis})


def _index_value(imp, x) -> Value:
    """An int / SymInt index as an i64[1] value."""
    g = imp.get(x)
    if isinstance(g, Sym):
        return imp.sym_value(g)
    return imp.i64([int(g)])


@handles("aten.slice.Tensor", "aten.slice_copy.Tensor")
def _slice(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    shape = imp.in_shape_exprs(x)
    dim = _norm_dims(a["dim"], len(shape))[0]
    start, end, step = a.get("start"), a.get("end"), a.get("step") or 1
    start = 0 if start is None else start
    end = INT64_MAX if end is None else end
    es, ee = _expr_of(imp.val(start)), _expr_of(imp.val(end))
    n = shape[dim]
    if es == 0 and step == 1 and (ee == INT64_MAX or (ee is not None and ee == n)
                                  or (isinstance(ee, int) and isinstance(n, int) and ee >= n)):
        return X
    starts, ends = _index_value(imp, start), _index_value(imp, end)
    return imp.emit("Slice", [X, starts, ends, imp.i64([dim]), imp.i64([int(step)])])


@handles("aten.select.int", "aten.select_copy.int")
def _select(imp, a):
    X = imp.tensor(a["self"])
    dim = _norm_dims(a["dim"], imp.rank(X))[0]
    g = imp.get(a["index"])
    idx = imp.emit("Squeeze", [imp.sym_value(g), imp.i64([0])]) if isinstance(g, Sym) and g.static is None \
        else imp.const(np.asarray(g.static if isinstance(g, Sym) else int(g), np.int64), "index")
    return imp.emit("Gather", [X, idx], {"axis": dim})


@handles("aten.split_with_sizes.default", "aten.split.Tensor", "aten.split_with_sizes_copy.default",
         "aten.split.sizes", "aten.unbind.int")
def _split(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    shape = imp.in_shape_exprs(x)
    dim = _norm_dims(a["dim"], len(shape))[0]
    outs = imp.out_val()
    sizes = [_expr_of(o.shape[dim]) for o in outs]
    if all(isinstance(e, int) for e in sizes):
        split = imp.i64(sizes)
    else:                                  # sizes of a symbolic dim, computed at run time
        split = imp.emit("Concat", [imp.sym_expr(e) if not isinstance(e, int) else imp.i64([e])
                                    for e in sizes], {"axis": 0})
    if "unbind" in op_name(imp.cur.target):
        parts = imp.emit("Split", [X, split], {"axis": dim}, n_out=len(sizes))
        parts = parts if isinstance(parts, list) else [parts]
        return Multi(imp.emit("Squeeze", [p, imp.i64([dim])]) for p in parts)
    if len(sizes) == 1:
        return Multi([X])
    return Multi(imp.emit("Split", [X, split], {"axis": dim}, n_out=len(sizes)))


@handles("aten.index_select.default")
def _index_select(imp, a):
    X = imp.tensor(a["self"])
    dim = _norm_dims(a["dim"], imp.rank(X))[0]
    return imp.emit("Gather", [X, imp.tensor(a["index"], dtypes.i64)], {"axis": dim})


@handles("aten.gather.default")
def _gather(imp, a):
    X = imp.tensor(a["self"])
    dim = _norm_dims(a["dim"], imp.rank(X))[0]
    return imp.emit("GatherElements", [X, imp.tensor(a["index"], dtypes.i64)], {"axis": dim})


@handles("aten.embedding.default")
def _embedding(imp, a):
    return imp.emit("Gather", [imp.tensor(a["weight"]), imp.tensor(a["indices"], dtypes.i64)],
                    {"axis": 0})


@handles("aten.index.Tensor")
def _index(imp, a):
    """x[i0, i1, ...] with index tensors (advanced indexing): one index -> Gather; several
    adjacent ones from dim 0 -> GatherND over their broadcast."""
    x = a["self"]
    X = imp.tensor(x)
    idx = list(a["indices"])
    present = [i for i, t in enumerate(idx) if t is not None]
    for i in present:
        if kiln_dtype(imp.val(idx[i]).dtype) == dtypes.boolean:
            raise UnsupportedError(f"{imp.where()}: boolean mask indexing gives a data-dependent "
                                   "shape; kiln does not support it")
    if len(present) == 1:
        return imp.emit("Gather", [X, imp.tensor(idx[present[0]], dtypes.i64)], {"axis": present[0]})
    if present != list(range(len(present))):
        raise UnsupportedError(f"{imp.where()}: advanced indexing on non-leading or "
                               "non-adjacent dims is not supported")
    vals = [imp.tensor(idx[i], dtypes.i64) for i in present]
    zero = None
    for v in vals:                       # broadcast all index tensors to one shape
        z = imp.emit("Mul", [v, imp.i64(0)])
        zero = z if zero is None else imp.emit("Add", [zero, z])
    cols = [imp.emit("Unsqueeze", [imp.emit("Add", [v, zero]), imp.i64([-1])]) for v in vals]
    return imp.emit("GatherND", [X, imp.emit("Concat", cols, {"axis": -1})])


@handles("aten.constant_pad_nd.default")
def _pad(imp, a):
    X = imp.tensor(a["self"])
    r = imp.rank(X)
    pad = list(a["pad"])
    begins, ends = [0] * r, [0] * r
    for k in range(len(pad) // 2):
        d = r - 1 - k
        begins[d], ends[d] = int(pad[2 * k]), int(pad[2 * k + 1])
    value = a.get("value") or 0
    return imp.emit("Pad", [X, imp.i64(begins + ends), imp.tensor(value, imp.dtype(X))],
                    {"mode": "constant"})


@handles("aten.reflection_pad1d.default", "aten.reflection_pad2d.default",
         "aten.reflection_pad3d.default", "aten.replication_pad1d.default",
         "aten.replication_pad2d.default", "aten.replication_pad3d.default")
def _pad_mode(imp, a):
    X = imp.tensor(a["self"])
    r = imp.rank(X)
    pad = list(a["padding"])
    begins, ends = [0] * r, [0] * r
    for k in range(len(pad) // 2):
        d = r - 1 - k
        begins[d], ends[d] = int(pad[2 * k]), int(pad[2 * k + 1])
    mode = "reflect" if "reflection" in op_name(imp.cur.target) else "edge"
    return imp.emit("Pad", [X, imp.i64(begins + ends)], {"mode": mode})


@handles("aten.flip.default")
def _flip(imp, a):
    X = imp.tensor(a["self"])
    dims = _norm_dims(list(a["dims"]), imp.rank(X))
    k = len(dims)
    return imp.emit("Slice", [X, imp.i64([-1] * k), imp.i64([-INT64_MAX] * k), imp.i64(dims),
                              imp.i64([-1] * k)])


@handles("aten.repeat.default")
def _repeat(imp, a):
    X = imp.tensor(a["self"])
    reps = [int(r) for r in a["repeats"]]
    r = imp.rank(X)
    if len(reps) > r:
        X = imp.emit("Unsqueeze", [X, imp.i64(list(range(len(reps) - r)))])
    return imp.emit("Tile", [X, imp.i64(reps)])


@handles("aten.tril.default", "aten.triu.default")
def _trilu(imp, a):
    upper = 1 if "triu" in op_name(imp.cur.target) else 0
    return imp.emit("Trilu", [imp.tensor(a["self"]), imp.i64(int(a.get("diagonal") or 0))],
                    {"upper": upper})


@handles("aten.pixel_shuffle.default")
def _pixel_shuffle(imp, a):
    return imp.emit("DepthToSpace", [imp.tensor(a["self"])],
                    {"blocksize": int(a["upscale_factor"]), "mode": "CRD"})


# --- creation ------------------------------------------------------------------------------
def _fill(imp, shape_kind, shape, value, dt):
    if shape_kind == "static":
        return imp.const(np.full(shape, value, dt.numpy), "full")
    return imp.emit("ConstantOfShape", [shape], {"value": np.full((1,), value, dt.numpy)})


@handles("aten.full.default", "aten.zeros.default", "aten.ones.default", "aten.empty.memory_format",
         "aten.new_full.default", "aten.new_zeros.default", "aten.new_ones.default",
         "aten.new_empty.default", "aten.empty_strided.default")
def _full(imp, a):
    dt = imp.out_dtype()
    name = op_name(imp.cur.target)
    value = a.get("fill_value", 1 if "ones" in name else 0)
    if isinstance(value, Value) or hasattr(value, "meta"):
        raise UnsupportedError(f"{imp.where()}: a fill value computed at run time is not supported")
    kind, shape = imp.int_list(a["size"])
    return _fill(imp, kind, shape, value, dt)


@handles("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default",
         "aten.empty_like.default")
def _full_like(imp, a):
    dt = imp.out_dtype()
    name = op_name(imp.cur.target)
    value = a.get("fill_value", 1 if "ones" in name else 0)
    x = a["self"]
    shape = list(imp.val(x).shape)
    kind, s = imp.int_list(shape)
    if kind == "dynamic":
        s = imp.emit("Shape", [imp.tensor(x)])
    return _fill(imp, kind, s, value, dt)


@handles("aten.scalar_tensor.default")
def _scalar_tensor(imp, a):
    return imp.const(np.asarray(a["s"], imp.out_dtype().numpy), "scalar")


@handles("aten.arange.start_step", "aten.arange.default", "aten.arange.start")
def _arange(imp, a):
    dt = imp.out_dtype()
    start, end, step = a.get("start", 0), a["end"], a.get("step", 1)
    start = 0 if start is None else start
    step = 1 if step is None else step
    ex = [_expr_of(imp.val(v)) if not isinstance(v, float) else v for v in (start, end, step)]
    if all(isinstance(e, (int, float)) for e in ex):
        return imp.const(np.arange(ex[0], ex[1], ex[2]).astype(dt.numpy), "arange")
    vals = [imp.tensor(v, dt) for v in (start, end, step)]
    return imp.emit("Range", vals)


# --- linear algebra -------------------------------------------------------------------------
def _transposed_const(imp, x):
    """(Value, transposed?) for a matmul operand: a 2-d permute/t of a tensor reads the
    original with trans set, so weights stay in their stored layout."""
    if hasattr(x, "op") and x.op == "call_function":
        name = op_name(x.target)
        if name in ("aten.permute.default", "aten.t.default", "aten.transpose.int"):
            src = x.args[0]
            val = imp.val(src)
            if val is not None and val.dim() == 2:
                if name == "aten.permute.default" and list(x.args[1]) != [1, 0]:
                    return imp.tensor(x), 0
                return imp.tensor(src), 1
    return imp.tensor(x), 0


@handles("aten.addmm.default")
def _addmm(imp, a):
    dt = imp.out_dtype()
    A, ta = _transposed_const(imp, a["mat1"])
    B, tb = _transposed_const(imp, a["mat2"])
    C = imp.tensor(a["self"], dt)
    return imp.emit("Gemm", [A, B, C], {"alpha": float(a.get("alpha", 1)), "beta": float(a.get("beta", 1)),
                                         "transA": ta, "transB": tb})


@handles("aten.mm.default")
def _mm(imp, a):
    A, ta = _transposed_const(imp, a["self"])
    B, tb = _transposed_const(imp, a["mat2"])
    if ta or tb:
        return imp.emit("Gemm", [A, B], {"transA": ta, "transB": tb})
    return imp.emit("MatMul", [A, B])


@handles("aten.bmm.default", "aten.matmul.default")
def _bmm(imp, a):
    return imp.emit("MatMul", [imp.tensor(a["self"]), imp.tensor(a.get("mat2", a.get("other")))])


@handles("aten.baddbmm.default")
def _baddbmm(imp, a):
    dt = imp.out_dtype()
    y = imp.emit("MatMul", [imp.tensor(a["batch1"]), imp.tensor(a["batch2"])])
    if a.get("alpha", 1) != 1:
        y = imp.emit("Mul", [y, imp.tensor(a["alpha"], dt)])
    c = imp.tensor(a["self"], dt)
    if a.get("beta", 1) != 1:
        c = imp.emit("Mul", [c, imp.tensor(a["beta"], dt)])
    return imp.emit("Add", [y, c])


@handles("aten.linear.default")
def _linear(imp, a):
    X = imp.tensor(a["input"])
    W = imp.tensor(a["weight"])
    B = a.get("bias")
    if imp.rank(X) == 2:
        return imp.emit("Gemm", [X, W] + ([imp.tensor(B)] if B is not None else []), {"transB": 1})
    y = imp.emit("MatMul", [X, imp.emit("Transpose", [W], {"perm": [1, 0]})])
    return imp.emit("Add", [y, imp.tensor(B)]) if B is not None else y


@handles("aten.convolution.default", "aten._convolution.default")
def _conv(imp, a):
    X, W = imp.tensor(a["input"]), imp.tensor(a["weight"])
    B = None if a.get("bias") is None else imp.tensor(a["bias"])
    w = imp.val(a["weight"])
    k = w.dim() - 2
    ks = [int(s) for s in w.shape[2:]]

    def per_dim(v, default):
        v = list(v) if v is not None else [default]
        return [int(e) for e in (v * k if len(v) == 1 else v)]

    strides, pads, dil = per_dim(a["stride"], 1), per_dim(a["padding"], 0), per_dim(a["dilation"], 1)
    attrs = {"strides": strides, "pads": pads + pads, "dilations": dil, "group": int(a["groups"]),
             "kernel_shape": ks}
    if a["transposed"]:
        attrs["output_padding"] = per_dim(a["output_padding"], 0)
        return imp.emit("ConvTranspose", [X, W, B], attrs)
    return imp.emit("Conv", [X, W, B], attrs)


# --- normalization --------------------------------------------------------------------------
def _used_outputs(fx_node) -> set:
    used = set()
    for u in fx_node.users:
        if u.target is operator.getitem:
            used.add(u.args[1])
        else:
            used.update({0, 1, 2})
    return used


def _ones_or(imp, x, n, value, dt):
    if x is not None:
        return imp.tensor(x, dt)
    return imp.const(np.full((n,), value, dt.numpy), "ones" if value else "zeros")


@handles("aten._native_batch_norm_legit_no_training.default", "aten.native_batch_norm.default",
         "aten._native_batch_norm_legit.default", "aten.batch_norm.default")
def _batch_norm(imp, a):
    name = op_name(imp.cur.target)
    if a.get("training"):
        raise UnsupportedError(f"{imp.where()}: batch norm in training mode (batch statistics) is "
                               "not supported; call model.eval() first")
    X = imp.tensor(a["input"])
    dt = imp.dtype(X)
    c = int(imp.val(a["input"]).shape[1])
    used = _used_outputs(imp.cur) if name != "aten.batch_norm.default" else {0}
    if used - {0}:
        raise UnsupportedError(f"{imp.where()}: batch norm's saved statistics are not supported")
    y = imp.emit("BatchNormalization",
                 [X, _ones_or(imp, a["weight"], c, 1.0, dt), _ones_or(imp, a["bias"], c, 0.0, dt),
                  imp.tensor(a["running_mean"], dt), imp.tensor(a["running_var"], dt)],
                 {"epsilon": float(a["eps"])})
    return y if name == "aten.batch_norm.default" else Multi([y, None, None])


@handles("aten.native_layer_norm.default", "aten.layer_norm.default")
def _layer_norm(imp, a):
    X = imp.tensor(a["input"])
    dt = imp.dtype(X)
    ns = [int(s) for s in a["normalized_shape"]]
    scale = imp.tensor(a["weight"], dt) if a.get("weight") is not None else \
        imp.const(np.ones(ns, dt.numpy), "ones")
    bias = imp.tensor(a["bias"], dt) if a.get("bias") is not None else None
    attrs = {"axis": -len(ns), "epsilon": float(a["eps"])}
    if op_name(imp.cur.target) == "aten.layer_norm.default":
        return imp.emit("LayerNormalization", [X, scale, bias], attrs)
    if _used_outputs(imp.cur) - {0}:          # mean and 1/std wanted too
        return Multi(imp.emit("LayerNormalization", [X, scale, bias], attrs, n_out=3))
    return Multi([imp.emit("LayerNormalization", [X, scale, bias], attrs), None, None])


@handles("aten.native_group_norm.default", "aten.group_norm.default")
def _group_norm(imp, a):
    X = imp.tensor(a["input"])
    dt = imp.dtype(X)
    c = int(imp.val(a["input"]).shape[1])
    groups = int(a["group"] if "group" in a else a["num_groups"])
    ins = [X, _ones_or(imp, a["weight"], c, 1.0, dt), _ones_or(imp, a["bias"], c, 0.0, dt)]
    y = imp.emit("GroupNormalization", ins, {"epsilon": float(a["eps"]), "num_groups": groups})
    if op_name(imp.cur.target) == "aten.group_norm.default":
        return y
    if _used_outputs(imp.cur) - {0}:
        raise UnsupportedError(f"{imp.where()}: group norm's saved statistics are not supported")
    return Multi([y, None, None])


@handles("aten._softmax.default", "aten.softmax.int")
def _softmax(imp, a):
    X = imp.tensor(a["self"], imp.out_dtype())
    return imp.emit("Softmax", [X], {"axis": int(a["dim"])})


@handles("aten._log_softmax.default", "aten.log_softmax.int")
def _log_softmax(imp, a):
    X = imp.tensor(a["self"], imp.out_dtype())
    return imp.emit("LogSoftmax", [X], {"axis": int(a["dim"])})


# --- pooling ---------------------------------------------------------------------------------
def _pool_attrs(imp, a, k):
    def per_dim(v, default):
        v = list(v) if v is not None and (not isinstance(v, (list, tuple)) or len(v)) else []
        if not v:
            return None if default is None else [default] * k
        v = [int(e) for e in v]
        return v * k if len(v) == 1 else v
    ks = per_dim(a["kernel_size"], None)
    strides = per_dim(a.get("stride"), None) or ks
    pads = per_dim(a.get("padding"), 0)
    return ks, strides, pads


@handles("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default",
         "aten.max_pool1d_with_indices.default", "aten.max_pool2d.default",
         "aten.max_pool1d.default", "aten.max_pool3d.default")
def _max_pool(imp, a):
    X = imp.tensor(a["self"])
    k = imp.rank(X) - 2
    ks, strides, pads = _pool_attrs(imp, a, k)
    dil = a.get("dilation")
    dil = [int(d) for d in dil] if dil else [1] * k
    dil = dil * k if len(dil) == 1 else dil
    attrs = {"kernel_shape": ks, "strides": strides, "pads": pads + pads, "dilations": dil,
             "ceil_mode": int(bool(a.get("ceil_mode")))}
    y = imp.emit("MaxPool", [X], attrs)
    if "with_indices" not in op_name(imp.cur.target):
        return y
    if _used_outputs(imp.cur) - {0}:
        raise UnsupportedError(f"{imp.where()}: max pooling indices are not supported")
    return Multi([y, None])


@handles("aten.avg_pool2d.default", "aten.avg_pool1d.default", "aten.avg_pool3d.default")
def _avg_pool(imp, a):
    X = imp.tensor(a["self"])
    k = imp.rank(X) - 2
    if a.get("divisor_override") is not None:
        raise UnsupportedError(f"{imp.where()}: avg_pool divisor_override is not supported")
    ks, strides, pads = _pool_attrs(imp, a, k)
    attrs = {"kernel_shape": ks, "strides": strides, "pads": pads + pads,
             "ceil_mode": int(bool(a.get("ceil_mode"))),
             "count_include_pad": int(bool(a.get("count_include_pad", True)))}
    return imp.emit("AveragePool", [X], attrs)


@handles("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default",
         "aten._adaptive_avg_pool3d.default", "aten.adaptive_avg_pool1d.default")
def _adaptive_avg(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    out = [int(s) for s in a["output_size"]]
    shape = imp.in_shape_exprs(x)
    spatial = shape[-len(out):]
    if all(o == 1 for o in out):
        return imp.emit("GlobalAveragePool", [X])
    if all(isinstance(s, int) and s % o == 0 for s, o in zip(spatial, out)):
        ks = [s // o for s, o in zip(spatial, out)]
        return imp.emit("AveragePool", [X], {"kernel_shape": ks, "strides": ks})
    raise UnsupportedError(f"{imp.where()}: adaptive average pooling to {out} from {spatial} "
                           "(not a whole divisor) is not supported")


@handles("aten.upsample_nearest2d.vec", "aten.upsample_nearest2d.default",
         "aten.upsample_bilinear2d.vec", "aten.upsample_bilinear2d.default",
         "aten.upsample_nearest1d.vec", "aten.upsample_nearest3d.vec")
def _upsample(imp, a):
    x = a["input"] if "input" in a else a["self"]
    X = imp.tensor(x)
    name = op_name(imp.cur.target)
    out_shape = list(imp.out_val().shape)
    if "nearest" in name:
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}
    else:
        ac = bool(a.get("align_corners"))
        attrs = {"mode": "linear",
                 "coordinate_transformation_mode": "align_corners" if ac else "pytorch_half_pixel"}
    kind, sizes_v = imp.int_list(out_shape)          # the output's sizes, as torch computed them
    if kind == "static":
        sizes_v = imp.i64(sizes_v)
    return imp.emit("Resize", [X, None, None, sizes_v], attrs)


# --- reductions ------------------------------------------------------------------------------
def _axes(dims, rank):
    if dims is None:
        return None
    if isinstance(dims, int):
        dims = [dims]
    dims = list(dims)
    if not dims:
        return None
    return _norm_dims(dims, rank)


def _reduce(op):
    def h(imp, a):
        dt = imp.out_dtype()
        x = a["self"]
        X = imp.tensor(x)
        r = imp.rank(X)
        if op != "ReduceMax" and op != "ReduceMin":
            X = imp.cast(X, dt)
        axes = _axes(a.get("dim"), r)
        keep = int(bool(a.get("keepdim", False)))
        if r == 0:
            return X
        ins = [X] if axes is None else [X, imp.i64(axes)]
        return imp.cast(imp.emit(op, ins, {"keepdims": keep}), dt)
    return h


handles("aten.sum.dim_IntList", "aten.sum.default")(_reduce("ReduceSum"))
handles("aten.mean.dim", "aten.mean.default")(_reduce("ReduceMean"))
handles("aten.amax.default", "aten.max.default")(_reduce("ReduceMax"))
handles("aten.amin.default", "aten.min.default")(_reduce("ReduceMin"))
handles("aten.prod.dim_int", "aten.prod.default")(_reduce("ReduceProd"))


@handles("aten.linalg_vector_norm.default")
def _vector_norm(imp, a):
    dt = imp.out_dtype()
    X = imp.tensor(a["self"], dt)
    r = imp.rank(X)
    axes = _axes(a.get("dim"), r)
    keep = int(bool(a.get("keepdim", False)))
    p = float(a.get("ord", 2))
    ins = lambda v: [v] if axes is None else [v, imp.i64(axes)]
    if p == 2:
        return imp.emit("ReduceL2", ins(X), {"keepdims": keep})
    if p == 1:
        return imp.emit("ReduceL1", ins(X), {"keepdims": keep})
    ax = imp.emit("Abs", [X])
    if math.isinf(p):
        return imp.emit("ReduceMax" if p > 0 else "ReduceMin", ins(ax), {"keepdims": keep})
    if p == 0:
        nz = imp.cast(imp.emit("Not", [imp.emit("Equal", [X, imp.tensor(0.0, dt)])]), dt)
        return imp.emit("ReduceSum", ins(nz), {"keepdims": keep})
    s = imp.emit("ReduceSum", ins(imp.emit("Pow", [ax, imp.tensor(p, dt)])), {"keepdims": keep})
    return imp.emit("Pow", [s, imp.tensor(1.0 / p, dt)])


@handles("aten.any.dim", "aten.any.dims", "aten.any.default", "aten.all.dim", "aten.all.dims",
         "aten.all.default")
def _any_all(imp, a):
    X = imp.tensor(a["self"], dtypes.boolean)
    r = imp.rank(X)
    op = "ReduceMax" if "any" in op_name(imp.cur.target) else "ReduceMin"
    axes = _axes(a.get("dim", a.get("dims")), r)
    keep = int(bool(a.get("keepdim", False)))
    Xi = imp.cast(X, dtypes.i32)
    ins = [Xi] if axes is None else [Xi, imp.i64(axes)]
    return imp.cast(imp.emit(op, ins, {"keepdims": keep}), dtypes.boolean)


@handles("aten.max.dim", "aten.min.dim")
def _max_dim(imp, a):
    X = imp.tensor(a["self"])
    r = imp.rank(X)
    dim = _norm_dims(a["dim"], r)[0]
    keep = int(bool(a.get("keepdim", False)))
    is_max = "max" in op_name(imp.cur.target)
    used = _used_outputs(imp.cur)
    vals = imp.emit("ReduceMax" if is_max else "ReduceMin", [X, imp.i64([dim])], {"keepdims": keep}) \
        if 0 in used else None
    idx = imp.emit("ArgMax" if is_max else "ArgMin", [X], {"axis": dim, "keepdims": keep}) \
        if 1 in used else None
    return Multi([vals, idx])


@handles("aten.argmax.default", "aten.argmin.default")
def _argmax(imp, a):
    X = imp.tensor(a["self"])
    op = "ArgMax" if "argmax" in op_name(imp.cur.target) else "ArgMin"
    keep = int(bool(a.get("keepdim", False)))
    if a.get("dim") is None:
        flat = imp.emit("Reshape", [X, imp.i64([-1])])
        y = imp.emit(op, [flat], {"axis": 0, "keepdims": 0})
        if keep:
            y = imp.emit("Reshape", [y, imp.i64([1] * imp.rank(X))])
        return y
    dim = _norm_dims(a["dim"], imp.rank(X))[0]
    return imp.emit(op, [X], {"axis": dim, "keepdims": keep})


@handles("aten.var.correction", "aten.std.correction", "aten.var_mean.correction")
def _var(imp, a):
    x = a["self"]
    dt = imp.out_dtype()
    X = imp.tensor(x, dt)
    shape = imp.in_shape_exprs(x)
    r = len(shape)
    axes = _axes(a.get("dim"), r) or list(range(r))
    keep = int(bool(a.get("keepdim", False)))
    corr = a.get("correction")
    corr = 1 if corr is None else float(corr)
    ax = imp.i64(axes)
    mean = imp.emit("ReduceMean", [X, ax], {"keepdims": 1})
    d = imp.emit("Sub", [X, mean])
    s = imp.emit("ReduceSum", [imp.emit("Mul", [d, d]), ax], {"keepdims": keep})
    if all(isinstance(shape[i], int) for i in axes):
        n = imp.tensor(float(max(math.prod(shape[i] for i in axes) - corr, 0)), dt)
    else:                                  # the count of a symbolic dim, at run time
        count = imp.emit("Div", [imp.emit("Size", [X]), imp.emit("Size", [mean])])
        n = imp.emit("Max", [imp.emit("Sub", [imp.cast(count, dt), imp.tensor(corr, dt)]),
                             imp.tensor(0.0, dt)])
    var = imp.emit("Div", [s, n])
    name = op_name(imp.cur.target)
    if "std" in name:
        return imp.emit("Sqrt", [var])
    if "var_mean" in name:
        m = mean if keep else imp.emit("Squeeze", [mean, ax])
        return Multi([var, m])
    return var


@handles("aten.cumsum.default")
def _cumsum(imp, a):
    dt = imp.out_dtype()
    X = imp.tensor(a["self"], dt)
    dim = _norm_dims(a["dim"], imp.rank(X))[0]
    return imp.emit("CumSum", [X, imp.i64(dim)])


@handles("aten.topk.default")
def _topk(imp, a):
    X = imp.tensor(a["self"])
    dim = _norm_dims(a["dim"], imp.rank(X))[0]
    vals, idx = imp.emit("TopK", [X, _index_value(imp, a["k"])],
                         {"axis": dim, "largest": int(bool(a["largest"])), "sorted": 1}, n_out=2)
    return Multi([vals, idx])


@handles("aten.sort.default", "aten.sort.stable")
def _sort(imp, a):
    x = a["self"]
    X = imp.tensor(x)
    dim = _norm_dims(a.get("dim", -1), imp.rank(X))[0]
    n = imp.in_shape_exprs(x)[dim]
    k = imp.i64([n]) if isinstance(n, int) else imp.emit("Shape", [X], {"start": dim, "end": dim + 1})
    vals, idx = imp.emit("TopK", [X, k], {"axis": dim, "largest": int(bool(a.get("descending"))),
                                          "sorted": 1}, n_out=2)
    return Multi([vals, idx])


# --- SymInt arithmetic and tuples -------------------------------------------------------------
@handles("aten.sym_size.int")
def _sym_size(imp, a):
    x = a["self"]
    e = _expr_of(imp.out_val())
    s = Sym(e)
    if s.static is None and not (getattr(e, "is_Symbol", False) and e in imp.sym_src):
        dim = _norm_dims(a["dim"], imp.val(x).dim())[0]
        s.value = imp.emit("Shape", [imp.tensor(x)], {"start": dim, "end": dim + 1})
    return s


@handles("aten.sym_numel.default")
def _sym_numel(imp, a):
    s = Sym(_expr_of(imp.out_val()))
    if s.static is None:
        s.value = imp.emit("Reshape", [imp.emit("Size", [imp.tensor(a["self"])]), imp.i64([1])])
    return s


def _sym_binop(op):
    def h(imp, a):
        x, y = a["args"]
        e = _expr_of(imp.out_val())
        s = Sym(e)
        if s.static is not None:
            return s
        gx, gy = imp.get(x), imp.get(y)
        vx = imp.sym_value(gx if isinstance(gx, Sym) else Sym(int(gx)))
        vy = imp.sym_value(gy if isinstance(gy, Sym) else Sym(int(gy)))
        s.value = op(imp, vx, vy)
        return s
    return h


HANDLERS["operator.mul"] = _sym_binop(lambda imp, x, y: imp.emit("Mul", [x, y]))
HANDLERS["operator.add"] = _sym_binop(lambda imp, x, y: imp.emit("Add", [x, y]))
HANDLERS["operator.sub"] = _sym_binop(lambda imp, x, y: imp.emit("Sub", [x, y]))
HANDLERS["operator.floordiv"] = _sym_binop(lambda imp, x, y: imp.emit("Div", [x, y]))
HANDLERS["operator.mod"] = _sym_binop(lambda imp, x, y: imp.emit("Mod", [x, y], {"fmod": 0}))


def _getitem(imp, a):
    seq, i = a["args"]
    return imp.get(seq)[i]


HANDLERS["operator.getitem"] = _getitem


