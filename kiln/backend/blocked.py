"""C support code for convolutions in the blocked channels layout (NCHW[v]c, v = the vector width:
8 floats for AVX2), generated per convolution shape (kiln/ops/layout.py: BlockedConv).

A blocked tensor is [N, ceil(C/v), H, W, v]: a block holds v channels of one pixel, so one vector
load reads them. Each generated function computes one output row of nb (1 or 2) output-channel
blocks:

    ungrouped:  fn(x, w, bias, y, oh, nb)
        y[b][ow][o] = bias[b*v+o] + sum_{icb, kh, kw, c} w[b][icb][kh][kw][c][o] * x[icb][ih][iw][c]
    depthwise:  fn(x, w, bias, y, oh)
        y[ow][o] = bias[o] + sum_{kh, kw} w[kh][kw][o] * x[ih][iw][o]

(x: one image, from its first channel block; w: from the first output block; y: the first output
block's row oh; ih = oh*sh - ph + kh*dh, iw = ow*sw - pw + kw*dw; taps outside the input count
zero.) The input may also be plain NCHW (`cb` = C channels in one "block" read with a channel
stride of H*W): a network's first convolution reads its 3-channel image that way, unpadded.

Schedule: the row is cut into tiles of at most `ur` columns whose accumulators (nb x tile width
vectors: 2 x 6 with 16 vector registers, 2 x 12 with 32) stay in registers through the whole
reduction; each step loads nb weight vectors and broadcasts one input value per column. The
reduction runs over chunks of input blocks whose weights fit in L1 (partial sums wait in y), so
every tile of the row reuses them. Everything but the output row (and the batch/channel pointers)
is a compile-time constant, so a tile on the border gets its taps outside the input dropped at
generation time, and equal interior tiles share one loop: no bounds checks at run time but the
kernel-row range. Small planes (at most 64 pixels) are computed whole per call, every tap a
constant; a 1x1 stride-1 convolution runs as one long row cut into runs of 32-96 pixels.
"""
from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass

# generated function name -> its C source; kiln/backend/microkernel.py: support_code emits them
GENERATED: dict[str, str] = {}
# generated function name -> the generated functions its C calls (emitted before it)
DEPENDS: dict[str, tuple] = {}
L1_WEIGHT_BYTES = 20 << 10     # the weights of one chunk of input blocks (most of a 32 KiB L1)


