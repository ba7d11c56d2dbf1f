"""Native lowerings of the attention family (attention.py): Attention, RotaryEmbedding and
CausalConvWithState, for float32/float64 tensors.

Attention is one kernel: query rows (batch, head, position) in parallel; each row runs over the
keys once with an online softmax (running maximum m and sum l, the output row rescaled when m
grows), so no score matrix is stored. Scores are the reference's: (q * sqrt(scale)) . (k *
sqrt(scale)), softcapped, plus the additive bias of the mask (bool: 0 / -inf; float: its value;
keys past the mask's last dim: -inf), causality, the local window and the non-padded key count.
A key whose score is -inf adds nothing, so a fully masked row gives zeros, as the reference's
masked softmax. present_key / present_value are the past and new keys concatenated; the optional
qk_matmul_output stores the scores at the requested stage (probabilities: a second pass).
"""
from __future__ import annotations

from ..lower.context import LowerCtx, NotLowerable, TensorRef
from ..lower.exprs import FLOAT, binop, c, call, cast, maximum, minimum, select
from ..lower.loopir import Assign, Bin, Const, For, If, Let, Load, Store, Var, add, mul, sub


def _heads(ref: TensorRef, n_heads, what: str):
    """(B, H, S, D) of a 4-D [B, H, S, D] or 3-D [B, S, H*D] operand, and its flat index."""
    if ref.rank == 4:
        B, H, S, D = ref.shape
        return (B, H, S, D), lambda b, h, s, d: LowerCtx.index(ref, [b, h, s, d])
    if ref.rank != 3 or not n_heads:
        raise NotLowerable(f"Attention {what} of rank {ref.rank} without a head count")
    B, S, hidden = ref.shape
    H = Const(int(n_heads))
    D = Bin("/", hidden, H, "i64") if not isinstance(hidden, Const) else Const(hidden.value // n_heads)
    return (B, H, S, D), lambda b, h, s, d: add(mul(add(mul(b, S), s), hidden), add(mul(h, D), d))


def lower_flex_attention(ctx: LowerCtx):
    """FlexAttention without score/prob modifiers: Attention with the scale applied to q . k."""
    a = ctx.attrs
    if a["score_mod"] is not None or a["prob_mod"] is not None:
        raise NotLowerable("FlexAttention with modifier subgraphs")
    ctx.attrs = dict(is_causal=0, kv_num_heads=None, left_window_size=-1, q_num_heads=None,
                     qk_matmul_output_mode=0, right_window_size=-1, scale=a["scale"], softcap=0.0,
                     softmax_precision=a["softmax_precision"])
    return lower_attention(ctx, scale_after=True)


def lower_attention(ctx: LowerCtx, scale_after: bool = False):
    ins = ctx.inputs + [None] * (7 - len(ctx.inputs))
    Q, K, V, mask, past_k, past_v, nonpad = ins[:7]
    outs = ctx.outputs + [None] * (4 - len(ctx.outputs))
    Y, present_k, present_v, qk_out = outs[:4]
    a = ctx.attrs
    dt = Q.dtype
    if dt not in FLOAT or any(t is not None and t.dtype != dt for t in (K, V, past_k, past_v)):
        raise NotLowerable("Attention of non-float or mixed dtypes")
    if any(t is not None and t.dtype != dt for t in (Y, present_k, present_v, qk_out)):
        raise NotLowerable("Attention outputs of another dtype")
    if (past_k is None) != (past_v is None):
        raise NotLowerable("Attention with only one of past_key / past_value")
    sdt = dt
    if a["softmax_precision"] is not None:
        from ..ir import dtypes
        sdt = dtypes.from_onnx(a["softmax_precision"]).name
        if sdt not in FLOAT:
            raise NotLowerable(f"softmax precision {sdt}")
        sdt = "f64" if "f64" in (sdt, dt) else sdt
    (B, Hq, Sq, D), q_at = _heads(Q, a["q_num_heads"], "Q")
    (_, Hkv, Skv, _), k_at = _heads(K, a["kv_num_heads"], "K")
    (_, _, _, Dv), v_at = _heads(V, a["kv_num_heads"], "V")
    if not isinstance(Hq, Const) or not isinstance(Hkv, Const) or Hq.value % Hkv.value:
        raise NotLowerable("Attention head counts must be static, q heads a multiple of kv heads")
    group = Hq.value // Hkv.value
    P = past_k.shape[2] if past_k is not None else Const(0)
    T = add(P, Skv)
    pk_at = (lambda b, h, s, d: LowerCtx.index(past_k, [b, h, s, d])) if past_k is not None else None
    pv_at = (lambda b, h, s, d: LowerCtx.index(past_v, [b, h, s, d])) if past_v is not None else None

    def key(b, h, j, d):           # K or the past keys, at key position j of the whole sequence
        if past_k is None:
            return K.load(k_at(b, h, j, d))
        return select(binop("<", j, P), past_k.load(pk_at(b, h, select(binop("<", j, P), j, Const(0)), d)),
                      K.load(k_at(b, h, maximum(sub(j, P), Const(0)), d)))

    def value(b, h, j, d):
        if past_v is None:
            return V.load(v_at(b, h, j, d))
        return select(binop("<", j, P), past_v.load(pv_at(b, h, select(binop("<", j, P), j, Const(0)), d)),
                      V.load(v_at(b, h, maximum(sub(j, P), Const(0)), d)))

    stmts = []
    # --- present_key / present_value: past and new concatenated along the sequence
    for out, fn, Dx in ((present_k, key, D), (present_v, value, Dv)):
        if out is None:
            continue
        stmts += ctx.loops([B, Hkv, T, Dx], lambda idx, out=out, fn=fn: [
            Store(out.buf, ctx.index(out, idx), fn(*idx))])
    # --- one query row per iteration
    bhi = Var(ctx.fresh("row"))
    b, h, i = ctx.fresh("b"), ctx.fresh("h"), ctx.fresh("i")
    bv, hv, iv = Var(b), Var(h), Var(i)
    kvh = Bin("/", hv, Const(group), "i64") if group != 1 else hv
    j, d = Var(ctx.fresh("j")), Var(ctx.fresh("d"))
    body = [Let(b, Bin("/", bhi, mul(Hq, Sq), "i64"), "i64"),
            Let(h, Bin("%", Bin("/", bhi, Sq, "i64"), Hq, "i64"), "i64"),
            Let(i, Bin("%", bhi, Sq, "i64"), "i64")]
    scale = c(float(a["scale"]), dt) if a["scale"] is not None else \
        cast(binop("/", c(1.0, "f64"), call("sqrt", cast(D, "f64"))), dt)
    # Attention: the scale's square root multiplies q and k each, as the reference does;
    # FlexAttention scales q . k
    rt = ctx.fresh("scale" if scale_after else "root")
    body.append(Let(rt, scale if scale_after else call("sqrt", scale), dt))
    rv = Var(rt, dt)
    # the query position: absolute position of row i (past length, or non-padded count - Sq)
    pos = ctx.fresh("pos")
    offset = P
    if nonpad is not None:
        np_b = cast(nonpad.load(bv), "i64")
        offset = select(binop("==", P, Const(0)), sub(np_b, Sq), P) if past_k is not None else sub(np_b, Sq)
    body.append(Let(pos, add(offset, iv), "i64"))
    posv = Var(pos)
    allowed = c(True, "bool")
    if a["is_causal"]:
        allowed = binop("&&", allowed, binop("<=", j, posv))
    if a["left_window_size"] >= 0:
        allowed = binop("&&", allowed, binop(">=", j, sub(posv, Const(a["left_window_size"]))))
    if a["right_window_size"] >= 0:
        allowed = binop("&&", allowed, binop("<=", j, add(posv, Const(a["right_window_size"]))))
    if nonpad is not None:
        allowed = binop("&&", allowed, binop("<", j, cast(nonpad.load(bv), "i64")))
    ninf = c(float("-inf"), dt)
    bias = select(allowed, c(0.0, dt), ninf)
    if mask is not None:
        full = [B, Hq, Sq, T]
        if mask.rank > 4 or mask.rank < 1:
            raise NotLowerable("Attention mask of rank above 4")
        W = mask.shape[-1]
        idx4 = [bv, hv, iv, minimum(j, sub(W, Const(1)))]
        lead = 4 - mask.rank
        midx = []
        for k_, dim in enumerate(mask.shape):
            full_dim = full[k_ + lead]
            if isinstance(dim, Const) and dim.value == 1:
                midx.append(Const(0))
            elif k_ + lead == 3 or dim == full_dim or isinstance(dim, Const):
                midx.append(idx4[k_ + lead])
            else:
                midx.append(select(binop("==", dim, Const(1)), Const(0), idx4[k_ + lead]))
        mv = mask.load(ctx.index(mask, midx))
        mval = select(mv, c(0.0, dt), ninf) if mask.dtype == "bool" else cast(mv, dt)
        if mask.dtype not in FLOAT + ("bool",):
            raise NotLowerable("Attention mask of an integer type")
        bias = binop("+", bias, select(binop("<", j, W), mval, ninf))
    s, capped, score = ctx.fresh("qk"), ctx.fresh("capped"), ctx.fresh("score")
    sv, cv, scv = Var(s, dt), Var(capped, dt), Var(score, dt)
    if scale_after:
        dot = [Let(s, c(0.0, dt), dt),
               For(d.name, D, [Assign(s, binop("+", sv, binop("*", Q.load(q_at(bv, hv, iv, d)), key(bv, kvh, j, d))))]),
               Assign(s, binop("*", sv, rv))]
    else:
        dot = [Let(s, c(0.0, dt), dt),
               For(d.name, D, [Assign(s, binop("+", sv, binop("*", binop("*", Q.load(q_at(bv, hv, iv, d)), rv),
                                                               binop("*", key(bv, kvh, j, d), rv))))])]
    softcap = float(a["softcap"])
    cap = binop("*", c(softcap, dt), call("tanh", binop("/", sv, c(softcap, dt)))) if softcap > 0 else sv
    per_key = dot + [Let(capped, cap, dt), Let(score, binop("+", cv, bias), dt)]
    mode = a["qk_matmul_output_mode"]
    y_at = (lambda dd: LowerCtx.index(Y, [bv, hv, iv, dd])) if Y.rank == 4 else \
        (lambda dd: add(mul(add(mul(bv, Sq), iv), mul(Hq, Dv)), add(mul(hv, Dv), dd)))
    qk_at = (lambda jj: LowerCtx.index(qk_out, [bv, hv, iv, jj])) if qk_out is not None else None
    if qk_out is not None:
        if mode not in (0, 1, 2, 3):
            raise NotLowerable(f"qk_matmul_output_mode {mode}")
        per_key.append(Store(qk_out.buf, qk_at(j), [sv, cv, scv, scv][mode]))
    m, l, p, r = ctx.fresh("m"), ctx.fresh("l"), ctx.fresh("p"), ctx.fresh("rescale")
    mv_, lv, pv, rv2 = Var(m, sdt), Var(l, sdt), Var(p, sdt), Var(r, sdt)
    sc = cast(scv, sdt)
    yd = Load(Y.buf, y_at(d), dt)
    online = [If(binop(">", sc, mv_), [
                  Let(r, call("exp", binop("-", mv_, sc)), sdt),
                  Assign(l, binop("*", lv, rv2)),
                  For(d.name, Dv, [Store(Y.buf, y_at(d), cast(binop("*", cast(yd, sdt), rv2), dt))]),
                  Assign(m, sc)]),
              Let(p, call("exp", binop("-", sc, mv_)), sdt),
              Assign(l, binop("+", lv, pv)),
              For(d.name, Dv, [Store(Y.buf, y_at(d), binop("+", yd, binop("*", cast(pv, dt), value(bv, kvh, j, d))))])]
    per_key.append(If(binop("!=", scv, ninf), online))
    body += [For(d.name, Dv, [Store(Y.buf, y_at(d), c(0.0, dt))]),
             Let(m, c(float("-inf"), sdt), sdt), Let(l, c(0.0, sdt), sdt),
             For(j.name, T, per_key),
             Assign(l, select(binop("==", lv, c(0.0, sdt)), c(1.0, sdt), lv)),
             For(d.name, Dv, [Store(Y.buf, y_at(d), cast(binop("/", cast(yd, sdt), lv), dt))])]
    if qk_out is not None and mode == 3:       # scores -> probabilities (a dead row gives zeros)
        q_old = cast(Load(qk_out.buf, qk_at(j), dt), sdt)
        prob = select(binop("==", mv_, c(float("-inf"), sdt)), c(0.0, sdt),
                      binop("/", call("exp", binop("-", q_old, mv_)), lv))
        body.append(For(j.name, T, [Store(qk_out.buf, qk_at(j), cast(prob, dt))]))
    stmts.append(For(bhi.name, mul(mul(B, Hq), Sq), body, "parallel"))
    return stmts


def lower_linear_attention(ctx: LowerCtx):
    """The recurrence of the reference, with present_state as the state: (batch, kv head) pairs in
    parallel; at each step every state column v is decayed, corrected (delta rules: by beta times
    the value minus the state's prediction for this key) and updated, then each query head of the
    group reads its output. Columns are independent, so no scratch memory is needed."""
    ins = ctx.inputs + [None] * (6 - len(ctx.inputs))
    q, k, v, past, decay, beta = ins[:6]
    y = ctx.outputs[0]
    state = ctx.outputs[1] if len(ctx.outputs) > 1 else None
    a = ctx.attrs
    dt = q.dtype
    rule = a["update_rule"]
    if state is None or dt not in FLOAT or any(t is not None and t.dtype != dt for t in (k, v, past, decay, beta, state)):
        raise NotLowerable("LinearAttention needs present_state and one float type")
    if rule not in ("linear", "gated", "delta", "gated_delta") or q.rank != 3:
        raise NotLowerable(f"LinearAttention update rule {rule!r}")
    Hq, Hkv = a["q_num_heads"], a["kv_num_heads"]
    if not Hq or not Hkv or Hq % Hkv:
        raise NotLowerable("LinearAttention head counts")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if (gated and decay is None) or (delta and beta is None):
        raise NotLowerable("LinearAttention without its decay / beta")
    B, T = q.shape[0], q.shape[1]
    dk, dv = state.shape[2], state.shape[3]
    group = Hq // Hkv
    head = ctx.fresh("dq")
    scale = c(float(a["scale"]), dt) if a["scale"] else \
        cast(binop("/", c(1.0, "f64"), call("sqrt", cast(Bin("/", q.shape[2], Const(Hq), "i64"), "f64"))), dt)
    bh, t, kk, vv = (Var(ctx.fresh(p)) for p in ("bh", "t", "k", "v"))
    b, h = Bin("/", bh, Const(Hkv), "i64"), Bin("%", bh, Const(Hkv), "i64")
    S = lambda ki, vi: add(mul(add(mul(bh, dk), ki), dv), vi)          # present_state[b, h, k, v]
    row = lambda ref, heads, w, i: add(mul(add(mul(b, T), t), ref.shape[2]), add(mul(heads, w), i))
    k_t = lambda ki: k.load(row(k, h, dk, ki))
    v_t = v.load(row(v, h, dv, vv))

    def per_head(ref, i):                # [B, T, H * w] or [B, T, 1] (broadcast), w = 1 or dk
        last = ref.shape[2]
        if isinstance(last, Const) and last.value == 1 and Hkv != 1:
            return ref.load(mul(add(mul(b, T), t), Const(1)))
        if isinstance(last, Const) and last.value == Hkv:
            return ref.load(add(mul(add(mul(b, T), t), Const(Hkv)), h))
        return ref.load(row(ref, h, dk, i))
    stmts = [Let(head, scale, dt)]
    init = past.load(S(kk, vv)) if past is not None else c(0.0, dt)
    body = [For(kk.name, dk, [For(vv.name, dv, [Store(state.buf, S(kk, vv), init)])])]
    sv = lambda: Load(state.buf, S(kk, vv), dt)
    column = []
    if gated:
        column.append(For(kk.name, dk, [Store(state.buf, S(kk, vv), binop("*", call("exp", per_head(decay, kk)), sv()))]))
    upd = ctx.fresh("upd")
    if delta:
        pred = ctx.fresh("pred")
        column += [Let(pred, c(0.0, dt), dt),
                   For(kk.name, dk, [Assign(pred, binop("+", Var(pred, dt), binop("*", sv(), k_t(kk))))]),
                   Let(upd, binop("*", per_head(beta, Const(0)), binop("-", v_t, Var(pred, dt))), dt)]
    else:
        column.append(Let(upd, v_t, dt))
    column.append(For(kk.name, dk, [Store(state.buf, S(kk, vv), binop("+", sv(), binop("*", k_t(kk), Var(upd, dt))))]))
    out = ctx.fresh("o")
    for gi in range(group):
        hq = add(mul(h, Const(group)), Const(gi))
        column += [Let(out, c(0.0, dt), dt) if gi == 0 else Assign(out, c(0.0, dt)),
                   For(kk.name, dk, [Assign(out, binop("+", Var(out, dt), binop("*", q.load(row(q, hq, dk, kk)), sv())))]),
                   Store(y.buf, row(y, hq, dv, vv), binop("*", Var(head, dt), Var(out, dt)))]
    body.append(For(t.name, T, [For(vv.name, dv, column)]))
    return stmts + [For(bh.name, mul(B, Const(Hkv)), body, "parallel")]


def lower_rotary_embedding(ctx: LowerCtx):
    """y = x rotated pairwise by the cached angles of each position: (x1, x2) -> (cos x1 - sin x2,
    sin x1 + cos x2), pairs half-split or interleaved over the first rotary_embedding_dim dims of
    each head; the other dims pass through."""
    x, cos, sin = ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]
    pos_ids = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    y = ctx.outputs[0]
    dt = x.dtype
    if dt not in FLOAT or cos.dtype != dt or sin.dtype != dt:
        raise NotLowerable("RotaryEmbedding of non-float or mixed dtypes")
    a = ctx.attrs
    if x.rank == 4:                     # [B, H, S, D]
        B, H, S, D = x.shape
        at = lambda b, s, h, dd: LowerCtx.index(x, [b, h, s, dd])
    elif x.rank == 3 and a["num_heads"]:
        B, S, hidden = x.shape
        H = Const(int(a["num_heads"]))
        D = Bin("/", hidden, H, "i64") if not isinstance(hidden, Const) else Const(hidden.value // a["num_heads"])
        at = lambda b, s, h, dd: add(mul(add(mul(b, S), s), hidden), add(mul(h, D), dd))
    else:
        raise NotLowerable("RotaryEmbedding input layout")
    dim = Const(int(a["rotary_embedding_dim"])) if a["rotary_embedding_dim"] else D
    half = Bin("/", dim, Const(2), "i64")
    interleaved = bool(a["interleaved"])
    b, s, h, dd = (Var(ctx.fresh(p)) for p in ("b", "s", "h", "d"))
    if pos_ids is not None:
        row = cast(pos_ids.load(LowerCtx.index(pos_ids, [b, s] if pos_ids.rank == 2 else [s])), "i64")
        row = minimum(maximum(row, Const(0)), sub(cos.shape[0], Const(1)))
        cs_at = lambda k: add(mul(row, cos.shape[-1]), k)
    elif cos.rank == 3:                 # [B, S, dim / 2]
        cs_at = lambda k: LowerCtx.index(cos, [b, s, k])
    else:                               # [S, dim / 2]
        cs_at = lambda k: add(mul(s, cos.shape[-1]), k)
    inside = binop("<", dd, dim)
    if interleaved:
        k_of, is_second = Bin("/", dd, Const(2), "i64"), binop("==", Bin("%", dd, Const(2), "i64"), Const(1))
        i1, i2 = mul(k_of, Const(2)), add(mul(k_of, Const(2)), Const(1))
    else:
        is_second = binop(">=", dd, half)
        k_of = select(is_second, sub(dd, half), dd)
        i1, i2 = k_of, add(k_of, half)
    kk = select(inside, k_of, Const(0))
    cv, sv_ = cos.load(cs_at(kk)), sin.load(cs_at(kk))
    x1 = x.load(at(b, s, h, select(inside, i1, dd)))
    x2 = x.load(at(b, s, h, select(inside, i2, dd)))
    real = binop("-", binop("*", cv, x1), binop("*", sv_, x2))
    imag = binop("+", binop("*", sv_, x1), binop("*", cv, x2))
    val = select(inside, select(is_second, imag, real), x.load(at(b, s, h, dd)))
    body = [Store(y.buf, at(b, s, h, dd), val)]
    for v, n in ((dd, D), (h, H), (s, S)):
        body = [For(v.name, n, body)]
    return [For(b.name, B, body, "parallel")]


def lower_causal_conv(ctx: LowerCtx):
    """Depthwise causal 1-D convolution over [B, C, L] whose left context is past_state; the new
    state is the last k - 1 inputs of (past, input)."""
    x, w = ctx.inputs[0], ctx.inputs[1]
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else None
    past = ctx.inputs[3] if len(ctx.inputs) > 3 else None
    y = ctx.outputs[0]
    state = ctx.outputs[1] if len(ctx.outputs) > 1 else None
    dt = x.dtype
    act = ctx.attrs["activation"]
    if dt not in FLOAT or w.dtype != dt or x.rank != 3 or act not in ("none", "silu", "swish"):
        raise NotLowerable("CausalConvWithState of this type or activation")
    kshape = w.static_shape()
    if kshape is None:
        raise NotLowerable("CausalConvWithState weights of unknown shape")
    k = kshape[-1]
    B, C, L = x.shape
    km1 = Const(k - 1)

    def padded(bc, t):                  # (past, x) at time t of the k - 1 + L sequence
        from_x = x.load(add(mul(bc, L), maximum(sub(t, km1), Const(0))))
        if past is None:
            from_past = c(0.0, dt)
        else:
            from_past = past.load(add(mul(bc, km1), select(binop("<", t, km1), t, Const(0))))
        return select(binop("<", t, km1), from_past, from_x)
    bc, t, i = Var(ctx.fresh("bc")), Var(ctx.fresh("t")), Var(ctx.fresh("tap"))
    acc = ctx.fresh("acc")
    accv = Var(acc, dt)
    ch = Bin("%", bc, C, "i64")
    body = [Let(acc, c(0.0, dt), dt)]
    for tap in range(k):
        body.append(Assign(acc, binop("+", accv, binop("*", w.load(add(mul(ch, Const(k)), Const(tap))),
                                                        padded(bc, add(t, Const(tap)))))))
    if bias is not None:                 # added after the taps, as the reference does
        body.append(Assign(acc, binop("+", accv, bias.load(ch))))
    out = accv if act == "none" else binop("/", accv, binop("+", c(1.0, dt), call("exp", binop("-", c(0.0, dt), accv))))
    body.append(Store(y.buf, add(mul(bc, L), t), out))
    stmts = [For(bc.name, mul(B, C), [For(t.name, L, body)], "parallel")]
    if state is not None:                # the last k - 1 entries of (past, x): positions L .. L + k - 2
        stmts.append(For(bc.name, mul(B, C), [For(i.name, km1, [
            Store(state.buf, add(mul(bc, km1), i), padded(bc, add(L, i)))])], "parallel"))
    return stmts


LOWER = {"Attention": lower_attention, "preview.FlexAttention": lower_flex_attention,
         "RotaryEmbedding": lower_rotary_embedding, "LinearAttention": lower_linear_attention,
         "CausalConvWithState": lower_causal_conv}


def attach(ops) -> None:
    for d in ops:
        if d.name in LOWER:
            d.lower = LOWER[d.name]
