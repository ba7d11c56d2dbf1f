"""C support code for the transforms of Winograd convolution F(m x m, 3 x 3) in the blocked layout
(kiln/ops/winograd.py), generated per geometry; the products in between run on the 1x1 kernels of
kiln/backend/blocked.py. Both functions handle one row of tiles of one channel block:

    input:   fn(x, V, th)      x: one input block's H x W plane; V: V[n][0][ib][0]
        V[xi][th*TW + tw] = (B^T d B)[xi] for each tile tw of tile row th (d: its A x A patch)
    output:  fn(M, bias, y, th)  M: M[n][0][ob][0]; y: one output block's OH x OW plane
        y[th*m + i][tw*m + j] = (A^T M A)[i][j] + bias, cut at the plane's edge

The input rows a tile row reads are first copied, with the padding's zeros, into a buffer on the
stack, so the transforms themselves have no bounds checks. The transforms are straight-line
vector code: each sum of the matrix products is written out with its constant coefficients
(zero terms dropped, +-1 as additions).
"""
from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass

import numpy as np

from ..ops.winograd import matrices, tiles
from .blocked import GENERATED, clamped, vector_typedef


@dataclass(frozen=True)
class WinoGeometry:
    m: int            # output tile side (A = m + 2 input side)
    H: int            # input plane (the output transform ignores it)
    W: int
    OH: int
    OW: int
    PT: int           # pads, top and left
    PL: int
    xi_stride: int    # floats between two points xi in V or M: a point's (padded) slab
    vw: int = 8
    clamp: tuple | None = None  # output transform: (lo, hi), a fused Relu / Clip on each result

    @property
    def grid(self) -> tuple[int, int]:
        return tiles((self.OH, self.OW), self.m)

    def name(self, kind: str) -> str:
        h = hashlib.sha1(repr((kind, astuple(self))).encode()).hexdigest()[:12]
        return f"kiln_wino_{kind}_{h}"


def _vec(g: WinoGeometry) -> str:
    return f"kiln_bv{g.vw}"


def _lincomb(coefs, names) -> str:
    """sum coefs[k] * names[k] as C, zeros dropped, +-1 as additions."""
    out = ""
    for c, x in zip(coefs, names):
        if c == 0:
            continue
        sign = "-" if c < 0 else "+"
        mag = abs(float(c))
        term = x if mag == 1 else f"{mag!r}f * {x}"
        out += f" {sign} {term}" if out else (f"-{term}" if c < 0 else term)
    return out or "zero"


def _two_sided(mat: np.ndarray, src, dst: str, V: str, indent: str) -> list[str]:
    """Lines computing dst_i_j = sum_kl mat[i][k] src(k, l) mat[j][l] (vector locals), the rows first."""
    rows, cols = mat.shape
    out = []
    for i in range(rows):
        for l in range(cols):
            out.append(f"{indent}const {V} {dst}t{i}_{l} = {_lincomb(mat[i], [src(k, l) for k in range(cols)])};")
    for i in range(rows):
        for j in range(rows):
            out.append(f"{indent}const {V} {dst}{i}_{j} = "
                       f"{_lincomb(mat[j], [f'{dst}t{i}_{l}' for l in range(cols)])};")
    return out


def _register(g: WinoGeometry, kind: str, source) -> str:
    """The name of g's `kind` function, its C (`source(name)`) registered once per geometry."""
    fn = g.name(kind)
    if fn not in GENERATED:
        GENERATED[fn] = "\n".join([vector_typedef(g.vw), "#include <string.h>", source(fn)]) + "\n"
    return fn


def input_transform(g: WinoGeometry) -> str:
    """Register the input transform of `g`; its name."""
    return _register(g, "in", lambda fn: _input_source(g, fn))


def output_transform(g: WinoGeometry) -> str:
    """Register the output transform of `g`; its name."""
    return _register(g, "out", lambda fn: _output_source(g, fn))


