/* Depthwise int8 convolution (any odd or even kernel, stride, padding);
 * filters [kh][kw][C]. No scratch. */
#include "tk_internal.h"

int32_t tk_depthwise_conv_s8(const tk_conv_params *p, const tk_requant *q,
                             const tk_dims *in, const int8_t *input,
                             const tk_dims *filter, const int8_t *filter_data,
                             const int32_t *bias, const tk_dims *out,
                             int8_t *output) {
  int32_t b, oy, ox, c, C, kh, kw;
  if (!tk__depthwise_args_ok(p, q, in, input, filter, filter_data, bias, out,
                             output))
    return TK_ERR_ARG;
  C = in->c;
  kh = filter->h;
  kw = filter->w;
  for (b = 0; b < in->n; ++b) {
    const int8_t *x = input + (int64_t)b * in->h * in->w * C;
    int8_t *y = output + (int64_t)b * out->h * out->w * C;
    for (oy = 0; oy < out->h; ++oy) {
      for (ox = 0; ox < out->w; ++ox) {
        int8_t *dst = y + ((int64_t)oy * out->w + ox) * C;
        for (c = 0; c < C; ++c) {
          int32_t acc = bias[c], i, j;
          for (i = 0; i < kh; ++i) {
            const int32_t iy = oy * p->stride - p->pad_top + i;
            if (iy < 0 || iy >= in->h) continue;
            for (j = 0; j < kw; ++j) {
              const int32_t ix = ox * p->stride - p->pad_left + j;
              if (ix < 0 || ix >= in->w) continue;
              acc += ((int32_t)x[((int64_t)iy * in->w + ix) * C + c] -
                      p->input_zp) * filter_data[(i * kw + j) * C + c];
            }
          }
          acc = tk_requantize(acc, q->multiplier[c], q->shift[c]) + p->output_zp;
          dst[c] = tk_clamp_s8(acc, p->act_min, p->act_max);
        }
      }
    }
  }
  return TK_OK;
}
