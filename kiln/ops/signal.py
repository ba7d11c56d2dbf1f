"""Signal processing ops: DFT, STFT, the Hann / Hamming / Blackman windows, MelWeightMatrix.

Complex tensors follow the ONNX convention: a trailing dim of 2 holds (real, imaginary); a real
signal has a trailing dim of 1. Transforms run through numpy's FFT in single precision
(complex64) for float32 and narrower inputs, in double precision for float64, and come back in
the input's dtype.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from .infer import InferContext, TensorType
from .registry import op


# --- complex <-> trailing-pair helpers -----------------------------------------------------------
def _to_complex(x: np.ndarray) -> np.ndarray:
    """[..., 1] real or [..., 2] (re, im) -> complex array without the trailing dim."""
    real, cplx = (np.float64, np.complex128) if x.dtype == np.float64 else (np.float32,
                                                                           np.complex64)
    x = np.asarray(x, real)
    if x.shape[-1] == 1:
        return x[..., 0].astype(cplx)
    return (x[..., 0] + 1j * x[..., 1]).astype(cplx)


def _from_complex(z: np.ndarray, dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _scalar(x, default=None):
    return default if x is None else int(np.asarray(x).reshape(-1)[0])


# --- DFT -----------------------------------------------------------------------------------------
def _dft_upgrade(node):
    """Opset 17 took `axis` as an attribute (default 1); opset 20 takes it as input 2."""
    if node.opset < 20:
        node.attrs.setdefault("axis", 1)
        node.move_attr_to_input("axis", 2)


def _dft_axis(axis, rank):
    axis = -2 if axis is None else axis
    return axis + rank if axis < 0 else axis


def _dft_out_len(n_in, dft_length, onesided, inverse):
    if onesided and inverse:
        return dft_length if dft_length is not None else 2 * (n_in - 1)
    n = dft_length if dft_length is not None else n_in
    return n // 2 + 1 if onesided else n


def _infer_dft(ctx: InferContext):
    shape = ctx.shape(0)
    if shape is None:
        return [TensorType(ctx.dtype(0), None)]
    axis = ctx.const(2)
    last = 1 if ctx.attrs["onesided"] and ctx.attrs["inverse"] else 2
    if ctx.has(2) and axis is None:                     # axis unknown at compile time
        same_len = not ctx.has(1) and not ctx.attrs["onesided"]
        dims = tuple(shape[:-1]) if same_len else (None,) * (len(shape) - 1)
        return [TensorType(ctx.dtype(0), dims + (last,))]
    axis = _dft_axis(_scalar(axis), len(shape))
    length = ctx.const(1)
    if ctx.has(1) and length is None:
        n = None
    elif isinstance(shape[axis], int):
        n = _dft_out_len(shape[axis], _scalar(length), ctx.attrs["onesided"],
                         ctx.attrs["inverse"])
    else:
        n = _scalar(length) if length is not None and not ctx.attrs["onesided"] else None
    out = list(shape)
    out[axis], out[-1] = n, last
    return [TensorType(ctx.dtype(0), tuple(out))]


@op("DFT", inputs=["input", "dft_length?", "axis?"], outputs=["output"],
    attrs=dict(inverse=0, onesided=0), infer=_infer_dft, upgrade=_dft_upgrade)
def dft(input, dft_length=None, axis=None, *, inverse, onesided):
    """Discrete Fourier transform along one signal axis (inverse, one-sided, zero-padding)."""
    ax = _dft_axis(_scalar(axis), input.ndim)
    z = _to_complex(input)
    n_in = z.shape[ax]
    n = _scalar(dft_length)
    if onesided and inverse:
        n = n if n is not None else 2 * (n_in - 1)
        y = np.fft.irfft(z, n=n, axis=ax)
        return y[..., None].astype(input.dtype)
    n = n if n is not None else n_in
    y = np.fft.ifft(z, n=n, axis=ax) if inverse else np.fft.fft(z, n=n, axis=ax)
    if onesided:
        y = np.take(y, np.arange(n // 2 + 1), axis=ax)
    return _from_complex(y, input.dtype)


# --- STFT ----------------------------------------------------------------------------------------
def _infer_stft(ctx: InferContext):
    shape = ctx.shape(0)
    step, length = ctx.const(1), ctx.const(3)
    win = ctx.shape(2) if ctx.has(2) else None
    frame_len = _scalar(length) if length is not None else (win[0] if win else None)
    if not ctx.has(2) and not ctx.has(3) and shape is not None:
        frame_len = shape[1]
    batch = frames = bins = None
    if shape is not None and len(shape) == 3:
        batch = shape[0]
        if isinstance(shape[1], int) and isinstance(frame_len, int) and step is not None:
            frames = (shape[1] - frame_len) // _scalar(step) + 1
        complex_in = shape[2] == 2
        onesided = ctx.attrs["onesided"] and not complex_in
        if isinstance(frame_len, int):
            bins = frame_len // 2 + 1 if onesided else frame_len
    return [TensorType(ctx.dtype(0), (batch, frames, bins, 2))]


@op("STFT", inputs=["signal", "frame_step", "window?", "frame_length?"], outputs=["output"],
    attrs=dict(onesided=1), infer=_infer_stft)
def stft(signal, frame_step, window=None, frame_length=None, *, onesided):
    """Short-time Fourier transform: a DFT of each (windowed) frame of the signal."""
    z = _to_complex(signal)                             # [batch, length]
    step = _scalar(frame_step)
    if frame_length is not None:
        n = _scalar(frame_length)
    elif window is not None:
        n = window.shape[0]
    else:
        n = z.shape[1]
    w = np.ones(n, z.real.dtype) if window is None else _to_complex(np.asarray(window)[..., None]
                                                      if window.ndim == 1 else window)
    frames = (z.shape[1] - n) // step + 1
    starts = np.arange(frames) * step
    framed = z[:, starts[:, None] + np.arange(n)[None, :]] * w     # [batch, frames, n]
    y = np.fft.fft(framed, axis=-1)
    complex_in = signal.shape[-1] == 2 or (window is not None and np.iscomplexobj(window))
    if onesided and not complex_in:
        y = y[..., : n // 2 + 1]
    return _from_complex(y, signal.dtype)


# --- windows -------------------------------------------------------------------------------------
def _infer_window(ctx: InferContext):
    size = ctx.const(0)
    dt = dtypes.from_onnx(ctx.attrs["output_datatype"])
    return [TensorType(dt, (_scalar(size) if size is not None else None,))]


def _cosine_window(size, periodic, coeffs, output_datatype):
    """sum_k (-1)^k a_k cos(2 pi k n / N), N = size (periodic) or size - 1 (symmetric)."""
    size = _scalar(size)
    denom = size if periodic else size - 1
    n = np.arange(size, dtype=np.float64)
    phase = 2 * np.pi * n / denom if denom > 0 else np.zeros(size)
    w = np.zeros(size)
    for k, a in enumerate(coeffs):
        w += (-1) ** k * a * np.cos(k * phase)
    return w.astype(dtypes.from_onnx(output_datatype).numpy)


_WINDOW_ATTRS = dict(output_datatype=1, periodic=1)


@op("HannWindow", inputs=["size"], outputs=["output"], attrs=_WINDOW_ATTRS, infer=_infer_window)
def hann_window(size, *, output_datatype, periodic):
    """Hann window: 0.5 - 0.5 cos(2 pi n / N)."""
    return _cosine_window(size, periodic, (0.5, 0.5), output_datatype)


@op("HammingWindow", inputs=["size"], outputs=["output"], attrs=_WINDOW_ATTRS,
    infer=_infer_window)
def hamming_window(size, *, output_datatype, periodic):
    """Hamming window: 25/46 - 21/46 cos(2 pi n / N)."""
    return _cosine_window(size, periodic, (25 / 46, 21 / 46), output_datatype)


@op("BlackmanWindow", inputs=["size"], outputs=["output"], attrs=_WINDOW_ATTRS,
    infer=_infer_window)
def blackman_window(size, *, output_datatype, periodic):
    """Blackman window: 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N)."""
    return _cosine_window(size, periodic, (0.42, 0.5, 0.08), output_datatype)


# --- MelWeightMatrix -----------------------------------------------------------------------------
def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _infer_mel(ctx: InferContext):
    bins, length = ctx.const(0), ctx.const(1)
    rows = _scalar(length) // 2 + 1 if length is not None else None
    cols = _scalar(bins) if bins is not None else None
    return [TensorType(dtypes.from_onnx(ctx.attrs["output_datatype"]), (rows, cols))]


@op("MelWeightMatrix", inputs=["num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz",
                               "upper_edge_hertz"], outputs=["output"],
    attrs=dict(output_datatype=1), infer=_infer_mel)
def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz,
                      *, output_datatype):
    """Triangular mel filterbank [dft_length // 2 + 1, num_mel_bins], peaks of 1."""
    n_mel, n_fft, rate = _scalar(num_mel_bins), _scalar(dft_length), _scalar(sample_rate)
    lo = _hz_to_mel(float(np.asarray(lower_edge_hertz)))
    hi = _hz_to_mel(float(np.asarray(upper_edge_hertz)))
    n_bins = n_fft // 2 + 1
    # num_mel_bins + 2 band edges on the mel scale, mapped to DFT bin indices. The step is
    # (hi - lo) / (num_mel_bins + 2), as ONNX's conformance data has it (the top edge falls
    # one step short of upper_edge_hertz).
    mels = lo + np.arange(n_mel + 2) * (hi - lo) / (n_mel + 2)
    edges = np.floor((n_fft + 1) * _mel_to_hz(mels) / rate).astype(np.int64)
    out = np.zeros((n_bins, n_mel))
    for i in range(n_mel):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            out[center, i] = 1.0
        else:
            j = np.arange(left, center + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, i] = (right - j) / (right - center)
    return out.astype(dtypes.from_onnx(output_datatype).numpy)

