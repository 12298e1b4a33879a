/* Depthwise int8 convolution, optimised: channels innermost (contiguous,
 * vectorisable) with a stack block of accumulators, and the window loops
 * specialised to constant 3x3, 5x5 and 7x7 sizes so the compiler unrolls
 * them; other sizes use the same loop with run-time bounds. Same signature
 * and bit-exact results as tk_depthwise_conv_s8. */
#include "tk_internal.h"

#define TK_DW_BLOCK 64

static inline void dw_pixel(const tk_conv_params *p, const tk_requant *q,
                            const tk_dims *in, const int8_t *x,
                            const int8_t *w, const int32_t *bias, int32_t kh,
                            int32_t kw, int32_t oy, int32_t ox, int8_t *dst) {
  const int32_t C = in->c;
  const int32_t y0 = oy * p->stride - p->pad_top;
  const int32_t x0 = ox * p->stride - p->pad_left;
  const int32_t i_lo = y0 < 0 ? -y0 : 0;
  const int32_t i_hi = y0 + kh > in->h ? in->h - y0 : kh;
  const int32_t j_lo = x0 < 0 ? -x0 : 0;
  const int32_t j_hi = x0 + kw > in->w ? in->w - x0 : kw;
  int32_t c0;
  for (c0 = 0; c0 < C; c0 += TK_DW_BLOCK) {
    const int32_t n = C - c0 < TK_DW_BLOCK ? C - c0 : TK_DW_BLOCK;
    int32_t acc[TK_DW_BLOCK];
    int32_t i, j, c;
    for (c = 0; c < n; ++c) acc[c] = bias[c0 + c];
    for (i = i_lo; i < i_hi; ++i) {
      const int8_t *row = x + ((int64_t)(y0 + i) * in->w + x0) * C + c0;
      const int8_t *wrow = w + (int64_t)i * kw * C + c0;
      for (j = j_lo; j < j_hi; ++j) {
        const int8_t *src = row + (int64_t)j * C;
        const int8_t *wt = wrow + (int64_t)j * C;
        for (c = 0; c < n; ++c)
          acc[c] += ((int32_t)src[c] - p->input_zp) * wt[c];
      }
    }
    tk_requantize_block(acc, n, q->multiplier + c0, q->shift + c0,
                        p->output_zp, p->act_min, p->act_max, dst + c0);
  }
}

/* A window entirely inside the input: constant K x K taps, no bounds. */
static inline void dw_pixel_interior(const tk_conv_params *p,
                                     const tk_requant *q, const tk_dims *in,
                                     const int8_t *x, const int8_t *w,
                                     const int32_t *bias, const int32_t K,
                                     int32_t oy, int32_t ox, int8_t *dst) {
  const int32_t C = in->c;
  const int8_t *origin =
      x + ((int64_t)(oy * p->stride - p->pad_top) * in->w +
           (ox * p->stride - p->pad_left)) * C;
  int32_t c0;
  for (c0 = 0; c0 < C; c0 += TK_DW_BLOCK) {
    const int32_t n = C - c0 < TK_DW_BLOCK ? C - c0 : TK_DW_BLOCK;
    int32_t acc[TK_DW_BLOCK];
    int32_t i, j, c;
    for (c = 0; c < n; ++c) acc[c] = bias[c0 + c];
    for (i = 0; i < K; ++i) {
      for (j = 0; j < K; ++j) {
        const int8_t *src = origin + ((int64_t)i * in->w + j) * C + c0;
        const int8_t *wt = w + (int64_t)(i * K + j) * C + c0;
        for (c = 0; c < n; ++c)
          acc[c] += ((int32_t)src[c] - p->input_zp) * wt[c];
      }
    }
    tk_requantize_block(acc, n, q->multiplier + c0, q->shift + c0,
                        p->output_zp, p->act_min, p->act_max, dst + c0);
  }
}

#define TK_DW_SPECIALISED(K)                                                   \
  static void dw_##K(const tk_conv_params *p, const tk_requant *q,            \
                     const tk_dims *in, const int8_t *x, const int8_t *w,     \
                     const int32_t *bias, const tk_dims *out, int8_t *y) {    \
    int32_t oy, ox;                                                            \
    for (oy = 0; oy < out->h; ++oy) {                                          \
      const int32_t y0 = oy * p->stride - p->pad_top;                          \
      for (ox = 0; ox < out->w; ++ox) {                                        \
        const int32_t x0 = ox * p->stride - p->pad_left;                       \
        int8_t *dst = y + ((int64_t)oy * out->w + ox) * in->c;                 \
        if (y0 >= 0 && x0 >= 0 && y0 + K <= in->h && x0 + K <= in->w)         \
          dw_pixel_interior(p, q, in, x, w, bias, K, oy, ox, dst);            \
        else                                                                   \
          dw_pixel(p, q, in, x, w, bias, K, K, oy, ox, dst);                   \
      }                                                                        \
    }                                                                          \
  }

TK_DW_SPECIALISED(3)
TK_DW_SPECIALISED(5)
TK_DW_SPECIALISED(7)

int32_t tk_depthwise_conv_unrolled_s8(const tk_conv_params *p,
                                      const tk_requant *q, const tk_dims *in,
                                      const int8_t *input,
                                      const tk_dims *filter,
                                      const int8_t *filter_data,
                                      const int32_t *bias, const tk_dims *out,
                                      int8_t *output) {
  int32_t b, C, kh, kw;
  if (!tk__depthwise_args_ok(p, q, in, input, filter, filter_data, bias, out,
                             output))
    return TK_ERR_ARG;
  C = in->c;
  kh = filter->h;
  kw = filter->w;
  for (b = 0; b < in->n; ++b) {
    const int8_t *x = input + (int64_t)b * in->h * in->w * C;
    int8_t *y = output + (int64_t)b * out->h * out->w * C;
    if (kh == 3 && kw == 3) {
      dw_3(p, q, in, x, filter_data, bias, out, y);
    } else if (kh == 5 && kw == 5) {
      dw_5(p, q, in, x, filter_data, bias, out, y);
    } else if (kh == 7 && kw == 7) {
      dw_7(p, q, in, x, filter_data, bias, out, y);
    } else {
      int32_t oy, ox;
      for (oy = 0; oy < out->h; ++oy)
        for (ox = 0; ox < out->w; ++ox)
          dw_pixel(p, q, in, x, filter_data, bias, kh, kw, oy, ox,
                   y + ((int64_t)oy * out->w + ox) * C);
    }
  }
  return TK_OK;
}
