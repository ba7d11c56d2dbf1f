"""Native lowerings of RNN, GRU and LSTM (rnn.py) for small static hidden sizes.

One kernel; (direction, batch entry) pairs run in parallel, each stepping through its sequence.
A step needs the whole previous hidden state while it computes the new one, and a kernel has no
scratch memory, so the states live in local variables (one per hidden unit: hidden_size is
static and at most MAX_HIDDEN) and h @ R^T is unrolled over them; x @ W^T is one loop over the
input features updating every gate accumulator. Inactive steps (past sequence_lens) keep the
state and leave Y at zero, as the reference does. Activations, clip, layouts 0/1, directions,
initial states, peepholes, input_forget and linear_before_reset follow the reference.
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, Let, Store, Var, add, mul, sub

MAX_HIDDEN = 32


def _activation(name: str, alpha, beta, dt):
    """The expression builder of one activation of rnn.py's table (alpha/beta resolved)."""
    f = lambda v: c(v, dt)
    name = name.lower()
    table = {
        "relu": (lambda x, a, b: maximum(x, f(0.0)), None, None),
        "tanh": (lambda x, a, b: call("tanh", x), None, None),
        "sigmoid": (lambda x, a, b: binop("*", f(0.5), binop("+", call("tanh", binop("*", f(0.5), x)), f(1.0))), None, None),
        "affine": (lambda x, a, b: binop("+", binop("*", f(a), x), f(b)), 1.0, 0.0),
        "leakyrelu": (lambda x, a, b: select(binop(">=", x, f(0.0)), x, binop("*", f(a), x)), 0.01, None),
        "thresholdedrelu": (lambda x, a, b: select(binop(">=", x, f(a)), x, f(0.0)), 1.0, None),
        "scaledtanh": (lambda x, a, b: binop("*", f(a), call("tanh", binop("*", f(b), x))), 1.0, 1.0),
        "hardsigmoid": (lambda x, a, b: minimum(maximum(binop("+", binop("*", f(a), x), f(b)), f(0.0)), f(1.0)), 0.2, 0.5),
        "elu": (lambda x, a, b: select(binop(">=", x, f(0.0)), x, binop("*", f(a), binop("-", call("exp", x), f(1.0)))), 1.0, None),
        "softsign": (lambda x, a, b: binop("/", x, binop("+", f(1.0), call("fabs", x))), None, None),
        "softplus": (lambda x, a, b: binop("+", maximum(x, f(0.0)), call("log1p", call("exp", binop("-", f(0.0), call("fabs", x))))), None, None),
    }
    if name not in table:
        raise NotLowerable(f"RNN activation {name!r}")
    return table[name]


def _activations(attrs, defaults, num_dir):
    """rnn.py's `_activations` resolved to (name, alpha, beta) specs: one list per direction."""
    names = list(attrs["activations"]) if attrs["activations"] else list(defaults) * num_dir
    if len(names) == len(defaults) and num_dir == 2:
        names = names * 2
    alphas, betas = list(attrs["activation_alpha"] or []), list(attrs["activation_beta"] or [])
    specs = []
    for name in names:
        _, da, db = _activation(name, None, None, "f32")
        a = alphas.pop(0) if da is not None and alphas else da
        b = betas.pop(0) if db is not None and betas else db
        specs.append((name.lower(), a, b))
    k = len(defaults)
    if len(specs) < k * num_dir:
        raise NotLowerable("RNN activations list too short")
    return [specs[d * k:(d + 1) * k] for d in range(num_dir)]


