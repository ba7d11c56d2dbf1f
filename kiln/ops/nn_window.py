"""Sliding-window geometry shared by convolution and pooling ops (no ops are defined here).

A window op over spatial dims D1..Dk has a kernel, strides, dilations and pads (begin..., end...),
possibly chosen by `auto_pad`. `Window` resolves those for concrete input sizes and gives strided
numpy views of all windows at once, so references never loop over output pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass
class Window:
    kernel: tuple
    strides: tuple
    dilations: tuple
    begin: tuple            # pads before each spatial dim
    end: tuple              # pads after each spatial dim (ceil_mode may add more when slicing)
    out: tuple              # output spatial sizes

    @property
    def extent(self) -> tuple:
        """Size of a dilated kernel along each dim."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))


def spatial_attrs(rank: int, kernel_shape, strides, dilations):
    """Kernel, strides and dilations as tuples of length `rank` (defaults 1)."""
    kernel = tuple(kernel_shape) if kernel_shape else None
    strides = tuple(strides) if strides else (1,) * rank
    dilations = tuple(dilations) if dilations else (1,) * rank
    return kernel, strides, dilations


def check_auto_pad(auto_pad: str):
    if auto_pad not in AUTO_PADS:
        raise ValueError(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {auto_pad!r}")


def out_dim(size, extent: int, stride: int, begin: int, end: int, ceil_mode: bool = False):
    """Output size of one spatial dim with explicit pads (windows starting in the end padding
    are dropped, as in PyTorch and ONNX)."""
    span = size + begin + end - extent
    if ceil_mode:
        n = -(-span // stride) + 1
        if (n - 1) * stride >= size + begin:
            n -= 1
        return max(n, 0)
    return max(span // stride + 1, 0)


def same_pads(size: int, extent: int, stride: int, lower: bool):
    """(begin, end, out) for auto_pad SAME_UPPER / SAME_LOWER."""
    out = -(-size // stride)
    total = max((out - 1) * stride + extent - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small, out) if lower else (small, big, out)


def resolve(spatial, kernel, strides, dilations, pads, auto_pad: str = "NOTSET",
            ceil_mode: bool = False) -> Window:
    """The Window for concrete spatial input sizes."""
    check_auto_pad(auto_pad)
    k = len(spatial)
    extents = [(kk - 1) * d + 1 for kk, d in zip(kernel, dilations)]
    begin, end, out = [], [], []
    for i in range(k):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            b, e, o = same_pads(spatial[i], extents[i], strides[i], auto_pad == "SAME_LOWER")
        else:
            b, e = (0, 0) if auto_pad == "VALID" or not pads else (pads[i], pads[i + k])
            o = out_dim(spatial[i], extents[i], strides[i], b, e, ceil_mode)
        begin.append(b)
        end.append(e)
        out.append(o)
    return Window(tuple(kernel), tuple(strides), tuple(dilations), tuple(begin), tuple(end),
                  tuple(out))


def infer_out_dim(size, kernel: int, stride: int, dilation: int, begin, end, auto_pad: str,
                  ceil_mode: bool = False):
    """One output dim for shape inference: ints, symbols kept where the size is unchanged."""
    extent = (kernel - 1) * dilation + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if stride == 1:
            return size
        return -(-size // stride) if isinstance(size, int) else None
    if auto_pad == "VALID":
        begin = end = 0
    if not isinstance(size, int):
        return size if stride == 1 and extent - 1 == begin + end else None
    return out_dim(size, extent, stride, begin, end, ceil_mode)


def infer_window_shape(ctx, out_channels, kernel, strides, dilations, pads, auto_pad,
                       ceil_mode=False):
    """(N, out_channels, O1..Ok) from input 0's shape, or None when its rank is unknown."""
    shape = ctx.shape(0)
    if shape is None:
        return None
    k = len(shape) - 2
    if kernel is None or len(kernel) != k:
        return tuple(shape[:1]) + (out_channels,) + (None,) * k
    strides = tuple(strides) if strides else (1,) * k
    dilations = tuple(dilations) if dilations else (1,) * k
    pads = tuple(pads) if pads else (0,) * (2 * k)
    dims = [infer_out_dim(shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[i + k],
                          auto_pad, ceil_mode) for i in range(k)]
    return (shape[0], out_channels) + tuple(dims)


def pad_spatial(x: np.ndarray, begin, end, value=0) -> np.ndarray:
    """Pad (or crop, for negative pads) the spatial dims of an (N, C, D...) array."""
    if not any(begin) and not any(end):
        return x
    crop = tuple(slice(max(-b, 0), x.shape[2 + i] - max(-e, 0))
                 for i, (b, e) in enumerate(zip(begin, end)))
    x = x[(slice(None), slice(None)) + crop]
    widths = [(0, 0), (0, 0)] + [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    return np.pad(x, widths, constant_values=value)


def windows(x: np.ndarray, w: Window, value=0) -> np.ndarray:
    """A read-only view (N, C, O1..Ok, K1..Kk) of every window of x, padded with `value`."""
    k = len(w.kernel)
    extents = w.extent
    need = [(o - 1) * s + e for o, s, e in zip(w.out, w.strides, extents)]
    spatial = x.shape[2:]
    end = [max(n - spatial[i] - w.begin[i], w.end[i]) for i, n in enumerate(need)]
    xp = pad_spatial(x, w.begin, end, value)
    st = xp.strides
    shape = xp.shape[:2] + tuple(w.out) + tuple(w.kernel)
    strides = st[:2] + tuple(st[2 + i] * w.strides[i] for i in range(k)) \
        + tuple(st[2 + i] * w.dilations[i] for i in range(k))
    return as_strided(xp, shape, strides, writeable=False)


def valid_counts(spatial, w: Window, include_pad: bool) -> np.ndarray:
    """How many elements of each window (O1..Ok) lie inside the input (or inside the padded
    input when include_pad): the divisor of an average pool."""
    ones = np.ones((1, 1) + tuple(spatial), dtype=np.float64)
    if include_pad:
        ones = pad_spatial(ones, w.begin, w.end, 1.0)
        w = Window(w.kernel, w.strides, w.dilations, (0,) * len(w.begin), (0,) * len(w.end), w.out)
    view = windows(ones, w, 0.0)
    k = len(w.kernel)
    return view.sum(axis=tuple(range(-k, 0)))[0, 0]


def compute_dtype(*arrays):
    """Float type to compute in: float64 when any operand is float64, else float32."""
    return np.float64 if any(a is not None and a.dtype == np.float64 for a in arrays) \
        else np.float32


MAX_COLUMNS = 1 << 26    # im2col elements per chunk; larger batches are convolved in pieces


def conv_nd(x: np.ndarray, w: np.ndarray, win: Window, group: int) -> np.ndarray:
    """Grouped N-d convolution (cross-correlation) as im2col + one matmul per group.

    x: (N, C, D...), w: (M, C/group, K...), both already in the compute dtype; zero padding.
    """
    n, c = x.shape[:2]
    m = w.shape[0]
    k = len(win.kernel)
    if c != w.shape[1] * group or m % group:
        raise ValueError(f"channels do not match: input has {c}, weights {w.shape} with "
                         f"group={group}")
    per_image = c * int(np.prod(win.kernel)) * int(np.prod(win.out))
    if n > 1 and n * per_image > MAX_COLUMNS:
        step = max(1, MAX_COLUMNS // max(per_image, 1))
        return np.concatenate([conv_nd(x[i:i + step], w, win, group) for i in range(0, n, step)])
    view = windows(x, win, 0)                                # (N, C, O..., K...)
    cg = c // group
    view = view.reshape((n, group, cg) + view.shape[2:])
    # columns (G, Cg*K, N*O): one GEMM per group over the whole batch
    order = (1, 2) + tuple(range(3 + k, 3 + 2 * k)) + (0,) + tuple(range(3, 3 + k))
    out_size = int(np.prod(win.out, dtype=np.int64))
    cols = view.transpose(order).reshape(group, cg * int(np.prod(win.kernel)), n * out_size)
    wmat = w.reshape(group, m // group, -1)
    if group == 1:
        y = np.matmul(wmat[0], cols[0])[None]
    else:
        y = np.matmul(wmat, cols)                            # (G, M/G, N*O)
    y = y.reshape(group, m // group, n, out_size).transpose(2, 0, 1, 3)
    return np.ascontiguousarray(y).reshape((n, m) + tuple(win.out))


def channel_bias(b: np.ndarray, rank: int) -> np.ndarray:
    """Bias of shape (C,) reshaped to broadcast over an (N, C, D...) array of `rank` dims."""
    return b.reshape((1, -1) + (1,) * (rank - 2))
