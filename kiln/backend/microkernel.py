"""C support code for GEMM: a register-blocked FMA micro-kernel, packing routines and per-thread
scratch, generated for a vector width (BLIS-style; used by kiln/ops/gemm_lower.py).

The loop IR calls these functions through `CallC` statements; the C backend emits the support code
of every function a translation unit calls, once per unit (`support_code`). Everything is plain C11
with GCC vector extensions (`float __attribute__((vector_size(4*VW)))`), so AVX2 (VW=8), AVX-512
(VW=16) and NEON (VW=4) come from the same generator with another width.

Layouts (MR x NR micro-tile, NR = NV * VW):
- packed A (run time, per thread): row panels of MR rows, `Ap[p][k][r]` = A[p*MR + r, k] (rows past
  the block are zeros), one block of mc x kc at a time;
- packed B: column panels of NR columns, each a row-major kc x NR slice (columns past N are
  zeros), the panels of one block of kc rows one after the other. Constant weights are packed once,
  at compile time, over the whole K in blocks of KC rows (kiln/passes/pack_weights.py, layout in
  kiln/ops/gemm.py), so the block of rows pc.. is contiguous and panel j of it starts at
  `Bp + pc*Np + j*kc*NR`. A B known only at run time is packed per (kc x nc) block into per-thread
  scratch, same layout.

Entry points (NAME = f"{mr}x{nr}v{vw}"):
    kiln_gemm_pack_a_NAME(A, rs, cs, mc, kc, alpha)       A[i*rs + k*cs] * alpha -> scratch A
    kiln_gemm_pack_b_NAME(B, rs, cs, kc, nc)              B[k*rs + j*cs] -> scratch B
    kiln_gemm_pack_b_conv_NAME(X, H, W, OW, KH, KW, sh, sw, ph, pw, dh, dw, pc, kc, n0, nc)
                                                          im2col(X) rows/columns -> scratch B
    kiln_gemm_tile_NAME(kc, a_off, bp, c, ldc, mr, nr, acc, first)
                                                          B panel from a pointer (weights); the
                                                          first row tile of a panel prefetches the next
    kiln_gemm_tile_s_NAME(kc, a_off, b_off, c, ldc, mr, nr, acc) B panel from scratch B
    kiln_gemm_tile_ps_NAME(kc, a, b_off, c, ldc, mr, nr, acc)    A panel from a pointer (packed
                                                          weights), B panel from scratch B
    kiln_gemm_tile_d_NAME(kc, a_off, b, ldb, c, ldc, mr, nr, acc) B read in place (row stride ldb)
A tile call computes the mr x nr (<= MR x NR) tile C = (acc ? C : 0) + Ap[a_off..] * Bp[..]
over kc; ragged tiles compute the full register tile (zero padded operands) and store only the
valid part, so there is no slow path.
"""
from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GemmConfig:
    vw: int = 8            # floats per vector register
    mr: int = 6            # rows of the micro-tile
    nv: int = 2            # vectors per row of the micro-tile
    mc: int = 144          # rows of A packed at once (L2)
    kc: int = 256          # depth of one packed block (L1: a kc x NR panel of B)
    nc: int = 3072         # columns of one block of B (L3)

    @property
    def nr(self) -> int:
        return self.vw * self.nv

    @property
    def name(self) -> str:
        return f"{self.mr}x{self.nr}v{self.vw}"

    def fn(self, what: str) -> str:
        return f"kiln_gemm_{what}_{self.name}"


def host_config() -> GemmConfig:
    """The micro-kernel shape for the machine kiln compiles on (the C is built -march=native)."""
    m = platform.machine().lower()
    if m in ("aarch64", "arm64"):
        return GemmConfig(vw=4, mr=6, nv=4)      # NEON: 24 accumulators of 32 registers
    return GemmConfig(vw=8, mr=6, nv=2)          # AVX2 + FMA: 12 accumulators of 16 registers


