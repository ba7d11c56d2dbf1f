"""Spatial sampling ops: GridSample (N-d; nearest, linear, cubic; zeros, border, reflection
padding) and AffineGrid."""
from __future__ import annotations

import itertools

import numpy as np

from .infer import TensorType
from .nn_window import compute_dtype
from .registry import op

OLD_MODES = {"bilinear": "linear", "bicubic": "cubic"}
CUBIC_A = -0.75


def unnormalize(coord, size: int, align_corners: bool):
    """Grid coordinates in [-1, 1] to pixel coordinates."""
    if align_corners:
        return (coord + 1) / 2 * (size - 1)
    return ((coord + 1) * size - 1) / 2


def reflect(coord, twice_low: float, twice_high: float):
    """Reflect coordinates into [twice_low / 2, twice_high / 2] (mirrored repeatedly)."""
    if twice_low == twice_high:
        return np.zeros_like(coord)
    low, span = twice_low / 2, (twice_high - twice_low) / 2
    dist = np.abs(coord - low)
    extra = np.fmod(dist, span)
    flips = np.floor(dist / span)
    return np.where(flips % 2 == 0, extra + low, span - extra + low)


def pad_coord(coord, size: int, padding_mode: str, align_corners: bool):
    """Bring a pixel coordinate inside the image as border/reflection padding does."""
    if padding_mode == "border":
        return np.clip(coord, 0, size - 1)
    if padding_mode == "reflection":
        if align_corners:
            coord = reflect(coord, 0, 2 * (size - 1))
        else:
            coord = reflect(coord, -1, 2 * size - 1)
        return np.clip(coord, 0, size - 1)
    return coord


def cubic_weights(t):
    """Weights of the four taps at offsets -1, 0, 1, 2 for fractional position t."""
    def near(x):     # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x):      # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def axis_taps(coord, size, mode, padding_mode, align_corners):
    """[(index, weight)] taps along one axis; indices may still lie outside [0, size)."""
    if mode == "cubic":
        base = np.floor(coord)
        weights = cubic_weights(coord - base)
        taps = []
        for off, wt in zip((-1, 0, 1, 2), weights):
            pos = pad_coord(base + off, size, padding_mode, align_corners)
            taps.append((pos, wt))
        return taps
    coord = pad_coord(coord, size, padding_mode, align_corners)
    if mode == "nearest":
        return [(np.rint(coord), np.ones_like(coord))]
    base = np.floor(coord)
    frac = coord - base
    return [(base, 1 - frac), (base + 1, frac)]


def upgrade_grid_sample(node):
    """Opset 16 named the modes bilinear and bicubic."""
    mode = node.attrs.get("mode")
    if mode in OLD_MODES:
        node.attrs["mode"] = OLD_MODES[mode]


def infer_grid_sample(ctx):
    x, grid = ctx.shape(0), ctx.shape(1)
    if x is None or grid is None:
        return [TensorType(ctx.dtype(0), None)]
    return [TensorType(ctx.dtype(0), (x[0], x[1]) + tuple(grid[1:-1]))]


@op("GridSample", inputs=["X", "grid"],
    attrs=dict(align_corners=0, mode="linear", padding_mode="zeros"), infer=infer_grid_sample,
    upgrade=upgrade_grid_sample)
def grid_sample(X, grid, *, align_corners, mode, padding_mode):
    """Sample X at the normalized positions in grid (last axis ordered x, y[, z])."""
    if mode not in ("nearest", "linear", "cubic"):
        raise ValueError(f"unknown GridSample mode {mode!r}")
    dt = compute_dtype(X, grid)
    n, c = X.shape[:2]
    spatial = X.shape[2:]
    k = len(spatial)
    g = grid.astype(dt, copy=False)
    per_axis = []
    for i, size in enumerate(spatial):
        coord = unnormalize(g[..., k - 1 - i], size, bool(align_corners))
        per_axis.append(axis_taps(coord, size, mode, padding_mode, bool(align_corners)))
    x = np.moveaxis(X.astype(dt, copy=False), 1, -1)            # (N, D..., C)
    batch = np.arange(n).reshape((n,) + (1,) * (g.ndim - 2))
    out = np.zeros(g.shape[:-1] + (c,), dt)
    for taps in itertools.product(*per_axis):
        weight = np.ones(g.shape[:-1], dt)
        index = []
        for (pos, wt), size in zip(taps, spatial):
            weight = weight * wt * ((pos >= 0) & (pos <= size - 1))
            index.append(np.clip(pos, 0, size - 1).astype(np.int64))
        out += x[(batch,) + tuple(index)] * weight[..., None]
    return np.moveaxis(out, -1, 1).astype(X.dtype, copy=False)


# --- AffineGrid ----------------------------------------------------------------------------
def base_coords(size: int, align_corners: bool):
    if size <= 1:
        return np.zeros(max(size, 0))
    if align_corners:
        return np.linspace(-1.0, 1.0, size)
    return (np.arange(size) * 2 + 1) / size - 1


def infer_affine_grid(ctx):
    size = ctx.const(1)
    if size is not None:
        dims = [int(d) for d in size]
        return [TensorType(ctx.dtype(0), (dims[0],) + tuple(dims[2:]) + (len(dims) - 2,))]
    s, theta = ctx.shape(1), ctx.shape(0)
    if s is not None and isinstance(s[0], int):
        n = theta[0] if theta is not None else None
        return [TensorType(ctx.dtype(0), (n,) + (None,) * (s[0] - 2) + (s[0] - 2,))]
    return [TensorType(ctx.dtype(0), None)]


@op("AffineGrid", inputs=["theta", "size"], outputs=["grid"], attrs=dict(align_corners=0),
    infer=infer_affine_grid)
def affine_grid(theta, size, *, align_corners):
    """Sampling grid (N, D..., k) of the affine maps theta (N, k, k+1) over an output of `size`."""
    dims = [int(d) for d in size]
    spatial = dims[2:]
    k = len(spatial)
    dt = compute_dtype(theta)
    axes = np.meshgrid(*[base_coords(d, bool(align_corners)) for d in spatial], indexing="ij")
    coords = np.stack(list(axes[::-1]) + [np.ones(spatial)], axis=-1).reshape(-1, k + 1)
    grid = np.matmul(coords.astype(dt)[None], theta.astype(dt).transpose(0, 2, 1))
    return grid.reshape([theta.shape[0]] + spatial + [k]).astype(theta.dtype, copy=False)


OPS = [grid_sample, affine_grid]
