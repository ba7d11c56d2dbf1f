"""Winograd convolution F(m x m, 3 x 3) in the blocked channels layout, made by the `winograd` pass
(kiln/passes/winograd.py) from a 3x3 stride-1 BlockedConv.

An output tile of m x m pixels is A^T [(G g G^T) * (B^T d B)] A, with d the (m+2) x (m+2) input
patch under it and g the 3x3 kernel: (m+2)^2 multiplications per tile and channel pair instead
of 9 m^2 (F(4, 3): 36 against 144, 4x fewer). Summed over input channels, the products are
(m+2)^2 independent matrix products, one per point xi of the transformed tile, so the convolution
becomes three ops:

- WinogradInput(X) {m, pads, out_hw, slab}: X blocked [N, ICb, H, W, b] -> V [N, A*A, ICb', T', b]
  (A = m+2, T = TH*TW tiles, TH = ceil(OH/m), TW = ceil(OW/m)): each tile's patch, zeros outside X
  (pads = [top, left] of the convolution), transformed: V = B^T d B per channel.
- WinogradMatMul(V, U) {tiles, slab}: M [N, A*A, OCb', T', b], M[n, xi, ob, t, o] =
  sum_{ib, c} V[n, xi, ib, t, c] * U[xi, ob, ib, c, o] for the `tiles` = T real tiles. U = G g G^T
  is computed at compile time from the blocked weights (`transform_weights`). Per xi this is a 1x1
  blocked convolution over T "pixels": it runs on the same generated kernels.
- WinogradOutput(M, B) {m, out_hw}: Y blocked [N, OCb, OH, OW, b] = A^T M A + B per tile, cut at
  the plane's edge (OCb = B's length / b). Elementwise epilogues (Relu, a residual Add) fuse onto it.

V and M are padded (`slab` = [ICb', T'] or [OCb', T'], at least [ICb, T]; `padded_slab` picks it):
a tile's A*A points are one point's slab of blocks*tiles vectors apart, and at ResNet's 64
channels x 56x56 (and 512 x 7x7) that is a multiple of 4 KiB, so the transforms' A*A streams all
fall in one L1 set and evict each other (3-4x slower). The padding's blocks and tiles are never
read or written by the native kernels (the references fill them with zeros).

The transforms are Toom-Cook ones with interpolation points 0, +-1 (m = 2) and 0, 1/2, -2, 3/2,
-3/4 (m = 4: half the fp32 error of Lavin and Gray's 0, +-1, +-2; found by a search over small
fractions), infinity the last point of both. fp32 results differ from a direct convolution by a
few ulps of the sums: on a 128-channel sum, RMS 3.5e-7 for F(2, 3) and 1.0e-6 for F(4, 3) summed
in one running sum, about half that in the chunks WinogradMatMul's kernels use (winograd_lower.py);
kiln/passes/winograd.py keeps F(4, 3) to the layers few others follow, for that reason.
"""
from __future__ import annotations

import numpy as np

from .infer import TensorType
from .registry import REQUIRED, op


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) of F(m x m, 3 x 3), float64."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        # points 0, 1/2, -2, 3/2, -3/4 (and infinity): half the fp32 error of 0, +-1, +-2
        bt = [[9 / 8, -15 / 16, -13 / 4, 3 / 4, 1, 0], [0, -9 / 4, -21 / 8, 5 / 4, 1, 0],
              [0, 9 / 16, -3 / 4, -5 / 4, 1, 0], [0, -3 / 4, 1 / 8, 9 / 4, 1, 0],
              [0, 3 / 2, -13 / 4, 0, 1, 0], [0, 9 / 8, -15 / 16, -13 / 4, 3 / 4, 1]]
        g = [[8 / 9, 0, 0], [-16 / 25, -8 / 25, -4 / 25], [8 / 175, -16 / 175, 32 / 175],
             [16 / 189, 8 / 63, 4 / 21], [-256 / 675, 64 / 225, -16 / 75], [0, 0, 1]]
        at = [[1, 1, 1, 1, 1, 0], [0, 1 / 2, -2, 3 / 2, -3 / 4, 0], [0, 1 / 4, 4, 9 / 4, 9 / 16, 0],
              [0, 1 / 8, -8, 27 / 8, -27 / 64, 1]]
    else:
        raise ValueError(f"Winograd F({m}x{m}, 3x3) is not supported (m = 2 or 4)")
    return tuple(np.array(a, np.float64) for a in (bt, g, at))


