/* In-place depthwise int8 convolution: the output overwrites the input
 * tensor channel by channel. Each channel plane is first copied into a
 * padded one-channel scratch plane (padding holds the input zero point, i.e.
 * real 0); the output element (b, y, x, c) is then written at its NHWC offset
 * in the same buffer, which only ever lands on channel-c slots of inputs
 * already copied. Peak memory: max(input, output) + one padded plane. */
#include "tk_internal.h"

/* Bottom/right padding of the scratch plane (never negative: the plane
 * always holds the whole input channel). */
static int32_t pad_bottom_of(const tk_conv_params *p, const tk_dims *in,
                             int32_t kh, const tk_dims *out) {
  const int32_t v = (out->h - 1) * p->stride + kh - in->h - p->pad_top;
  return v > 0 ? v : 0;
}

static int32_t pad_right_of(const tk_conv_params *p, const tk_dims *in,
                            int32_t kw, const tk_dims *out) {
  const int32_t v = (out->w - 1) * p->stride + kw - in->w - p->pad_left;
  return v > 0 ? v : 0;
}

int32_t tk_depthwise_conv_inplace_s8_get_buffer_size(const tk_conv_params *p,
                                                     const tk_dims *in,
                                                     const tk_dims *filter,
                                                     const tk_dims *out) {
  if (p == 0 || !tk__dims_ok(in) || !tk__dims_ok(filter) || !tk__dims_ok(out) ||
      !tk__window_ok(p, in, filter->h, filter->w, out))
    return 0;
  return (in->h + p->pad_top + pad_bottom_of(p, in, filter->h, out)) *
         (in->w + p->pad_left + pad_right_of(p, in, filter->w, out));
}

int32_t tk_depthwise_conv_inplace_s8(const tk_conv_params *p,
                                     const tk_requant *q, const tk_dims *in,
                                     int8_t *buffer, const tk_dims *filter,
                                     const int8_t *filter_data,
                                     const int32_t *bias, const tk_dims *out,
                                     int8_t *scratch, int32_t scratch_bytes) {
  int32_t b, c, C, kh, kw, ph, pw, need;
  if (scratch == 0 || !tk__depthwise_args_ok(p, q, in, buffer, filter,
                                             filter_data, bias, out, buffer))
    return TK_ERR_ARG;
  C = in->c;
  kh = filter->h;
  kw = filter->w;
  /* The output must not be larger than the input it overwrites. */
  if ((int64_t)out->h * out->w > (int64_t)in->h * in->w) return TK_ERR_ARG;
  ph = in->h + p->pad_top + pad_bottom_of(p, in, kh, out);
  pw = in->w + p->pad_left + pad_right_of(p, in, kw, out);
  need = ph * pw;
  if (scratch_bytes < need) return TK_ERR_SCRATCH;
  for (c = 0; c < C; ++c) {
    for (b = 0; b < in->n; ++b) {
      const int8_t *x = buffer + (int64_t)b * in->h * in->w * C;
      int8_t *y = buffer + (int64_t)b * out->h * out->w * C;
      int32_t i, j, oy, ox;
      for (i = 0; i < need; ++i) scratch[i] = (int8_t)p->input_zp;
      for (i = 0; i < in->h; ++i)
        for (j = 0; j < in->w; ++j)
          scratch[(i + p->pad_top) * pw + j + p->pad_left] =
              x[((int64_t)i * in->w + j) * C + c];
      for (oy = 0; oy < out->h; ++oy) {
        for (ox = 0; ox < out->w; ++ox) {
          const int8_t *win = scratch + (oy * p->stride) * pw + ox * p->stride;
          int32_t acc = bias[c];
          for (i = 0; i < kh; ++i)
            for (j = 0; j < kw; ++j)
              acc += ((int32_t)win[i * pw + j] - p->input_zp) *
                     filter_data[(i * kw + j) * C + c];
          acc = tk_requantize(acc, q->multiplier[c], q->shift[c]) + p->output_zp;
          y[((int64_t)oy * out->w + ox) * C + c] =
              tk_clamp_s8(acc, p->act_min, p->act_max);
        }
      }
    }
  }
  return TK_OK;
}
