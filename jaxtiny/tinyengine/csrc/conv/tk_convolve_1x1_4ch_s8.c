/* Pointwise int8 convolution, optimised: the input pixel is centred once
 * into a small stack buffer, then four output channels are accumulated per
 * pass over it (four independent accumulators), the remainder one by one.
 * Same signature and bit-exact results as tk_convolve_1x1_s8. */
#include "tk_internal.h"

#define TK_1X1_MAX_CIN 2048

int32_t tk_convolve_1x1_4ch_s8(const tk_conv_params *p, const tk_requant *q,
                               const tk_dims *in, const int8_t *input,
                               const tk_dims *filter, const int8_t *filter_data,
                               const int32_t *bias, const tk_dims *out,
                               int8_t *output) {
  int16_t xc[TK_1X1_MAX_CIN];
  int64_t pix, npix;
  int32_t cin, cout;
  if (p == 0 || input == 0 || filter_data == 0 || bias == 0 || output == 0 ||
      !tk__dims_ok(in) || !tk__dims_ok(filter) || !tk__dims_ok(out))
    return TK_ERR_ARG;
  cin = in->c;
  cout = filter->n;
  if (cin > TK_1X1_MAX_CIN || filter->h != 1 || filter->w != 1 ||
      filter->c != cin || out->c != cout || p->stride != 1 ||
      p->pad_top != 0 || p->pad_left != 0 || out->n != in->n ||
      out->h != in->h || out->w != in->w || !tk__window_ok(p, in, 1, 1, out) ||
      !tk__requant_ok(q, cout))
    return TK_ERR_ARG;
  npix = (int64_t)in->n * in->h * in->w;
  for (pix = 0; pix < npix; ++pix) {
    const int8_t *x = input + pix * cin;
    int8_t *y = output + pix * cout;
    int32_t o = 0, c;
    for (c = 0; c < cin; ++c) xc[c] = (int16_t)(x[c] - p->input_zp);
    for (; o + 4 <= cout; o += 4) {
      const int8_t *w0 = filter_data + (int64_t)o * cin;
      const int8_t *w1 = w0 + cin, *w2 = w1 + cin, *w3 = w2 + cin;
      int32_t a0 = bias[o], a1 = bias[o + 1], a2 = bias[o + 2], a3 = bias[o + 3];
      int32_t k;
      for (c = 0; c < cin; ++c) {
        const int32_t v = xc[c];
        a0 += v * w0[c];
        a1 += v * w1[c];
        a2 += v * w2[c];
        a3 += v * w3[c];
      }
      {
        const int32_t acc[4] = {a0, a1, a2, a3};
        for (k = 0; k < 4; ++k) {
          const int32_t r = tk_requantize(acc[k], q->multiplier[o + k],
                                          q->shift[o + k]) + p->output_zp;
          y[o + k] = tk_clamp_s8(r, p->act_min, p->act_max);
        }
      }
    }
    for (; o < cout; ++o) {
      const int8_t *w = filter_data + (int64_t)o * cin;
      int32_t acc = bias[o];
      for (c = 0; c < cin; ++c) acc += (int32_t)xc[c] * w[c];
      acc = tk_requantize(acc, q->multiplier[o], q->shift[o]) + p->output_zp;
      y[o] = tk_clamp_s8(acc, p->act_min, p->act_max);
    }
  }
  return TK_OK;
}
