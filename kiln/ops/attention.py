"""Attention-family ops: Attention (opsets 23-25), RotaryEmbedding, FlexAttention
(ai.onnx.preview), LinearAttention and CausalConvWithState.

Low-precision inputs (float16, bfloat16) are computed in float32 and the results cast back;
float64 stays float64. Heads use the [batch, heads, seq, head_size] layout inside.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import InferContext, TensorType, same_as
from .registry import op


def _work_dtype(dt) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(dt) == np.float64 else np.dtype(np.float32)


def _to_heads(x: np.ndarray, n_heads: int) -> np.ndarray:
    """[B, S, H*D] -> [B, H, S, D]; 4-D inputs pass through."""
    if x.ndim == 4:
        return x
    b, s, hidden = x.shape
    return x.reshape(b, s, n_heads, hidden // n_heads).transpose(0, 2, 1, 3)


def _from_heads(x: np.ndarray) -> np.ndarray:
    """[B, H, S, D] -> [B, S, H*D]."""
    b, h, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, h * d)


def _repeat_kv(x: np.ndarray, q_heads: int) -> np.ndarray:
    """Share each K/V head with q_heads / kv_heads consecutive query heads (GQA / MQA)."""
    kv_heads = x.shape[1]
    if kv_heads == q_heads:
        return x
    if q_heads % kv_heads:
        raise ValueError(f"q_num_heads {q_heads} is not a multiple of kv_num_heads {kv_heads}")
    return np.repeat(x, q_heads // kv_heads, axis=1)


def _masked_softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; a row whose every score is -inf gives zeros, not NaN."""
    top = scores.max(axis=-1, keepdims=True)
    dead = np.isneginf(top)
    e = np.exp(scores - np.where(dead, 0, top))
    e = np.where(dead, 0, e)
    total = e.sum(axis=-1, keepdims=True)
    return e / np.where(total == 0, 1, total)


# --- Attention -----------------------------------------------------------------------------------
def _mask_bias(attn_mask, total: int, dt) -> np.ndarray:
    """The attention mask as an additive bias (bool: 0 / -inf), padded with -inf up to `total`."""
    m = np.asarray(attn_mask)
    if m.dtype == np.bool_:
        bias = np.where(m, 0.0, -np.inf).astype(dt)
    else:
        bias = m.astype(dt)
    short = total - bias.shape[-1]
    if short > 0:
        pad = [(0, 0)] * (bias.ndim - 1) + [(0, short)]
        bias = np.pad(bias, pad, constant_values=-np.inf)
    return bias


def _allowed_keys(batch, sq, total, offsets, nonpad, is_causal, left, right) -> np.ndarray:
    """[B, 1, Sq, total] boolean: which keys each query may see (causal, window, padding)."""
    i = np.arange(sq)[None, :, None]
    j = np.arange(total)[None, None, :]
    pos = offsets[:, None, None] + i                     # absolute query position, per batch
    ok = np.ones((batch, sq, total), bool)
    if is_causal:
        ok &= j <= pos
    if left >= 0:
        ok &= j >= pos - left
    if right >= 0:
        ok &= j <= pos + right
    if nonpad is not None:
        ok &= j < np.asarray(nonpad, np.int64)[:, None, None]
    return ok[:, None]


def _attention_bias(attn_mask, batch, sq, total, past_len, nonpad, attrs, dt):
    """The additive bias [B or 1, H or 1, Sq, total] combining mask, causality, window, padding."""
    if nonpad is not None and past_len == 0:
        offsets = np.asarray(nonpad, np.int64).reshape(-1) - sq
    else:
        offsets = np.full(batch, past_len, np.int64)
    ok = _allowed_keys(batch, sq, total, offsets, nonpad, attrs["is_causal"],
                       attrs["left_window_size"], attrs["right_window_size"])
    bias = np.where(ok, 0.0, -np.inf).astype(dt)
    if attn_mask is not None:
        bias = bias + _mask_bias(attn_mask, total, dt)
    return bias


def _heads_shape(shape, n_heads):
    """The [B, H, S, D] form of a 3-D [B, S, H*D] or 4-D shape (unknown dims as None)."""
    if shape is None or len(shape) not in (3, 4):
        return (None,) * 4
    if len(shape) == 4:
        return tuple(shape)
    b, s, hidden = shape
    d = hidden // n_heads if isinstance(hidden, int) and n_heads else None
    return (b, n_heads, s, d)