@dataclass(frozen=True)
class ConvRow:
    """One ungrouped or depthwise convolution's geometry (all sizes in elements)."""
    depthwise: bool
    icb: int              # input channel blocks (1 for a plain input)
    cb: int               # channels per input block (v, or C for a plain input)
    xs_cb: int            # strides in x: block, row, column, channel in block
    xs_h: int
    xs_w: int
    xs_c: int
    H: int
    W: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int
    DH: int
    DW: int
    OH: int
    OW: int
    vw: int = 8
    ys_b: int = 0         # y's stride between output channel blocks (0: OH*OW*vw)
    plane: bool = False   # one call computes the whole OH x OW plane, not one row
    regs: int = 16        # vector registers of the target (32 with AVX-512VL: bigger tiles)
    bias: bool = True     # False: sums start at zero, `bias` is not read (Winograd's products)
    prefetch: bool = False  # each call prefetches the next call's weights (the next output blocks)
    clamp: tuple | None = None  # (lo, hi): results limited to [lo, hi] in registers before the
                          # final store (a fused Relu or Clip); hi may be inf
    sum_blocks: int = 0   # >0 (bias False): at most this many input blocks per pass, each from zero
                          # then added to y (pairwise-like: less rounding); 0: passes as L1
                          # allows, each continuing the running sum stored in y

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(output blocks, columns) register tiles, widest first: nb x n accumulators plus nb
        weight vectors and one broadcast fit the register file (the first is the call's nb).
        With 32 registers, 2 x 12 measured faster than 4 x 6 on ResNet-50 (Zen 4)."""
        if self.regs >= 32:
            return [(2, 12), (1, 16)]
        return [(2, 6), (1, 12)]

    @property
    def y_block(self) -> int:
        return self.ys_b or self.OH * self.OW * self.vw

    def name(self) -> str:
        h = hashlib.sha1(repr(astuple(self)).encode()).hexdigest()[:12]
        return f"kiln_{'dw' if self.depthwise else 'b'}conv_{h}"


def _tiles(ow: int, ur: int) -> list[int]:
    """Tile widths covering ow columns: as few tiles as the register budget allows, as even as
    possible (7 columns -> 4 + 3, not 6 + 1)."""
    t = -(-ow // ur)
    base, extra = divmod(ow, t)
    return [base + 1] * extra + [base] * (t - extra)


def _valid(g: ConvRow, ow0: int, p: int, kw: int) -> bool:
    iw = (ow0 + p) * g.SW - g.PW + kw * g.DW
    return 0 <= iw < g.W


def _plan(g: ConvRow, ur: int) -> list[tuple[int, int, int, bool]]:
    """(first column, tile count, width, interior) runs: consecutive interior tiles of one width
    become a loop, every border tile its own specialised code."""
    runs, ow0 = [], 0
    for n in _tiles(g.OW, ur):
        inside = all(_valid(g, ow0, p, kw) for p in range(n) for kw in range(g.KW))
        last = runs[-1] if runs else None
        if inside and last and last[3] and last[2] == n:
            runs[-1] = (last[0], last[1] + 1, n, True)
        else:
            runs.append((ow0, 1, n, inside))
        ow0 += n
    return runs


def _vec(g: ConvRow) -> str:
    return f"kiln_bv{g.vw}"


def vector_typedef(v: int) -> str:
    """The vector type kiln_bv<v> of the generated functions (defined once per translation unit),
    and kiln_bv<v>_max/_min against a number: per lane, the number where it is larger/smaller, else
    the lane (a NaN lane stays NaN), as a mask blend (plain C has no vector ?:)."""
    t, m = f"kiln_bv{v}", f"kiln_bm{v}"
    cs = ", ".join(["c"] * v)
    return (f"#ifndef KILN_BV{v}\n#define KILN_BV{v}\ntypedef float {t} __attribute__((vector_size"
            f"({4 * v}), aligned(4), may_alias));\n"
            f"typedef int32_t {m} __attribute__((vector_size({4 * v})));\n"
            f"static inline {t} {t}_max({t} a, float c) {{ const {t} cv = {{{cs}}}; "
            f"const {m} k = cv > a; return ({t})((({m})a & ~k) | (({m})cv & k)); }}\n"
            f"static inline {t} {t}_min({t} a, float c) {{ const {t} cv = {{{cs}}}; "
            f"const {m} k = cv < a; return ({t})((({m})a & ~k) | (({m})cv & k)); }}\n#endif")


def _acc_init(g: ConvRow, acc: list, yoff) -> list[str]:
    """Accumulators start at the bias in the first chunk of input blocks, at the partial sums
    stored in y in the later ones (with sum_blocks: at zero, _stores adds them to y)."""
    V, out = _vec(g), []
    assert not (g.bias and g.sum_blocks), "sum_blocks sums from zero: no bias"
    for b, row in enumerate(acc):
        out.append(f"  const {V} bias{b} = *(const {V}*)(bias + {b * g.vw});" if g.bias else
                   f"  const {V} bias{b} = {{0}};")
        if g.sum_blocks:        # each chunk's sum starts at zero; _stores adds it to y
            out.append("  " + f"{V} " + ", ".join(f"{a} = bias{b}" for a in row) + ";")
        else:
            out.append("  " + f"{V} " + ", ".join(
                f"{a} = icc ? *(const {V}*)(y + {yoff(b, p)}) : bias{b}" for p, a in enumerate(row)) + ";")
    return out


def chunk_blocks(g: ConvRow, nb: int) -> int:
    """Input blocks per pass over a row: their weights (for nb output blocks) fit in L1 next to
    the input rows, so every tile of the row reuses them from L1 instead of streaming all the
    weights from L2 once per tile."""
    per_block = g.KH * g.KW * g.cb * g.vw * nb * 4
    most = min(g.icb, L1_WEIGHT_BYTES // per_block)
    return max(1, min(most, g.sum_blocks) if g.sum_blocks else most)


def _chunked(g: ConvRow, nb: int, tiles: list[str]) -> list[str]:
    icc = chunk_blocks(g, nb)
    if icc >= g.icb:
        return ["{", f"  const int64_t icc = 0, ice = {g.icb};"] + ["  " + t for t in tiles] + ["}"]
    return ([f"for (int64_t icc = 0; icc < {g.icb}; icc += {icc}) {{",
             f"  const int64_t ice = icc + {icc} < {g.icb} ? icc + {icc} : {g.icb};"] +
            ["  " + t for t in tiles] + ["}"])


def _tile(g: ConvRow, acc, yoff, xshift: str, reduction: list[str]) -> list[str]:
    """One register tile: accumulators from the bias (or the partial sums in y), the loop over
    the chunk's input blocks around `reduction` (with xb at the block, shifted by `xshift`, and wb
    at its weights), then the stores; yoff(b, p) is output vector (b, p)'s offset in y."""
    per_block = g.KH * g.KW * g.cb * g.vw
    ahead = []
    if g.prefetch:
        # the next call's weights (the same input block of the next group of output blocks), from
        # memory into L2 while this one computes: weights used by few pixels are memory-bound
        wstride, nxt = g.icb * per_block, g.shapes[0][0]
        ahead = [f"    __builtin_prefetch(wb + {(nxt + b) * wstride + line * 16}, 0, 2);"
                 for b in range(len(acc)) for line in range(-(-per_block // 16))]
    return (["{"] + _acc_init(g, acc, yoff) +
            ["  for (int64_t icb = icc; icb < ice; ++icb) {",
             f"    const float* restrict xb = x + icb * {g.xs_cb}{xshift};",
             f"    const float* restrict wb = w + icb * {per_block};"] + ahead +
            reduction + ["  }"] + _stores(g, acc, yoff) + ["}"])


def _conv_tile(g: ConvRow, nb: int, n: int, ow0: int | None, wstride: int) -> list[str]:
    """C lines of one tile of n columns from ow0 (None: the runtime `ow0` of an interior loop)."""
    v = g.vw
    col = "ow0" if ow0 is None else str(ow0)
    valid = (lambda p, kw: True) if ow0 is None else (lambda p, kw: _valid(g, ow0, p, kw))
    acc = [[f"a{b}_{p}" for p in range(n)] for b in range(nb)]
    red = ["    for (int64_t kh = khlo; kh < khhi; ++kh) {",
           f"      const float* restrict xr = xb + (ih0 + kh * {g.DH}) * {g.xs_h};",
           f"      const float* restrict wr = wb + kh * {g.KW * g.cb * v};"]
    if nb * g.KW + nb * n + 1 <= g.regs and g.KW > 1:
        red += _taps_shared(g, nb, n, valid, wstride, acc)
    else:
        red += _taps_by_column(g, nb, n, valid, wstride, acc)
    red.append("    }")
    return _tile(g, acc, lambda b, p: f"{b * g.y_block} + ({col} + {p}) * {v}",
                 f" + ({col} * {g.SW} - {g.PW}) * {g.xs_w}", red)


def _channel_loop(g: ConvRow, nb: int, wbase, xs: list, acc, indent: str) -> list[str]:
    """For each channel c of the input block: the weight vector of each output block b (at the
    C address wbase(b) + c*v) times one broadcast input value per (x index expression, column)
    in xs, accumulated into acc[b][column]."""
    V, v = _vec(g), g.vw
    out = [f"{indent}#pragma GCC unroll {min(g.cb, 8)}", f"{indent}for (int64_t c = 0; c < {g.cb}; ++c) {{"]
    for b in range(nb):
        out.append(f"{indent}  const {V} w{b} = *(const {V}*)({wbase(b)} + c * {v});")
    for x, p in xs:
        out.append(f"{indent}  {{ const float s = {x}; " +
                   " ".join(f"{acc[b][p]} += w{b} * s;" for b in range(nb)) + " }")
    out.append(f"{indent}}}")
    return out


def clamped(vw: int, x: str, clamp: tuple | None) -> str:
    """The C vector expression x limited to clamp = (lo, hi) (either may be infinite), or x."""
    if clamp is None:
        return x
    lo, hi = clamp
    if lo != float("-inf"):
        x = f"kiln_bv{vw}_max({x}, {float(lo)!r}f)"
    if hi != float("inf"):
        x = f"kiln_bv{vw}_min({x}, {float(hi)!r}f)"
    return x


def _clamps(g: ConvRow, accs: list, indent: str = "  ") -> list[str]:
    """The fused clamp on accumulators, before their final store."""
    if g.clamp is None:
        return []
    return [f"{indent}{a} = {clamped(g.vw, a, g.clamp)};" for a in accs]


def _stores(g: ConvRow, acc, yoff) -> list[str]:
    V = _vec(g)
    at = [(f"*({V}*)(y + {yoff(b, p)})", a) for b, row in enumerate(acc) for p, a in enumerate(row)]
    if g.sum_blocks:
        assert g.clamp is None, "a clamp on chunked sums from zero"
        return (["  if (icc) {"] + [f"    {dst} += {a};" for dst, a in at] + ["  } else {"] +
                [f"    {dst} = {a};" for dst, a in at] + ["  }"])
    # only the last chunk of input blocks holds the finished sums
    pre = ([f"  if (ice == {g.icb}) {{"] + _clamps(g, [a for _, a in at], "    ") + ["  }"]
           if g.clamp is not None else [])
    return pre + [f"  {dst} = {a};" for dst, a in at]


def _taps_by_column(g: ConvRow, nb: int, n: int, valid, wstride: int, acc) -> list[str]:
    """The reduction of one kernel row, kernel column by kernel column: per channel, nb weight
    loads and one broadcast per output column."""
    out = []
    for kw in range(g.KW):
        xs = [(f"xr[{(p * g.SW + kw * g.DW) * g.xs_w} + c * {g.xs_c}]", p) for p in range(n) if valid(p, kw)]
        if xs:
            out += _channel_loop(g, nb, lambda b: f"wr + {b * wstride + kw * g.cb * g.vw}", xs, acc, "      ")
    return out


def _shared_reads(g: ConvRow, n: int, valid) -> tuple[dict, list]:
    """The (column, kernel column) pairs of a tile row grouped by the input column they read
    (offset in pixels from the tile's first input column), and the kernel columns used."""
    reads: dict = {}
    for p in range(n):
        for kw in range(g.KW):
            if valid(p, kw):
                reads.setdefault(p * g.SW + kw * g.DW, []).append((p, kw))
    return reads, sorted({kw for pairs in reads.values() for _, kw in pairs})


def _taps_shared(g: ConvRow, nb: int, n: int, valid, wstride: int, acc) -> list[str]:
    """The reduction of one kernel row with the weights of every kernel column in registers (when
    they fit beside the accumulators): per channel, each input value is broadcast once and feeds
    every (column, tap) that reads it. A 3x3 stride-1 tile of 12 columns: 6 weight loads and 14
    broadcasts per 72 FMAs, against 42 loads kernel column by kernel column."""
    V, v, out = _vec(g), g.vw, []
    reads, taps = _shared_reads(g, n, valid)
    out.append(f"      #pragma GCC unroll {min(g.cb, 8)}")
    out.append(f"      for (int64_t c = 0; c < {g.cb}; ++c) {{")
    for kw in taps:
        for b in range(nb):
            out.append(f"        const {V} w{b}_{kw} = *(const {V}*)(wr + {b * wstride} + ({kw * g.cb} + c) * {v});")
    for off in sorted(reads):
        out.append(f"        {{ const float s = xr[{off * g.xs_w} + c * {g.xs_c}]; " +
                   " ".join(f"{acc[b][p]} += w{b}_{kw} * s;" for p, kw in reads[off] for b in range(nb)) + " }")
    out.append("      }")
    return out


def _plane_tile(g: ConvRow, nb: int, n: int, p0: int, wstride: int) -> list[str]:
    """C lines of one tile of a whole-plane call: output pixels [p0, p0+n) of the flattened plane,
    every tap's offset and validity a constant (small planes: 7x7 in a ResNet's last stage)."""
    v = g.vw
    acc = [[f"a{b}_{p}" for p in range(n)] for b in range(nb)]
    red = []
    for kh in range(g.KH):
        for kw in range(g.KW):
            offs = {}
            for p in range(n):
                r, ow = divmod(p0 + p, g.OW)
                ih, iw = r * g.SH - g.PH + kh * g.DH, ow * g.SW - g.PW + kw * g.DW
                if 0 <= ih < g.H and 0 <= iw < g.W:
                    offs[p] = ih * g.xs_h + iw * g.xs_w
            if offs:
                xs = [(f"xb[{off} + c * {g.xs_c}]", p) for p, off in offs.items()]
                tap = (kh * g.KW + kw) * g.cb * v
                red += _channel_loop(g, nb, lambda b: f"wb + {b * wstride + tap}", xs, acc, "    ")
    return _tile(g, acc, lambda b, p: f"{b * g.y_block + (p0 + p) * v}", "", red)


def _dw_tile(g: ConvRow, n: int, ow0: int | None) -> list[str]:
    V, v = _vec(g), g.vw
    col = "ow0" if ow0 is None else str(ow0)
    valid = (lambda p, kw: True) if ow0 is None else (lambda p, kw: _valid(g, ow0, p, kw))
    acc = [f"a{p}" for p in range(n)]
    out = ["{", f"  const {V} bias0 = *(const {V}*)bias;",
           f"  {V} " + ", ".join(f"{a} = bias0" for a in acc) + ";",
           f"  const float* restrict xb = x + ({col} * {g.SW} - {g.PW}) * {v};",
           "  for (int64_t kh = khlo; kh < khhi; ++kh) {",
           f"    const float* restrict xr = xb + (ih0 + kh * {g.DH}) * {g.W * v};",
           f"    const float* restrict wr = w + kh * {g.KW * v};"]
    # each input vector of the row is loaded once and feeds every (column, tap) that reads it
    # (stride 1, 3 taps: n + 2 loads for 3n FMAs instead of 3n)
    reads, taps = _shared_reads(g, n, valid)
    out += [f"    const {V} w{kw} = *(const {V}*)(wr + {kw * v});" for kw in taps]
    for off in sorted(reads):
        out.append(f"    {{ const {V} xv = *(const {V}*)(xr + {off * v}); " +
                   " ".join(f"{acc[p]} += w{kw} * xv;" for p, kw in reads[off]) + " }")
    out.append("  }")
    out += _clamps(g, acc)
    for p in range(n):
        out.append(f"  *({V}*)(y + ({col} + {p}) * {v}) = {acc[p]};")
    out.append("}")
    return out


def _row(g: ConvRow, tile, ur: int) -> list[str]:
    """The tiles of one row: interior runs as loops, border tiles unrolled."""
    out = []
    for ow0, count, n, inside in _plan(g, ur):
        if inside and count > 1:
            out.append(f"for (int64_t ow0 = {ow0}; ow0 < {ow0 + count * n}; ow0 += {n})")
            out += tile(n, None)
        else:
            for k in range(count):
                out += tile(n, ow0 + k * n)
    return out


def conv_row(g: ConvRow) -> str:
    """Register the C function computing one output row of `g` (once per geometry); its name."""
    fn = g.name()
    if fn in GENERATED:
        return fn
    v = g.vw
    head = [f"/* {'depthwise' if g.depthwise else 'blocked'} convolution row (kiln/backend/blocked.py): "
            f"{g.icb}x{g.cb} input channels, {g.H}x{g.W} -> {g.OH}x{g.OW}, kernel {g.KH}x{g.KW}, "
            f"stride {g.SH}x{g.SW}, pads {g.PH},{g.PW}, dilation {g.DH}x{g.DW} */"]
    rows = [f"  const int64_t ih0 = oh * {g.SH} - {g.PH};",
            "  int64_t khlo = 0, khhi = %d;" % g.KH,
            f"  while (khlo < {g.KH} && ih0 + khlo * {g.DH} < 0) ++khlo;",
            f"  while (khhi > khlo && ih0 + (khhi - 1) * {g.DH} >= {g.H}) --khhi;"]
    ind = lambda lines, k: ["  " * k + s for s in lines]
    if g.depthwise:
        sig = (f"static void {fn}(const float* restrict x, const float* restrict w, "
               "const float* restrict bias, float* restrict y, int64_t oh) {")
        body = rows + ind(_row(g, lambda n, ow0: _dw_tile(g, n, ow0), 8), 1)
    else:
        wstride = g.icb * g.KH * g.KW * g.cb * v
        sig = (f"static void {fn}(const float* restrict x, const float* restrict w, "
               "const float* restrict bias, float* restrict y, int64_t oh, int64_t nb) {")
        body = ([] if g.plane else rows) + ["  switch (nb) {"]
        for nb, ur in g.shapes:
            body += [f"  {'default' if nb == 1 else f'case {nb}'}: {{"]
            if g.plane:
                tiles, p0 = [], 0
                for n in _tiles(g.OH * g.OW, ur):
                    tiles += _plane_tile(g, nb, n, p0, wstride)
                    p0 += n
                body += ind(_chunked(g, nb, tiles) + ["(void)oh;"], 2)
            else:
                body += ind(_chunked(g, nb, _row(g, lambda n, ow0: _conv_tile(g, nb, n, ow0, wstride), ur)), 2)
            body += ["    break;", "  }"]
        body += ["  }"]
    GENERATED[fn] = "\n".join([vector_typedef(v)] + head + [sig] + body + ["}"]) + "\n"
    return fn
