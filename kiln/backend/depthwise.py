"""C support code for depthwise 2-D convolution (f32): one output plane per call, used by
kiln/ops/nn_lower.py when every output channel reads one input channel (MobileNet's 3x3 layers).

    kiln_dwconv_f32(x, w, bias, y, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw)
        y[oy, ox] = bias + sum_{r, s} w[r, s] * x[oy*sh - ph + r*dh, ox*sw - pw + s*dw]
        (x: the H x W input plane, y: the OH x OW output plane, taps outside x count zero)

Schedule: row by row; the columns whose every tap lies inside the row (the interior) are computed
a vector of outputs at a time, accumulators in registers, each tap one broadcast weight times one
vector load (stride 1) or the even lanes of two loads (stride 2); the border columns, and the
interior of other strides, take a scalar loop with bounds checks. The vector width comes from the
same generator parameter as the GEMM (GCC vector extensions, kiln/backend/microkernel.py).
"""
from __future__ import annotations

FN = "kiln_dwconv_f32"


def source(vw: int = 8) -> str:
    vt = f"kiln_dwv{vw}"
    even = ", ".join(str(2 * i) for i in range(vw))
    return f"""
/* --- kiln depthwise convolution, one plane per call (kiln/backend/depthwise.py) --- */
typedef float {vt} __attribute__((vector_size({4 * vw}), aligned(4), may_alias));
static inline float kiln_dw_point(const float* restrict x, const float* restrict w, float bias,
    int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t iy0, int64_t ix0, int64_t dh, int64_t dw) {{
  float acc = bias;
  for (int64_t r = 0; r < KH; ++r) {{
    const int64_t iy = iy0 + r * dh;
    if (iy < 0 || iy >= H) continue;
    for (int64_t s = 0; s < KW; ++s) {{
      const int64_t ix = ix0 + s * dw;
      if (ix >= 0 && ix < W) acc += w[r * KW + s] * x[iy * W + ix];
    }}
  }}
  return acc;
}}

static __attribute__((unused)) void {FN}(const float* restrict x, const float* restrict w,
    float bias, float* restrict y, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t KH,
    int64_t KW, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {{
  /* interior columns [c0, c1): every tap's input column inside [0, W); for stride 2 the vector
     loads read one float past the last tap, so that float must be inside the row too */
  int64_t c0 = (pw + sw - 1) / sw;
  int64_t last = W - 1 + pw - (KW - 1) * dw - (sw == 2 ? 1 : 0);
  int64_t c1 = last < 0 ? 0 : last / sw + 1;
  if (c1 > OW) c1 = OW;
  if (c0 > c1) c0 = c1;
  for (int64_t oy = 0; oy < OH; ++oy) {{
    float* restrict yr = y + oy * OW;
    const int64_t iy0 = oy * sh - ph;
    for (int64_t ox = 0; ox < c0; ++ox)
      yr[ox] = kiln_dw_point(x, w, bias, H, W, KH, KW, iy0, ox * sw - pw, dh, dw);
    int64_t ox = c0;
    if (sw <= 2) {{
      for (; ox + {vw} <= c1; ox += {vw}) {{
        {vt} acc = {{0}};
        acc += bias;
        for (int64_t r = 0; r < KH; ++r) {{
          const int64_t iy = iy0 + r * dh;
          if (iy < 0 || iy >= H) continue;
          const float* restrict xr = x + iy * W + ox * sw - pw;
          for (int64_t s = 0; s < KW; ++s) {{
            const float wv = w[r * KW + s];
            if (sw == 1) {{
              acc += wv * *(const {vt}*)(xr + s * dw);
            }} else {{
              const {vt} a = *(const {vt}*)(xr + s * dw), b = *(const {vt}*)(xr + s * dw + {vw});
              acc += wv * __builtin_shufflevector(a, b, {even});
            }}
          }}
        }}
        *({vt}*)(yr + ox) = acc;
      }}
    }}
    for (; ox < OW; ++ox)
      yr[ox] = kiln_dw_point(x, w, bias, H, W, KH, KW, iy0, ox * sw - pw, dh, dw);
  }}
}}
"""