def _dim_add(a, b):
    return a + b if isinstance(a, int) and isinstance(b, int) else None


def _infer_attention(ctx: InferContext):
    q_heads, kv_heads = ctx.attrs["q_num_heads"], ctx.attrs["kv_num_heads"]
    b, hq, sq, _ = _heads_shape(ctx.shape(0), q_heads)
    _, hkv, skv, dk = _heads_shape(ctx.shape(1), kv_heads)
    dv = _heads_shape(ctx.shape(2), kv_heads)[3]
    past = _heads_shape(ctx.shape(4), kv_heads)[2] if ctx.has(4) else 0
    total = _dim_add(past, skv)
    if ctx.rank(0) == 3:
        y = (b, sq, hq * dv if isinstance(hq, int) and isinstance(dv, int) else None)
    else:
        y = None if ctx.rank(0) is None else (b, hq, sq, dv)
    dt, vdt = ctx.dtype(0), ctx.dtype(2) or ctx.dtype(0)
    out = [TensorType(dt, y), TensorType(dt, (b, hkv, total, dk)),
           TensorType(vdt, (b, hkv, total, dv)), TensorType(dt, (b, hq, sq, total))]
    return out[:ctx.n_outputs]


@op("Attention", inputs=["Q", "K", "V", "attn_mask?", "past_key?", "past_value?",
                         "nonpad_kv_seqlen?"],
    outputs=["Y", "present_key", "present_value", "qk_matmul_output"],
    attrs=dict(is_causal=0, kv_num_heads=None, left_window_size=-1, q_num_heads=None,
               qk_matmul_output_mode=0, right_window_size=-1, scale=None, softcap=0.0,
               softmax_precision=None),
    infer=_infer_attention)
def attention(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None,
              **attrs):
    """Scaled dot-product attention with GQA, masks, causal / window masking, KV cache, softcap."""
    wdt = _work_dtype(Q.dtype)
    q = _to_heads(Q, attrs["q_num_heads"]).astype(wdt)
    k = _to_heads(K, attrs["kv_num_heads"]).astype(wdt)
    v = _to_heads(V, attrs["kv_num_heads"]).astype(wdt)
    past_len = 0
    if past_key is not None:
        past_len = past_key.shape[2]
        k = np.concatenate([past_key.astype(wdt), k], axis=2)
        v = np.concatenate([past_value.astype(wdt), v], axis=2)
    present_k, present_v = k.astype(K.dtype), v.astype(V.dtype)
    batch, q_heads, sq, head_size = q.shape
    total = k.shape[2]
    scale = attrs["scale"] if attrs["scale"] is not None else 1.0 / np.sqrt(head_size)
    root = np.sqrt(wdt.type(scale))
    k_all, v_all = _repeat_kv(k, q_heads), _repeat_kv(v, q_heads)

    qk = (q * root) @ np.swapaxes(k_all * root, -1, -2)        # mode 0
    capped = qk
    if attrs["softcap"] > 0:
        capped = attrs["softcap"] * np.tanh(qk / attrs["softcap"])  # mode 1
    bias = _attention_bias(attn_mask, batch, sq, total, past_len, nonpad_kv_seqlen, attrs, wdt)
    scores = capped + bias                                      # mode 2
    if attrs["softmax_precision"] is not None:
        sdt = dtypes.from_onnx(attrs["softmax_precision"]).numpy
        probs = _masked_softmax(scores.astype(sdt)).astype(wdt)
    else:
        probs = _masked_softmax(scores)                        # mode 3
    y = probs @ v_all
    if Q.ndim == 3:
        y = _from_heads(y)
    debug = [qk, capped, scores, probs][attrs["qk_matmul_output_mode"]]
    return y.astype(Q.dtype), present_k, present_v, debug.astype(Q.dtype)


# --- RotaryEmbedding -----------------------------------------------------------------------------
@op("RotaryEmbedding", inputs=["X", "cos_cache", "sin_cache", "position_ids?"], outputs=["Y"],
    attrs=dict(interleaved=0, num_heads=0, rotary_embedding_dim=0), infer=same_as(0))
