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
  if (p == 0 || input == 0 || filter_data == 0 || bias == 0 || output == 0 ||
      !tk__dims_ok(in) || !tk__dims_ok(filter) || !tk__dims_ok(out))
    return TK_ERR_ARG;
  cin = in->c;
  cout = filter->n;
  if (filter->h != 1 || filter->w != 1 || filter->c != cin || out->c != cout ||
      p->stride != 1 || p->pad_top != 0 || p->pad_left != 0 ||
      out->n != in->n || out->h != in->h || out->w != in->w ||
      !tk__window_ok(p, in, 1, 1, out) || !tk__requant_ok(q, cout))
    return TK_ERR_ARG;
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
