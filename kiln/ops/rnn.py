"""Recurrent ops: RNN, GRU, LSTM (forward / reverse / bidirectional, layout 0 and 1,
sequence_lens, initial states, clip, configurable activations).

All three share one driver: `_run_layer` handles layout, directions, sequence lengths and
stacking of the outputs; each op only supplies a `step` function for one time step.
"""
from __future__ import annotations

import numpy as np

from .infer import InferContext, TensorType
from .registry import OpDef

# --- activations ---------------------------------------------------------------------------------
# name -> (function(x, alpha, beta), default alpha, default beta); None: takes no parameter.


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


_ACTIVATIONS = {
    "relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: _sigmoid(x), None, None),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, None),
    "thresholdedrelu": (lambda x, a, b: np.where(x >= a, x, 0), 1.0, None),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1)), 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), None, None),
}


def _activations(names, alphas, betas, defaults, num_dir):
    """Resolve the `activations` attribute into one list of callables per direction."""
    names = list(names) if names else list(defaults) * num_dir
    if len(names) == len(defaults) and num_dir == 2:
        names = names * 2
    alphas, betas = list(alphas or []), list(betas or [])
    fns = []
    for name in names:
        fn, da, db = _ACTIVATIONS[name.lower()]
        a = alphas.pop(0) if da is not None and alphas else da
        b = betas.pop(0) if db is not None and betas else db
        fns.append(lambda x, fn=fn, a=a, b=b: fn(x, a, b))
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(num_dir)]


def _clipper(clip):
    if clip is None:
        return lambda x: x
    return lambda x: np.clip(x, -clip, clip)


# --- the shared driver ---------------------------------------------------------------------------
def _compute_dtype(dt):
    return np.float64 if dt == np.float64 else np.float32


def _run_layer(X, states, sequence_lens, direction, layout, steps):
    """Run the recurrence over X for each direction.

    states: list (per state) of arrays [num_dir, batch, hidden] (layout 0 form);
    steps: one function per direction, step(x_t, *states) -> new states (first is H).
    Returns Y [seq, num_dir, batch, hidden] and the final states, in layout 0 form.
    """
    if layout == 1:
        X = np.swapaxes(X, 0, 1)
    seq_len, batch = X.shape[0], X.shape[1]
    lens = (np.full(batch, seq_len, np.int64) if sequence_lens is None
            else np.asarray(sequence_lens, np.int64))
    num_dir = len(steps)
    hidden = states[0].shape[-1]
    Y = np.zeros((seq_len, num_dir, batch, hidden), states[0].dtype)
    finals = [np.empty_like(s) for s in states]
    for d, step in enumerate(steps):
        reverse = direction == "reverse" or d == 1
        cur = [s[d].copy() for s in states]
        for t in range(seq_len):
            active = t < lens                                   # batch entries still running
            if not active.any():
                break
            # Reverse direction reads each batch entry's valid part backwards.
            idx = np.where(active, lens - 1 - t, 0) if reverse else np.full(batch, t)
            x_t = X[idx, np.arange(batch)]
            new = step(x_t, *cur)
            for k in range(len(cur)):
                cur[k] = np.where(active[:, None], new[k], cur[k])
            rows = np.nonzero(active)[0]
            Y[idx[rows], d, rows] = cur[0][rows]
        for k in range(len(cur)):
            finals[k][d] = cur[k]
    return Y, finals


def _outputs(Y, finals, layout, dtype):
    if layout == 1:
        Y = np.transpose(Y, (2, 0, 1, 3))
        finals = [np.swapaxes(f, 0, 1) for f in finals]
    outs = [Y] + finals
    return tuple(o.astype(dtype) for o in outs)


def _initial(state, num_dir, batch, hidden, layout, cdt):
    if state is None:
        return np.zeros((num_dir, batch, hidden), cdt)
    state = np.asarray(state, cdt)
    return np.swapaxes(state, 0, 1) if layout == 1 else state


def _prepare(X, W, R, B, n_gates, layout, hidden_size):
    cdt = _compute_dtype(X.dtype)
    num_dir = W.shape[0]
    hidden = hidden_size if hidden_size else R.shape[-1]
    if B is None:
        B = np.zeros((num_dir, 2 * n_gates * hidden), cdt)
    batch = X.shape[1] if layout == 0 else X.shape[0]
    return cdt, num_dir, hidden, batch, W.astype(cdt), R.astype(cdt), B.astype(cdt)


def _check_dirs(direction, num_dir):
    want = 2 if direction == "bidirectional" else 1
    if num_dir != want:
        raise ValueError(f"direction {direction!r} needs {want} weight sets, got {num_dir}")


# --- shape inference -----------------------------------------------------------------------------
def _infer_rnn(n_states):
    def rule(ctx: InferContext):
        dt = ctx.dtype(0)
        xs, ws, rs = ctx.shape(0), ctx.shape(1), ctx.shape(2)
        layout = ctx.attrs["layout"]
        num_dir = 2 if ctx.attrs["direction"] == "bidirectional" else 1
        hidden = ctx.attrs["hidden_size"] or (rs[-1] if rs is not None else None)
        if ws is not None:
            num_dir = ws[0]
        seq = batch = None
        if xs is not None and len(xs) == 3:
            seq, batch = (xs[0], xs[1]) if layout == 0 else (xs[1], xs[0])
        if layout == 0:
            y = (seq, num_dir, batch, hidden)
            h = (num_dir, batch, hidden)
        else:
            y = (batch, seq, num_dir, hidden)
            h = (batch, num_dir, hidden)
        out = [TensorType(dt, y)] + [TensorType(dt, h)] * n_states
        return out[:ctx.n_outputs]
    return rule