@functools.lru_cache(maxsize=None)
def last_level_cache() -> int:
    """Bytes of the last-level cache (Linux sysfs; 32 MiB when it cannot be read)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = 0
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size")) as f:
                    text = f.read().strip()
            except OSError:
                continue
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            if digits.isdigit():
                best = max(best, int(digits) * scale)
    except OSError:
        pass
    return best or 32 << 20


@functools.lru_cache(maxsize=None)
def vector_registers() -> int:
    """Vector registers the C compiler may use here (-march=native): 32 with AVX-512VL (ymm16-31
    for 8-wide code too), 32 on AArch64, else 16."""
    m = platform.machine().lower()
    if m in ("aarch64", "arm64"):
        return 32
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return 32 if " avx512vl" in line else 16
    except OSError:
        pass
    return 16


def _ukr(cfg: GemmConfig, rows: int, half: bool = False, prefetch: bool = False) -> str:
    """The micro-kernel for tiles of `rows` (<= MR) rows: rows x NR accumulators in registers. Short
    tiles keep several sets of accumulators over interleaved k (FMA latency), summed at the end.
    `half`: the left half of the panel only (NV/2 vectors), for a last panel of at most NR/2 valid
    columns (N = 49 would otherwise spend a quarter of its FMAs on padding). `prefetch`: each k
    step also prefetches one row of the panel at `pf` into L2 (the next panel, see tile)."""
    nv, vw, mr = (cfg.nv // 2 if half else cfg.nv), cfg.vw, cfg.mr
    nr = nv * vw
    vt = f"kiln_f32v{vw}"
    sets = max(1, min(4, 15 // ((rows + 1) * nv)))
    lines = [
        f"static inline __attribute__((always_inline)) void kiln_gemm_ukr{rows}{'h' if half else ''}"
        f"{'p' if prefetch else ''}_{cfg.name}(",
        "    int64_t kc, const float* restrict a, const float* restrict b, int64_t ldb,",
        "    float* restrict c, int64_t ldc, int64_t nr, int64_t acc" + (", const float* pf) {" if prefetch else ") {"),
    ]
    for s_ in range(sets):
        for r in range(rows):
            lines.append("  " + " ".join(f"{vt} c{r}_{v}_{s_} = {{0}};" for v in range(nv)))

    def step(indent, k, s_):
        out = [f"{indent}__builtin_prefetch(pf + ldb * ({k}), 0, 2);"] if prefetch else []
        for v in range(nv):
            out.append(f"{indent}const {vt} b{v}_{s_} = *(const {vt}*)(b + ldb * ({k}) + {v * vw});")
        for r in range(rows):
            out.append(f"{indent}{{ const float a{r} = a[{mr} * ({k}) + {r}];")
            for v in range(nv):
                out.append(f"{indent}  c{r}_{v}_{s_} += b{v}_{s_} * a{r};")
            out.append(f"{indent}}}")
        return out
    lines.append("  int64_t k = 0;")
    if sets > 1:
        lines.append(f"  for (; k + {sets} <= kc; k += {sets}) {{")
        for s_ in range(sets):
            lines += step("    ", f"k + {s_}", s_)
        lines.append("  }")
    lines.append("  #pragma GCC unroll 4")
    lines.append("  for (; k < kc; ++k) {")
    lines += step("    ", "k", 0)
    lines.append("  }")
    for s_ in range(1, sets):
        for r in range(rows):
            for v in range(nv):
                lines.append(f"  c{r}_{v}_0 += c{r}_{v}_{s_};")
    # store: full-width rows straight to C, a ragged tile through a local row
    lines.append(f"  if (nr == {nr}) {{")
    lines.append("    if (acc) {")
    for r in range(rows):
        for v in range(nv):
            lines.append(f"      *({vt}*)(c + {r} * ldc + {v * vw}) += c{r}_{v}_0;")
    lines.append("    } else {")
    for r in range(rows):
        for v in range(nv):
            lines.append(f"      *({vt}*)(c + {r} * ldc + {v * vw}) = c{r}_{v}_0;")
    lines.append("    }")
    lines.append("  } else {")
    lines.append(f"    float t[{rows} * {nr}] __attribute__((aligned(64)));")
    for r in range(rows):
        for v in range(nv):
            lines.append(f"    *({vt}*)(t + {r * nr + v * vw}) = c{r}_{v}_0;")
    lines += [
        f"    for (int64_t i = 0; i < {rows}; ++i)",
        "      for (int64_t j = 0; j < nr; ++j)",
        f"        c[i * ldc + j] = acc ? c[i * ldc + j] + t[i * {nr} + j] : t[i * {nr} + j];",
        "  }",
        "}",
    ]
    return "\n".join(lines)


def _pack(cfg: GemmConfig) -> str:
    mr, nr, vw = cfg.mr, cfg.nr, cfg.vw
    n = cfg.name
    vt = f"kiln_f32v{vw}"
    return f"""