def _recurrent(kind: str):
    n_gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    defaults = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[kind]

    def lower(ctx: LowerCtx):
        ins = ctx.inputs + [None] * (8 - len(ctx.inputs))
        X, W, R, B, lens, h0 = ins[:6]
        c0, P = (ins[6], ins[7]) if kind == "LSTM" else (None, None)
        outs = ctx.outputs + [None] * (3 - len(ctx.outputs))
        Y, Yh = outs[0], outs[1]
        Yc = outs[2] if kind == "LSTM" else None
        a = ctx.attrs
        dt = X.dtype
        if dt not in FLOAT or any(t is not None and t.dtype != dt for t in (W, R, B, h0, c0, P)):
            raise NotLowerable(f"{kind} of non-floats or mixed dtypes")
        if X.rank != 3 or W.static_shape() is None or R.static_shape() is None:
            raise NotLowerable(f"{kind} needs static weight shapes")
        num_dir, rows, I = W.static_shape()
        H = R.static_shape()[-1]
        if a["hidden_size"] and a["hidden_size"] != H or rows != n_gates * H:
            raise NotLowerable(f"{kind} hidden size disagrees with the weights")
        if H > MAX_HIDDEN:
            raise NotLowerable(f"{kind} hidden size {H} above {MAX_HIDDEN} (states live in locals)")
        if num_dir != (2 if a["direction"] == "bidirectional" else 1):
            raise NotLowerable(f"{kind} direction and weights disagree")
        layout = a["layout"]
        seq, batch = (X.shape[0], X.shape[1]) if layout == 0 else (X.shape[1], X.shape[0])
        specs = _activations(a, defaults, num_dir)
        clip = a["clip"]
        clipf = (lambda v: minimum(maximum(v, c(-clip, dt)), c(clip, dt))) if clip is not None else (lambda v: v)
        f = lambda v: c(v, dt)
        db = Var(ctx.fresh("db"))
        d, b = ctx.fresh("d"), ctx.fresh("b")
        dv, bv = Var(d), Var(b)

        def act(k):
            """The k-th activation; directions with different ones select at run time."""
            def build(spec):
                fn = _activation(spec[0], None, None, dt)[0]
                return lambda x: fn(x, spec[1], spec[2])
            first = build(specs[0][k])
            if num_dir == 1 or specs[1][k] == specs[0][k]:
                return first
            second = build(specs[1][k])
            return lambda x: select(binop("==", dv, Const(1)), second(x), first(x))
        t, idx = Var(ctx.fresh("t")), ctx.fresh("step")
        iv = Var(idx)
        x_at = lambda i: X.load(add(mul(add(mul(iv, batch), bv), Const(I)), i)) if layout == 0 else \
            X.load(add(mul(add(mul(bv, seq), iv), Const(I)), i))

        def state_at(j):                  # [num_dir, batch, H] (layout 0) or [batch, num_dir, H]
            return add(mul(add(mul(dv, batch), bv), Const(H)), Const(j)) if layout == 0 else \
                add(mul(add(mul(bv, Const(num_dir)), dv), Const(H)), Const(j))

        def y_at(j):                      # [seq, num_dir, batch, H] or [batch, seq, num_dir, H]
            return add(mul(add(mul(add(mul(iv, Const(num_dir)), dv), batch), bv), Const(H)), Const(j)) \
                if layout == 0 else add(mul(add(mul(add(mul(bv, seq), iv), Const(num_dir)), dv), Const(H)), Const(j))
        w = lambda row, i: W.load(add(mul(add(mul(dv, Const(rows)), Const(row)), Const(I)), i))
        r = lambda row, k: R.load(add(mul(add(mul(dv, Const(rows)), Const(row)), Const(H)), Const(k)))
        bias = (lambda k: B.load(add(mul(dv, Const(2 * rows)), Const(k)))) if B is not None else (lambda k: f(0.0))
        h = [ctx.fresh("h") for _ in range(H)]
        cs = [ctx.fresh("c") for _ in range(H)] if kind == "LSTM" else []
        hv = lambda j: Var(h[j], dt)
        body = [Let(d, Bin("/", db, batch, "i64"), "i64"), Let(b, Bin("%", db, batch, "i64"), "i64")]
        body += [Let(h[j], h0.load(state_at(j)) if h0 is not None else f(0.0), dt) for j in range(H)]
        body += [Let(cs[j], c0.load(state_at(j)) if c0 is not None else f(0.0), dt) for j in range(len(cs))]
        n_len = ctx.fresh("len")
        lv = Var(n_len)
        body.append(Let(n_len, minimum(maximum(cast(lens.load(bv), "i64"), Const(0)), seq) if lens is not None else seq, "i64"))
        reverse = a["direction"] == "reverse"
        step_of = sub(sub(lv, Const(1)), t)
        if a["direction"] == "bidirectional":
            step_of = select(binop("==", dv, Const(1)), step_of, t)
        elif not reverse:
            step_of = t
        # x @ W^T for every gate row: one loop over the input features
        g = [ctx.fresh("g") for _ in range(rows)]
        gv = lambda k: Var(g[k], dt)
        i = Var(ctx.fresh("i"))
        step = [Let(idx, step_of, "i64")] + [Let(g[k], f(0.0), dt) for k in range(rows)]
        step.append(For(i.name, Const(I), [Assign(g[k], binop("+", gv(k), binop("*", x_at(i), w(k, i))))
                                           for k in range(rows)]))

        def hr(row, hs):                  # hs @ R[row]^T, unrolled over the hidden units
            out = None
            for k in range(H):
                term = binop("*", hs(k), r(row, k))
                out = term if out is None else binop("+", out, term)
            return out
        new = [ctx.fresh("hn") for _ in range(H)]
        if kind == "RNN":
            fa = act(0)
            for j in range(H):
                step.append(Let(new[j], fa(clipf(binop("+", binop("+", binop("+", gv(j), hr(j, hv)), bias(j)), bias(H + j)))), dt))
        elif kind == "GRU":
            fz = [ctx.fresh("z") for _ in range(H)]
            fr = [ctx.fresh("r") for _ in range(H)]
            hh = [ctx.fresh("hh") for _ in range(H)]
            for j in range(H):
                step.append(Let(fz[j], act(0)(clipf(binop("+", binop("+", binop("+", gv(j), hr(j, hv)), bias(j)), bias(3 * H + j)))), dt))
                step.append(Let(fr[j], act(0)(clipf(binop("+", binop("+", binop("+", gv(H + j), hr(H + j, hv)), bias(H + j)), bias(4 * H + j)))), dt))
            for j in range(H):
                if a["linear_before_reset"]:
                    pre = binop("+", binop("+", gv(2 * H + j), binop("*", Var(fr[j], dt), binop("+", hr(2 * H + j, hv), bias(5 * H + j)))), bias(2 * H + j))
                else:
                    rh = hr(2 * H + j, lambda k: binop("*", Var(fr[k], dt), hv(k)))
                    pre = binop("+", binop("+", binop("+", gv(2 * H + j), rh), bias(5 * H + j)), bias(2 * H + j))
                step.append(Let(hh[j], act(1)(clipf(pre)), dt))
                zj = Var(fz[j], dt)
                step.append(Let(new[j], binop("+", binop("*", binop("-", f(1.0), zj), Var(hh[j], dt)), binop("*", zj, hv(j))), dt))
        else:
            peep = (lambda k: P.load(add(mul(dv, Const(3 * H)), Const(k)))) if P is not None else (lambda k: f(0.0))
            cn = [ctx.fresh("cn") for _ in range(H)]
            for j in range(H):
                gate = lambda q: binop("+", binop("+", gv(q * H + j), hr(q * H + j, hv)),
                                       binop("+", bias(q * H + j), bias(rows + q * H + j)))
                cj = Var(cs[j], dt)
                ig = act(0)(clipf(binop("+", gate(0), binop("*", peep(j), cj))))
                ign = ctx.fresh("ig")
                step.append(Let(ign, ig, dt))
                if a["input_forget"]:
                    fg = binop("-", f(1.0), Var(ign, dt))
                else:
                    fg = act(0)(clipf(binop("+", gate(2), binop("*", peep(2 * H + j), cj))))
                step.append(Let(cn[j], binop("+", binop("*", fg, cj), binop("*", Var(ign, dt), act(1)(clipf(gate(3))))), dt))
                og = act(0)(clipf(binop("+", gate(1), binop("*", peep(H + j), Var(cn[j], dt)))))
                step.append(Let(new[j], binop("*", og, act(2)(Var(cn[j], dt))), dt))
            step += [Assign(cs[j], Var(cn[j], dt)) for j in range(H)]
        step += [Assign(h[j], Var(new[j], dt)) for j in range(H)]
        if Y is not None:
            step += [Store(Y.buf, y_at(j), hv(j)) for j in range(H)]
        body.append(For(t.name, lv, step))
        if Yh is not None:
            body += [Store(Yh.buf, state_at(j), hv(j)) for j in range(H)]
        if Yc is not None:
            body += [Store(Yc.buf, state_at(j), Var(cs[j], dt)) for j in range(H)]
        stmts = []
        if Y is not None:                 # positions past a sequence's length stay 0
            stmts += ctx.flat_loop(Y.numel(), lambda k: [Store(Y.buf, k, f(0.0))], "vector")
        return stmts + [For(db.name, mul(Const(num_dir), batch), body, "parallel")]

    return lower


LOWER = {"RNN": _recurrent("RNN"), "GRU": _recurrent("GRU"), "LSTM": _recurrent("LSTM")}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
