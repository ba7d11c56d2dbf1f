"""C support code for PointwiseDepthwise (kiln/ops/pointwise_depthwise.py): a 1x1 convolution, a
clamp and a depthwise convolution in the blocked layout, generated per geometry. One call does one
image's group of nb (1 or 2) channel blocks:

    fn(x, w1, b1, w2, b2, y, nb)
        x: the image's input, from its first block; w1, b1: the 1x1 weights and bias from the
        group's first output block; w2, b2: the depthwise ones; y: the group's first output plane

The expanded rows live only in a buffer on the stack, `rows` rows of the nb blocks: the output
rows are done in bands of `band`, each needing rows ih0..ih1 of the expansion; the rows the last
band already made move to the top of the buffer, the missing ones are computed by the 1x1 row
function (kiln/backend/blocked.py, the whole W-pixel row per call) and clamped, then the
depthwise row function runs on the buffer as if it were the plane (its pointer shifted by ih0
rows: it only reads rows ih0..ih1). Every expanded row is computed once, and never leaves the
cache.
"""
from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass

from .blocked import DEPENDS, GENERATED, ConvRow, conv_row, vector_typedef

BUFFER_BYTES = 96 << 10       # the band of expanded rows, all nb blocks: well inside L2


@dataclass(frozen=True)
class PwDwGeometry:
    icb: int          # input channel blocks of the 1x1 conv (it keeps dw's H x W plane)
    dw: ConvRow       # the depthwise conv, over the expanded plane
    lo: float         # the clamp
    hi: float
    nb: int = 2       # channel blocks per call (at most)

    @property
    def band(self) -> int:
        """Output rows per band: their expanded rows, for nb blocks, fit BUFFER_BYTES."""
        d = self.dw
        row = self.nb * d.W * d.vw * 4
        fit = BUFFER_BYTES // row - (d.KH - 1) * d.DH - 1
        return max(1, min(d.OH, fit // d.SH + 1))

    @property
    def rows(self) -> int:
        d = self.dw
        return (self.band - 1) * d.SH + (d.KH - 1) * d.DH + 1

    def name(self) -> str:
        h = hashlib.sha1(repr((astuple(self), self.band)).encode()).hexdigest()[:12]
        return f"kiln_pwdw_{h}"


def pointwise_depthwise(g: PwDwGeometry) -> str:
    """Register g's function (and the two row functions it calls); its name."""
    fn = g.name()
    if fn in GENERATED:
        return fn
    d, rows = g.dw, g.rows
    v = d.vw
    plane = d.W * v                                 # floats in one expanded row of one block
    pw = conv_row(ConvRow(False, g.icb, v, xs_cb=d.H * d.W * v, xs_h=0, xs_w=v, xs_c=1, H=1, W=d.W,
                          KH=1, KW=1, SH=1, SW=1, PH=0, PW=0, DH=1, DW=1, OH=1, OW=d.W, vw=v,
                          ys_b=rows * plane, regs=d.regs))
    dw = conv_row(d)
    src = f"""{vector_typedef(v)}
#include <string.h>
/* PointwiseDepthwise (kiln/backend/pointwise_depthwise.py): 1x1 conv of {g.icb} input blocks over
   {d.H}x{d.W}, clamp [{g.lo!r}, {g.hi!r}], depthwise {d.KH}x{d.KW} stride {d.SH}x{d.SW} -> {d.OH}x{d.OW};
   bands of {g.band} output rows, {rows} expanded rows in the buffer */
static void {fn}(const float* restrict x, const float* restrict w1, const float* restrict b1,
    const float* restrict w2, const float* restrict b2, float* restrict y, int64_t nb) {{
  float buf[{g.nb * rows * plane}] __attribute__((aligned(64)));
  int64_t have0 = 0, have1 = 0;                 /* expanded rows in buf: [have0, have1) */
  for (int64_t oh0 = 0; oh0 < {d.OH}; oh0 += {g.band}) {{
    const int64_t oh1 = oh0 + {g.band} < {d.OH} ? oh0 + {g.band} : {d.OH};
    int64_t ih0 = oh0 * {d.SH} - {d.PH}, ih1 = (oh1 - 1) * {d.SH} - {d.PH} + {(d.KH - 1) * d.DH + 1};
    if (ih0 < 0) ih0 = 0;
    if (ih1 > {d.H}) ih1 = {d.H};
    int64_t kept = have1 > ih0 ? have1 - ih0 : 0;
    if (kept > 0 && ih0 > have0)
      for (int64_t b = 0; b < nb; ++b)
        memmove(buf + b * {rows * plane}, buf + b * {rows * plane} + (ih0 - have0) * {plane},
                kept * {plane} * sizeof(float));
    for (int64_t ih = ih0 + kept; ih < ih1; ++ih) {{
      float* restrict e = buf + (ih - ih0) * {plane};
      {pw}(x + ih * {plane}, w1, b1, e, 0, nb);
      for (int64_t b = 0; b < nb; ++b) {{
        float* restrict eb = e + b * {rows * plane};
        #pragma omp simd
        for (int64_t q = 0; q < {plane}; ++q) {{
          const float t = eb[q] < {g.lo!r}f ? {g.lo!r}f : eb[q];
          eb[q] = t > {g.hi!r}f ? {g.hi!r}f : t;
        }}
      }}
    }}
    have0 = ih0;
    have1 = ih1;
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t oh = oh0; oh < oh1; ++oh)
        {dw}(buf + b * {rows * plane} - ih0 * {plane}, w2 + b * {d.KH * d.KW * v}, b2 + b * {v},
             y + b * {d.OH * d.OW * v} + oh * {d.OW * v}, oh);
  }}
}}
"""
    GENERATED[fn] = src
    DEPENDS[fn] = (pw, dw)
    return fn
