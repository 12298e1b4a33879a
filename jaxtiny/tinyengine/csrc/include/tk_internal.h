/* Argument checks shared by the kernels (not part of the public API). */
#ifndef TK_INTERNAL_H_
#define TK_INTERNAL_H_

#include "tk.h"

static inline int tk__int8_range_ok(int32_t lo, int32_t hi) {
  return lo >= -128 && hi <= 127 && lo <= hi;
}

static inline int tk__dims_ok(const tk_dims *d) {
  return d != 0 && d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

/* Geometry of a padded, strided window op: out = (in + pads - k) / s + 1.
 * The bottom/right padding implied by the output size must be smaller than
 * the kernel; it may be negative (the last window stops short of the last
 * input rows, which then go unread). */
static inline int tk__window_ok(const tk_conv_params *p, const tk_dims *in,
                                int32_t kh, int32_t kw, const tk_dims *out) {
  int32_t pad_bottom, pad_right;
  if (p->stride < 1 || p->pad_top < 0 || p->pad_left < 0) return 0;
  if (p->pad_top >= kh || p->pad_left >= kw) return 0;
  if (!tk__int8_range_ok(p->act_min, p->act_max)) return 0;
  if (p->input_zp < -128 || p->input_zp > 127) return 0;
  if (p->output_zp < -128 || p->output_zp > 127) return 0;
  if (out->n != in->n) return 0;
  pad_bottom = (out->h - 1) * p->stride + kh - in->h - p->pad_top;
  pad_right = (out->w - 1) * p->stride + kw - in->w - p->pad_left;
  if (pad_bottom >= kh || pad_right >= kw) return 0;
  /* The last window must start inside the (padded) input. */
  if ((out->h - 1) * p->stride >= in->h + p->pad_top) return 0;
  if ((out->w - 1) * p->stride >= in->w + p->pad_left) return 0;
  return 1;
}

static inline int tk__requant_ok(const tk_requant *q, int32_t channels) {
  int32_t i;
  if (q == 0 || q->multiplier == 0 || q->shift == 0) return 0;
  for (i = 0; i < channels; ++i) {
    if (q->multiplier[i] < 0 || q->shift[i] < -31 || q->shift[i] > 30) return 0;
  }
  return 1;
}

#define TK_DOT_BLOCK 64

/* Accumulators of outputs o0 .. o0+n-1 (n <= TK_DOT_BLOCK) for two centred
 * int16 input vectors x0, x1 of length len against rows of `weights`
 * ([O][len]): four output channels per pass, eight independent accumulators,
 * each weight loaded once for both inputs. The optimised conv kernels' core. */
static inline void tk__dot_block_2px(const int16_t *x0, const int16_t *x1,
                                     int32_t len, const int8_t *weights,
                                     const int32_t *bias, int32_t o0,
                                     int32_t n, int32_t *acc0, int32_t *acc1) {
  int32_t o = 0, c;
  for (; o + 4 <= n; o += 4) {
    const int8_t *w0 = weights + (int64_t)(o0 + o) * len;
    const int8_t *w1 = w0 + len, *w2 = w1 + len, *w3 = w2 + len;
    int32_t a0 = bias[o0 + o], a1 = bias[o0 + o + 1];
    int32_t a2 = bias[o0 + o + 2], a3 = bias[o0 + o + 3];
    int32_t b0 = a0, b1 = a1, b2 = a2, b3 = a3;
    for (c = 0; c < len; ++c) {
      const int32_t u = x0[c], v = x1[c];
      const int32_t k0 = w0[c], k1 = w1[c], k2 = w2[c], k3 = w3[c];
      a0 += u * k0;
      a1 += u * k1;
      a2 += u * k2;
      a3 += u * k3;
      b0 += v * k0;
      b1 += v * k1;
      b2 += v * k2;
      b3 += v * k3;
    }
    acc0[o] = a0; acc0[o + 1] = a1; acc0[o + 2] = a2; acc0[o + 3] = a3;
    acc1[o] = b0; acc1[o + 1] = b1; acc1[o + 2] = b2; acc1[o + 3] = b3;
  }
  for (; o < n; ++o) {
    const int8_t *w = weights + (int64_t)(o0 + o) * len;
    int32_t a = bias[o0 + o], b = a;
    for (c = 0; c < len; ++c) {
      a += (int32_t)x0[c] * w[c];
      b += (int32_t)x1[c] * w[c];
    }
    acc0[o] = a;
    acc1[o] = b;
  }
}

#endif /* TK_INTERNAL_H_ */
