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

/* Argument check shared by the conv kernels: pointers, OHWI filter matching
 * the input and output channels, window geometry and requantization. */
static inline int tk__conv_args_ok(const tk_conv_params *p, const tk_requant *q,
                                   const tk_dims *in, const int8_t *input,
                                   const tk_dims *filter,
                                   const int8_t *filter_data,
                                   const int32_t *bias, const tk_dims *out,
                                   const int8_t *output) {
  return p != 0 && input != 0 && filter_data != 0 && bias != 0 &&
         output != 0 && tk__dims_ok(in) && tk__dims_ok(filter) &&
         tk__dims_ok(out) && filter->c == in->c && out->c == filter->n &&
         tk__window_ok(p, in, filter->h, filter->w, out) &&
         tk__requant_ok(q, filter->n);
}

/* The same for a pointwise conv: 1x1 filter, stride 1, no padding. */
static inline int tk__pointwise_args_ok(const tk_conv_params *p,
                                        const tk_requant *q, const tk_dims *in,
                                        const int8_t *input,
                                        const tk_dims *filter,
                                        const int8_t *filter_data,
                                        const int32_t *bias,
                                        const tk_dims *out,
                                        const int8_t *output) {
  return tk__conv_args_ok(p, q, in, input, filter, filter_data, bias, out,
                          output) &&
         filter->h == 1 && filter->w == 1 && p->stride == 1 &&
         p->pad_top == 0 && p->pad_left == 0 && out->h == in->h &&
         out->w == in->w;
}

/* The same for a depthwise conv: filter [1, kh, kw, C] on C channels. */
static inline int tk__depthwise_args_ok(const tk_conv_params *p,
                                        const tk_requant *q, const tk_dims *in,
                                        const void *input,
                                        const tk_dims *filter,
                                        const int8_t *filter_data,
                                        const int32_t *bias,
                                        const tk_dims *out, const void *output) {
  return p != 0 && input != 0 && filter_data != 0 && bias != 0 &&
         output != 0 && tk__dims_ok(in) && tk__dims_ok(filter) &&
         tk__dims_ok(out) && filter->n == 1 && filter->c == in->c &&
         out->c == in->c && tk__window_ok(p, in, filter->h, filter->w, out) &&
         tk__requant_ok(q, in->c);
}

/* im2col: `count` columns of (x - zp) for output pixels pix .. pix+count-1
 * of one image, zero where the window covers padding. */
static inline void tk__im2col(const tk_conv_params *p, const tk_dims *in,
                              const int8_t *x, const tk_dims *filter,
                              const tk_dims *out, int32_t pix, int32_t count,
                              int16_t *scratch) {
  const int32_t kh = filter->h, kw = filter->w, cin = filter->c;
  const int32_t col_len = kh * kw * cin;
  int32_t t;
  for (t = 0; t < count; ++t) {
    const int32_t oy = (pix + t) / out->w, ox = (pix + t) % out->w;
    int16_t *col = scratch + (int64_t)t * col_len;
    int32_t i, j, c;
    for (i = 0; i < kh; ++i) {
      const int32_t iy = oy * p->stride - p->pad_top + i;
      for (j = 0; j < kw; ++j) {
        const int32_t ix = ox * p->stride - p->pad_left + j;
        int16_t *dst = col + (i * kw + j) * cin;
        if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
          for (c = 0; c < cin; ++c) dst[c] = 0;
        } else {
          const int8_t *src = x + ((int64_t)iy * in->w + ix) * cin;
          for (c = 0; c < cin; ++c) dst[c] = (int16_t)(src[c] - p->input_zp);
        }
      }
    }
  }
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
