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

#endif /* TK_INTERNAL_H_ */
