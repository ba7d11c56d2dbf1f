"""Native lowerings of Resize and Upsample (resize.py): nearest, linear and cubic (with antialias,
exclude_outside and every coordinate_transformation_mode).

Scales, sizes and roi are read at run time (constant operands fold in the C compiler), so the
kernel computes what the reference's `AxisPlan` holds on the fly, in float64 with the reference's
formulas and operation order:
- before the loops, per axis: its scale (from `scales`, or `sizes` over the input size and the
  keep_aspect_ratio_policy; 1 outside `axes`, where the reference resamples too), the resized
  length the coordinate formulas use, whether the axis is left as it is (every output coordinate
  equals its index: the reference skips such axes), and for the filters the number of taps and
  the kernel stretch (antialias when downscaling);
- in the loop of each output axis: the source coordinate, and for the filters the first tap and the
  sum of the tap weights (weights are normalized to sum 1);
- innermost: nearest gathers one element; the filters sum weight * input over the taps of every
  resized axis in float64. Every input index is clamped into the input.
Output positions run in parallel over the outermost axis.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Const, For, If, Let, Store, Un, Var, add, mul

F64 = "f64"


def _f(v) -> Const:
    return c(v, F64)


def _b(op, a, b):
    return binop(op, a, b)


def _present(ctx, i):
    """Input i when given and not empty; its static element count must be known."""
    if i >= len(ctx.inputs) or ctx.inputs[i] is None:
        return None
    n = ctx.inputs[i].static_numel()
    if n is None:
        raise NotLowerable("Resize operands of unknown length")
    return ctx.inputs[i] if n else None


class _Axis:
    """Run-time facts of one resized axis (names of locals)."""

    def __init__(self, ctx, a):
        self.a = a
        f = ctx.fresh
        self.scale, self.resized, self.same = f("scale"), f("resized"), f("same")
        self.start, self.end = f("roi_lo"), f("roi_hi")
        self.stretch, self.s, self.support, self.taps = f("stretch"), f("s"), f("support"), f("taps")
        self.xc, self.first, self.total = f("xc"), f("first"), f("wsum")
        self.src, self.out = f("src"), f("outside")
        self.tap = f("t")


def lower_resize(ctx: LowerCtx, upsample: bool = False):
    from .resize import COORD_MODES, NEAREST_MODES, RESIZE_ATTRS, resize_axes
    x, y = ctx.inputs[0], ctx.outputs[0]
    if y.dtype != x.dtype or x.rank != y.rank:
        raise NotLowerable("Resize output of another dtype or rank")
    r = x.rank
    if r == 0:
        raise NotLowerable("Resize of a scalar")
    if upsample:
        attrs = dict(RESIZE_ATTRS, mode=ctx.attrs["mode"], coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
        roi, scales, sizes = None, _present(ctx, 1), None
    else:
        attrs = ctx.attrs
        roi, scales, sizes = _present(ctx, 1), _present(ctx, 2), _present(ctx, 3)
    mode, coord = attrs["mode"], attrs["coordinate_transformation_mode"]
    if mode not in ("nearest", "linear", "cubic") or coord not in COORD_MODES:
        raise NotLowerable(f"Resize mode {mode!r} / {coord!r}")
    if mode == "nearest" and attrs["nearest_mode"] not in NEAREST_MODES:
        raise NotLowerable(f"Resize nearest_mode {attrs['nearest_mode']!r}")
    if mode != "nearest" and x.dtype not in FLOAT:
        raise NotLowerable("linear and cubic Resize of non-floats")
    if x.dtype == "bool":
        raise NotLowerable("Resize of bool")
    policy = attrs["keep_aspect_ratio_policy"]
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise NotLowerable(f"keep_aspect_ratio_policy {policy!r}")
    try:
        axes = resize_axes(r, attrs["axes"])
    except TypeError:
        raise NotLowerable("Resize axes") from None
    if len(set(axes)) != len(axes) or any(not 0 <= a < r for a in axes):
        raise NotLowerable("Resize axes out of range or repeated")
    n = len(axes)
    given = scales if scales is not None else sizes
    if given is None or given.static_numel() != n:
        raise NotLowerable("Resize needs scales or sizes with one entry per axis")
    if roi is not None and roi.static_numel() != 2 * n:
        roi = None if coord != "tf_crop_and_resize" else roi
        if roi is not None:
            raise NotLowerable("Resize roi of the wrong length")

    info = {a: _Axis(ctx, a) for a in range(r)}
    n_in = lambda a: cast(x.shape[a], F64)
    n_out = lambda a: cast(y.shape[a], F64)
    pre = []
    # --- the scale of each axis
    if scales is not None:
        for k, a in enumerate(axes):
            pre.append(Let(info[a].scale, cast(scales.load(Const(k)), F64), F64))
    else:
        ratio = lambda k, a: _b("/", cast(sizes.load(Const(k)), F64), n_in(a))
        if policy == "stretch":
            for k, a in enumerate(axes):
                pre.append(Let(info[a].scale, ratio(k, a), F64))
        else:
            common = ctx.fresh("common")
            pick = minimum if policy == "not_larger" else maximum
            pre.append(Let(common, ratio(0, axes[0]), F64))
            for k, a in enumerate(axes[1:], 1):
                pre.append(Assign(common, pick(Var(common, F64), ratio(k, a))))
            for a in axes:
                pre.append(Let(info[a].scale, Var(common, F64), F64))
    # the other dims have scale 1: the reference resamples them too (a no-op for most
    # coordinate modes, a half-pixel shift for tf_half_pixel_for_nn)
    pre += [Let(info[a].scale, _f(1.0), F64) for a in range(r) if a not in axes]
    for a in range(r):
        k = axes.index(a) if a in axes else None
        ax = info[a]
        sc = Var(ax.scale, F64)
        # the resized length: the output size when n_in * scale is close to it (math.isclose)
        rs = _b("*", n_in(a), sc)
        close = _b("<=", call("fabs", _b("-", rs, n_out(a))),
                   _b("*", _f(1e-9), maximum(call("fabs", rs), call("fabs", n_out(a)))))
        pre.append(Let(ax.resized, select(close, n_out(a), rs), F64))
        if coord == "tf_crop_and_resize":
            lo = cast(roi.load(Const(k)), F64) if roi is not None and k is not None else _f(0.0)
            hi = cast(roi.load(Const(k + n)), F64) if roi is not None and k is not None else _f(1.0)
            pre += [Let(ax.start, lo, F64), Let(ax.end, hi, F64)]

    def coordinate(a, o):
        ax = info[a]
        xo = cast(o, F64)
        sc, rs = Var(ax.scale, F64), Var(ax.resized, F64)
        more = _b(">", rs, _f(1.0))
        half = _b("-", _b("/", _b("+", xo, _f(0.5)), sc), _f(0.5))
        if coord == "half_pixel":
            return half
        if coord == "half_pixel_symmetric":
            adjustment = _b("/", n_out(a), _b("*", n_in(a), sc))
            offset = _b("*", _b("/", n_in(a), _f(2.0)), _b("-", _f(1.0), adjustment))
            return _b("-", _b("+", offset, _b("/", _b("+", xo, _f(0.5)), sc)), _f(0.5))
        if coord == "pytorch_half_pixel":
            return select(more, half, _f(0.0))
        if coord == "align_corners":
            return select(more, _b("/", _b("*", xo, _b("-", n_in(a), _f(1.0))), _b("-", rs, _f(1.0))), _f(0.0))
        if coord == "asymmetric":
            return _b("/", xo, sc)
        if coord == "tf_half_pixel_for_nn":
            return _b("/", _b("+", xo, _f(0.5)), sc)
        lo, hi = Var(ax.start, F64), Var(ax.end, F64)
        span = _b("-", n_in(a), _f(1.0))
        inside = _b("+", _b("*", lo, span),
                    _b("/", _b("*", _b("*", xo, _b("-", hi, lo)), span), _b("-", rs, _f(1.0))))
        return select(more, inside, _b("*", _b("*", _f(0.5), _b("+", lo, hi)), span))

    # --- axes left as they are: same length and every coordinate equal to its index
    for a in range(r):
        ax = info[a]
        o = Var(ctx.fresh("o"))
        pre += [Let(ax.same, binop("==", x.shape[a], y.shape[a]), "bool"),
                For(o.name, y.shape[a], [If(binop("!=", coordinate(a, o), cast(o, F64)),
                                            [Assign(ax.same, c(False, "bool"))])])]
    radius = {"nearest": 0, "linear": 1, "cubic": 2}[mode]
    if mode != "nearest":
        for a in range(r):
            ax = info[a]
            sc = Var(ax.scale, F64)
            st = binop("&&", c(bool(attrs["antialias"]), "bool"), _b("<", sc, _f(1.0)))
            pre += [Let(ax.stretch, st, "bool"),
                    Let(ax.s, select(Var(ax.stretch, "bool"), sc, _f(1.0)), F64),
                    Let(ax.support, _b("/", _f(float(radius)), Var(ax.s, F64)), F64),
                    # never more taps than the input could need (a scale near 0 must not hang)
                    Let(ax.taps, select(Var(ax.same, "bool"), Const(1), minimum(add(
                        _to_index(call("ceil", _b("*", _f(2.0), Var(ax.support, F64)))),
                        select(Var(ax.stretch, "bool"), Const(1), Const(0))),
                        add(mul(Const(2 * radius), add(x.shape[a], Const(1))), Const(2)))), "i64")]

    def kernel_at(ax, j):
        """The tap weight of input index j (an i64) for the coordinate of axis ax."""
        t = _b("*", _b("-", cast(j, F64), Var(ax.xc, F64)), Var(ax.s, F64))
        if mode == "linear":
            w = maximum(_f(0.0), _b("-", _f(1.0), call("fabs", t)))
        else:
            ca = float(attrs["cubic_coeff_a"])
            u = call("fabs", t)
            near = _b("+", _b("*", _b("*", _b("-", _b("*", _f(ca + 2), u), _f(ca + 3)), u), u), _f(1.0))
            far = _b("-", _b("*", _b("+", _b("*", _b("-", _b("*", _f(ca), u), _f(5 * ca)), u), _f(8 * ca)), u),
                     _f(4 * ca))
            w = select(_b("<=", u, _f(1.0)), near, select(_b("<", u, _f(2.0)), far, _f(0.0)))
        if attrs["exclude_outside"] and mode == "cubic":
            inside = binop("&&", _b(">=", j, Const(0)), _b("<=", j, add(x.shape[ax.a], Const(-1))))
            w = select(inside, w, _f(0.0))
        return w

    def clamp_index(j, a):
        return minimum(maximum(j, Const(0)), add(x.shape[a], Const(-1)))

    def axis_prelude(a, o):
        """Statements in the loop of output axis a: coordinate, nearest index or first tap."""
        ax = info[a]
        same = Var(ax.same, "bool")
        raw = ctx.fresh("coord")
        stmts = [Let(raw, coordinate(a, o), F64)]
        xc = Var(raw, F64)
        if mode == "nearest":
            rounding = attrs["nearest_mode"]
            xv = xc
            v = {"round_prefer_floor": lambda: call("ceil", _b("-", xv, _f(0.5))),
                 "round_prefer_ceil": lambda: call("floor", _b("+", xv, _f(0.5))),
                 "floor": lambda: call("floor", xv), "ceil": lambda: call("ceil", xv)}[rounding]()
            last = add(x.shape[a], Const(-1))
            # clamped as floats before the cast: NaN and huge coordinates land inside too
            idx = select(_b(">", v, _f(0.0)), select(_b(">", v, cast(last, F64)), last, cast(v, "i64")),
                         Const(0))
            stmts.append(Let(ax.src, select(same, o, idx), "i64"))
        else:
            if mode == "linear":        # clamp_coords unless stretched
                xc = select(Var(ax.stretch, "bool"), xc,
                            _clip(xc, _f(0.0), _b("-", n_in(a), _f(1.0))))
            stmts.append(Let(ax.xc, xc, F64))
            sup = Var(ax.support, F64)
            first = select(Var(ax.stretch, "bool"),
                           _b("+", call("floor", _b("-", Var(ax.xc, F64), sup)), _f(1.0)),
                           _b("+", _b("-", call("floor", Var(ax.xc, F64)), _f(float(radius))), _f(1.0)))
            firstf = ctx.fresh("firstf")
            stmts += [Let(firstf, first, F64),
                      Let(ax.first, select(same, cast(o, "i64"), _to_index(Var(firstf, F64))), "i64")]
            t = Var(ctx.fresh("t"))
            j = add(Var(ax.first), t)
            stmts += [Let(ax.total, _f(0.0), F64),
                      For(t.name, Var(ax.taps), [Assign(ax.total, _b("+", Var(ax.total, F64), kernel_at(ax, j)))]),
                      Assign(ax.total, select(_b("==", Var(ax.total, F64), _f(0.0)), _f(1.0), Var(ax.total, F64)))]
        if coord == "tf_crop_and_resize":
            rv = Var(raw, F64)
            outside = binop("||", _b("<", rv, _f(0.0)), _b(">", rv, _b("-", n_in(a), _f(1.0))))
            stmts.append(Let(ax.out, binop("&&", Un("not", same, "bool"), outside), "bool"))
        return stmts

    dt = x.dtype
    ovars = [Var(ctx.fresh("o")) for _ in range(r)]

    if mode == "nearest":
        value = x.load(ctx.index(x, [Var(info[a].src) for a in range(r)]))
        inner = []
    else:
        acc = ctx.fresh("acc")
        accv = Var(acc, F64)
        tvars = {a: Var(info[a].tap) for a in range(r)}
        idx = []
        for a in range(r):
            idx.append(clamp_index(add(Var(info[a].first), tvars[a]), a))
        # one loop per resized axis over its taps; the weight product is built on the way in
        axes_sorted = list(range(r))
        wnames = {a: ctx.fresh("w") for a in axes_sorted}
        term = _b("*", Var(wnames[axes_sorted[-1]], F64), cast(x.load(ctx.index(x, idx)), F64))
        taps = [Assign(acc, _b("+", accv, term))]
        for k in reversed(range(len(axes_sorted))):
            a = axes_sorted[k]
            ax = info[a]
            w = select(Var(ax.same, "bool"), _f(1.0),
                       _b("/", kernel_at(ax, add(Var(ax.first), tvars[a])), Var(ax.total, F64)))
            if k:
                w = _b("*", Var(wnames[axes_sorted[k - 1]], F64), w)
            taps = [For(tvars[a].name, Var(ax.taps), [Let(wnames[a], w, F64)] + taps)]
        inner = [Let(acc, _f(0.0), F64)] + taps
        value = cast(accv, dt)
    if coord == "tf_crop_and_resize":
        out_any = None
        for a in range(r):
            o_ = Var(info[a].out, "bool")
            out_any = o_ if out_any is None else binop("||", out_any, o_)
        value = select(out_any, c(float(attrs["extrapolation_value"]), dt) if dt in FLOAT
                       else cast(c(float(attrs["extrapolation_value"]), F64), dt), value)
    body = inner + [Store(y.buf, ctx.index(y, ovars), value)]
    for a in reversed(range(r)):
        body = [For(ovars[a].name, y.shape[a], axis_prelude(a, ovars[a]) + body,
                    "parallel" if a == 0 else "serial")]
    return pre + body


def _clip(v, lo, hi):
    """np.clip for floats: NaN stays NaN."""
    return select(_b("<", v, lo), lo, select(_b(">", v, hi), hi, v))


def _to_index(v):
    """A float tap position as an i64; NaN and huge values become 0 (indices are clamped later)."""
    return select(_b("<", call("fabs", v), _f(float(2 ** 62))), cast(v, "i64"), Const(0))


LOWER = {"Resize": lower_resize, "Upsample": lambda ctx: lower_resize(ctx, upsample=True)}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
