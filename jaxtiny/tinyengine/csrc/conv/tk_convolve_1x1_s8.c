/* Pointwise (1x1, stride 1, no padding) int8 convolution: the hot path of
 * inverted bottlenecks. No scratch. */
#include "tk_internal.h"

int32_t tk_convolve_1x1_s8(const tk_conv_params *p, const tk_requant *q,
                           const tk_dims *in, const int8_t *input,
                           const tk_dims *filter, const int8_t *filter_data,
                           const int32_t *bias, const tk_dims *out,
                           int8_t *output) {
  int64_t pix, npix;
  int32_t cin, cout;
  if (!tk__pointwise_args_ok(p, q, in, input, filter, filter_data, bias, out,
                             output))
    return TK_ERR_ARG;
  cin = in->c;
  cout = filter->n;
  npix = (int64_t)in->n * in->h * in->w;
  for (pix = 0; pix < npix; ++pix) {
    const int8_t *x = input + pix * cin;
    int8_t *y = output + pix * cout;
    int32_t o;
    for (o = 0; o < cout; ++o) {
      const int8_t *w = filter_data + (int64_t)o * cin;
      int32_t acc = bias[o], c;
      for (c = 0; c < cin; ++c) acc += ((int32_t)x[c] - p->input_zp) * w[c];
      acc = tk_requantize(acc, q->multiplier[o], q->shift[o]) + p->output_zp;
      y[o] = tk_clamp_s8(acc, p->act_min, p->act_max);
    }
  }
  return TK_OK;
}