def rotary_embedding(X, cos_cache, sin_cache, position_ids=None, *, interleaved, num_heads,
                     rotary_embedding_dim):
    """Rotate (half-split or interleaved) pairs of each head's first dims by position angles."""
    wdt = _work_dtype(X.dtype)
    x = X.astype(wdt)
    x = np.swapaxes(x, 1, 2) if x.ndim == 4 else x.reshape(x.shape[0], x.shape[1], num_heads, -1)
    # x: [batch, seq, heads, head_size]
    dim = rotary_embedding_dim or x.shape[-1]
    cos, sin = cos_cache.astype(wdt), sin_cache.astype(wdt)
    if position_ids is not None:
        cos, sin = cos[position_ids], sin[position_ids]
    cos, sin = cos[..., None, :], sin[..., None, :]             # [batch, seq, 1, dim / 2]
    rot = x[..., :dim]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., : dim // 2], rot[..., dim // 2:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if interleaved:
        rotated = np.stack([real, imag], axis=-1).reshape(rot.shape)
    else:
        rotated = np.concatenate([real, imag], axis=-1)
    y = np.concatenate([rotated, x[..., dim:]], axis=-1)
    y = np.swapaxes(y, 1, 2) if X.ndim == 4 else y.reshape(X.shape)
    return y.astype(X.dtype)


# --- FlexAttention (ai.onnx.preview) -------------------------------------------------------------
def _infer_flex(ctx: InferContext):
    qs, vs = ctx.shape(0), ctx.shape(2)
    y = None if qs is None or vs is None else (qs[0], qs[1], qs[2], vs[3])
    return [TensorType(ctx.dtype(0), y)]


@op("preview.FlexAttention", inputs=["Q", "K", "V"], outputs=["Y"],
    attrs=dict(prob_mod=None, scale=None, score_mod=None, softmax_precision=None),
    infer=_infer_flex, domain="ai.onnx.preview")
def flex_attention(Q, K, V, *, prob_mod, scale, score_mod, softmax_precision):
    """Attention whose scores and probabilities pass through optional modifier subgraphs."""
    if softmax_precision is not None:
        sdt = dtypes.from_onnx(softmax_precision).numpy
    else:
        sdt = np.dtype(np.float64) if Q.dtype == np.float64 else np.dtype(np.float32)
    q, k, v = Q.astype(sdt), K.astype(sdt), V.astype(sdt)
    q_heads = q.shape[1]
    k, v = _repeat_kv(k, q_heads), _repeat_kv(v, q_heads)
    scale = scale if scale is not None else 1.0 / np.sqrt(q.shape[-1])
    scores = ((q @ np.swapaxes(k, -1, -2)) * sdt.type(scale)).astype(sdt)
    if score_mod is not None:
        scores = np.asarray(score_mod(scores)[0]).astype(sdt)
    probs = _masked_softmax(scores).astype(sdt)
    if prob_mod is not None:
        probs = np.asarray(prob_mod(probs)[0]).astype(sdt)
    return (probs @ v).astype(Q.dtype)


# --- LinearAttention -----------------------------------------------------------------------------
def _infer_linear_attention(ctx: InferContext):
    qs, vs = ctx.shape(0), ctx.shape(2)
    qh, kvh = ctx.attrs["q_num_heads"], ctx.attrs["kv_num_heads"]
    y = state = None
    if qs is not None and vs is not None and isinstance(vs[2], int):
        dv = vs[2] // kvh
        y = (qs[0], qs[1], qh * dv)
        ks = ctx.shape(1)
        dk = ks[2] // kvh if ks is not None and isinstance(ks[2], int) else None
        state = (qs[0], kvh, dk, dv)
    sdt = ctx.dtype(3) if ctx.has(3) else ctx.dtype(0)
    return [TensorType(ctx.dtype(0), y), TensorType(sdt, state)][:ctx.n_outputs]


def _per_head(x, b, t, heads, width):
    """[B, T, heads*width] (or [B, T, 1] broadcast) -> [B, T, heads, width]."""
    if x.shape[-1] == 1 and heads * width != 1:
        return np.broadcast_to(x[..., None], (b, t, heads, width))
    return x.reshape(b, t, heads, -1)