def _input_source(g: WinoGeometry, fn: str) -> str:
    bt, _, _ = matrices(g.m)
    V, v, m, a = _vec(g), g.vw, g.m, g.m + 2
    th_n, tw_n = g.grid
    bw = tw_n * m + 2                       # buffer columns: every tile's patch
    copy = max(0, min(g.W, bw - g.PL))      # input columns that land in the buffer
    right = bw - g.PL - copy
    lines = [f"/* Winograd F({m}x{m}, 3x3) input transform (kiln/backend/winograd.py): {g.H}x{g.W} plane, "
             f"{th_n}x{tw_n} tiles, pads {g.PT},{g.PL} */",
             f"static void {fn}(const float* restrict x, float* restrict V, int64_t th) {{",
             f"  float buf[{a}][{bw * v}] __attribute__((aligned(32)));",
             f"  const int64_t ih0 = th * {m} - {g.PT};",
             f"  for (int r = 0; r < {a}; ++r) {{",
             "    const int64_t ih = ih0 + r;",
             f"    if (ih < 0 || ih >= {g.H}) {{ memset(buf[r], 0, sizeof buf[r]); continue; }}"]
    if g.PL:
        lines.append(f"    memset(buf[r], 0, {g.PL * v} * sizeof(float));")
    lines.append(f"    memcpy(buf[r] + {g.PL * v}, x + ih * {g.W * v}, {copy * v} * sizeof(float));")
    if right:
        lines.append(f"    memset(buf[r] + {(g.PL + copy) * v}, 0, {right * v} * sizeof(float));")
    lines += ["  }",
              f"  const {V} zero = {{0}}; (void)zero;",
              f"  float* restrict vt = V + th * {tw_n * v};",
              f"  for (int64_t tw = 0; tw < {tw_n}; ++tw) {{"]
    lines += [f"    const {V} d{k}_{l} = *(const {V}*)(buf[{k}] + (tw * {m} + {l}) * {v});"
              for k in range(a) for l in range(a)]
    lines += _two_sided(bt, lambda k, l: f"d{k}_{l}", "v", V, "    ")
    lines += [f"    *({V}*)(vt + {(i * a + j) * g.xi_stride} + tw * {v}) = v{i}_{j};" for i in range(a) for j in range(a)]
    lines += ["  }", "}"]
    return "\n".join(lines)


def _output_source(g: WinoGeometry, fn: str) -> str:
    _, _, at = matrices(g.m)
    V, v, m, a = _vec(g), g.vw, g.m, g.m + 2
    th_n, tw_n = g.grid
    full, last = divmod(g.OW, m)            # whole tiles per row, columns of the cut last one
    lines = [f"/* Winograd F({m}x{m}, 3x3) output transform (kiln/backend/winograd.py): "
             f"{th_n}x{tw_n} tiles -> {g.OH}x{g.OW} */",
             f"static void {fn}(const float* restrict M, const float* restrict bias, float* restrict y, "
             "int64_t th) {",
             f"  const int64_t rows = {g.OH} - th * {m} < {m} ? {g.OH} - th * {m} : {m};",
             f"  const {V} b = *(const {V}*)bias;",
             f"  const {V} zero = {{0}}; (void)zero;",
             f"  const float* restrict mt = M + th * {tw_n * v};",
             f"  float* restrict yt = y + th * {m * g.OW * v};"]

    def tile(tw: str, cols: int) -> list[str]:
        out = [f"    const {V} s{k}_{l} = *(const {V}*)(mt + {(k * a + l) * g.xi_stride} + {tw} * {v});"
               for k in range(a) for l in range(a)]
        out += _two_sided(at, lambda k, l: f"s{k}_{l}", "o", V, "    ")
        for i in range(m):
            stores = " ".join(f"*({V}*)(yt + {i * g.OW * v} + ({tw} * {m} + {j}) * {v}) = "
                              f"{clamped(v, f'o{i}_{j} + b', g.clamp)};" for j in range(cols))
            out.append(f"    {stores}" if i == 0 else f"    if ({i} < rows) {{ {stores} }}")
        return out

    if full:
        lines += [f"  for (int64_t tw = 0; tw < {full}; ++tw) {{"] + tile("tw", m) + ["  }"]
    if last:
        lines += ["  {"] + tile(str(full), last) + ["  }"]
    lines.append("}")
    return "\n".join(lines)