def _drop_output_sequence(node):
    """Opset 1 had `output_sequence` (Y was optional through it); later opsets dropped it."""
    node.attrs.pop("output_sequence", None)


_COMMON_ATTRS = dict(activation_alpha=None, activation_beta=None, activations=None, clip=None,
                     direction="forward", hidden_size=0, layout=0)


# --- RNN -----------------------------------------------------------------------------------------
def rnn(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha,
        activation_beta, activations, clip, direction, hidden_size, layout):
    """Simple recurrent layer: Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)."""
    cdt, num_dir, hidden, batch, W, R, B = _prepare(X, W, R, B, 1, layout, hidden_size)
    _check_dirs(direction, num_dir)
    acts = _activations(activations, activation_alpha, activation_beta, ["Tanh"], num_dir)
    clipf = _clipper(clip)

    def make_step(d):
        wb, rb = B[d, :hidden], B[d, hidden:]
        f = acts[d][0]

        def step(x, h):
            return (f(clipf(x @ W[d].T + h @ R[d].T + wb + rb)),)
        return step

    h0 = _initial(initial_h, num_dir, batch, hidden, layout, cdt)
    Y, finals = _run_layer(X.astype(cdt), [h0], sequence_lens, direction, layout,
                           [make_step(d) for d in range(num_dir)])
    return _outputs(Y, finals, layout, X.dtype)


# --- GRU -----------------------------------------------------------------------------------------
def gru(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha,
        activation_beta, activations, clip, direction, hidden_size, layout, linear_before_reset):
    """Gated recurrent unit layer (gates z, r, h; linear_before_reset applies R before r)."""
    cdt, num_dir, hidden, batch, W, R, B = _prepare(X, W, R, B, 3, layout, hidden_size)
    _check_dirs(direction, num_dir)
    acts = _activations(activations, activation_alpha, activation_beta, ["Sigmoid", "Tanh"],
                        num_dir)
    clipf = _clipper(clip)
    H = hidden

    def make_step(d):
        f, g = acts[d]
        wz, wr, wh = W[d][:H], W[d][H:2 * H], W[d][2 * H:]
        rz, rr, rh = R[d][:H], R[d][H:2 * H], R[d][2 * H:]
        wbz, wbr, wbh, rbz, rbr, rbh = (B[d][i * H:(i + 1) * H] for i in range(6))

        def step(x, h):
            z = f(clipf(x @ wz.T + h @ rz.T + wbz + rbz))
            r = f(clipf(x @ wr.T + h @ rr.T + wbr + rbr))
            if linear_before_reset:
                pre = x @ wh.T + r * (h @ rh.T + rbh) + wbh
            else:
                pre = x @ wh.T + (r * h) @ rh.T + rbh + wbh
            hh = g(clipf(pre))
            return ((1 - z) * hh + z * h,)
        return step

    h0 = _initial(initial_h, num_dir, batch, hidden, layout, cdt)
    Y, finals = _run_layer(X.astype(cdt), [h0], sequence_lens, direction, layout,
                           [make_step(d) for d in range(num_dir)])
    return _outputs(Y, finals, layout, X.dtype)


# --- LSTM ----------------------------------------------------------------------------------------
def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
         activation_alpha, activation_beta, activations, clip, direction, hidden_size,
         input_forget, layout):
    """Long short-term memory layer (gates i, o, f, c; optional peepholes P)."""
    cdt, num_dir, hidden, batch, W, R, B = _prepare(X, W, R, B, 4, layout, hidden_size)
    _check_dirs(direction, num_dir)
    acts = _activations(activations, activation_alpha, activation_beta,
                        ["Sigmoid", "Tanh", "Tanh"], num_dir)
    clipf = _clipper(clip)
    H = hidden
    P = np.zeros((num_dir, 3 * H), cdt) if P is None else P.astype(cdt)

    def make_step(d):
        f, g, h_act = acts[d]
        bias = B[d][:4 * H] + B[d][4 * H:]
        pi, po, pf = P[d][:H], P[d][H:2 * H], P[d][2 * H:]

        def step(x, h, c):
            gates = x @ W[d].T + h @ R[d].T + bias
            gi, go, gf, gc = (gates[:, k * H:(k + 1) * H] for k in range(4))
            i = f(clipf(gi + pi * c))
            if input_forget:
                fg = 1 - i                          # coupled input and forget gates
            else:
                fg = f(clipf(gf + pf * c))
            c_new = fg * c + i * g(clipf(gc))
            o = f(clipf(go + po * c_new))
            return o * h_act(c_new), c_new
        return step

    h0 = _initial(initial_h, num_dir, batch, hidden, layout, cdt)
    c0 = _initial(initial_c, num_dir, batch, hidden, layout, cdt)
    Y, finals = _run_layer(X.astype(cdt), [h0, c0], sequence_lens, direction, layout,
                           [make_step(d) for d in range(num_dir)])
    return _outputs(Y, finals, layout, X.dtype)


OPS = [
    OpDef("RNN", ("X", "W", "R", "B?", "sequence_lens?", "initial_h?"), ("Y", "Y_h"),
          dict(_COMMON_ATTRS), rnn, _infer_rnn(1), _drop_output_sequence),
    OpDef("GRU", ("X", "W", "R", "B?", "sequence_lens?", "initial_h?"), ("Y", "Y_h"),
          dict(_COMMON_ATTRS, linear_before_reset=0), gru, _infer_rnn(1), _drop_output_sequence),
    OpDef("LSTM", ("X", "W", "R", "B?", "sequence_lens?", "initial_h?", "initial_c?", "P?"),
          ("Y", "Y_h", "Y_c"), dict(_COMMON_ATTRS, input_forget=0), lstm, _infer_rnn(2),
          _drop_output_sequence),
]