/* per-thread scratch: [0] packed A block, [1] packed B block (grown on demand, kept) */
static _Thread_local float* kiln_gemm_scratch_{n}[2];
static _Thread_local int64_t kiln_gemm_cap_{n}[2];
static float* kiln_gemm_buf_{n}(int which, int64_t floats) {{
  if (floats > kiln_gemm_cap_{n}[which]) {{
    free(kiln_gemm_scratch_{n}[which]);
    size_t bytes = (size_t)((floats * 4 + 4095) / 4096 * 4096);
    kiln_gemm_scratch_{n}[which] = (float*)aligned_alloc(64, bytes);
    if (!kiln_gemm_scratch_{n}[which]) abort();
    kiln_gemm_cap_{n}[which] = (int64_t)(bytes / 4);
  }}
  return kiln_gemm_scratch_{n}[which];
}}

/* A[i*rs + k*cs] (i < mc, k < kc) * alpha -> row panels of {mr}: Ap[p][k][r] */
static __attribute__((unused)) void kiln_gemm_pack_a_{n}(const float* restrict A, int64_t rs, int64_t cs, int64_t mc,
                                  int64_t kc, float alpha) {{
  float* restrict ap = kiln_gemm_buf_{n}(0, (mc + {mr - 1}) / {mr} * {mr} * kc);
  for (int64_t p = 0; p < mc; p += {mr}) {{
    const int64_t rows = mc - p < {mr} ? mc - p : {mr};
    float* restrict dst = ap + p * kc;
    if (rows == {mr} && cs == 1) {{
      const float* restrict src = A + p * rs;
      for (int64_t k = 0; k < kc; ++k) {{
        #pragma GCC unroll {mr}
        for (int64_t r = 0; r < {mr}; ++r) dst[k * {mr} + r] = src[r * rs + k] * alpha;
      }}
    }} else if (rows == {mr} && rs == 1) {{
      const float* restrict src = A + p;
      for (int64_t k = 0; k < kc; ++k) {{
        #pragma GCC unroll {mr}
        for (int64_t r = 0; r < {mr}; ++r) dst[k * {mr} + r] = src[k * cs + r] * alpha;
      }}
    }} else {{          /* a last panel of fewer rows: the tiles over it read only those */
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t r = 0; r < rows; ++r)
          dst[k * {mr} + r] = A[(p + r) * rs + k * cs] * alpha;
    }}
  }}
}}

/* B[k*rs + j*cs] (k < kc, j < nc) -> column panels of {nr}: Bp[j][k][c]. A row-major B is read
   row by row (sequential streams: rows far apart would defeat the prefetchers) */