def tiles(out_hw, m: int) -> tuple[int, int]:
    """(TH, TW): tile rows and columns covering an OH x OW output."""
    return -(-out_hw[0] // m), -(-out_hw[1] // m)


def padded_slab(blocks: int, tiles: int, points: int, vw: int = 8) -> tuple[int, int]:
    """The smallest (blocks', tiles') >= (blocks, tiles), blocks' at most blocks + 2 and tiles'
    at most tiles + 16, whose slab of blocks' * tiles' vectors puts the `points` streams of a
    tile in as many distinct L1 sets (64-byte lines modulo 4 KiB) as there can be."""
    def sets(b, t):
        stride = b * t * vw * 4
        return len({(x * stride) % 4096 // 64 for x in range(points)})
    options = [(b, t) for b in range(blocks, blocks + 3) for t in range(tiles, tiles + 17)]
    return min(options, key=lambda bt: (-min(sets(*bt), 64), bt[0] * bt[1]))


def transform_weights(wb: np.ndarray, m: int) -> np.ndarray:
    """Blocked 3x3 weights [OCb, ICb, 3, 3, b, b] -> U [A*A, OCb, ICb, b, b] (U = G g G^T)."""
    _, g, _ = matrices(m)
    u = np.einsum("ik,abklco,jl->ijabco", g, wb.astype(np.float64), g)
    return np.ascontiguousarray(u.reshape((-1,) + wb.shape[:2] + wb.shape[4:]).astype(np.float32))


def _infer_input(ctx):
    s, at = ctx.shape(0), ctx.attrs
    th, tw = tiles(at["out_hw"], at["m"])
    blocks, t = at.get("slab") or (s[1], th * tw)
    return [TensorType(ctx.dtype(0), (s[0], (at["m"] + 2) ** 2, blocks, t, s[-1]))]


def _padded(a: np.ndarray, slab) -> np.ndarray:
    """a [N, A*A, blocks, tiles, b] with zero blocks and tiles appended up to slab."""
    if not slab:
        return a
    n, p, blocks, t, b = a.shape
    out = np.zeros((n, p, slab[0], slab[1], b), a.dtype)
    out[:, :, :blocks, :t] = a
    return out


@op("WinogradInput", inputs=["X"], attrs=dict(m=REQUIRED, pads=REQUIRED, out_hw=REQUIRED, slab=None),
    infer=_infer_input, domain="kiln")
def winograd_input(X, *, m, pads, out_hw, slab=None):
    """Blocked X -> the transformed input tiles V = B^T d B, [N, A*A, ICb', T', b]."""
    bt, _, _ = matrices(m)
    a = m + 2
    th, tw = tiles(out_hw, m)
    n, icb, h, w, b = X.shape
    pt, pl = pads
    padded = np.zeros((n, icb, th * m + 2, tw * m + 2, b), X.dtype)
    hi, wi = min(h, th * m + 2 - pt), min(w, tw * m + 2 - pl)
    padded[:, :, pt:pt + hi, pl:pl + wi] = X[:, :, :hi, :wi]
    # patches [N, ICb, TH, TW, A, A, b]
    idx_h = (np.arange(th) * m)[:, None] + np.arange(a)
    idx_w = (np.arange(tw) * m)[:, None] + np.arange(a)
    d = padded[:, :, idx_h][:, :, :, :, idx_w]                # [N, ICb, TH, A, TW, A, b]
    v = np.einsum("ik,nctkslb,jl->nijctsb", bt, d.astype(np.float64), bt)
    return _padded(np.ascontiguousarray(v.reshape(n, a * a, icb, th * tw, b).astype(X.dtype)), slab)


def _infer_matmul(ctx):
    v, u, at = ctx.shape(0), ctx.shape(1), ctx.attrs
    blocks, t = at.get("slab") or (u[1], at.get("tiles") or v[3])
    return [TensorType(ctx.dtype(0), (v[0], v[1], blocks, t, v[4]))]


@op("WinogradMatMul", inputs=["V", "U"], attrs=dict(tiles=None, slab=None), infer=_infer_matmul,
    domain="kiln")
def winograd_matmul(V, U, *, tiles=None, slab=None):
    """M[n, xi, ob, t, o] = sum_{ib, c} V[n, xi, ib, t, c] * U[xi, ob, ib, c, o], t < tiles."""
    t = tiles or V.shape[3]
    m = np.einsum("nxitc,xjico->nxjto", V[:, :, :U.shape[2], :t], U, optimize=True).astype(V.dtype)
    return _padded(m, slab)


def _infer_output(ctx):
    s, at = ctx.shape(0), ctx.attrs
    return [TensorType(ctx.dtype(0), (s[0], ctx.shape(1)[0] // s[-1], *at["out_hw"], s[-1]))]


@op("WinogradOutput", inputs=["M", "B"], attrs=dict(m=REQUIRED, out_hw=REQUIRED),
    infer=_infer_output, domain="kiln")
def winograd_output(M, B, *, m, out_hw):
    """The products M -> the blocked output tiles A^T M A + B, cut to OH x OW."""
    _, _, at = matrices(m)
    th, tw = tiles(out_hw, m)
    n, _, _, _, b = M.shape
    ocb = B.shape[0] // b
    t = M[:, :, :ocb, :th * tw].astype(np.float64).reshape(n, m + 2, m + 2, ocb, th, tw, b)
    y = np.einsum("ik,nkldtsb,jl->ndtisjb", at, t, at).reshape(n, ocb, th * m, tw * m, b)
    y = y[:, :, :out_hw[0], :out_hw[1]] + B.reshape(ocb, b)[None, :, None, None, :]
    return np.ascontiguousarray(y.astype(M.dtype))


OPS = [winograd_input, winograd_matmul, winograd_output]