@op("LinearAttention", inputs=["query", "key", "value", "past_state?", "decay?", "beta?"],
    outputs=["output", "present_state"],
    attrs=dict(chunk_size=64, kv_num_heads=None, q_num_heads=None, scale=0.0,
               update_rule="gated_delta"),
    infer=_infer_linear_attention)
def linear_attention(query, key, value, past_state=None, decay=None, beta=None, *, chunk_size,
                     kv_num_heads, q_num_heads, scale, update_rule):
    """Recurrent linear attention (linear / gated / delta / gated_delta state updates)."""
    wdt = _work_dtype(query.dtype)
    b, t, _ = query.shape
    q = query.astype(wdt).reshape(b, t, q_num_heads, -1)
    k = key.astype(wdt).reshape(b, t, kv_num_heads, -1)
    v = value.astype(wdt).reshape(b, t, kv_num_heads, -1)
    dk, dv = k.shape[-1], v.shape[-1]
    scale = scale or 1.0 / np.sqrt(q.shape[-1])
    state = (np.zeros((b, kv_num_heads, dk, dv), wdt) if past_state is None
             else past_state.astype(wdt))
    gated = update_rule in ("gated", "gated_delta")
    delta = update_rule in ("delta", "gated_delta")
    g = _per_head(decay.astype(wdt), b, t, kv_num_heads, 1) if gated else None
    bt = _per_head(beta.astype(wdt), b, t, kv_num_heads, 1)[..., 0] if delta else None
    group = q_num_heads // kv_num_heads
    out = np.zeros((b, t, q_num_heads, dv), wdt)
    for step in range(t):
        k_t, v_t = k[:, step], v[:, step]                          # [B, Hkv, dk] / [B, Hkv, dv]
        if gated:
            state = np.exp(g[:, step])[..., None] * state          # decay per key dim or head
        if delta:
            predicted = np.einsum("bhkv,bhk->bhv", state, k_t)
            update = bt[:, step][..., None] * (v_t - predicted)
        else:
            update = v_t
        state = state + k_t[..., :, None] * update[..., None, :]
        shared = np.repeat(state, group, axis=1)                   # [B, Hq, dk, dv]
        out[:, step] = scale * np.einsum("bhk,bhkv->bhv", q[:, step], shared)
    sdt = past_state.dtype if past_state is not None else query.dtype
    return out.reshape(b, t, -1).astype(query.dtype), state.astype(sdt)


# --- CausalConvWithState -------------------------------------------------------------------------
def _infer_causal_conv(ctx: InferContext):
    xs, ws = ctx.shape(0), ctx.shape(1)
    state = None
    if xs is not None and ws is not None:
        k = ws[-1]
        state = (xs[0], xs[1], k - 1 if isinstance(k, int) else None)
    return [TensorType(ctx.dtype(0), xs), TensorType(ctx.dtype(0), state)][:ctx.n_outputs]


@op("CausalConvWithState", inputs=["input", "weight", "bias?", "past_state?"],
    outputs=["output", "present_state"], attrs=dict(activation="none"), infer=_infer_causal_conv)
def causal_conv_with_state(input, weight, bias=None, past_state=None, *, activation):
    """Depthwise causal 1-D convolution over [B, C, L] carrying the last k - 1 inputs as state."""
    wdt = _work_dtype(input.dtype)
    x = input.astype(wdt)
    w = weight.astype(wdt)[:, 0, :]                                # [C, k]
    b, c, length = x.shape
    k = w.shape[-1]
    past = (np.zeros((b, c, k - 1), wdt) if past_state is None else past_state.astype(wdt))
    padded = np.concatenate([past, x], axis=2)                     # [B, C, k - 1 + L]
    y = np.zeros((b, c, length), wdt)
    for i in range(k):
        y += w[None, :, i, None] * padded[:, :, i:i + length]
    if bias is not None:
        y += bias.astype(wdt)[None, :, None]
    if activation in ("silu", "swish"):
        y = y / (1.0 + np.exp(-y))
    state = padded[:, :, padded.shape[2] - (k - 1):]
    return y.astype(input.dtype), state.astype(input.dtype)