static __attribute__((unused)) void kiln_gemm_pack_b_{n}(const float* restrict B, int64_t rs, int64_t cs, int64_t kc,
                                  int64_t nc) {{
  float* restrict bp = kiln_gemm_buf_{n}(1, (nc + {nr - 1}) / {nr} * {nr} * kc);
  const int64_t full = nc / {nr} * {nr};
  if (cs == 1) {{
    for (int64_t k = 0; k < kc; ++k) {{
      const float* restrict src = B + k * rs;
      for (int64_t j = 0; j < full; j += {nr}) {{
        #pragma GCC unroll {nr // vw}
        for (int64_t v = 0; v < {nr}; v += {vw})
          *({vt}*)(bp + j * kc + k * {nr} + v) = *(const {vt}*)(src + j + v);
      }}
    }}
  }} else {{
    for (int64_t j = 0; j < full; j += {nr})
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t c = 0; c < {nr}; ++c)
          bp[j * kc + k * {nr} + c] = B[k * rs + (j + c) * cs];
  }}
  if (full < nc) {{
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t c = 0; c < {nr}; ++c)
        bp[full * kc + k * {nr} + c] = full + c < nc ? B[k * rs + (full + c) * cs] : 0.0f;
  }}
}}

/* Implicit GEMM for a 2-D convolution: rows pc..pc+kc of the im2col matrix of one image X (C x H x W;
   row k = (c, dy, dx) of a KH x KW window, column j = (oy, ox) of the OW-wide output) for columns
   n0..n0+nc, gathered straight into column panels of {nr} (the layout of pack_b). For each row and
   output row, the columns whose input lies in the padding are zeros and the others a contiguous run
   of the input row at stride 1; runs are copied in pieces that stay inside one panel. */
static __attribute__((unused)) void kiln_gemm_pack_b_conv_{n}(const float* restrict X, int64_t H,
    int64_t W, int64_t OW, int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
    int64_t dh, int64_t dw, int64_t pc, int64_t kc, int64_t n0, int64_t nc) {{
  float* restrict bp = kiln_gemm_buf_{n}(1, (nc + {nr - 1}) / {nr} * {nr} * kc);
  const int64_t taps = KH * KW;
  for (int64_t k = 0; k < kc; ++k) {{
    const int64_t kk = pc + k, c = kk / taps, t = kk % taps;
    const int64_t ry = (t / KW) * dh - ph, rx = (t % KW) * dw - pw;
    const float* restrict xc = X + c * H * W;
    /* output columns ox whose input column ox*sw + rx lies in [0, W) */
    const int64_t lo = rx >= 0 ? 0 : (-rx + sw - 1) / sw;
    int64_t hi = W - rx <= 0 ? 0 : (W - rx + sw - 1) / sw;
    if (hi > OW) hi = OW;
    int64_t j = 0;
    while (j < nc) {{
      const int64_t g = n0 + j, oy = g / OW, ox0 = g % OW;
      const int64_t run = OW - ox0 < nc - j ? OW - ox0 : nc - j;
      const int64_t iy = oy * sh + ry;
      const int valid_row = iy >= 0 && iy < H;
      const float* restrict src = xc + iy * W + rx;
      for (int64_t q = 0; q < run;) {{
        const int64_t jj = j + q, off = jj % {nr};
        int64_t m = {nr} - off;
        if (m > run - q) m = run - q;
        float* restrict dst = bp + (jj / {nr}) * kc * {nr} + k * {nr} + off;
        const int64_t ox = ox0 + q;
        if (!valid_row || ox + m <= lo || ox >= hi) {{
          for (int64_t e = 0; e < m; ++e) dst[e] = 0.0f;
        }} else if (m == {nr} && sw == 1 && ox >= lo && ox + m <= hi) {{
          const float* restrict s = src + ox;         /* a whole panel row: vector copies */
          #pragma GCC unroll {nr // vw}
          for (int64_t v = 0; v < {nr}; v += {vw}) *({vt}*)(dst + v) = *(const {vt}*)(s + v);
        }} else if (m == {nr} && sw == 2 && ox >= lo && ox + m <= hi && 2 * (ox + m) + rx <= W) {{
          const float* restrict s = src + 2 * ox;     /* even lanes of pairs of vectors */
          #pragma GCC unroll {nr // vw}
          for (int64_t v = 0; v < {nr}; v += {vw}) {{
            const {vt} a = *(const {vt}*)(s + 2 * v), b = *(const {vt}*)(s + 2 * v + {vw});
            *({vt}*)(dst + v) = __builtin_shufflevector(a, b, {", ".join(str(2 * i) for i in range(vw))});
          }}
        }} else if (sw == 1 && ox >= lo && ox + m <= hi) {{
          const float* restrict s = src + ox;
          for (int64_t e = 0; e < m; ++e) dst[e] = s[e];
        }} else if (sw == 2 && ox >= lo && ox + m <= hi) {{
          const float* restrict s = src + 2 * ox;
          for (int64_t e = 0; e < m; ++e) dst[e] = s[2 * e];
        }} else {{
          for (int64_t e = 0; e < m; ++e) {{
            const int64_t o = ox + e;
            dst[e] = o >= lo && o < hi ? src[o * sw] : 0.0f;
          }}
        }}
        q += m;
      }}
      j += run;
    }}
  }}
  const int64_t full = nc / {nr} * {nr};
  if (full < nc)
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t c = nc - full; c < {nr}; ++c) bp[full * kc + k * {nr} + c] = 0.0f;
}}
"""


def _entries(cfg: GemmConfig) -> str:
    n = cfg.name
    cases = "\n".join(f"    case {r}: kiln_gemm_ukr{r}_{n}(kc, a, b, ldb, c, ldc, nr, acc); break;"
                      for r in range(cfg.mr - 1, 0, -1))
    dispatch = f"""  if (mr == {cfg.mr}) {{ kiln_gemm_ukr{cfg.mr}_{n}(kc, a, b, ldb, c, ldc, nr, acc); return; }}
  switch (mr) {{
{cases}
    default: break;
  }}"""
    if cfg.nv >= 2:             # a narrow last panel: the half-width kernels
        half = "\n".join(f"      case {r}: kiln_gemm_ukr{r}h_{n}(kc, a, b, ldb, c, ldc, nr, acc); break;"
                         for r in range(cfg.mr, 0, -1))
        dispatch = f"""  if (nr <= {cfg.nr // 2}) {{
    switch (mr) {{
{half}
      default: break;
    }}
    return;
  }}
""" + dispatch
    return f"""
static __attribute__((unused)) void kiln_gemm_tile_{n}(int64_t kc, int64_t a_off,
    const float* restrict b, float* restrict c, int64_t ldc, int64_t mr, int64_t nr, int64_t acc,
    int64_t first) {{
  const float* restrict a = kiln_gemm_scratch_{n}[0] + a_off;
  const int64_t ldb = {cfg.nr};
  if (!acc)             /* C's first pass: the next tile's rows of C, written next, are fetched now */
    for (int64_t i = 0; i < mr; ++i) __builtin_prefetch(c + i * ldc + {cfg.nr}, 1, 3);
  if (first && mr == {cfg.mr} && nr == {cfg.nr}) {{
    /* the first row tile of a B panel: fetch the next panel (contiguous after this one) while
       computing, so that the weights stream from memory ahead of their first use */
    kiln_gemm_ukr{cfg.mr}p_{n}(kc, a, b, ldb, c, ldc, nr, acc, b + kc * ldb);
    return;
  }}
{dispatch}
}}

static __attribute__((unused)) void kiln_gemm_tile_s_{n}(int64_t kc, int64_t a_off, int64_t b_off,
    float* restrict c, int64_t ldc, int64_t mr, int64_t nr, int64_t acc) {{
  const float* restrict a = kiln_gemm_scratch_{n}[0] + a_off;
  const float* restrict b = kiln_gemm_scratch_{n}[1] + b_off;
  const int64_t ldb = {cfg.nr};
{dispatch}
}}

/* A from a pointer (weights packed at compile time, kiln/ops/gemm.py: pack_a), B from scratch */
static __attribute__((unused)) void kiln_gemm_tile_ps_{n}(int64_t kc, const float* restrict a,
    int64_t b_off, float* restrict c, int64_t ldc, int64_t mr, int64_t nr, int64_t acc) {{
  const float* restrict b = kiln_gemm_scratch_{n}[1] + b_off;
  const int64_t ldb = {cfg.nr};
{dispatch}
}}

/* B read in place (row-major, row stride ldb >= nr): for few rows of A, where packing B would
   cost more than the product; a ragged last panel is copied into a zero-padded local panel */
static __attribute__((unused)) void kiln_gemm_tile_d_{n}(int64_t kc, int64_t a_off,
    const float* restrict bsrc, int64_t ldb_src, float* restrict c, int64_t ldc, int64_t mr,
    int64_t nr, int64_t acc) {{
  const float* restrict a = kiln_gemm_scratch_{n}[0] + a_off;
  const float* restrict b = bsrc;
  int64_t ldb = ldb_src;
  float panel[{cfg.kc} * {cfg.nr}] __attribute__((aligned(64)));
  if (nr < {cfg.nr}) {{
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = 0; j < {cfg.nr}; ++j)
        panel[k * {cfg.nr} + j] = j < nr ? bsrc[k * ldb_src + j] : 0.0f;
    b = panel;
    ldb = {cfg.nr};
  }}
{dispatch}
}}
"""


def gemm_source(cfg: GemmConfig) -> str:
    """All the C support code of one configuration (static functions: one copy per unit)."""
    head = (f"/* --- kiln GEMM support: {cfg.mr}x{cfg.nr} micro-kernel, {cfg.vw}-float vectors "
            f"(kiln/backend/microkernel.py) --- */\n"
            "void* aligned_alloc(size_t, size_t);\nvoid free(void*);\nvoid abort(void);\n"
            f"typedef float kiln_f32v{cfg.vw} __attribute__((vector_size({4 * cfg.vw}), aligned(4), "
            "may_alias));\n")
    ukrs = "\n".join([_ukr(cfg, cfg.mr, prefetch=True)] + [_ukr(cfg, r) for r in range(cfg.mr, 0, -1)])
    if cfg.nv >= 2:
        ukrs += "\n" + "\n".join(_ukr(cfg, r, half=True) for r in range(cfg.mr, 0, -1))
    return head + ukrs + "\n" + _pack(cfg) + _entries(cfg)


_FN = re.compile(r"kiln_gemm_(pack_a|pack_b|pack_b_conv|tile|tile_s|tile_ps|tile_d)_(\d+)x(\d+)v(\d+)")


def _config_of(fn: str) -> GemmConfig | None:
    """The configuration a GEMM support function's name encodes (GemmConfig.fn), or None."""
    m = _FN.fullmatch(fn)
    if m is None:
        return None
    mr, nr, vw = int(m.group(2)), int(m.group(3)), int(m.group(4))
    return GemmConfig(vw=vw, mr=mr, nv=nr // vw) if nr % vw == 0 else None


def _with_dependencies(fns, depends: dict) -> list:
    """fns with the generated functions each one calls (blocked.DEPENDS) before it, each once."""
    out: list = []

    def add(f):
        if f in out:
            return
        for d in depends.get(f, ()):
            add(d)
        out.append(f)
    for f in fns:
        add(f)
    return out


def support_code(fns) -> str:
    """The support code the C functions `fns` need (each GEMM configuration once; the depthwise
    convolution of kiln/backend/depthwise.py; the blocked-layout convolutions generated by
    kiln/backend/blocked.py), or ""."""
    from . import blocked, depthwise
    cfgs, parts = [], []
    for f in _with_dependencies(fns, blocked.DEPENDS):
        if f in blocked.GENERATED:
            parts.append(blocked.GENERATED[f])
            continue
        if f == depthwise.FN:
            parts.append(depthwise.source(host_config().vw))
            continue
        cfg = _config_of(f)
        if cfg is None:
            raise KeyError(f"no C support code provides {f!r}")
        if cfg not in cfgs:
            cfgs.append(cfg)
    return "\n".join([gemm_source(c) for c in cfgs] + parts)
